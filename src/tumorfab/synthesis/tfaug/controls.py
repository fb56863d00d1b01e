"""Lesion controls of TF-Aug: location, size, number, intensity offset, heterogeneity.

Paper 000 makes location, size, intensity and heterogeneity configurable,
and asks how many lesions; paper 002 §4 names control of "location, size,
shape" as a possibility of TF-Aug it did not explore. The defaults (in the
config schema, the only place they live) reproduce the paper's TF-Aug: any
location (the real mask's own position plus the paper's shift), no size
constraint, one lesion per case (itself possibly a combination of masks), no
offset, no texture.

``tfaug.controls`` in the config (read by
``tumorfab.synthesis.tfaug.settings.Controls``)::

    location: {mode: any}                                # the paper's reading
    location: {mode: coordinates, center_mm: [x, y, z], radius_mm: 15}
    location: {mode: hemisphere, side: left}             # or right
    location: {mode: tissue, tissue: wm}                 # wm, gm or csf
    size_ml: [10, 40]          # whole-tumour volume of each lesion, or null
    n_lesions: [1, 3]          # lesions per case, drawn uniformly (or one int)
    offset: {ncr: -0.2, ed: 0.1, et: [0.1, 0.3]}   # added after a·x+b
    heterogeneity: {amplitude: [0, 0.1], scale_mm: 3.0}

A number or a ``[low, high]`` range (drawn uniformly per case) is accepted for
offsets, the heterogeneity amplitude and ``n_lesions``.

Interpretations (all checked after placement on the final, brain-clipped
lesion; a lesion that breaks them is re-drawn, see ``masks.place_lesions``):

* **coordinates**: world (scanner RAS, mm) coordinates of the reference grid,
  as in the NIfTI affine of the preprocessed cases. The lesion's whole-tumour
  centroid is aimed at a point drawn uniformly in the ball of ``radius_mm``
  around ``center_mm`` and must end within that ball.
* **hemisphere**: NIfTI world coordinates are RAS+ (+x towards the subject's
  right), so the subject's left hemisphere is world x below the x of the
  healthy brain mask's centre of mass (the midline is taken from the scan,
  not from the grid origin). See :func:`hemisphere_mask`.
* **tissue**: the healthy scans are registered to the BraTS (SRI24) grid, not
  to MNI space, so the shipped MNI tissue maps do not apply without one more
  registration. We classify the healthy scan itself: a 3-class k-means of its
  T1 intensities inside the brain mask (CSF darkest, then GM, then WM), see
  :func:`tissue_classes`. The centroid voxel must lie in the requested class.
* **size_ml**: each lesion's volume after the brain clip lies in the range.
* **n_lesions**: separate lesions, never touching (26-connectivity), so the
  label map has that many connected components when every source mask is one
  component (real masks with satellites add their satellites).
* **offset**: per subregion, added to the intensity after ``a·x + b`` (same
  for every modality), before the final clip to [-1, 1].
* **heterogeneity**: a smooth random texture inside the lesion: white noise
  blurred by a Gaussian of ``scale_mm``, scaled to unit standard deviation
  over the lesion, times ``amplitude``; added after the offset.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2

from tumorfab.labels import LABELS
from tumorfab.synthesis.tfaug.masks import Grid
from tumorfab.synthesis.tfaug.settings import TISSUES, Controls, LocationSpec


def draw_count(controls: Controls, rng: np.random.Generator) -> int:
    """Number of lesions of one case (one draw from ``rng``)."""
    return int(rng.integers(controls.n_lesions[0], controls.n_lesions[1] + 1))


def draw_appearance(controls: Controls, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Per-label offsets (index = label value, 0 unused) and the texture amplitude.

    Always four draws from ``rng``, whatever the values, so a change of one
    control does not shift the others' draws.
    """
    offsets = np.zeros(len(LABELS), dtype=np.float32)
    for label, (low, high) in controls.offset:
        offsets[label] = rng.uniform(low, high)
    amplitude = float(rng.uniform(*controls.heterogeneity_amplitude))
    return offsets, amplitude


