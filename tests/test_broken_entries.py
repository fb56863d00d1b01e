"""Broken entries in the data roots (dangling symlinks, symlink loops, no read
permission) are all listed in one message at DAG build, never a raw OSError."""

import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import run_snakemake, study_of, workflow_config
from tumorfab.prepare.cases import DataError, discover_brats, discover_healthy

#: Root reads a file without read permission: chmod alone cannot make one unreadable.
RUNS_AS_ROOT = os.geteuid() == 0


@pytest.fixture
def deny_read(monkeypatch):
    """Makes a path unreadable: chmod 000, and ``os.access`` says so even to
    root, so that the no-read-permission branch runs under any user. The
    permissions are restored for the temporary folder's clean-up."""
    real_access = os.access
    denied: dict[Path, int] = {}

    def access(path, mode, *args, **kwargs):
        if Path(path) in denied:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)

    def deny(path: Path) -> Path:
        denied[path] = path.stat().st_mode
        path.chmod(0)
        return path

    yield deny
    for path, mode in denied.items():
        path.chmod(mode)


def _dangling(link: Path) -> str:
    """``link`` made a symlink to a file that does not exist; its expected reason."""
    target = link.parent / "moved-away.nii.gz"
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    return f"{link}: dangling symlink -> {target}"


def _loop(link: Path) -> str:
    """``link`` made a symlink to itself; its expected reason."""
    link.unlink(missing_ok=True)
    link.symlink_to(link.name)
    return f"{link}: symlink loop"


