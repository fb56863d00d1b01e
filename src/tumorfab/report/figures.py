"""Figures of the report: Dice against the number of synthetic cases (paper
002 §3.2.5, Table 2 as a plot, for every source), mosaics of synthetic
cases per source (paper 002 Fig. 3: image and labels side by side), the
sequences of a real case and of each source side by side, and TF-GAN's
refinement of every sequence.

Matplotlib is used through ``matplotlib.figure.Figure`` (the Agg canvas), never
``pyplot``: no display and no global state, safe in parallel jobs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tumorfab.casefolder import channels_in, load_case
from tumorfab.io import atomic_path
from tumorfab.labels import COLOUR_NAMES, LABEL_NAMES, LESION_LABELS, REGION_KEYS, REPORT_COLOURS
from tumorfab.synthesis import source_label
from tumorfab.synthesis.manifest import manifest_case_ids

#: (per-run column, title) of each panel: the BraTS regions, then their mean.
PANELS = [*((f"dice_{r}", r.upper()) for r in REGION_KEYS), ("dice_mean", "Mean")]


def _save(figure: Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _outline_labels(ax, labels: np.ndarray, linewidth: float) -> None:
    """Each tumour label's outline on a slice, in its report colour."""
    for label, colour in REPORT_COLOURS.items():
        if (labels == label).any():
            ax.contour(labels == label, levels=[0.5], colors=[colour], linewidths=linewidth)


def dice_vs_synthetic_points(
    per_run: pd.DataFrame, experiments: Mapping[str, Mapping]
) -> dict[str, pd.DataFrame]:
    """Per source, the points of the Dice-vs-size plot: one row per size.

    The real-only baseline (the first experiment with source ``none`` that has
    results) is the point at 0 synthetic cases of every source. Columns:
    ``n_synthetic, experiment, n_seeds`` and for each Dice column its mean and
    sample std (ddof=1) over seeds, in %. Sources without results are absent.
    """
    available = set(per_run["experiment"])
    baseline = next(
        (n for n, e in experiments.items() if e["source"] == "none" and n in available), None
    )
    by_source: dict[str, list[tuple[int, str]]] = {}
    for name, experiment in experiments.items():
        if experiment["source"] != "none" and name in available:
            by_source.setdefault(experiment["source"], []).append(
                (int(experiment["n_synthetic"]), name)
            )
    points = {}
    for source, sizes in by_source.items():
        if baseline is not None:
            sizes = [(0, baseline), *sizes]
        rows = []
        for n, name in sorted(sizes):
            runs = per_run[per_run["experiment"] == name]
            row: dict[str, object] = {"n_synthetic": n, "experiment": name, "n_seeds": len(runs)}
            for column, _ in PANELS:
                values = runs[column].to_numpy(float) * 100.0
                row[f"{column}_mean"] = float(np.mean(values))
                row[f"{column}_std"] = (
                    float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan
                )
            rows.append(row)
        points[source] = pd.DataFrame(rows)
    return points


def plot_dice_vs_synthetic(
    per_run: pd.DataFrame, experiments: Mapping[str, Mapping], out_png: str | os.PathLike
) -> dict[str, pd.DataFrame]:
    """Dice (mean over seeds, error bars = sample std) against the number of synthetic cases.

    One panel per region (ET, TC, WT) and their mean, one line per synthetic
    source with at least one size; the real-only baseline at 0. A run with no
    results still gets a figure that says so.
    """
    points = dice_vs_synthetic_points(per_run, experiments)
    figure = Figure(figsize=(13, 3.6), layout="constrained")
    axes = figure.subplots(1, len(PANELS))
    for ax, (column, title) in zip(axes, PANELS):
        for source, frame in points.items():
            ax.errorbar(
                frame["n_synthetic"],
                frame[f"{column}_mean"],
                yerr=frame[f"{column}_std"].fillna(0.0),
                marker="o",
                capsize=3,
                label=source_label(source),
            )
        ax.set_title(f"{title} Dice")
        ax.set_xlabel("synthetic cases added")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Dice (%)")
    if points:
        axes[-1].legend(loc="best", fontsize="small")
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
    figure.suptitle(
        "Dice vs number of synthetic cases (mean ± sample std over seeds; 0 = real only)"
    )
    _save(figure, out_png)
    return points


