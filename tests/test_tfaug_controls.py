"""Lesion controls (paper 000): each does, measurably, what it says."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers.schema_defaults import schema_defaults
from scipy import ndimage
from test_tfaug_data import AFFINE, CENTRE, CSF, GM, WM, healthy_scan, make_cohort

from tumorfab.synthesis.tfaug.controls import hemisphere_mask, tissue_classes
from tumorfab.synthesis.tfaug.generate import CaseRecipe, make_case
from tumorfab.synthesis.tfaug.masks import Grid, MaskBank, count_lesions
from tumorfab.synthesis.tfaug.settings import TFAugSettings

SEEDS = range(6)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    real, healthy = make_cohort(tmp_path_factory.mktemp("cohort"), n_real=4, n_healthy=2)
    return MaskBank.from_case_dirs(real), {p.name: p for p in healthy}


def recipe(controls: dict | None = None, masks: dict | None = None, seed: int = 0) -> CaseRecipe:
    """The schema's defaults of tfaug, with ``controls`` and ``masks`` overriding them."""
    tfaug = schema_defaults({"tfaug": {"controls": controls or {}, "masks": masks or {}}})["tfaug"]
    return CaseRecipe(
        TFAugSettings.from_config(tfaug), ("t1n",), np.ones((1, 3), np.float32), np.zeros((1, 3), np.float32), seed
    )


def lesions(labels: np.ndarray) -> list[np.ndarray]:
    parts, n = ndimage.label(labels > 0, np.ones((3, 3, 3), bool))
    return [parts == i for i in range(1, n + 1)]


def test_size_range_puts_every_lesion_volume_in_range(cohort):
    bank, healthy = cohort
    voxel_ml = bank.grid.voxel_ml
    for index in SEEDS:
        made = make_case(index, bank, healthy, recipe({"size_ml": [1.0, 2.0]}))
        volume = (made.case.seg > 0).sum() * voxel_ml
        assert 1.0 <= volume <= 2.0
        assert made.row["volume_ml"] == pytest.approx(volume)


def test_coordinates_put_lesion_centroids_within_the_radius(cohort):
    bank, healthy = cohort
    center_mm = bank.grid.to_world(CENTRE + [5, 5, 0])
    control = {"location": {"mode": "coordinates", "center_mm": center_mm.tolist(), "radius_mm": 6.0}}
    for index in SEEDS:
        made = make_case(index, bank, healthy, recipe(control))
        centroid = np.asarray(ndimage.center_of_mass(made.case.seg > 0))
        assert np.linalg.norm(bank.grid.to_world(centroid) - center_mm) <= 6.0


@pytest.mark.parametrize("side", ["left", "right"])
def test_hemisphere_puts_lesion_centroids_on_that_side_of_the_midline(cohort, side):
    bank, healthy = cohort
    for index in SEEDS:
        made = make_case(index, bank, healthy, recipe({"location": {"mode": "hemisphere", "side": side}}))
        centroid_x = bank.grid.to_world(np.asarray(ndimage.center_of_mass(made.case.seg > 0)))[0]
        midline_x = bank.grid.to_world(np.asarray(ndimage.center_of_mass(made.case.brainmask > 0)))[0]
        assert (centroid_x < midline_x) if side == "left" else (centroid_x >= midline_x)


def test_hemisphere_mask_splits_the_brain_at_its_centre_in_world_x():
    _, brain = healthy_scan(np.random.default_rng(0))
    grid = Grid(brain.shape, AFFINE)
    left = hemisphere_mask(brain, grid, "left")
    right = hemisphere_mask(brain, grid, "right")
    assert not (left & right).any() and np.array_equal(left | right, brain > 0)
    assert (grid.to_world(np.argwhere(left))[:, 0] < 0).all()  # the phantom's midline is x = 0


def test_tissue_classes_recover_the_phantom_tissues():
    image, brain = healthy_scan(np.random.default_rng(0))
    classes = tissue_classes(image, brain)
    truth = np.select([np.isclose(image, CSF, atol=0.2), np.isclose(image, GM, atol=0.2), np.isclose(image, WM, atol=0.2)], [1, 2, 3])
    inside = brain > 0
    assert (classes[inside] == truth[inside]).mean() > 0.95
    assert not classes[~inside].any()


def test_tissue_constraint_puts_lesion_centroids_in_that_tissue(cohort):
    bank, healthy = cohort
    for index in SEEDS:
        made = make_case(index, bank, healthy, recipe({"location": {"mode": "tissue", "tissue": "gm"}}))
        # The class map of the healthy source scan, as the control sees it.
        source = Path(healthy[made.row["healthy_subject"]])
        healthy_image = np.asarray(nib.load(source / "t1n.nii.gz").dataobj)
        classes = tissue_classes(healthy_image, made.case.brainmask)
        centroid = tuple(np.rint(ndimage.center_of_mass(made.case.seg > 0)).astype(int))
        assert classes[centroid] == 2


def test_number_of_lesions_is_the_number_of_connected_components(cohort):
    bank, healthy = cohort
    for index in SEEDS:
        made = make_case(index, bank, healthy, recipe({"n_lesions": [3, 3]}, {"scale": [0.5, 0.7]}))
        assert count_lesions(made.case.seg) == 3
        assert made.row["n_lesions"] == 3


def test_neighbouring_lesions_are_each_blurred_once_from_the_healthy_scan(cohort):
    bank, healthy = cohort
    for index in SEEDS:
        made = make_case(index, bank, healthy, recipe({"n_lesions": [3, 3]}, {"scale": [0.5, 0.7]}))
        source = Path(healthy[made.row["healthy_subject"]])
        image = np.asarray(nib.load(source / "t1n.nii.gz").dataobj)
        weight = made.case.brainmask.astype(np.float32)
        roi = made.case.seg > 0
        # a = 1, b = 0: the lesions show the healthy scan's blur, as if the whole ROI were blurred at once.
        blurred = ndimage.gaussian_filter(image * weight, 2.0, mode="constant")[roi] / ndimage.gaussian_filter(
            weight, 2.0, mode="constant"
        )[roi]
        np.testing.assert_allclose(made.case.images["t1n"][roi], blurred, rtol=1e-5, atol=1e-5)


def test_offset_shifts_the_mean_of_its_subregion_and_keeps_the_lesions(cohort):
    bank, healthy = cohort
    plain = make_case(0, bank, healthy, recipe())
    shifted = make_case(0, bank, healthy, recipe({"offset": {"ed": 0.15, "et": -0.1}}))
    assert np.array_equal(plain.case.seg, shifted.case.seg)  # appearance has its own random stream
    ed, et, ncr = (plain.case.seg == 2), (plain.case.seg == 3), (plain.case.seg == 1)
    assert (shifted.case.images["t1n"][ed] - plain.case.images["t1n"][ed]).mean() == pytest.approx(0.15, abs=0.01)
    assert (shifted.case.images["t1n"][et] - plain.case.images["t1n"][et]).mean() == pytest.approx(-0.1, abs=0.01)
    assert np.array_equal(shifted.case.images["t1n"][ncr], plain.case.images["t1n"][ncr])


def test_heterogeneity_raises_the_std_inside_the_lesion(cohort):
    bank, healthy = cohort
    stds = []
    for amplitude in (0.0, 0.1, 0.2):
        made = make_case(1, bank, healthy, recipe({"heterogeneity": {"amplitude": amplitude, "scale_mm": 3.0}}))
        stds.append(made.case.images["t1n"][made.case.seg == 2].std())
    assert stds[0] < stds[1] < stds[2]
    assert stds[2] > 1.5 * stds[0]
