from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumorfab.preprocess.normalize import brainmask_from_stripped, normalize_intensity, normalize_real_case
from tumorfab.preprocess.settings import NormalizeSettings

from conftest import make_brats_case, write_volume

BRATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "brats" / "BraTS-GLI-00000-000"
NORMALIZE = NormalizeSettings(lower_percentile=0.5, upper_percentile=99.5)


def load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def test_normalized_brain_spans_minus_one_to_one_and_background_is_minus_one():
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 50.0, size=(20, 20, 20)).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[4:16, 4:16, 4:16] = True
    out = normalize_intensity(image, mask, NORMALIZE)
    assert out[mask].min() == -1.0 and out[mask].max() == 1.0
    assert np.all(out[~mask] == -1.0)


def test_real_case_folder_has_image_mask_and_labels(tmp_path):
    folder = make_brats_case(tmp_path / "raw", "BraTS-GLI-00001-000", np.random.default_rng(0))
    normalize_real_case(
        images={"t1n": folder / "BraTS-GLI-00001-000-t1n.nii.gz"},
        seg=folder / "BraTS-GLI-00001-000-seg.nii.gz",
        out_dir=tmp_path / "case",
        settings=NORMALIZE,
        remap_label_4_to_3=False,
    )
    image = nib.load(str(tmp_path / "case" / "t1n.nii.gz")).get_fdata()
    mask = np.asarray(nib.load(str(tmp_path / "case" / "brainmask.nii.gz")).dataobj)
    seg = np.asarray(nib.load(str(tmp_path / "case" / "seg.nii.gz")).dataobj)
    assert image.min() >= -1 and image.max() <= 1
    assert np.all(image[mask == 0] == -1)
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    assert np.all(mask[seg > 0] == 1)


def test_real_brain_mask_and_images_come_from_the_images_not_the_labels(tmp_path):
    folder = make_brats_case(tmp_path / "raw", "BraTS-GLI-00001-000", np.random.default_rng(0))
    image = load(folder / "BraTS-GLI-00001-000-t1n.nii.gz")
    seg = load(folder / "BraTS-GLI-00001-000-seg.nii.gz")
    seg[:, :, :2] = 2  # tumour voxels where the image is 0 (the brain ball starts at z = 2)
    assert (image[:, :, :2] == 0).all()
    outs = {}
    for name, labels in {"tumour_outside": seg, "no_tumour": np.zeros_like(seg)}.items():
        seg_file = write_volume(tmp_path / f"{name}-seg.nii.gz", labels)
        outs[name] = tmp_path / name
        normalize_real_case({"t1n": folder / "BraTS-GLI-00001-000-t1n.nii.gz"}, seg_file, outs[name], NORMALIZE, False)
    mask = load(outs["tumour_outside"] / "brainmask.nii.gz")
    assert np.array_equal(mask, brainmask_from_stripped([image]))
    assert not mask[:, :, :2].any()
    assert (load(outs["tumour_outside"] / "seg.nii.gz")[:, :, :2] == 2).all()
    for file in ("t1n.nii.gz", "brainmask.nii.gz"):
        assert np.array_equal(load(outs["tumour_outside"] / file), load(outs["no_tumour"] / file))


@pytest.mark.skipif(not BRATS.is_dir(), reason=f"{BRATS} is not there (CI has it)")
def test_real_brats_brain_mask_is_plausible_and_holds_the_tumour(tmp_path):
    normalize_real_case(
        {"t1n": BRATS / "BraTS-GLI-00000-000-t1n.nii.gz"}, BRATS / "BraTS-GLI-00000-000-seg.nii.gz", tmp_path, NORMALIZE, False
    )
    mask = nib.load(str(tmp_path / "brainmask.nii.gz"))
    brain = np.asarray(mask.dataobj) > 0
    volume_ml = brain.sum() * float(np.prod(mask.header.get_zooms())) / 1000.0
    assert 1000 <= volume_ml <= 2000
    tumour = load(tmp_path / "seg.nii.gz") > 0
    assert (tumour & ~brain).sum() <= 0.01 * tumour.sum()  # measured: none outside
