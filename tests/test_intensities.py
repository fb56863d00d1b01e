"""Intensities per sequence (tumorfab.report.intensities): brain and ET of each source beside the real cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tumorfab.casefolder import Case, save_case
from tumorfab.report.intensities import (
    CLAMP_LEVEL,
    COLUMNS,
    REAL_HELDOUT_SOURCE,
    REAL_TRAINING_SOURCE,
    intensity_markdown,
    intensity_table,
    write_intensities,
)
from tumorfab.synthesis.manifest import synthetic_case_id, write_manifest

CHANNELS = ["t1n", "t1c", "t2w", "t2f"]
SHAPE = (8, 8, 6)


def _case(folder: Path, brain_value: float, et_values: list[float], channel_offset: float = 0.1) -> None:
    """Brain mask = all but the border; ED one row; ET the first voxels of another row
    (``et_values``); channel ``k`` is channel 0 plus ``k * channel_offset``."""
    brainmask = np.zeros(SHAPE, np.uint8)
    brainmask[1:-1, 1:-1, 1:-1] = 1
    seg = np.zeros(SHAPE, np.uint8)
    seg[2, 2:6, 2] = 2
    image = np.where(brainmask > 0, brain_value, -1.0).astype(np.float32)
    image[2, 2:6, 2] = 0.9  # ED: neither brain nor ET
    for i, value in enumerate(et_values):
        seg[3, 1 + i, 3] = 3
        image[3, 1 + i, 3] = value
    images = {c: np.where(brainmask > 0, np.clip(image + k * channel_offset, -1, 1), -1).astype(np.float32)
              for k, c in enumerate(CHANNELS)}
    save_case(Case(images, brainmask, seg, np.eye(4)), folder)


def _source(root: Path, source: str, specs: list[tuple[float, list[float]]]) -> dict:
    rows = []
    for i, (brain, et) in enumerate(specs):
        _case(root / source / "cases" / synthetic_case_id(source, i), brain, et)
        rows.append({"case_id": synthetic_case_id(source, i), "seed": 0})
    write_manifest(rows, ["case_id", "seed"], root / source / "manifest.csv", source)
    return {"manifest": str(root / source / "manifest.csv"), "cases_dir": str(root / source / "cases")}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("intensities")
    train = []
    for i, (brain, et) in enumerate([(0.1, [0.5, 0.6]), (0.3, [0.4])]):
        _case(root / "real" / f"r{i}", brain, et)
        train.append(root / "real" / f"r{i}")
    _case(root / "heldout" / "h0", 0.2, [0.5, 0.5, 0.8])
    sources = {
        "tfaug": _source(root, "tfaug", [(0.5, [1.0, 1.0, 0.995, 0.2]), (0.5, [])]),  # ET piled at +1
        "carvemix": _source(root, "carvemix", [(0.1, [0.5, 0.6])]),
    }
    return {"root": root, "train": train, "held_out": [root / "heldout" / "h0"], "sources": sources}


@pytest.fixture(scope="module")
def table(study):
    return intensity_table(study["train"], study["sources"], CHANNELS, reference_case_dirs=study["held_out"])


def _row(table: pd.DataFrame, source: str, channel: str) -> pd.Series:
    rows = table[(table["source"] == source) & (table["channel"] == channel)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_one_block_per_channel_real_sets_first(table):
    assert list(table.columns) == COLUMNS
    sets = [REAL_TRAINING_SOURCE, REAL_HELDOUT_SOURCE, "tfaug", "carvemix"]
    assert table[["channel", "source"]].values.tolist() == [[c, s] for c in CHANNELS for s in sets]
    assert _row(table, "tfaug", "t1n")["label"] == "TF-Aug"
    assert _row(table, REAL_TRAINING_SOURCE, "t2w")["n_cases"] == 2


def test_statistics_pool_the_voxels_of_every_case(table):
    # Real training: brain 0.1 and 0.3 in the mask less ED (4 voxels) and ET (2 and 1 voxels); ET 0.5, 0.6 and 0.4.
    brain = [0.1] * (6 * 6 * 4 - 4 - 2) + [0.3] * (6 * 6 * 4 - 4 - 1)
    et = [0.5, 0.6, 0.4]
    row = _row(table, REAL_TRAINING_SOURCE, "t1n")
    assert row["brain_mean"] == pytest.approx(np.mean(brain), rel=1e-6)
    assert row["brain_sd"] == pytest.approx(np.std(brain, ddof=1), rel=1e-5)
    assert row["et_mean"] == pytest.approx(np.mean(et), rel=1e-6)
    assert row["et_sd"] == pytest.approx(np.std(et, ddof=1), rel=1e-5)
    assert row["et_cases"] == 2 and row["et_at_clamp"] == 0.0
    t2f = _row(table, REAL_TRAINING_SOURCE, "t2f")  # channel 3 = channel 0 + 0.3: each channel its own values
    assert t2f["brain_mean"] == pytest.approx(np.mean(brain) + 0.3, rel=1e-6) and t2f["et_mean"] == pytest.approx(np.mean(et) + 0.3, rel=1e-6)


def test_et_at_the_clamp_is_the_fraction_at_or_above_the_level(table):
    row = _row(table, "tfaug", "t1n")
    assert row["et_cases"] == 1 and row["n_cases"] == 2  # the second case has no ET
    assert row["et_at_clamp"] == pytest.approx(3 / 4)  # 1.0, 1.0, 0.995 >= 0.99; 0.2 not
    assert CLAMP_LEVEL == 0.99
    assert _row(table, "tfaug", "t1c")["et_at_clamp"] == pytest.approx(3 / 4)  # clipped to 1 in every channel
    assert _row(table, "carvemix", "t1n")["et_at_clamp"] == 0.0


def test_a_set_without_et_has_no_et_statistics(study, tmp_path):
    sources = {"pix2pix": _source(tmp_path, "pix2pix", [(0.4, [])])}
    table = intensity_table(study["train"], sources, ["t1n"])
    row = _row(table, "pix2pix", "t1n")
    assert row["et_cases"] == 0
    assert math.isnan(row["et_mean"]) and math.isnan(row["et_sd"]) and math.isnan(row["et_at_clamp"])
    assert row["brain_mean"] == pytest.approx(0.4)
    assert "| Pix2Pix | 1 | 0.400 ± 0.000 | 0 | n/a | n/a |" in intensity_markdown(table)


def test_max_synthetic_takes_the_manifest_prefix(study):
    table = intensity_table(study["train"], study["sources"], ["t1n"], max_synthetic=1)
    assert _row(table, "tfaug", "t1n")["n_cases"] == 1


def test_markdown_has_a_section_per_channel_with_the_real_sets_in_italics(table):
    markdown = intensity_markdown(table)
    assert [line for line in markdown.splitlines() if line.startswith("### ")] == [f"### {c}" for c in CHANNELS]
    assert "| *Real training* | 2 |" in markdown and "| *Real held-out* | 1 |" in markdown
    assert "75.0 %" in markdown


def test_write_is_atomic_and_deterministic(study, tmp_path):
    out = {k: str(tmp_path / f"intensities.{k}") for k in ("csv", "md")}
    write_intensities(study["train"], study["sources"], CHANNELS, out["csv"], out["md"])
    written = pd.read_csv(out["csv"])
    assert list(written.columns) == COLUMNS
    assert REAL_HELDOUT_SOURCE not in set(written["source"])
    first = Path(out["csv"]).read_bytes()
    write_intensities(study["train"], study["sources"], CHANNELS, out["csv"], out["md"])
    assert Path(out["csv"]).read_bytes() == first  # deterministic
    assert not list(tmp_path.glob(".*tmp*"))
