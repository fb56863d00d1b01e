"""Histogram matching of one sequence to another's real intensity distribution.

What a sequence looks like when nothing is learned about it: a scan's brain
intensities mapped, rank for rank, onto the pooled brain intensities of the
real training cases' other sequence (classic histogram matching, as
``skimage.exposure.match_histograms`` does for one reference image; here the
reference is a pool of cases, kept as its quantiles). It is monotone, so it
cannot invert a contrast (CSF is dark on T1 and FLAIR, bright on T2): it is
the translation baseline that learns nothing (docs/interpretations.md,
"Four sequences") and the fill TF-Aug writes for a sequence the healthy scan
lacks, which TF-GAN then replaces by its own translation.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

#: Quantiles kept of a pooled reference distribution (every 0.1 %).
N_QUANTILES = 1001
BACKGROUND = -1.0


def brain_quantiles(volumes: Iterable[tuple[np.ndarray, np.ndarray]], n_quantiles: int = N_QUANTILES) -> np.ndarray:
    """Quantiles of the voxels inside the brain of every ``(image, brainmask)``, pooled."""
    values = [np.asarray(image, dtype=np.float64)[np.asarray(brain, dtype=bool)] for image, brain in volumes]
    pooled = np.concatenate(values) if values else np.empty(0)
    if pooled.size == 0:
        raise ValueError("no brain voxels to take a reference intensity distribution from")
    return np.quantile(pooled, np.linspace(0.0, 1.0, n_quantiles)).astype(np.float32)


def quantile_map(image: np.ndarray, brainmask: np.ndarray, quantiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The knots ``(x, y)`` (x increasing) of the piecewise-linear map that
    :func:`match_to_quantiles` applies to ``image``'s brain voxels (``np.interp``)."""
    brain = np.asarray(brainmask, dtype=bool)
    if not brain.any():
        raise ValueError("empty brain mask: nothing to match")
    levels = np.linspace(0.0, 1.0, len(quantiles))
    own = np.quantile(image[brain].astype(np.float64), levels)
    # np.interp needs increasing x: a plateau of the scan's own quantiles
    # (many equal voxels) is given the mean of the reference's over it.
    own_unique, first = np.unique(own, return_index=True)
    counts = np.diff(np.r_[first, len(own)])
    reference = np.add.reduceat(np.asarray(quantiles, dtype=np.float64), first) / counts
    return own_unique, reference


def match_to_quantiles(image: np.ndarray, brainmask: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """``image``'s brain voxels mapped onto the distribution ``quantiles``; -1 outside.

    Each voxel keeps its rank among the brain's voxels (ties share the mean
    rank's position through interpolation of the scan's own quantiles).
    """
    own, reference = quantile_map(image, brainmask, quantiles)
    brain = np.asarray(brainmask, dtype=bool)
    out = np.full(image.shape, BACKGROUND, dtype=np.float32)
    out[brain] = np.interp(image[brain], own, reference).astype(np.float32)
    return out
