"""Finding cases on disk and splitting them by patient (paper 002 §3.1.1: real
training cases and held-out cases of BraTS 2023, healthy IXI scans).

These functions only look at file *names* and ``stat``/``os.access``: they
run when Snakemake builds the DAG, so they must be cheap. Reading and checking
the image data is the job of :mod:`tumorfab.prepare.validate`, run by the
``prepare`` rule.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Mapping

import numpy as np

log = logging.getLogger(__name__)

#: BraTS 2023 case folder: ``BraTS-GLI-XXXXX-YYY`` (task GLI, XXXXX patient, YYY timepoint).
BRATS_CASE = re.compile(r"^BraTS-(?P<task>[A-Z]+)-(?P<patient>\d{5})-(?P<timepoint>\d{3})$")
#: Case folders of other tasks named in the warning, per task.
N_NAMED_OTHER_TASK = 3


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


def unreadable_reason(path: Path) -> str | None:
    """Why the entry ``path`` of a data folder cannot be used, or None: a
    dangling symlink, a symlink loop, no read permission (a folder also needs
    ``x`` to be listed), or another error of ``stat``. A path that does not
    exist at all is None: whether it should is the caller's question.

    Only ``stat``, ``readlink`` and ``os.access``, nothing is opened: a shared
    folder of thousands of scans is checked this way at every DAG build.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"dangling symlink -> {os.readlink(path)}; restore its target or remove the link"
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop; point the link at a real file or folder, or remove it"
        return f"cannot be looked up ({error.strerror})"
    if stat.S_ISDIR(mode):
        if not os.access(path, os.R_OK | os.X_OK):
            return "no read permission on the folder (it needs r and x: chmod a+rx, or ask its owner)"
    elif not os.access(path, os.R_OK):
        return "no read permission (chmod a+r, or ask its owner)"
    return None


def case_id_pattern(task: str) -> str:
    """Regex of the case ids of BraTS task ``task`` (``data.task``): the ``{case}`` wildcard."""
    return rf"BraTS-{task}-\d{{5}}-\d{{3}}"


def patient_of(case_id: str) -> str:
    """Patient part of a BraTS case id: ``BraTS-GLI-00012-001`` -> ``BraTS-GLI-00012``."""
    match = BRATS_CASE.match(case_id)
    if match is None:
        raise DataError(f"{case_id!r} is not a BraTS case id (BraTS-TASK-XXXXX-YYY)")
    return case_id.rsplit("-", 1)[0]


def brats_case_files(root: str | Path, case_id: str, modalities: list[str]) -> BratsCase:
    """The expected files of one case in the BraTS 2023 layout (not checked)."""
    match = BRATS_CASE.match(case_id)
    if match is None:
        raise DataError(f"{case_id!r} is not a BraTS case id (BraTS-TASK-XXXXX-YYY)")
    folder = Path(root) / case_id
    return BratsCase(
        case_id=case_id,
        patient=patient_of(case_id),
        timepoint=match["timepoint"],
        images={m: folder / f"{case_id}-{m}.nii.gz" for m in modalities},
        seg=folder / f"{case_id}-seg.nii.gz",
    )


def _check_root(root: Path, key: str) -> None:
    """The data root of config key ``key``: a folder that can be listed."""
    reason = unreadable_reason(root)
    if reason is not None:
        raise DataError(f"{key}: {root}: {reason}")
    if not root.is_dir():
        raise DataError(f"{key}: {root} is not a directory")


def _case_file_problems(path: Path, missing: str) -> list[str]:
    """The problem of a case's file, if any: broken (:func:`unreadable_reason`), or ``missing``."""
    reason = unreadable_reason(path)
    if reason is None and not path.is_file():
        reason = missing
    return [] if reason is None else [f"{path}: {reason}"]


def _looks_like_case(folder: Path) -> bool:
    """A folder meant as a case: "brats" in its name (any case) or a segmentation inside."""
    return "brats" in folder.name.lower() or any(folder.glob("*seg.nii*"))


