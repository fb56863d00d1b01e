"""Intensity normalization to [-1, 1] (paper 002 §2, "Data Preprocessing" (3)).

The paper only says intensities are "rescaled to the range [-1, 1]". Real
tumour scans and healthy scans must meet on one scale: TF-Aug pastes lesions
into healthy brains and nnU-Net trains on both. A reference taken from the
whole brain's intensity range (percentiles) moves with the tumour, so we
reference each scan to its white matter instead, as the fuzzy c-means (FCM)
white-matter normalization of Reinhold et al. 2019 (SPIE Medical Imaging
10949, "Evaluating the impact of intensity normalization on MR image
synthesis"; their ``intensity-normalization`` package) does:

* the case's T1 (t1n) brain voxels are clustered into three tissue classes
  with scikit-fuzzy's ``cmeans`` (:func:`white_matter`); white matter is the
  brightest class, its voxels those of membership > 0.8;
* every sequence of the case is referenced to its own median inside that
  T1-defined white matter (:func:`white_matter_level`): on T2 and FLAIR white
  matter is no extreme class, and the T1's tissue classes hold for every
  co-registered sequence;
* 0 maps to -1, ``ceiling x`` the white-matter level to +1
  (``normalize.ceiling_over_white_matter``, per sequence), linearly,
  clipped; everything outside the brain is exactly -1.

Why FCM rather than the peak of the smoothed histogram we used before, and
the measurements behind the ceilings: docs/interpretations.md, "Intensity
normalization".

A real case's brain mask comes from its images alone, never from its labels:
the mask sets the voxels the tissue classes are found in and the
background nnU-Net sees (``segmentation.dataset``), so a mask grown by the
ground truth would leak a held-out case's label into its inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage
from skfuzzy import cmeans, cmeans_predict

from tumorfab.casefolder import Case, case_file, save_case
from tumorfab.io import load_nifti, save_nifti
from tumorfab.labels import ET, LEGACY_ET
from tumorfab.preprocess.settings import NormalizeSettings

BACKGROUND = -1.0

#: The channel whose tissue classes define white matter for every sequence of a scan.
TISSUE_CHANNEL = "t1n"
#: CSF, grey and white matter (darkest to brightest on a T1); tumour falls
#: into the darker two (necrosis and oedema are dark on t1n).
TISSUE_CLASSES = 3
#: scikit-fuzzy's ``m``, and the membership above which a voxel is white
#: matter: ``intensity-normalization``'s FCM defaults.
FUZZINESS = 2.0
WHITE_MATTER_MEMBERSHIP = 0.8
#: The classes are fitted on at most this many brain voxels (every k-th in
#: C order: no randomness), then every voxel's membership follows from the
#: fitted class centres: a 1 mm brain has ~1.5 M voxels and the centres move
#: by < 0.1 % (measured on the real BraTS case), at a tenth of the time.
FIT_VOXELS = 100_000
FIT_TOLERANCE = 1e-6
FIT_MAX_ITERATIONS = 500
#: The T1's intensities are clipped at this percentile of the brain's before
#: clustering.
TOP_PERCENTILE = 99.5
#: Fewest brain voxels to find tissue classes in (1 ml at 1 mm), and fewest
#: white-matter voxels to take a level from.
MIN_BRAIN_VOXELS = 1000
MIN_WHITE_MATTER_VOXELS = 100


def white_matter(t1: np.ndarray, brainmask: np.ndarray) -> np.ndarray:
    """The white matter (bool, the volume's shape) of a T1 ``t1`` inside ``brainmask``.

    Fuzzy c-means with :data:`TISSUE_CLASSES` classes on the brain's
    intensities, started from the intensity tertiles (so the result does not
    depend on a random start), clipped at the :data:`TOP_PERCENTILE`; white
    matter is the brightest class's voxels of membership >
    :data:`WHITE_MATTER_MEMBERSHIP`. Raises ``ValueError``
    saying what is wrong when the brain is too small, constant or has no
    white matter.
    """
    inside = np.asarray(brainmask).astype(bool)
    values = np.asarray(t1, dtype=np.float64)[inside]
    if values.size < MIN_BRAIN_VOXELS:
        raise ValueError(
            f"{TISSUE_CHANNEL}: the brain has {values.size} voxels, too few to find its tissue classes "
            f"(at least {MIN_BRAIN_VOXELS})"
        )
    if values.min() == values.max():
        raise ValueError(f"{TISSUE_CHANNEL}: the brain's intensities are constant ({values[0]:g}); no white matter")
    # Vessels and artefacts far above the rest would make a class of their own.
    values = np.minimum(values, np.percentile(values, TOP_PERCENTILE))
    sample = values[:: -(-values.size // FIT_VOXELS)]
    tertiles = np.searchsorted(np.percentile(sample, [100 / 3, 200 / 3]), sample, side="right")
    start = (tertiles == np.arange(TISSUE_CLASSES)[:, None]).astype(np.float64)
    centres = cmeans(
        sample[None], TISSUE_CLASSES, FUZZINESS, error=FIT_TOLERANCE, maxiter=FIT_MAX_ITERATIONS, init=start
    )[0]
    # The memberships follow from the centres alone: one prediction step.
    uniform = np.full((TISSUE_CLASSES, values.size), 1.0 / TISSUE_CLASSES)
    membership = cmeans_predict(values[None], centres, FUZZINESS, error=0.0, maxiter=1, init=uniform)[0]
    white = np.zeros(inside.shape, dtype=bool)
    white[inside] = membership[int(np.argmax(centres[:, 0]))] > WHITE_MATTER_MEMBERSHIP
    if white.sum() < MIN_WHITE_MATTER_VOXELS:
        raise ValueError(
            f"{TISSUE_CHANNEL}: {int(white.sum())} voxels of white matter (membership > "
            f"{WHITE_MATTER_MEMBERSHIP}), too few to scale by (at least {MIN_WHITE_MATTER_VOXELS})"
        )
    return white


def white_matter_level(image: np.ndarray, white: np.ndarray, channel: str) -> float:
    """The median of sequence ``channel``'s ``image`` in the white matter ``white``
    (:func:`white_matter`): robust to the few tumour voxels the T1 puts there."""
    level = float(np.median(np.asarray(image)[white]))
    if level <= 0:
        raise ValueError(f"{channel}: white matter at {level:g} <= 0: expected raw MRI intensities (>= 0)")
    return level


def normalize_intensity(
    image: np.ndarray, brainmask: np.ndarray, channel: str, white: np.ndarray, settings: NormalizeSettings
) -> np.ndarray:
    """``image`` (BraTS channel ``channel``) on [-1, 1]: 0 -> -1, its level in
    the white matter ``white`` (:func:`white_matter`, from the scan's T1) x
    ``settings.ceiling(channel)`` -> +1, linear, clipped; -1 outside ``brainmask``."""
    inside = np.asarray(brainmask).astype(bool)
    if not inside.any():
        raise ValueError("empty brain mask: nothing to normalize")
    full_scale = settings.ceiling(channel) * white_matter_level(image, white, channel)
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
    if TISSUE_CHANNEL not in data:
        raise ValueError(
            f"{seg}: the case has no {TISSUE_CHANNEL} among {sorted(data)}; its tissue classes, which every "
            "sequence is scaled by, come from the T1"
        )
    white = white_matter(data[TISSUE_CHANNEL], brainmask)
    normalized = {
        modality: normalize_intensity(volume, brainmask, modality, white, settings)
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
    t1 = loaded.get_fdata(dtype=np.float32)
    normalized = normalize_intensity(t1, mask, modality, white_matter(t1, mask), settings)
    save_case(Case({modality: normalized}, mask, None, loaded.affine), out_dir)


def normalize_healthy_channel(
    image: str | Path,
    t1: str | Path,
    brainmask: str | Path,
    out_dir: str | Path,
    channel: str,
    settings: NormalizeSettings,
) -> None:
    """Add another registered sequence of a healthy subject (``channel``: t2w...)
    to the subject's case folder, normalized inside the T1's brain mask
    (``brainmask``) and scaled by its level in the white matter of the
    registered T1 ``t1`` (:func:`white_matter`, found again: it is
    deterministic); the folder's brain mask is the T1's job
    (:func:`normalize_healthy_scan`)."""
    loaded = load_nifti(image)
    mask = np.asarray(load_nifti(brainmask).dataobj).astype(np.uint8)
    white = white_matter(load_nifti(t1).get_fdata(dtype=np.float32), mask)
    normalized = normalize_intensity(loaded.get_fdata(dtype=np.float32), mask, channel, white, settings)
    save_nifti(normalized, loaded.affine, case_file(out_dir, channel))
