import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import make_brats_case
from tumorfab.prepare.cases import (
    DataError,
    case_id_pattern,
    discover_brats,
    discover_healthy,
    healthy_subject_id,
    patient_of,
    split_by_patient,
)

CASES = [f"BraTS-GLI-{p:05d}-000" for p in range(20)] + [f"BraTS-GLI-{p:05d}-001" for p in range(5)]


def test_split_never_puts_a_patient_on_both_sides():
    train, val = split_by_patient(CASES, 10, 8, seed=3)
    assert not {patient_of(c) for c in train} & {patient_of(c) for c in val}


def test_split_has_the_requested_sizes():
    train, val = split_by_patient(CASES, 10, 8, seed=3)
    assert (len(train), len(val)) == (10, 8)


def test_split_is_seeded():
    assert split_by_patient(CASES, 10, 8, seed=3) == split_by_patient(CASES, 10, 8, seed=3)
    assert split_by_patient(CASES, 10, 8, seed=3) != split_by_patient(CASES, 10, 8, seed=4)


def test_too_few_cases_names_the_config_keys():
    with pytest.raises(DataError, match=r"split\.n_real_train=20 and split\.n_val=10"):
        split_by_patient(CASES, 20, 10, seed=0)


def test_missing_t1n_names_the_file(brats_root: Path):
    missing = brats_root / "BraTS-GLI-00003-000" / "BraTS-GLI-00003-000-t1n.nii.gz"
    missing.unlink()
    with pytest.raises(DataError, match=str(missing)):
        discover_brats(brats_root, ["t1n"], task="GLI")


def test_discovery_finds_every_case_folder(brats_root: Path):
    assert len(discover_brats(brats_root, ["t1n"], task="GLI")) == 7


def test_healthy_subject_ids_drop_the_modality_suffix(healthy_root: Path):
    assert healthy_subject_id("IXI002-Guys-0828-T1.nii.gz") == "IXI002-Guys-0828"
    assert sorted(discover_healthy(healthy_root, "*.nii.gz")) == [
        "IXI000-Guys-0000", "IXI001-Guys-0001", "IXI002-Guys-0002"
    ]


def _copy_case(brats_root: Path, case_id: str, folder_name: str) -> None:
    """A copy of a case folder under another name, its files keeping the case id."""
    shutil.copytree(brats_root / case_id, brats_root / folder_name)


MISNAMED = [
    "BraTS-GLI-00003-000 ",
    "BraTS-GLI-00003-000 copy",
    "BraTS-GLI-0003-000",
    "BraTS-GLI-00003-00",
    "brats-gli-00003-000",
    "case_3",
]


def test_misnamed_case_folders_are_all_named_with_the_fix(brats_root: Path):
    for name in MISNAMED:
        _copy_case(brats_root, "BraTS-GLI-00003-000", name)
    with pytest.raises(DataError, match=rf"{len(MISNAMED)} problem\(s\) in data\.brats_root") as error:
        discover_brats(brats_root, ["t1n"], task="GLI")
    for name in MISNAMED:
        message = f"{str(brats_root / name)!r}: looks like a case folder but is not named BraTS-GLI-XXXXX-YYY"
        assert message in str(error.value)
    assert "rename it to its case id or move it out of data.brats_root" in str(error.value)


def test_misnamed_folders_and_missing_files_are_reported_together(brats_root: Path):
    _copy_case(brats_root, "BraTS-GLI-00003-000", "BraTS-GLI-00003-000 copy")
    missing = brats_root / "BraTS-GLI-00004-000" / "BraTS-GLI-00004-000-seg.nii.gz"
    missing.unlink()
    with pytest.raises(DataError, match=r"2 problem\(s\)") as error:
        discover_brats(brats_root, ["t1n"], task="GLI")
    assert f"{missing}: missing file" in str(error.value)
    assert "BraTS-GLI-00003-000 copy'" in str(error.value)


def test_hidden_and_unrelated_folders_and_files_are_ignored(brats_root: Path):
    _copy_case(brats_root, "BraTS-GLI-00003-000", ".BraTS-GLI-00003-000")
    (brats_root / "notes").mkdir()
    (brats_root / "notes" / "readme.txt").write_text("not a case")
    (brats_root / "BraTS-GLI-00009-000.zip").write_bytes(b"an archive")
    assert len(discover_brats(brats_root, ["t1n"], task="GLI")) == 7


