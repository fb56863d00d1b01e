"""Finding cases on disk and splitting them by patient (SPEC §1, §2 item 1).

These functions only look at file *names*: they run when Snakemake builds the
DAG, so they must be cheap. Reading and checking the image data is the job of
:mod:`tumorfab.validate`, run by the ``prepare`` rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: BraTS 2023 case folder: ``BraTS-GLI-XXXXX-YYY`` (XXXXX patient, YYY timepoint).
BRATS_CASE = re.compile(r"^BraTS-(?P<task>[A-Z]+)-(?P<patient>\d{5})-(?P<timepoint>\d{3})$")


class DataError(ValueError):
    """Input data or a config value that the study cannot run with."""


@dataclass(frozen=True)
class BratsCase:
    """One BraTS case folder: its image per modality and its segmentation."""

    case_id: str
    patient: str
    timepoint: str
    images: dict[str, Path]
    seg: Path


def patient_of(case_id: str) -> str:
    """Patient part of a BraTS case id: ``BraTS-GLI-00012-001`` -> ``BraTS-GLI-00012``."""
    match = BRATS_CASE.match(case_id)
    if match is None:
        raise DataError(f"{case_id!r} is not a BraTS case id (BraTS-GLI-XXXXX-YYY)")
    return case_id.rsplit("-", 1)[0]


def brats_case_files(root: str | Path, case_id: str, modalities: list[str]) -> BratsCase:
    """The expected files of one case in the BraTS 2023 layout (not checked)."""
    match = BRATS_CASE.match(case_id)
    if match is None:
        raise DataError(f"{case_id!r} is not a BraTS case id (BraTS-GLI-XXXXX-YYY)")
    folder = Path(root) / case_id
    return BratsCase(
        case_id=case_id,
        patient=patient_of(case_id),
        timepoint=match["timepoint"],
        images={m: folder / f"{case_id}-{m}.nii.gz" for m in modalities},
        seg=folder / f"{case_id}-seg.nii.gz",
    )


def discover_brats(root: str | Path, modalities: list[str]) -> list[BratsCase]:
    """All BraTS-layout case folders under ``root``, sorted by id.

    A case folder missing one of the configured modalities or its ``-seg``
    file is an error naming the missing file: silently dropping it would
    change the split without telling anyone.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.brats_root: {root} is not a directory")
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if BRATS_CASE.match(folder.name) is None:
            continue
        case = brats_case_files(root, folder.name, modalities)
        for path in [*case.images.values(), case.seg]:
            if not path.is_file():
                raise DataError(
                    f"{path}: missing file of case {case.case_id} "
                    f"(data.modalities = {modalities} and a -seg file are required)"
                )
        cases.append(case)
    if not cases:
        raise DataError(f"data.brats_root: no BraTS-XXX-XXXXX-YYY case folders in {root}")
    return cases


def healthy_subject_id(path: str | Path) -> str:
    """Subject id of a healthy scan: the file name without ``.nii(.gz)`` and ``-T1``."""
    name = Path(path).name
    name = re.sub(r"\.nii(\.gz)?$", "", name)
    name = re.sub(r"[-_]T1$", "", name)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def discover_healthy(root: str | Path, pattern: str) -> dict[str, Path]:
    """Healthy T1 scans under ``root`` matching ``pattern``: subject id -> path."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.healthy_root: {root} is not a directory")
    found: dict[str, Path] = {}
    for path in sorted(root.glob(pattern)):
        subject = healthy_subject_id(path)
        if subject in found:
            raise DataError(f"{path}: subject id {subject!r} also used by {found[subject]}")
        found[subject] = path
    if not found:
        raise DataError(f"data.healthy_root: no files matching {pattern!r} in {root}")
    return found


def split_by_patient(
    case_ids: list[str], n_train: int, n_val: int, seed: int
) -> tuple[list[str], list[str]]:
    """Seeded split into training and held-out cases, never splitting a patient.

    Patients are shuffled with ``seed``; each patient's cases (all its
    timepoints) go to the training set while they fit in ``n_train`` cases,
    then to the held-out set while they fit in ``n_val``. A patient whose
    timepoints would overshoot a set is skipped for that set, so both sets
    have exactly the requested number of cases. Cases of patients left over
    are not used. Returns sorted case ids.
    """
    by_patient: dict[str, list[str]] = {}
    for case_id in sorted(case_ids):
        by_patient.setdefault(patient_of(case_id), []).append(case_id)
    patients = sorted(by_patient)
    order = np.random.default_rng(seed).permutation(len(patients))

    train: list[str] = []
    val: list[str] = []
    for index in order:
        cases = by_patient[patients[index]]
        if len(train) + len(cases) <= n_train:
            train.extend(cases)
        elif len(val) + len(cases) <= n_val:
            val.extend(cases)
    if len(train) < n_train or len(val) < n_val:
        raise DataError(
            f"split.n_real_train={n_train} and split.n_val={n_val} need "
            f"{n_train + n_val} cases from whole patients, but only {len(case_ids)} "
            f"cases of {len(patients)} patients were found "
            f"(got {len(train)} training and {len(val)} held-out cases); "
            "lower split.n_real_train / split.n_val or add data"
        )
    return sorted(train), sorted(val)
