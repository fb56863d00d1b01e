"""TF-Aug's synthetic masks m_s: a bank of real masks, their augmentation and placement.

Paper 002 §2.1: "we augment the real tumor segmentation mask m_r through
conventional data augmentation, including scaling, shifting, and combining
multiple masks to generate variations m_s. Each augmented synthetic mask m_s
is randomly paired with a healthy brain MRI scan x_h, and any mask regions that
fall into the background area are discarded".

What we do, and what we chose where the paper is silent:

* **Bank** (:class:`MaskBank`): the label maps (``seg.nii.gz``) of the real
  *training* cases only, each kept as its bounding-box crop (a few MB for 100
  BraTS cases instead of ~1 GB of full volumes), with its position and
  whole-tumour centroid on the common grid. Cases without a lesion are left out.
* **One lesion** is one real mask, or with probability ``combine_prob`` the
  union of 2..``combine_max`` masks ("combining multiple masks"): each further
  mask is centred on a random voxel of the lesion drawn so far, so the parts
  overlap and form one lesion of a new shape. Where they overlap, the label of
  the inner structure wins: NCR (1) over ET (3) over ED (2) (the core lies
  inside the edema; a maximum of label values would let ET overwrite NCR).
* **Augmentation** of each mask (:class:`Component`): isotropic scaling
  (factor uniform in ``scale``), rotation about each axis (uniform in
  ±``rotation_deg``; the paper's "conventional augmentation, including ..."
  names scaling, shifting and combining, we add rotation and a left-right
  mirror of the shape, ``flip_prob``), resampled with nearest-neighbour
  interpolation by ``monai.transforms.Affine``. Rotations are built in mm
  (``S⁻¹ R S`` with the voxel spacing ``S``), so a non-isotropic grid is not
  sheared.
* **Shifting / placement**: the lesion's whole-tumour centroid is put at a
  target drawn by the location control (``tumorfab.synthesis.tfaug.controls``). The
  paper's reading (``mode: any``) is the source mask's own centroid on the
  common grid plus a shift uniform in ±``shift_mm`` per axis: the healthy
  scans are registered to that grid, so a real tumour's position is a
  plausible one.
* **Background discarded, or re-drawn**: voxels outside the healthy scan's
  brain mask are dropped; a lesion that loses more than
  ``max_outside_fraction`` of its voxels (inside or beyond the grid) is
  re-drawn, not kept. Also re-drawn: a lesion out of the size range, one whose
  centroid breaks the location constraint, one that would touch an earlier
  lesion of the same case (lesions of one case stay separate connected
  components). After ``max_tries`` failed draws the case fails with the counts
  of each reason.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from monai.transforms import Affine
from scipy import ndimage
from scipy.spatial.transform import Rotation

from tumorfab.casefolder import read_seg
from tumorfab.labels import ED, ET, LABELS, NCR
from tumorfab.synthesis.tfaug.settings import MaskAugmentation

log = logging.getLogger(__name__)

#: Where masks overlap the inner structure wins: NCR over ET over ED (lowest first).
_PRECEDENCE = (ED, ET, NCR)
#: Rank of each label value (higher wins; background 0), and the label of each rank.
_RANK = np.zeros(len(LABELS), dtype=np.uint8)
_RANK[list(_PRECEDENCE)] = np.arange(1, len(_PRECEDENCE) + 1)
_LABEL_OF_RANK = np.array([0, *_PRECEDENCE], dtype=np.uint8)
#: 26-connectivity, the adjacency used to keep lesions apart and to count them.
CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


# --- Grid ---------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """The common voxel grid of real and healthy cases (shape and affine)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (mm) along each array axis."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def lr_axis(self) -> int:
        """The array axis closest to world x (left-right, RAS)."""
        return int(np.argmax(np.abs(self.affine[0, :3])))

    def to_world(self, index: np.ndarray) -> np.ndarray:
        """World (mm) coordinates of voxel indices ``(..., 3)``."""
        index = np.asarray(index, dtype=np.float64)
        return index @ self.affine[:3, :3].T + self.affine[:3, 3]

    def to_index(self, world: np.ndarray) -> np.ndarray:
        """Voxel indices (float) of world coordinates ``(..., 3)``."""
        inverse = np.linalg.inv(self.affine)
        world = np.asarray(world, dtype=np.float64)
        return world @ inverse[:3, :3].T + inverse[:3, 3]

    def check_same(self, shape: Sequence[int], affine: np.ndarray, what: str) -> None:
        """Raise naming ``what`` unless it lies on this grid (shape, affine within 1e-3)."""
        if tuple(shape) != tuple(self.shape) or not np.allclose(affine, self.affine, atol=1e-3):
            raise ValueError(
                f"{what}: grid {tuple(shape)} differs from the real cases' grid {self.shape} "
                "(shape or affine); TF-Aug needs healthy scans and real cases on one grid"
            )


