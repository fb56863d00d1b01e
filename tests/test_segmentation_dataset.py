"""Images handed to nnU-Net, the raw dataset built from links, an experiment's training set."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from segmentation_fixtures import SYNTHETIC_IDS, TRAIN_IDS, VAL_IDS, make_case, make_study
from tumorfab.segmentation import dataset as ds
from tumorfab.segmentation.preprocessed import build_preprocessed_dataset
from tumorfab.synthesis.manifest import training_cases


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
    raw = sorted(study["raw"].glob("images*/*.nii.gz"))
    synthetic = sorted((study["root"] / "images" / "synthetic").glob("*/t1n.nii.gz"))
    images = [(path.name[: -len("_0000.nii.gz")], path) for path in raw] + [(p.parent.name, p) for p in synthetic]
    assert len(images) == len(TRAIN_IDS) + len(VAL_IDS) + len(SYNTHETIC_IDS)
    for case, path in images:
        source = study["real"].get(case) or study["synthetic_cases"] / case
        brain = np.asarray(nib.load(str(source / "brainmask.nii.gz")).dataobj) > 0
        data = nib.load(str(path)).get_fdata(dtype=np.float32)
        assert np.all(data[~brain] == 0.0), path
        assert np.all(data[brain] >= 1.0), path  # never 0 inside: nnU-Net's crop is the brain


def test_raw_dataset_links_the_real_training_and_held_out_cases(study):
    raw = study["raw"]
    assert raw == study["root"] / "raw" / ds.dataset_name("baseline")
    labels = sorted(p.name for p in (raw / "labelsTr").iterdir())
    assert labels == [f"{c}.nii.gz" for c in sorted(TRAIN_IDS)]  # real cases only
    assert sorted(p.name for p in (raw / "imagesTs").iterdir()) == [f"{c}_0000.nii.gz" for c in VAL_IDS]
    link = raw / "imagesTr" / f"{TRAIN_IDS[0]}_0000.nii.gz"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (study["root"] / "images" / "real" / TRAIN_IDS[0] / "t1n.nii.gz").resolve()
    assert (raw / "labelsTr" / f"{TRAIN_IDS[0]}.nii.gz").resolve() == (study["real"][TRAIN_IDS[0]] / "seg.nii.gz").resolve()


def test_training_set_is_the_real_cases_then_the_manifest_prefix_in_order(study):
    expected = [*TRAIN_IDS, *SYNTHETIC_IDS[:2]]  # first two rows of the manifest, not the sorted ids
    assert training_cases(TRAIN_IDS, study["manifest"], 2) == expected
    assert training_cases(TRAIN_IDS, None, 0) == TRAIN_IDS
    with pytest.raises(ValueError, match="is also a real case id"):
        training_cases([SYNTHETIC_IDS[0]], study["manifest"], 1)


def test_dataset_json_has_brats_regions_in_order(study):
    meta = json.loads((study["raw"] / "dataset.json").read_text())
    assert list(meta["labels"].items()) == [
        ("background", 0),
        ("whole tumor", [1, 2, 3]),
        ("tumor core", [1, 3]),
        ("enhancing tumor", [3]),
    ]
    assert meta["regions_class_order"] == [2, 1, 3]
    assert meta["numTraining"] == len(TRAIN_IDS)
    assert ds.dataset_json(["t1n"], len(TRAIN_IDS) + 2)["numTraining"] == len(TRAIN_IDS) + 2
    assert meta["channel_names"] == {"0": "t1n"}


def test_asking_for_more_synthetic_cases_than_the_manifest_has_names_the_manifest(study, tmp_path):
    with pytest.raises(ValueError, match="manifest.csv: 5 synthetic cases wanted, the manifest has 3"):
        build_preprocessed_dataset(
            tmp_path / "pre", "too_many", tmp_path / "plans.json", tmp_path / "fingerprint.json", ["t1n"],
            TRAIN_IDS, tmp_path / "real", n_synthetic=5, synthetic_manifest=study["manifest"],
            synthetic_preprocessed=tmp_path / "synthetic",
        )
    assert not (tmp_path / "pre").exists()  # nothing half-built left behind


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


FOUR_CHANNELS = ["t1n", "t1c", "t2w", "t2f"]


def _four_channel_case(folder, rng) -> None:
    """A tiny case folder with four channels: t1n, then each other channel its own offset of it."""
    make_case(folder, rng, shape=(16, 16, 16))
    t1n = nib.load(str(folder / "t1n.nii.gz"))
    brain = np.asarray(nib.load(str(folder / "brainmask.nii.gz")).dataobj) > 0
    for offset, channel in enumerate(FOUR_CHANNELS[1:], start=1):
        image = np.where(brain, np.clip(t1n.get_fdata(dtype=np.float32) + 0.1 * offset, -1, 1), -1).astype(np.float32)
        nib.save(nib.Nifti1Image(image, t1n.affine), str(folder / f"{channel}.nii.gz"))


def test_a_four_channel_dataset_passes_nnunet_s_integrity_check(tmp_path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme

    rng = np.random.default_rng(0)
    train, held_out = TRAIN_IDS[:2], VAL_IDS[:1]
    for case in [*train, *held_out]:
        _four_channel_case(tmp_path / "real" / case, rng)
        ds.convert_real_case(tmp_path / "real" / case, tmp_path / "images" / case, FOUR_CHANNELS)
    raw = ds.build_raw_dataset(
        tmp_path / "raw", "baseline", FOUR_CHANNELS, train, held_out, tmp_path / "images", tmp_path / "real"
    )
    meta = json.loads((raw / "dataset.json").read_text())
    assert list(meta["channel_names"].items()) == [("0", "t1n"), ("1", "t1c"), ("2", "t2w"), ("3", "t2f")]
    # nnU-Net z-scores every channel of ours (inside the brain: the plan's use_mask_for_norm).
    assert {get_normalization_scheme(c).__name__ for c in FOUR_CHANNELS} == {"ZScoreNormalization"}
    for folder, cases in (("imagesTr", train), ("imagesTs", held_out)):
        for case in cases:
            for index, channel in enumerate(FOUR_CHANNELS):
                link = raw / folder / f"{case}_{index:04d}.nii.gz"
                assert link.resolve() == (tmp_path / "images" / case / f"{channel}.nii.gz").resolve()
    assert len(list((raw / "imagesTr").iterdir())) == 4 * len(train)
    verify_dataset_integrity(str(raw), num_processes=1)
