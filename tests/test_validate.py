from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tumorfab.prepare.cases import DataError, discover_brats, discover_healthy
from tumorfab.prepare.validate import field_of_view_overlap, prepare_manifests


def _prepare(brats_root: Path, healthy_root: Path, out: Path, remap: bool = False):
    cases = discover_brats(brats_root, ["t1n"], task="GLI")
    prepare_manifests(
        cases=cases,
        split={c.case_id: "train" for c in cases},
        healthy=discover_healthy(healthy_root, "*.nii.gz"),
        remap_label_4_to_3=remap,
        out_cases=out / "cases.csv",
        out_healthy=out / "healthy.csv",
    )


def _rewrite(path: Path, change) -> None:
    image = nib.load(str(path))
    data = change(np.asarray(image.dataobj).copy())
    nib.save(nib.Nifti1Image(data, image.affine), str(path))


SEG = "BraTS-GLI-00002-000/BraTS-GLI-00002-000-seg.nii.gz"
T1N = "BraTS-GLI-00002-000/BraTS-GLI-00002-000-t1n.nii.gz"


def _label_4(seg):
    seg[seg == 3] = 4
    return seg


def test_valid_data_gives_both_manifests(brats_root, healthy_root, tmp_path):
    _prepare(brats_root, healthy_root, tmp_path)
    assert (tmp_path / "cases.csv").read_text().count("BraTS-GLI-") >= 7
    assert (tmp_path / "healthy.csv").exists()


def test_label_4_is_rejected_with_file_name_and_option(brats_root, healthy_root, tmp_path):
    _rewrite(brats_root / SEG, _label_4)
    with pytest.raises(DataError, match=r"BraTS-GLI-00002-000-seg\.nii\.gz: label 4.*data\.remap_label_4_to_3"):
        _prepare(brats_root, healthy_root, tmp_path)
    assert not (tmp_path / "cases.csv").exists()


def test_label_4_is_accepted_when_remapping(brats_root, healthy_root, tmp_path):
    _rewrite(brats_root / SEG, _label_4)
    _prepare(brats_root, healthy_root, tmp_path, remap=True)


def test_nan_voxels_are_rejected_with_file_name(brats_root, healthy_root, tmp_path):
    def add_nan(image):
        image[3, 3, 3] = np.nan
        return image

    _rewrite(brats_root / T1N, add_nan)
    with pytest.raises(DataError, match=r"-t1n\.nii\.gz: 1 NaN/inf voxels"):
        _prepare(brats_root, healthy_root, tmp_path)
    assert not (tmp_path / "healthy.csv").exists()


def test_shape_mismatch_is_rejected_with_file_name(brats_root, healthy_root, tmp_path):
    _rewrite(brats_root / SEG, lambda seg: seg[:-2])
    with pytest.raises(DataError, match=r"-seg\.nii\.gz: shape \(22, 24, 24\) differs"):
        _prepare(brats_root, healthy_root, tmp_path)


def test_unreadable_file_is_rejected_with_file_name(brats_root, healthy_root, tmp_path):
    (brats_root / T1N).write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match=r"-t1n\.nii\.gz: cannot read NIfTI"):
        _prepare(brats_root, healthy_root, tmp_path)


def test_every_problem_is_reported_at_once(brats_root, healthy_root, tmp_path):
    _rewrite(brats_root / SEG, _label_4)
    (healthy_root / "IXI001-Guys-0001-T1.nii.gz").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"2 problem\(s\)"):
        _prepare(brats_root, healthy_root, tmp_path)


def _set_sform(path: Path, sform: np.ndarray) -> None:
    """Write ``sform`` into the header as nibabel's chosen affine (sform_code 1)."""
    image = nib.load(str(path))
    header = image.header.copy()
    header.set_sform(sform, code=1)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), None, header), str(path))


def test_nan_in_seg_is_reported_with_file_name_and_the_rest_checked(brats_root, healthy_root, tmp_path):
    def add_nan_and_label_4(seg):
        seg = _label_4(seg).astype(np.float32)
        seg[0, 0, 0] = np.nan
        seg[0, 0, 1] = np.inf
        return seg

    _rewrite(brats_root / SEG, add_nan_and_label_4)
    with pytest.raises(DataError, match=r"2 problem\(s\)") as error:
        _prepare(brats_root, healthy_root, tmp_path)
    assert f"{brats_root / SEG}: 2 NaN/inf voxels" in str(error.value)
    assert f"{brats_root / SEG}: label 4" in str(error.value)


HEALTHY = "IXI001-Guys-0001-T1.nii.gz"


@pytest.mark.parametrize("name", [SEG, T1N, HEALTHY])
def test_all_zero_sform_is_rejected_as_singular_with_file_name(brats_root, healthy_root, tmp_path, name):
    path = (healthy_root if name == HEALTHY else brats_root) / name
    _set_sform(path, np.zeros((4, 4)))
    with pytest.raises(DataError, match=r"1 problem\(s\)") as error:
        _prepare(brats_root, healthy_root, tmp_path)
    assert f"{path}: affine is singular" in str(error.value)
    assert "from the header's sform" in str(error.value)
    assert not (tmp_path / "cases.csv").exists()