# --- Bank -----------------------------------------------------------------------
@dataclass(frozen=True)
class SourceMask:
    """A real training mask: its bounding-box crop and where it sits on the grid."""

    case_id: str
    crop: np.ndarray  # uint8 labels {0,1,2,3}, the mask's bounding box
    origin: tuple[int, int, int]  # grid index of crop[0, 0, 0]

    @property
    def centroid(self) -> np.ndarray:
        """Whole-tumour centroid (grid voxel index)."""
        return np.asarray(ndimage.center_of_mass(self.crop > 0)) + np.asarray(self.origin)


class MaskBank:
    """The real training cases' tumour masks, the only source of TF-Aug's shapes (§2.1)."""

    def __init__(self, masks: Sequence[SourceMask], grid: Grid):
        if not masks:
            raise ValueError("the TF-Aug mask bank is empty: no training case has a lesion")
        self.masks = list(masks)
        self.grid = grid

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> SourceMask:
        return self.masks[index]

    @classmethod
    def from_arrays(cls, cases: Iterable[tuple[str, np.ndarray, np.ndarray]]) -> MaskBank:
        """Bank of ``(case_id, labels, affine)`` triples, in the given order.

        All masks must share one grid; cases with an empty mask are skipped
        (logged). Label values other than 0-3 are an error naming the case.
        """
        masks, grid = [], None
        for case_id, seg, affine in cases:
            if grid is None:
                grid = Grid(tuple(int(n) for n in seg.shape), np.asarray(affine))
            else:
                grid.check_same(seg.shape, affine, case_id)
            seg = np.rint(np.asarray(seg)).astype(np.int16)
            if seg.min() < min(LABELS) or seg.max() > max(LABELS):
                raise ValueError(f"{case_id}: labels outside {set(LABELS)}")
            boxes = ndimage.find_objects((seg > 0).astype(np.uint8))
            if not boxes:
                log.info("mask bank: %s has no lesion, skipped", case_id)
                continue
            box = boxes[0]
            masks.append(SourceMask(case_id, seg[box].astype(np.uint8), tuple(int(s.start) for s in box)))
        if grid is None:
            raise ValueError("the TF-Aug mask bank needs at least one training case")
        return cls(masks, grid)

    @classmethod
    def from_case_dirs(cls, case_dirs: Sequence[str | os.PathLike]) -> MaskBank:
        """Bank of the ``seg.nii.gz`` of case folders (id = folder name), in the given order."""
        def read(case_dir):
            seg, image = read_seg(case_dir)
            return Path(case_dir).name, seg, image.affine

        # A generator: one full volume in memory at a time, only crops are kept.
        return cls.from_arrays(read(case_dir) for case_dir in case_dirs)


@dataclass(frozen=True)
class Component:
    """One real mask inside a lesion, with its augmentation.

    ``offset_vox`` is where its crop centre sits relative to the lesion's
    reference point (the first component's crop centre), before ``scale`` of
    the whole lesion (size control) is applied.
    """

    source: int
    scale: float
    angles_deg: tuple[float, float, float]
    flip: bool
    offset_vox: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def record(self, bank: MaskBank, lesion_scale: float) -> dict:
        """Provenance for the manifest (scale includes the size control's factor)."""
        return {
            "source": bank[self.source].case_id,
            "scale": round(self.scale * lesion_scale, 6),
            "angles_deg": [round(a, 4) for a in self.angles_deg],
            "flip": bool(self.flip),
            "offset_mm": [
                round(float(o * lesion_scale * s), 4)
                for o, s in zip(self.offset_vox, bank.grid.spacing)
            ],
        }


