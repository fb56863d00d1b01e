"""Translation accuracy of TF-GAN's G on held-out real cases (not in the paper).

With several sequences G is a modality translator (paper 002 §4 names
modality translation as TF-GAN's future work; docs/interpretations.md,
"TF-GAN as a modality translator"): given some of a case's channels it makes
the others. This module scores how well it does on the held-out real cases,
the way the BraTS synthesis challenge (BraSyn) scores a synthesized sequence,
against two baselines that learn nothing (docs/interpretations.md,
"Translation accuracy"):

* **Input sets**: ``("t1n",)`` (what every healthy scan gives) and, when the
  study has t2w, ``("t1n", "t2w")`` (what IXI-like healthy scans give);
  every other configured channel is predicted and scored.
* **Methods**: ``generator`` = G (a :data:`Translator`, handed only the
  input channels, the brain mask and the case's labels); ``t1n`` = the
  case's t1n itself; ``t1n_matched`` = the case's t1n histogram-matched
  (``tumorfab.synthesis.histogram_match``) onto the pooled brain intensities
  of the real **training** cases' channel, TF-Aug's fill for a channel a
  healthy scan lacks. The two baselines use only t1n, so they score the same
  for every input set.
* **Metrics** (:func:`translation_scores`): on the images rescaled from
  [-1, 1] to [0, 1] (data range 1), in the brain outside the tumour
  (:func:`scored_region`): SSIM (scikit-image, Gaussian window σ 1.5, 11³,
  population covariances: Wang et al. 2004) computed on the whole volume with
  both images set to 0 outside the region, its map averaged over the region
  (BraSyn's masked SSIM); PSNR = ``10·log10(1 / MSE)`` (scikit-image) over the
  region's voxels, ``inf`` for a perfect prediction; MAE over the region's
  voxels.
* **Table** (:func:`translation_summary`, :func:`translation_markdown`): per
  input set, one row per translated channel, mean ± sample sd (ddof 1) over
  cases of each method and metric, and G's margin over the better baseline
  by SSIM and by MAE (the baseline with the better mean; the margin is the
  mean ± sd of the per-case paired difference, positive when G is better).

No randomness: cases in the given order, channels in ``modalities`` order;
the result is as deterministic as the translator.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tumorfab.casefolder import Case, case_file, load_case, read_brainmask, read_image
from tumorfab.io import save_csv, save_text
from tumorfab.report.tables import _md_cell
from tumorfab.study.layout import HEALTHY_CHANNEL
from tumorfab.synthesis.histogram_match import brain_quantiles, match_to_quantiles

log = logging.getLogger(__name__)

#: G as this module calls it: ``(images of the input channels, brainmask, labels,
#: input channels) -> images of every channel`` (each in [-1, 1], -1 outside the brain).
Translator = Callable[[Mapping[str, np.ndarray], np.ndarray, np.ndarray, Sequence[str]], Mapping[str, np.ndarray]]

#: Method -> its name in the Markdown table; the first is G, the others the baselines.
METHODS: dict[str, str] = {"generator": "G", "t1n": "t1n itself", "t1n_matched": "t1n hist.-matched"}
GENERATOR = "generator"
BASELINES = ("t1n", "t1n_matched")
#: Metric -> (name in the table, higher is better, decimals).
METRICS: dict[str, tuple[str, bool, int]] = {
    "ssim": ("SSIM ↑", True, 4),
    "psnr": ("PSNR dB ↑", True, 2),
    "mae": ("MAE ↓", False, 4),
}
#: Metrics G's margin over the better baseline is given for.
MARGIN_METRICS = ("ssim", "mae")
#: The long table's columns.
COLUMNS = ["case", "inputs", "channel", "method", "ssim", "psnr", "mae"]
#: The sequence whose presence adds the second input set (healthy T2 scans, IXI).
SECOND_INPUT = "t2w"
#: SSIM's Gaussian window (Wang et al. 2004; torchmetrics', which BraSyn uses).
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
#: Voxels of zeros kept around the region when SSIM is computed on its bounding
#: box: more than the window's radius (5), so the map inside the region is the
#: whole volume's.
SSIM_MARGIN = 11


# --- What is scored ----------------------------------------------------------------------


def input_sets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """The input sets scored: ``(t1n,)``, and ``(t1n, t2w)`` when the study has t2w."""
    modalities = list(modalities)
    if HEALTHY_CHANNEL not in modalities:
        raise ValueError(f"data.modalities {modalities} lacks {HEALTHY_CHANNEL!r}: nothing to translate from")
    if len(modalities) < 2:
        raise ValueError(f"data.modalities {modalities} has one channel: nothing to translate to")
    sets = [(HEALTHY_CHANNEL,)]
    if SECOND_INPUT in modalities and len(modalities) > 2:
        sets.append((HEALTHY_CHANNEL, SECOND_INPUT))
    return sets


def inputs_name(inputs: Sequence[str]) -> str:
    """An input set as the table writes it: ``t1n+t2w``."""
    return "+".join(inputs)


def scored_region(brainmask: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Boolean: inside the brain and outside the tumour (every label > 0)."""
    return (np.asarray(brainmask) > 0) & (np.asarray(seg) == 0)