def _misnamed(folder: Path, task: str) -> str:
    """The problem of a folder that looks like a case but is not named like one."""
    if any(BRATS_CASE.match(p.name) for p in folder.iterdir()):
        return (
            f"{str(folder)!r}: holds BraTS case folders itself; "
            "point data.brats_root at it or move it out of data.brats_root"
        )
    return (
        f"{str(folder)!r}: looks like a case folder but is not named BraTS-{task}-XXXXX-YYY "
        "exactly (5-digit patient, 3-digit timepoint, no spaces or suffixes); "
        "rename it to its case id or move it out of data.brats_root"
    )


def _warn_other_tasks(root: Path, task: str, other: dict[str, list[str]]) -> None:
    """One warning, naming a few folders per task: a download may hold thousands."""
    named = []
    for other_task, names in sorted(other.items()):
        more = len(names) - N_NAMED_OTHER_TASK
        examples = ", ".join(names[:N_NAMED_OTHER_TASK]) + (f" and {more} more" if more > 0 else "")
        named.append(f"{len(names)} {other_task} ({examples})")
    log.warning(
        f"data.brats_root: {root} also holds case folders of other BraTS tasks, left out "
        f"because data.task is {task}: {'; '.join(named)}"
    )


def discover_brats(root: str | Path, modalities: list[str], task: str) -> list[BratsCase]:
    """The case folders of BraTS task ``task`` (``data.task``) under ``root``, sorted by id.

    Nothing that looks like a case is dropped silently: that would change the
    split without telling anyone. Errors, all listed at once: a case folder
    missing one of the configured modalities or its ``-seg`` file, and a
    folder that looks like a case ("brats" in its name in any letter case, or
    a ``*seg.nii*`` file inside) but is not named ``BraTS-<task>-XXXXX-YYY``
    exactly (a trailing space, " copy", wrong digit counts, lower case...).
    The latter is an error, not a warning, because only the user knows the
    fix: rename it to its case id, or move it out of ``root``. Case folders
    of other tasks (a BraTS download may hold GLI, MEN, PED, SSA and MET side
    by side) are left out with a warning naming them. Hidden folders
    (``.snakemake``, macOS metadata), plain files and other folders are ignored.
    Broken entries are errors too (:func:`unreadable_reason`): a dangling
    symlink or symlink loop in ``root`` (it may have been a case folder), a
    folder that cannot be listed (it may hold a case) and a case's file.
    """
    root = Path(root)
    _check_root(root, "data.brats_root")
    cases = []
    problems = []
    other_tasks: dict[str, list[str]] = {}
    for entry in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        reason = unreadable_reason(entry)
        # A plain file is no case: an unreadable one is ignored like the others.
        if reason is not None and not entry.is_file():
            problems.append(f"{entry}: {reason}")
            continue
        if not entry.is_dir():
            continue
        folder = entry
        match = BRATS_CASE.match(folder.name)
        if match is None:
            if _looks_like_case(folder):
                problems.append(_misnamed(folder, task))
            continue
        if match["task"] != task:
            other_tasks.setdefault(match["task"], []).append(folder.name)
            continue
        case = brats_case_files(root, folder.name, modalities)
        for modality, path in case.images.items():
            problems += _case_file_problems(
                path,
                f"missing file of case {case.case_id}: its {modality} image, which "
                f"data.modalities = {modalities} asks for (add it, or leave {modality} out of data.modalities)",
            )
        problems += _case_file_problems(
            case.seg, f"missing file of case {case.case_id}: its labels (-seg), which every case needs"
        )
        cases.append(case)
    if other_tasks:
        _warn_other_tasks(root, task, other_tasks)
    if problems:
        listing = "\n  ".join(problems)
        raise DataError(f"{len(problems)} problem(s) in data.brats_root {root}:\n  {listing}")
    if not cases:
        found = f"; case folders of tasks {sorted(other_tasks)} are there" if other_tasks else ""
        raise DataError(
            f"data.brats_root: no BraTS-{task}-XXXXX-YYY case folders in {root} "
            f"(data.task is {task}{found})"
        )
    return cases