def draw_component(bank: MaskBank, rng: np.random.Generator, settings: MaskAugmentation) -> Component:
    """Draw a source mask and its scale, rotation and flip (5 draws from ``rng``)."""
    source = int(rng.integers(len(bank)))
    scale = float(rng.uniform(*settings.scale))
    angles = tuple(float(a) for a in rng.uniform(-settings.rotation_deg, settings.rotation_deg, 3))
    flip = bool(rng.random() < settings.flip_prob)
    return Component(source, scale, angles, flip)


def _linear_map(component: Component, grid: Grid, lesion_scale: float) -> np.ndarray:
    """3×3 voxel-space map of a component's crop: flip, rotation (in mm), scaling."""
    spacing = grid.spacing
    rotation = Rotation.from_euler("xyz", component.angles_deg, degrees=True).as_matrix()
    linear = np.diag(1.0 / spacing) @ rotation @ np.diag(spacing)
    flip = np.eye(3)
    if component.flip:
        flip[grid.lr_axis, grid.lr_axis] = -1.0
    return component.scale * lesion_scale * linear @ flip


def _resample(crop: np.ndarray, linear: np.ndarray, centre_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map ``crop`` by ``linear`` about its centre voxel onto the integer box that holds it.

    The crop's centre voxel (index ``(n - 1) // 2``, a voxel so that the
    identity map samples voxel centres exactly) lands at ``centre_out``
    (lesion frame, voxels; output voxels sit at integer lesion-frame
    coordinates). Returns the resampled labels and the lesion-frame index of
    their ``[0, 0, 0]``. Nearest-neighbour, by ``monai.transforms.Affine``,
    whose matrix maps centred output coordinates to centred input coordinates.
    """
    n = np.asarray(crop.shape, dtype=np.float64)
    k0 = np.floor((n - 1) / 2)
    corners = np.array(np.meshgrid(*[[-0.5 - k, m - 0.5 - k] for k, m in zip(k0, n)], indexing="ij")).reshape(3, -1)
    mapped = linear @ corners + centre_out[:, None]
    low = np.floor(mapped.min(axis=1)).astype(int)
    high = np.ceil(mapped.max(axis=1)).astype(int)
    size = high - low + 1
    inverse = np.linalg.inv(linear)
    matrix = np.eye(4)
    matrix[:3, :3] = inverse
    matrix[:3, 3] = inverse @ ((size - 1) / 2.0 + low - centre_out) + k0 - (n - 1) / 2.0
    out = Affine(affine=matrix, mode="nearest", padding_mode="zeros", image_only=True, dtype=torch.float32)(
        torch.from_numpy(crop[None].astype(np.float32)), spatial_size=tuple(int(v) for v in size)
    )
    return np.asarray(out)[0].round().astype(np.uint8), low


def _merge(canvas: np.ndarray, labels: np.ndarray, corner: np.ndarray) -> None:
    """Write ``labels`` into ``canvas`` at ``corner``; the higher-ranked label wins."""
    region = tuple(slice(int(c), int(c) + n) for c, n in zip(corner, labels.shape))
    canvas[region] = _LABEL_OF_RANK[np.maximum(_RANK[canvas[region]], _RANK[labels])]


def rasterize(
    bank: MaskBank, components: Sequence[Component], lesion_scale: float = 1.0, cache: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The lesion's labels on a tight local canvas, and the canvas index of its reference point.

    Every component is resampled about its own centre, placed at
    ``lesion_scale · offset_vox`` from the reference point, and merged with
    the NCR > ET > ED rule. ``cache`` (a dict) keeps resampled components
    between calls for the same lesion.
    """
    cache = {} if cache is None else cache
    parts = []
    for component in components:
        key = (component, lesion_scale)
        if key not in cache:
            linear = _linear_map(component, bank.grid, lesion_scale)
            centre = lesion_scale * np.asarray(component.offset_vox, dtype=np.float64)
            cache[key] = _resample(bank[component.source].crop, linear, centre)
        parts.append(cache[key])
    low = np.min([p[1] for p in parts], axis=0)
    high = np.max([p[1] + np.asarray(p[0].shape) for p in parts], axis=0)
    canvas = np.zeros(tuple(int(n) for n in high - low), dtype=np.uint8)
    for labels, corner in parts:
        _merge(canvas, labels, corner - low)
    return canvas, -low.astype(np.float64)