# --- Metrics -----------------------------------------------------------------------------


def _unit_range(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1] (float64), 0 outside ``region``."""
    return np.where(region, (np.asarray(image, dtype=np.float64) + 1.0) / 2.0, 0.0)


def masked_ssim(prediction: np.ndarray, target: np.ndarray, region: np.ndarray) -> float:
    """Mean over ``region`` of the SSIM map of two [0, 1] volumes that are 0 outside it.

    The map is computed on the region's bounding box plus :data:`SSIM_MARGIN`
    voxels (clipped to the volume), where it equals the whole volume's.
    """
    inside = np.argwhere(region)
    lo = np.maximum(inside.min(0) - SSIM_MARGIN, 0)
    hi = np.minimum(inside.max(0) + 1 + SSIM_MARGIN, region.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    _, ssim_map = structural_similarity(
        target[box], prediction[box], data_range=1.0, gaussian_weights=True, sigma=SSIM_SIGMA,
        truncate=SSIM_TRUNCATE, use_sample_covariance=False, full=True,
    )
    return float(ssim_map[region[box]].mean())


def translation_scores(prediction: np.ndarray, target: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """SSIM, PSNR (dB) and MAE of ``prediction`` against ``target`` (both in [-1, 1])
    in ``region`` (boolean), on the images rescaled to [0, 1] (data range 1).

    SSIM: :func:`masked_ssim` (both images 0 outside the region, as BraSyn);
    PSNR: ``10·log10(1 / MSE)`` over the region's voxels, ``inf`` when they are
    equal; MAE: mean absolute difference over the region's voxels.
    """
    prediction, target, region = np.asarray(prediction), np.asarray(target), np.asarray(region, dtype=bool)
    if not (prediction.shape == target.shape == region.shape):
        raise ValueError(f"prediction {prediction.shape}, target {target.shape} and region {region.shape} differ")
    if not region.any():
        raise ValueError("the scored region (brain outside the tumour) is empty")
    x, y = _unit_range(prediction, region), _unit_range(target, region)
    with np.errstate(divide="ignore"):
        psnr = float(peak_signal_noise_ratio(y[region], x[region], data_range=1.0))
    return {"ssim": masked_ssim(x, y, region), "psnr": psnr, "mae": float(np.abs(x[region] - y[region]).mean())}


# --- Baselines ---------------------------------------------------------------------------


def _require_channels(case_dir: Path, channels: Sequence[str], who: str) -> None:
    missing = [c for c in channels if not case_file(case_dir, c).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{who} case {case_dir} lacks channel(s) {missing} of data.modalities "
            f"(expected {', '.join(str(case_file(case_dir, c)) for c in missing)})"
        )


def reference_quantiles(train_case_dirs: Sequence[str | os.PathLike], channels: Sequence[str]) -> dict[str, np.ndarray]:
    """Channel -> quantiles of the pooled brain intensities of the real training cases
    (``histogram_match.brain_quantiles``), the target of the ``t1n_matched`` baseline."""
    case_dirs = [Path(p) for p in train_case_dirs]
    if not case_dirs:
        raise ValueError("translation: no real training cases to take the channels' intensities from")
    for case_dir in case_dirs:
        _require_channels(case_dir, channels, "real training")

    def volumes(channel: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for case_dir in case_dirs:
            brainmask, _ = read_brainmask(case_dir)
            yield read_image(case_dir, channel).get_fdata(dtype=np.float32), brainmask

    return {channel: brain_quantiles(volumes(channel)) for channel in channels}


def baseline_predictions(t1n: np.ndarray, brainmask: np.ndarray, quantiles: np.ndarray) -> dict[str, np.ndarray]:
    """The baselines' prediction of one channel: t1n itself, and t1n matched to ``quantiles``."""
    return {"t1n": np.asarray(t1n, dtype=np.float32), "t1n_matched": match_to_quantiles(t1n, brainmask, quantiles)}


