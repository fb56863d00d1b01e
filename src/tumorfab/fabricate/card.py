"""A fabricated cohort's card: what made it, and whether its cases obey the controls asked of them.

A cohort (``fabricate.cohorts.<name>``) is a set of synthetic case folders made by
one generator with TF-Aug's lesion controls (``tumorfab.synthesis.tfaug.controls``).
Its card says what made it (the source, the config slice, the sha256 of the
models, the command that remakes it, each case's provenance from the manifest)
and measures every case's lesions from its ``seg.nii.gz`` to check them
against the controls requested: :func:`measure_lesions`,
:func:`check_controls`, :func:`write_card` (``card.json``, ``card.md``, a
histogram figure and a mosaic).

What we chose (not in the papers):

* **Which voxels make a lesion.** TF-Aug keeps the lesions of a case apart
  (never 26-touching), but a lesion drawn from a real mask with satellites
  is several connected components. Where the manifest records the lesions
  (TF-Aug's ``lesions`` column: each lesion's centroid where it was placed),
  each connected component of ``seg > 0`` joins the recorded lesion whose
  placed centroid is nearest to its own; without such records (CarveMix,
  TF, Pix2Pix), each connected component is a lesion.
* **The same definitions as the controls.** Volume and world coordinates
  come from the case's affine through ``masks.Grid`` (what ``place_lesions``
  measures with); hemisphere and tissue are those of the voxel at the
  rounded centroid, in ``controls.hemisphere_mask`` and
  ``controls.tissue_classes`` of the healthy scan (``LocationRule.accepts``),
  whose brain mask and T1 are read from its case folder when given. Without
  it the hemisphere uses the case's own brain mask (the healthy scan's
  without the mass effect, its warped copy with it) and tissue is not
  measured.
* **Tolerances** (:data:`AFFINE_ATOL_MM`, :data:`MANIFEST_ROUNDING_ML`).
  ``place_lesions`` checks size and location on the final, brain-clipped
  lesion, on the real cases' grid, so the check has two sources of slack
  only:

  - the case carries its healthy scan's affine, which ``Grid.check_same``
    lets differ from the real cases' grid by up to 1e-3 per element: a
    voxel's side by up to √3·1e-3 mm (volume tolerance: the sum over axes of
    √3·1e-3/side, relative) and a world point by up to √3·1e-3·(Σ|index| + 1)
    mm (coordinates tolerance); hemisphere and tissue are judged on voxel
    indices and need none;
  - the mass effect, after placement, drops lesion voxels that fall outside
    the warped brain mask (``generate``, step 3; rare, as the warp pushes the
    brain's edge outward around a lesion). Where the manifest's record shows
    such a loss (placed volume above the measured one by more than the
    record's rounding), the size's lower bound is lowered by the volume
    lost and the coordinates' radius raised by how far the centroid moved:
    what ``place_lesions`` guaranteed holds before the warp. Hemisphere and
    tissue get no such slack: a centroid moved across the midline or out of
    its tissue is reported.

* **What is not checked here**: the intensity controls (offset,
  heterogeneity) are drawn per case and recorded in the manifest, not
  measured from the images; ``n_lesions`` of a source without per-lesion
  records counts connected components, which a real mask's satellites
  raise (the reason says so).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from scipy import ndimage

from tumorfab.casefolder import BRAINMASK, FILE_ENDING, SEG, case_file, read_brainmask, read_image, read_seg
from tumorfab.demo.cohort import BRATS_CHANNELS
from tumorfab.io import save_text
from tumorfab.report.figures import _save, plot_mosaic
from tumorfab.report.realism import realism_markdown
from tumorfab.report.tables import _md_cell
from tumorfab.synthesis import source_label
from tumorfab.synthesis.manifest import read_manifest
from tumorfab.synthesis.tfaug.controls import hemisphere_mask, tissue_classes
from tumorfab.synthesis.tfaug.masks import CONNECTIVITY, Grid
from tumorfab.synthesis.tfaug.settings import TISSUES, LocationSpec, parse_range

#: Largest difference per affine element ``Grid.check_same`` lets a healthy scan have from the real cases' grid.
AFFINE_ATOL_MM = 1e-3
#: Half the last digit of the volumes the TF-Aug manifest records (rounded to 4 decimals).
MANIFEST_ROUNDING_ML = 5e-5
#: The controls measured from the label map, in the card's column order.
CHECKED_CONTROLS = ("n_lesions", "size_ml", "location")
#: Where a centroid voxel lies outside the brain mask (no hemisphere, no tissue).
OUTSIDE_BRAIN = "outside_brain"
#: The healthy scan's channel the tissue control classifies (its T1).
TISSUE_CHANNEL = "t1n"
#: Cases shown in the card's mosaic.
MOSAIC_CASES = 4
#: File names of the card's figures inside ``figures_dir``.
HISTOGRAM_PNG = "lesion_histograms.png"
MOSAIC_PNG = "mosaic.png"
_TISSUE_NAMES = {value: name for name, value in TISSUES.items()}


# --- Measuring ------------------------------------------------------------------------------
def _lesion_records(manifest_row: Mapping | pd.Series | None) -> list[dict]:
    """The manifest's per-lesion records (TF-Aug's ``lesions`` column), or [] when it has none."""
    if manifest_row is None:
        return []
    records = manifest_row.get("lesions")
    if isinstance(records, str):
        records = json.loads(records)
    return list(records) if isinstance(records, list) else []


def _location_maps(case_dir: Path, healthy_case_dir: str | os.PathLike | None, grid: Grid):
    """Left and right hemisphere masks and the tissue classes (None without a healthy T1)."""
    brain_dir = case_dir if healthy_case_dir is None else Path(healthy_case_dir)
    brain, image = read_brainmask(brain_dir)
    brain = brain > 0
    grid.check_same(brain.shape, image.affine, str(case_file(brain_dir, BRAINMASK)))
    sides = {side: hemisphere_mask(brain, grid, side) for side in ("left", "right")}
    classes = None
    if healthy_case_dir is not None and case_file(healthy_case_dir, TISSUE_CHANNEL).is_file():
        t1 = read_image(healthy_case_dir, TISSUE_CHANNEL).get_fdata(dtype=np.float32)
        classes = tissue_classes(t1, brain)
    return sides, classes


def measure_lesions(
    case_dir: str | os.PathLike,
    manifest_row: Mapping | pd.Series | None = None,
    healthy_case_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """Each lesion of a case as measured from its ``seg.nii.gz`` (see the module docstring).

    ``manifest_row``: the case's manifest row (a mapping or a ``pandas``
    row); its ``lesions`` records, when the source writes them, say which
    components make one lesion. ``healthy_case_dir``: the healthy scan the
    case was made from (hemisphere and tissue as the controls define them).

    One dict per lesion, in the manifest's order (else the components'):
    ``lesion`` (1-based), ``n_lesions`` (the case's count), ``volume_ml``,
    ``centroid_vox``, ``centroid_mm`` (world, RAS), ``hemisphere`` (``left``,
    ``right`` or :data:`OUTSIDE_BRAIN`), ``tissue`` (``csf``, ``gm``, ``wm``,
    :data:`OUTSIDE_BRAIN`, or None when not measured), ``spacing_mm``,
    ``identified_by`` (``manifest`` or ``components``), ``placed_volume_ml`` and
    ``placed_centroid_mm`` (the manifest's record, else None),
    ``lost_after_placement_ml`` and ``moved_after_placement_mm`` (what the
    mass effect took, 0 when nothing). A recorded lesion with no voxel left
    is not a lesion of the case.
    """
    case_dir = Path(case_dir)
    seg, image = read_seg(case_dir)
    grid = Grid(tuple(int(n) for n in seg.shape), np.asarray(image.affine))
    sides, classes = _location_maps(case_dir, healthy_case_dir, grid)
    components, n_components = ndimage.label(seg > 0, CONNECTIVITY)
    index = np.arange(1, n_components + 1)
    sizes = np.bincount(components.ravel(), minlength=n_components + 1)[1:].astype(np.float64)
    centres = np.asarray(ndimage.center_of_mass(seg > 0, components, index), dtype=np.float64).reshape(-1, 3)

    records = _lesion_records(manifest_row)
    if records:
        placed = np.asarray([r["centroid_mm"] for r in records], dtype=np.float64)
        distance = np.linalg.norm(grid.to_world(centres)[:, None, :] - placed[None], axis=2)
        owner = np.argmin(distance, axis=1) if n_components else np.zeros(0, dtype=int)
        groups = [np.flatnonzero(owner == k) for k in range(len(records))]
    else:
        groups = [np.array([k]) for k in range(n_components)]

    lesions = []
    for number, group in enumerate(groups):
        if len(group) == 0:
            continue
        count = float(sizes[group].sum())
        centroid = (centres[group] * sizes[group, None]).sum(axis=0) / count
        centroid_mm = grid.to_world(centroid)
        voxel = tuple(int(v) for v in np.clip(np.rint(centroid), 0, np.asarray(seg.shape) - 1))
        hemisphere = next((side for side, mask in sides.items() if mask[voxel]), OUTSIDE_BRAIN)
        tissue = None if classes is None else _TISSUE_NAMES.get(int(classes[voxel]), OUTSIDE_BRAIN)
        volume_ml = count * grid.voxel_ml
        record = records[number] if records else None
        placed_volume = None if record is None else float(record["volume_ml"])
        placed_centroid = None if record is None else [float(v) for v in record["centroid_mm"]]
        lost, moved = 0.0, 0.0
        if placed_volume is not None and placed_volume - volume_ml > MANIFEST_ROUNDING_ML:
            lost = placed_volume - volume_ml
            moved = float(np.linalg.norm(centroid_mm - np.asarray(placed_centroid)))
        lesions.append(
            {
                "lesion": number + 1,
                "volume_ml": volume_ml,
                "centroid_vox": [float(v) for v in centroid],
                "centroid_mm": [float(v) for v in centroid_mm],
                "hemisphere": hemisphere,
                "tissue": tissue,
                "spacing_mm": [float(s) for s in grid.spacing],
                "identified_by": "manifest" if records else "components",
                "placed_volume_ml": placed_volume,
                "placed_centroid_mm": placed_centroid,
                "lost_after_placement_ml": lost,
                "moved_after_placement_mm": moved,
            }
        )
    for lesion in lesions:
        lesion["n_lesions"] = len(lesions)
    return lesions


# --- Checking -------------------------------------------------------------------------------
def _volume_tolerance_ml(lesion: Mapping) -> float:
    """Slack of a lesion's volume from the affine difference ``Grid.check_same`` allows."""
    relative = sum(math.sqrt(3.0) * AFFINE_ATOL_MM / s for s in lesion["spacing_mm"])
    return relative * float(lesion["volume_ml"])


def _coordinates_tolerance_mm(lesion: Mapping) -> float:
    """Slack of a lesion's world centroid from the affine difference ``Grid.check_same`` allows."""
    return math.sqrt(3.0) * AFFINE_ATOL_MM * (sum(abs(v) for v in lesion["centroid_vox"]) + 1.0)


def _result(requested, measured, failures: Sequence[str]) -> dict:
    return {
        "requested": requested,
        "measured": measured,
        "holds": not failures,
        "reason": "; ".join(failures) or None,
    }


def _check_count(measured: Sequence[Mapping], requested) -> dict:
    low, high = (int(v) for v in parse_range(requested, "n_lesions"))
    count = len(measured)
    failures = []
    if not low <= count <= high:
        failures.append(f"{count} lesions, outside [{low}, {high}]")
        if measured and measured[0]["identified_by"] == "components":
            failures.append("counted as connected components: the manifest has no per-lesion record")
    return _result([low, high], count, failures)


def _check_size(measured: Sequence[Mapping], requested) -> dict:
    low, high = parse_range(requested, "size_ml")
    failures = []
    for lesion in measured:
        volume, slack = float(lesion["volume_ml"]), _volume_tolerance_ml(lesion)
        lost = float(lesion["lost_after_placement_ml"])
        if volume < low - slack - lost:
            failures.append(f"lesion {lesion['lesion']}: {volume:.4g} ml below the minimum {low:g} ml")
        elif volume > high + slack:
            failures.append(f"lesion {lesion['lesion']}: {volume:.4g} ml above the maximum {high:g} ml")
    return _result([low, high], [float(lesion["volume_ml"]) for lesion in measured], failures)


def _check_location(measured: Sequence[Mapping], requested: Mapping) -> dict:
    spec = LocationSpec.from_config(requested)
    failures, values = [], []
    for lesion in measured:
        name = f"lesion {lesion['lesion']}"
        if spec.mode == "coordinates":
            distance = float(np.linalg.norm(np.asarray(lesion["centroid_mm"]) - np.asarray(spec.center_mm)))
            values.append(distance)
            limit = spec.radius_mm + _coordinates_tolerance_mm(lesion) + float(lesion["moved_after_placement_mm"])
            if distance > limit:
                failures.append(
                    f"{name}: centroid {distance:.3g} mm from center_mm, beyond radius_mm {spec.radius_mm:g}"
                )
        elif spec.mode == "hemisphere":
            values.append(lesion["hemisphere"])
            if lesion["hemisphere"] != spec.side:
                where = f"in the {lesion['hemisphere']} hemisphere"
                if lesion["hemisphere"] == OUTSIDE_BRAIN:
                    where = "outside the brain mask"
                failures.append(f"{name}: centroid {where}, not in the {spec.side} one")
        elif spec.mode == "tissue":
            values.append(lesion["tissue"])
            if lesion["tissue"] is None:
                failures.append(f"{name}: tissue not measured (no healthy T1 given)")
            elif lesion["tissue"] != spec.tissue:
                where = "outside the brain mask" if lesion["tissue"] == OUTSIDE_BRAIN else f"in {lesion['tissue']}"
                failures.append(f"{name}: centroid {where}, not in {spec.tissue}")
    return _result(spec.record(), values, failures)


def check_controls(measured: Sequence[Mapping], controls: Mapping) -> dict:
    """Whether one case's measured lesions (:func:`measure_lesions`) obey ``controls``.

    ``controls``: ``tfaug.controls``-like keys; ``n_lesions`` (a number or
    ``[low, high]``), ``size_ml`` (``[min, max]`` per lesion; null: none) and
    ``location`` (mode ``any`` asks nothing) are checked, with the
    tolerances of the module docstring; other keys (the intensity controls)
    are not measured. Returns ``{"within": bool, "checks": {control:
    {"requested", "measured", "holds", "reason"}}}`` for each control checked
    (reason None when it holds); ``within`` is True when every check holds.
    """
    checks = {}
    if controls.get("n_lesions") is not None:
        checks["n_lesions"] = _check_count(measured, controls["n_lesions"])
    if controls.get("size_ml") is not None:
        checks["size_ml"] = _check_size(measured, controls["size_ml"])
    location = controls.get("location")
    if location is not None and location.get("mode") != "any":
        checks["location"] = _check_location(measured, location)
    return {"within": all(check["holds"] for check in checks.values()), "checks": checks}


# --- The card -------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (as the GAN manifests record ``generator_sha256``); of a
    folder, over its files' relative paths and bytes in sorted order."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _plain(value):
    """``value`` as JSON: numpy scalars as Python numbers, NaN as None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _provenance(row: pd.Series) -> dict:
    """A manifest row as JSON, its JSON columns (lists, records) parsed."""
    provenance = {}
    for column, value in row.items():
        if isinstance(value, str) and value[:1] in "[{":
            value = json.loads(value)
        provenance[column] = _plain(value)
    return provenance


def _controls_checked(source: str, cohort: Mapping) -> dict:
    """The controls a cohort's cases must obey: none for CarveMix or the user's own masks."""
    if source == "carvemix" or cohort.get("masks_dir"):
        return {}
    controls = cohort.get("controls") or {}
    return {key: controls[key] for key in CHECKED_CONTROLS if key in controls}


def _channels(case_dir: Path) -> list[str]:
    """The image channels of a case folder, BraTS channels first in their order."""
    names = {p.name[: -len(FILE_ENDING)] for p in case_dir.glob(f"*{FILE_ENDING}")} - {SEG, BRAINMASK}
    order = {c: i for i, c in enumerate(BRATS_CHANNELS)}
    return sorted(names, key=lambda c: (order.get(c, len(order)), c))


def _plot_lesion_histograms(
    cases: Sequence[Mapping], controls: Mapping, out_png: str | os.PathLike, title: str
) -> None:
    """Histograms of the measured lesion volumes and lesion counts, with the requested ranges shaded."""
    volumes = [lesion["volume_ml"] for case in cases for lesion in case["measured"]]
    counts = [len(case["measured"]) for case in cases]
    figure = Figure(figsize=(9.0, 3.4), layout="constrained")
    volume_ax, count_ax = figure.subplots(1, 2)
    volume_ax.hist(volumes, bins=min(max(len(volumes), 1), 20), color="C0", edgecolor="black", linewidth=0.5)
    volume_ax.set_xlabel("lesion volume (ml)")
    volume_ax.set_ylabel("lesions")
    if controls.get("size_ml") is not None:
        volume_ax.axvspan(*parse_range(controls["size_ml"], "size_ml"), color="C2", alpha=0.15, label="requested")
        volume_ax.legend(fontsize="small")
    shown = list(counts)
    if controls.get("n_lesions") is not None:
        low, high = (int(v) for v in parse_range(controls["n_lesions"], "n_lesions"))
        count_ax.axvspan(low - 0.5, high + 0.5, color="C2", alpha=0.15, label="requested")
        count_ax.legend(fontsize="small")
        shown += [low, high]
    ticks = np.arange(min(shown, default=0), max(shown, default=0) + 1)
    count_ax.hist(counts, bins=np.append(ticks, ticks[-1] + 1) - 0.5, color="C1", edgecolor="black", linewidth=0.5)
    count_ax.set_xticks(ticks)
    count_ax.set_xlabel("lesions per case")
    count_ax.set_ylabel("cases")
    figure.suptitle(f"{title}: measured lesions of {len(cases)} cases")
    _save(figure, out_png)


def _percent(n: int, of: int) -> str:
    return f"{100.0 * n / of:.0f} %" if of else "n/a"


def _requested_cell(control: str, value) -> str:
    if control == "location":
        return " ".join(str(v) for v in LocationSpec.from_config(value).record().values())
    if control == "n_lesions":
        return str([int(v) for v in parse_range(value, control)])
    return f"{list(parse_range(value, control))} ml"


def _measured_location(case: Mapping, controls: Mapping) -> str:
    spec = LocationSpec.from_config(controls.get("location") or {"mode": "any"})
    if spec.mode == "coordinates":
        return ", ".join(f"{d:.3g} mm" for d in case["check"]["checks"]["location"]["measured"])
    if spec.mode == "tissue":
        return ", ".join(str(lesion["tissue"]) for lesion in case["measured"])
    return ", ".join(lesion["hemisphere"] for lesion in case["measured"])


def _card_markdown(card: Mapping, out_md: str | os.PathLike, realism: pd.DataFrame | None) -> str:
    """``card.md``: the card (:func:`write_card`'s dict) as Markdown; figures linked relative to ``out_md``."""
    controls = card["controls"]
    summary = card["within_controls"]
    location_title = "location" if "location" in controls else "hemisphere"
    if "location" in controls and LocationSpec.from_config(controls["location"]).mode == "coordinates":
        location_title = "distance to center_mm"
    lines = [
        f"# Cohort card: {card['name']}",
        "",
        f"- Source: {source_label(card['source'])} (`{card['source']}`), {card['n_cases']} cases",
        f"- Remake: `{card['command']}`",
        "",
        "## Models",
        "",
        "| Model | File | sha256 |",
        "| --- | --- | --- |",
        *(f"| {_md_cell(n)} | `{m['path']}` | `{m['sha256']}` |" for n, m in card["models"].items()),
        "",
        "## Configuration",
        "",
        "```yaml",
        yaml.safe_dump(card["config"], sort_keys=False).rstrip(),
        "```",
        "",
        "## Requested vs measured",
        "",
        f"{summary['n']} of {summary['of']} cases ({_percent(summary['n'], summary['of'])}) within their controls"
        + ("" if controls else " (no lesion control applies to this cohort)"),
        "",
        "| Case | Healthy subject | Lesions | Volumes (ml) | " + location_title.capitalize() + " | Within | Reason |",
        "| --- | --- | ---: | --- | --- | --- | --- |",
        "| *requested* | | "
        + " | ".join(_requested_cell(c, controls[c]) if c in controls else "" for c in CHECKED_CONTROLS)
        + " | | |",
    ]
    for case in card["cases"]:
        reasons = [check["reason"] for check in case["check"]["checks"].values() if check["reason"]]
        cells = [
            case["case_id"],
            str(case["provenance"].get("healthy_subject") or ""),
            str(len(case["measured"])),
            ", ".join(f"{lesion['volume_ml']:.3g}" for lesion in case["measured"]),
            _measured_location(case, controls),
            "yes" if case["check"]["within"] else "**no**",
            "; ".join(reasons),
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines += [
        "",
        "Tolerances: the affine difference a healthy scan may have from the real cases' grid "
        f"({AFFINE_ATOL_MM:g} per element, as TF-Aug's grid check); the volume the mass effect "
        "dropped after placement (lowers the size's minimum) and how far it moved the centroid "
        "(raises the coordinates' radius). Hemisphere and tissue: the voxel at the rounded "
        "centroid, in the healthy scan's maps. Intensity controls are recorded, not measured.",
        "",
        "## Figures",
        "",
    ]
    base = Path(out_md).parent
    for title, path in card["figures"].items():
        lines.append(f"![{title}]({os.path.relpath(path, base)})")
    lines.append("")
    if realism is not None:
        lines.append(realism_markdown(realism, "Realism"))
    return "\n".join(lines) + "\n"


def write_card(
    name: str,
    cohort: Mapping,
    source: str,
    manifest_path: str | os.PathLike,
    cases_dir: str | os.PathLike,
    models: Mapping[str, str | os.PathLike],
    command: str,
    realism: pd.DataFrame | None,
    out_md: str | os.PathLike,
    out_json: str | os.PathLike,
    figures_dir: str | os.PathLike,
    healthy_case_dirs: Mapping[str, str | os.PathLike] = {},
    layout_manifest_path: str | os.PathLike | None = None,
) -> dict:
    """Write a cohort's card: ``out_json``, ``out_md`` and the figures in ``figures_dir``.

    ``cohort``: the cohort's config slice (recorded as given; its
    ``controls`` are checked, except for CarveMix and ``masks_dir`` cohorts,
    which they do not apply to); ``source``: the generator's registry name;
    ``manifest_path``/``cases_dir``: the cohort's manifest and case folders;
    ``models``: name -> file (or folder) the cases were made with, recorded
    with their sha256; ``command``: what remakes the cohort; ``realism``: the
    cohort's rows of the realism table (``report.realism``), or None;
    ``healthy_case_dirs``: healthy subject -> its case folder, for the
    location controls' maps (:func:`measure_lesions`);
    ``layout_manifest_path``: for a tf or pix2pix cohort, the manifest of the
    TF-Aug cases its cases were made from, row for row: their lesion
    records and healthy subjects, which the GAN's own manifest does not
    repeat (its case i is TF-Aug's case i).

    Returns the card as written to ``card.json``: ``name``, ``source``,
    ``n_cases``, ``command``, ``config``, ``models`` ({name: {path, sha256}}),
    ``controls`` (those checked), ``tolerances``, ``cases`` (per case: ``case_id``,
    ``provenance`` (its manifest row, JSON columns parsed), ``measured``,
    ``check``), ``within_controls`` ({n, of, fraction}), ``realism`` (rows or
    None) and ``figures`` (name -> PNG path).
    """
    manifest = read_manifest(manifest_path)
    layouts = None if layout_manifest_path is None else read_manifest(layout_manifest_path)
    if layouts is not None and len(layouts) != len(manifest):
        raise ValueError(
            f"{layout_manifest_path}: {len(layouts)} rows, but {manifest_path} has {len(manifest)}: "
            "the TF-Aug cases a GAN cohort was made from go row for row with its own"
        )
    cases_dir, figures_dir = Path(cases_dir), Path(figures_dir)
    controls = _controls_checked(source, cohort)
    cases = []
    for position, (_, row) in enumerate(manifest.iterrows()):
        placed = row if layouts is None else layouts.iloc[position]
        subject = placed.get("healthy_subject")
        healthy = healthy_case_dirs.get(subject) if isinstance(subject, str) else None
        measured = measure_lesions(cases_dir / row["case_id"], placed, healthy)
        cases.append(
            {
                "case_id": row["case_id"],
                # A GAN cohort's case: TF-Aug's record (healthy subject, masks, draws), then the GAN's.
                "provenance": _provenance(row) if layouts is None else {**_provenance(placed), **_provenance(row)},
                "measured": measured,
                "check": check_controls(measured, controls),
            }
        )
    within = sum(case["check"]["within"] for case in cases)
    figures = {"lesion histograms": str(figures_dir / HISTOGRAM_PNG), "mosaic": str(figures_dir / MOSAIC_PNG)}
    _plot_lesion_histograms(cases, controls, figures["lesion histograms"], name)
    channels = _channels(cases_dir / cases[0]["case_id"]) if cases else []
    plot_mosaic(cases_dir, manifest_path, figures["mosaic"], channels or [TISSUE_CHANNEL], MOSAIC_CASES, title=name)
    card = _plain(
        {
            "name": name,
            "source": source,
            "n_cases": len(cases),
            "command": command,
            "config": cohort,
            "models": {n: {"path": str(p), "sha256": file_sha256(p)} for n, p in models.items()},
            "controls": controls,
            "tolerances": {
                "affine_atol_mm": AFFINE_ATOL_MM,
                "size_ml": "sum over axes of sqrt(3)*affine_atol/voxel side, relative; "
                "minus the volume the mass effect dropped after placement",
                "coordinates_mm": "sqrt(3)*affine_atol*(sum |centroid index| + 1); "
                "plus how far the mass effect moved the centroid",
                "hemisphere_tissue": "none: the voxel at the rounded centroid",
            },
            "cases": cases,
            "within_controls": {"n": within, "of": len(cases), "fraction": within / len(cases) if cases else None},
            "realism": None if realism is None else realism.to_dict(orient="records"),
            "figures": figures,
        }
    )
    save_text(json.dumps(card, indent=2, allow_nan=False) + "\n", out_json)
    save_text(_card_markdown(card, out_md, realism), out_md)
    return card
