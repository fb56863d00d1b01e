"""ROI augmentation of TF-Aug: x_s' = F_a(x_h) = I(B(x_h, m_s)) (paper 002 §2.1, Eq. 1).

* ``B`` (:func:`blur_in_roi`): "A Gaussian filter with standard deviation
  (σ = 2) is applied to the healthy tissue in the ROI area". σ is in voxels
  (the paper's grid is 1 mm). *Healthy tissue* we read literally: the blur is a
  normalized convolution over the brain, ``G*(x·brain) / G*(brain)``, so the
  background (-1) does not darken lesions that touch the brain's edge. Only
  ROI voxels change. It is computed on each lesion's bounding box grown by the
  kernel radius (``ceil(4σ)``, scipy's truncation), which gives the same
  values as filtering the whole volume, at a fraction of the cost.
* ``I`` (:func:`modify_intensity`): "a linear transformation I(x) = ax + b to
  each tumor subregion (ET, ED, NCR), where a and b are learnable parameters"
  (fitted in ``tumorfab.synthesis.tfaug.intensity_fit``), one (a, b) per subregion and
  modality. Then the lesion controls (``tumorfab.synthesis.tfaug.controls``): the
  per-subregion offset and the texture. The result is clipped to [-1, 1], the
  range of every pipeline image (docs/architecture.md).

Outside the ROI the image is the healthy image, unchanged (bit for bit).

**Several lesions, each voxel once.** Every ROI voxel belongs to one lesion
(``lesions``: the lesion number of each voxel, from the placement,
``masks.PlacedLesions.ids``), and each lesion's box writes only its own
voxels. Boxes of lesions of one case may overlap (an L-shaped lesion's box
holds its neighbour's voxels), yet each voxel is blurred, mapped by a·x+b and
given texture exactly once, and the blur always reads the healthy input: the
result is that of processing the union ROI at once. The texture is
standardized over each lesion's own voxels.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from tumorfab.fields import gaussian_noise, standardize
from tumorfab.labels import LESION_LABELS

#: scipy's default truncation of the Gaussian kernel, in σ.
TRUNCATE = 4.0


def _grow(box: tuple[slice, ...], margin: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(box, margin, shape))


def lesion_ids(labels: np.ndarray) -> np.ndarray:
    """The ROI's connected parts numbered 1..n: the lesions when the placement's are not given."""
    return ndimage.label(labels > 0, np.ones((3, 3, 3), dtype=bool))[0]


def _numbered_boxes(
    lesions: np.ndarray, boxes: Sequence[tuple[slice, ...]] | None
) -> list[tuple[int, tuple[slice, ...]]]:
    """``(k, box of lesion k)`` pairs: ``boxes[k - 1]`` holds lesion k (default: found in ``lesions``)."""
    if boxes is None:
        boxes = ndimage.find_objects(lesions)
    return [(number, box) for number, box in enumerate(boxes, start=1) if box is not None]


def _as_ids(lesions: np.ndarray) -> np.ndarray:
    """Lesion numbers as integers; a boolean ROI is one lesion (number 1)."""
    lesions = np.asarray(lesions)
    return lesions.view(np.uint8) if lesions.dtype == bool else lesions


def blur_in_roi(
    image: np.ndarray,
    brain: np.ndarray,
    lesions: np.ndarray,
    sigma: float,
    boxes: Sequence[tuple[slice, ...]] | None = None,
) -> np.ndarray:
    """``B(x_h, m_s)``: a copy of ``image`` ((C,) D, H, W) with ROI voxels Gaussian-blurred.

    Normalized convolution over ``brain`` of ``image`` itself, never of
    voxels already blurred (see the module docstring); ``sigma`` in voxels, 0
    leaves the image as it is. ``lesions``: the lesion number of each voxel,
    0 outside the ROI (a boolean ROI is one lesion); ``boxes[k - 1]`` holds
    lesion k (default: the boxes found in ``lesions``).
    """
    source = np.asarray(image, dtype=np.float32)
    out = np.array(source, copy=True)  # not source.copy(): measured ~0.1 s slower per BraTS case in make_case
    if sigma <= 0:
        return out
    sources, targets = (source[None], out[None]) if out.ndim == 3 else (source, out)
    brain = np.asarray(brain, dtype=np.float32)
    lesions = _as_ids(lesions)
    radius = int(TRUNCATE * float(sigma) + 0.5)
    for number, box in _numbered_boxes(lesions, boxes):
        region = _grow(box, [radius] * 3, lesions.shape)
        own = lesions[region] == number
        if not own.any():
            continue
        weight = brain[region]
        norm = ndimage.gaussian_filter(weight, sigma, mode="constant", truncate=TRUNCATE)[own]
        for channel, target in zip(sources, targets):
            blurred = ndimage.gaussian_filter(channel[region] * weight, sigma, mode="constant", truncate=TRUNCATE)
            target[region][own] = blurred[own] / np.maximum(norm, 1e-6)
    return out


def smooth_noise(
    lesions: np.ndarray,
    boxes: Sequence[tuple[slice, ...]],
    scale_vox: Sequence[float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Heterogeneity texture: smooth noise with unit std over each lesion, 0 elsewhere.

    White noise on each lesion's box (grown by the kernel radius) blurred by a
    Gaussian of ``scale_vox`` (per axis), then standardized over the lesion's
    own voxels (paper 000's "patchy or uniform" control): the
    voxel-lattice variant of ``tumorfab.fields``, one draw per lesion in order.
    ``lesions`` and ``boxes``: see :func:`blur_in_roi`.
    """
    lesions = _as_ids(lesions)
    texture = np.zeros(lesions.shape, dtype=np.float32)
    margin = [int(math.ceil(TRUNCATE * s)) for s in scale_vox]
    for number, box in _numbered_boxes(lesions, boxes):
        region = _grow(box, margin, lesions.shape)
        own = lesions[region] == number
        values = gaussian_noise(rng, own.shape, scale_vox)[own]
        if values.size > 1:
            texture[region][own] = standardize(values)
    return texture


