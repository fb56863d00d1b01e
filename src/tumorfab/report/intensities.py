"""Intensities per sequence: does the same tissue get the same value in every source?

Not in the paper. The realism table (:mod:`tumorfab.report.realism`) scores
all sequences at once through F; this table looks at each sequence (BraTS
channel of ``data.modalities``) on its own, in the normalized [-1, 1] images
every source writes (docs/architecture.md, contract 1), beside the real
cases':

* **Non-tumour brain** (brain mask and ``seg == 0``): mean and sample sd.
  A synthetic source whose brain comes from healthy scans (TF-Aug, TF)
  should sit where the real brains sit, or the network can tell the sources
  apart by their background alone.
* **Enhancing tumour** (label ET): mean and sample sd, and the fraction of ET
  voxels at the clamp (``>= CLAMP_LEVEL``): intensities pushed past the top of
  [-1, 1] pile up at +1, which no real scan does.

What we chose:

* **Pooled voxels**: each statistic is over the voxels of every case of the
  set together (a voxel weighs the same in every case), in float64 sums.
  ``et_cases`` counts the cases with at least one ET voxel; a set without ET
  voxels has NaN ET statistics, a set with fewer than 2 voxels in a region a
  NaN sd.
* **Sets**: the real training cases (``real_training``), the held-out real
  cases (``real_heldout``, optional), then each synthetic source's first
  ``max_synthetic`` cases of its manifest (all when None), in the given order.
* **Rows**: one block per channel (``data.modalities`` order), in each block
  one row per set. No randomness; F is not needed, so the table can be read
  before any segmentation training.

:func:`intensity_table` computes it, :func:`write_intensities` writes it as
CSV and Markdown (atomically, ``tumorfab.io``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from tumorfab.casefolder import load_case
from tumorfab.io import save_csv, save_text
from tumorfab.labels import BACKGROUND, ET
from tumorfab.report.tables import _md_cell
from tumorfab.synthesis import source_label
from tumorfab.synthesis.manifest import first_cases, manifest_case_ids

log = logging.getLogger(__name__)

#: ET voxels at or above this value count as clamped at the top of [-1, 1].
CLAMP_LEVEL = 0.99
#: The ``source`` and label of the real sets.
REAL_TRAINING_SOURCE = "real_training"
REAL_HELDOUT_SOURCE = "real_heldout"
REAL_LABELS = {REAL_TRAINING_SOURCE: "Real training", REAL_HELDOUT_SOURCE: "Real held-out"}
#: The table's columns, in order.
COLUMNS = [
    "source", "label", "channel", "n_cases",
    "brain_mean", "brain_sd", "et_cases", "et_mean", "et_sd", "et_at_clamp",
]


@dataclass
class _Moments:
    """Running count, sum and sum of squares of pooled voxel values (float64)."""

    count: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, values: np.ndarray) -> None:
        values = values.astype(np.float64)
        self.count += int(values.size)
        self.total += float(values.sum())
        self.squares += float(np.square(values).sum())

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def sd(self) -> float:
        if self.count < 2:
            return math.nan
        return math.sqrt(max(self.squares - self.total**2 / self.count, 0.0) / (self.count - 1))


@dataclass
class _ChannelStats:
    brain: _Moments
    et: _Moments
    et_at_clamp: int = 0


def _set_rows(
    source: str, label: str, case_dirs: Sequence[str | os.PathLike], modalities: Sequence[str]
) -> dict[str, dict]:
    """Channel -> the row of one set of cases (each case read once)."""
    stats = {channel: _ChannelStats(_Moments(), _Moments()) for channel in modalities}
    et_cases = 0
    for case_dir in case_dirs:
        case = load_case(case_dir, modalities)
        brain = (case.brainmask > 0) & (case.seg == BACKGROUND)
        et = case.seg == ET
        et_cases += int(et.any())
        for channel in modalities:
            image = case.images[channel]
            stats[channel].brain.add(image[brain])
            stats[channel].et.add(image[et])
            stats[channel].et_at_clamp += int(np.count_nonzero(image[et] >= CLAMP_LEVEL))
    rows = {}
    for channel, channel_stats in stats.items():
        et_voxels = channel_stats.et.count
        rows[channel] = {
            "source": source,
            "label": label,
            "channel": channel,
            "n_cases": len(case_dirs),
            "brain_mean": channel_stats.brain.mean,
            "brain_sd": channel_stats.brain.sd,
            "et_cases": et_cases,
            "et_mean": channel_stats.et.mean,
            "et_sd": channel_stats.et.sd,
            "et_at_clamp": channel_stats.et_at_clamp / et_voxels if et_voxels else math.nan,
        }
        log.info(
            "intensities %s %s: brain %.4f, ET %.4f ± %.4f, %.4f at clamp (%d cases)",
            source, channel, rows[channel]["brain_mean"], rows[channel]["et_mean"],
            rows[channel]["et_sd"], rows[channel]["et_at_clamp"], len(case_dirs),
        )
    return rows


def intensity_table(
    real_case_dirs: Sequence[str | os.PathLike],
    sources: Mapping[str, Mapping[str, str | os.PathLike]],
    modalities: Sequence[str],
    reference_case_dirs: Sequence[str | os.PathLike] | None = None,
    max_synthetic: int | None = None,
) -> pd.DataFrame:
    """The intensity table: one block of rows per channel, columns :data:`COLUMNS`.

    ``sources``: source name -> ``{"manifest": ..., "cases_dir": ...}``; its
    cases are ``cases_dir/{case_id}``, the first ``max_synthetic`` of the
    manifest (all when None). ``real_case_dirs``: the real training cases;
    ``reference_case_dirs``: the held-out real cases (a row of their own when
    given). Each block: real training, held-out, then the sources in the given
    order.
    """
    modalities = list(modalities)
    if not modalities:
        raise ValueError("intensities: no channels (data.modalities is empty)")
    if not real_case_dirs:
        raise ValueError("intensities: no real training cases")
    per_set = [_set_rows(REAL_TRAINING_SOURCE, REAL_LABELS[REAL_TRAINING_SOURCE], list(real_case_dirs), modalities)]
    if reference_case_dirs:
        per_set.append(
            _set_rows(REAL_HELDOUT_SOURCE, REAL_LABELS[REAL_HELDOUT_SOURCE], list(reference_case_dirs), modalities)
        )
    for source, spec in sources.items():
        manifest, cases_dir = Path(spec["manifest"]), Path(spec["cases_dir"])
        ids = manifest_case_ids(manifest) if max_synthetic is None else first_cases(manifest, int(max_synthetic))
        per_set.append(_set_rows(source, source_label(source), [cases_dir / i for i in ids], modalities))
    rows = [rows_of_set[channel] for channel in modalities for rows_of_set in per_set]
    return pd.DataFrame(rows, columns=COLUMNS)


def _mean_sd(mean: float, sd: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {sd:.3f}" if math.isfinite(sd) else f"{mean:.3f}"


def intensity_markdown(table: pd.DataFrame, title: str = "Intensities per sequence") -> str:
    """The table in Markdown, one section per channel (real sets in italics), with a caption."""
    headers = ["Source", "Cases", "Non-tumour brain", "ET cases", "ET", f"ET ≥ {CLAMP_LEVEL:g}"]
    lines = [f"## {title}", ""]
    for channel in dict.fromkeys(table["channel"]):
        lines += [
            f"### {channel}",
            "",
            "| " + " | ".join(headers) + " |",
            "| --- |" + " ---: |" * (len(headers) - 1),
        ]
        for _, row in table[table["channel"] == channel].iterrows():
            label = _md_cell(row["label"])
            if row["source"] in REAL_LABELS:
                label = f"*{label}*"
            clamp = float(row["et_at_clamp"])
            cells = [
                label,
                str(row["n_cases"]),
                _mean_sd(float(row["brain_mean"]), float(row["brain_sd"])),
                str(row["et_cases"]),
                _mean_sd(float(row["et_mean"]), float(row["et_sd"])),
                f"{100 * clamp:.1f} %" if math.isfinite(clamp) else "n/a",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        "Normalized intensities ([-1, 1]) per sequence, mean ± sample sd over the voxels of every "
        "case of the set together: non-tumour brain = brain mask without any tumour label; ET = "
        f"enhancing tumour (label 3); the last column is the fraction of ET voxels at or above "
        f"{CLAMP_LEVEL:g} (piled at the top of the range). Real sets in italics: a synthetic source "
        "should sit near them."
    )
    return "\n".join(lines) + "\n"


def write_intensities(
    real_case_dirs: Sequence[str | os.PathLike],
    sources: Mapping[str, Mapping[str, str | os.PathLike]],
    modalities: Sequence[str],
    out_csv: str | os.PathLike,
    out_md: str | os.PathLike,
    reference_case_dirs: Sequence[str | os.PathLike] | None = None,
    max_synthetic: int | None = None,
) -> pd.DataFrame:
    """:func:`intensity_table`, written as CSV and Markdown (each atomically)."""
    table = intensity_table(
        real_case_dirs, sources, modalities, reference_case_dirs=reference_case_dirs, max_synthetic=max_synthetic
    )
    save_csv(table, out_csv)
    save_text(intensity_markdown(table), out_md)
    return table
