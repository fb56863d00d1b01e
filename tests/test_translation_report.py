"""Translation accuracy of G on held-out real cases, against the two baselines."""

from __future__ import annotations

import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from segmentation_fixtures import REPO
from skimage.metrics import structural_similarity

from tumorfab.casefolder import Case, case_file, load_case, save_case
from tumorfab.report.translation import (
    COLUMNS,
    METHODS,
    METRICS,
    input_sets,
    masked_ssim,
    scored_region,
    translation_markdown,
    translation_scores,
    translation_summary,
    translation_table,
    write_translation,
)
from tumorfab.synthesis.histogram_match import brain_quantiles, match_to_quantiles

FOUR = ["t1n", "t1c", "t2w", "t2f"]
SHAPE = (24, 24, 24)
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REAL_CASE = "BraTS-GLI-00000-000"


def make_case(folder: Path, rng: np.random.Generator, modalities=FOUR) -> Path:
    """A brain (ellipsoid) with a tumour ball; t1n smooth noise, the other
    channels monotone and non-monotone functions of it plus their own noise."""
    grid = np.indices(SHAPE, dtype=np.float32)
    centre = np.array(SHAPE, np.float32) / 2
    brain = sum(((g - c) / (c - 2)) ** 2 for g, c in zip(grid, centre)) <= 1
    tumour_at = centre + rng.uniform(-2, 2, 3)
    seg = np.zeros(SHAPE, np.uint8)
    seg[sum((g - c) ** 2 for g, c in zip(grid, tumour_at)) <= 16] = 2
    seg[sum((g - c) ** 2 for g, c in zip(grid, tumour_at)) <= 4] = 1
    seg[~brain] = 0
    t1n = np.tanh(np.cumsum(rng.normal(0, 0.15, SHAPE), axis=0) * 0.5)
    derived = {"t1n": t1n, "t1c": 0.8 * t1n + 0.1, "t2w": -t1n, "t2f": 1.6 * t1n**2 - 0.8}
    images = {}
    for m in modalities:
        image = np.clip(derived[m] + rng.normal(0, 0.05, SHAPE), -1, 1)
        image[seg > 0] = 0.7
        images[m] = np.where(brain, image, -1).astype(np.float32)
    save_case(Case(images, brain.astype(np.uint8), seg, np.eye(4)), folder)
    return folder


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation")
    rng = np.random.default_rng(0)
    train = [make_case(root / "train" / f"BraTS-{i:05d}", rng) for i in range(3)]
    heldout = [make_case(root / "heldout" / f"BraTS-{i:05d}", rng) for i in range(10, 13)]
    return {"root": root, "train": train, "heldout": heldout}


def copy_t1n(images, brainmask, labels, present):
    """A translator that predicts every channel as the given t1n."""
    return {m: images["t1n"] for m in FOUR}


def oracle_for(case_dirs):
    """A translator that returns the real channels (recognized by the given t1n)."""
    cases = [load_case(p, FOUR) for p in case_dirs]

    def oracle(images, brainmask, labels, present):
        case = next(c for c in cases if np.array_equal(c.images["t1n"], images["t1n"]))
        return dict(case.images)

    return oracle


@pytest.fixture(scope="module")
def oracle_table(cohort):
    return translation_table(cohort["heldout"], cohort["train"], FOUR, oracle_for(cohort["heldout"]))


def _rows(table: pd.DataFrame, method: str) -> pd.DataFrame:
    return table[table["method"] == method].drop(columns="method").reset_index(drop=True)


# --- Metrics --------------------------------------------------------------------------------
def test_perfect_prediction_scores_ssim_1_mae_0_psnr_inf(cohort):
    case = load_case(cohort["heldout"][0], FOUR)
    region = scored_region(case.brainmask, case.seg)
    scores = translation_scores(case.images["t2w"], case.images["t2w"], region)
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert scores["mae"] == 0.0
    assert scores["psnr"] == math.inf


