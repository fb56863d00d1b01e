"""A fabricated cohort handed out: in the BraTS 2023 layout and as an nnU-Net raw dataset.

A cohort (``<cases_dir>/<case_id>/`` case folders, docs/architecture.md, and
the source's ``manifest.csv``) lives on the pipeline's scale: every channel in
[-1, 1], -1 outside the brain. Neither paper says how synthetic cases should
look to someone outside the pipeline; this is our interpretation.

**BraTS layout** (:func:`export_brats`): the images go back to the real
cases' intensity scale, so that a cohort can stand in for (or be fed back as)
a BraTS download. A real case was normalized (``tumorfab.preprocess.normalize``)
per channel by ``y = 2 x / (ceiling x white_matter) - 1``, clipped to [-1, 1],
with ``white_matter`` its median inside the T1's fuzzy c-means white matter and
``ceiling`` the configured ``normalize.ceiling_over_white_matter``. A synthetic
case has no raw scale of its own, so the inverse takes the *median over the
real training cases* of their white-matter levels (:func:`intensity_scale`:
the typical case's scale, robust to one scanner's odd gain)::

    raw = (y + 1) / 2 x ceiling x white_matter    inside the brain mask, clipped at >= 0
    raw = 0                                       outside (BraTS stores its background as 0)

Intensities a real case had above ``ceiling x white_matter`` were clipped to
+1 by the normalization and come back at that value. Images are float32, the
labels uint8 {0, 1, 2, 3}, on the reference BraTS case's grid and affine.
Every header is made new (:func:`fresh_header`): no field carries the text of
a subject a case was made from (a healthy scan's or the reference case's
``descrip`` and the like).

**nnU-Net** (:func:`export_nnunet`): the images as the study's nnU-Net saw
them (``tumorfab.segmentation.dataset.to_nnunet_image``: brain ``y + 2``,
exactly 0 outside) with the study's ``dataset.json`` (channel names, the
region-based BraTS labels, ``regions_class_order``), so a user's nnU-Net
trains on what ours did; optionally with the study's real training case
folders added. The files are written out rather than linked as the study's
own raw dataset does (``write_raw_dataset``): an export must stand alone.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from tumorfab.casefolder import load_case
from tumorfab.io import atomic_directory, load_nifti, save_csv, save_nifti, save_text
from tumorfab.preprocess.normalize import TISSUE_CHANNEL, brainmask_from_stripped, white_matter, white_matter_level
from tumorfab.preprocess.settings import NormalizeSettings
from tumorfab.segmentation.dataset import FILE_ENDING, dataset_json, to_nnunet_image
from tumorfab.synthesis.manifest import manifest_case_ids

#: The keys of one channel's entry in an intensity scale.
SCALE_KEYS = ("white_matter", "ceiling")
#: ``descrip`` of every exported file, in place of whatever its source carried.
DESCRIPTION = "tumorfab fabricated cohort export"
#: BraTS tasks are upper-case letters (``data.task``'s schema pattern, and
#: ``tumorfab.prepare.cases.BRATS_CASE``), so an exported folder can be fed back.
BRATS_PREFIX = re.compile(r"^[A-Z]+$")
#: BraTS case ids have a 5-digit patient number.
MAX_BRATS_CASES = 100_000
#: The timepoint of every exported case: each is a patient of its own.
BRATS_TIMEPOINT = "000"
#: Shapes are equal and affines within this many mm of the reference
#: (``tumorfab.prepare.validate.AFFINE_TOLERANCE_MM``: BraTS headers differ in rounding only).
AFFINE_TOLERANCE_MM = 1e-3
#: The table of an exported BraTS folder: case id -> BraTS id.
BRATS_CASES_CSV = "cases.csv"
#: nnU-Net dataset ids have three digits; names are used in folder names.
NNUNET_DATASET_IDS = range(1, 1000)
NNUNET_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def _cohort_key(cohort: str, key: str) -> str:
    """The config key ``key`` of a cohort's export, for messages."""
    return f"fabricate.cohorts.{cohort}.export.{key}"


