"""A cohort's card: lesions measured from TF-Aug's real output and checked against the controls asked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers.schema_defaults import schema_defaults
from test_tfaug_data import AFFINE, CENTRE, healthy_scan, make_cohort, write_case

from tumorfab.fabricate.card import check_controls, measure_lesions, write_card
from tumorfab.report.realism import COLUMNS as REALISM_COLUMNS
from tumorfab.synthesis.tfaug.generate import generate_tfaug
from tumorfab.synthesis.tfaug.intensity_fit import FitResult, save_intensity
from tumorfab.synthesis.tfaug.masks import Grid
from tumorfab.synthesis.tfaug.settings import TFAugSettings

GRID = Grid((40, 40, 40), AFFINE)
#: Three lesions per case in the left hemisphere, each 0.5-1.5 ml (the phantom's lesions are ~0.5-1 ml).
LEFT = {"location": {"mode": "hemisphere", "side": "left"}, "size_ml": [0.5, 1.5], "n_lesions": [3, 3]}
#: Lesion centroids within 6 mm of a point off the centre, with the mass effect on.
COORDINATES = {
    "location": {"mode": "coordinates", "center_mm": GRID.to_world(CENTRE + [5, 5, 0]).tolist(), "radius_mm": 6.0},
    "n_lesions": 1,
}
COHORTS = {
    "left": {"controls": LEFT, "masks": {"scale": [0.5, 0.7]}},
    "coordinates": {"controls": COORDINATES, "masks": {"scale": [0.5, 0.7]}, "mass_effect": {"enabled": True}},
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Three TF-Aug cases per cohort of :data:`COHORTS`: root, name -> (cases, manifest), healthy folders."""
    root = tmp_path_factory.mktemp("card")
    real, healthy = make_cohort(root, n_real=4, n_healthy=2)
    fit = FitResult(np.array([[0.6, 1.2, 1.4]]), np.array([[-0.5, 0.1, 0.3]]), 1.0, 0.5)
    save_intensity(fit, ["t1n"], root / "intensity.json")
    cohorts = {}
    for name, overrides in COHORTS.items():
        settings = TFAugSettings.from_config(schema_defaults({"tfaug": overrides})["tfaug"])
        out = root / name
        generate_tfaug(
            real, healthy, root / "intensity.json", out / "cases", out / "manifest.csv", 3, 7, ["t1n"], settings
        )
        cohorts[name] = (out / "cases", out / "manifest.csv")
    return root, cohorts, {p.name: p for p in healthy}


def measured_cases(made, name: str) -> list[tuple[pd.Series, list[dict]]]:
    _, cohorts, healthy = made
    cases, manifest = cohorts[name]
    rows = pd.read_csv(manifest, dtype={"case_id": str})
    return [
        (row, measure_lesions(cases / row.case_id, row, healthy[row.healthy_subject])) for _, row in rows.iterrows()
    ]


@pytest.mark.parametrize("name", list(COHORTS))
def test_every_generated_case_is_measured_within_its_controls(made, name):
    for row, lesions in measured_cases(made, name):
        result = check_controls(lesions, COHORTS[name]["controls"])
        assert result["within"], (row.case_id, result)
        assert set(result["checks"]) == set(COHORTS[name]["controls"])


def test_measured_lesions_are_the_ones_the_manifest_records(made):
    for row, lesions in measured_cases(made, "left"):
        records = json.loads(row.lesions)
        assert [lesion["n_lesions"] for lesion in lesions] == [3, 3, 3]
        for lesion, record in zip(lesions, records):
            assert lesion["volume_ml"] == pytest.approx(record["volume_ml"], abs=1e-4)
            assert lesion["centroid_mm"] == pytest.approx(record["centroid_mm"], abs=1e-3)
            assert lesion["hemisphere"] == "left" and lesion["tissue"] in {"csf", "gm", "wm"}
            assert lesion["lost_after_placement_ml"] == 0.0


def test_a_wrong_side_is_reported_as_not_holding_with_the_reason(made):
    wrong = {**LEFT, "location": {"mode": "hemisphere", "side": "right"}}
    for _, lesions in measured_cases(made, "left"):
        result = check_controls(lesions, wrong)
        location = result["checks"]["location"]
        assert not result["within"] and not location["holds"]
        assert "lesion 1: centroid in the left hemisphere, not in the right one" in location["reason"]
        assert result["checks"]["size_ml"]["holds"] and result["checks"]["n_lesions"]["holds"]


def test_a_volume_and_a_count_out_of_range_are_reported(made):
    _, lesions = measured_cases(made, "left")[0]
    result = check_controls(lesions, {"size_ml": [0.01, 0.02], "n_lesions": 1})
    assert "above the maximum 0.02 ml" in result["checks"]["size_ml"]["reason"]
    assert result["checks"]["n_lesions"]["reason"] == "3 lesions, outside [1, 1]"


