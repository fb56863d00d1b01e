"""Per-case and per-run metric tables and the paper's Tables 1-3 (paper 002 §3.2.3, §3.2.5).

The paper's layout (Table 1): one row per method, columns ET(%), TC(%), WT(%)
and Mean(%) as "mean ± std" over three seeds, Mean Diff(%) to the Baseline
row, and the two-tailed t-test p-value; the best value of each column in bold.
Tables 2 and 3 print a subset of these columns; we print all of them in every
table, so every table is read the same way.

What we chose where the paper is silent:

- **std** is the sample standard deviation over seeds (``ddof=1``), the usual
  choice for a handful of runs; the paper does not say which.
- **Mean** of a run is the average of its ET, TC and WT Dice (each the mean
  over the held-out cases); a table's Mean(%) is the mean ± std of that over
  seeds (as the paper's caption: "the average Dice score across these three
  tumor subregions").
- **p-value**: Student's two-sample t-test with equal variances
  (``scipy.stats.ttest_ind(..., equal_var=True)``, two-sided) of the per-seed
  mean Dice of a row against the reference row's (the paper: "a two-tailed
  t-test"; the equal-variance form gives the paper's p-values from its
  means and standard deviations). The reference is the table's first
  experiment (the Baseline in the paper).
- **Per-run means** over cases skip missing values (pandas' default), the way
  nnU-Net's summary skips NaN; a metric the evaluation leaves undefined for a
  case (e.g. HD95 with an empty prediction) does not poison the run's mean.
- Rows whose experiment has no results in this run (a source not implemented
  in this version) are **left out**, never filled; the Markdown says which.
- A row whose experiment lacks the evaluation of a **configured seed** (the
  ``segmentation.seeds`` of the config; without them, the seeds any row of the
  table has) rests on fewer seeds: its Method cell is marked ``† (seed 2
  missing)`` and its mean ± std, Mean Diff and p-value use the seeds it has.

Every table's Markdown has a caption under its title: the
seeds of every row, the held-out cases per region (a case whose reference
lacks a region, typically ET, is scored by the convention below), the Dice
convention for empty regions, the HD95 definition, and how the BraTS
challenge's evaluation differs (:data:`DICE_CONVENTION`, :data:`HD95_DEFINITION`,
:data:`BRATS_DIFFERENCE`, as ``tumorfab.segmentation.evaluate`` computes them).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tumorfab.io import save_csv, save_text
from tumorfab.labels import REGION_KEYS
from tumorfab.segmentation.evaluate import METRIC_COLUMNS

#: Table columns: (display header, per-run column, short name of the numeric columns):
#: ET, TC, WT, then their mean.
TABLE_REGIONS = [
    *((f"{r.upper()} (%)", f"dice_{r}", r) for r in REGION_KEYS),
    ("Mean (%)", "dice_mean", "mean"),
]
DISPLAY_COLUMNS = ["Method", *(h for h, _, _ in TABLE_REGIONS), "Mean Diff (%)", "p-value"]
#: Marks a row with a missing seed (Markdown).
MISSING_SEED_MARK = "†"

# What tumorfab.segmentation.evaluate computes (tests/test_segmentation_evaluate.py
# checks the behaviour); printed under every table's title.
#: Dice of a case and region, and the mean over cases.
DICE_CONVENTION = (
    "Dice per case and region is nnU-Net's (nnunetv2 compute_metrics, 2TP / (2TP + FP + FN) "
    "of the region's mask). A region empty in both the reference and the prediction has no "
    "Dice (NaN) and is skipped in the mean over cases, as in nnU-Net's own summary "
    "(np.nanmean); a region empty in the reference but predicted scores 0 and is counted."
)
#: HD95 (per_case.csv and per_run.csv; not a column of the tables).
HD95_DEFINITION = (
    "HD95 (in per_case.csv and per_run.csv, not in this table) is MONAI's "
    "compute_hausdorff_distance with percentile = 95: Euclidean distances in mm (voxel spacing "
    "from the NIfTI header) between the boundary voxels of the predicted and the reference "
    "region, symmetric (the larger of the two directed 95th percentiles, prediction to "
    "reference and reference to prediction). Region empty in both: NaN, skipped in means. "
    "Region empty in exactly one of them: the diagonal of the evaluated volume in mm "
    "(373.13 mm on BraTS' 240 x 240 x 155 grid at 1 mm)."
)
#: How the BraTS challenge's evaluation scores empty regions, unlike ours.
BRATS_DIFFERENCE = (
    "The BraTS challenge's evaluation scores these cases differently: an empty prediction "
    "with an empty reference scores Dice 1 and HD95 0 there (here NaN, skipped); an empty "
    "prediction with a non-empty reference scores Dice 0 and HD95 373.13 there (here Dice 0 "
    "and the volume's diagonal, 373.13 mm only on the full BraTS grid). Means here are "
    "therefore not directly comparable with BraTS leaderboard numbers."
)


def collect_per_case(evaluations: Iterable[tuple[str, int, str | os.PathLike]]) -> pd.DataFrame:
    """Stack the per-case evaluation CSVs of every experiment and seed.

    ``evaluations``: ``(experiment, seed, CSV path)`` of each run (the
    workflow's layout, ``tumorfab.study.layout.evaluation_csv``). Returns
    ``experiment, seed, case_id, <METRIC_COLUMNS>`` sorted by experiment, seed
    and case. Dice must lie in [0, 1] (NaN allowed).
    """
    frames = []
    seen: set[tuple[str, int]] = set()
    for experiment, seed, path in evaluations:
        seed = int(seed)
        if (experiment, seed) in seen:
            raise ValueError(f"{path}: experiment {experiment} seed {seed} given twice")
        seen.add((experiment, seed))
        frame = pd.read_csv(path)
        missing = [c for c in ["case_id", *METRIC_COLUMNS] if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        dice = frame[[f"dice_{r}" for r in REGION_KEYS]].to_numpy(dtype=float)
        if np.any((dice < 0) | (dice > 1)):
            raise ValueError(f"{path}: Dice outside [0, 1] (expected fractions, not %)")
        frame = frame[["case_id", *METRIC_COLUMNS]].copy()
        frame.insert(0, "seed", seed)
        frame.insert(0, "experiment", experiment)
        frames.append(frame)
    columns = ["experiment", "seed", "case_id", *METRIC_COLUMNS]
    if not frames:
        return pd.DataFrame(columns=columns)
    stacked = pd.concat(frames, ignore_index=True)
    return stacked.sort_values(["experiment", "seed", "case_id"], kind="stable").reset_index(
        drop=True
    )


def per_run_table(per_case: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment × seed: means over cases of every metric, and ``dice_mean``.

    ``dice_mean`` is the mean of the run's ET, TC and WT Dice means (the
    paper's "Mean" column); ``n_cases`` counts the evaluated cases;
    ``n_ref_{region}`` the cases whose reference holds the region (the
    evaluation's lesion-wise sensitivity is NaN exactly when the reference has
    no lesion of it); ``n_dice_{region}`` the cases in the run's Dice mean
    (those with a Dice: not NaN, i.e. the region is in the reference or the
    prediction).
    """
    columns = [
        "experiment",
        "seed",
        "n_cases",
        *(f"n_ref_{r}" for r in REGION_KEYS),
        *(f"n_dice_{r}" for r in REGION_KEYS),
        *METRIC_COLUMNS[:3],
        "dice_mean",
        *METRIC_COLUMNS[3:],
    ]
    if per_case.empty:
        return pd.DataFrame(columns=columns)
    grouped = per_case.groupby(["experiment", "seed"], sort=True)
    runs = grouped[METRIC_COLUMNS].mean()
    runs["n_cases"] = grouped["case_id"].count()
    for r in REGION_KEYS:
        runs[f"n_ref_{r}"] = grouped[f"lesion_sens_{r}"].count()
        runs[f"n_dice_{r}"] = grouped[f"dice_{r}"].count()
    runs["dice_mean"] = runs[[f"dice_{r}" for r in REGION_KEYS]].mean(axis=1, skipna=False)
    return runs.reset_index()[columns]


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    mean = float(np.mean(values)) if len(values) else math.nan
    std = float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan
    return mean, std


def t_test_p(values: Sequence[float], reference: Sequence[float]) -> float:
    """Two-tailed p of Student's two-sample t-test (equal variances); NaN with < 2 values a side."""
    values, reference = np.asarray(values, float), np.asarray(reference, float)
    if len(values) < 2 or len(reference) < 2:
        return math.nan
    return float(stats.ttest_ind(values, reference, equal_var=True).pvalue)


def format_mean_std(mean: float, std: float) -> str:
    """``"49.76 ± 0.69"`` (values already in %); ``n/a`` for what cannot be computed."""
    left = "n/a" if math.isnan(mean) else f"{mean:.2f}"
    right = "n/a" if math.isnan(std) else f"{std:.2f}"
    return f"{left} ± {right}"


def format_diff(diff: float) -> str:
    """``"+0.15"`` as the paper's Mean Diff column."""
    return "n/a" if math.isnan(diff) else f"{diff:+.2f}"


def format_p(p: float) -> str:
    """Two decimals as the paper (``0.02``); below 0.01 in scientific notation, never ``0.00``."""
    if math.isnan(p):
        return "n/a"
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1e}"


