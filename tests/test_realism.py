"""Realism before training: Fréchet distances of F-features."""

from __future__ import annotations

import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from segmentation_fixtures import REPO, make_cases
from test_tfaug_data import TinyEncoder

from tumorfab.casefolder import load_case, save_case
from tumorfab.report.realism import (
    COLUMNS,
    REFERENCE_SOURCE,
    REGIONS,
    frechet_distance,
    realism_table,
    region_map,
    write_realism,
)
from tumorfab.synthesis.manifest import synthetic_case_id, write_manifest

MODALITIES = ["t1n"]
SHAPE = (20, 20, 20)


def _source(root: Path, source: str, real_dirs: list[Path], tumour_shift: float = 0.0) -> dict:
    """A synthetic source made of copies of ``real_dirs`` (tumour intensities shifted)."""
    cases_dir = root / source / "cases"
    rows = []
    for i, real in enumerate(real_dirs):
        case_id = synthetic_case_id(source, i)
        case = load_case(real, MODALITIES)
        for modality in MODALITIES:
            image = case.images[modality]
            case.images[modality] = np.where(case.seg > 0, np.clip(image + tumour_shift, -1, 1), image)
        save_case(case, cases_dir / case_id)
        rows.append({"case_id": case_id, "seed": i})
    manifest = root / source / "manifest.csv"
    write_manifest(rows, ["case_id", "seed"], manifest, source)
    return {"manifest": str(manifest), "cases_dir": str(cases_dir)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("realism")
    train = list(make_cases(root / "real", [f"BraTS-{i:05d}" for i in range(6)], seed=0, shape=SHAPE).values())
    held_out = list(make_cases(root / "heldout", [f"BraTS-{i:05d}" for i in range(10, 14)], seed=1, shape=SHAPE).values())
    sources = {
        "carvemix": _source(root, "carvemix", train),  # the training cases themselves
        "tfaug": _source(root, "tfaug", train, tumour_shift=0.4),  # tumours brighter
    }
    return {"root": root, "train": train, "held_out": held_out, "sources": sources}


def _table(study, **kwargs):
    return realism_table(
        None, 3, study["train"], study["sources"], MODALITIES,
        reference_case_dirs=kwargs.pop("reference", study["held_out"]), extractor=TinyEncoder(), **kwargs,
    )


@pytest.fixture(scope="module")
def table(study):
    return _table(study)


def _distance(table: pd.DataFrame, source: str, region: str) -> float:
    row = table[(table["source"] == source) & (table["region"] == region)]
    assert len(row) == 1
    return float(row["frechet_distance"].iloc[0])


# --- Fréchet distance ---------------------------------------------------------------
def test_distance_of_a_set_to_itself_is_zero_and_a_shift_adds_its_squared_norm():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    assert frechet_distance(x, x)[0] == pytest.approx(0.0, abs=1e-8)
    d, ridge = frechet_distance(x + 0.5, x)  # equal covariances: |shift|^2 = 6 * 0.25
    assert d == pytest.approx(1.5, rel=1e-6)
    assert ridge == 0.0
    assert frechet_distance(x + 1.0, x)[0] > d


def test_singular_covariances_get_a_ridge_and_stay_finite():
    """Fewer cases than features, large and partly constant ReLU features: FIDMetric alone fails."""
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(8, 224)) * rng.uniform(0, 10, 224) - 2, 0) * 100
    x[:, :70] = 0
    y = np.maximum(rng.normal(size=(8, 224)) * rng.uniform(0, 10, 224) - 2, 0) * 100
    variance = x.var(axis=0, ddof=1).mean()
    same, ridge = frechet_distance(x, x)
    assert ridge > 0  # MONAI's sqrtm of the singular product failed here
    assert 0.0 <= same < 1e-6 * variance * x.shape[1]
    shifted, _ = frechet_distance(x + 1.0, x)
    assert shifted == pytest.approx(224.0, rel=1e-3)
    other, _ = frechet_distance(y, x)
    assert math.isfinite(other) and other > shifted


def test_a_side_with_one_vector_has_no_distance():
    d, ridge = frechet_distance(np.ones((1, 3)), np.zeros((4, 3)))
    assert math.isnan(d) and math.isnan(ridge)


def test_region_map_separates_tumour_and_the_rest_of_the_brain():
    seg = np.array([0, 0, 1, 2, 3, 0])
    brain = np.array([0, 1, 1, 1, 1, 1])
    assert region_map(seg, brain).tolist() == [0, REGIONS["brain"], *[REGIONS["tumour"]] * 3, REGIONS["brain"]]


# --- The table --------------------------------------------------------------------
def test_table_has_a_row_per_source_and_region_with_the_documented_columns(table, study):
    assert list(table.columns) == COLUMNS
    assert table[["source", "region"]].values.tolist() == [
        [s, r] for s in [REFERENCE_SOURCE, "carvemix", "tfaug"] for r in REGIONS
    ]
    assert table.loc[table["source"] == "carvemix", "label"].unique().tolist() == ["CarveMix"]
    assert (table["n_real"] == len(study["train"])).all()
    assert (table.loc[table["source"] == REFERENCE_SOURCE, "n_synthetic"] == len(study["held_out"])).all()
    assert (table.loc[table["source"] != REFERENCE_SOURCE, "n_synthetic"] == len(study["train"])).all()
    assert (table["feature_dim"] == 4 + 8 + 8).all()  # TinyEncoder's channels, stages concatenated
    assert table["frechet_distance"].notna().all()