# --- Location rules bound to one healthy scan -------------------------------------------
def tissue_classes(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """CSF (1), GM (2), WM (3) of a T1 scan from its own intensities inside ``brain``; 0 outside.

    A 1-D k-means with 3 classes (``scipy.cluster.vq.kmeans2``), started at
    the 10th, 50th and 90th intensity percentiles inside the brain, so the
    result is deterministic; classes are ordered by mean intensity (T1: CSF <
    GM < WM).
    """
    brain = np.asarray(brain, dtype=bool)
    values = np.asarray(image, dtype=np.float64)[brain]
    start = np.percentile(values, [10, 50, 90])[:, None]
    centres, assigned = kmeans2(values[:, None], start, minit="matrix", iter=20, missing="raise")
    order = np.argsort(centres[:, 0])
    rank = np.empty(3, dtype=np.uint8)
    rank[order] = np.arange(1, 4, dtype=np.uint8)
    classes = np.zeros(brain.shape, dtype=np.uint8)
    classes[brain] = rank[assigned]
    return classes


def hemisphere_mask(brain: np.ndarray, grid: Grid, side: str) -> np.ndarray:
    """Brain voxels of one hemisphere.

    NIfTI world coordinates are RAS+ (+x points to the subject's right), so
    the subject's **left** hemisphere is world ``x <`` the x of the brain
    mask's centre of mass, the right one ``x >=`` it. The midline is taken
    from the healthy scan's own brain mask, not from the grid origin (SRI24's
    origin need not lie on the midline). Assumes an axis-aligned grid (BraTS
    and the demo's are): world x then depends on the LR axis index only.
    """
    brain = np.asarray(brain, dtype=bool)
    x_axis = grid.lr_axis
    index = np.arange(brain.shape[x_axis], dtype=np.float64)
    # World x of each index along the LR axis (other axes contribute a constant
    # per slice for an axis-aligned grid; we use the brain centre for them).
    centre = np.asarray(ndimage.center_of_mass(brain))
    points = np.repeat(centre[None], len(index), axis=0)
    points[:, x_axis] = index
    world_x = grid.to_world(points)[:, 0]
    mid_x = grid.to_world(centre)[0]
    chosen = world_x < mid_x if side == "left" else world_x >= mid_x
    shape = [1, 1, 1]
    shape[x_axis] = len(index)
    return brain & chosen.reshape(shape)


class LocationRule:
    """A location control bound to one healthy scan: where to aim, and what to accept."""

    def __init__(self, spec: LocationSpec, grid: Grid, brain: np.ndarray, image: np.ndarray | None, shift_mm: float):
        self.spec, self.grid = spec, grid
        self.shift_vox = float(shift_mm) / grid.spacing
        self.allowed = None
        if spec.mode == "hemisphere":
            self.allowed = hemisphere_mask(brain, grid, spec.side)
        elif spec.mode == "tissue":
            if image is None:
                raise ValueError("location mode tissue needs the healthy image")
            self.allowed = tissue_classes(image, brain) == TISSUES[spec.tissue]
        if self.allowed is not None:
            self._candidates = np.flatnonzero(self.allowed)
            if len(self._candidates) == 0:
                raise ValueError(f"location {spec.record()}: no brain voxel qualifies in this scan")

    def sample(self, rng: np.random.Generator, source_centroid: np.ndarray) -> np.ndarray:
        """Target (voxel index, float) for a lesion's centroid."""
        mode = self.spec.mode
        if mode == "any":
            return np.asarray(source_centroid) + rng.uniform(-1.0, 1.0, 3) * self.shift_vox
        if mode == "coordinates":
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction) + 1e-12
            radius = self.spec.radius_mm * rng.random() ** (1.0 / 3.0)
            return self.grid.to_index(np.asarray(self.spec.center_mm) + radius * direction)
        flat = self._candidates[int(rng.integers(len(self._candidates)))]
        return np.asarray(np.unravel_index(flat, self.allowed.shape), dtype=np.float64)

    def accepts(self, centroid: np.ndarray) -> bool:
        """Whether a placed lesion's centroid (voxel index, float) obeys the control."""
        mode = self.spec.mode
        if mode == "any":
            return True
        if mode == "coordinates":
            distance = np.linalg.norm(self.grid.to_world(centroid) - np.asarray(self.spec.center_mm))
            return bool(distance <= self.spec.radius_mm)
        voxel = tuple(int(v) for v in np.clip(np.rint(centroid), 0, np.asarray(self.allowed.shape) - 1))
        return bool(self.allowed[voxel])