def _break_brats_root(root: Path, deny_read) -> list[str]:
    """Every kind of broken entry in a BraTS root, at the top and inside case
    folders; returns the line expected for each."""
    unreadable_case = root / "BraTS-GLI-00012-000"
    shutil.copytree(root / "BraTS-GLI-00005-000", unreadable_case)
    unreadable_image = root / "BraTS-GLI-00003-000" / "BraTS-GLI-00003-000-t1n.nii.gz"
    return [
        _dangling(root / "BraTS-GLI-00010-000"),
        _loop(root / "BraTS-GLI-00011-000"),
        _dangling(root / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t1n.nii.gz"),
        _loop(root / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-seg.nii.gz"),
        f"{deny_read(unreadable_case)}: no read permission on the folder",
        f"{deny_read(unreadable_image)}: no read permission",
    ]


def _break_healthy_root(root: Path, deny_read) -> list[str]:
    """Every kind of broken scan in a flat healthy root; returns the line expected for each."""
    return [
        _dangling(root / "IXI010-Guys-0010-T1.nii.gz"),
        _loop(root / "IXI011-Guys-0011-T1.nii.gz"),
        f"{deny_read(root / 'IXI000-Guys-0000-T1.nii.gz')}: no read permission",
    ]


def test_every_broken_entry_of_the_brats_root_is_listed(brats_root, deny_read):
    expected = _break_brats_root(brats_root, deny_read)
    with pytest.raises(DataError, match=rf"{len(expected)} problem\(s\) in data\.brats_root") as error:
        discover_brats(brats_root, ["t1n"], task="GLI")
    for line in expected:
        assert line in str(error.value)


def test_every_broken_scan_of_the_healthy_root_is_listed(healthy_root, deny_read):
    expected = _break_healthy_root(healthy_root, deny_read)
    with pytest.raises(DataError, match=rf"{len(expected)} problem\(s\) in data\.healthy_root") as error:
        discover_healthy(healthy_root, "*.nii.gz")
    for line in expected:
        assert line in str(error.value)


def test_broken_folders_the_healthy_pattern_passes_through_are_listed(tmp_path, deny_read):
    root = tmp_path / "ixi"
    for site in ("Guys", "HH", "IOP"):
        (root / site).mkdir(parents=True)
        (root / site / f"IXI001-{site}-0001-T1.nii.gz").write_bytes(b"")
    expected = [
        f"{deny_read(root / 'IOP')}: no read permission on the folder",
        _dangling(root / "Moved"),
        _loop(root / "Loop"),
    ]
    with pytest.raises(DataError, match=rf"{len(expected)} problem\(s\) in data\.healthy_root") as error:
        discover_healthy(root, "*/*-T1.nii.gz")
    for line in expected:
        assert line in str(error.value)


def test_unreadable_folders_at_any_depth_of_a_double_star_pattern_are_listed(tmp_path, deny_read):
    root = tmp_path / "ixi"
    (root / "Guys" / "2005").mkdir(parents=True)
    (root / "Guys" / "2005" / "IXI001-Guys-0001-T1.nii.gz").write_bytes(b"")
    (root / "HH" / "2006").mkdir(parents=True)
    locked = deny_read(root / "HH" / "2006")
    with pytest.raises(DataError, match=r"1 problem\(s\)") as error:
        discover_healthy(root, "**/*-T1.nii.gz")
    assert f"{locked}: no read permission on the folder" in str(error.value)


def test_a_broken_t1_is_not_also_reported_as_a_missing_t1(tmp_path):
    root = tmp_path / "ixi"
    root.mkdir()
    for sequence in ("T1", "T2"):
        (root / f"IXI001-Guys-0001-{sequence}.nii.gz").write_bytes(b"")
    (root / "IXI002-Guys-0002-T2.nii.gz").write_bytes(b"")
    expected = _dangling(root / "IXI002-Guys-0002-T1.nii.gz")
    with pytest.raises(DataError, match=r"1 problem\(s\)") as error:
        discover_healthy(root, "*-{sequence}.nii.gz", {"t1n": "T1", "t2w": "T2"})
    assert expected in str(error.value)


def test_an_unreadable_data_root_is_named_with_its_key(healthy_root, deny_read):
    root = deny_read(healthy_root)
    with pytest.raises(DataError, match=re.escape(f"data.healthy_root: {root}: no read permission on the folder")):
        discover_healthy(root, "*.nii.gz")


def test_a_dangling_data_root_is_named_with_its_key(tmp_path):
    expected = _dangling(tmp_path / "brats")
    with pytest.raises(DataError, match=re.escape(f"data.brats_root: {expected}")):
        discover_brats(tmp_path / "brats", ["t1n"], task="GLI")


def test_unreadable_plain_files_and_hidden_entries_beside_the_cases_are_ignored(brats_root, deny_read):
    (brats_root / "notes.txt").write_text("not a case")
    deny_read(brats_root / "notes.txt")
    _loop(brats_root / ".BraTS-GLI-00013-000")
    assert len(discover_brats(brats_root, ["t1n"], task="GLI")) == 7


def _real_data_config(brats_root: Path, healthy_root: Path) -> dict:
    return workflow_config(
        data={"brats_root": str(brats_root), "healthy_root": str(healthy_root)},
        split={"n_real_train": 5, "n_val": 2},
    )


def test_the_study_lists_the_broken_entries_of_both_roots_in_one_message(brats_root, healthy_root, deny_read):
    expected = _break_brats_root(brats_root, deny_read) + _break_healthy_root(healthy_root, deny_read)
    with pytest.raises(DataError) as error:
        study_of(_real_data_config(brats_root, healthy_root))
    for line in expected:
        assert line in str(error.value)


def _assert_stops_before_any_job_with(result, expected: list[str]) -> None:
    assert result.returncode != 0
    for line in expected:
        assert line in result.stdout
    assert "Traceback" not in result.stdout
    assert "OSError" not in result.stdout


def test_dry_run_lists_broken_entries_of_both_roots_without_a_traceback(brats_root, healthy_root, tmp_path):
    """The end-to-end test of a data error stopping the DAG build. Root reads files
    without read permission, so unreadable entries are added only for another user
    (the in-process tests above cover that branch under any user)."""
    expected = [
        _dangling(brats_root / "BraTS-GLI-00010-000"),
        _loop(brats_root / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-seg.nii.gz"),
        _dangling(healthy_root / "IXI010-Guys-0010-T1.nii.gz"),
        _loop(healthy_root / "IXI011-Guys-0011-T1.nii.gz"),
    ]
    locked_case = brats_root / "BraTS-GLI-00004-000"
    locked_scan = healthy_root / "IXI001-Guys-0001-T1.nii.gz"
    modes = {} if RUNS_AS_ROOT else {path: path.stat().st_mode for path in (locked_case, locked_scan)}
    for path in modes:
        path.chmod(0)
    try:
        result = run_snakemake(tmp_path / "run", _real_data_config(brats_root, healthy_root), "-n", check=False)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    if modes:
        expected += [f"{locked_case}: no read permission on the folder", f"{locked_scan}: no read permission"]
    _assert_stops_before_any_job_with(result, expected)