def test_non_finite_affine_is_rejected_with_file_name(brats_root, healthy_root, tmp_path):
    sform = np.eye(4)
    sform[0, 3] = np.nan
    _set_sform(brats_root / T1N, sform)
    with pytest.raises(DataError, match=r"1 problem\(s\)") as error:
        _prepare(brats_root, healthy_root, tmp_path)
    assert f"{brats_root / T1N}: affine has NaN/inf entries" in str(error.value)


def _labels_4_and_5(seg):
    seg = _label_4(seg)
    seg[seg == 2] = 5
    return seg


def test_label_5_is_named_when_label_4_is_remapped(brats_root, healthy_root, tmp_path):
    _rewrite(brats_root / SEG, _labels_4_and_5)
    with pytest.raises(DataError, match=r"1 problem\(s\)") as error:
        _prepare(brats_root, healthy_root, tmp_path, remap=True)
    assert f"{brats_root / SEG}: labels [5] outside {{0,1,2,3}}" in str(error.value)
    assert "Set data.remap_label_4_to_3" not in str(error.value)


def test_label_5_and_label_4_are_both_named_without_remapping(brats_root, healthy_root, tmp_path):
    _rewrite(brats_root / SEG, _labels_4_and_5)
    with pytest.raises(DataError, match=r"2 problem\(s\)") as error:
        _prepare(brats_root, healthy_root, tmp_path)
    assert f"{brats_root / SEG}: label 4 (BraTS 2021-style" in str(error.value)
    assert f"{brats_root / SEG}: labels [5] outside {{0,1,2,3}}" in str(error.value)


# --- a healthy subject's other sequences --------------------------------------------------

T1_T2 = {"t1n": "T1", "t2w": "T2"}


def _add_t2(healthy_root: Path, subject: str, data: np.ndarray | None = None, affine: np.ndarray | None = None) -> Path:
    """A T2 beside the subject's T1: its head on another grid (2 mm voxels,
    the first and last axes swapped), or ``data``/``affine`` as given."""
    t1 = nib.load(str(healthy_root / f"{subject}-T1.nii.gz"))
    if affine is None:
        affine = np.array([[0, 0, 2.0, 0], [0, 2.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])
    if data is None:
        data = 100 - np.asarray(t1.dataobj)[::2, ::2, ::2].transpose(2, 1, 0)
    path = healthy_root / f"{subject}-T2.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    return path


def _prepare_t1_t2(brats_root: Path, healthy_root: Path, out: Path):
    cases = discover_brats(brats_root, ["t1n"], task="GLI")
    prepare_manifests(
        cases=cases,
        split={c.case_id: "train" for c in cases},
        healthy=discover_healthy(healthy_root, "*-{sequence}.nii.gz", T1_T2),
        remap_label_4_to_3=False,
        out_cases=out / "cases.csv",
        out_healthy=out / "healthy.csv",
    )


def test_a_t2_on_its_own_grid_over_the_same_head_passes(brats_root, healthy_root, tmp_path):
    t2 = _add_t2(healthy_root, "IXI001-Guys-0001")
    _prepare_t1_t2(brats_root, healthy_root, tmp_path)
    manifest = pd.read_csv(tmp_path / "healthy.csv")
    row = manifest.set_index("subject").loc["IXI001-Guys-0001"]
    assert row.path_t2w == str(t2) and row.spacing_mm_t2w == "2x2x2"
    assert manifest.set_index("subject").path_t2w.isna().sum() == 2  # the others are T1 only


def test_a_t2_whose_field_of_view_misses_its_t1_is_named(brats_root, healthy_root, tmp_path):
    far = np.diag([2.0, 2.0, 2.0, 1.0])
    far[:3, 3] = [400.0, 0.0, 0.0]
    t2 = _add_t2(healthy_root, "IXI001-Guys-0001", affine=far)
    with pytest.raises(DataError, match=r"1 problem\(s\)") as error:
        _prepare_t1_t2(brats_root, healthy_root, tmp_path)
    assert f"{t2}: its field of view shares 0% of the smaller one with its T1" in str(error.value)
    assert "must be a scan of the same head as its T1, in the scanner's world coordinates" in str(error.value)
    assert not (tmp_path / "healthy.csv").exists()


def test_a_t2_that_is_not_3d_is_named(brats_root, healthy_root, tmp_path):
    t2 = _add_t2(healthy_root, "IXI001-Guys-0001", data=np.ones((8, 8, 8, 3)), affine=np.eye(4))
    with pytest.raises(DataError, match=r"1 problem\(s\)") as error:
        _prepare_t1_t2(brats_root, healthy_root, tmp_path)
    assert f"{t2}: expected a 3-D volume, got shape (8, 8, 8, 3)" in str(error.value)


def test_the_field_of_view_overlap_is_a_share_of_the_smaller_one():
    big = nib.Nifti1Image(np.zeros((10, 10, 10)), np.eye(4))
    half_outside = np.eye(4)
    half_outside[0, 3] = 5.0
    small = nib.Nifti1Image(np.zeros((10, 10, 10)), half_outside)
    assert field_of_view_overlap(big, small) == pytest.approx(0.5)
    assert field_of_view_overlap(big, big) == pytest.approx(1.0)
