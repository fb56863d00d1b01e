from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers.schema_defaults import schema_defaults

from tumorfab.demo.cohort import make_demo_cohort
from tumorfab.preprocess.normalize import (
    brainmask_from_stripped,
    normalize_intensity,
    normalize_real_case,
    white_matter_peak,
)
from tumorfab.preprocess.settings import NormalizeSettings

from conftest import make_brats_case, write_volume

BRATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "brats" / "BraTS-GLI-00000-000"
NORMALIZE = NormalizeSettings.from_config(schema_defaults()["normalize"])
SHAPE = (40, 40, 40)
CHANNELS = ("t1n", "t1c", "t2w", "t2f")


def load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def percentile_normalized(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The former normalization (brain's 0.5-99.5th percentiles -> [-1, 1]), for comparison."""
    low, high = np.percentile(image[brain], [0.5, 99.5])
    return np.where(brain, (np.clip(image, low, high) - low) / (high - low) * 2.0 - 1.0, -1.0)


def brain_phantom(channel: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ball of brain: white matter (level 100) and grey matter (T1 darker,
    T2/FLAIR brighter) in random voxels, 2 % noise; returns image, brain, WM."""
    grid = np.indices(SHAPE) - np.array(SHAPE)[:, None, None, None] / 2
    brain = (grid**2).sum(0) <= 18**2
    white = rng.random(SHAPE) < 0.5
    grey_level = {"t1n": 75.0, "t1c": 78.0, "t2w": 140.0, "t2f": 120.0}[channel]
    image = np.where(white, 100.0, grey_level) * (1 + 0.02 * rng.standard_normal(SHAPE))
    return np.where(brain, image, 0.0).astype(np.float32), brain, white & brain


def with_bright_tumour(image: np.ndarray, brain: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``image`` with a heterogeneous tumour 1.8-3 x white matter in the
    brain's first 10 % of voxels (along the first axis), as enhancing tumour
    on t1c and oedema/necrosis on T2 and FLAIR."""
    order = np.argsort(np.where(brain, np.indices(SHAPE)[0], np.inf), axis=None)
    tumour = np.zeros(SHAPE, bool)
    tumour.flat[order[: int(0.10 * brain.sum())]] = True
    out = image.copy()
    out[tumour] = rng.uniform(180.0, 300.0, tumour.sum())
    return out, tumour


@pytest.mark.parametrize("channel", CHANNELS)
def test_white_matter_peak_is_the_white_matter_level_on_every_sequence(channel):
    image, brain, _ = brain_phantom(channel, np.random.default_rng(0))
    assert white_matter_peak(image[brain], channel) == pytest.approx(100.0, rel=0.02)


@pytest.mark.parametrize("channel", ["t1c", "t2w", "t2f"])
def test_healthy_tissue_keeps_its_value_beside_a_bright_tumour_and_did_not_with_percentiles(channel):
    rng = np.random.default_rng(1)
    image, brain, white = brain_phantom(channel, rng)
    tumorous, tumour = with_bright_tumour(image, brain, rng)
    healthy_white = white & ~tumour

    new = [normalize_intensity(x, brain, channel, NORMALIZE)[healthy_white].mean() for x in (image, tumorous)]
    old = [percentile_normalized(x, brain)[healthy_white].mean() for x in (image, tumorous)]
    assert abs(new[0] - new[1]) < 0.01
    assert abs(old[0] - old[1]) > 0.1  # the former normalization moved white matter with the tumour


def test_white_matter_peak_is_found_in_the_demo_phantom_at_the_demo_s_voxel_size(tmp_path):
    """At 3 mm (config/demo.yaml). White matter, independently of the peak
    finder: the non-tumour brain in the brightest 3-7 % of t1n (below the
    brightest 3 %: enhancing rim and partial volume)."""
    case = "BraTS-GLI-00000-000"
    make_demo_cohort(
        tmp_path / "brats", tmp_path / "ixi", n_patients=1, n_second_timepoint=0, n_healthy=1, voxel_mm=3.0, seed=7,
        modalities=CHANNELS,
    )
    images = {c: load(tmp_path / "brats" / case / f"{case}-{c}.nii.gz").astype(np.float32) for c in CHANNELS}
    seg = load(tmp_path / "brats" / case / f"{case}-seg.nii.gz")
    brain = brainmask_from_stripped(list(images.values())).astype(bool)
    healthy = brain & (seg == 0)
    low, high = np.percentile(images["t1n"][healthy], [93, 97])
    white = healthy & (images["t1n"] > low) & (images["t1n"] < high)
    for channel, image in images.items():
        assert white_matter_peak(image[brain], channel) == pytest.approx(np.median(image[white]), rel=0.05), channel


def test_white_matter_maps_to_the_ceiling_s_value_per_sequence_and_zero_to_minus_one():
    for channel in CHANNELS:
        image, brain, white = brain_phantom(channel, np.random.default_rng(2))
        out = normalize_intensity(image, brain, channel, NORMALIZE)
        expected = 2.0 / NORMALIZE.ceiling(channel) - 1.0
        assert np.median(out[white]) == pytest.approx(expected, abs=0.02), channel
        image[brain & ~white] = 0.0  # zero signal inside the brain maps to -1
        assert np.all(normalize_intensity(image, brain, channel, NORMALIZE)[brain & ~white] == -1.0)


def test_output_is_float32_in_range_clipped_bright_and_minus_one_outside_the_brain():
    rng = np.random.default_rng(3)
    image, brain, _ = brain_phantom("t1n", rng)
    image[~brain] = rng.uniform(0, 500, (~brain).sum())  # skull and scalp left in the image
    image[tuple(np.array(SHAPE) // 2)] = 1e6  # a vessel far above the ceiling
    out = normalize_intensity(image, brain, "t1n", NORMALIZE)
    assert out.dtype == np.float32
    assert out.min() >= -1.0 and out.max() == 1.0
    assert np.all(out[~brain] == -1.0)


def test_normalization_is_deterministic():
    image, brain, _ = brain_phantom("t2f", np.random.default_rng(4))
    first = normalize_intensity(image, brain, "t2f", NORMALIZE)
    assert np.array_equal(first, normalize_intensity(image.copy(), brain.copy(), "t2f", NORMALIZE))


def test_ceiling_is_per_sequence():
    image, brain, white = brain_phantom("t1n", np.random.default_rng(5))
    settings = NormalizeSettings.from_config({"ceiling_over_white_matter": {"t1n": 2.0, "t1c": 4.0}})
    for channel, expected in (("t1n", 0.0), ("t1c", -0.5)):
        out = normalize_intensity(image, brain, channel, settings)
        assert np.median(out[white]) == pytest.approx(expected, abs=0.02)


@pytest.mark.parametrize(
    "make_brain, message",
    [
        (lambda image: np.zeros(image.shape, bool), "empty brain mask"),
        (lambda image: np.indices(image.shape).sum(0) < 6, "too few"),
    ],
)
def test_a_brain_too_small_for_a_histogram_is_refused(make_brain, message):
    image, _, _ = brain_phantom("t1n", np.random.default_rng(6))
    with pytest.raises(ValueError, match=message):
        normalize_intensity(image, make_brain(image), "t1n", NORMALIZE)


def test_a_constant_brain_or_one_without_a_peak_is_refused():
    _, brain, _ = brain_phantom("t1n", np.random.default_rng(7))
    with pytest.raises(ValueError, match="t1n: the brain's intensities are constant"):
        normalize_intensity(np.where(brain, 50.0, 0.0), brain, "t1n", NORMALIZE)
    falling = np.random.default_rng(7).exponential(100.0, SHAPE)  # density falls from the darkest voxel on
    with pytest.raises(ValueError, match="t2w: the brain's intensity histogram has no peak"):
        normalize_intensity(falling, brain, "t2w", NORMALIZE)
    image, _, _ = brain_phantom("t1n", np.random.default_rng(7))
    with pytest.raises(ValueError, match=r"t1n: white-matter peak at -\d+(\.\d*)? <= 0"):
        normalize_intensity(-image, brain, "t1n", NORMALIZE)


def test_an_unknown_channel_or_a_missing_ceiling_is_refused():
    image, brain, _ = brain_phantom("t1n", np.random.default_rng(8))
    with pytest.raises(ValueError, match="unknown channel 't1'"):
        white_matter_peak(image[brain], "t1")
    settings = NormalizeSettings.from_config({"ceiling_over_white_matter": {"t1n": 1.5}})
    with pytest.raises(ValueError, match=r"normalize\.ceiling_over_white_matter has no 't2w'"):
        normalize_intensity(image, brain, "t2w", settings)


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
