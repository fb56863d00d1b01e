"""Intensity normalization on real scans (../shared/data/real, see its README).

The BraTS case's four sequences (normalized as the workflow does,
:func:`normalize_real_case`) and the two real healthy T1 heads, skull-stripped
by deepbet as the workflow does without SynthStrip weights (registration to
the BraTS grid does not change intensities and is left out), normalized with
the configured ceilings. Both come from tests/real_scan_fixtures.py, made once
for every test file that reads them. White matter is measured
independently of the tissue classes under test: FreeSurfer's white matter
(labels 2 and 41) on swm_T1, the mode of a fine unsmoothed histogram on
chris_t1, the brightest band of t1n's non-tumour brain in the BraTS case
(:func:`brats_white_matter`).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers.schema_defaults import schema_defaults
from real_scan_fixtures import FOUR as CHANNELS
from real_scan_fixtures import HEADS, REAL, brats_four, deepbet_head, raw_images  # noqa: F401

from tumorfab.preprocess.normalize import normalize_intensity, white_matter
from tumorfab.preprocess.settings import NormalizeSettings

NORMALIZE = NormalizeSettings.from_config(schema_defaults()["normalize"])
FREESURFER_WHITE_MATTER = (2, 41)
NCR, ED, ET = 1, 2, 3

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is not there (CI has it)")


def load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def fine_mode(values: np.ndarray) -> float:
    """Mode of a 400-bin histogram of the values strictly inside (-1, 1)."""
    counts, edges = np.histogram(values[(values > -1.0) & (values < 1.0)], bins=400, range=(-1.0, 1.0))
    index = int(np.argmax(counts))
    return float(edges[index : index + 2].mean())


def percentile_normalized(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The former normalization (brain's 0.5-99.5th percentiles -> [-1, 1]), for comparison."""
    low, high = np.percentile(image[brain], [0.5, 99.5])
    return np.where(brain, (np.clip(image, low, high) - low) / (high - low) * 2.0 - 1.0, -1.0)


@pytest.fixture(scope="module")
def brats(brats_four):
    """Raw and normalized images by channel, labels and brain mask of the real BraTS case."""
    images = {c: nib.load(str(path)).get_fdata(dtype=np.float32) for c, path in raw_images(CHANNELS).items()}
    normalized = {c: load(brats_four / f"{c}.nii.gz") for c in CHANNELS}
    return images, normalized, load(brats_four / "seg.nii.gz"), load(brats_four / "brainmask.nii.gz") > 0


@pytest.fixture(scope="module")
def heads(deepbet_head):
    """Both real heads stripped by deepbet: name -> (image, brain mask)."""
    stripped = {}
    for name in HEADS:
        folder, _ = deepbet_head(name)
        stripped[name] = nib.load(str(folder / "t1n.nii.gz")).get_fdata(dtype=np.float32), load(folder / "brainmask.nii.gz") > 0
    return stripped


def brats_white_matter(brats) -> np.ndarray:
    """The BraTS case's white matter, independently of the tissue classes: its
    non-tumour brain in the 70-95th percentiles of t1n (white matter is the
    T1's brightest ~40 %; above the 95th: vessels, partial volume)."""
    images, _, seg, brain = brats
    healthy = brain & (seg == 0)
    low, high = np.percentile(images["t1n"][healthy], [70, 95])
    return healthy & (images["t1n"] > low) & (images["t1n"] < high)


def healthy_white_matter_value(name: str, normalized: np.ndarray, brain: np.ndarray) -> float:
    if name == "swm":
        aseg = load(REAL / "reference" / "swm_aparc.DKTatlas+aseg.nii.gz")
        return float(np.median(normalized[np.isin(aseg, FREESURFER_WHITE_MATTER) & brain]))
    return fine_mode(normalized[brain])


def test_every_brats_sequence_puts_white_matter_at_its_ceiling_s_value_in_range(brats):
    _, normalized, seg, brain = brats
    for channel, image in normalized.items():
        assert image.dtype == np.float32 and image.min() >= -1.0 and image.max() <= 1.0
        assert np.all(image[~brain] == -1.0)
        white = float(np.median(image[brats_white_matter(brats)]))
        assert white == pytest.approx(2.0 / NORMALIZE.ceiling(channel) - 1.0, abs=0.05), channel


def test_tumour_and_csf_are_not_piled_at_plus_one(brats):
    images, normalized, seg, brain = brats
    csf = brain & (seg == 0) & (normalized["t2w"] > 0.0)  # > 2.6 x white matter on t2w (measured CSF 3.8 x)
    for channel, where in (("t1c", seg == ET), ("t2f", seg == ED), ("t2f", seg == NCR), ("t2w", csf)):
        assert np.mean(normalized[channel][where] >= 1.0) < 0.01, channel


def test_healthy_heads_white_matter_matches_the_brats_case_s(brats, heads):
    _, normalized, seg, brain = brats
    brats_white = fine_mode(normalized["t1n"][brain & (seg == 0)])
    brats_white_before = fine_mode(percentile_normalized(brats[0]["t1n"], brain)[brain & (seg == 0)])
    for name, (image, head_brain) in heads.items():
        white = healthy_white_matter_value(name, normalize_intensity(image, head_brain, "t1n", white_matter(image, head_brain), NORMALIZE), head_brain)
        before = healthy_white_matter_value(name, percentile_normalized(image, head_brain), head_brain)
        assert abs(white - brats_white) <= 0.1, (name, white, brats_white)
        # Measured: the brain percentiles put healthy white matter 0.3-0.6 above the BraTS case's.
        assert abs(before - brats_white_before) > 0.2, (name, before, brats_white_before)
