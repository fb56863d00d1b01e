"""Generating TF-Aug's coarse synthetic pairs (x_s', m_s) (paper 002 §2.1).

Case ``i`` (id ``tfaug_{i:04d}``) is made from its own random streams,
``SeedSequence([seed, i]).spawn(3)``: *geometry* (healthy scan, number of
lesions, their masks and placement), *appearance* (offsets, texture amplitude,
mass-effect magnitude: always the same number of draws) and *texture* (the
noise field). A case therefore depends only on ``seed``, ``i`` and the
settings, never on how many cases are generated: the first k cases of a run
for N are the cases of a run for k (nested prefixes, docs/architecture.md), and
a rerun gives bit-identical files. Changing an appearance control (offset, texture,
mass-effect magnitude) keeps every case's lesions and healthy scan.

Per case (in this order):

1. the healthy scan x_h, drawn uniformly among the preprocessed healthy case
   folders (all on the real cases' grid);
2. the mask m_s: ``masks.place_lesions`` with the lesion controls (location,
   size, number of lesions), mask voxels outside the brain dropped, lesions
   losing too much re-drawn;
3. the mass effect, if enabled (``mass_effect``): x_h and its brain mask are
   warped away from the lesions; lesion voxels outside the warped brain dropped;
4. Eq. 1, ``x_s' = I(B(x_h, m_s))`` with the fitted (a, b) of
   ``intensity.json`` (``blend.augment_roi``), plus offsets and texture; each
   mask voxel once, by the lesion it belongs to (``placed.ids``), even where
   the lesions' boxes overlap.

Each case folder holds ``{modality}.nii.gz`` (float32, brain in [-1, 1],
background -1), ``seg.nii.gz`` (uint8) and ``brainmask.nii.gz`` (uint8, the
warped mask when the mass effect is on) on the healthy scan's grid and header
(docs/architecture.md), written by the same case-folder writer as CarveMix
(``tumorfab.casefolder.save_case``). ``manifest.csv`` has
one row per case in generation order, ``case_id`` first, then the provenance
(:data:`MANIFEST_COLUMNS`); list-valued columns are JSON. The manifest is
written and checked by ``tumorfab.synthesis.manifest.write_manifest``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from tumorfab.casefolder import Case, load_case, save_case
from tumorfab.io import atomic_directory
from tumorfab.labels import LABEL_KEYS
from tumorfab.synthesis.manifest import synthetic_case_id, write_manifest
from tumorfab.synthesis.tfaug import mass_effect as me
from tumorfab.synthesis.tfaug.blend import augment_roi, smooth_noise
from tumorfab.synthesis.tfaug.controls import LocationRule, draw_appearance, draw_count
from tumorfab.synthesis.tfaug.intensity_fit import load_intensity
from tumorfab.synthesis.tfaug.masks import MaskBank, equivalent_radius_mm, place_lesions
from tumorfab.synthesis.tfaug.settings import TFAugSettings

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "case_id",
    "healthy_subject",
    "n_lesions",
    "source_cases",
    "lesions",
    "volume_ml",
    "a",
    "b",
    "offset",
    "heterogeneity_amplitude",
    "heterogeneity_scale_mm",
    "location",
    "size_ml",
    "mass_effect_mm",
    "mass_effect_peak_mm",
    "blur_sigma",
    "seed",
    "seed_index",
]


@dataclass(frozen=True)
class CaseRecipe:
    """Everything a case depends on besides its index: the settings and the fitted (a, b)."""

    tfaug: TFAugSettings
    modalities: tuple[str, ...]
    a: np.ndarray  # [C, 3]
    b: np.ndarray
    seed: int


@dataclass
class SyntheticCase:
    """A generated case (a case folder in memory) and its manifest row."""

    case: Case
    row: dict


def case_streams(seed: int, index: int) -> list[np.random.Generator]:
    """Geometry, appearance and texture generators of case ``index``."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(3)]


def _subregions(values: np.ndarray) -> dict:
    return {LABEL_KEYS[label]: round(float(values[label]), 6) for label in LABEL_KEYS}


