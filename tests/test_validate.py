from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumorfab.prepare.cases import DataError, discover_brats, discover_healthy
from tumorfab.prepare.validate import prepare_manifests


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