def draw_lesion_shape(
    bank: MaskBank, rng: np.random.Generator, settings: MaskAugmentation, cache: dict | None = None
) -> list[Component]:
    """One lesion's components: a mask, or the union of several ("combining", §2.1).

    Each further component is centred on a uniformly drawn voxel of the lesion
    rasterized so far, so that the parts overlap. ``cache``: see :func:`rasterize`.
    """
    components = [draw_component(bank, rng, settings)]
    n_parts = 1
    if settings.combine_max > 1 and rng.random() < settings.combine_prob:
        n_parts = int(rng.integers(2, settings.combine_max + 1))
    for _ in range(n_parts - 1):
        canvas, reference = rasterize(bank, components, cache=cache)
        voxels = np.argwhere(canvas > 0)
        if len(voxels) == 0:
            break
        anchor = voxels[int(rng.integers(len(voxels)))] - reference
        extra = draw_component(bank, rng, settings)
        components.append(Component(extra.source, extra.scale, extra.angles_deg, extra.flip, tuple(float(v) for v in anchor)))
    return components


# --- Placement ------------------------------------------------------------------------
@dataclass
class PlacedLesions:
    """The label volume of one case and what was drawn, lesion by lesion.

    ``ids`` numbers each lesion voxel by its lesion (k for the k-th, 0
    elsewhere) and ``boxes[k - 1]`` holds lesion k: the boxes of neighbouring
    lesions may overlap, the ids tell whose voxel is whose (so that the ROI
    augmentation touches each voxel once, ``blend``).
    """

    labels: np.ndarray
    ids: np.ndarray
    records: list[dict] = field(default_factory=list)
    boxes: list[tuple[slice, ...]] = field(default_factory=list)