# --- The long table ----------------------------------------------------------------------


def _translated(
    translate: Translator, case: Case, inputs: tuple[str, ...], wanted: Sequence[str], case_dir: Path
) -> dict[str, np.ndarray]:
    """G's images of the ``wanted`` channels of ``case`` given its ``inputs``, checked."""
    given = {c: case.images[c] for c in inputs}  # G sees nothing of the channels it makes
    output = translate(given, case.brainmask, case.seg, inputs)
    missing = [c for c in wanted if c not in output]
    if missing:
        raise ValueError(f"translation of {case_dir} from {list(inputs)}: the translator returned no {missing}")
    predictions = {}
    for channel in wanted:
        image = np.asarray(output[channel], dtype=np.float32)
        if image.shape != case.brainmask.shape:
            raise ValueError(f"translation of {case_dir}: {channel} is {image.shape}, not {case.brainmask.shape}")
        if not np.isfinite(image).all():
            raise ValueError(f"translation of {case_dir} from {list(inputs)}: {channel} is not finite")
        predictions[channel] = image
    return predictions


def translation_table(
    heldout_case_dirs: Sequence[str | os.PathLike],
    train_case_dirs: Sequence[str | os.PathLike],
    modalities: Sequence[str],
    translate: Translator,
) -> pd.DataFrame:
    """The long table (:data:`COLUMNS`): one row per held-out case, input set,
    translated channel and method (:data:`METHODS`), in that nesting order.

    ``heldout_case_dirs``: the normalized held-out real case folders, scored;
    ``train_case_dirs``: the real training cases, whose pooled brain
    intensities the ``t1n_matched`` baseline matches to (they must not be
    held-out cases). ``case`` is the folder's name.
    """
    modalities = list(modalities)
    sets = input_sets(modalities)
    heldout = [Path(p) for p in heldout_case_dirs]
    if not heldout:
        raise ValueError("translation: no held-out real cases to score")
    training = {Path(p).resolve() for p in train_case_dirs}
    shared = [str(p) for p in heldout if p.resolve() in training]
    if shared:
        raise ValueError(f"translation: held-out cases are also training cases: {shared[:5]}")
    targets = [c for c in modalities if c != HEALTHY_CHANNEL]
    quantiles = reference_quantiles(train_case_dirs, targets)
    rows = []
    for case_dir in heldout:
        _require_channels(case_dir, modalities, "held-out")
        case = load_case(case_dir, modalities)
        region = scored_region(case.brainmask, case.seg)
        baselines = {}  # channel -> method -> scores: the same for every input set
        for inputs in sets:
            wanted = [c for c in modalities if c not in inputs]
            predicted = _translated(translate, case, inputs, wanted, case_dir)
            for channel in wanted:
                if channel not in baselines:
                    baselines[channel] = {
                        method: translation_scores(image, case.images[channel], region)
                        for method, image in baseline_predictions(
                            case.images[HEALTHY_CHANNEL], case.brainmask, quantiles[channel]
                        ).items()
                    }
                scores = {GENERATOR: translation_scores(predicted[channel], case.images[channel], region)}
                scores.update(baselines[channel])
                for method in METHODS:
                    rows.append(
                        {"case": case_dir.name, "inputs": inputs_name(inputs), "channel": channel, "method": method,
                         **scores[method]}
                    )
                log.info(
                    "translation %s %s -> %s: %s", case_dir.name, inputs_name(inputs), channel,
                    ", ".join(f"{m} SSIM {scores[m]['ssim']:.4f} MAE {scores[m]['mae']:.4f}" for m in METHODS),
                )
    return pd.DataFrame(rows, columns=COLUMNS)


# --- Summary and Markdown ------------------------------------------------------------------


