"""TF-Aug mask bank, augmentation, combination and placement (paper 002 §2.1)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.schema_defaults import schema_defaults
from scipy import ndimage
from test_tfaug_data import AFFINE, CENTRE, SHAPE, ellipsoid, lesion_labels, make_cohort

from tumorfab.synthesis.tfaug.controls import LocationRule
from tumorfab.synthesis.tfaug.masks import Component, MaskBank, place_lesions, rasterize
from tumorfab.synthesis.tfaug.settings import LocationSpec, MaskAugmentation



def masks(**overrides) -> MaskAugmentation:
    """The schema's defaults of tfaug.masks with ``overrides``."""
    return MaskAugmentation.from_config(schema_defaults({"tfaug": {"masks": overrides}})["tfaug"]["masks"])


NO_AUGMENT = masks(scale=[1.0, 1.0], rotation_deg=0.0, flip_prob=0.0, shift_mm=0.0, combine_prob=0.0)


def bank_of(*segs: np.ndarray) -> MaskBank:
    return MaskBank.from_arrays([(f"case{i}", seg, AFFINE) for i, seg in enumerate(segs)])


class FixedTarget:
    """A location rule that aims every lesion at one voxel and accepts anything."""

    def __init__(self, target):
        self.target = np.asarray(target, dtype=float)

    def sample(self, rng, source_centroid):
        return self.target

    def accepts(self, centroid):
        return True


def test_bank_keeps_bounding_box_crops_and_skips_cases_without_lesion(tmp_path):
    real, _ = make_cohort(tmp_path, n_real=2, n_healthy=1)
    empty = np.zeros(SHAPE, np.uint8)
    bank = MaskBank.from_case_dirs(real)
    assert [m.case_id for m in bank.masks] == [p.name for p in real]
    for mask in bank.masks:
        assert mask.crop.shape < SHAPE
        assert (mask.crop > 0).any(axis=(1, 2))[[0, -1]].all()  # the crop is tight
    with_empty = bank_of(lesion_labels(CENTRE), empty)
    assert len(with_empty) == 1


def test_bank_rejects_a_mask_on_another_grid():
    shifted = AFFINE.copy()
    shifted[0, 3] += 5
    with pytest.raises(ValueError, match="case1"):
        MaskBank.from_arrays([("case0", lesion_labels(CENTRE), AFFINE), ("case1", lesion_labels(CENTRE), shifted)])


def test_scaling_multiplies_the_volume_by_the_cube_of_the_factor():
    bank = bank_of(lesion_labels(CENTRE, radius=6))
    base = (rasterize(bank, [Component(0, 1.0, (0, 0, 0), False)])[0] > 0).sum()
    assert base == (bank[0].crop > 0).sum()  # identity resampling keeps every voxel
    doubled = (rasterize(bank, [Component(0, 2.0, (0, 0, 0), False)])[0] > 0).sum()
    assert doubled / base == pytest.approx(8.0, rel=0.1)


def test_rotation_by_90_degrees_swaps_the_extents_of_an_elongated_mask():
    seg = np.zeros(SHAPE, np.uint8)
    seg[ellipsoid(CENTRE, (10, 3, 3))] = 2
    bank = bank_of(seg)
    rotated, _ = rasterize(bank, [Component(0, 1.0, (0.0, 0.0, 90.0), False)])
    box = ndimage.find_objects((rotated > 0).astype(np.uint8))[0]
    extent = [s.stop - s.start for s in box]
    assert extent[1] > 2 * extent[0]  # long axis moved from x to y


def test_flip_mirrors_the_shape_left_right():
    seg = np.zeros(SHAPE, np.uint8)
    seg[ellipsoid(CENTRE, (6, 6, 6))] = 2
    seg[ellipsoid(CENTRE + [4, 0, 0], (2, 2, 2))] = 1  # NCR on the +x side
    bank = bank_of(seg)
    canvas, _ = rasterize(bank, [Component(0, 1.0, (0, 0, 0), True)])
    ncr_x = np.argwhere(canvas == 1)[:, 0].mean()
    assert ncr_x < canvas.shape[0] / 2  # now on the -x side


def test_combined_masks_overlap_and_keep_the_inner_label():
    seg = lesion_labels(CENTRE, radius=6)
    bank = bank_of(seg)
    ncr = int((seg == 1).sum())
    parts = [Component(0, 1.0, (0, 0, 0), False), Component(0, 1.0, (0, 0, 0), False, (3.0, 0.0, 0.0))]
    canvas, _ = rasterize(bank, parts)
    assert ndimage.label(canvas > 0)[1] == 1
    # Both NCR cores survive next to the other mask's ED and ET: NCR > ET > ED.
    assert (canvas == 1).sum() >= 1.5 * ncr
    assert set(np.unique(canvas)) == {0, 1, 2, 3}


def test_placement_puts_the_lesion_centroid_on_the_target():
    bank = bank_of(lesion_labels(CENTRE, radius=4))
    brain = np.ones(SHAPE, bool)
    target = CENTRE + [5.3, -4.2, 2.0]
    placed = place_lesions(bank, brain, np.random.default_rng(0), NO_AUGMENT, FixedTarget(target), None, 1)
    centroid = np.asarray(ndimage.center_of_mass(placed.labels > 0))
    assert np.all(np.abs(centroid - target) <= 0.5 + 1e-6)
    assert placed.records[0]["centroid_vox"] == pytest.approx(centroid.tolist(), abs=1e-3)


def test_voxels_outside_the_brain_are_dropped_and_heavy_losses_redrawn():
    real = [lesion_labels(CENTRE + [d, 0, 0], radius=6) for d in (-8, 0, 8)]
    bank = bank_of(*real)
    brain = np.zeros(SHAPE, bool)
    brain[: SHAPE[0] // 2 + 2] = True  # half the grid: many masks straddle the edge
    settings = masks(shift_mm=20.0, max_outside_fraction=0.3)
    rule = LocationRule(LocationSpec("any"), bank.grid, brain, None, settings.shift_mm)
    for seed in range(10):
        placed = place_lesions(bank, brain, np.random.default_rng(seed), settings, rule, None, 1)
        assert placed.labels.any()
        assert not placed.labels[~brain].any()
        assert all(r["outside_fraction"] <= 0.3 for r in placed.records)


def test_a_lesion_that_cannot_be_placed_fails_with_the_reasons():
    bank = bank_of(lesion_labels(CENTRE, radius=6))
    brain = np.zeros(SHAPE, bool)
    brain[0, 0, 0] = True
    settings = masks(max_tries=5)
    with pytest.raises(RuntimeError, match="outside_brain"):
        place_lesions(bank, brain, np.random.default_rng(0), settings, FixedTarget(CENTRE), None, 1)


def test_placed_lesions_number_their_voxels_inside_their_own_boxes():
    bank = bank_of(lesion_labels(CENTRE, radius=4))
    brain = np.ones(SHAPE, bool)
    rule = LocationRule(LocationSpec("any"), bank.grid, brain, None, 20.0)
    placed = place_lesions(bank, brain, np.random.default_rng(0), NO_AUGMENT, rule, size_ml=None, n_lesions=3)
    assert np.array_equal(placed.ids > 0, placed.labels > 0)
    for number, (box, record) in enumerate(zip(placed.boxes, placed.records), start=1):
        voxels = int((placed.ids == number).sum())
        assert voxels == int((placed.ids[box] == number).sum())
        assert voxels * bank.grid.voxel_ml == pytest.approx(record["volume_ml"], abs=1e-4)
