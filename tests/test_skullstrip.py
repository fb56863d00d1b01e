import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.processing import resample_to_output
from scipy.spatial.transform import Rotation

import tumorfab.preprocess.skullstrip as skullstrip_module
from helpers.write_random_synthstrip_weights import write_random_weights
from tumorfab.preprocess.settings import SkullstripSettings
from tumorfab.preprocess.skullstrip import load_synthstrip, skullstrip

REAL_HEAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "healthy" / "chris_t1.nii.gz"


def test_synthstrip_runs_with_a_weights_file_loaded_safely(healthy_root, tmp_path):
    weights = tmp_path / "synthstrip.pt"
    write_random_weights(str(weights))
    scan = healthy_root / "IXI000-Guys-0000-T1.nii.gz"
    result = skullstrip(
        scan, tmp_path / "t1n.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "qc.png", tmp_path / "refused.png",
        SkullstripSettings(str(weights), method="synthstrip", border_mm=1.0, atlas_transform="SyN", brain_volume_ml=(0.001, 1e6)),
        seed=0, threads=2,
    )
    mask = np.asarray(nib.load(str(tmp_path / "mask.nii.gz")).dataobj)
    stripped = nib.load(str(tmp_path / "t1n.nii.gz")).get_fdata()
    assert result["method"] == "synthstrip"
    assert mask.shape == nib.load(str(scan)).shape and mask.any()
    assert np.all(stripped[mask == 0] == 0)


def test_weights_file_with_pickled_code_is_refused(tmp_path):
    weights = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {}, "payload": object()}, weights)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_synthstrip(weights, torch.device("cpu"))


def test_missing_weights_file_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="skullstrip.synthstrip_weights"):
        load_synthstrip(tmp_path / "nope.pt", torch.device("cpu"))


@pytest.fixture(scope="module")
def coarse_real_head(tmp_path_factory) -> Path:
    """A real head with skull and neck (../shared/data/real) at 3 mm, its
    voxel axes permuted and flipped (PIL), turned by 25° and 10° and moved
    ~110 mm in world space: the atlas method's full path in a few seconds,
    on a pose no scanner default gives."""
    if not REAL_HEAD.is_file():
        pytest.skip(f"{REAL_HEAD} is not there (CI has it)")
    coarse = resample_to_output(nib.load(str(REAL_HEAD)), (3, 3, 3), order=1)
    to_pil = nib.orientations.ornt_transform(nib.io_orientation(coarse.affine), nib.orientations.axcodes2ornt("PIL"))
    posed = coarse.as_reoriented(to_pil)
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("xz", [25, 10], degrees=True).as_matrix()
    pose[:3, 3] = [40, -60, 80]
    path = tmp_path_factory.mktemp("coarse") / "head.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(posed.dataobj, dtype=np.float32), pose @ posed.affine), str(path))
    return path


def _atlas(head: Path, out: Path, volume_range=(900, 2000)) -> dict:
    return skullstrip(
        head, out / "t1n.nii.gz", out / "brainmask.nii.gz", out / "qc.png", failure_qc=out / "refused.png",
        settings=SkullstripSettings(None, method="atlas", border_mm=1.0, atlas_transform="SyN", brain_volume_ml=volume_range), seed=5,
    )


def test_atlas_skull_stripping_of_a_posed_head_is_plausible_and_byte_identical_twice(
    coarse_real_head, tmp_path, monkeypatch
):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    first, second = _atlas(coarse_real_head, tmp_path / "a"), _atlas(coarse_real_head, tmp_path / "b")
    assert not list(scratch.iterdir()), "ANTs left its transforms in the temporary folder"
    assert 1000 <= first["brain_volume_ml"] <= 1800
    assert first == second
    for name in ("t1n.nii.gz", "brainmask.nii.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_implausible_brain_volume_stops_naming_the_scan_and_writes_nothing(coarse_real_head, tmp_path, monkeypatch):
    # A mask that caught a scalp strip: 27 voxels of 27 ml.
    def scalp_strip(image, type_of_transform, seed):
        mask = np.zeros(image.shape, np.uint8)
        mask[:3, :3, :3] = 1
        return mask

    monkeypatch.setattr(skullstrip_module, "atlas_mask", scalp_strip)
    with pytest.raises(ValueError, match=r"head\.nii\.gz: the atlas brain mask is 1 ml, outside .*skullstrip\.brain_volume_ml = \[900, 2000\]"):
        _atlas(coarse_real_head, tmp_path)
    assert (tmp_path / "refused.png").is_file()
    assert not any((tmp_path / name).exists() for name in ("t1n.nii.gz", "brainmask.nii.gz", "qc.png"))