def test_the_training_cases_themselves_are_at_distance_zero(table):
    for region in REGIONS:
        assert _distance(table, "carvemix", region) == pytest.approx(0.0, abs=1e-6)


def test_shifted_tumours_are_farther_than_unshifted_ones(table):
    shifted = _distance(table, "tfaug", "tumour")
    assert shifted > 100 * max(_distance(table, "carvemix", "tumour"), 1e-9)
    assert shifted > _distance(table, "tfaug", "brain")  # the shift is in the tumour only
    assert _distance(table, REFERENCE_SOURCE, "tumour") > 0  # two real sets differ


def test_the_table_is_deterministic(table, study):
    pd.testing.assert_frame_equal(_table(study), table)


def test_without_reference_there_is_no_reference_row_and_max_synthetic_takes_a_prefix(study):
    small = _table(study, reference=None, max_synthetic=3)
    assert REFERENCE_SOURCE not in set(small["source"])
    assert (small["n_synthetic"] == 3).all()


def test_held_out_cases_must_not_be_training_cases(study):
    with pytest.raises(ValueError, match="also training cases"):
        _table(study, reference=study["train"][:2])


# --- Files and the workflow script ---------------------------------------------------
def test_write_realism_writes_csv_markdown_and_figure(study, tmp_path):
    out = {k: tmp_path / f"realism.{k}" for k in ("csv", "md", "png")}
    table = write_realism(
        None, 3, study["train"], study["sources"], MODALITIES, out["csv"], out["md"], out["png"],
        reference_case_dirs=study["held_out"], extractor=TinyEncoder(),
    )
    written = pd.read_csv(out["csv"])
    assert list(written.columns) == COLUMNS
    assert len(written) == len(table) == 6
    markdown = out["md"].read_text()
    assert "CarveMix" in markdown and "TF-Aug" in markdown and "*Real held-out (reference)*" in markdown
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes left nothing behind


def test_the_workflow_script_passes_the_rule_s_names(study, tmp_path, monkeypatch):
    import tumorfab.segmentation.features as features

    monkeypatch.setattr(features, "load_feature_extractor", lambda model_dir, n_stages: TinyEncoder())
    out = {k: str(tmp_path / f"realism.{k}") for k in ("csv", "md", "png")}
    intensities = {k: str(tmp_path / f"intensities.{k}") for k in ("csv", "md")}
    smk = SimpleNamespace(
        input=SimpleNamespace(feature_extractor=str(tmp_path / "model")),
        params=SimpleNamespace(
            real_case_dirs=[str(p) for p in study["train"]],
            reference_case_dirs=[],
            sources=study["sources"],
            modalities=MODALITIES,
            n_stages=3,
        ),
        output=SimpleNamespace(
            csv=out["csv"], md=out["md"], figure=out["png"],
            intensities_csv=intensities["csv"], intensities_md=intensities["md"],
        ),
        log=[str(tmp_path / "realism.log")],
    )
    runpy.run_path(str(REPO / "workflow/scripts/report_realism.py"), init_globals={"snakemake": smk})
    written = pd.read_csv(out["csv"])
    assert set(written["source"]) == {"carvemix", "tfaug"}
    assert Path(out["png"]).exists() and Path(out["md"]).exists()
    assert {"carvemix", "tfaug"} <= set(pd.read_csv(intensities["csv"])["source"])
    assert Path(intensities["md"]).exists()


def test_four_channels_go_through_f_together_and_a_shift_in_one_of_them_shows(study, tmp_path):
    channels = ["t1n", "t1c", "t2w", "t2f"]

    def four_channel_copy(case_dir: Path, out: Path, t2f_tumour_shift: float = 0.0) -> Path:
        case = load_case(case_dir, MODALITIES)
        t1n = case.images["t1n"]
        brain, tumour = case.brainmask > 0, case.seg > 0
        case.images = {c: np.where(brain, np.clip(t1n + 0.05 * k, -1, 1), -1) for k, c in enumerate(channels)}
        case.images["t2f"] = np.where(tumour, np.clip(case.images["t2f"] + t2f_tumour_shift, -1, 1), case.images["t2f"])
        save_case(case, out)
        return out

    train = [four_channel_copy(p, tmp_path / "real" / p.name) for p in study["train"]]
    sources = {}
    for source, shift in (("carvemix", 0.0), ("tfaug", 0.4)):
        rows = []
        for i, real in enumerate(study["train"]):
            four_channel_copy(real, tmp_path / source / "cases" / synthetic_case_id(source, i), shift)
            rows.append({"case_id": synthetic_case_id(source, i), "seed": i})
        write_manifest(rows, ["case_id", "seed"], tmp_path / source / "manifest.csv", source)
        sources[source] = {"manifest": tmp_path / source / "manifest.csv", "cases_dir": tmp_path / source / "cases"}
    table = realism_table(None, 3, train, sources, channels, extractor=TinyEncoder(channels=4))
    assert table[["source", "region"]].values.tolist() == [[s, r] for s in sources for r in REGIONS]
    assert _distance(table, "carvemix", "tumour") == pytest.approx(0.0, abs=1e-6)
    assert _distance(table, "tfaug", "tumour") > 100 * max(_distance(table, "carvemix", "tumour"), 1e-9)
