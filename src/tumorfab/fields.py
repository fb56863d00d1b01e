"""Random smooth fields: seeded white noise, smoothed, brought to a fixed scale.

The one owner of the package's random smooth fields (as MONAI's
``monai/transforms/smooth_field`` is for its transforms). Every such field is
built the same three steps:

1. **white noise**: standard normal values on a lattice, drawn from the
   caller's ``numpy.random.Generator`` (:func:`white_noise`);
2. **smoothing**: a separable low-pass kernel over that lattice;
3. **scale**: a map that fixes the field's range or moments.

Two variants, because their callers need different lattices and scales; they
are not interchangeable, and each caller's files depend bit for bit on its
variant (the draws, their order, dtype and arithmetic are part of the contract):

:class:`SmoothField`: coarse control lattice, cubic B-spline, ``tanh``
    Used by the demo phantom (``tumorfab.demo.cohort``) for every random
    field it draws: the brain deformation, the lesion's irregular boundaries,
    the lesion and scalp textures, the head-layer thicknesses and the bias
    field. The lattice is in world millimetres (one value every ``spacing``
    mm), so the field is a function of position, evaluated on any
    axis-aligned grid: the same lesion field on both timepoints' grids, a
    field drawn before the grid's voxels are known. ``tanh`` bounds it to
    (-1, 1), so amplitudes in mm or in intensity are maxima.

:func:`gaussian_noise` then :func:`standardize`: voxel lattice, Gaussian, zero mean and unit std
    Used by TF-Aug's heterogeneity texture
    (``tumorfab.synthesis.tfaug.blend.smooth_noise``): noise on a lesion's
    own voxel box, smoothed by a Gaussian of a scale in voxels,
    standardized over that lesion's voxels, so the texture amplitude is the
    std the lesion gets whatever its size or scale.

This module imports numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["SmoothField", "cubic_bspline", "gaussian_noise", "standardize", "white_noise"]

#: ``SmoothField`` is ``tanh(TANH_GAIN * s)``, ``s`` the B-spline of white
#: noise (std about 0.33): a field with a std of about 0.5.
TANH_GAIN = 2.0


def white_noise(
    rng: np.random.Generator, shape: Sequence[int], dtype: type = np.float64
) -> np.ndarray:
    """Standard normal values of ``shape``, drawn as float64 and cast to ``dtype``.

    ``rng.standard_normal(shape)`` then a cast: the same draws whatever the
    dtype (``standard_normal(dtype=float32)`` would draw other numbers).
    """
    noise = rng.standard_normal(tuple(shape))
    return noise.astype(dtype, copy=False)


def cubic_bspline(t: np.ndarray) -> np.ndarray:
    """The cubic B-spline kernel (non-negative, support (-2, 2), partition of unity)."""
    t = np.abs(t)
    return np.where(t < 1, 2 / 3 - t**2 + t**3 / 2, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


@dataclass(frozen=True)
class SmoothField:
    """A smooth random field in (-1, 1): tanh of a cubic B-spline of white noise.

    Control values on a regular world grid (every ``spacing`` mm, two extra
    points beyond the box on each side) are standard normal; the field is
    ``tanh(gain * s)`` with ``s`` their cubic B-spline approximation
    (C2, std about 0.33), so it is smooth, bounded by 1 and has a standard
    deviation of about 0.5 (``gain`` 2): features of about two control
    spacings. It is evaluated on axis-aligned grids only, as a tensor product
    (much cheaper than interpolating point by point).
    """

    values: np.ndarray  # (components, *control_shape), float64
    origin: np.ndarray  # world position (mm) of control point (0, 0, 0)
    spacing: float
    gain: float = TANH_GAIN

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        lo: np.ndarray,
        hi: np.ndarray,
        spacing: float,
        components: int = 1,
        gain: float = TANH_GAIN,
    ) -> SmoothField:
        """A field covering the world box ``[lo, hi]`` (mm): one draw of ``components`` x lattice values."""
        origin = np.asarray(lo, dtype=np.float64) - 2 * spacing
        shape = np.ceil((np.asarray(hi) + 2 * spacing - origin) / spacing).astype(int) + 1
        return cls(white_noise(rng, (components, *shape)), origin, float(spacing), float(gain))

    def on_axes(self, axes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """Field on the grid of world coordinates ``axes`` (x, y, z vectors, mm).

        Returns (components, len(x), len(y), len(z)), float64.
        """
        weights = []
        for dim, coords in enumerate(axes):
            u = (np.asarray(coords) - self.origin[dim]) / self.spacing
            weights.append(cubic_bspline(u[:, None] - np.arange(self.values.shape[dim + 1])[None, :]))
        # One axis at a time; plain einsum (no BLAS threads on a shared machine).
        result = np.einsum("cijk,zk->cijz", self.values, weights[2])
        result = np.einsum("cijz,yj->ciyz", result, weights[1])
        result = np.einsum("ciyz,xi->cxyz", result, weights[0])
        return np.tanh(self.gain * result)


def gaussian_noise(
    rng: np.random.Generator, shape: Sequence[int], sigma: float | Sequence[float]
) -> np.ndarray:
    """White noise of ``shape`` (float32) smoothed by a Gaussian of ``sigma`` voxels (per axis).

    ``scipy.ndimage.gaussian_filter`` with its defaults (reflecting edges,
    kernel truncated at 4 sigma). Not standardized: see :func:`standardize`.
    """
    return ndimage.gaussian_filter(white_noise(rng, shape, np.float32), sigma)


def standardize(values: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """``(values - mean) / std``, the std floored at ``floor`` (a constant stays finite)."""
    return (values - values.mean()) / max(float(values.std()), floor)
