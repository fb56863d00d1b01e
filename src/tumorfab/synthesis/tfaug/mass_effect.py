"""Mass effect: healthy tissue pushed away from the lesion (not in the paper).

Paper 002 names the missing mass effect as a limitation (its hinge loss only
tolerates small deformations, §2.2.1). Off in the paper preset
(``tfaug.mass_effect.enabled: false``).

The model, chosen to be smooth and diffeomorphic by construction:

* A **stationary velocity field**, one radial term per lesion,
  ``v(p) = α (p − c) exp(−|p − c|² / (2 s²))`` (mm), with ``c`` the lesion's
  whole-tumour centroid and ``s`` its equivalent-sphere radius
  ``(3V / 4π)^(1/3)``. ``|v|`` is 0 at the centroid, peaks at ``r = s`` (the
  lesion's edge) with value ``α s e^(-1/2)`` = ``magnitude_mm``, and decays
  like a Gaussian beyond (< 1e-3 of the peak at ``r = 4.5 s``). Terms of several
  lesions add.
* **Scaling and squaring** (``monai.networks.blocks.DVF2DDF``, ``steps``
  squarings) integrates ``v`` into the displacement of the deformation
  ``φ = exp(v)``; the exponential of a smooth stationary field is a
  diffeomorphism, so the Jacobian determinant stays positive (checked
  numerically by the tests, :func:`jacobian_determinant`). ``magnitude_mm`` is
  thus the peak of the velocity; the peak of the displacement is close to it
  and is what the manifest records.
* Tissue at ``q`` moves to ``φ(q)``; the deformed image is ``x(φ⁻¹(p))``, and
  ``φ⁻¹ = exp(−v)``: we integrate ``−v`` and sample the healthy image there
  (``monai.networks.blocks.Warp``). Image and brain mask are warped together
  by a normalized interpolation (``warp(x·brain) / warp(brain)``, brain =
  ``warp(brain) ≥ 0.5``), so the background (-1) does not bleed into the
  tissue; outside the new brain mask the image is exactly -1.
* The field is computed on the box where it is not negligible (the lesions'
  centroids ± 4.5 s, clipped to the grid) and is 0 elsewhere.

The lesion mask is placed on the undeformed scan (its brain mask decides what
is discarded) and kept where it is; the tissue around it is displaced before
the ROI blending (``generate``), and lesion voxels outside the deformed brain
mask are dropped.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Sequence

import numpy as np
import torch
from monai.networks.blocks import DVF2DDF, Warp

#: Extent of the field's box around each lesion, in equivalent radii.
EXTENT = 4.5


@contextlib.contextmanager
def _native_grid_sample():
    """MONAI warns at every Warp that it falls back to torch's grid_sample (its
    compiled extension is not built): expected here, so not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="monai.networks.blocks.Warp: Using PyTorch native")
        yield


def velocity_field(
    shape: Sequence[int],
    spacing: Sequence[float],
    centroids_vox: Sequence[Sequence[float]],
    radii_mm: Sequence[float],
    magnitudes_mm: Sequence[float],
    origin: Sequence[int] = (0, 0, 0),
    step: int = 1,
) -> np.ndarray:
    """The radial velocity (3, *shape), in voxels of the grid, on the points ``origin + step·k``."""
    spacing = np.asarray(spacing, dtype=np.float64)
    axes = [o + step * np.arange(n) for n, o in zip(shape, origin)]
    velocity = np.zeros((3, *shape), dtype=np.float64)
    for centroid, radius, magnitude in zip(centroids_vox, radii_mm, magnitudes_mm):
        radius = max(float(radius), float(spacing.max()))
        alpha = float(magnitude) / (radius * math.exp(-0.5))
        deltas = [(ax - c) * s for ax, c, s in zip(axes, centroid, spacing)]  # mm, per axis
        r2 = deltas[0][:, None, None] ** 2 + deltas[1][None, :, None] ** 2 + deltas[2][None, None, :] ** 2
        envelope = alpha * np.exp(-r2 / (2.0 * radius**2))
        for axis in range(3):
            d = deltas[axis].reshape([-1 if i == axis else 1 for i in range(3)])
            velocity[axis] += envelope * d / spacing[axis]
    return velocity.astype(np.float32)


def integrate(velocity: np.ndarray, steps: int) -> np.ndarray:
    """``exp(v)`` by scaling and squaring (MONAI ``DVF2DDF``): displacement in voxels."""
    with torch.no_grad(), _native_grid_sample():
        ddf = DVF2DDF(num_steps=int(steps), mode="bilinear", padding_mode="border")(
            torch.from_numpy(np.ascontiguousarray(velocity))[None]
        )
    return ddf[0].numpy()


