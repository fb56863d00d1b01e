"""Skull stripping of healthy scans (paper 002 §2 "Data Preprocessing" (1)).

Three brain extractors, chosen by ``skullstrip.method``
(:class:`~tumorfab.preprocess.settings.SkullstripSettings`):

* ``synthstrip``: the paper's SynthStrip [Hoopes et al. 2022], its own model
  and pre/post-processing code from the ``nipreps-synthstrip`` package, with
  the weights file the user gives (FreeSurfer's ``synthstrip.1.pt``; nothing
  is downloaded);
* ``deepbet`` [Fisch et al. 2024]: its own two networks (they ship inside the
  ``deepbet`` package) and pre/post-processing (:func:`deepbet_mask`);
* ``atlas``: the MNI152 template shipped with nilearn, which is brain-only,
  registered onto the head with ANTsPy, its brain warped back
  (:func:`atlas_mask`). It holds on real heads in any orientation and voxel
  size, with neck and shoulders in the field of view, and on defaced heads.

``auto`` (the default) is SynthStrip when weights are given, else deepbet.
Where the paper is silent (no SynthStrip weights) we chose deepbet over the
atlas method because the healthy brains are pasted with tumours and must look
like BraTS brains, whose masks keep the CSF around the brain (the real BraTS
case's mask is 1480 ml). deepbet keeps it, as SynthStrip does; the atlas
method leaves it out (its brain is the template's grey + white matter,
ventricles included), as FreeSurfer's segmentation does. Measured on the
real heads (``benchmarks/skullstrip_comparison.py``, one core): deepbet
1507 and 1546 ml in 5-6 s a head, Dice 0.973 against FreeSurfer's brain
grown by the CSF around it (0.915 against FreeSurfer's brain alone); the
atlas method 1298 and 1356 ml in 19-20 s, Dice 0.909 (0.924). Figures and
the choice: README and docs/interpretations.md ("Brain extraction: deepbet
vs atlas").
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
from nilearn import datasets
from scipy import ndimage

from tumorfab.device import resolve_device
from tumorfab.io import load_nifti, save_nifti
from tumorfab.preprocess.ants import centre_alignment, deterministic_ants, to_ants
from tumorfab.preprocess.qc import orthogonal_slices_png
from tumorfab.preprocess.settings import SkullstripSettings

# torch is imported in the SynthStrip and deepbet functions only: the atlas
# method does not need it, and importing it costs ~2 s of CPU per healthy scan.


def load_synthstrip(weights: str | Path, device: torch.device) -> torch.nn.Module:
    """SynthStrip's network with the user's weights, loaded without pickle code."""
    import torch
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
    import torch
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


def deepbet_mask(
    image: nib.Nifti1Image, device: str | torch.device | None = None, threshold: float = 0.5
) -> np.ndarray:
    """Brain mask by deepbet [Fisch et al. 2024], with the model and the pre-
    and post-processing of the ``deepbet`` package (``BrainExtraction.run``):
    RAS voxel order; a first network on the head at 128³ finds the brain's
    box; the box is resampled to 256³, scaled by the head's 0.5–99.5th
    percentiles, and the second network's probability is resampled back and
    thresholded at ``threshold``; largest component, voids filled; the mask
    put back in the scan's own voxel order. Its two TorchScript networks ship
    inside the package (nothing is downloaded). ``device`` as
    :func:`tumorfab.device.resolve_device` reads it (the GPU when one is
    visible); on a GPU cuDNN runs deterministic, non-benchmark algorithms, so
    the same scan gives the same mask; on the CPU torch's thread count is the
    caller's (:func:`skullstrip` sets it)."""
    import warnings

    import torch
    from deepbet import BrainExtraction

    device = resolve_device(device)
    with warnings.catch_warnings():
        # deepbet's networks are TorchScript files; torch >= 2.10 flags jit.load as deprecated.
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
        extractor = BrainExtraction(no_gpu=True)  # loaded on the CPU, then moved to ``device``
    extractor.model.to(device)
    extractor.bbox_model.to(device)
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        _, mask, _ = extractor.run(image, threshold=threshold)
    finally:
        cudnn.deterministic, cudnn.benchmark = saved
    mask = np.asarray(mask.dataobj)
    if not mask.any():
        raise ValueError("skull stripping produced an empty brain mask")
    return np.ascontiguousarray(mask, dtype=np.uint8)