#: The BraTS channel a healthy subject's T1 stands in for; every subject has it
#: and every other sequence of the subject is aligned to it.
HEALTHY_T1_CHANNEL = "t1n"
#: ``data.healthy_sequences`` by default: the T1 only (paper 002 §3.1.1, IXI T1).
DEFAULT_HEALTHY_SEQUENCES = {HEALTHY_T1_CHANNEL: "T1"}
#: Where ``data.healthy_pattern`` names the sequence.
SEQUENCE_PLACEHOLDER = "{sequence}"
#: Endings of IXI's other sequences: a pattern without the placeholder that
#: matches one of them would take that scan for a T1.
OTHER_IXI_SEQUENCE = re.compile(r"[-_](T2|PD|MRA|DTI)$")


def healthy_subject_id(path: str | Path, sequence: str = "T1") -> str:
    """Subject id of a healthy scan: the file name without ``.nii(.gz)`` and a
    trailing ``-<sequence>`` (or ``_<sequence>``), e.g. ``IXI002-Guys-0828-T2.nii.gz``
    -> ``IXI002-Guys-0828`` for the sequence ``T2``."""
    name = Path(path).name
    name = re.sub(r"\.nii(\.gz)?$", "", name)
    name = re.sub(rf"[-_]{re.escape(sequence)}$", "", name)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _sequence_globs(pattern: str, sequences: Mapping[str, str]) -> dict[str, str]:
    """The glob of each channel's files: ``pattern`` with the channel's sequence
    name in place of ``{sequence}``; without the placeholder every match is a T1."""
    if SEQUENCE_PLACEHOLDER in pattern:
        return {channel: pattern.replace(SEQUENCE_PLACEHOLDER, name) for channel, name in sequences.items()}
    extra = [channel for channel in sequences if channel != HEALTHY_T1_CHANNEL]
    if extra:
        raise DataError(
            f"data.healthy_sequences.{extra[0]}: data.healthy_pattern {pattern!r} has no "
            f"{SEQUENCE_PLACEHOLDER} placeholder, so every file it matches is taken as a T1; "
            f"write {SEQUENCE_PLACEHOLDER} where the file names carry the sequence "
            f'(IXI: "*-{SEQUENCE_PLACEHOLDER}.nii.gz")'
        )
    return {HEALTHY_T1_CHANNEL: pattern}


def _real_subfolders(folder: Path) -> Iterator[Path]:
    """``folder`` and every folder below it, as Path.glob's ``**`` walks them:
    symlinked folders are not followed, one that cannot be listed is not entered."""
    yield folder
    try:
        entries = list(folder.iterdir())
    except OSError:
        return  # the caller reports it (unreadable_reason)
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            yield from _real_subfolders(entry)


def _broken_glob_folders(root: Path, glob: str) -> dict[Path, str]:
    """The broken entries (:func:`unreadable_reason`) among the folders that
    ``glob`` passes through under ``root``, each with its reason. Path.glob
    skips such a folder without a word, and every scan inside with it; the
    folders are matched as it matches them (each part a case-sensitive
    wildcard, ``**`` any depth)."""
    broken: dict[Path, str] = {}
    folders = [root]
    for part in PurePosixPath(glob).parts[:-1]:
        reached = []
        for folder in folders:
            if part == "**":
                candidates = list(_real_subfolders(folder))
            else:
                candidates = [entry for entry in folder.iterdir() if fnmatch.fnmatchcase(entry.name, part)]
            for candidate in candidates:
                reason = unreadable_reason(candidate)
                if reason is not None and not candidate.is_file():
                    broken[candidate] = reason
                elif candidate.is_dir():
                    reached.append(candidate)
        folders = reached
    return broken