def test_psnr_and_mae_are_those_of_the_unit_range_images():
    region = np.zeros(SHAPE, bool)
    region[6:18, 6:18, 6:18] = True
    target = np.where(region, 0.2, -1.0)
    prediction = np.where(region, 0.6, -1.0)  # 0.4 apart on [-1, 1]: 0.2 on [0, 1]
    scores = translation_scores(prediction, target, region)
    assert scores["mae"] == pytest.approx(0.2)
    assert scores["psnr"] == pytest.approx(10 * math.log10(1 / 0.2**2))


def test_tumour_voxels_change_no_score_and_brain_voxels_do(cohort):
    case = load_case(cohort["heldout"][0], FOUR)
    region = scored_region(case.brainmask, case.seg)
    prediction, target = case.images["t1n"], case.images["t2w"]
    base = translation_scores(prediction, target, region)
    in_tumour = np.where(case.seg > 0, -prediction + 0.3, prediction)
    assert translation_scores(in_tumour, target, region) == base
    in_brain = np.where(region & (np.indices(SHAPE)[0] < 12), prediction + 0.3, prediction)
    changed = translation_scores(in_brain, target, region)
    assert all(changed[k] != base[k] for k in METRICS)


def test_ssim_on_the_region_box_equals_the_whole_volume_map(cohort):
    case = load_case(cohort["heldout"][1], FOUR)
    region = scored_region(case.brainmask, case.seg)
    x = np.where(region, (case.images["t1n"] + 1) / 2, 0).astype(np.float64)
    y = np.where(region, (case.images["t2f"] + 1) / 2, 0).astype(np.float64)
    _, whole = structural_similarity(
        y, x, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True
    )
    assert masked_ssim(x, y, region) == pytest.approx(float(whole[region].mean()), abs=1e-12)


# --- Baselines and the translator ----------------------------------------------------------------
def test_t1n_baseline_is_the_given_t1n(cohort):
    table = translation_table(cohort["heldout"], cohort["train"], FOUR, copy_t1n)
    pd.testing.assert_frame_equal(_rows(table, "generator"), _rows(table, "t1n"))


def test_matched_baseline_is_t1n_matched_to_the_training_cases_channel(cohort):
    quantiles = {
        m: brain_quantiles([(c.images[m], c.brainmask) for c in (load_case(p, FOUR) for p in cohort["train"])])
        for m in FOUR[1:]
    }

    def matched(images, brainmask, labels, present):
        return {m: match_to_quantiles(images["t1n"], brainmask, quantiles[m]) for m in FOUR[1:]}

    table = translation_table(cohort["heldout"], cohort["train"], FOUR, matched)
    pd.testing.assert_frame_equal(_rows(table, "generator"), _rows(table, "t1n_matched"))
    # matching is monotone: it recovers t1c (a rising function of t1n), not t2w (-t1n)
    mae = table[table["method"] == "t1n_matched"].groupby("channel")["mae"].max()
    assert mae["t1c"] < 0.05 < mae["t2w"]


def test_translator_is_given_only_the_input_channels(cohort):
    calls = []

    def spy(images, brainmask, labels, present):
        calls.append((sorted(images), tuple(present), int((labels > 0).sum())))
        return copy_t1n(images, brainmask, labels, present)

    translation_table(cohort["heldout"][:1], cohort["train"], FOUR, spy)
    seg = load_case(cohort["heldout"][0], FOUR).seg
    assert calls == [(["t1n"], ("t1n",), int((seg > 0).sum())), (["t1n", "t2w"], ("t1n", "t2w"), int((seg > 0).sum()))]


# --- The tables ----------------------------------------------------------------------------------
def test_input_sets_follow_the_modalities():
    assert input_sets(FOUR) == [("t1n",), ("t1n", "t2w")]
    assert input_sets(["t1n", "t1c"]) == [("t1n",)]
    assert input_sets(["t1n", "t2w"]) == [("t1n",)]  # nothing left to make from t1n + t2w
    for modalities in (["t1n"], ["t1c", "t2w"]):
        with pytest.raises(ValueError, match="data.modalities"):
            input_sets(modalities)