#: Grid of the atlas registration (mm): the MNI template at 2 mm is enough to
#: place a brain mask, and it keeps one head within ~20 s on one CPU core.
ATLAS_MM = 2
#: Field of view kept below the top of the head (mm): vertex to foramen
#: magnum is ~150 mm with the scalp; the neck and shoulders below only mislead
#: the registration.
HEAD_HEIGHT_MM = 190
#: Margin around the template brain where the registration metric is
#: evaluated (mm): the dark CSF and skull just outside the brain guide the
#: boundary, the scalp and face beyond it (absent from the brain-only
#: template) do not.
METRIC_MARGIN_MM = 4


def mni_template() -> tuple[ants.ANTsImage, ants.ANTsImage, ants.ANTsImage]:
    """nilearn's shipped MNI152 (ICBM 2009a) T1, which is brain-only, at
    :data:`ATLAS_MM`; the brain as the template's grey + white matter
    probability > 0.5 with holes filled (ventricles in, the CSF outside the
    brain out, as FreeSurfer counts it); and the metric mask: the template's
    own brain mask grown by :data:`METRIC_MARGIN_MM`."""
    t1 = to_ants(datasets.load_mni152_template(resolution=ATLAS_MM))
    grey = datasets.load_mni152_gm_template(resolution=ATLAS_MM).get_fdata(dtype=np.float32)
    white = datasets.load_mni152_wm_template(resolution=ATLAS_MM).get_fdata(dtype=np.float32)
    brain = ndimage.binary_fill_holes(grey + white > 0.5)
    outline = datasets.load_mni152_brain_mask(resolution=ATLAS_MM).get_fdata() > 0.5
    metric = ndimage.binary_dilation(outline, iterations=round(METRIC_MARGIN_MM / ATLAS_MM))
    return t1, t1.new_image_like(brain.astype(np.float32)), t1.new_image_like(metric.astype(np.float32))


def head_mask(head: np.ndarray) -> np.ndarray:
    """The head (with skull and scalp) against the air around it: above
    Otsu's threshold of the whole image, largest component, holes filled."""
    from skimage.filters import threshold_otsu

    return _largest_component_filled(head > threshold_otsu(head)).astype(bool)


def crop_to_head_top(work: ants.ANTsImage) -> tuple[ants.ANTsImage, ants.ANTsImage]:
    """``work`` (RAS, isotropic) and its head mask, cut :data:`HEAD_HEIGHT_MM`
    below the top of the head: neck and shoulders in the field of view are dropped."""
    head = work.new_image_like(head_mask(work.numpy()).astype(np.float32))
    rows = np.flatnonzero(head.numpy().any(axis=(0, 1)))
    top = int(rows.max()) + 1
    bottom = max(0, top - round(HEAD_HEIGHT_MM / work.spacing[2]))
    lower, upper = (0, 0, bottom), (*work.shape[:2], top)
    return ants.crop_indices(work, lower, upper), ants.crop_indices(head, lower, upper)