def _lesion_slice(seg: np.ndarray) -> int:
    """Axial index through the lesion's centroid (the middle slice without a lesion)."""
    lesion = np.nonzero(seg > 0)
    if len(lesion[2]) == 0:
        return seg.shape[2] // 2
    return int(round(float(np.mean(lesion[2]))))


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    # Array axes (x, y): show y upward and x to the right, radiological flips aside.
    return np.rot90(volume[:, :, z])


def plot_mosaic(
    cases_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    out_png: str | os.PathLike,
    modalities: Sequence[str],
    n_cases: int,
    title: str | None = None,
) -> list[str]:
    """A grid of the first ``n_cases`` synthetic cases of a source (manifest order).

    A row per case: each modality on the axial slice through the lesion
    centroid (grey, [-1, 1]), then the first modality with the labels overlaid
    (NCR red, ED green, ET yellow, with their contours). Returns the case ids
    shown.
    """
    case_ids = manifest_case_ids(manifest_path)[:n_cases]
    columns = [*modalities, f"{modalities[0]} + labels"]
    n_rows = max(len(case_ids), 1)
    figure = Figure(figsize=(2.6 * len(columns), 2.6 * n_rows + 0.6), layout="constrained")
    axes = np.atleast_2d(figure.subplots(n_rows, len(columns), squeeze=False))
    label_cmap = ListedColormap([REPORT_COLOURS[k] for k in LESION_LABELS])
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if not case_ids:
        axes[0, 0].text(
            0.5, 0.5, "no cases", ha="center", va="center", transform=axes[0, 0].transAxes
        )
    for row, case_id in enumerate(case_ids):
        case = load_case(Path(cases_dir) / case_id, modalities)
        seg, images, zooms = case.seg, case.images, case.zooms
        aspect = float(zooms[1]) / float(zooms[0])
        z = _lesion_slice(seg)
        for col, modality in enumerate(modalities):
            axes[row, col].imshow(
                _axial(images[modality], z), cmap="gray", vmin=-1, vmax=1, aspect=aspect
            )
        ax = axes[row, -1]
        ax.imshow(_axial(images[modalities[0]], z), cmap="gray", vmin=-1, vmax=1, aspect=aspect)
        labels = _axial(seg, z)
        overlay = np.ma.masked_where(labels == 0, labels)
        ax.imshow(
            overlay,
            cmap=label_cmap,
            vmin=0.5,
            vmax=3.5,
            alpha=0.45,
            aspect=aspect,
            interpolation="nearest",
        )
        _outline_labels(ax, labels, 0.8)
        axes[row, 0].set_ylabel(f"{case_id}\nz={z}", fontsize="small")
    for col, name in enumerate(columns):
        axes[0, col].set_title(name, fontsize="small")
    legend = ", ".join(f"{LABEL_NAMES[k]} {COLOUR_NAMES[k]}" for k in LESION_LABELS)
    figure.suptitle(
        f"{title or Path(cases_dir).parent.name}: first {len(case_ids)} cases ({legend})"
    )
    _save(figure, out_png)
    return case_ids


