"""Registration of stripped healthy scans to a real BraTS reference
(paper 002 §2 "Data Preprocessing" (2)).

The paper registers healthy scans "to real images to align spatial
characteristics, ensuring an isotropic voxel size of 1 mm". We register each
stripped healthy scan to one real training case (``registration.reference_case``,
default the first training case) with ANTsPy and resample it onto that
case's grid, which for BraTS is the 1 mm SRI24 grid. Tumour voxels of the
reference are excluded from the metric: the healthy brain has no tumour to
match them. The registration starts from the translation that puts the
healthy brain's centre on the reference brain's, since where a scanner put
the head in world space says nothing (IXI heads and SRI24 need not overlap).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
from scipy import ndimage

from tumorfab.io import load_nifti, save_nifti
from tumorfab.preprocess.ants import centre_alignment, deterministic_ants, to_ants
from tumorfab.preprocess.qc import orthogonal_slices_png
from tumorfab.preprocess.settings import RegistrationSettings

SIMILARITY_METRIC = "MattesMutualInformation"


def _similarity(fixed: ants.ANTsImage, moving: ants.ANTsImage, mask: ants.ANTsImage) -> float:
    """ANTs Mattes mutual information inside ``mask``; ANTs returns it as a
    cost, so *lower is better* (more negative = more similar)."""
    return float(ants.image_similarity(fixed, moving, metric_type=SIMILARITY_METRIC, fixed_mask=mask))


def register_to_reference(
    moving_image: str | Path,
    moving_mask: str | Path,
    reference_image: str | Path,
    reference_seg: str | Path,
    out_image: str | Path,
    out_mask: str | Path,
    out_qc: str | Path,
    settings: RegistrationSettings,
    seed: int,
) -> dict[str, float]:
    """Register one stripped healthy scan onto the reference grid.

    Returns the similarity to the reference before (from the centre
    alignment the registration starts at) and after registration, and
    draws the registered brain's outline on the reference (``out_qc``).
    ANTs runs on one thread with ``seed`` (:func:`deterministic_ants`).
    """
    deterministic_ants(seed)
    reference = load_nifti(reference_image)
    reference_data = reference.get_fdata(dtype=np.float32)
    tumour = np.asarray(load_nifti(reference_seg).dataobj) > 0
    brain = ndimage.binary_fill_holes(reference_data != 0) & ~tumour
    fixed = to_ants(reference)
    metric_mask = fixed.new_image_like(brain.astype(np.float32))
    moving = to_ants(load_nifti(moving_image))
    moving_brain = to_ants(load_nifti(moving_mask))

    with tempfile.TemporaryDirectory() as scratch:
        start = centre_alignment(metric_mask, moving_brain, Path(scratch) / "centre.mat")
        before = ants.apply_transforms(fixed=fixed, moving=moving, transformlist=[start], interpolator="linear")
        result = ants.registration(
            fixed=fixed,
            moving=moving,
            type_of_transform=settings.type_of_transform,
            initial_transform=start,
            mask=metric_mask,
            moving_mask=moving_brain,
            mask_all_stages=True,
            outprefix=str(Path(scratch) / "registration_"),
        )
        warped = ants.apply_transforms(
            fixed=fixed, moving=moving, transformlist=result["fwdtransforms"], interpolator=settings.interpolator
        )
        warped_mask = ants.apply_transforms(
            fixed=fixed,
            moving=moving_brain,
            transformlist=result["fwdtransforms"],
            interpolator="genericLabel",
        )
    mask = (warped_mask.numpy() > 0.5).astype(np.uint8)
    image = np.where(mask > 0, np.maximum(warped.numpy(), 0.0), 0.0).astype(np.float32)
    save_nifti(image, reference.affine, out_image)
    save_nifti(mask, reference.affine, out_mask)
    orthogonal_slices_png(
        reference,
        out_qc,
        title=f"reference {Path(reference_image).name}; cyan = registered {Path(moving_image).parent.name} brain",
        outline=nib.Nifti1Image(mask, reference.affine),
    )
    return {
        "metric": SIMILARITY_METRIC,
        "before": _similarity(fixed, before, metric_mask),
        "after": _similarity(fixed, warped, metric_mask),
    }