def test_folder_holding_the_case_folders_says_to_point_brats_root_at_it(tmp_path: Path, brats_root: Path):
    with pytest.raises(DataError, match=r"holds BraTS case folders itself; point data\.brats_root at it"):
        discover_brats(tmp_path, ["t1n"], task="GLI")


def test_other_task_folders_are_left_out_with_a_warning(brats_root: Path, caplog):
    rng = np.random.default_rng(5)
    make_brats_case(brats_root, "BraTS-MEN-00010-000", rng)
    for patient in range(5):
        make_brats_case(brats_root, f"BraTS-PED-{patient:05d}-000", rng)
    cases = discover_brats(brats_root, ["t1n"], task="GLI")
    assert len(cases) == 7 and all(c.case_id.startswith("BraTS-GLI-") for c in cases)
    warning = caplog.records[-1]
    assert warning.levelname == "WARNING"
    assert f"data.brats_root: {brats_root} also holds case folders of other BraTS tasks" in warning.message
    assert "data.task is GLI" in warning.message
    assert "1 MEN (BraTS-MEN-00010-000)" in warning.message
    assert "5 PED (BraTS-PED-00000-000, BraTS-PED-00001-000, BraTS-PED-00002-000 and 2 more)" in warning.message


def test_task_selects_its_own_cases(brats_root: Path):
    make_brats_case(brats_root, "BraTS-MEN-00010-000", np.random.default_rng(5))
    cases = discover_brats(brats_root, ["t1n"], task="MEN")
    assert [c.case_id for c in cases] == ["BraTS-MEN-00010-000"]


def test_no_case_of_the_task_names_the_task_and_the_tasks_found(brats_root: Path):
    with pytest.raises(DataError, match=r"no BraTS-PED-XXXXX-YYY case folders in .*data\.task is PED") as error:
        discover_brats(brats_root, ["t1n"], task="PED")
    assert "case folders of tasks ['GLI'] are there" in str(error.value)


def test_case_id_pattern_follows_the_task():
    assert re.fullmatch(case_id_pattern("MEN"), "BraTS-MEN-00012-001")
    assert not re.fullmatch(case_id_pattern("GLI"), "BraTS-MEN-00012-001")
    assert not re.fullmatch(case_id_pattern("GLI"), "BraTS-GLI-0012-001")


# --- healthy subjects with several sequences (data.healthy_sequences) ---------------------

T1_T2 = {"t1n": "T1", "t2w": "T2"}


def _touch(root: Path, *names: str) -> None:
    """Empty files: discovery reads names only."""
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_ixi_t1_t2_and_pd_in_one_folder_make_subjects_of_the_mapped_sequences(tmp_path: Path):
    _touch(tmp_path, "IXI002-Guys-0828-T1.nii.gz", "IXI002-Guys-0828-T2.nii.gz", "IXI002-Guys-0828-PD.nii.gz",
           "IXI012-HH-1211-T1.nii.gz", "IXI012-HH-1211-PD.nii.gz")
    subjects = discover_healthy(tmp_path, "*-{sequence}.nii.gz", T1_T2)
    assert subjects == {
        "IXI002-Guys-0828": {"t1n": tmp_path / "IXI002-Guys-0828-T1.nii.gz", "t2w": tmp_path / "IXI002-Guys-0828-T2.nii.gz"},
        "IXI012-HH-1211": {"t1n": tmp_path / "IXI012-HH-1211-T1.nii.gz"},
    }
    with_pd = discover_healthy(tmp_path, "*-{sequence}.nii.gz", {"t1n": "T1", "t2f": "PD"})
    assert sorted(with_pd["IXI012-HH-1211"]) == ["t1n", "t2f"]


