"""Realism of the synthetic sources before any segmentation training (not in the paper).

Per synthetic source, the Fréchet distance between the features the frozen
encoder F (``tumorfab.segmentation.features``: the first ``n_stages`` stages of
the baseline nnU-Net's encoder) gives on synthetic cases and on the real
training cases, computed offline, once per source; a table (CSV and Markdown)
and a bar figure for the report. A low distance says that F, which the
segmentation network's own first layers define, sees the synthetic tumours
(and the brain around them) like real ones.

What we chose:

* **Regions**: ``tumour`` = every tumour label (> 0: NCR, ED and ET together);
  ``brain`` = the brain mask without the tumour (the non-tumour tissue the
  synthetic tumour sits in, healthy scans for TF-Aug/TF, real brains for
  CarveMix). Each region is a row of its own.
* **Feature vector**: one per case and region. The whole case (every
  modality of ``modalities``, whole volume, float32, no gradients) goes
  through F; each stage's feature map is average-pooled over the region's
  mask brought to the stage's resolution by area interpolation
  (``tfaug.intensity_fit.classwise_pooled``, the pooling of TF-Aug's fit and
  TF-GAN's class-wise perceptual loss); the stages' pooled vectors are
  concatenated (``feature_dim`` = the sum of the stages' channels). Raw
  features, no per-channel standardization (as FID). A case where a region
  is empty (no tumour voxel) adds no vector to that region.
* **Channels**: one distance per source and region over all channels
  together: F's first convolution mixes the channels, so it has no feature
  of one sequence alone (a per-channel distance would need an encoder
  trained on that channel only). Each sequence on its own is the intensity
  table's (:mod:`tumorfab.report.intensities`).
* **Sets**: "real" = the real **training** cases (their vectors computed once
  and shared by every source); "synthetic" = the first ``max_synthetic``
  cases of the source's manifest in generation order (all of them when None;
  the nested-size rule of ``synthesis.manifest.first_cases``). ``n_synthetic``
  and ``n_real`` count the vectors of each side of the row's region.
* **Reference row** (optional, ``reference_case_dirs``): held-out real cases
  against the real training cases, source ``real_heldout``: the distance
  between two real sets, which gives the other rows a scale (a Fréchet
  distance has no unit, and with few cases it is biased upwards by the
  sampling noise of the covariances; the bias depends on N, so compare rows
  of similar N). The held-out cases are used for nothing else here. In that
  row ``n_synthetic`` is the number of held-out vectors.
* **Fréchet distance**: ``|mu_s - mu_r|^2 + tr(S_s) + tr(S_r) - 2 tr((S_s S_r)^(1/2))``
  (Gaussians fitted to each side; sample covariances, ddof 1) by MONAI's
  ``FIDMetric``. With fewer cases than features (the demo: 8 real cases,
  hundreds of features) the covariances are singular; MONAI's ``scipy``
  ``sqrtm`` of the product then often returns a large spurious imaginary
  part and ``FIDMetric`` raises (or, rarely, a non-finite value). Then, and
  only then, a ridge ``eps·I`` is added to **both** covariances and MONAI's
  ``compute_frechet_distance`` (the function ``FIDMetric`` calls) is used on
  them, ``eps`` = ``ridge`` × the mean feature variance of the two sides,
  ``ridge`` from :data:`RIDGES` (the smallest that works, 1e-6 upwards). The
  absolute ``eps`` used is the ``ridge`` column (0: none); it changes the
  distance by a relative amount of the order of ``ridge`` (and not at all
  when the two sets are equal). Round-off can make the distance of two
  (nearly) equal sets slightly negative: it is reported as 0. A side with
  fewer than 2 vectors has no covariance: the distance is NaN (logged).
* **Determinism**: no randomness; cases in the given (manifest) order; cuDNN
  is set to deterministic, non-benchmark algorithms while F runs.

:func:`realism_table` computes the table, :func:`write_realism` writes it as
CSV (``tumorfab.io.save_csv``), Markdown and PNG (one panel per region).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from tumorfab.casefolder import load_case
from tumorfab.device import module_device
from tumorfab.io import save_csv, save_text
from tumorfab.report.figures import _save
from tumorfab.report.tables import _md_cell
from tumorfab.synthesis import source_label
from tumorfab.synthesis.manifest import first_cases, manifest_case_ids
from tumorfab.synthesis.tfaug.intensity_fit import classwise_pooled

log = logging.getLogger(__name__)

#: Region name -> its value in the region map :func:`region_map` builds, in row order.
REGIONS: dict[str, int] = {"tumour": 1, "brain": 2}
#: Display names of the regions (figure panels, Markdown).
REGION_TITLES = {"tumour": "Tumour (all labels)", "brain": "Non-tumour brain"}
#: The ``source`` of the reference row (held-out real vs training real).
REFERENCE_SOURCE = "real_heldout"
REFERENCE_LABEL = "Real held-out (reference)"
#: The table's columns, in order.
COLUMNS = ["source", "label", "region", "n_synthetic", "n_real", "feature_dim", "frechet_distance", "ridge"]
#: Relative ridges tried, in order, when FIDMetric fails on singular covariances.
RIDGES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


# --- Feature vectors ------------------------------------------------------------------
def region_map(seg: np.ndarray, brainmask: np.ndarray) -> np.ndarray:
    """uint8 map: ``REGIONS['tumour']`` where ``seg > 0``, ``REGIONS['brain']`` in the
    rest of the brain mask, 0 elsewhere."""
    regions = np.zeros(seg.shape, dtype=np.uint8)
    regions[(brainmask > 0) & (seg == 0)] = REGIONS["brain"]
    regions[seg > 0] = REGIONS["tumour"]
    return regions


@contextlib.contextmanager
def _deterministic_cudnn() -> Iterator[None]:
    backend = torch.backends.cudnn
    saved = backend.deterministic, backend.benchmark
    backend.deterministic, backend.benchmark = True, False
    try:
        yield
    finally:
        backend.deterministic, backend.benchmark = saved


def case_features(
    extractor: torch.nn.Module, case_dir: str | os.PathLike, modalities: Sequence[str], n_stages: int
) -> dict[str, np.ndarray]:
    """Region -> pooled feature vector (float64, stages concatenated) of one case.

    A region without voxels in the case is absent from the result.
    """
    case = load_case(case_dir, modalities)
    device = module_device(extractor)
    image = torch.from_numpy(case.stacked(modalities).astype(np.float32))[None].to(device)
    brain = torch.from_numpy(case.brainmask.astype(np.float32))[None, None].to(device)
    regions = torch.from_numpy(region_map(case.seg, case.brainmask))[None, None].to(device)
    with torch.no_grad(), _deterministic_cudnn():
        features = list(extractor(image, brain))
        if len(features) < n_stages:
            raise ValueError(f"the feature extractor gives {len(features)} stages, {n_stages} wanted")
        pooled, present = classwise_pooled(
            [f.float() for f in features[:n_stages]], regions, classes=tuple(REGIONS.values())
        )
    vectors = torch.cat(pooled, dim=-1)[0].double().cpu().numpy()  # [K, D]
    return {name: vectors[k] for k, name in enumerate(REGIONS) if bool(present[0, k])}


def cohort_features(
    extractor: torch.nn.Module, case_dirs: Sequence[str | os.PathLike], modalities: Sequence[str], n_stages: int
) -> dict[str, np.ndarray]:
    """Region -> [N_region, D] feature matrix of a set of cases (in the given order)."""
    rows: dict[str, list[np.ndarray]] = {name: [] for name in REGIONS}
    for case_dir in case_dirs:
        for name, vector in case_features(extractor, case_dir, modalities, n_stages).items():
            rows[name].append(vector)
    dims = {v.shape[0] for vs in rows.values() for v in vs}
    dim = dims.pop() if len(dims) == 1 else 0
    return {name: np.stack(vs) if vs else np.zeros((0, dim)) for name, vs in rows.items()}


# --- Fréchet distance -------------------------------------------------------------------
def frechet_distance(synthetic: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """(Fréchet distance, absolute ridge used) of two feature matrices [N, D].

    MONAI's ``FIDMetric()(synthetic, real)``; when it raises or is not finite
    (singular covariances), MONAI's ``compute_frechet_distance`` on the sample
    covariances plus ``eps·I`` (both sides), ``eps`` = ridge × mean feature
    variance, for the ridges of :data:`RIDGES` in turn. Negative round-off is
    reported as 0; NaN (ridge NaN) when a side has fewer than 2 vectors.
    """
    from monai.metrics import FIDMetric
    from monai.metrics.fid import compute_frechet_distance

    synthetic = torch.as_tensor(np.asarray(synthetic, dtype=np.float64))
    real = torch.as_tensor(np.asarray(real, dtype=np.float64))
    if synthetic.ndim != 2 or real.ndim != 2 or synthetic.shape[1] != real.shape[1]:
        raise ValueError(f"feature matrices must be [N, D] with one D, got {tuple(synthetic.shape)}, {tuple(real.shape)}")
    if synthetic.shape[0] < 2 or real.shape[0] < 2:
        log.warning("Fréchet distance needs 2 vectors per side, got %d and %d: NaN", synthetic.shape[0], real.shape[0])
        return math.nan, math.nan
    try:
        value = float(FIDMetric()(synthetic, real))
        if math.isfinite(value):
            return max(value, 0.0), 0.0
        reason = f"non-finite value {value}"
    except (ValueError, RuntimeError) as error:  # MONAI: "Imaginary component ... too high"
        reason = str(error)
    dim = synthetic.shape[1]
    sigma_s, sigma_r = torch.cov(synthetic.T).reshape(dim, dim), torch.cov(real.T).reshape(dim, dim)
    scale = float(torch.trace(sigma_s) + torch.trace(sigma_r)) / (2 * dim)
    if scale <= 0:
        scale = 1.0
    for ridge in RIDGES:
        eps = ridge * scale
        offset = torch.eye(dim, dtype=torch.float64) * eps
        try:
            value = float(
                compute_frechet_distance(synthetic.mean(0), sigma_s + offset, real.mean(0), sigma_r + offset, epsilon=eps)
            )
        except ValueError:
            continue
        if math.isfinite(value):
            log.info("FIDMetric failed (%s); ridge %.3g (eps %.4g) added to both covariances", reason, ridge, eps)
            return max(value, 0.0), eps
    raise ValueError(f"Fréchet distance: no ridge up to {RIDGES[-1]} gives a finite real value ({reason})")


# --- The table ---------------------------------------------------------------------------
def _source_paths(spec) -> tuple[Path, Path]:
    """(manifest, cases_dir) from a pair or a mapping with keys ``manifest`` and ``cases_dir``."""
    if isinstance(spec, Mapping):
        return Path(spec["manifest"]), Path(spec["cases_dir"])
    manifest, cases_dir = spec
    return Path(manifest), Path(cases_dir)


def _rows(source: str, label: str, compared: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray]) -> list[dict]:
    rows = []
    for region in REGIONS:
        distance, ridge = frechet_distance(compared[region], real[region])
        rows.append(
            {
                "source": source,
                "label": label,
                "region": region,
                "n_synthetic": int(compared[region].shape[0]),
                "n_real": int(real[region].shape[0]),
                "feature_dim": int(real[region].shape[1]),
                "frechet_distance": distance,
                "ridge": ridge,
            }
        )
        row = rows[-1]
        log.info(
            "realism %s %s: FD %.6g (%d vs %d real, D %d)",
            source, region, distance, row["n_synthetic"], row["n_real"], row["feature_dim"],
        )
    return rows


def realism_table(
    model_dir: str | os.PathLike | None,
    n_stages: int,
    real_case_dirs: Sequence[str | os.PathLike],
    sources: Mapping[str, object],
    modalities: Sequence[str],
    reference_case_dirs: Sequence[str | os.PathLike] | None = None,
    max_synthetic: int | None = None,
    extractor: torch.nn.Module | None = None,
) -> pd.DataFrame:
    """The Fréchet distance table: one row per (source, region), columns :data:`COLUMNS`.

    ``sources``: source name -> ``(manifest_path, cases_dir)`` or
    ``{"manifest": ..., "cases_dir": ...}``; its cases are
    ``cases_dir/{case_id}``, the first ``max_synthetic`` of the manifest (all
    when None). ``real_case_dirs``: the real training cases.
    ``reference_case_dirs``: held-out real cases for the reference row
    (first when given; they must not be training cases). ``extractor``
    replaces F read from ``model_dir`` (tests); the first ``n_stages`` of its
    stages are pooled. Rows: the reference row, then the sources in the given
    order; per source the regions of :data:`REGIONS`.
    """
    real_case_dirs = [Path(p) for p in real_case_dirs]
    if not real_case_dirs:
        raise ValueError("realism: no real training cases")
    if reference_case_dirs:
        training = {p.resolve() for p in real_case_dirs}
        shared = [str(p) for p in reference_case_dirs if Path(p).resolve() in training]
        if shared:
            raise ValueError(f"realism: reference (held-out) cases are also training cases: {shared[:5]}")
    if extractor is None:
        from tumorfab.segmentation.features import load_feature_extractor

        extractor = load_feature_extractor(model_dir, n_stages=int(n_stages))
    extractor.eval()
    modalities = list(modalities)
    log.info("realism: features of %d real training cases", len(real_case_dirs))
    real = cohort_features(extractor, real_case_dirs, modalities, int(n_stages))
    rows = []
    if reference_case_dirs:
        log.info("realism: features of %d held-out real cases (reference)", len(reference_case_dirs))
        held_out = cohort_features(extractor, list(reference_case_dirs), modalities, int(n_stages))
        rows += _rows(REFERENCE_SOURCE, REFERENCE_LABEL, held_out, real)
    for source, spec in sources.items():
        manifest, cases_dir = _source_paths(spec)
        ids = manifest_case_ids(manifest) if max_synthetic is None else first_cases(manifest, int(max_synthetic))
        log.info("realism: features of %d %s cases", len(ids), source)
        synthetic = cohort_features(extractor, [cases_dir / i for i in ids], modalities, int(n_stages))
        rows += _rows(source, source_label(source), synthetic, real)
    return pd.DataFrame(rows, columns=COLUMNS)


# --- Markdown and figure -------------------------------------------------------------------
def _format_distance(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.4g}"


def realism_markdown(table: pd.DataFrame, title: str = "Realism before training") -> str:
    """The table in Markdown, one section per region, with a caption saying how it was computed."""
    headers = ["Source", "N compared", "N real", "Feature dim", "Fréchet distance ↓"]
    lines = [f"## {title}", ""]
    for region in REGIONS:
        rows = table[table["region"] == region]
        lines += [
            f"### {REGION_TITLES[region]}",
            "",
            "| " + " | ".join(headers) + " |",
            "| --- |" + " ---: |" * (len(headers) - 1),
        ]
        for _, row in rows.iterrows():
            label = _md_cell(row["label"])
            if row["source"] == REFERENCE_SOURCE:
                label = f"*{label}*"
            distance = _format_distance(float(row["frechet_distance"]))
            if float(row["ridge"]) > 0:
                distance += "†"
            cells = [label, str(row["n_synthetic"]), str(row["n_real"]), str(row["feature_dim"]), distance]
            lines.append("| " + " | ".join(cells) + " |")
        if rows.empty:
            lines.append("| (no rows) |" + " |" * (len(headers) - 1))
        lines.append("")
    notes = [
        "Fréchet distance between Gaussians fitted to the features of each set (MONAI FIDMetric; "
        "sample covariances): per case, the whole volume through the frozen encoder F of the "
        "baseline nnU-Net (its first stages), each stage's features averaged over the region "
        "(tumour: all tumour labels; non-tumour brain: brain mask without the tumour), stages "
        "concatenated. Each source's synthetic cases against the real training cases; "
        "N compared = synthetic vectors (held-out real ones for the reference row), N real = "
        "training vectors. Lower is more realistic. With few cases the distance is biased "
        "upwards (covariance noise); compare with the reference row and rows of similar N.",
    ]
    if (table["source"] == REFERENCE_SOURCE).any():
        notes += ["", "Reference (italics): held-out real cases against the training cases, the distance of two real sets."]
    if (table["ridge"].astype(float) > 0).any():
        notes += [
            "",
            "† Singular covariances (fewer cases than features): a small ridge eps·I was added to "
            "both covariances (the ridge column of the CSV).",
        ]
    return "\n".join(lines + notes) + "\n"


def plot_realism(table: pd.DataFrame, out_png: str | os.PathLike, title: str = "Realism before training") -> None:
    """One bar panel per region: the Fréchet distance per source (reference bar grey, hatched)."""
    figure = Figure(figsize=(5.0 * len(REGIONS), 3.8), layout="constrained")
    axes = figure.subplots(1, len(REGIONS), squeeze=False)[0]
    for ax, region in zip(axes, REGIONS):
        rows = table[table["region"] == region].reset_index(drop=True)
        values = rows["frechet_distance"].astype(float).to_numpy()
        heights = np.where(np.isfinite(values), values, 0.0)
        reference = (rows["source"] == REFERENCE_SOURCE).to_numpy()
        colours = ["0.6" if r else f"C{i}" for i, r in enumerate(reference)]
        bars = ax.bar(range(len(rows)), heights, color=colours, edgecolor="black", linewidth=0.6)
        for bar, is_reference in zip(bars, reference):
            if is_reference:
                bar.set_hatch("//")
        top = float(np.max(heights)) if len(heights) else 0.0
        for i, (value, n) in enumerate(zip(values, rows["n_synthetic"])):
            ax.text(i, (value if np.isfinite(value) else 0.0) + 0.01 * top, f"{_format_distance(value)}\nN={n}",
                    ha="center", va="bottom", fontsize="small")
        ax.set_xticks(range(len(rows)), rows["label"].tolist(), rotation=20, ha="right")
        ax.set_title(REGION_TITLES[region])
        ax.set_ylim(0, top * 1.25 if top > 0 else 1.0)
        ax.grid(axis="y", alpha=0.3)
        if rows.empty:
            ax.text(0.5, 0.5, "no sources", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel("Fréchet distance to real training (F features)")
    figure.suptitle(f"{title}: lower is more realistic")
    _save(figure, out_png)


def write_realism(
    model_dir: str | os.PathLike | None,
    n_stages: int,
    real_case_dirs: Sequence[str | os.PathLike],
    sources: Mapping[str, object],
    modalities: Sequence[str],
    out_csv: str | os.PathLike,
    out_md: str | os.PathLike,
    out_png: str | os.PathLike,
    reference_case_dirs: Sequence[str | os.PathLike] | None = None,
    max_synthetic: int | None = None,
    extractor: torch.nn.Module | None = None,
    title: str = "Realism before training",
) -> pd.DataFrame:
    """:func:`realism_table`, written as CSV, Markdown and PNG (each atomically)."""
    table = realism_table(
        model_dir, n_stages, real_case_dirs, sources, modalities,
        reference_case_dirs=reference_case_dirs, max_synthetic=max_synthetic, extractor=extractor,
    )
    save_csv(table, out_csv)
    save_text(realism_markdown(table, title), out_md)
    plot_realism(table, out_png, title)
    return table