def discover_healthy(
    root: str | Path, pattern: str, sequences: Mapping[str, str] = DEFAULT_HEALTHY_SEQUENCES
) -> dict[str, dict[str, Path]]:
    """Healthy subjects under ``root``: subject id -> {BraTS channel: file}, sorted by id.

    ``sequences`` is ``data.healthy_sequences`` (BraTS channel -> the sequence
    name in the file names, t1n -> the T1 required); ``pattern`` is
    ``data.healthy_pattern``, a glob under ``root`` in which ``{sequence}``
    stands for a sequence name (IXI: ``"*-{sequence}.nii.gz"``, or
    ``"IXI-{sequence}/*-{sequence}.nii.gz"`` for one folder per sequence).
    Without ``{sequence}`` every match is a T1. A subject is its T1 and
    whatever other configured sequence has the same subject id
    (:func:`healthy_subject_id`); its channels follow the order of
    ``sequences``. Errors, all listed at once: two files of one sequence
    with the same subject id, a scan of another sequence whose subject has
    no T1, a configured sequence that no subject has, (without the
    placeholder) a match named like another IXI sequence, and broken entries
    (:func:`unreadable_reason`): a match, or a folder the pattern passes
    through, that is a dangling symlink, a symlink loop or unreadable.
    """
    root = Path(root)
    _check_root(root, "data.healthy_root")
    globs = _sequence_globs(pattern, sequences)
    problems = []
    broken: dict[Path, str] = {}
    found: dict[str, dict[str, Path]] = {}
    # Subjects per channel whose file is broken: already reported, so not also
    # reported as a subject without its T1 or a sequence without scans.
    unreadable: dict[str, set[str]] = {}
    for channel, glob in globs.items():
        found[channel] = {}
        unreadable[channel] = set()
        broken.update(_broken_glob_folders(root, glob))
        for path in sorted(root.glob(glob)):
            subject = healthy_subject_id(path, sequences[channel])
            reason = unreadable_reason(path)
            if reason is not None:
                broken[path] = reason
                unreadable[channel].add(subject)
            elif subject in found[channel]:
                problems.append(f"{path}: subject id {subject!r} also used by {found[channel][subject]}")
            elif SEQUENCE_PLACEHOLDER not in pattern and OTHER_IXI_SEQUENCE.search(subject):
                problems.append(
                    f"{path}: named like a scan of another sequence than T1, but data.healthy_pattern "
                    f"{pattern!r} takes every match for a T1; narrow it (\"*-T1.nii.gz\") or use "
                    f"{SEQUENCE_PLACEHOLDER} with data.healthy_sequences"
                )
            else:
                found[channel][subject] = path
    problems = [f"{path}: {reason}" for path, reason in sorted(broken.items())] + problems
    t1 = found[HEALTHY_T1_CHANNEL]
    if not t1 and not problems:
        raise DataError(f"data.healthy_root: no files matching {globs[HEALTHY_T1_CHANNEL]!r} in {root}")
    for channel, files in found.items():
        if channel == HEALTHY_T1_CHANNEL:
            continue
        if not files and not unreadable[channel]:
            problems.append(
                f"data.healthy_sequences.{channel}: no subject has a {sequences[channel]} scan "
                f"(no file matches {globs[channel]!r} in {root})"
            )
        for subject, path in files.items():
            if subject not in t1 and subject not in unreadable[HEALTHY_T1_CHANNEL]:
                problems.append(
                    f"{path}: {sequences[channel]} scan of subject {subject!r}, which has no T1 "
                    f"(no file matching {globs[HEALTHY_T1_CHANNEL]!r} with that subject id); "
                    f"every healthy subject needs its T1 (data.healthy_sequences.{HEALTHY_T1_CHANNEL})"
                )
    if problems:
        listing = "\n  ".join(problems)
        raise DataError(f"{len(problems)} problem(s) in data.healthy_root {root}:\n  {listing}")
    return {
        subject: {channel: found[channel][subject] for channel in globs if subject in found[channel]}
        for subject in sorted(t1)
    }


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
