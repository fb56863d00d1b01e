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
   the lesions' boxes overlap; on each channel the healthy scan has, with
   that channel's (a, b);
5. each configured channel the healthy scan lacks: the synthetic t1n
   histogram-matched onto the real training cases' brain quantiles of that
   channel, kept in ``intensity.json`` (``tfaug.fill``; no random draw).

Each case folder holds ``{modality}.nii.gz`` for every configured channel (float32, brain in [-1, 1],
background -1), ``seg.nii.gz`` (uint8) and ``brainmask.nii.gz`` (uint8, the
warped mask when the mass effect is on) on the healthy scan's grid and header
(docs/architecture.md), written by the same case-folder writer as CarveMix
(``tumorfab.casefolder.save_case``). ``manifest.csv`` has
one row per case in generation order, ``case_id`` first, then the provenance
(:func:`manifest_columns`); list-valued columns are JSON. With several
channels it has ``healthy_channels``, the channels that came from the healthy
scan (the others are fills); with one there is nothing to say (the one
channel is the healthy scan's: a fill needs t1n configured beside it), and the
manifest keeps the columns of the paper's T1-only study. The manifest is
written and checked by ``tumorfab.synthesis.manifest.write_manifest``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from tumorfab.casefolder import Case, channels_in, load_case, save_case
from tumorfab.io import atomic_directory, load_nifti
from tumorfab.labels import LABEL_KEYS
from tumorfab.synthesis.manifest import synthetic_case_id, write_manifest
from tumorfab.synthesis.tfaug import mass_effect as me
from tumorfab.synthesis.tfaug.blend import augment_roi, smooth_noise
from tumorfab.synthesis.tfaug.controls import LocationRule, draw_appearance, draw_count
from tumorfab.synthesis.tfaug.fill import fill_missing, healthy_channels
from tumorfab.synthesis.tfaug.intensity_fit import load_intensity, load_reference_quantiles
from tumorfab.synthesis.tfaug.masks import MaskBank, equivalent_radius_mm, given_lesions, place_lesions
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
#: The column naming a case's channels that came from its healthy scan (several channels only).
HEALTHY_CHANNELS = "healthy_channels"


def manifest_columns(modalities: Sequence[str]) -> list[str]:
    """The manifest's columns: :data:`MANIFEST_COLUMNS`, with :data:`HEALTHY_CHANNELS`
    after ``healthy_subject`` when there are several channels (see the module docstring)."""
    if len(modalities) == 1:
        return list(MANIFEST_COLUMNS)
    at = MANIFEST_COLUMNS.index("healthy_subject") + 1
    return [*MANIFEST_COLUMNS[:at], HEALTHY_CHANNELS, *MANIFEST_COLUMNS[at:]]


@dataclass(frozen=True)
class CaseRecipe:
    """Everything a case depends on besides its index: the settings, the fitted
    (a, b) (rows: ``modalities``; a channel no healthy scan has is NaN, never
    used) and the fill's reference quantiles of the channels a healthy scan may lack."""

    tfaug: TFAugSettings
    modalities: tuple[str, ...]
    a: np.ndarray  # [C, 3]
    b: np.ndarray
    seed: int
    reference_quantiles: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: The user's own label maps (fabricated cohorts): case i takes map i, cycling.
    given_masks: tuple[str, ...] = ()


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
    present = channels_in(healthy[subject], recipe.modalities)
    present_rows = [recipe.modalities.index(m) for m in present]  # of a and b
    healthy_case = load_case(healthy[subject], present, with_seg=False)
    images, brain = healthy_case.stacked(present), healthy_case.brainmask > 0
    grid = bank.grid
    grid.check_same(brain.shape, healthy_case.affine, str(healthy[subject]))

    controls = settings.controls
    needs_image = controls.location.mode == "tissue"
    rule = LocationRule(controls.location, grid, brain, images[0] if needs_image else None, settings.masks.shift_mm)
    if recipe.given_masks:
        mask_file = Path(recipe.given_masks[index % len(recipe.given_masks)])
        given = load_nifti(mask_file)
        grid.check_same(given.shape, given.affine, str(mask_file))
        placed = given_lesions(np.asarray(given.dataobj), brain, grid, mask_file.name)
    else:
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
    a, b = recipe.a[present_rows], recipe.b[present_rows]
    image = augment_roi(images, brain, labels, a, b, settings.blur_sigma, offsets, texture, lesions, placed.boxes)
    images = fill_missing(dict(zip(present, image)), brain, recipe.modalities, recipe.reference_quantiles)

    row = {
        "case_id": synthetic_case_id("tfaug", index),
        "healthy_subject": subject,
        **({HEALTHY_CHANNELS: json.dumps(present)} if len(recipe.modalities) > 1 else {}),
        "n_lesions": len(placed.records),
        "source_cases": ";".join(c["source"] for r in placed.records for c in r["components"]),
        "lesions": json.dumps(placed.records),
        "volume_ml": round(float((labels > 0).sum()) * grid.voxel_ml, 4),
        "a": json.dumps({m: _subregions(np.r_[0, recipe.a[c]]) for c, m in zip(present_rows, present)}),
        "b": json.dumps({m: _subregions(np.r_[0, recipe.b[c]]) for c, m in zip(present_rows, present)}),
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
    given_masks: Sequence[str | os.PathLike] = (),
) -> pd.DataFrame:
    """The ``generate_tfaug`` rule: ``n_cases`` coarse pairs and their manifest.

    ``real_case_dirs``: the real *training* case folders (their ``seg.nii.gz``
    is the mask bank); ``healthy_case_dirs``: preprocessed healthy case
    folders (subject id = folder name; drawn from in sorted order, so the
    order given does not matter), each with the configured channels the
    subject has (``casefolder.channels_in``). ``given_masks``: the user's own
    label maps on the real cases' grid, placed as given instead of drawn
    (``masks.given_lesions``; case i takes map i, cycling; fabricated cohorts).
    ``out_dir`` is written as a whole: built in
    a hidden temporary folder beside it and renamed into place, so a killed
    job leaves no partial set; the manifest is written after it.
    """
    if n_cases < 0:
        raise ValueError(f"n_cases must be >= 0, got {n_cases}")
    healthy = {Path(d).name: Path(d) for d in sorted(healthy_case_dirs, key=lambda d: Path(d).name)}
    if not healthy:
        raise ValueError("TF-Aug needs at least one healthy case folder")
    present = healthy_channels(list(healthy.values()), modalities)
    synthesized = [m for m in modalities if any(m in channels for channels in present)]
    filled = [m for m in modalities if any(m not in channels for channels in present)]
    fitted_a, fitted_b = load_intensity(intensity_json, synthesized)
    a = np.full((len(modalities), 3), np.nan, dtype=np.float32)
    b = np.full((len(modalities), 3), np.nan, dtype=np.float32)
    a[[modalities.index(m) for m in synthesized]] = fitted_a
    b[[modalities.index(m) for m in synthesized]] = fitted_b
    quantiles = load_reference_quantiles(intensity_json, filled)
    recipe = CaseRecipe(settings, tuple(modalities), a, b, int(seed), quantiles, tuple(str(p) for p in given_masks))
    bank = MaskBank.from_case_dirs(real_case_dirs)
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
    return write_manifest(rows, manifest_columns(modalities), manifest_path, "tfaug")
