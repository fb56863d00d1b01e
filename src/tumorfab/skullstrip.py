"""Skull stripping of healthy scans (paper 002 §2 "Data Preprocessing" (1)).

The paper uses SynthStrip [Hoopes et al. 2022]. We run SynthStrip's own
model and pre/post-processing code from the ``nipreps-synthstrip`` package,
with the weights file the user gives (FreeSurfer's ``synthstrip.1.pt``;
nothing is downloaded). Without weights we fall back to an atlas-based
extraction: the MNI152 template shipped with nilearn is registered to the
head with ANTsPy and its brain mask is warped back. The fallback is what
the demo uses; on real IXI heads SynthStrip is the more robust choice.
"""

from __future__ import annotations

import os
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
import torch
from nilearn import datasets
from scipy import ndimage

from tumorfab.io import load_nifti, save_nifti


def _to_ants(image: nib.Nifti1Image) -> ants.ANTsImage:
    """A NIfTI image as a float32 ANTs image (ANTs ignores scaling and dtype quirks)."""
    data = np.asarray(image.get_fdata(dtype=np.float32))
    return ants.from_nibabel_nifti(nib.Nifti1Image(data, image.affine, image.header))


def pick_device() -> torch.device:
    """CUDA when present, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_synthstrip(weights: str | Path, device: torch.device) -> torch.nn.Module:
    """SynthStrip's network with the user's weights, loaded without pickle code."""
    from nipreps.synthstrip.model import StripModel

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"skullstrip.synthstrip_weights: {weights} does not exist")
    checkpoint = torch.load(weights, map_location=device, weights_only=True)
    if "model_state_dict" not in checkpoint:
        raise ValueError(
            f"skullstrip.synthstrip_weights: {weights} has no 'model_state_dict' "
            "(expected FreeSurfer's synthstrip.1.pt)"
        )
    model = StripModel()
    model.load_state_dict(checkpoint["model_state_dict"])
    return model.to(device).eval()


def _largest_component_filled(mask: np.ndarray) -> np.ndarray:
    components, count = ndimage.label(mask)
    if count == 0:
        raise ValueError("skull stripping produced an empty brain mask")
    sizes = np.bincount(components.ravel())[1:]
    largest = components == (np.argmax(sizes) + 1)
    return ndimage.binary_fill_holes(largest).astype(np.uint8)


def synthstrip_mask(image: nib.Nifti1Image, model: torch.nn.Module, border_mm: float) -> np.ndarray:
    """Brain mask by SynthStrip, following the package's own CLI steps:
    conform to 1 mm LIA (sides multiples of 64), scale to [0, 1] by the 99th
    percentile, predict a signed distance to the brain surface, resample it
    back, threshold at ``border_mm``, keep the largest component, fill holes."""
    from nipreps.synthstrip.cli import conform, resample_like

    device = next(model.parameters()).device
    conformed = conform(image)
    data = conformed.get_fdata(dtype=np.float32)
    data -= data.min()
    data = np.clip(data / np.percentile(data, 99), 0, 1)
    with torch.no_grad():
        sdt = model(torch.from_numpy(data[None, None]).to(device)).cpu().numpy().squeeze()
    sdt_native = resample_like(
        nib.Nifti1Image(sdt, conformed.affine, None), image, output_dtype="float32", cval=100
    )
    return _largest_component_filled(np.asarray(sdt_native.dataobj) < border_mm)


def mni_template(resolution_mm: int) -> tuple[ants.ANTsImage, ants.ANTsImage]:
    """nilearn's shipped MNI152 T1 (already brain-only) and its brain mask."""
    t1 = datasets.load_mni152_template(resolution=resolution_mm)
    mask = datasets.load_mni152_brain_mask(resolution=resolution_mm)
    return _to_ants(t1), _to_ants(mask)


def atlas_mask(
    image: nib.Nifti1Image, type_of_transform: str, threads: int
) -> np.ndarray:
    """Brain mask by registering the MNI template to the head (ANTsPy) and
    warping the template's brain mask back with nearest-neighbour labels,
    then refined on the head's own intensities (:func:`_refine_with_intensity`):
    a brain-only template registered to a head with skull often lands a few
    millimetres out, over the skull and scalp."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    head = _to_ants(image)
    # A template finer than the head buys nothing: match its resolution.
    resolution = 2 if min(image.header.get_zooms()[:3]) >= 2 else 1
    template, template_mask = mni_template(resolution)
    result = ants.registration(fixed=head, moving=template, type_of_transform=type_of_transform)
    warped = ants.apply_transforms(
        fixed=head,
        moving=template_mask,
        transformlist=result["fwdtransforms"],
        interpolator="genericLabel",
    )
    return _refine_with_intensity(head.numpy(), warped.numpy() > 0.5)


def _refine_with_intensity(head: np.ndarray, atlas_mask: np.ndarray) -> np.ndarray:
    """Drop the dark skull band (below Otsu's threshold of the voxels under
    the atlas mask, dilated) from the atlas mask, cut the thin bridges to the
    scalp with a one-voxel opening, keep the largest component and fill its
    holes (dark CSF and necrosis inside the brain stay in)."""
    from skimage.filters import threshold_otsu

    neighbourhood = ndimage.binary_dilation(atlas_mask, iterations=2)
    tissue = head > threshold_otsu(head[neighbourhood])
    refined = ndimage.binary_opening(atlas_mask & tissue, structure=ndimage.generate_binary_structure(3, 1))
    return _largest_component_filled(refined)


def skullstrip(
    image_path: str | Path,
    out_image: str | Path,
    out_mask: str | Path,
    synthstrip_weights: str | None,
    border_mm: float,
    atlas_transform: str,
    threads: int = 1,
) -> str:
    """Strip one healthy scan; write the masked image (background 0) and the
    mask on the scan's own grid. Returns the method used."""
    image = load_nifti(image_path)
    image = nib.Nifti1Image(image.get_fdata(dtype=np.float32), image.affine, image.header)
    if synthstrip_weights:
        torch.set_num_threads(threads)
        model = load_synthstrip(synthstrip_weights, pick_device())
        mask = synthstrip_mask(image, model, border_mm)
        method = "synthstrip"
    else:
        mask = atlas_mask(image, atlas_transform, threads)
        method = "atlas"
    data = image.get_fdata(dtype=np.float32)
    stripped = np.where(mask > 0, data - min(0.0, float(data.min())), 0.0).astype(np.float32)
    save_nifti(stripped, image.affine, out_image)
    save_nifti(mask, image.affine, out_mask)
    return method