def intensity_scale(
    real_cases: Sequence[Mapping[str, str | os.PathLike]], settings: NormalizeSettings
) -> dict[str, dict[str, float]]:
    """The real cases' intensity scale: ``{channel: {"white_matter": ..., "ceiling": ...}}``.

    ``real_cases`` are the raw real training cases (BraTS channel -> its
    skull-stripped NIfTI), all with the same channels, the T1 among them.
    Each case's brain mask and white matter are found as its normalization
    finds them (``brainmask_from_stripped``, ``white_matter`` of its T1);
    ``white_matter`` is the median over the cases of the channel's level
    there, ``ceiling`` the channel's ``settings.ceiling`` (see the module
    docstring for how an export uses them).
    """
    if not real_cases:
        raise ValueError("no real cases to take the intensity scale from")
    channels = list(real_cases[0])
    if TISSUE_CHANNEL not in channels:
        raise ValueError(
            f"{real_cases[0]}: no {TISSUE_CHANNEL} among the channels {channels}; the white matter every "
            "channel is measured in comes from the T1"
        )
    levels: dict[str, list[float]] = {channel: [] for channel in channels}
    for case in real_cases:
        if sorted(case) != sorted(channels):
            raise ValueError(f"{case}: channels {sorted(case)} differ from the first case's {sorted(channels)}")
        images = {channel: load_nifti(case[channel]).get_fdata(dtype=np.float32) for channel in channels}
        shapes = {channel: image.shape for channel, image in images.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"{case}: its channels have different shapes {shapes}")
        try:
            white = white_matter(images[TISSUE_CHANNEL], brainmask_from_stripped(list(images.values())))
            for channel, image in images.items():
                levels[channel].append(white_matter_level(image, white, channel))
        except ValueError as error:
            raise ValueError(f"{case[TISSUE_CHANNEL]}: {error}") from error
    return {
        channel: {"white_matter": float(np.median(values)), "ceiling": settings.ceiling(channel)}
        for channel, values in levels.items()
    }


def _checked_scale(scale: Mapping, where: str) -> dict[str, dict[str, float]]:
    """``scale`` (:func:`intensity_scale`'s form) with every entry checked; errors name ``where``."""
    if not isinstance(scale, Mapping) or not scale:
        raise ValueError(f"{where}: an intensity scale maps channels to {list(SCALE_KEYS)}, got {scale!r}")
    checked = {}
    for channel, entry in scale.items():
        if not isinstance(entry, Mapping) or sorted(entry) != sorted(SCALE_KEYS):
            raise ValueError(f"{where}: {channel} must have exactly the keys {list(SCALE_KEYS)}, got {entry!r}")
        values = {}
        for key in SCALE_KEYS:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{where}: {channel}.{key} must be a positive number, got {value!r}")
            values[key] = float(value)
        checked[str(channel)] = values
    return checked


def save_intensity_scale(scale: Mapping[str, Mapping[str, float]], path: str | os.PathLike) -> None:
    """Write an intensity scale (:func:`intensity_scale`) as JSON, atomically."""
    save_text(json.dumps(_checked_scale(scale, str(path)), indent=2) + "\n", path)