def test_without_records_each_connected_component_is_a_lesion(made):
    _, cohorts, _ = made
    cases, manifest = cohorts["left"]
    row = pd.read_csv(manifest, dtype={"case_id": str}).iloc[0]
    by_records = measure_lesions(cases / row.case_id, row)
    by_components = measure_lesions(cases / row.case_id, {"case_id": row.case_id, "seed": 7})
    assert {lesion["identified_by"] for lesion in by_components} == {"components"}
    assert sorted(lesion["volume_ml"] for lesion in by_components) == sorted(
        lesion["volume_ml"] for lesion in by_records
    )


def record(lesion: np.ndarray, n_voxels: int | None = None) -> dict:
    """A TF-Aug manifest record of a lesion placed with ``n_voxels`` voxels (default: as it is)."""
    n_voxels = int(lesion.sum()) if n_voxels is None else n_voxels
    centroid_mm = GRID.to_world(np.argwhere(lesion).mean(axis=0)).tolist()
    return {"centroid_mm": centroid_mm, "volume_ml": n_voxels * GRID.voxel_ml}


def test_a_satellite_joins_the_lesion_whose_recorded_centroid_is_nearest(tmp_path):
    image, brain = healthy_scan(np.random.default_rng(0))
    seg = np.zeros(brain.shape, np.uint8)
    seg[10:14, 18:22, 18:22] = 2  # lesion 1: a 4³ block ...
    seg[16, 20, 20] = 2  # ... and its satellite, 2 voxels away
    seg[26:30, 18:22, 18:22] = 2  # lesion 2
    case = write_case(tmp_path / "case", image, brain, seg)
    first = np.zeros(seg.shape, bool)
    first[:20] = seg[:20] > 0
    second = (seg > 0) & ~first
    row = {"lesions": json.dumps([record(part) for part in (first, second)])}
    lesions = measure_lesions(case, row)
    assert [lesion["volume_ml"] for lesion in lesions] == pytest.approx([65 * GRID.voxel_ml, 64 * GRID.voxel_ml])
    assert lesions[0]["n_lesions"] == 2


def test_volume_dropped_after_placement_lowers_the_size_minimum_by_that_volume(tmp_path):
    image, brain = healthy_scan(np.random.default_rng(0))
    seg = np.zeros(brain.shape, np.uint8)
    seg[18:22, 18:22, 18:22] = 2  # 64 voxels left of the 80 placed
    case = write_case(tmp_path / "case", image, brain, seg)
    size = {"size_ml": [70 * GRID.voxel_ml, 90 * GRID.voxel_ml]}
    clipped = measure_lesions(case, {"lesions": json.dumps([record(seg > 0, n_voxels=80)])})
    assert clipped[0]["lost_after_placement_ml"] == pytest.approx(16 * GRID.voxel_ml)
    assert check_controls(clipped, size)["within"]
    unrecorded = measure_lesions(case)
    assert "below the minimum" in check_controls(unrecorded, size)["checks"]["size_ml"]["reason"]


def test_tissue_without_a_healthy_scan_is_reported_as_not_measured(made):
    _, cohorts, _ = made
    cases, manifest = cohorts["left"]
    row = pd.read_csv(manifest, dtype={"case_id": str}).iloc[0]
    lesions = measure_lesions(cases / row.case_id, row)
    result = check_controls(lesions, {"location": {"mode": "tissue", "tissue": "wm"}})
    assert result["checks"]["location"]["reason"].startswith("lesion 1: tissue not measured")


def test_write_card_writes_json_markdown_and_figures(made, tmp_path):
    root, cohorts, healthy = made
    cases, manifest = cohorts["left"]
    realism = pd.DataFrame(
        [["left", "left", region, 3, 4, 20, 1.5, 0.0] for region in ("tumour", "brain")], columns=REALISM_COLUMNS
    )
    cohort = {"source": "tfaug", "n_cases": 3, "seed": 7, "controls": LEFT}
    card = write_card(
        "left", cohort, "tfaug", manifest, cases, {"intensity": root / "intensity.json"},
        "snakemake fabricate_left --configfile config/demo.yaml", realism,
        tmp_path / "card.md", tmp_path / "card.json", tmp_path / "figures", healthy,
    )
    on_disk = json.loads((tmp_path / "card.json").read_text())
    assert on_disk == card
    sha256 = hashlib.sha256((root / "intensity.json").read_bytes()).hexdigest()
    assert on_disk["models"]["intensity"]["sha256"] == sha256
    assert on_disk["within_controls"] == {"n": 3, "of": 3, "fraction": 1.0}
    assert on_disk["config"] == cohort and on_disk["command"].startswith("snakemake fabricate_left")
    first = on_disk["cases"][0]
    assert first["provenance"]["healthy_subject"] in healthy and first["provenance"]["seed"] == 7
    assert len(first["provenance"]["lesions"]) == 3 and first["check"]["within"]
    assert [row["region"] for row in on_disk["realism"]] == ["tumour", "brain"]
    markdown = (tmp_path / "card.md").read_text()
    assert "3 of 3 cases (100 %) within their controls" in markdown
    assert "| *requested* | | [3, 3] | [0.5, 1.5] ml | hemisphere left | | |" in markdown
    assert "![mosaic](figures/mosaic.png)" in markdown and "## Realism" in markdown
    for png in on_disk["figures"].values():
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