def test_long_table_has_a_row_per_case_input_set_channel_and_method(cohort, oracle_table):
    assert list(oracle_table.columns) == COLUMNS
    assert len(oracle_table) == len(cohort["heldout"]) * (3 + 2) * len(METHODS)
    first = oracle_table[oracle_table["case"] == "BraTS-00010"]
    assert first[["inputs", "channel"]].drop_duplicates().apply(tuple, axis=1).tolist() == [
        ("t1n", "t1c"), ("t1n", "t2w"), ("t1n", "t2f"), ("t1n+t2w", "t1c"), ("t1n+t2w", "t2f"),
    ]
    oracle = oracle_table[oracle_table["method"] == "generator"]
    assert np.allclose(oracle["ssim"], 1.0) and (oracle["mae"] == 0).all() and np.isinf(oracle["psnr"]).all()


def test_summary_and_markdown_have_one_row_per_translated_channel(oracle_table):
    summary = translation_summary(oracle_table)
    assert summary[["inputs", "channel"]].apply(tuple, axis=1).tolist() == [
        ("t1n", "t1c"), ("t1n", "t2w"), ("t1n", "t2f"), ("t1n+t2w", "t1c"), ("t1n+t2w", "t2f"),
    ]
    assert (summary["n_cases"] == 3).all()
    # the oracle beats both baselines: positive margins, against the better baseline
    assert (summary["margin_ssim_mean"] > 0).all() and (summary["margin_mae_mean"] > 0).all()
    for _, row in summary.iterrows():
        best = max(("t1n", "t1n_matched"), key=lambda b: row[f"{b}_ssim_mean"])
        assert row["margin_ssim_baseline"] == best
        assert row["margin_ssim_mean"] == pytest.approx(1.0 - row[f"{best}_ssim_mean"])
    markdown = translation_markdown(oracle_table)
    sections = markdown.split("### Inputs: ")[1:]
    assert [s.splitlines()[0] for s in sections] == ["t1n", "t1n+t2w"]
    for section, n_rows in zip(sections, (3, 2)):
        table_lines = [line for line in section.splitlines() if line.startswith("|")]
        assert len(table_lines) == 2 + n_rows
        assert {line.count(" | ") for line in table_lines} == {2 + 3 * 3 + 2 - 1}
    assert "| t2f | 3 | 1.0000 ± 0.0000 | inf | 0.0000 ± 0.0000 |" in markdown


def test_written_outputs_are_byte_identical_across_runs(cohort, tmp_path):
    contents = []
    for run in ("a", "b"):
        out = tmp_path / run
        write_translation(cohort["heldout"], cohort["train"], FOUR, copy_t1n, out / "t.csv", out / "t.md")
        contents.append(((out / "t.csv").read_bytes(), (out / "t.md").read_bytes()))
    assert contents[0] == contents[1]
    assert pd.read_csv(tmp_path / "a" / "t.csv").shape == (3 * 5 * 3, len(COLUMNS))


# --- Errors --------------------------------------------------------------------------------------
def test_a_heldout_case_lacking_a_channel_is_an_error_naming_the_file(cohort, tmp_path):
    lacking = make_case(tmp_path / "BraTS-00099", np.random.default_rng(5), modalities=["t1n", "t1c", "t2w"])
    expected = r"held-out case .*BraTS-00099 lacks channel\(s\) \['t2f'\].*t2f\.nii\.gz"
    with pytest.raises(FileNotFoundError, match=expected):
        translation_table([lacking], cohort["train"], FOUR, copy_t1n)


def test_a_training_case_lacking_a_channel_is_an_error_naming_the_file(cohort, tmp_path):
    lacking = make_case(tmp_path / "BraTS-00098", np.random.default_rng(6), modalities=["t1n", "t2w", "t2f"])
    with pytest.raises(FileNotFoundError, match=r"real training case .*BraTS-00098 lacks channel\(s\) \['t1c'\]"):
        translation_table(cohort["heldout"], [*cohort["train"], lacking], FOUR, copy_t1n)


def test_a_translator_missing_a_channel_is_an_error(cohort):
    def partial(images, brainmask, labels, present):
        return {"t1c": images["t1n"]}

    with pytest.raises(ValueError, match=r"returned no \['t2w', 't2f'\]"):
        translation_table(cohort["heldout"][:1], cohort["train"], FOUR, partial)