def field_box(shape: Sequence[int], spacing: Sequence[float], centroids_vox, radii_mm, magnitudes_mm) -> tuple[slice, ...]:
    """The grid box outside which the field is negligible."""
    low = np.full(3, np.inf)
    high = np.full(3, -np.inf)
    for centroid, radius, magnitude in zip(centroids_vox, radii_mm, magnitudes_mm):
        reach = (EXTENT * max(float(radius), max(spacing)) + float(magnitude)) / np.asarray(spacing)
        low = np.minimum(low, np.asarray(centroid) - reach)
        high = np.maximum(high, np.asarray(centroid) + reach)
    return tuple(
        slice(int(max(math.floor(lo), 0)), int(min(math.ceil(hi) + 1, n))) for lo, hi, n in zip(low, high, shape)
    )


def inverse_displacement(
    shape: Sequence[int],
    spacing: Sequence[float],
    centroids_vox: Sequence[Sequence[float]],
    radii_mm: Sequence[float],
    magnitudes_mm: Sequence[float],
    steps: int,
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Sampling displacement ``φ⁻¹(p) − p = exp(−v)(p) − p`` (voxels) on its box, and the box.

    The field varies on the scale of the lesion radius, so it is integrated
    on a grid ``step = floor(min radius / (4 · voxel))`` times coarser (1 for
    small lesions) and upsampled trilinearly (interpolation error about
    magnitude/128); a 240×240×155 case then takes well under a second.
    """
    box = field_box(shape, spacing, centroids_vox, radii_mm, magnitudes_mm)
    size = np.array([s.stop - s.start for s in box])
    step = max(1, int(min(radii_mm) / (4.0 * max(spacing))))
    coarse = (size - 1 + step - 1) // step + 1
    velocity = velocity_field(coarse, spacing, centroids_vox, radii_mm, magnitudes_mm, [s.start for s in box], step)
    ddf = integrate(-velocity / step, steps) * step
    if step > 1:
        with torch.no_grad():
            fine = torch.nn.functional.interpolate(
                torch.from_numpy(ddf)[None], size=tuple(int(n) for n in (coarse - 1) * step + 1),
                mode="trilinear", align_corners=True,
            )[0].numpy()
        ddf = np.ascontiguousarray(fine[:, : size[0], : size[1], : size[2]])
    return ddf, box


def warp_scan(image: np.ndarray, brain: np.ndarray, ddf: np.ndarray, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Warp image (C, D, H, W) and brain mask on ``box`` by the sampling displacement ``ddf``.

    Normalized interpolation (module docstring); returns new arrays.
    """
    image = np.array(image, dtype=np.float32, copy=True)
    brain = np.array(brain, dtype=np.uint8, copy=True)
    weight = brain[box].astype(np.float32)
    stack = np.concatenate([image[(slice(None), *box)] * weight, weight[None]], axis=0)
    with torch.no_grad(), _native_grid_sample():
        warped = Warp(mode="bilinear", padding_mode="border")(
            torch.from_numpy(np.ascontiguousarray(stack))[None], torch.from_numpy(np.ascontiguousarray(ddf))[None]
        )[0].numpy()
    norm = warped[-1]
    inside = norm >= 0.5
    values = np.where(inside, warped[:-1] / np.maximum(norm, 1e-6), -1.0).astype(np.float32)
    image[(slice(None), *box)] = values
    brain[box] = inside
    return image, brain


def jacobian_determinant(ddf: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """``det(I + ∇u)`` of the map ``p ↦ p + u(p)`` (u in voxels), by central differences."""
    spacing = np.asarray(spacing, dtype=np.float64)
    displacement = np.asarray(ddf, dtype=np.float64) * spacing.reshape(3, 1, 1, 1)  # mm
    jac = np.empty((3, 3, *ddf.shape[1:]))
    for i in range(3):
        grads = np.gradient(displacement[i], *spacing)
        for j in range(3):
            jac[i, j] = grads[j] + (1.0 if i == j else 0.0)
    return np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))


def displacement_mm(ddf: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Length (mm) of a displacement field given in voxels."""
    spacing = np.asarray(spacing, dtype=np.float64).reshape(3, 1, 1, 1)
    return np.sqrt(((np.asarray(ddf) * spacing) ** 2).sum(axis=0))