def load_intensity_scale(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Read an intensity scale written by :func:`save_intensity_scale`, checked."""
    try:
        scale = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the intensity scale ({error})") from error
    return _checked_scale(scale, str(path))


def to_raw_intensity(image: np.ndarray, brainmask: np.ndarray, white_matter_level: float, ceiling: float) -> np.ndarray:
    """A pipeline image (``[-1, 1]``) on the real cases' scale: ``(y + 1) / 2 x ceiling x
    white_matter_level`` inside ``brainmask``, clipped at >= 0; exactly 0 outside (float32)."""
    image = np.asarray(image, dtype=np.float64)
    inside = np.asarray(brainmask).astype(bool)
    raw = np.clip((image + 1.0) / 2.0 * (ceiling * white_matter_level), 0.0, None)
    return np.where(inside, raw, 0.0).astype(np.float32)


def fresh_header(affine: np.ndarray, dtype: type | np.dtype) -> nib.Nifti1Header:
    """A new NIfTI header for ``affine`` and ``dtype``: qform and sform from the
    affine (code 1, scanner), mm, ``descrip`` :data:`DESCRIPTION`; every other
    text field (``aux_file``, ``intent_name``, ``db_name``) empty, as new."""
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_xyzt_units("mm")
    header["descrip"] = DESCRIPTION.encode()
    return header


def _save_fresh(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``data`` atomically with a header of its own (:func:`fresh_header`), none inherited."""
    save_nifti(data, affine, path, header=fresh_header(affine, data.dtype))


def brats_case_id(prefix: str, index: int) -> str:
    """The BraTS id of the ``index``-th exported case, e.g. ``BraTS-SYN-00003-000``."""
    return f"BraTS-{prefix}-{index:05d}-{BRATS_TIMEPOINT}"


def _cohort_case_ids(manifest: str | os.PathLike) -> list[str]:
    ids = manifest_case_ids(manifest)
    if not ids:
        raise ValueError(f"{manifest}: the manifest lists no cases; nothing to export")
    return ids


def export_brats(
    cases_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    prefix: str,
    channels: Sequence[str],
    scale: Mapping[str, Mapping[str, float]],
    reference_image: str | os.PathLike,
    *,
    cohort: str,
) -> pd.DataFrame:
    """Write the cohort as a BraTS 2023 folder; returns its ``cases.csv`` table.

    The manifest's cases, in its order, become ``out_dir/BraTS-<prefix>-<NNNNN>-000/``
    (NNNNN = 00000, 00001, ...), holding ``BraTS-<prefix>-<NNNNN>-000-<channel>.nii.gz``
    (float32, on the real scale ``scale`` of :func:`intensity_scale`, see
    the module docstring) and ``...-seg.nii.gz`` (uint8 {0, 1, 2, 3}), all
    with the affine of ``reference_image`` (a real BraTS NIfTI) and fresh
    headers (:func:`fresh_header`). ``out_dir/cases.csv`` maps ``case_id``
    to ``brats_id``. ``out_dir`` is built whole, then renamed. A case
    whose shape differs from the reference's, or whose affine does by more
    than :data:`AFFINE_TOLERANCE_MM`, is refused naming it; ``prefix`` (the
    ``data.task`` of a study that reads the folder back) must be upper-case
    letters, else the error names the key of cohort ``cohort``.
    """
    if not isinstance(prefix, str) or not BRATS_PREFIX.match(prefix):
        raise ValueError(
            f"{_cohort_key(cohort, 'brats_prefix')} must be upper-case letters ({BRATS_PREFIX.pattern}, "
            f"a BraTS task as data.task), got {prefix!r}"
        )
    scale = _checked_scale(scale, "the intensity scale")
    missing = [channel for channel in channels if channel not in scale]
    if missing:
        raise ValueError(f"the intensity scale has no {missing} (it has {sorted(scale)})")
    ids = _cohort_case_ids(manifest)
    if len(ids) > MAX_BRATS_CASES:
        raise ValueError(f"{manifest}: {len(ids)} cases, more than BraTS's 5-digit ids hold ({MAX_BRATS_CASES})")
    reference = load_nifti(reference_image)
    rows = []
    with atomic_directory(out_dir) as tmp:
        for index, case_id in enumerate(ids):
            case_dir = Path(cases_dir) / case_id
            case = load_case(case_dir, channels)
            if case.brainmask.shape != reference.shape:
                raise ValueError(
                    f"{case_dir}: case {case_id} has shape {case.brainmask.shape}, the reference "
                    f"{reference_image} {reference.shape}"
                )
            if not np.allclose(case.affine, reference.affine, atol=AFFINE_TOLERANCE_MM):
                raise ValueError(
                    f"{case_dir}: case {case_id} is not on the grid of the reference {reference_image} "
                    f"(affines differ by up to {np.abs(case.affine - reference.affine).max():.3g} mm, "
                    f"more than {AFFINE_TOLERANCE_MM:g})"
                )
            brats_id = brats_case_id(prefix, index)
            folder = tmp / brats_id
            for channel in channels:
                raw = to_raw_intensity(
                    case.images[channel], case.brainmask, scale[channel]["white_matter"], scale[channel]["ceiling"]
                )
                _save_fresh(raw, reference.affine, folder / f"{brats_id}-{channel}.nii.gz")
            _save_fresh(case.seg.astype(np.uint8), reference.affine, folder / f"{brats_id}-seg.nii.gz")
            rows.append({"case_id": case_id, "brats_id": brats_id})
        table = pd.DataFrame(rows, columns=["case_id", "brats_id"])
        save_csv(table, tmp / BRATS_CASES_CSV)
    return table


def nnunet_dataset_folder(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name of a dataset, e.g. ``Dataset901_glioma_small``."""
    return f"Dataset{dataset_id:03d}_{name}"


def _write_nnunet_case(case_dir: Path, case_name: str, dataset_dir: Path, channels: Sequence[str]) -> None:
    """One training case of an nnU-Net raw dataset, converted as the study converts its cases."""
    case = load_case(case_dir, channels)
    for index, channel in enumerate(channels):
        image = to_nnunet_image(case.images[channel], case.brainmask)
        _save_fresh(image, case.affine, dataset_dir / "imagesTr" / f"{case_name}_{index:04d}{FILE_ENDING}")
    _save_fresh(case.seg.astype(np.uint8), case.affine, dataset_dir / "labelsTr" / f"{case_name}{FILE_ENDING}")


def export_nnunet(
    cases_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    raw_root: str | os.PathLike,
    dataset_id: int,
    name: str,
    channels: Sequence[str],
    real_case_dirs: Sequence[str | os.PathLike] = (),
    *,
    cohort: str,
) -> Path:
    """Write the cohort as the nnU-Net raw dataset ``raw_root/Dataset<id:03d>_<name>/``; returns it.

    ``imagesTr/<case>_<XXXX>.nii.gz`` (channel ``XXXX`` of ``channels``, as
    ``to_nnunet_image`` makes them), ``labelsTr/<case>.nii.gz`` (uint8 BraTS
    labels) and the study's ``dataset.json`` (``dataset_json``), with fresh
    headers (:func:`fresh_header`). The cases are the manifest's, under
    their case ids, then the real case folders ``real_case_dirs`` (the
    study's normalized real training cases, never held-out ones) under
    their folder names, which must differ from the synthetic ids. The
    dataset folder is built whole, then renamed. ``dataset_id`` (1..999,
    no other dataset of that id in ``raw_root``) and ``name`` (letters,
    digits, ``_``) are checked, the errors naming cohort ``cohort``'s key.
    """
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or dataset_id not in NNUNET_DATASET_IDS:
        raise ValueError(
            f"{_cohort_key(cohort, 'nnunet_dataset_id')} must be an integer in 1..999 (nnU-Net's "
            f"3-digit dataset ids), got {dataset_id!r}"
        )
    if not isinstance(name, str) or not NNUNET_NAME.match(name):
        raise ValueError(
            f"fabricate.cohorts.{cohort}: the nnU-Net dataset name {name!r} must be letters, digits and _ "
            f"({NNUNET_NAME.pattern})"
        )
    folder = nnunet_dataset_folder(dataset_id, name)
    taken = sorted(p.name for p in Path(raw_root).glob(f"Dataset{dataset_id:03d}_*") if p.name != folder)
    if taken:
        raise ValueError(
            f"{_cohort_key(cohort, 'nnunet_dataset_id')}: {raw_root} already holds dataset id {dataset_id} "
            f"as {taken}; nnU-Net finds a dataset by its id, so choose another id"
        )
    synthetic = {case_id: Path(cases_dir) / case_id for case_id in _cohort_case_ids(manifest)}
    real = {Path(case_dir).name: Path(case_dir) for case_dir in real_case_dirs}
    if len(real) != len(real_case_dirs):
        raise ValueError(f"real case folders with the same name: {sorted(map(str, real_case_dirs))}")
    clashes = sorted(set(real) & set(synthetic))
    if clashes:
        raise ValueError(f"real case folders named like synthetic cases of {manifest}: {clashes[:5]}")
    cases = {**synthetic, **real}
    with atomic_directory(Path(raw_root) / folder) as tmp:
        for case_name, case_dir in cases.items():
            _write_nnunet_case(case_dir, case_name, tmp, channels)
        save_text(json.dumps(dataset_json(channels, len(cases)), indent=2) + "\n", tmp / "dataset.json")
    return Path(raw_root) / folder