def test_one_folder_per_sequence_as_ixi_downloads_them(tmp_path: Path):
    _touch(tmp_path, "IXI-T1/IXI002-Guys-0828-T1.nii.gz", "IXI-T2/IXI002-Guys-0828-T2.nii.gz",
           "IXI-T1/IXI013-HH-1212-T1.nii.gz")
    subjects = discover_healthy(tmp_path, "IXI-{sequence}/*-{sequence}.nii.gz", T1_T2)
    assert subjects["IXI002-Guys-0828"] == {
        "t1n": tmp_path / "IXI-T1/IXI002-Guys-0828-T1.nii.gz",
        "t2w": tmp_path / "IXI-T2/IXI002-Guys-0828-T2.nii.gz",
    }
    assert list(subjects["IXI013-HH-1212"]) == ["t1n"]


def test_t1_only_is_todays_discovery(healthy_root: Path):
    assert discover_healthy(healthy_root, "*.nii.gz") == discover_healthy(healthy_root, "*-{sequence}.nii.gz")
    assert discover_healthy(healthy_root, "*.nii.gz")["IXI001-Guys-0001"] == {
        "t1n": healthy_root / "IXI001-Guys-0001-T1.nii.gz"
    }


def test_a_scan_whose_subject_has_no_t1_is_named(tmp_path: Path):
    _touch(tmp_path, "IXI002-Guys-0828-T1.nii.gz", "IXI002-Guys-0828-T2.nii.gz", "IXI003-Guys-0829-T2.nii.gz")
    with pytest.raises(DataError, match=r"1 problem\(s\) in data\.healthy_root") as error:
        discover_healthy(tmp_path, "*-{sequence}.nii.gz", T1_T2)
    assert f"{tmp_path / 'IXI003-Guys-0829-T2.nii.gz'}: T2 scan of subject 'IXI003-Guys-0829', which has no T1" in str(
        error.value
    )


def test_a_mapped_sequence_that_no_subject_has_names_its_key(tmp_path: Path):
    _touch(tmp_path, "IXI002-Guys-0828-T1.nii.gz", "IXI002-Guys-0828-T2.nii.gz")
    with pytest.raises(DataError, match=r"data\.healthy_sequences\.t2f: no subject has a FLAIR scan"):
        discover_healthy(tmp_path, "*-{sequence}.nii.gz", {"t1n": "T1", "t2f": "FLAIR"})


def test_another_sequence_without_the_placeholder_names_both_keys(tmp_path: Path):
    _touch(tmp_path, "IXI002-Guys-0828-T1.nii.gz")
    with pytest.raises(DataError, match=r"data\.healthy_sequences\.t2w: data\.healthy_pattern '\*\.nii\.gz' has no"):
        discover_healthy(tmp_path, "*.nii.gz", T1_T2)


def test_a_t2_taken_for_a_t1_by_the_pattern_is_named(tmp_path: Path):
    _touch(tmp_path, "IXI002-Guys-0828-T1.nii.gz", "IXI002-Guys-0828-T2.nii.gz")
    with pytest.raises(DataError, match="named like a scan of another sequence than T1") as error:
        discover_healthy(tmp_path, "*.nii.gz")
    assert str(tmp_path / "IXI002-Guys-0828-T2.nii.gz") in str(error.value)


def test_two_scans_of_one_sequence_and_subject_are_named(tmp_path: Path):
    _touch(tmp_path, "a/IXI002-Guys-0828-T1.nii.gz", "b/IXI002-Guys-0828-T1.nii.gz")
    with pytest.raises(DataError, match=r"subject id 'IXI002-Guys-0828' also used by"):
        discover_healthy(tmp_path, "*/*-{sequence}.nii.gz")


def test_subject_ids_drop_the_sequence_named_at_the_end_only():
    assert healthy_subject_id("IXI002-Guys-0828-T2.nii.gz", "T2") == "IXI002-Guys-0828"
    assert healthy_subject_id("sub-PD01_PD.nii", "PD") == "sub-PD01"
    assert healthy_subject_id("IXI002-Guys-0828.nii.gz", "T2") == "IXI002-Guys-0828"


def test_a_case_lacking_a_configured_channel_names_the_file_and_the_key(brats_root: Path):
    with pytest.raises(DataError, match=r"7 problem\(s\)") as error:
        discover_brats(brats_root, ["t1n", "t2w"], task="GLI")
    missing = brats_root / "BraTS-GLI-00003-000" / "BraTS-GLI-00003-000-t2w.nii.gz"
    assert f"{missing}: missing file of case BraTS-GLI-00003-000: its t2w image, which data.modalities" in str(
        error.value
    )