def plot_sequences(
    real_case_dir: str | os.PathLike,
    sources: Mapping[str, Mapping[str, str | os.PathLike]],
    out_png: str | os.PathLike,
    modalities: Sequence[str],
) -> list[str]:
    """Every sequence of a real case and of each source's first case, side by side.

    One row per case: the real case, then the first case (manifest order) of
    each source of ``sources`` (name -> ``{"manifest": ..., "cases_dir": ...}``);
    one column per channel of ``modalities`` (grey, [-1, 1]) with the labels'
    outlines, on the axial slice through that case's lesion centroid. A
    channel a case folder lacks is marked absent. Returns the names of the
    case folders shown, row by row (a source without cases shows none).
    """
    rows: list[tuple[str, Path | None]] = [("Real", Path(real_case_dir))]
    for source, spec in sources.items():
        ids = manifest_case_ids(spec["manifest"])
        rows.append((source_label(source), Path(spec["cases_dir"]) / ids[0] if ids else None))
    figure = Figure(figsize=(2.6 * len(modalities), 2.6 * len(rows) + 0.6), layout="constrained")
    axes = figure.subplots(len(rows), len(modalities), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    shown = []
    for row, (name, case_dir) in enumerate(rows):
        if case_dir is None:
            axes[row, 0].set_ylabel(name, fontsize="small")
            axes[row, 0].text(0.5, 0.5, "no cases", ha="center", va="center", transform=axes[row, 0].transAxes)
            continue
        present = channels_in(case_dir, modalities)
        case = load_case(case_dir, present)
        aspect = float(case.zooms[1]) / float(case.zooms[0])
        z = _lesion_slice(case.seg)
        labels = _axial(case.seg, z)
        for col, channel in enumerate(modalities):
            ax = axes[row, col]
            if channel not in case.images:
                ax.text(0.5, 0.5, "absent", ha="center", va="center", transform=ax.transAxes)
                continue
            ax.imshow(_axial(case.images[channel], z), cmap="gray", vmin=-1, vmax=1, aspect=aspect)
            _outline_labels(ax, labels, 0.8)
        axes[row, 0].set_ylabel(f"{name}\n{case_dir.name}\nz={z}", fontsize="small")
        shown.append(case_dir.name)
    for col, channel in enumerate(modalities):
        axes[0, col].set_title(channel, fontsize="small")
    legend = ", ".join(f"{LABEL_NAMES[k]} {COLOUR_NAMES[k]}" for k in LESION_LABELS)
    figure.suptitle(f"A real case, then each source's first case\n(label outlines: {legend})", fontsize="medium")
    _save(figure, out_png)
    return shown


def plot_refinement(
    coarse_cases_dir: str | os.PathLike,
    refined_cases_dir: str | os.PathLike,
    refined_manifest: str | os.PathLike,
    out_png: str | os.PathLike,
    modalities: Sequence[str],
    n_cases: int,
) -> list[str]:
    """The same inputs before and after TF-GAN, side by side (paper 002 Fig. 3).

    A row per refined case (manifest order, its ``coarse_case`` column names
    the TF-Aug pair it refines); per channel of ``modalities``, three columns:
    the coarse image, the refined image, their difference (refined - coarse,
    on [-0.5, 0.5]), with the labels' outlines, on the axial slice through the
    lesion. With several channels each column's title starts with its channel.
    Returns the case ids shown.
    """
    manifest = pd.read_csv(refined_manifest, dtype={"case_id": str, "coarse_case": str}).head(n_cases)
    kinds = ["coarse (TF-Aug)", "refined (TF-GAN)", "refined - coarse"]
    columns = kinds if len(modalities) == 1 else [f"{m}: {kind}" for m in modalities for kind in kinds]
    n_rows = max(len(manifest), 1)
    figure = Figure(figsize=(2.8 * len(columns), 2.8 * n_rows + 0.6), layout="constrained")
    axes = np.atleast_2d(figure.subplots(n_rows, len(columns), squeeze=False))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for row, (case_id, coarse_id) in enumerate(zip(manifest["case_id"], manifest["coarse_case"])):
        refined = load_case(Path(refined_cases_dir) / case_id, modalities)
        coarse = load_case(Path(coarse_cases_dir) / coarse_id, modalities)
        aspect = float(refined.zooms[1]) / float(refined.zooms[0])
        z = _lesion_slice(refined.seg)
        labels = _axial(refined.seg, z)
        for channel_index, channel in enumerate(modalities):
            before, after = _axial(coarse.images[channel], z), _axial(refined.images[channel], z)
            for kind_index, (picture, cmap, limits) in enumerate(
                [(before, "gray", (-1, 1)), (after, "gray", (-1, 1)), (after - before, "coolwarm", (-0.5, 0.5))]
            ):
                ax = axes[row, channel_index * len(kinds) + kind_index]
                ax.imshow(picture, cmap=cmap, vmin=limits[0], vmax=limits[1], aspect=aspect)
                _outline_labels(ax, labels, 0.6)
        axes[row, 0].set_ylabel(f"{coarse_id} -> {case_id}\nz={z}", fontsize="small")
    for col, name in enumerate(columns):
        axes[0, col].set_title(name, fontsize="small")
    figure.suptitle(f"TF-GAN refinement of TF-Aug's coarse pairs ({', '.join(modalities)}; label outlines)")
    _save(figure, out_png)
    return list(manifest["case_id"])