def test_heldout_cases_that_are_training_cases_are_an_error(cohort):
    with pytest.raises(ValueError, match="also training cases"):
        translation_table(cohort["heldout"][:1], [*cohort["train"], cohort["heldout"][0]], FOUR, copy_t1n)


# --- The rule's script ---------------------------------------------------------------------------
def test_script_runs_g_on_each_case_and_writes_both_tables(cohort, tmp_path, monkeypatch):
    import tumorfab.synthesis.tfgan.refine as refine

    generator = SimpleNamespace(modalities=FOUR)
    monkeypatch.setattr(refine, "load_trained_generator", lambda path: generator)
    oracle = oracle_for(cohort["heldout"])
    monkeypatch.setattr(refine, "translate", lambda g, *args: oracle(*args) if g is generator else None)
    out = {"csv": str(tmp_path / "translation.csv"), "md": str(tmp_path / "translation.md")}
    smk = SimpleNamespace(
        input=SimpleNamespace(generator="G.pt"),
        output=SimpleNamespace(**out),
        params=SimpleNamespace(
            heldout_case_dirs=[str(p) for p in cohort["heldout"]],
            train_case_dirs=[str(p) for p in cohort["train"]],
            modalities=FOUR,
        ),
        threads=1,
        log=[str(tmp_path / "log.txt")],
    )
    runpy.run_path(str(REPO / "workflow/scripts/report_translation.py"), init_globals={"snakemake": smk})
    written = pd.read_csv(out["csv"])
    assert np.allclose(written[written["method"] == "generator"]["ssim"], 1.0)
    assert "### Inputs: t1n+t2w" in Path(out["md"]).read_text()


# --- The real BraTS case -------------------------------------------------------------------------
def _real_case_folders(root: Path) -> tuple[Path, Path]:
    """The real case as two case folders, the held-out case as it is and a training case
    mirrored: every other voxel along each axis (2 mm; the scores at 1 mm take six times
    as long and are the same to 0.01), brain = t1n > 0 (BraTS is skull-stripped), each
    channel divided by its 99.5th brain percentile and clipped, to [-1, 1]."""
    source = REAL / "brats" / REAL_CASE
    volumes = {m: nib.load(str(source / f"{REAL_CASE}-{m}.nii.gz")) for m in [*FOUR, "seg"]}
    data = {m: np.asarray(v.dataobj, dtype=np.float32)[::2, ::2, ::2] for m, v in volumes.items()}
    affine = volumes["t1n"].affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    folders = []
    for name, flip in ((f"heldout/{REAL_CASE}", False), ("train/flipped", True)):
        case = {m: np.ascontiguousarray(v[::-1]) for m, v in data.items()} if flip else data
        brain = case["t1n"] > 0
        images = {}
        for m in FOUR:
            top = np.percentile(case[m][brain], 99.5)
            images[m] = np.where(brain, np.clip(case[m] / top, 0, 1) * 2 - 1, -1).astype(np.float32)
        folders.append(root / name)
        save_case(Case(images, brain.astype(np.uint8), case["seg"].astype(np.uint8), affine), folders[-1])
    return folders[0], folders[1]


@pytest.mark.skipif(not (REAL / "brats" / REAL_CASE).is_dir(), reason=f"{REAL} is not there (CI has it)")
def test_real_case_oracle_is_perfect_and_baselines_are_imperfect(tmp_path):
    heldout, train = _real_case_folders(tmp_path)
    table = translation_table([heldout], [train], FOUR, oracle_for([heldout]))
    print(translation_markdown(table))
    oracle = table[table["method"] == "generator"]
    assert np.allclose(oracle["ssim"], 1.0) and (oracle["mae"] == 0).all()
    baselines = table[table["method"] != "generator"]
    assert np.isfinite(baselines[list(METRICS)].to_numpy()).all()
    assert (baselines["ssim"] < 0.99).all() and (baselines["mae"] > 0.01).all()
    assert case_file(heldout, "t2f").is_file()