def _mean_sd(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if len(values) > 1 and np.isfinite(values).all() else math.nan
    return mean, sd


def translation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (input set, translated channel), in the long table's order:
    ``n_cases``, ``{method}_{metric}_mean`` and ``_sd`` over cases, and for each
    of :data:`MARGIN_METRICS` ``margin_{metric}_mean`` / ``_sd`` (the per-case
    paired difference, positive when G is better) and ``margin_{metric}_baseline``
    (the baseline with the better mean)."""
    rows = []
    for (inputs, channel), group in table.groupby(["inputs", "channel"], sort=False):
        per_method = {m: group[group["method"] == m].set_index("case") for m in METHODS}
        row: dict = {"inputs": inputs, "channel": channel, "n_cases": len(per_method[GENERATOR])}
        for method, frame in per_method.items():
            for metric in METRICS:
                row[f"{method}_{metric}_mean"], row[f"{method}_{metric}_sd"] = _mean_sd(frame[metric].to_numpy())
        for metric in MARGIN_METRICS:
            higher_better = METRICS[metric][1]
            means = {b: row[f"{b}_{metric}_mean"] for b in BASELINES}
            best = (max if higher_better else min)(BASELINES, key=lambda b: means[b])
            generator = per_method[GENERATOR][metric]
            baseline = per_method[best][metric].reindex(generator.index)
            difference = (generator - baseline) if higher_better else (baseline - generator)
            row[f"margin_{metric}_mean"], row[f"margin_{metric}_sd"] = _mean_sd(difference.to_numpy())
            row[f"margin_{metric}_baseline"] = best
        rows.append(row)
    return pd.DataFrame(rows)


def _format(mean: float, sd: float, decimals: int, signed: bool = False) -> str:
    if math.isnan(mean):
        return "n/a"
    if math.isinf(mean):
        return "inf" if mean > 0 else "-inf"
    text = f"{mean:+.{decimals}f}" if signed else f"{mean:.{decimals}f}"
    return text if math.isnan(sd) else f"{text} ± {sd:.{decimals}f}"


def translation_markdown(table: pd.DataFrame, title: str = "Translation accuracy") -> str:
    """The long table summarized in Markdown: one section per input set, rows =
    translated channel, columns = method × metric (mean ± sd over cases) and G's
    margins over the better baseline, with a caption saying how it was computed."""
    summary = translation_summary(table)
    lines = [
        f"## {title}",
        "",
        "Held-out real cases; each channel not given is predicted by G, by the given t1n itself and by t1n "
        "histogram-matched to the real training cases' brain intensities of that channel. Scored against the real "
        "channel in the brain outside the tumour, on images rescaled to [0, 1]: SSIM (map over the volume with both "
        "images 0 outside that region, averaged over it, as BraSyn), PSNR (data range 1) and MAE. Mean ± sd over "
        "cases; margin: G minus the better baseline (by mean) for SSIM, that baseline minus G for MAE, paired per "
        "case: positive when G is better.",
        "",
    ]
    headers = ["Channel", "N"] + [f"{METHODS[m]} {METRICS[k][0]}" for m in METHODS for k in METRICS]
    headers += [f"G margin {METRICS[k][0].split()[0]}" for k in MARGIN_METRICS]
    for inputs, rows in summary.groupby("inputs", sort=False):
        lines += [f"### Inputs: {inputs}", "", "| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
        for _, row in rows.iterrows():
            cells = [_md_cell(row["channel"]), str(int(row["n_cases"]))]
            cells += [
                _format(row[f"{m}_{k}_mean"], row[f"{m}_{k}_sd"], METRICS[k][2]) for m in METHODS for k in METRICS
            ]
            cells += [
                f"{_format(row[f'margin_{k}_mean'], row[f'margin_{k}_sd'], METRICS[k][2], signed=True)} "
                f"(vs {METHODS[row[f'margin_{k}_baseline']]})"
                for k in MARGIN_METRICS
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_translation(
    heldout_case_dirs: Sequence[str | os.PathLike],
    train_case_dirs: Sequence[str | os.PathLike],
    modalities: Sequence[str],
    translate: Translator,
    out_csv: str | os.PathLike,
    out_md: str | os.PathLike,
    title: str = "Translation accuracy",
) -> pd.DataFrame:
    """:func:`translation_table`, written as the long CSV and the Markdown tables (each atomically)."""
    table = translation_table(heldout_case_dirs, train_case_dirs, modalities, translate)
    save_csv(table, out_csv)
    save_text(translation_markdown(table, title), out_md)
    return table
