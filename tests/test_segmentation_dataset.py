"""Images handed to nnU-Net and the raw datasets built from links."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from segmentation_fixtures import SYNTHETIC_IDS, TRAIN_IDS, VAL_IDS, make_case, make_study
from tumorfab.segmentation import dataset as ds


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("seg_dataset"), shape=(32, 32, 32))


def test_to_nnunet_image_is_shifted_in_the_brain_and_exactly_zero_outside():
    image = np.array([[-1.0, -1.0], [0.5, -1.0]], np.float32)  # -1 is also a valid brain value
    mask = np.array([[0, 1], [1, 0]], np.uint8)
    out = ds.to_nnunet_image(image, mask)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.0, 1.0], [2.5, 0.0]])


def test_every_image_handed_to_nnunet_has_background_exactly_zero(study):
    images = sorted(study["raw_syn"].glob("images*/*.nii.gz")) + sorted(study["raw_baseline"].glob("images*/*.nii.gz"))
    assert len(images) == 2 * (len(TRAIN_IDS) + len(VAL_IDS)) + 2
    for path in images:
        case = path.name[: -len("_0000.nii.gz")]
        source = study["real"].get(case) or study["synthetic_cases"] / case
        brain = np.asarray(nib.load(str(source / "brainmask.nii.gz")).dataobj) > 0
        data = nib.load(str(path)).get_fdata(dtype=np.float32)
        assert np.all(data[~brain] == 0.0), path
        assert np.all(data[brain] >= 1.0), path  # never 0 inside: nnU-Net's crop is the brain


def test_raw_dataset_links_real_cases_then_the_manifest_prefix_in_order(study):
    raw = study["raw_syn"]
    labels = sorted(p.name for p in (raw / "labelsTr").iterdir())
    expected = sorted([*TRAIN_IDS, *SYNTHETIC_IDS[:2]])  # first two rows of the manifest, not the sorted ids
    assert labels == [f"{c}.nii.gz" for c in expected]
    assert sorted(p.name for p in (raw / "imagesTs").iterdir()) == [f"{c}_0000.nii.gz" for c in VAL_IDS]
    link = raw / "imagesTr" / f"{SYNTHETIC_IDS[0]}_0000.nii.gz"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (study["root"] / "images" / "synthetic" / SYNTHETIC_IDS[0] / "t1n.nii.gz").resolve()
    assert (raw / "labelsTr" / f"{TRAIN_IDS[0]}.nii.gz").resolve() == (study["real"][TRAIN_IDS[0]] / "seg.nii.gz").resolve()


def test_dataset_json_has_brats_regions_in_order(study):
    meta = json.loads((study["raw_syn"] / "dataset.json").read_text())
    assert list(meta["labels"].items()) == [
        ("background", 0),
        ("whole tumor", [1, 2, 3]),
        ("tumor core", [1, 3]),
        ("enhancing tumor", [3]),
    ]
    assert meta["regions_class_order"] == [2, 1, 3]
    assert meta["numTraining"] == len(TRAIN_IDS) + 2
    assert meta["channel_names"] == {"0": "t1n"}


def test_asking_for_more_synthetic_cases_than_the_manifest_has_names_the_manifest(study, tmp_path):
    with pytest.raises(ValueError, match="manifest.csv: 5 synthetic cases wanted, the manifest has 3"):
        ds.build_raw_dataset(
            tmp_path / "raw", "too_many", ["t1n"], TRAIN_IDS, VAL_IDS,
            study["root"] / "images" / "real", study["root"] / "real", n_synthetic=5,
            synthetic_manifest=study["manifest"], synthetic_image_root=study["root"] / "images" / "synthetic",
            synthetic_cases_root=study["synthetic_cases"],
        )
    assert not (tmp_path / "raw").exists()  # nothing half-built left behind


def test_converted_case_keeps_the_geometry(tmp_path):
    case = make_case(tmp_path / "case", np.random.default_rng(0), shape=(16, 18, 20), spacing=2.5)
    (out,) = ds.convert_case(case, tmp_path / "out", ["t1n"])
    original, converted = nib.load(str(case / "t1n.nii.gz")), nib.load(str(out))
    np.testing.assert_array_equal(original.affine, converted.affine)
    assert converted.shape == (16, 18, 20)


def test_atomic_directory_is_not_private_and_leaves_nothing_on_error(tmp_path):
    with ds.atomic_directory(tmp_path / "done") as tmp:
        (tmp / "a.txt").write_text("x")
    assert (tmp_path / "done" / "a.txt").exists()
    assert (tmp_path / "done").stat().st_mode & 0o055 == 0o055 & ~_umask()  # readable beyond the owner
    with pytest.raises(RuntimeError):
        with ds.atomic_directory(tmp_path / "failed") as tmp:
            (tmp / "a.txt").write_text("x")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