def expected_seeds(
    per_run: pd.DataFrame, experiments: Sequence[str], seeds: Sequence[int] | None = None
) -> list[int]:
    """The seeds every row of a table should rest on.

    The configured seeds (``segmentation.seeds``) when given; otherwise every
    seed any of the table's experiments has in ``per_run``.
    """
    if seeds is not None:
        return sorted({int(s) for s in seeds})
    rows = per_run[per_run["experiment"].isin(list(experiments))]
    return sorted({int(s) for s in rows["seed"]})


def _join_seeds(seeds: Iterable[int]) -> str:
    return ", ".join(str(int(s)) for s in seeds)


def missing_seed_note(missing: Sequence[int]) -> str:
    """``"seed 2 missing"`` / ``"seeds 1, 2 missing"``."""
    return f"seed{'s' if len(missing) > 1 else ''} {_join_seeds(missing)} missing"


def summarize_experiments(
    per_run: pd.DataFrame,
    experiments: Sequence[str],
    labels: Mapping[str, str] | None = None,
    seeds: Sequence[int] | None = None,
) -> pd.DataFrame:
    """One table of the paper: a row per available experiment, first = reference.

    Returns the display columns (``DISPLAY_COLUMNS``, strings in the paper's
    layout) followed by numeric columns for machines: ``experiment``,
    ``n_seeds``, ``seeds``, ``missing_seeds`` (of :func:`expected_seeds`, with
    ``seeds`` the configured ones), ``{et,tc,wt,mean}_mean_pct``,
    ``{et,tc,wt,mean}_std_pct``, ``mean_diff_pct``, ``p_value``,
    ``is_reference``. Seed lists are ``;``-separated. Experiments absent
    from ``per_run`` are left out.
    """
    if not experiments:
        raise ValueError("a table needs at least one experiment (the first is the reference)")
    labels = dict(labels or {})
    reference = experiments[0]
    available = set(per_run["experiment"])
    expected = expected_seeds(per_run, experiments, seeds)

    def seeds_of(experiment: str) -> pd.DataFrame:
        return per_run[per_run["experiment"] == experiment].sort_values("seed")

    ref_runs = seeds_of(reference) if reference in available else None
    ref_mean = ref_runs["dice_mean"].to_numpy(float) if ref_runs is not None else None

    rows = []
    for experiment in experiments:
        if experiment not in available:
            continue
        runs = seeds_of(experiment)
        row: dict[str, object] = {"Method": labels.get(experiment) or experiment}
        numeric: dict[str, object] = {
            "experiment": experiment,
            "n_seeds": len(runs),
            "seeds": ";".join(str(int(s)) for s in runs["seed"]),
            "missing_seeds": ";".join(str(s) for s in expected if s not in set(runs["seed"])),
        }
        for header, column, short in TABLE_REGIONS:
            mean, std = _mean_std(runs[column].to_numpy(float) * 100.0)
            row[header] = format_mean_std(mean, std)
            numeric[f"{short}_mean_pct"] = mean
            numeric[f"{short}_std_pct"] = std
        is_reference = experiment == reference
        if is_reference:
            diff, p = math.nan, math.nan
            row["Mean Diff (%)"], row["p-value"] = "-", "-"
        elif ref_mean is None:
            diff, p = math.nan, math.nan
            row["Mean Diff (%)"], row["p-value"] = "n/a", "n/a"
        else:
            values = runs["dice_mean"].to_numpy(float)
            diff = (float(np.mean(values)) - float(np.mean(ref_mean))) * 100.0
            p = t_test_p(values, ref_mean)
            row["Mean Diff (%)"], row["p-value"] = format_diff(diff), format_p(p)
        numeric.update(mean_diff_pct=diff, p_value=p, is_reference=is_reference)
        rows.append({**row, **numeric})
    numeric_columns = [
        "experiment",
        "n_seeds",
        "seeds",
        "missing_seeds",
        *(f"{s}_{k}_pct" for _, _, s in TABLE_REGIONS for k in ("mean", "std")),
        "mean_diff_pct",
        "p_value",
        "is_reference",
    ]
    return pd.DataFrame(rows, columns=[*DISPLAY_COLUMNS, *numeric_columns])


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _seed_list(text: object) -> list[int]:
    """``"0;1;2"`` (or a single seed read back from CSV as a number) as ints."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    return [int(float(s)) for s in str(text).split(";") if s.strip()]


def _span(values: Iterable[int]) -> str:
    """``"3"`` or ``"3–4"``: the values of a count over runs."""
    values = sorted({int(v) for v in values})
    return str(values[0]) if values[0] == values[-1] else f"{values[0]}–{values[-1]}"


def seeds_caption(summary: pd.DataFrame, seeds: Sequence[int] | None = None) -> str:
    """The seeds each row (by its Method) rests on; a row with a missing seed carries its mark.

    ``seeds``: the configured seeds, named when given.
    """
    parts = []
    for _, row in summary.iterrows():
        name = row["Method"]
        have, missing = _seed_list(row["seeds"]), _seed_list(row["missing_seeds"])
        rests_on = f"seed{'s' if len(have) > 1 else ''} {_join_seeds(have)}"
        text = f"{name}: {rests_on}"
        if missing:
            text = (
                f"{name} {MISSING_SEED_MARK}: {rests_on} ({missing_seed_note(missing)}: "
                f"no evaluation for {'it' if len(missing) == 1 else 'them'}; mean ± std, "
                "Mean Diff and p-value "
                f"rest on {len(have)} seed{'s' if len(have) != 1 else ''})"
            )
        parts.append(text)
    configured = f" (configured: {_join_seeds(seeds)})" if seeds is not None else ""
    return f"Seeds per row{configured}: " + "; ".join(parts) + "."


def cases_caption(per_run: pd.DataFrame, experiments: Sequence[str]) -> str:
    """Held-out cases per run, and per region how many have it in the reference.

    Counts from ``per_run``'s ``n_cases``, ``n_ref_*`` and ``n_dice_*`` over the
    runs of the table's ``experiments``.
    """
    runs = per_run[per_run["experiment"].isin(list(experiments))]
    if runs.empty:
        return ""
    n_cases = _span(runs["n_cases"])
    text = f"Held-out cases: {n_cases} per run."
    if not all(f"n_ref_{r}" in runs.columns for r in REGION_KEYS):
        return text + " (per_run.csv has no per-region case counts.)"
    for r in REGION_KEYS:
        name = r.upper()
        n_ref = _span(runs[f"n_ref_{r}"])
        text += f" {name}: {n_ref} of {n_cases} held-out cases have {name} in the reference"
        if (runs[f"n_ref_{r}"] < runs["n_cases"]).any():
            text += (
                f"; each of the others is skipped in the {name} Dice mean of a run that predicts "
                f"no {name} in it (Dice NaN) and counts with Dice 0 in a run that does, so the "
                f"{name} means rest on {_span(runs[f'n_dice_{r}'])} cases per run."
            )
        else:
            text += "."
    return text


def table_markdown(
    summary: pd.DataFrame,
    title: str,
    experiments: Sequence[str],
    per_run: pd.DataFrame | None = None,
    seeds: Sequence[int] | None = None,
) -> str:
    """The table in Markdown, in the paper's layout, with a caption under the title.

    The caption says how the numbers were computed, the seeds each row rests
    on (``seeds``: the configured ones), the held-out cases per region (from
    ``per_run``, when given), the Dice convention for empty regions, the HD95
    definition and how BraTS' evaluation differs. A row with a missing seed is
    marked ``† (seed 2 missing)`` in its Method cell. The reference row's
    label is in italics (as the paper's Baseline); the best mean of each Dice
    column is in bold (the paper: "The best performance in each column is
    highlighted in bold"), ties (at the printed precision) all bold, only when
    there are two rows or more.
    """
    reference = experiments[0]
    caption = [
        "Dice in % as mean ± standard deviation over seeds (sample standard deviation, "
        "ddof = 1). Mean = average of the ET, TC and WT Dice of a run. "
        f"Mean Diff = difference of Mean to the reference row ({reference}). p-value: two-tailed "
        "Student's two-sample t-test (equal variances) of the per-seed mean Dice against the "
        "reference row. Bold: the best mean of each Dice column.",
    ]
    if len(summary):
        caption.append(seeds_caption(summary, seeds))
    if per_run is not None:
        cases = cases_caption(per_run, list(summary["experiment"]))
        if cases:
            caption.append(cases)
    caption.append(f"{DICE_CONVENTION} {HD95_DEFINITION} {BRATS_DIFFERENCE}")

    arrows = {"p-value": "↓"}
    headers = [h if h == "Method" else f"{h} {arrows.get(h, '↑')}" for h in DISPLAY_COLUMNS]
    lines = [f"## {title}", ""]
    for paragraph in caption:
        lines += [paragraph, ""]
    lines += [
        "| " + " | ".join(headers) + " |",
        "| --- |" + " ---: |" * (len(headers) - 1),
    ]
    best: dict[str, float] = {}
    if len(summary) >= 2:
        for header, _, short in TABLE_REGIONS:
            values = summary[f"{short}_mean_pct"].astype(float).round(2)
            if values.notna().any():
                best[header] = float(values.max())
    for _, row in summary.iterrows():
        cells = []
        for column in DISPLAY_COLUMNS:
            text = _md_cell(row[column])
            if column == "Method" and row["is_reference"]:
                text = f"*{text}*"
            missing = _seed_list(row["missing_seeds"])
            if column == "Method" and missing:
                text += f" {MISSING_SEED_MARK} ({missing_seed_note(missing)})"
            for header, _, short in TABLE_REGIONS:
                if (
                    column == header
                    and header in best
                    and round(float(row[f"{short}_mean_pct"]), 2) == best[header]
                ):
                    text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    left_out = [e for e in experiments if e not in set(summary["experiment"])]
    if left_out:
        notes += ["", f"Left out (no results in this run): {', '.join(left_out)}."]
    if reference in left_out:
        notes += ["", f"The reference {reference} has no results: Mean Diff and p-value are n/a."]
    return "\n".join(lines + notes) + "\n"


def write_collected(
    evaluations: Iterable[tuple[str, int, str | os.PathLike]],
    per_case_path: str | os.PathLike,
    per_run_path: str | os.PathLike,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``per_case.csv`` (all runs of :func:`collect_per_case` stacked) and
    ``per_run.csv`` (atomically)."""
    per_case = collect_per_case(evaluations)
    per_run = per_run_table(per_case)
    save_csv(per_case, per_case_path)
    save_csv(per_run, per_run_path)
    return per_case, per_run


def write_table(
    per_run_path: str | os.PathLike,
    out_csv: str | os.PathLike,
    out_md: str | os.PathLike,
    experiments: Sequence[str],
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    seeds: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Write one of the paper's tables as CSV and Markdown from ``per_run.csv``.

    ``seeds``: the configured seeds (``segmentation.seeds``); a row lacking
    one of them is marked. None: the seeds any row of the table has.
    """
    per_run = pd.read_csv(per_run_path)
    summary = summarize_experiments(per_run, experiments, labels, seeds)
    save_csv(summary, out_csv)
    markdown = table_markdown(summary, title or Path(out_md).stem, experiments, per_run, seeds)
    save_text(markdown, out_md)
    return summary
