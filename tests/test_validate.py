from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumorfab.cases import DataError, discover_brats, discover_healthy
from tumorfab.validate import prepare_manifests


def _prepare(brats_root: Path, healthy_root: Path, out: Path, remap: bool = False):
    cases = discover_brats(brats_root, ["t1n"])
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
