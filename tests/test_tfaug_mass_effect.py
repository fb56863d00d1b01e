"""Mass effect (not in the paper): diffeomorphic, peaks at the lesion, decays with distance."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.schema_defaults import schema_defaults
from test_tfaug_data import make_cohort

from tumorfab.synthesis.tfaug import mass_effect as me
from tumorfab.synthesis.tfaug.generate import CaseRecipe, make_case
from tumorfab.synthesis.tfaug.masks import MaskBank
from tumorfab.synthesis.tfaug.settings import TFAugSettings

SHAPE = (48, 48, 48)
SPACING = (1.0, 1.0, 1.0)
CENTROID = (24.0, 23.0, 25.0)
RADIUS = 8.0
#: tfaug.mass_effect.steps of the schema's defaults.
STEPS = schema_defaults()["tfaug"]["mass_effect"]["steps"]


def distances() -> np.ndarray:
    grid = np.indices(SHAPE, dtype=np.float64)
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, CENTROID)))


@pytest.mark.parametrize("magnitude", [2.0, 5.0, 8.0])
def test_jacobian_determinant_is_positive_everywhere(magnitude):
    ddf, box = me.inverse_displacement(SHAPE, SPACING, [CENTROID], [RADIUS], [magnitude], STEPS)
    jacobian = me.jacobian_determinant(ddf, SPACING)
    assert jacobian.min() > 0


def test_jacobian_stays_positive_with_a_coarse_integration_grid():
    # A large lesion (radius 20 mm) is integrated on a 5x coarser grid and upsampled.
    shape, centroid = (96, 96, 80), (48.0, 48.0, 40.0)
    ddf, _ = me.inverse_displacement(shape, SPACING, [centroid], [20.0], [10.0], STEPS)
    assert me.jacobian_determinant(ddf, SPACING).min() > 0
    assert me.displacement_mm(ddf, SPACING).max() == pytest.approx(10.0, rel=0.2)


def test_displacement_peaks_near_the_lesion_edge_and_decays_with_distance():
    ddf, box = me.inverse_displacement(SHAPE, SPACING, [CENTROID], [RADIUS], [5.0], STEPS)
    full = np.zeros((3, *SHAPE), np.float32)
    full[(slice(None), *box)] = ddf
    length = me.displacement_mm(full, SPACING)
    r = distances()
    shells = [length[(r >= d) & (r < d + 1)].mean() for d in range(0, 24)]
    peak = int(np.argmax(shells))
    assert abs(peak - RADIUS) <= 2
    assert max(shells) == pytest.approx(5.0, rel=0.25)
    assert all(a >= b for a, b in zip(shells[peak:], shells[peak + 1 :]))  # monotone decay
    assert shells[-1] < 0.1 * max(shells)  # r = 23 mm, about 3 radii
    assert shells[0] < 0.3 * max(shells)


def test_tissue_moves_away_from_the_lesion():
    ddf, box = me.inverse_displacement(SHAPE, SPACING, [CENTROID], [RADIUS], [5.0], STEPS)
    full = np.zeros((3, *SHAPE), np.float32)
    full[(slice(None), *box)] = ddf
    outward = np.indices(SHAPE, dtype=np.float64) - np.asarray(CENTROID).reshape(3, 1, 1, 1)
    shell = (distances() > RADIUS - 2) & (distances() < RADIUS + 2)
    # The image at p is sampled from p + ddf(p): nearer the lesion, so tissue moved outwards.
    assert ((full * outward).sum(axis=0)[shell] < 0).all()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    real, healthy = make_cohort(tmp_path_factory.mktemp("cohort"), n_real=3, n_healthy=2)
    return MaskBank.from_case_dirs(real), {p.name: p for p in healthy}


def recipe(enabled: bool) -> CaseRecipe:
    tfaug = schema_defaults({"tfaug": {"mass_effect": {"enabled": enabled, "magnitude_mm": [4.0, 4.0]}}})["tfaug"]
    return CaseRecipe(
        TFAugSettings.from_config(tfaug), ("t1n",), np.ones((1, 3), np.float32), np.zeros((1, 3), np.float32), 5
    )


def test_a_case_with_mass_effect_keeps_the_case_folder_contract(cohort):
    bank, healthy = cohort
    for index in range(3):
        off = make_case(index, bank, healthy, recipe(False))
        on = make_case(index, bank, healthy, recipe(True))
        brain = on.case.brainmask > 0
        assert on.case.seg.any() and not on.case.seg[~brain].any()
        assert (on.case.images["t1n"][~brain] == -1).all()
        assert on.case.images["t1n"][brain].min() >= -1 and on.case.images["t1n"][brain].max() <= 1
        changed = (on.case.images["t1n"] != off.case.images["t1n"]) & (off.case.seg == 0) & (on.case.seg == 0)
        assert changed.any()  # healthy tissue moved
        assert on.row["mass_effect_peak_mm"] == pytest.approx(4.0, rel=0.3)
        assert off.row["mass_effect_peak_mm"] == 0.0
