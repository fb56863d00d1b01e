"""Per-case metrics: nnU-Net's Dice, HD95 with spacing, lesion-wise sensitivity."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tumorfab.segmentation import evaluate as ev


def _save(path, data, spacing=(1.0, 1.0, 1.0)):
    nib.save(nib.Nifti1Image(data.astype(np.uint8), np.diag([*spacing, 1.0])), str(path))
    return path


def _ball(shape, centre, radius):
    grid = np.indices(shape)
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre))) <= radius


@pytest.fixture
def reference():
    seg = np.zeros((30, 30, 30), np.uint8)
    seg[_ball(seg.shape, (15, 15, 15), 8)] = 2
    seg[_ball(seg.shape, (15, 15, 15), 5)] = 3
    seg[_ball(seg.shape, (15, 15, 15), 2)] = 1
    return seg


def test_prediction_identical_to_reference_scores_one_in_every_region(tmp_path, reference):
    ref = _save(tmp_path / "ref.nii.gz", reference)
    pred = _save(tmp_path / "pred.nii.gz", reference)
    row = ev.evaluate_case(ref, pred)
    for region in ("et", "tc", "wt"):
        assert row[f"dice_{region}"] == 1.0
        assert row[f"hd95_{region}"] == 0.0
        assert row[f"lesion_sens_{region}"] == 1.0


def test_region_empty_in_reference_and_prediction_is_nan_as_in_nnunet(tmp_path, reference):
    no_et = np.where(reference == 3, 1, reference)
    ref = _save(tmp_path / "ref.nii.gz", no_et)
    row = ev.evaluate_case(ref, _save(tmp_path / "pred.nii.gz", no_et))
    assert math.isnan(row["dice_et"]) and math.isnan(row["hd95_et"]) and math.isnan(row["lesion_sens_et"])
    assert row["dice_tc"] == 1.0


def test_predicted_region_absent_from_reference_scores_zero_dice_and_the_volume_diagonal(tmp_path, reference):
    no_et = np.where(reference == 3, 1, reference)
    spacing = (1.0, 2.0, 3.0)
    row = ev.evaluate_case(_save(tmp_path / "r.nii.gz", no_et, spacing), _save(tmp_path / "p.nii.gz", reference, spacing))
    assert row["dice_et"] == 0.0
    assert row["hd95_et"] == pytest.approx(np.linalg.norm(np.array([30, 30, 30]) * spacing))


def test_hd95_is_in_millimetres_of_the_voxel_spacing(tmp_path):
    shape = (40, 20, 20)
    ref = np.zeros(shape, np.uint8)
    ref[10:15, 5:15, 5:15] = 2
    pred = np.roll(ref, 4, axis=0)  # shifted 4 voxels along x
    spacing = (2.5, 1.0, 1.0)
    row = ev.evaluate_case(_save(tmp_path / "r.nii.gz", ref, spacing), _save(tmp_path / "p.nii.gz", pred, spacing))
    assert row["hd95_wt"] == pytest.approx(4 * 2.5)


def test_lesion_sensitivity_counts_detected_connected_components(tmp_path):
    ref = np.zeros((40, 40, 40), np.uint8)
    ref[_ball(ref.shape, (10, 10, 10), 4)] = 2
    ref[_ball(ref.shape, (30, 30, 30), 4)] = 2
    pred = np.zeros_like(ref)
    pred[9:11, 9:11, 9:11] = 2  # touches the first lesion only
    row = ev.evaluate_case(_save(tmp_path / "r.nii.gz", ref), _save(tmp_path / "p.nii.gz", pred))
    assert row["lesion_sens_wt"] == 0.5
    assert math.isnan(row["lesion_sens_et"])


def test_per_case_csv_has_the_contract_columns_in_the_given_case_order(tmp_path, reference):
    refs = {}
    (tmp_path / "pred").mkdir()
    for case in ("case_b", "case_a"):
        refs[case] = _save(tmp_path / f"{case}.nii.gz", reference)
        _save(tmp_path / "pred" / f"{case}.nii.gz", reference)
    frame = ev.evaluate(tmp_path / "pred", refs, tmp_path / "out" / "per_case.csv")
    written = pd.read_csv(tmp_path / "out" / "per_case.csv")
    assert list(written.columns) == [
        "case_id", "dice_et", "dice_tc", "dice_wt", "hd95_et", "hd95_tc", "hd95_wt",
        "lesion_sens_et", "lesion_sens_tc", "lesion_sens_wt",
    ]
    assert list(written["case_id"]) == ["case_b", "case_a"]
    assert frame.shape == (2, 10)


def test_missing_prediction_names_the_case(tmp_path, reference):
    (tmp_path / "pred").mkdir()
    with pytest.raises(FileNotFoundError, match="held-out case lost_case"):
        ev.evaluate(tmp_path / "pred", {"lost_case": _save(tmp_path / "r.nii.gz", reference)}, tmp_path / "o.csv")
