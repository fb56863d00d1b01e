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
Each healthy scan is bias-field corrected on its own grid first
(:mod:`tumorfab.preprocess.bias`).

A subject's other sequences (IXI's T2 and PD, on grids of their own) are
co-registered rigidly to its T1 (:func:`coregister_to_t1`) and carried to the
reference grid by that rigid transform and the T1's together, in one
resampling of the raw scan, bias-field corrected in the T1's brain mask
carried onto its grid (:func:`register_sequence_to_reference`), inside
the T1's registered brain mask (docs/interpretations.md, "Healthy subjects
with several sequences").
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
from scipy import ndimage

from tumorfab.io import atomic_directory, atomic_path, load_nifti, save_nifti
from tumorfab.preprocess.ants import centre_alignment, deterministic_ants, to_ants
from tumorfab.preprocess.bias import correct_bias_field
from tumorfab.preprocess.qc import orthogonal_slices_png
from tumorfab.preprocess.settings import BiasCorrectionSettings, RegistrationSettings

SIMILARITY_METRIC = "MattesMutualInformation"
#: Margin around a T1's brain mask where co-registration's metric is taken (mm):
#: the brain's edge against CSF and skull aligns the sequences; the face and
#: neck, which move between scans, stay out.
COREGISTRATION_MARGIN_MM = 8
#: Coarsest voxel of co-registration's image pyramid (mm). The two scans start
#: close (one head, one session), so no coarser level is needed; ANTs' default
#: pyramid (shrink factors 6, 4, 2, 1) reaches 20 mm voxels on a 4 mm scan, where
#: mutual information has too few samples and the demo's T2s drifted 20 mm away.
COREGISTRATION_COARSEST_MM = 8.0
#: Shrink factors tried, coarse to fine, with their iterations.
COREGISTRATION_LEVELS = {4: 1000, 2: 500, 1: 250}


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
    bias_correction: BiasCorrectionSettings,
    seed: int,
    out_transforms: str | Path | None = None,
) -> dict[str, float]:
    """Register one stripped healthy scan onto the reference grid, bias-field
    corrected in its brain mask first (:func:`correct_bias_field`), so that the
    registration sees the corrected scan too.

    Returns the similarity to the reference before (from the centre
    alignment the registration starts at) and after registration, and
    draws the registered brain's outline on the reference (``out_qc``).
    ANTs runs on one thread with ``seed`` (:func:`deterministic_ants`).
    With ``out_transforms`` the transforms are kept in that folder
    (:func:`save_transforms`), for the subject's other sequences.
    """
    deterministic_ants(seed)
    reference = load_nifti(reference_image)
    reference_data = reference.get_fdata(dtype=np.float32)
    tumour = np.asarray(load_nifti(reference_seg).dataobj) > 0
    brain = ndimage.binary_fill_holes(reference_data != 0) & ~tumour
    fixed = to_ants(reference)
    metric_mask = fixed.new_image_like(brain.astype(np.float32))
    moving_brain = to_ants(load_nifti(moving_mask))
    moving = correct_bias_field(to_ants(load_nifti(moving_image)), moving_brain, bias_correction)

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
        if out_transforms is not None:
            save_transforms(result["fwdtransforms"], out_transforms)
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


def save_transforms(transforms: list[str], out_dir: str | Path) -> None:
    """Copy ANTs transform files into ``out_dir`` (atomically), named so that
    :func:`load_transforms` lists them in the order given (ANTs' order)."""
    with atomic_directory(out_dir) as tmp:
        for index, transform in enumerate(transforms):
            name = Path(transform).name
            ending = ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix
            shutil.copyfile(transform, tmp / f"{index:02d}{ending}")


def load_transforms(folder: str | Path) -> list[str]:
    """The transform files :func:`save_transforms` wrote, in their order."""
    transforms = sorted(str(p) for p in Path(folder).iterdir() if not p.name.startswith("."))
    if not transforms:
        raise ValueError(f"{folder}: no transform files")
    return transforms


def _identity_transform(path: Path) -> str:
    ants.write_transform(ants.create_ants_transform(transform_type="AffineTransform", dimension=3), str(path))
    return str(path)


