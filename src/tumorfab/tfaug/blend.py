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
  (fitted in ``tumorfab.tfaug.intensity_fit``), one (a, b) per subregion and
  modality. Then the lesion controls (``tumorfab.tfaug.controls``): the
  per-subregion offset and the texture. The result is clipped to [-1, 1], the
  range of every pipeline image (docs/architecture.md).

Outside the ROI the image is the healthy image, unchanged (bit for bit).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

#: scipy's default truncation of the Gaussian kernel, in σ.
TRUNCATE = 4.0


def _grow(box: tuple[slice, ...], margin: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(box, margin, shape))


def lesion_boxes(labels: np.ndarray) -> list[tuple[slice, ...]]:
    """Bounding boxes of the ROI's connected parts (fallback when none are given)."""
    parts, _ = ndimage.label(labels > 0, np.ones((3, 3, 3), dtype=bool))
    return [box for box in ndimage.find_objects(parts) if box is not None]


def blur_in_roi(
    image: np.ndarray,
    brain: np.ndarray,
    roi: np.ndarray,
    sigma: float,
    boxes: Sequence[tuple[slice, ...]] | None = None,
) -> np.ndarray:
    """``B(x_h, m_s)``: a copy of ``image`` ((C,) D, H, W) with ROI voxels Gaussian-blurred.

    Normalized convolution over ``brain`` (see the module docstring); ``sigma``
    in voxels, 0 leaves the image as it is. ``boxes`` cover the ROI (default:
    the boxes of its connected parts).
    """
    out = np.array(image, dtype=np.float32, copy=True)
    if sigma <= 0:
        return out
    channels = out[None] if out.ndim == 3 else out
    brain = np.asarray(brain, dtype=np.float32)
    roi = np.asarray(roi, dtype=bool)
    radius = int(TRUNCATE * float(sigma) + 0.5)
    for box in boxes if boxes is not None else lesion_boxes(roi):
        region = _grow(box, [radius] * 3, roi.shape)
        inside = roi[region]
        if not inside.any():
            continue
        weight = brain[region]
        norm = ndimage.gaussian_filter(weight, sigma, mode="constant", truncate=TRUNCATE)[inside]
        for channel in channels:
            values = channel[region]
            blurred = ndimage.gaussian_filter(values * weight, sigma, mode="constant", truncate=TRUNCATE)
            values[inside] = blurred[inside] / np.maximum(norm, 1e-6)
    return out


def smooth_noise(
    labels: np.ndarray,
    boxes: Sequence[tuple[slice, ...]],
    scale_vox: Sequence[float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Heterogeneity texture: smooth noise with unit std over each lesion, 0 elsewhere.

    White noise on each lesion's box (grown by the kernel radius) blurred by a
    Gaussian of ``scale_vox`` (per axis), then standardized over the lesion's
    voxels (paper 000's "patchy or uniform" control; SPEC §5).
    """
    texture = np.zeros(labels.shape, dtype=np.float32)
    margin = [int(math.ceil(TRUNCATE * s)) for s in scale_vox]
    for box in boxes:
        region = _grow(box, margin, labels.shape)
        inside = labels[region] > 0
        noise = ndimage.gaussian_filter(rng.standard_normal(inside.shape).astype(np.float32), scale_vox)
        values = noise[inside]
        if values.size > 1:
            texture[region][inside] = (values - values.mean()) / max(float(values.std()), 1e-6)
    return texture


def modify_intensity(
    image: np.ndarray,
    labels: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    offsets: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    boxes: Sequence[tuple[slice, ...]] | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """``I``: ``clip(a_c·x + b_c + offset_c + texture, -1, 1)`` on each subregion c.

    ``image`` is (C, D, H, W) or (D, H, W); ``a``, ``b`` are (C, 3) (columns:
    labels 1, 2, 3) or (3,) for one channel; ``offsets`` is indexed by label
    value (length 4); ``texture`` is a volume. ``boxes`` must cover the ROI
    (default: the whole volume). Returns a copy unless ``inplace``.
    """
    out = np.asarray(image, dtype=np.float32) if inplace else np.array(image, dtype=np.float32, copy=True)
    channels = out[None] if out.ndim == 3 else out
    a = np.atleast_2d(np.asarray(a, dtype=np.float32))
    b = np.atleast_2d(np.asarray(b, dtype=np.float32))
    if a.shape != (channels.shape[0], 3) or b.shape != a.shape:
        raise ValueError(f"a and b must be (channels, 3) = ({channels.shape[0]}, 3); got {a.shape}, {b.shape}")
    for box in boxes if boxes is not None else [tuple(slice(0, n) for n in labels.shape)]:
        region = labels[box]
        for k, label in enumerate((1, 2, 3)):
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
    boxes: Sequence[tuple[slice, ...]] | None = None,
) -> np.ndarray:
    """Eq. 1 of paper 002: ``x_s' = I(B(x_h, m_s))``, plus the lesion controls; a new array."""
    boxes = lesion_boxes(labels) if boxes is None else boxes
    blurred = blur_in_roi(healthy, brain, labels > 0, sigma, boxes)
    return modify_intensity(blurred, labels, a, b, offsets, texture, boxes, inplace=True)
