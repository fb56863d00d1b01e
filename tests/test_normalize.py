import nibabel as nib
import numpy as np

from tumorfab.normalize import normalize_intensity, normalize_real_case

from conftest import make_brats_case


def test_normalized_brain_spans_minus_one_to_one_and_background_is_minus_one():
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 50.0, size=(20, 20, 20)).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[4:16, 4:16, 4:16] = True
    out = normalize_intensity(image, mask, 0.5, 99.5)
    assert out[mask].min() == -1.0 and out[mask].max() == 1.0
    assert np.all(out[~mask] == -1.0)


def test_real_case_folder_has_image_mask_and_labels(tmp_path):
    folder = make_brats_case(tmp_path / "raw", "BraTS-GLI-00001-000", np.random.default_rng(0))
    normalize_real_case(
        images={"t1n": folder / "BraTS-GLI-00001-000-t1n.nii.gz"},
        seg=folder / "BraTS-GLI-00001-000-seg.nii.gz",
        out_dir=tmp_path / "case",
        lower_percentile=0.5,
        upper_percentile=99.5,
    )
    image = nib.load(str(tmp_path / "case" / "t1n.nii.gz")).get_fdata()
    mask = np.asarray(nib.load(str(tmp_path / "case" / "brainmask.nii.gz")).dataobj)
    seg = np.asarray(nib.load(str(tmp_path / "case" / "seg.nii.gz")).dataobj)
    assert image.min() >= -1 and image.max() <= 1
    assert np.all(image[mask == 0] == -1)
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    assert np.all(mask[seg > 0] == 1)
