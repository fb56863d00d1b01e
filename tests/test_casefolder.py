"""The case folder contract (tumorfab.casefolder): names, reading, writing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tumorfab.casefolder import (
    BRAINMASK,
    SEG,
    Case,
    case_file,
    load_case,
    read_brainmask,
    read_seg,
    save_case,
)

SHAPE = (6, 7, 8)
AFFINE = np.array([[1.5, 0, 0, -10.0], [0, 2.0, 0, 4.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1]])


def make_case(with_seg: bool = True) -> Case:
    rng = np.random.default_rng(0)
    brainmask = np.zeros(SHAPE, np.uint8)
    brainmask[1:5, 1:6, 1:7] = 1
    image = np.where(brainmask > 0, rng.uniform(-1, 1, SHAPE), -1.0).astype(np.float32)
    seg = None
    if with_seg:
        seg = np.zeros(SHAPE, np.uint8)
        seg[2:4, 2:4, 2:5] = [[[2, 3, 1]]]
    return Case({"t1n": image, "t2f": -image}, brainmask, seg, AFFINE)


def test_file_names():
    assert case_file("cases/x", "t1n").as_posix() == "cases/x/t1n.nii.gz"
    assert case_file("cases/x", BRAINMASK).name == "brainmask.nii.gz"
    assert case_file("cases/x", SEG).name == "seg.nii.gz"


def test_round_trip_keeps_dtypes_values_and_affine(tmp_path):
    case = make_case()
    save_case(case, tmp_path / "case")
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == [
        "brainmask.nii.gz", "seg.nii.gz", "t1n.nii.gz", "t2f.nii.gz",
    ]
    assert nib.load(tmp_path / "case" / "t1n.nii.gz").get_data_dtype() == np.float32
    assert nib.load(tmp_path / "case" / "brainmask.nii.gz").get_data_dtype() == np.uint8
    assert nib.load(tmp_path / "case" / "seg.nii.gz").get_data_dtype() == np.uint8
    read = load_case(tmp_path / "case", ["t1n", "t2f"])
    for modality in ("t1n", "t2f"):
        assert read.images[modality].dtype == np.float32
        np.testing.assert_array_equal(read.images[modality], case.images[modality])
    assert read.brainmask.dtype == np.uint8 and read.seg.dtype == np.uint8
    np.testing.assert_array_equal(read.brainmask, case.brainmask)
    np.testing.assert_array_equal(read.seg, case.seg)
    np.testing.assert_allclose(read.affine, AFFINE)
    assert read.zooms == (1.5, 2.0, 2.5)
    assert read.stacked(["t2f", "t1n"]).shape == (2, *SHAPE)
    # Writing what was read gives the same files.
    save_case(read, tmp_path / "again")
    for name in ("t1n", "t2f", BRAINMASK, SEG):
        assert case_file(tmp_path / "again", name).read_bytes() == case_file(tmp_path / "case", name).read_bytes()


def test_a_healthy_folder_has_no_seg_and_reads_without_it(tmp_path):
    save_case(make_case(with_seg=False), tmp_path / "healthy")
    assert not case_file(tmp_path / "healthy", SEG).exists()
    read = load_case(tmp_path / "healthy", ["t1n"], with_seg=False)
    assert read.seg is None and read.brainmask.sum() == 4 * 5 * 6
    np.testing.assert_allclose(read.affine, AFFINE)
    with pytest.raises(ValueError, match="seg.nii.gz"):
        load_case(tmp_path / "healthy", ["t1n"])


def test_a_bad_label_value_is_rejected_naming_the_file(tmp_path):
    case = make_case()
    case.seg[0, 0, 0] = 4
    save_case(case, tmp_path / "case")
    seg_file = case_file(tmp_path / "case", SEG)
    with pytest.raises(ValueError, match=rf"{seg_file}: values \[4\.\] outside \(0, 1, 2, 3\)"):
        read_seg(tmp_path / "case")
    with pytest.raises(ValueError, match="seg.nii.gz"):
        load_case(tmp_path / "case", ["t1n"])


def test_a_brain_mask_other_than_zero_and_one_is_rejected_naming_the_file(tmp_path):
    case = make_case()
    case.brainmask[case.brainmask > 0] = 255
    save_case(case, tmp_path / "case")
    with pytest.raises(ValueError, match=r"brainmask.nii.gz: values \[255\.\] outside \(0, 1\)"):
        read_brainmask(tmp_path / "case")


def test_volumes_of_different_shapes_are_rejected(tmp_path):
    case = make_case()
    save_case(case, tmp_path / "case")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), AFFINE), str(case_file(tmp_path / "case", SEG)))
    with pytest.raises(ValueError, match="different shapes"):
        load_case(tmp_path / "case", ["t1n"])