def modify_intensity(
    image: np.ndarray,
    labels: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    offsets: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    lesions: np.ndarray | None = None,
    boxes: Sequence[tuple[slice, ...]] | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """``I``: ``clip(a_c·x + b_c + offset_c + texture, -1, 1)`` on each subregion c.

    ``image`` is (C, D, H, W) or (D, H, W); ``a``, ``b`` are (C, 3) (columns:
    labels 1, 2, 3) or (3,) for one channel; ``offsets`` is indexed by label
    value (length 4); ``texture`` is a volume. ``lesions`` and ``boxes``: see
    :func:`blur_in_roi`, each voxel is mapped once, by its lesion's box
    (default: the whole volume as one box). Returns a copy unless ``inplace``.
    """
    out = np.asarray(image, dtype=np.float32) if inplace else np.array(image, dtype=np.float32, copy=True)
    channels = out[None] if out.ndim == 3 else out
    a = np.atleast_2d(np.asarray(a, dtype=np.float32))
    b = np.atleast_2d(np.asarray(b, dtype=np.float32))
    if a.shape != (channels.shape[0], 3) or b.shape != a.shape:
        raise ValueError(f"a and b must be (channels, 3) = ({channels.shape[0]}, 3); got {a.shape}, {b.shape}")
    if lesions is None:
        lesions, boxes = labels > 0, [tuple(slice(0, n) for n in labels.shape)]
    lesions = _as_ids(lesions)
    for number, box in _numbered_boxes(lesions, boxes):
        region = np.where(lesions[box] == number, labels[box], 0)
        for k, label in enumerate(LESION_LABELS):
            where = region == label
            if not where.any():
                continue
            extra = np.float32(0.0 if offsets is None else offsets[label])
            if texture is not None:
                extra = extra + texture[box][where]
            for c, channel in enumerate(channels):
                values = channel[box]
                values[where] = np.clip(a[c, k] * values[where] + b[c, k] + extra, -1.0, 1.0)
    return out


def augment_roi(
    healthy: np.ndarray,
    brain: np.ndarray,
    labels: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    sigma: float = 2.0,
    offsets: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    lesions: np.ndarray | None = None,
    boxes: Sequence[tuple[slice, ...]] | None = None,
) -> np.ndarray:
    """Eq. 1 of paper 002: ``x_s' = I(B(x_h, m_s))``, plus the lesion controls; a new array.

    ``lesions`` (nonzero exactly where ``labels`` is) and ``boxes``: see
    :func:`blur_in_roi`; default: each connected part of the ROI is a lesion.
    """
    lesions = lesion_ids(labels) if lesions is None else _as_ids(lesions)
    boxes = ndimage.find_objects(lesions) if boxes is None else boxes
    blurred = blur_in_roi(healthy, brain, lesions, sigma, boxes)
    return modify_intensity(blurred, labels, a, b, offsets, texture, lesions, boxes, inplace=True)
