"""CarveMix (Zhang et al., NeuroImage 271:120041, 2023), a baseline of TF paper 002.

Paper 002 §3.2.1 describes it as a cut-and-mix method "that carves the tumor
region along with a surrounding contextual margin from a real tumor-bearing
scan and blends it into another real tumor-bearing scan. The corresponding
segmentation masks are updated accordingly." Its results are Table 1's
"CarveMix" row (100 real + 100 CarveMix cases).

The method, for a pair of real training cases A (the recipient) and B (the
donor of the lesion):

1. ``d`` = signed distance map of B's whole lesion (``seg > 0``), in mm, with
   the voxel spacing respected (``scipy.ndimage.distance_transform_edt`` with
   ``sampling=zooms``). **Sign convention**: negative inside the lesion (minus
   the distance to the nearest non-lesion voxel), positive outside (the
   distance to the nearest lesion voxel). No voxel has ``d == 0``: a lesion
   voxel on the border has ``d = -spacing`` and its outer neighbour
   ``d = +spacing``. (CarveMix's own code subtracts one from both sides so its
   zero level sits on the border voxels; with ``λ`` drawn as a fraction of the
   lesion depth the two readings differ by at most one voxel.)
2. ``λ`` is drawn uniformly from ``[low, high] · depth``, where ``depth`` =
   ``max(-d)`` over the lesion (its largest inner distance) and ``[low, high]``
   is the config's ``carvemix.lambda_range``.
   - CarveMix's published code (github.com/ZhangxinruBIT/CarveMix,
     ``Simple_CarveMix.py``) draws ``λ ~ U(-depth/2, depth)``: ``λ < 0`` carves
     only the inner part of the lesion, ``λ ≥ 0`` the lesion plus a margin of
     up to ``depth`` mm. That is ``lambda_range: [-0.5, 1.0]``.
   - The TF paper describes it as carving the lesion "along with a surrounding
     contextual margin", i.e. ``λ ≥ 0``: ``lambda_range: [0.0, 1.0]``, our
     default. With ``λ ≥ 0`` the carved region always holds B's whole lesion.
3. Carved region ``C = {d < λ}``. Images = B inside ``C``, A outside (a hard
   cut, as CarveMix: no blending), every channel cut with the one ``C``;
   labels = B's labels inside ``C`` (B's background in the margin overwrites
   A's labels there), A's outside.

Choices where neither paper speaks:

- **Brain mask** follows the image: B's mask inside ``C``, A's outside. The
  case-folder contract (docs/architecture.md) is "background exactly -1
  outside the brain mask"; taking the mask from the same case as the image
  keeps every voxel's intensity and mask consistent (the union ``A ∪ (C ∩ B)``
  would also keep the contract, but would mark as brain the voxels of ``C``
  where B has background, -1, inside A's brain). B's lesion lies inside B's
  brain, so the whole carved lesion is inside the new mask.
- **No intensity harmonization**: CarveMix's heterogeneous-data variant
  z-scores both images first; our real cases are already normalized to
  [-1, 1] the same way, sequence by sequence (``tumorfab.preprocess.normalize``),
  so they are mixed as they are.
- **Pairs**: B is drawn among training cases with a lesion, A among the
  training cases of other patients (two BraTS timepoints of one patient are
  nearly the same scan; CarveMix's code even allows A = B, which only copies a
  case); if every case is of B's patient, among the other cases. Case order is
  sorted by id, so the draw does not depend on the order the workflow lists
  them in.
- Only training cases are used (the held-out cases never reach a generator).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from tumorfab.casefolder import Case, load_case, read_seg, save_case
from tumorfab.config import Settings, config_section
from tumorfab.io import atomic_directory
from tumorfab.synthesis.manifest import synthetic_case_id, write_manifest

log = logging.getLogger(__name__)

#: Manifest columns, in order (the contract: ``tumorfab.synthesis.manifest``).
MANIFEST_COLUMNS = [
    "case_id",
    "case_a",
    "case_b",
    "lambda_mm",
    "lambda_fraction",
    "seed",
    "carved_voxels",
    "lesion_depth_mm",
]

def signed_distance(lesion: np.ndarray, zooms: Sequence[float]) -> np.ndarray:
    """Signed distance map of a binary lesion, in mm, over the whole volume.

    Negative inside (minus the distance to the nearest non-lesion voxel),
    positive outside (distance to the nearest lesion voxel); never zero. This
    is step 1 of CarveMix (see the module docstring); ``carve_region`` computes
    the same values on a crop, this full-volume version is the reference.
    """
    lesion = np.asarray(lesion, dtype=bool)
    if not lesion.any():
        raise ValueError("signed distance of an empty lesion")
    inside = ndimage.distance_transform_edt(lesion, sampling=zooms)
    outside = ndimage.distance_transform_edt(~lesion, sampling=zooms)
    return np.where(lesion, -inside, outside)


def _padded_box(lesion: np.ndarray, pad_mm: float, zooms: Sequence[float]) -> tuple[slice, ...]:
    """The lesion's bounding box grown by ``pad_mm`` (+1 voxel) per axis, clipped to the volume.

    The signed distance computed on this crop equals the full-volume one at
    every voxel of the crop: every lesion voxel is inside it (outer distances
    are exact), and its outer layer is non-lesion, so for any inside voxel a
    non-lesion voxel beyond the crop is never nearer than the crop's border
    (clamping a point's coordinates to the box moves it closer). A voxel
    outside the crop lies more than ``pad_mm`` from the lesion.
    """
    box = ndimage.find_objects(lesion.astype(np.uint8))[0]
    slices = []
    for axis, (s, zoom) in enumerate(zip(box, zooms)):
        pad = int(math.ceil(max(pad_mm, 0.0) / zoom)) + 1
        slices.append(slice(max(s.start - pad, 0), min(s.stop + pad, lesion.shape[axis])))
    return tuple(slices)


def lesion_depth(lesion: np.ndarray, zooms: Sequence[float]) -> float:
    """The lesion's largest inner distance ``max(-d)`` in mm (CarveMix's λ scale)."""
    lesion = np.asarray(lesion, dtype=bool)
    if not lesion.any():
        raise ValueError("depth of an empty lesion")
    box = _padded_box(lesion, 0.0, zooms)
    return float(ndimage.distance_transform_edt(lesion[box], sampling=zooms).max())


def carve_region(lesion: np.ndarray, zooms: Sequence[float], lambda_mm: float) -> np.ndarray:
    """CarveMix's carved region ``{d < λ}`` of a lesion, as a boolean volume.

    Computed on the lesion's bounding box grown by ``λ`` (exactly equal to
    thresholding ``signed_distance`` over the whole volume, see ``_padded_box``),
    which makes it cheap on 240×240×155 volumes.
    """
    lesion = np.asarray(lesion, dtype=bool)
    box = _padded_box(lesion, lambda_mm, zooms)
    region = np.zeros(lesion.shape, dtype=bool)
    region[box] = signed_distance(lesion[box], zooms) < lambda_mm
    return region


def carvemix(case_a: Case, case_b: Case, region: np.ndarray) -> Case:
    """Carve ``region`` of donor B into recipient A (CarveMix step 3).

    Images and labels: B inside ``region``, A outside; brain mask likewise
    (the mask follows the image, see the module docstring). A's header and
    affine are kept; A and B must share the grid (all real cases are on the
    BraTS/SRI24 grid).
    """
    if case_a.seg.shape != case_b.seg.shape or not np.allclose(
        case_a.affine, case_b.affine, atol=1e-4
    ):
        raise ValueError("CarveMix needs two cases on the same grid (shape and affine)")
    missing = set(case_a.images) ^ set(case_b.images)
    if missing:
        raise ValueError(
            f"CarveMix needs the same modalities in both cases; differ: {sorted(missing)}"
        )
    images = {m: np.where(region, case_b.images[m], case_a.images[m]) for m in case_a.images}
    brainmask = np.where(region, case_b.brainmask, case_a.brainmask).astype(np.uint8)
    seg = np.where(region, case_b.seg, case_a.seg).astype(np.uint8)
    return Case(images, brainmask, seg, case_a.affine, case_a.header)


def _has_lesion(case_dir: Path) -> bool:
    seg, _ = read_seg(case_dir)
    return bool((seg > 0).any())


_BRATS_CASE = re.compile(r"^(BraTS-[A-Z]+-\d{5})-\d{3}$")


def patient_of(case_id: str) -> str:
    """The patient of a BraTS case id ``BraTS-GLI-XXXXX-YYY`` (``XXXXX``); other ids are their own."""
    match = _BRATS_CASE.match(case_id)
    return match.group(1) if match else case_id


def draw_pairs(
    case_ids: Sequence[str],
    lesion_ids: Sequence[str],
    n_cases: int,
    lambda_range: Sequence[float],
    rng: np.random.Generator,
) -> list[tuple[str, str, float]]:
    """Draw ``n_cases`` (A, B, λ-fraction) triples in generation order.

    Each case takes exactly three draws from ``rng`` (B, then A of another
    patient, then the fraction), so the first k triples of a run for N cases are the triples of
    a run for k cases: sets are nested prefixes (docs/architecture.md, "Contract 2").
    """
    low, high = (float(v) for v in lambda_range)
    case_ids, lesion_ids = sorted(case_ids), sorted(lesion_ids)
    triples = []
    for _ in range(n_cases):
        b = lesion_ids[int(rng.integers(len(lesion_ids)))]
        others = [c for c in case_ids if patient_of(c) != patient_of(b)]
        others = others or [c for c in case_ids if c != b]
        a = others[int(rng.integers(len(others)))]
        triples.append((a, b, float(rng.uniform(low, high))))
    return triples


@dataclass(frozen=True)
class CarveMixSettings(Settings):
    """``carvemix``: λ's range as fractions of the lesion's largest inner distance."""

    lambda_range: tuple[float, float]

    @classmethod
    def from_config(cls, section: Mapping) -> CarveMixSettings:
        """From the validated ``carvemix`` section; -1 <= low <= high is checked here."""
        section = config_section(section, cls.__dataclass_fields__, "carvemix")
        lambda_range = section["lambda_range"]
        if len(lambda_range) != 2:
            raise ValueError(f"carvemix.lambda_range must be [low, high], got {list(lambda_range)}")
        low, high = (float(v) for v in lambda_range)
        if not -1.0 <= low <= high:
            raise ValueError(
                f"carvemix.lambda_range [{low}, {high}]: need -1 <= low <= high "
                "(fractions of the lesion's largest inner distance; below -1 nothing is carved)"
            )
        return cls((low, high))


def generate_carvemix(
    train_case_dirs: Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    n_cases: int,
    modalities: Sequence[str],
    settings: CarveMixSettings,
    seed: int,
) -> pd.DataFrame:
    """Generate ``n_cases`` CarveMix cases from real training cases (paper 002 §3.2.1).

    ``train_case_dirs`` maps training case id -> case folder; ``out_dir`` is the
    cases folder (``results/synthetic/carvemix/cases``), written as a whole:
    built in a hidden temporary folder beside it and renamed into place at the
    end, so a killed job leaves no partial set. Cases are ``carvemix_0000``,
    ``carvemix_0001``, ... in generation order; the manifest (written
    atomically after the cases) has one row per case with
    ``MANIFEST_COLUMNS``. ``rng = numpy.random.default_rng(seed)``; generating
    N cases and keeping the first k equals generating k.
    """
    if n_cases < 0:
        raise ValueError(f"n_cases must be >= 0, got {n_cases}")
    dirs = {case_id: Path(path) for case_id, path in train_case_dirs.items()}
    if len(dirs) < 2:
        raise ValueError(f"CarveMix needs at least 2 training cases, got {len(dirs)}")
    lesion_ids = [c for c in sorted(dirs) if _has_lesion(dirs[c])]
    if not lesion_ids:
        raise ValueError("CarveMix: no training case has a lesion (seg > 0) to carve")
    rng = np.random.default_rng(seed)
    triples = draw_pairs(list(dirs), lesion_ids, n_cases, settings.lambda_range, rng)

    rows = []
    with atomic_directory(out_dir) as tmp_dir:
        for i, (a, b, fraction) in enumerate(triples):
            case_id = synthetic_case_id("carvemix", i)
            case_a = load_case(dirs[a], modalities)
            case_b = load_case(dirs[b], modalities)
            lesion = case_b.seg > 0
            depth = lesion_depth(lesion, case_b.zooms)
            lambda_mm = fraction * depth
            region = carve_region(lesion, case_b.zooms, lambda_mm)
            save_case(carvemix(case_a, case_b, region), tmp_dir / case_id)
            rows.append(
                {
                    "case_id": case_id,
                    "case_a": a,
                    "case_b": b,
                    "lambda_mm": lambda_mm,
                    "lambda_fraction": fraction,
                    "seed": seed,
                    "carved_voxels": int(region.sum()),
                    "lesion_depth_mm": depth,
                }
            )
            log.info(
                "%s: %s <- %s, lambda %.2f mm (%.3f of depth %.2f mm), %d voxels",
                case_id,
                a,
                b,
                lambda_mm,
                fraction,
                depth,
                int(region.sum()),
            )
    return write_manifest(rows, MANIFEST_COLUMNS, manifest_path, "carvemix")
