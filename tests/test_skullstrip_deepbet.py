"""deepbet, the default brain extractor without SynthStrip weights, on a real
head (../shared/data/real/healthy/swm_T1, with FreeSurfer's segmentation of
it), and the ``skullstrip.method`` key.

Thresholds: measured on swm_T1 (benchmarks/skullstrip_comparison.py) 1507 ml,
Dice 0.915 against FreeSurfer's brain and 0.973 against it grown by the CSF
around it; the tests allow 0.015-0.02 less.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from snakemake.exceptions import WorkflowError

from helpers.schema_defaults import schema_defaults
from real_scan_fixtures import REAL, deepbet_head, strip_with_deepbet  # noqa: F401
from tumorfab.preprocess.settings import SkullstripSettings

HEAD = REAL / "healthy" / "swm_T1.nii.gz"
REFERENCE = REAL / "reference" / "swm_aparc.DKTatlas+aseg.nii.gz"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _with_outer_csf(brain: np.ndarray, close_mm: int = 3, dilate_mm: int = 2) -> np.ndarray:
    """FreeSurfer's 1 mm brain filled, closed (sulci) and dilated (the CSF over
    the surface), as benchmarks/skullstrip_comparison.py grows it."""
    grid = np.mgrid[(slice(-close_mm, close_mm + 1),) * 3]
    closing = (grid**2).sum(axis=0) <= close_mm**2
    grid = np.mgrid[(slice(-dilate_mm, dilate_mm + 1),) * 3]
    dilation = (grid**2).sum(axis=0) <= dilate_mm**2
    padded = np.pad(ndimage.binary_fill_holes(brain), close_mm)
    closed = ndimage.binary_closing(padded, closing)[(slice(close_mm, -close_mm),) * 3]
    return ndimage.binary_dilation(ndimage.binary_fill_holes(closed), dilation)


@pytest.fixture(scope="module")
def stripped_twice(deepbet_head, tmp_path_factory) -> tuple[Path, Path, dict, dict]:
    """swm_T1 stripped twice with the schema's default settings, as the workflow
    would: the first run is the one every test file shares (real_scan_fixtures)."""
    first, first_result = deepbet_head("swm")
    second = tmp_path_factory.mktemp("again")
    return first, second, first_result, strip_with_deepbet("swm", second)


def test_the_default_without_weights_is_deepbet(stripped_twice):
    _, _, result, _ = stripped_twice
    assert result["method"] == "deepbet"


def test_deepbet_brain_of_a_real_head_keeps_the_outer_csf_and_matches_freesurfer(stripped_twice):
    out, _, result, _ = stripped_twice
    mask = nib.load(str(out / "brainmask.nii.gz"))
    source = nib.load(str(HEAD))
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
    # FreeSurfer's brain is 1277 ml, the CSF around it brings it to ~1550 ml.
    assert 1400 <= result["brain_volume_ml"] <= 1650
    brain = np.asarray(nib.load(str(REFERENCE)).dataobj) > 0
    data = np.asarray(mask.dataobj)
    assert _dice(data, brain) >= 0.90
    assert _dice(data, _with_outer_csf(brain)) >= 0.955
    assert (out / "qc.png").stat().st_size > 0


def test_deepbet_is_byte_identical_twice(stripped_twice):
    first, second, first_result, second_result = stripped_twice
    assert first_result == second_result
    for name in ("t1n.nii.gz", "brainmask.nii.gz"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def _settings(**skullstrip) -> SkullstripSettings:
    return SkullstripSettings.from_config(schema_defaults({"skullstrip": skullstrip})["skullstrip"])


def test_auto_is_synthstrip_with_weights_else_deepbet():
    assert _settings().method == "deepbet"
    assert _settings(synthstrip_weights="synthstrip.1.pt").method == "synthstrip"
    assert _settings(method="atlas").method == "atlas"


def test_synthstrip_without_weights_is_refused_naming_both_keys():
    message = r"^skullstrip\.method is 'synthstrip' but skullstrip\.synthstrip_weights is null"
    with pytest.raises(ValueError, match=message):
        _settings(method="synthstrip")


@pytest.mark.parametrize("method", ["deepbet", "atlas"])
def test_weights_another_method_would_not_use_are_refused(method):
    message = rf"^skullstrip\.method is '{method}' but skullstrip\.synthstrip_weights is set"
    with pytest.raises(ValueError, match=message):
        _settings(method=method, synthstrip_weights="synthstrip.1.pt")


def test_an_unknown_method_is_refused_by_the_schema_and_the_settings():
    with pytest.raises(WorkflowError, match="bet"):
        schema_defaults({"skullstrip": {"method": "bet"}})
    section = {**schema_defaults()["skullstrip"], "method": "bet"}
    message = r"^skullstrip\.method must be one of \['auto', 'synthstrip', 'deepbet', 'atlas'\], got 'bet'"
    with pytest.raises(ValueError, match=message):
        SkullstripSettings.from_config(section)
