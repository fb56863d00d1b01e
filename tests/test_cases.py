from pathlib import Path

import pytest

from tumorfab.cases import DataError, discover_brats, discover_healthy, healthy_subject_id, patient_of, split_by_patient

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
        discover_brats(brats_root, ["t1n"])


def test_discovery_finds_every_case_folder(brats_root: Path):
    assert len(discover_brats(brats_root, ["t1n"])) == 7


def test_healthy_subject_ids_drop_the_modality_suffix(healthy_root: Path):
    assert healthy_subject_id("IXI002-Guys-0828-T1.nii.gz") == "IXI002-Guys-0828"
    assert sorted(discover_healthy(healthy_root, "*.nii.gz")) == [
        "IXI000-Guys-0000", "IXI001-Guys-0001", "IXI002-Guys-0002"
    ]