def atlas_mask(image: nib.Nifti1Image, type_of_transform: str, seed: int) -> np.ndarray:
    """Brain mask by registering the MNI template to the head (ANTsPy).

    The head is reoriented to RAS, resampled to :data:`ATLAS_MM` and cut
    :data:`HEAD_HEIGHT_MM` below its top; the registration maps it onto the
    template (rigid and affine stages, then SyN if ``type_of_transform`` has
    one) from the translation that puts the head's centre on the template
    brain's, so where the scanner put the head in world space does not
    matter. The metric is restricted to the template brain and a thin margin
    around it, since a brain-only template has nothing to match the scalp
    and face with; an unrestricted metric pulls the brain onto the scalp.
    The template brain is then warped back onto the scan's own grid (linear
    interpolation, > 0.5), its largest component kept and its holes filled.
    ANTs runs on one thread with ``seed``, so the same scan gives the same mask.
    """
    deterministic_ants(seed)
    # RAS voxel order, so that the third axis points to the top of the head.
    canonical = to_ants(nib.as_closest_canonical(image))
    work = ants.resample_image(canonical, (ATLAS_MM,) * 3, use_voxels=False, interp_type=0)
    cropped, head = crop_to_head_top(work)
    template, template_brain, metric_mask = mni_template()
    with tempfile.TemporaryDirectory() as scratch:
        result = ants.registration(
            fixed=template,
            moving=cropped,
            type_of_transform=type_of_transform,
            initial_transform=centre_alignment(template_brain, head, Path(scratch) / "centre.mat"),
            mask=metric_mask,
            mask_all_stages=True,
            outprefix=str(Path(scratch) / "registration_"),
        )
        inverse = result["invtransforms"]
        # ANTs works in world space: the scan's own grid takes the mask directly.
        warped = ants.apply_transforms(
            fixed=to_ants(image),
            moving=template_brain,
            transformlist=inverse,
            whichtoinvert=[True] + [False] * (len(inverse) - 1),
            interpolator="linear",
        )
    return _largest_component_filled(warped.numpy() > 0.5)


def mask_volume_ml(mask: np.ndarray, affine: np.ndarray) -> float:
    """Volume of a mask's voxels in ml, from the voxel volume of ``affine``."""
    return float(mask.sum()) * abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0


def skullstrip(
    image_path: str | Path,
    out_image: str | Path,
    out_mask: str | Path,
    out_qc: str | Path,
    failure_qc: str | Path,
    settings: SkullstripSettings,
    seed: int,
    threads: int = 1,
) -> dict:
    """Strip one healthy scan; write the masked image (background 0), the
    mask on the scan's own grid and a QC picture of the mask's outline.

    A brain whose volume falls outside ``settings.brain_volume_ml`` stops here, naming
    the scan: a mask over the scalp or a half brain would otherwise flow into
    every synthetic case made from it. The QC picture of a refused mask goes
    to ``failure_qc`` (Snakemake deletes a failed job's outputs), so that the
    failure can be looked at. ``settings.method`` chooses the extractor;
    SynthStrip and deepbet run torch on ``threads`` threads, on the GPU when
    one is visible. Returns the method and the volume.
    """
    image = load_nifti(image_path)
    image = nib.Nifti1Image(image.get_fdata(dtype=np.float32), image.affine, image.header)
    method = settings.method
    if method in ("synthstrip", "deepbet"):
        import torch

        torch.set_num_threads(threads)
    if method == "synthstrip":
        model = load_synthstrip(settings.synthstrip_weights, resolve_device())
        mask = synthstrip_mask(image, model, settings.border_mm)
    elif method == "deepbet":
        mask = deepbet_mask(image, resolve_device())
    else:
        mask = atlas_mask(image, settings.atlas_transform, seed)
    volume = mask_volume_ml(mask, image.affine)
    low, high = settings.brain_volume_ml
    plausible = low <= volume <= high
    orthogonal_slices_png(
        image,
        out_qc if plausible else failure_qc,
        title=f"{Path(image_path).name}: {method} brain mask, {volume:.0f} ml",
        outline=nib.Nifti1Image(mask, image.affine),
    )
    if not plausible:
        raise ValueError(
            f"{image_path}: the {method} brain mask is {volume:.0f} ml, outside the plausible "
            f"range skullstrip.brain_volume_ml = [{low:g}, {high:g}]; see {failure_qc}. "
            "Check the scan (a head? a T1?) or try another skullstrip.method (synthstrip, deepbet, atlas)"
        )
    data = image.get_fdata(dtype=np.float32)
    stripped = np.where(mask > 0, data - min(0.0, float(data.min())), 0.0).astype(np.float32)
    save_nifti(stripped, image.affine, out_image)
    save_nifti(mask, image.affine, out_mask)
    return {"method": method, "brain_volume_ml": volume}