def _clip_box(corner: np.ndarray, shape: Sequence[int], size: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the volume and of a canvas at ``corner`` where they overlap."""
    vol, can = [], []
    for c, n, s in zip(corner, shape, size):
        start, stop = max(int(c), 0), min(int(c) + int(s), int(n))
        if stop <= start:
            return (), ()
        vol.append(slice(start, stop))
        can.append(slice(start - int(c), stop - int(c)))
    return tuple(vol), tuple(can)


def _touches(labels: np.ndarray, box: tuple[slice, ...], lesion: np.ndarray) -> bool:
    """True if ``lesion`` (on ``box``) overlaps or 26-touches the lesions already in ``labels``."""
    grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, labels.shape))
    existing = labels[grown] > 0
    if not existing.any():
        return False
    inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(box, grown))
    padded = np.zeros(existing.shape, dtype=bool)
    padded[inner] = lesion
    return bool((ndimage.binary_dilation(padded, CONNECTIVITY) & existing).any())


def place_lesions(
    bank: MaskBank,
    brain: np.ndarray,
    rng: np.random.Generator,
    settings: MaskAugmentation,
    location,
    size_ml: tuple[float, float] | None,
    n_lesions: int,
) -> PlacedLesions:
    """Draw ``n_lesions`` separate lesions inside ``brain`` (the mask m_s of §2.1).

    ``location`` is a bound location rule (``controls.LocationRule``) with
    ``sample(rng, source_centroid) -> target index`` and
    ``accepts(centroid index) -> bool``. ``size_ml`` (whole-tumour volume per
    lesion, after the brain clip; None: no constraint): the lesion is rescaled
    about its reference point to a volume drawn uniformly in the range, then
    checked. Re-draw
    rules: see the module docstring.
    """
    grid = bank.grid
    brain = np.asarray(brain, dtype=bool)
    placed = PlacedLesions(np.zeros(grid.shape, dtype=np.uint8), np.zeros(grid.shape, dtype=np.uint16))
    for index in range(n_lesions):
        reasons = {"outside_brain": 0, "size": 0, "location": 0, "touches_other_lesion": 0, "empty": 0}
        for attempt in range(1, settings.max_tries + 1):
            cache: dict = {}
            components = draw_lesion_shape(bank, rng, settings, cache)
            canvas, _ = rasterize(bank, components, cache=cache)
            lesion_scale = 1.0
            if size_ml is not None:
                volume = float((canvas > 0).sum()) * grid.voxel_ml
                target = float(rng.uniform(*size_ml))
                lesion_scale = (target / max(volume, 1e-9)) ** (1.0 / 3.0)
                canvas, _ = rasterize(bank, components, lesion_scale)
            total = int((canvas > 0).sum())
            if total == 0:
                reasons["empty"] += 1
                continue
            centroid = np.asarray(ndimage.center_of_mass(canvas > 0))
            target_index = location.sample(rng, bank[components[0].source].centroid)
            corner = np.rint(target_index - centroid).astype(int)
            vol_box, can_box = _clip_box(corner, grid.shape, canvas.shape)
            if not vol_box:
                reasons["outside_brain"] += 1
                continue
            lesion = canvas[can_box] * brain[vol_box]
            inside = int((lesion > 0).sum())
            outside_fraction = 1.0 - inside / total
            if inside == 0 or outside_fraction > settings.max_outside_fraction:
                reasons["outside_brain"] += 1
                continue
            volume_ml = inside * grid.voxel_ml
            if size_ml is not None and not size_ml[0] <= volume_ml <= size_ml[1]:
                reasons["size"] += 1
                continue
            final_centroid = np.asarray(ndimage.center_of_mass(lesion > 0)) + [s.start for s in vol_box]
            if not location.accepts(final_centroid):
                reasons["location"] += 1
                continue
            kept = lesion > 0
            if _touches(placed.labels, vol_box, kept):
                reasons["touches_other_lesion"] += 1
                continue
            placed.labels[vol_box][kept] = lesion[kept]
            placed.ids[vol_box][kept] = index + 1
            placed.boxes.append(vol_box)
            placed.records.append(
                {
                    "components": [c.record(bank, lesion_scale) for c in components],
                    "centroid_vox": [round(float(v), 3) for v in final_centroid],
                    "centroid_mm": [round(float(v), 3) for v in grid.to_world(final_centroid)],
                    "volume_ml": round(volume_ml, 4),
                    "outside_fraction": round(outside_fraction, 4),
                    "tries": attempt,
                }
            )
            break
        else:
            raise RuntimeError(
                f"TF-Aug could not place lesion {index + 1} of {n_lesions} in "
                f"{settings.max_tries} tries; rejections by reason: {reasons}. "
                "Loosen tfaug.controls (size_ml, location, n_lesions) or "
                "tfaug.masks.max_outside_fraction, or raise tfaug.masks.max_tries."
            )
    return placed


def given_lesions(labels: np.ndarray, brain: np.ndarray, grid: Grid, source: str) -> PlacedLesions:
    """A user's own label map ``labels`` (on ``grid``) as the case's lesions,
    placed as given: voxels outside ``brain`` dropped, each connected
    component (26-connectivity) one lesion, recorded as :func:`place_lesions`
    records its own (``source``: the map's file name). Raises ``ValueError``
    when no lesion voxel lies inside the brain."""
    labels = np.asarray(labels)
    unknown = sorted(set(np.unique(labels).tolist()) - set(LABELS))  # 2.0 is 2: float segs pass
    if unknown:
        raise ValueError(f"{source}: labels {unknown} are not BraTS labels {list(LABELS)}")
    given = int((labels > 0).sum())
    inside = np.where(np.asarray(brain, dtype=bool), labels, 0).round().astype(np.uint8)
    components, count = ndimage.label(inside > 0, CONNECTIVITY)
    if count == 0:
        raise ValueError(f"{source}: no lesion voxel inside the healthy scan's brain ({given} given)")
    placed = PlacedLesions(inside, components.astype(np.uint16))
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        lesion = components[box] == index
        centroid = np.asarray(ndimage.center_of_mass(lesion)) + [s.start for s in box]
        placed.boxes.append(box)
        placed.records.append(
            {
                "components": [{"source": source, "given": True}],
                "centroid_vox": [round(float(v), 3) for v in centroid],
                "centroid_mm": [round(float(v), 3) for v in grid.to_world(centroid)],
                "volume_ml": round(float(lesion.sum()) * grid.voxel_ml, 4),
                "outside_fraction": round(1.0 - (inside > 0).sum() / given, 4),
                "tries": 1,
            }
        )
    return placed


def count_lesions(labels: np.ndarray) -> int:
    """Connected components (26-connectivity) of the whole tumour."""
    return int(ndimage.label(labels > 0, CONNECTIVITY)[1])


def equivalent_radius_mm(volume_ml: float) -> float:
    """Radius (mm) of the ball with the given volume."""
    return (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