def make_case(index: int, bank: MaskBank, healthy: Mapping[str, Path], recipe: CaseRecipe) -> SyntheticCase:
    """Case ``index``: draw, place, (warp), blend. See the module docstring."""
    settings = recipe.tfaug
    geometry, appearance, texture_rng = case_streams(recipe.seed, index)
    subjects = list(healthy)
    subject = subjects[int(geometry.integers(len(subjects)))]
    healthy_case = load_case(healthy[subject], recipe.modalities, with_seg=False)
    images, brain = healthy_case.stacked(recipe.modalities), healthy_case.brainmask > 0
    grid = bank.grid
    grid.check_same(brain.shape, healthy_case.affine, str(healthy[subject]))

    controls = settings.controls
    needs_image = controls.location.mode == "tissue"
    rule = LocationRule(controls.location, grid, brain, images[0] if needs_image else None, settings.masks.shift_mm)
    n_lesions = draw_count(controls, geometry)
    placed = place_lesions(bank, brain, geometry, settings.masks, rule, controls.size_ml, n_lesions)
    labels, lesions = placed.labels, placed.ids

    offsets, amplitude = draw_appearance(controls, appearance)
    magnitude = float(appearance.uniform(*settings.mass_effect.magnitude_mm))
    brain = brain.astype(np.uint8)
    peak = 0.0
    if settings.mass_effect.enabled and magnitude > 0:
        centroids = [r["centroid_vox"] for r in placed.records]
        radii = [equivalent_radius_mm(r["volume_ml"]) for r in placed.records]
        ddf, box = me.inverse_displacement(
            grid.shape, grid.spacing, centroids, radii, [magnitude] * len(radii), settings.mass_effect.steps
        )
        images, brain = me.warp_scan(images, brain, ddf, box)
        labels = labels * brain
        lesions = lesions * brain
        peak = float(me.displacement_mm(ddf, grid.spacing).max())
        if not labels.any():
            raise RuntimeError(f"case {index}: the mass effect left no lesion voxel inside the brain")
    else:
        magnitude = 0.0

    texture = None
    if amplitude > 0:
        scale_vox = controls.heterogeneity_scale_mm / grid.spacing
        texture = amplitude * smooth_noise(lesions, placed.boxes, scale_vox, texture_rng)
    image = augment_roi(
        images, brain, labels, recipe.a, recipe.b, settings.blur_sigma, offsets, texture, lesions, placed.boxes
    )

    row = {
        "case_id": synthetic_case_id("tfaug", index),
        "healthy_subject": subject,
        "n_lesions": len(placed.records),
        "source_cases": ";".join(c["source"] for r in placed.records for c in r["components"]),
        "lesions": json.dumps(placed.records),
        "volume_ml": round(float((labels > 0).sum()) * grid.voxel_ml, 4),
        "a": json.dumps({m: _subregions(np.r_[0, recipe.a[c]]) for c, m in enumerate(recipe.modalities)}),
        "b": json.dumps({m: _subregions(np.r_[0, recipe.b[c]]) for c, m in enumerate(recipe.modalities)}),
        "offset": json.dumps(_subregions(offsets)),
        "heterogeneity_amplitude": round(amplitude, 6),
        "heterogeneity_scale_mm": controls.heterogeneity_scale_mm,
        "location": json.dumps(controls.location.record()),
        "size_ml": json.dumps(list(controls.size_ml) if controls.size_ml else None),
        "mass_effect_mm": round(magnitude, 4),
        "mass_effect_peak_mm": round(peak, 4),
        "blur_sigma": settings.blur_sigma,
        "seed": recipe.seed,
        "seed_index": index,
    }
    images = {modality: image[c] for c, modality in enumerate(recipe.modalities)}
    case = Case(images, brain.astype(np.uint8), labels.astype(np.uint8), healthy_case.affine, healthy_case.header)
    return SyntheticCase(case, row)


def generate_tfaug(
    real_case_dirs: Sequence[str | os.PathLike],
    healthy_case_dirs: Sequence[str | os.PathLike],
    intensity_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    n_cases: int,
    seed: int,
    modalities: Sequence[str],
    settings: TFAugSettings,
) -> pd.DataFrame:
    """The ``generate_tfaug`` rule: ``n_cases`` coarse pairs and their manifest.

    ``real_case_dirs``: the real *training* case folders (their ``seg.nii.gz``
    is the mask bank); ``healthy_case_dirs``: preprocessed healthy case
    folders (subject id = folder name; drawn from in sorted order, so the
    order given does not matter). ``out_dir`` is written as a whole: built in
    a hidden temporary folder beside it and renamed into place, so a killed
    job leaves no partial set; the manifest is written after it.
    """
    if n_cases < 0:
        raise ValueError(f"n_cases must be >= 0, got {n_cases}")
    a, b = load_intensity(intensity_json, modalities)
    recipe = CaseRecipe(settings, tuple(modalities), a, b, int(seed))
    bank = MaskBank.from_case_dirs(real_case_dirs)
    healthy = {Path(d).name: Path(d) for d in sorted(healthy_case_dirs, key=lambda d: Path(d).name)}
    if not healthy:
        raise ValueError("TF-Aug needs at least one healthy case folder")
    log.info("TF-Aug: %d cases from %d real masks and %d healthy scans", n_cases, len(bank), len(healthy))

    rows = []
    with atomic_directory(out_dir) as tmp_dir:
        for index in range(n_cases):
            made = make_case(index, bank, healthy, recipe)
            save_case(made.case, tmp_dir / made.row["case_id"])
            row = made.row
            rows.append(row)
            log.info(
                "%s: %s, %d lesion(s), %.1f ml, sources %s, mass effect %.1f mm",
                row["case_id"], row["healthy_subject"], row["n_lesions"],
                row["volume_ml"], row["source_cases"], row["mass_effect_peak_mm"],
            )
    return write_manifest(rows, MANIFEST_COLUMNS, manifest_path, "tfaug")
