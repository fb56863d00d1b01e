"""Intensity normalization to [-1, 1] (paper 002 §2, "Data Preprocessing" (3)).

The paper only says intensities are "rescaled to the range [-1, 1]". We clip
to the [lower, upper] percentiles of the voxels inside the brain (robust to
the few very bright vessels and to outliers), map that range linearly to
[-1, 1], and set everything outside the brain to exactly -1. Real and healthy
scans go through the same function.

A real case's brain mask comes from its images alone, never from its labels:
the mask sets the percentile clip here and the background nnU-Net sees
(``segmentation.dataset``), so a mask grown by the ground truth would leak a
held-out case's label into its inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from tumorfab.casefolder import Case, save_case
from tumorfab.io import load_nifti
from tumorfab.labels import ET, LEGACY_ET
from tumorfab.preprocess.settings import NormalizeSettings

BACKGROUND = -1.0


def normalize_intensity(image: np.ndarray, brainmask: np.ndarray, settings: NormalizeSettings) -> np.ndarray:
    """Percentile-clip inside ``brainmask`` and rescale to [-1, 1]; -1 outside."""
    inside = brainmask.astype(bool)
    if not inside.any():
        raise ValueError("empty brain mask: nothing to normalize")
    low, high = np.percentile(image[inside], [settings.lower_percentile, settings.upper_percentile])
    if high <= low:
        raise ValueError(f"brain intensities are constant ({low}); cannot normalize")
    scaled = (np.clip(image, low, high) - low) / (high - low) * 2.0 - 1.0
    return np.where(inside, scaled, BACKGROUND).astype(np.float32)


def brainmask_from_stripped(images: list[np.ndarray]) -> np.ndarray:
    """Brain mask of an already skull-stripped scan (BraTS): non-zero in any
    channel, holes filled (dark necrosis or CSF inside the brain stays inside).

    Holes are filled in 3-D only: in the BraTS case we checked
    (BraTS-GLI-00000-000, a 1480 ml mask) no tumour voxel is 0 in any
    channel, and filling each 2-D slice as well would only add ~2500 voxels of
    true background (0), in notches of the brain's outline.
    """
    nonzero = np.zeros(images[0].shape, dtype=bool)
    for image in images:
        nonzero |= image != 0
    return ndimage.binary_fill_holes(nonzero).astype(np.uint8)


def normalize_real_case(
    images: dict[str, str | Path],
    seg: str | Path,
    out_dir: str | Path,
    settings: NormalizeSettings,
    remap_label_4_to_3: bool,
) -> None:
    """Write a real BraTS case as a case folder (docs/architecture.md).

    The brain mask and the normalized images depend on the images only (see
    the module docstring); the labels are written as they are (label 4 as 3
    if asked), also where a tumour voxel lies outside the brain mask.
    """
    out_dir = Path(out_dir)
    loaded = {m: load_nifti(p) for m, p in images.items()}
    data = {m: img.get_fdata(dtype=np.float32) for m, img in loaded.items()}
    affine = next(iter(loaded.values())).affine
    brainmask = brainmask_from_stripped(list(data.values()))
    labels = np.asarray(load_nifti(seg).dataobj).astype(np.uint8)
    if remap_label_4_to_3:
        labels[labels == LEGACY_ET] = ET
    normalized = {
        modality: normalize_intensity(volume, brainmask, settings)
        for modality, volume in data.items()
    }
    save_case(Case(normalized, brainmask, labels, affine), out_dir)


def normalize_healthy_scan(
    image: str | Path,
    brainmask: str | Path,
    out_dir: str | Path,
    modality: str,
    settings: NormalizeSettings,
) -> None:
    """Write a registered healthy scan as a case folder without ``seg``."""
    out_dir = Path(out_dir)
    loaded = load_nifti(image)
    mask = np.asarray(load_nifti(brainmask).dataobj).astype(np.uint8)
    normalized = normalize_intensity(loaded.get_fdata(dtype=np.float32), mask, settings)
    save_case(Case({modality: normalized}, mask, None, loaded.affine), out_dir)