def coregistration_pyramid(spacing_mm: float) -> dict[str, tuple[int, ...]]:
    """ANTs' rigid-stage pyramid for a fixed image of ``spacing_mm`` voxels: the
    shrink factors of :data:`COREGISTRATION_LEVELS` whose voxels are at most
    :data:`COREGISTRATION_COARSEST_MM` (always the full resolution), a Gaussian of
    half the factor (voxels) at each, and their iterations."""
    factors = [f for f in COREGISTRATION_LEVELS if f == 1 or f * spacing_mm <= COREGISTRATION_COARSEST_MM]
    return {
        "aff_shrink_factors": tuple(factors),
        "aff_smoothing_sigmas": tuple(f // 2 for f in factors),
        "aff_iterations": tuple(COREGISTRATION_LEVELS[f] for f in factors),
    }


def coregister_to_t1(
    sequence_image: str | Path,
    t1_image: str | Path,
    t1_brainmask: str | Path,
    out_transform: str | Path,
    out_qc: str | Path,
    seed: int,
) -> dict[str, float]:
    """Register another sequence of a healthy subject (a T2, a PD...) rigidly onto
    its own T1, both raw, and write the transform (``out_transform``, ANTs' ``.mat``).

    Both are scans of the same head in the scanner's world coordinates (the
    ``prepare`` rule checks that their fields of view overlap), so the
    registration starts from the identity; a head that moved between the
    scans is a small rigid motion. Mutual information compares the two
    contrasts within :data:`COREGISTRATION_MARGIN_MM` of the T1's brain mask,
    on a pyramid no coarser than :data:`COREGISTRATION_COARSEST_MM`
    (:func:`coregistration_pyramid`).
    The QC picture (``out_qc``) is the sequence on the T1's grid with the
    T1's brain outline. Returns the similarity to the T1 before and after
    (:data:`SIMILARITY_METRIC`, lower is better). ANTs runs on one thread with
    ``seed`` (:func:`deterministic_ants`).
    """
    deterministic_ants(seed)
    t1 = load_nifti(t1_image)
    brain = np.asarray(load_nifti(t1_brainmask).dataobj) > 0
    spacing = np.linalg.norm(t1.affine[:3, :3], axis=0)
    near_brain = ndimage.distance_transform_edt(~brain, sampling=spacing) <= COREGISTRATION_MARGIN_MM
    fixed = to_ants(t1)
    metric_mask = fixed.new_image_like(near_brain.astype(np.float32))
    moving = to_ants(load_nifti(sequence_image))
    with tempfile.TemporaryDirectory() as scratch:
        start = _identity_transform(Path(scratch) / "identity.mat")
        before = ants.apply_transforms(fixed=fixed, moving=moving, transformlist=[start], interpolator="linear")
        result = ants.registration(
            fixed=fixed,
            moving=moving,
            type_of_transform="Rigid",
            initial_transform=start,
            mask=metric_mask,
            mask_all_stages=True,
            outprefix=str(Path(scratch) / "coregistration_"),
            **coregistration_pyramid(float(spacing.min())),
        )
        (transform,) = result["fwdtransforms"]
        with atomic_path(out_transform) as tmp:
            shutil.copyfile(transform, tmp)
        coregistered = ants.apply_transforms(
            fixed=fixed, moving=moving, transformlist=[transform], interpolator="linear"
        )
    orthogonal_slices_png(
        nib.Nifti1Image(coregistered.numpy().astype(np.float32), t1.affine),
        out_qc,
        title=f"{Path(sequence_image).name} on its T1's grid; cyan = T1 brain",
        outline=nib.Nifti1Image(brain.astype(np.uint8), t1.affine),
    )
    return {
        "metric": SIMILARITY_METRIC,
        "before": _similarity(fixed, before, metric_mask),
        "after": _similarity(fixed, coregistered, metric_mask),
    }


def register_sequence_to_reference(
    sequence_image: str | Path,
    coregistration: str | Path,
    t1_brainmask: str | Path,
    reference_transforms: str | Path,
    registered_brainmask: str | Path,
    out_image: str | Path,
    settings: RegistrationSettings,
    bias_correction: BiasCorrectionSettings,
    seed: int,
) -> None:
    """Carry another sequence of a healthy subject onto the reference grid: its
    rigid transform onto the T1 (:func:`coregister_to_t1`), then the T1's
    transforms (``reference_transforms``, :func:`save_transforms`), in one
    resampling of the raw scan (``settings.interpolator``); kept inside the
    T1's registered brain mask, as the T1 is (background 0, no negative values).

    The raw scan is bias-field corrected on its own grid first
    (:func:`correct_bias_field`), in the T1's brain mask (``t1_brainmask``, on
    the T1's grid) carried onto it by the inverse of the rigid transform: the
    sequence has no brain mask of its own. ANTs runs on one thread with
    ``seed`` (:func:`deterministic_ants`).
    """
    deterministic_ants(seed)
    mask_image = load_nifti(registered_brainmask)
    mask = np.asarray(mask_image.dataobj) > 0
    fixed = to_ants(mask_image)
    moving = to_ants(load_nifti(sequence_image))
    # The rigid transform maps T1 points to sequence points: inverted, it
    # takes the T1's brain mask onto the sequence's grid.
    sequence_brain = ants.apply_transforms(
        fixed=moving,
        moving=to_ants(load_nifti(t1_brainmask)),
        transformlist=[str(coregistration)],
        whichtoinvert=[True],
        interpolator="genericLabel",
    )
    moving = correct_bias_field(moving, sequence_brain, bias_correction)
    # ANTs applies the last transform of the list first: the rigid one, then the T1's.
    transforms = [*load_transforms(reference_transforms), str(coregistration)]
    warped = ants.apply_transforms(
        fixed=fixed, moving=moving, transformlist=transforms, interpolator=settings.interpolator
    )
    image = np.where(mask, np.maximum(warped.numpy(), 0.0), 0.0).astype(np.float32)
    save_nifti(image, mask_image.affine, out_image)
