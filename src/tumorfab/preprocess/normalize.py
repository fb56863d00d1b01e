"""Intensity normalization to [-1, 1] (paper 002 §2, "Data Preprocessing" (3)).

The paper only says intensities are "rescaled to the range [-1, 1]". Real
tumour scans and healthy scans must meet on one scale: TF-Aug pastes lesions
into healthy brains and nnU-Net trains on both. A reference taken from the
whole brain's intensity range (percentiles) moves with the tumour, so we
reference each scan to its white-matter peak instead, per sequence, as the
KDE-based white-matter normalization of Reinhold et al. 2019 (SPIE Medical
Imaging 10949, "Evaluating the impact of intensity normalization on MR
image synthesis") does: 0 maps to -1, ``ceiling x`` the white-matter peak
to +1 (``normalize.ceiling_over_white_matter``, per sequence), linearly,
clipped; everything outside the brain is exactly -1. Why the peak finder
differs from Reinhold's, and the measurements behind the ceilings:
docs/interpretations.md, "Intensity normalization".

A real case's brain mask comes from its images alone, never from its labels:
the mask sets the histogram the white-matter peak is found in and the
background nnU-Net sees (``segmentation.dataset``), so a mask grown by the
ground truth would leak a held-out case's label into its inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.signal import find_peaks

from tumorfab.casefolder import Case, case_file, save_case
from tumorfab.io import load_nifti, save_nifti
from tumorfab.labels import ET, LEGACY_ET
from tumorfab.preprocess.settings import NormalizeSettings

BACKGROUND = -1.0

#: Where white matter sits among the brain's major intensity modes: the
#: brightest on T1-weighted scans (t1n, t1c; enhancing tumour is brighter but
#: spread too wide to make a major mode), the darkest on T2 (GM, CSF, oedema
#: and tumour are brighter) and on FLAIR (CSF is darker but a minor mode in
#: an adult brain; oedema and tumour are brighter).
WHITE_MATTER_MODE = {"t1n": "brightest", "t1c": "brightest", "t2w": "darkest", "t2f": "darkest"}
#: A mode (a local maximum; a pile of voxels at the darkest or brightest
#: intensity is none) is major when its smoothed density reaches this
#: fraction of the tallest mode's (measured: white matter 0.63-1.0, the
#: minor modes of CSF and of the dark voxels at the brain's edge <= 0.25).
MAJOR_MODE_FRACTION = 0.5
#: A local maximum is a mode when it stands this fraction of the density's
#: maximum above the valleys around it: less is counting noise (measured
#: <= 0.004; the demo phantom's white-matter mode next to its larger grey
#: matter mode stands 0.009-0.05 above it, real brains' >= 0.7).
MIN_PROMINENCE = 0.005
#: Histogram smoothing: a Gaussian kernel of width (intensity range) / 80,
#: Reinhold et al.'s bandwidth, the range taken to the 99.5th percentile so
#: that vessels and outliers do not widen it.
BANDWIDTH_DIVISOR = 80
TOP_PERCENTILE = 99.5
HISTOGRAM_BINS = 2048
#: Fewest brain voxels whose histogram has a white-matter peak to find (1 ml at 1 mm).
MIN_BRAIN_VOXELS = 1000


def white_matter_peak(values: np.ndarray, channel: str) -> float:
    """The white-matter intensity of a sequence's brain voxels ``values``.

    The brightest (t1n, t1c) or darkest (t2w, t2f) major mode of the
    Gaussian-smoothed histogram (:data:`WHITE_MATTER_MODE`,
    :data:`MAJOR_MODE_FRACTION`). Raises ``ValueError`` saying what is wrong
    when there is no such peak.
    """
    if channel not in WHITE_MATTER_MODE:
        raise ValueError(f"unknown channel {channel!r}: expected one of {list(WHITE_MATTER_MODE)}")
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size < MIN_BRAIN_VOXELS:
        raise ValueError(
            f"{channel}: the brain has {values.size} voxels, too few for an intensity histogram "
            f"(at least {MIN_BRAIN_VOXELS})"
        )
    bottom, top = float(values.min()), float(np.percentile(values, TOP_PERCENTILE))
    if top <= bottom:
        raise ValueError(f"{channel}: the brain's intensities are constant ({bottom}); no white-matter peak")
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(bottom, top))
    bin_width = edges[1] - edges[0]
    # "nearest": zero padding would make a density that falls from the darkest
    # voxel on rise first, a peak that is not there.
    density = ndimage.gaussian_filter1d(
        counts.astype(np.float64), (top - bottom) / BANDWIDTH_DIVISOR / bin_width, mode="nearest"
    )
    peaks, _ = find_peaks(density, prominence=MIN_PROMINENCE * density.max())
    if peaks.size == 0:
        raise ValueError(f"{channel}: the brain's intensity histogram has no peak (no white-matter mode to scale by)")
    peaks = peaks[density[peaks] >= MAJOR_MODE_FRACTION * density[peaks].max()]
    index = peaks[-1] if WHITE_MATTER_MODE[channel] == "brightest" else peaks[0]
    peak = float(edges[index] + bin_width / 2)
    if peak <= 0:
        raise ValueError(f"{channel}: white-matter peak at {peak:g} <= 0: expected raw MRI intensities (>= 0)")
    return peak


def normalize_intensity(
    image: np.ndarray, brainmask: np.ndarray, channel: str, settings: NormalizeSettings
) -> np.ndarray:
    """``image`` (BraTS channel ``channel``) on [-1, 1]: 0 -> -1, the brain's
    white-matter peak x ``settings.ceiling(channel)`` -> +1, linear, clipped;
    -1 outside ``brainmask``."""
    inside = np.asarray(brainmask).astype(bool)
    if not inside.any():
        raise ValueError("empty brain mask: nothing to normalize")
    full_scale = settings.ceiling(channel) * white_matter_peak(image[inside], channel)
    scaled = np.clip(image.astype(np.float64) * (2.0 / full_scale) - 1.0, -1.0, 1.0)
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
        modality: normalize_intensity(volume, brainmask, modality, settings)
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
    """Write a registered healthy T1 (``modality`` t1n) as a case folder without ``seg``."""
    out_dir = Path(out_dir)
    loaded = load_nifti(image)
    mask = np.asarray(load_nifti(brainmask).dataobj).astype(np.uint8)
    normalized = normalize_intensity(loaded.get_fdata(dtype=np.float32), mask, modality, settings)
    save_case(Case({modality: normalized}, mask, None, loaded.affine), out_dir)


def normalize_healthy_channel(
    image: str | Path,
    brainmask: str | Path,
    out_dir: str | Path,
    channel: str,
    settings: NormalizeSettings,
) -> None:
    """Add another registered sequence of a healthy subject (``channel``: t2w...)
    to the subject's case folder, normalized inside the T1's brain mask
    (``brainmask``); the folder's brain mask is the T1's job
    (:func:`normalize_healthy_scan`)."""
    loaded = load_nifti(image)
    mask = np.asarray(load_nifti(brainmask).dataobj).astype(np.uint8)
    normalized = normalize_intensity(loaded.get_fdata(dtype=np.float32), mask, channel, settings)
    save_nifti(normalized, loaded.affine, case_file(out_dir, channel))
