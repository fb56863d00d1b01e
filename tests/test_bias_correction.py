"""N4 bias-field correction of healthy scans (tumorfab.preprocess.bias): a
known smooth multiplicative field on a two-tissue phantom brain and on a real
head (../shared/data/real, see its README) is removed, inside the brain mask
only, with the same bytes in every run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers.schema_defaults import schema_defaults

from tumorfab.preprocess.ants import deterministic_ants, to_ants
from tumorfab.preprocess.bias import correct_bias_field, shrink_factor
from tumorfab.preprocess.settings import BiasCorrectionSettings

SETTINGS = BiasCorrectionSettings.from_config(schema_defaults()["bias_correction"])
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
FREESURFER_WHITE_MATTER = (2, 41)
#: The phantom: 3 mm voxels (the demo's), white matter inside grey matter, Gaussian noise.
SPACING_MM = 3.0
SHAPE = (48, 52, 44)
WHITE, GREY, NOISE = 100.0, 70.0, 2.0
#: The field: exp(AMPLITUDE x a smooth function of about [-1.5, 1.5]) varying
#: over FEATURE_MM, as the demo's scanners' fields do (control points every 50 mm).
AMPLITUDE = 0.2
FEATURE_MM = 50.0


def smooth_field(shape: tuple[int, ...], spacing_mm: float) -> np.ndarray:
    """A smooth multiplicative field (> 0, geometric mean about 1) on ``shape`` voxels."""
    x, y, z = (np.indices(shape, dtype=np.float64).T * spacing_mm / FEATURE_MM).T
    return np.exp(AMPLITUDE * np.sin(2.0 * x + 1.0) * np.cos(1.5 * y - 0.5) + 0.5 * AMPLITUDE * np.tanh(z - 0.7))


def ellipsoid(shape: tuple[int, ...], radii_voxels: tuple[float, ...]) -> np.ndarray:
    centre = (np.array(shape) - 1) / 2
    grid = np.indices(shape, dtype=np.float64)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii_voxels)) <= 1


@pytest.fixture(scope="module")
def phantom() -> dict[str, np.ndarray]:
    """A stripped brain (0 outside), its mask, its white matter, and the
    scalp a head around it would have (0 inside the brain)."""
    rng = np.random.default_rng(0)
    brain = ellipsoid(SHAPE, (20, 22, 18))
    white = ellipsoid(SHAPE, (12, 14, 10))
    head = ellipsoid(SHAPE, (23, 25, 21)) & ~brain
    tissue = np.where(white, WHITE, GREY) + NOISE * rng.standard_normal(SHAPE)
    field = smooth_field(SHAPE, SPACING_MM)
    return {
        "image": np.where(brain, tissue * field, 0.0).astype(np.float32),
        "brain": brain,
        "white": white,
        "scalp": np.where(head, 150.0 * field, 0.0).astype(np.float32),
    }


def correct(image: np.ndarray, brain: np.ndarray, settings: BiasCorrectionSettings = SETTINGS) -> np.ndarray:
    affine = np.diag([SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
    scan = to_ants(nib.Nifti1Image(image, affine))
    return correct_bias_field(scan, scan.new_image_like(brain.astype(np.float32)), settings).numpy()


@pytest.fixture(scope="module")
def corrected(phantom) -> np.ndarray:
    """The phantom's stripped brain corrected with the default settings (one N4
    run for every test that reads it)."""
    return correct(phantom["image"], phantom["brain"])


def variation(values: np.ndarray) -> float:
    """Coefficient of variation: standard deviation over mean."""
    return float(values.std() / values.mean())


def setup_module():
    # One ITK thread, as in the workflow's jobs, if no ANTs call came first in
    # this process (ITK reads the count once); the same-bytes test starts its own.
    deterministic_ants(0)


@pytest.mark.parametrize(
    ("spacing", "factor"),
    [((1.0, 1.0, 1.0), 4), ((0.99999, 1.0, 1.2), 4), ((0.94, 0.94, 1.2), 5), ((3.0, 3.0, 3.0), 2), ((4.0,) * 3, 1)],
)
def test_the_field_is_fitted_at_fit_voxel_mm_or_just_coarser(spacing, factor):
    assert shrink_factor(spacing, SETTINGS.fit_voxel_mm) == factor


def test_the_field_on_white_matter_is_removed(phantom, corrected):
    before = variation(phantom["image"][phantom["white"]])
    after = variation(corrected[phantom["white"]])
    # The field spreads white matter by ~0.07, the noise by NOISE / WHITE = 0.02.
    assert before > 3 * NOISE / WHITE
    assert after < 1.25 * NOISE / WHITE


def test_the_background_of_a_stripped_scan_stays_zero(phantom, corrected):
    assert (corrected[~phantom["brain"]] == 0).all()
    assert (corrected[phantom["brain"]] > 0).all()


def test_the_head_outside_the_mask_does_not_change_the_brain(phantom, corrected):
    with_scalp = correct(phantom["image"] + phantom["scalp"], phantom["brain"])
    np.testing.assert_allclose(with_scalp[phantom["brain"]], corrected[phantom["brain"]], rtol=1e-5)
    # The field is divided out of the scalp too (it is fitted in the brain only).
    assert variation(with_scalp[phantom["scalp"] > 0]) < 0.5 * variation(phantom["scalp"][phantom["scalp"] > 0])


def test_the_brain_keeps_its_intensity_scale(phantom, corrected):
    brain = phantom["brain"]
    ratio = np.exp(np.mean(np.log(corrected[brain])) - np.mean(np.log(phantom["image"][brain])))
    assert ratio == pytest.approx(1.0, abs=1e-4)


def test_disabled_leaves_the_scan_as_it_is(phantom):
    disabled = BiasCorrectionSettings(**{**SETTINGS.__dict__, "enabled": False})
    assert np.array_equal(correct(phantom["image"], phantom["brain"], disabled), phantom["image"])


#: One run in a fresh process, as a workflow job: deterministic_ants first, whatever
#: ITK thread count the process inherited.
RUN = textwrap.dedent(
    """
    import sys
    import nibabel as nib
    import numpy as np
    from helpers.schema_defaults import schema_defaults
    from tumorfab.preprocess.ants import deterministic_ants, to_ants
    from tumorfab.preprocess.bias import correct_bias_field
    from tumorfab.preprocess.settings import BiasCorrectionSettings

    deterministic_ants(0)
    image, brain = (to_ants(nib.load(path)) for path in sys.argv[1:3])
    settings = BiasCorrectionSettings.from_config(schema_defaults()["bias_correction"])
    np.save(sys.argv[3], correct_bias_field(image, brain, settings).numpy())
    """
)


def test_two_runs_give_the_same_bytes_whatever_threads_the_process_inherits(phantom, tmp_path):
    affine = np.diag([SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
    nib.save(nib.Nifti1Image(phantom["image"], affine), str(tmp_path / "image.nii.gz"))
    nib.save(nib.Nifti1Image(phantom["brain"].astype(np.uint8), affine), str(tmp_path / "brain.nii.gz"))
    tests = Path(__file__).parent
    outputs = []
    for threads in ("1", "2"):
        out = tmp_path / f"threads_{threads}.npy"
        subprocess.run(
            [sys.executable, "-c", RUN, str(tmp_path / "image.nii.gz"), str(tmp_path / "brain.nii.gz"), str(out)],
            check=True,
            cwd=tests,
            env={**os.environ, "PYTHONPATH": str(tests), "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": threads},
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is not there (CI has it)")
def test_a_known_field_on_a_real_head_is_removed():
    """swm_T1 (FreeSurfer's T1, already bias-corrected) at 3 mm (the demo's
    voxels: N4 fits at 6 mm; at 2 mm it fits at 4 mm, four times the time, and
    removes the field as well), in FreeSurfer's brain mask, times a known
    field: N4 brings its white matter's spread back to the head's own
    (measured: 1.91 x before, 0.98 x after)."""
    step = 3
    head = nib.load(str(REAL / "healthy" / "swm_T1.nii.gz"))
    labels = np.asarray(nib.load(str(REAL / "reference" / "swm_aparc.DKTatlas+aseg.nii.gz")).dataobj)[::step, ::step, ::step]
    data = head.get_fdata(dtype=np.float32)[::step, ::step, ::step]
    affine = head.affine.copy()
    affine[:3, :3] *= step
    white = np.isin(labels, FREESURFER_WHITE_MATTER)
    biased = (data * smooth_field(data.shape, float(step))).astype(np.float32)
    scan = to_ants(nib.Nifti1Image(biased, affine))
    corrected = correct_bias_field(scan, scan.new_image_like((labels > 0).astype(np.float32)), SETTINGS).numpy()
    assert variation(biased[white]) > 1.1 * variation(data[white])
    assert variation(corrected[white]) < 1.02 * variation(data[white])
