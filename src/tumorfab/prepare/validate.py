"""Checking every input volume before any heavy work.

The ``prepare`` rule runs these checks on every case the study uses and
writes the manifests only when all pass, so a bad file stops the run before
skull stripping, registration or training start, with a message naming the
file and the problem. All problems are reported at once, not just the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import nibabel as nib
import numpy as np
import pandas as pd

from tumorfab.prepare.cases import HEALTHY_T1_CHANNEL, BratsCase, DataError
from tumorfab.io import load_nifti, save_csv
from tumorfab.labels import ET, LABELS, LEGACY_ET
#: Affines are compared in mm; BraTS headers differ in rounding only.
AFFINE_TOLERANCE_MM = 1e-3
#: Share of the smaller field of view (world bounding boxes) that a healthy
#: subject's other sequence and its T1 must have in common: scans of one head
#: in one session share most of it (IXI's T2 and PD: nearly all of the T1's).
MIN_FIELD_OF_VIEW_OVERLAP = 0.5


def _affine_problem(path: Path, image: nib.Nifti1Image) -> str | None:
    """Why the voxel-to-world affine is unusable, or None.

    Resampling, registration and nnU-Net's spacing all invert or factor this
    matrix; an all-zero sform (with a non-zero sform_code) passes nibabel but
    crashes them much later. Singular means the three voxel axes span no volume:
    |det| below 1e-6 of the product of their lengths (a zero or flat axis).
    """
    header = image.header
    # nibabel's choice (get_best_affine): the sform if coded, else the qform.
    source = "sform" if header["sform_code"] else "qform" if header["qform_code"] else "pixdim"
    if not np.all(np.isfinite(image.affine)):
        return f"{path}: affine has NaN/inf entries (from the header's {source}); fix the {source}"
    axes = image.affine[:3, :3]
    volume = abs(np.linalg.det(axes))
    if not volume > 1e-6 * np.prod(np.linalg.norm(axes, axis=0)):
        return (
            f"{path}: affine is singular (voxel axes spanning {volume:g} mm^3, "
            f"from the header's {source}); fix the {source}"
        )
    return None


def _check_image(path: Path, image: nib.Nifti1Image) -> list[str]:
    problems = []
    if image.ndim != 3:
        problems.append(f"{path}: expected a 3-D volume, got shape {image.shape}")
        return problems
    affine_problem = _affine_problem(path, image)
    if affine_problem:
        problems.append(affine_problem)
    data = image.get_fdata(dtype=np.float32)
    bad = ~np.isfinite(data)
    if bad.any():
        problems.append(f"{path}: {int(bad.sum())} NaN/inf voxels")
    elif not np.any(data != data.flat[0]):
        problems.append(f"{path}: constant image (no brain)")
    return problems


def _check_labels(path: Path, seg: nib.Nifti1Image, remap_label_4_to_3: bool) -> list[str]:
    """Problems of a segmentation's values: non-finite, non-integer, outside BraTS 2023's.

    Label 4 (BraTS 2021's enhancing tumour) is accepted only with
    ``remap_label_4_to_3``; every other unexpected label is named either way.
    """
    problems = []
    values = np.asarray(seg.dataobj)
    finite = np.isfinite(values)
    if not finite.all():
        problems.append(f"{path}: {int((~finite).sum())} NaN/inf voxels")
    labels = set(np.unique(values[finite]).tolist())
    non_integer = sorted(label for label in labels if label != int(label))
    if non_integer:
        problems.append(f"{path}: non-integer label values {_format_labels(non_integer)}")
    unexpected = labels - set(LABELS)
    if LEGACY_ET in unexpected:
        unexpected.discard(LEGACY_ET)
        if remap_label_4_to_3:
            labels = (labels - {LEGACY_ET}) | {ET}
        else:
            problems.append(
                f"{path}: label 4 (BraTS 2021-style enhancing tumour); BraTS 2023 uses 3. "
                "Set data.remap_label_4_to_3: true to map 4 -> 3"
            )
    unexpected -= set(non_integer)
    if unexpected:
        remapped = " (label 4 is mapped to 3 by data.remap_label_4_to_3)" if remap_label_4_to_3 else ""
        problems.append(f"{path}: labels {_format_labels(sorted(unexpected))} outside {{0,1,2,3}}{remapped}")
    if labels <= {0}:
        problems.append(f"{path}: no tumour voxels")
    return problems


def _format_labels(values: list[float]) -> str:
    return "[" + ", ".join(f"{value:g}" for value in values) + "]"


def check_brats_case(case: BratsCase, remap_label_4_to_3: bool) -> tuple[list[str], dict]:
    """Check one case; return (problems, manifest row)."""
    problems: list[str] = []
    row: dict = {"case_id": case.case_id, "patient": case.patient, "timepoint": case.timepoint}
    try:
        seg = load_nifti(case.seg)
    except ValueError as error:
        return [str(error)], row
    images = {}
    for modality, path in case.images.items():
        try:
            images[modality] = load_nifti(path)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        return problems, row

    seg_affine_problem = _affine_problem(case.seg, seg)
    if seg_affine_problem:
        problems.append(seg_affine_problem)
    for modality, image in images.items():
        path = case.images[modality]
        problems += _check_image(path, image)
        # A broken affine is reported on its own, not also as a mismatch.
        comparable = seg_affine_problem is None and _affine_problem(path, image) is None
        if image.shape != seg.shape:
            problems.append(f"{case.seg}: shape {seg.shape} differs from {path.name} {image.shape}")
        elif comparable and not np.allclose(image.affine, seg.affine, atol=AFFINE_TOLERANCE_MM):
            problems.append(f"{case.seg}: affine differs from {path.name}")
        row[f"path_{modality}"] = str(path)
    if seg.ndim != 3:
        problems.append(f"{case.seg}: expected a 3-D volume, got shape {seg.shape}")
        return problems, row
    problems += _check_labels(case.seg, seg, remap_label_4_to_3)

    row["path_seg"] = str(case.seg)
    row["shape"] = "x".join(map(str, seg.shape))
    row["spacing_mm"] = "x".join(f"{z:g}" for z in seg.header.get_zooms()[:3])
    return problems, row


def world_box(image: nib.Nifti1Image) -> np.ndarray:
    """The field of view in world coordinates (mm): the [min, max] corner of the
    box around the outer faces of its voxels, shape (2, 3)."""
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in image.shape[:3]])).reshape(3, -1).T
    world = nib.affines.apply_affine(image.affine, corners)
    return np.stack([world.min(axis=0), world.max(axis=0)])


def field_of_view_overlap(image: nib.Nifti1Image, other: nib.Nifti1Image) -> float:
    """The share of the smaller of the two fields of view (world bounding boxes)
    that lies in both."""
    box, other_box = world_box(image), world_box(other)
    common = np.clip(np.minimum(box[1], other_box[1]) - np.maximum(box[0], other_box[0]), 0, None)
    smaller = min(np.prod(box[1] - box[0]), np.prod(other_box[1] - other_box[0]))
    return float(np.prod(common) / smaller)


def _describe(row: dict, image: nib.Nifti1Image, suffix: str = "") -> None:
    row[f"shape{suffix}"] = "x".join(map(str, image.shape))
    row[f"spacing_mm{suffix}"] = "x".join(f"{z:g}" for z in image.header.get_zooms()[:3])


def check_healthy(subject: str, files: Mapping[str, Path]) -> tuple[list[str], dict]:
    """Check one healthy subject (BraTS channel -> scan, t1n its T1); return
    (problems, manifest row).

    Each sequence besides the T1 must also be a scan of the same head in the
    scanner's world coordinates, as the rigid co-registration onto the T1
    starts from there (:func:`tumorfab.preprocess.registration.coregister_to_t1`):
    its field of view must share at least :data:`MIN_FIELD_OF_VIEW_OVERLAP`
    of the smaller one with the T1's.
    """
    t1_path = Path(files[HEALTHY_T1_CHANNEL])
    row = {"subject": subject, "path": str(t1_path)}
    try:
        t1 = load_nifti(t1_path)
    except ValueError as error:
        return [str(error)], row
    problems = _check_image(t1_path, t1)
    if not problems:
        _describe(row, t1)
    for channel, path in files.items():
        if channel == HEALTHY_T1_CHANNEL:
            continue
        path = Path(path)
        row[f"path_{channel}"] = str(path)
        try:
            image = load_nifti(path)
        except ValueError as error:
            problems.append(str(error))
            continue
        found = _check_image(path, image)
        problems += found
        if found or _affine_problem(t1_path, t1) or t1.ndim != 3:
            continue
        _describe(row, image, f"_{channel}")
        overlap = field_of_view_overlap(image, t1)
        if overlap < MIN_FIELD_OF_VIEW_OVERLAP:
            problems.append(
                f"{path}: its field of view shares {overlap:.0%} of the smaller one with its T1 "
                f"{t1_path} in world coordinates (at least {MIN_FIELD_OF_VIEW_OVERLAP:.0%} needed); "
                "each sequence of data.healthy_sequences must be a scan of the same head as its T1, "
                "in the scanner's world coordinates (it is co-registered rigidly)"
            )
    return problems, row


def prepare_manifests(
    cases: list[BratsCase],
    split: dict[str, str],
    healthy: Mapping[str, Mapping[str, Path]],
    remap_label_4_to_3: bool,
    out_cases: str | Path,
    out_healthy: str | Path,
) -> None:
    """Validate every used case and healthy scan; write both manifests.

    ``split`` maps case id -> ``train`` or ``val``; ``healthy`` maps subject ->
    {BraTS channel: scan} (:func:`tumorfab.prepare.cases.discover_healthy`).
    Nothing is written unless every file passes, and then both manifests are
    written atomically.
    """
    problems: list[str] = []
    case_rows = []
    for case in cases:
        found, row = check_brats_case(case, remap_label_4_to_3)
        problems += found
        case_rows.append({**row, "split": split[case.case_id]})
    healthy_rows = []
    for subject, files in healthy.items():
        found, row = check_healthy(subject, files)
        problems += found
        healthy_rows.append(row)
    if problems:
        listing = "\n  ".join(problems)
        raise DataError(f"{len(problems)} problem(s) in the input data:\n  {listing}")

    save_csv(pd.DataFrame(case_rows), out_cases)
    save_csv(pd.DataFrame(healthy_rows), out_healthy)
