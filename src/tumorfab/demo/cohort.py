"""The embedded demo cohort: a phantom built from the MNI152 template that ships with nilearn.

**This is a phantom for running the pipeline end to end on a laptop, not data to
draw conclusions from.** Nothing here is a real patient or a real scan: every
"patient" and every "healthy subject" is the same brain template, warped, with
drawn-in lesions or a drawn-on head. Dice scores, p-values and tables computed
on it test the plumbing of the workflow, not the method.

Where the data come from
    Only the three MNI152 2009a files shipped inside the nilearn package
    (``nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``,
    197x233x189, 1 mm, RAS). The T1 is already skull-stripped: its non-zero
    voxels are the brain mask. Nothing is downloaded.

What is written (the layouts of the real data: BraTS 2023 and IXI, README "Running on real data")
    * ``<brats_root>/BraTS-GLI-XXXXX-YYY/BraTS-GLI-XXXXX-YYY-{<channel>,seg}.nii.gz``:
      tumour "patients" in the BraTS 2023 layout, skull-stripped, all on one
      reference grid (see :func:`make_demo_cohort`); one float32 image per
      BraTS channel asked for (t1n, as the paper uses, by default; any of t1n,
      t1c, t2w, t2f) with a background of exactly 0 outside the brain, seg
      uint8 with the BraTS labels 0 background, 1 NCR, 2 ED, 3 ET, all three
      present in every case.
    * ``<healthy_root>/IXI<id>-Demo-<num>-<sequence>.nii.gz``: healthy
      "subjects" in IXI naming, a T1 and any other sequence asked for (e.g.
      T2), with a synthetic scalp and skull, a head pose, a bias field and
      Rician noise, on their own grids (not the BraTS grid; a subject's other
      sequences on yet other grids, as IXI's T2 is not on its T1's grid), no
      lesions.

Contrasts
    t1n and t1c show the template's T1; t2w and t2f are mixed from the
    template's tissue maps (white matter, grey matter, and CSF = the rest of
    the brain) with levels from the spin-echo and inversion-recovery signal
    equations; lesions are drawn per channel (:data:`CONTRASTS`,
    docs/interpretations.md "Four-sequence demo cohort").

Randomness
    Every random choice comes from ``numpy.random.default_rng`` seeded by
    ``numpy.random.SeedSequence([seed, stream, index, ...])``: stream 0 is a
    patient's anatomy and lesion (index = patient number), stream 1 one scan of
    a patient (index = patient, timepoint: acquisition noise and lesion texture),
    stream 2 a healthy subject (index = its number); these are t1n's and the T1
    head's. Every other channel draws from streams of its own (index ending in
    the channel's place in :data:`BRATS_CHANNELS`): stream 3 a patient's
    channel (gain, lesion levels), stream 4 one scan of it, stream 5 a healthy
    subject's other sequence (grid, head motion, gain, bias, noise). A file
    therefore depends only on ``seed``, its own index, its channel and
    ``voxel_mm``: asking for more patients, second timepoints or channels adds
    files without changing the others (the t1n and T1 files of a four-sequence
    cohort are those of a t1n-only one), and the same arguments give
    bit-identical files (nibabel writes gzip with no file name and mtime 0).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from tumorfab.demo import planned_cases, planned_healthy
from tumorfab.fields import SmoothField
from tumorfab.io import save_nifti
from tumorfab.labels import ED, ET, LABELS, NCR

__all__ = ["BRATS_CHANNELS", "CONTRASTS", "Contrast", "make_demo_cohort"]

# --- Template -----------------------------------------------------------------
TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

#: Every random field here is a ``tumorfab.fields.SmoothField`` (smooth, in
#: (-1, 1)). Fields of a whole brain or head cover the template's brain box plus
#: this margin (mm): more than any grid here reaches (the widest, a healthy
#: head's field of view, adds ``HEALTHY_MARGIN_MM`` and a voxel).
FIELD_MARGIN_MM = 60.0

#: Coarsest supported voxel (mm): a lesion needs about 6 voxels of radius for a
#: necrotic core, an enhancing rim and oedema, and must fit inside the brain.
MAX_VOXEL_MM = 6.0

# --- Patients (BraTS phantom) ----------------------------------------------------
#: Per-axis global scaling of a patient's brain about the brain centre, +-.
PATIENT_SCALE = 0.03
#: Largest displacement (mm) of the smooth random deformation of every brain.
DEFORM_MM = 4.0
#: Control-point spacing (mm) of that deformation: features of ~2-3 cm.
DEFORM_SPACING_MM = 12.0
#: Margin (mm) of the reference grid around the template's brain box, on top of
#: one voxel: the largest shift the scaling and deformation can cause.
GRID_MARGIN_MM = 7.0
#: Patient intensity gain range (BraTS t1n scales differ between patients).
PATIENT_GAIN = (0.85, 1.2)
#: Acquisition noise of a BraTS phantom scan, as a fraction of white matter.
PATIENT_NOISE = 0.01

# --- Lesions ------------------------------------------------------------------
#: Whole-tumour mean semi-axis (mm): drawn in [max(14, 6 voxels), that + 10].
LESION_RADIUS_MM = 14.0
LESION_RADIUS_VOXELS = 6.0
LESION_RADIUS_SPREAD_MM = 10.0
#: Growth of the whole tumour from timepoint 000 to 001 (factor on every axis).
LESION_GROWTH = (1.15, 1.35)
#: Amplitude of the irregular outer (ED) boundary, in units of the semi-axes.
LESION_SHAPE_NOISE = 0.3
#: Amplitude of the irregular NCR/ET boundaries, same units.
LESION_CORE_NOISE = 0.08
#: Lesion intensities, as a fraction of the patient's white matter, each label
#: in its own band so that a small network learns the three regions in a few
#: hundred iterations (the demo's nnU-Net): NCR darker than any healthy tissue,
#: ED a flat dark level (oedema washes out the grey/white contrast) between
#: CSF and grey matter, ET an enhancing rim brighter than any healthy tissue
#: (the template's brain reaches 1.06 x white), as on a contrast T1. The
#: template sampled at 3 mm spans 0.40-1.06 x white (0.5-99.5 %).
NCR_LEVEL = (0.20, 0.35)
ED_LEVEL = (0.50, 0.60)
ET_LEVEL = (1.20, 1.40)
#: Thinnest ET rim, in voxels (and at least 3 mm): a rim of one voxel is mostly
#: partial volume, which a network learns late or never.
ET_RIM_VOXELS = 2.0
#: Multiplicative texture amplitude inside the lesion.
LESION_TEXTURE = 0.08

# --- Healthy subjects (IXI phantom) -------------------------------------------------
#: In-plane and through-plane voxel size, as factors on ``voxel_mm``.
HEALTHY_INPLANE = (0.85, 1.0)
HEALTHY_THROUGH_PLANE = (1.1, 1.3)
#: Field of view: the brain box plus this margin (mm) on every side.
HEALTHY_MARGIN_MM = 40.0
HEALTHY_SCALE = 0.05
HEALTHY_MAX_ROTATION_DEG = 10.0
HEALTHY_MAX_TRANSLATION_MM = 10.0
#: Intensity gain on the template's units: a scanner scale unlike the BraTS one.
HEALTHY_GAIN = (2.5, 4.0)
#: Bias field: exp(amplitude * smooth field in [-1, 1]), control points every 50 mm.
BIAS_AMPLITUDE = 0.2
BIAS_SPACING_MM = 50.0
#: Rician noise sigma as a fraction of white matter.
HEALTHY_NOISE = 0.025
#: Head layers outside the brain: the brain's closed, smoothed outline (sulci
#: filled) is surrounded by CSF, then skull, then scalp; thickness mm (mean,
#: +- smooth variation) and T1 level as a fraction of white matter.
HULL_SMOOTH_MM = 4.0
CSF_MM = (1.5, 0.5)
SKULL_MM = (5.0, 1.5)
SCALP_MM = (5.0, 2.0)
CSF_LEVEL = 0.12
SKULL_LEVEL = 0.05
SCALP_LEVEL = 0.9

# --- Other channels (t1c, t2w, t2f) ---------------------------------------------------
#: The BraTS channels the phantom can write; a channel's place here keys its
#: random streams.
BRATS_CHANNELS = ("t1n", "t1c", "t2w", "t2f")


@dataclass(frozen=True)
class Contrast:
    """How one channel other than t1n shows the brain, a lesion and the head (levels x white matter)."""

    tissue: tuple[float, float, float] | None  # WM, GM, CSF; None: the template's T1
    lesion: Mapping[int, tuple[float, float]]  # band of NCR, ET, ED
    head: tuple[float, float, float]  # CSF, skull, scalp outside the brain
    surface_enhancement: float = 0.0  # added to the CSF at the brain's surface (:func:`_surface_csf`)


#: Healthy tissue: t2w and t2f from the spin-echo signal PD (1 - exp(-TR/T1))
#: exp(-TE/T2) (TR 4000, TE 100 ms) and the FLAIR signal PD |1 - 2 exp(-TI/T1)
#: + exp(-TR/T1)| exp(-TE/T2) (TR 9000, TI 2500, TE 100 ms), with the 3 T
#: relaxation times of Wansapura et al. 1999 (JMRI 9:531; WM T1 832, T2 80 ms;
#: GM 1331, 110 ms), CSF T1 4000, T2 2000 ms and proton densities 0.7, 0.8,
#: 1.0: T2w GM 1.54 and CSF 3.0 x WM, FLAIR GM 1.24 and CSF 0.18 x WM. Lesions
#: as Menze et al. 2015 (the BraTS paper, IEEE TMI 34:1993) describe them:
#: oedema bright on T2 and FLAIR, the enhancing rim brighter on t1c than on
#: t1n (whose ET band is already bright, ``ET_LEVEL``), the necrotic core
#: fluid-like (dark on t1c and FLAIR, bright on T2). The head: skull dark on
#: every sequence, scalp fat bright on all (fast spin echo keeps fat bright).
#: Healthy t1c is t1n's anatomy plus what gadolinium enhances outside a
#: tumour: the dura and the cortical veins in the CSF at the brain's surface
#: (``surface_enhancement``, x white matter, :func:`_surface_csf`), which no
#: monotone map of the T1 can make (the ventricles' CSF stays dark).
CONTRASTS = {
    "t1c": Contrast(
        tissue=None,
        lesion={NCR: NCR_LEVEL, ET: (1.80, 2.20), ED: ED_LEVEL},
        head=(CSF_LEVEL, SKULL_LEVEL, SCALP_LEVEL),
        surface_enhancement=1.0,
    ),
    "t2w": Contrast(
        tissue=(1.0, 1.5, 3.0),
        lesion={NCR: (2.50, 2.90), ET: (1.30, 1.60), ED: (1.90, 2.30)},
        head=(3.0, SKULL_LEVEL, 1.2),
    ),
    "t2f": Contrast(
        tissue=(1.0, 1.25, 0.2),
        lesion={NCR: (0.35, 0.55), ET: (1.20, 1.45), ED: (1.60, 1.90)},
        head=(0.2, SKULL_LEVEL, 1.0),
    ),
}
#: A healthy subject's other sequence: its own grid, axes permuted against the
#: T1's (sagittal slices, stored posterior-inferior-right: voxel axes along
#: -y, -z, +x) with the T1's voxel-size ranges, and the head moved by a small
#: rigid motion between the two scans (up to these degrees and mm), which
#: co-registration to the T1 must undo.
SEQUENCE_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
SEQUENCE_MAX_ROTATION_DEG = 3.0
SEQUENCE_MAX_TRANSLATION_MM = 3.0


def make_demo_cohort(
    brats_root: str | os.PathLike,
    healthy_root: str | os.PathLike,
    *,
    n_patients: int,
    n_second_timepoint: int,
    n_healthy: int,
    voxel_mm: float,
    seed: int,
    modalities: Sequence[str] = ("t1n",),
    healthy_sequences: Mapping[str, str] | None = None,
) -> None:
    """Write the phantom demo cohort (a phantom for running the pipeline, not data).

    Tumour patients (``<brats_root>/<case>/<case>-{<channel>,seg}.nii.gz`` for
    every channel of ``modalities``, one per :func:`planned_cases` id):

    * Grid: the MNI brain's bounding box plus ``GRID_MARGIN_MM`` + one voxel on
      every side, at ``voxel_mm`` isotropic, axes in RAS mm (56x68x59 at 3 mm,
      43x52x45 at 4 mm). Every case is on this one grid, as BraTS cases share
      SRI24. The template's field of view cuts the brainstem, so the brain
      reaches the lowest slice or two; elsewhere a margin of zeros remains.
    * Anatomy: the template, anti-aliased (Gaussian, FWHM sqrt(voxel^2 - 1 mm^2),
      normalised inside the brain so the brain edge does not darken) and sampled
      (trilinear) through a per-patient transform: a scaling of
      +-``PATIENT_SCALE`` per axis and a smooth random displacement of at most
      ``DEFORM_MM`` (a ``tumorfab.fields.SmoothField``; control points every
      ``DEFORM_SPACING_MM``).
      Brain mask = the sampled template mask > 0.5; outside it the image is
      exactly 0, inside it > 0. Intensities keep the template's units (0-255)
      times a gain in ``PATIENT_GAIN``, plus Gaussian noise (``PATIENT_NOISE``).
    * Lesion: one per patient, centred where the white-matter probability is
      >= 0.5 (cerebrum, brainstem or cerebellum alike), deep enough that the
      tumour core (NCR + ET) stays inside the brain at both timepoints; a
      randomly rotated ellipsoid (mean semi-axis ``LESION_RADIUS_*``) with
      irregular boundaries (smooth random fields added to the ellipsoidal
      radius): NCR (1) core, ET (3) rim around it, ED (2) around both; labels
      are clipped to the brain mask, and a draw lacking a label is redrawn.
      Each label its own intensity band: NCR darkest (``NCR_LEVEL``), ED a
      flat dark level (``ED_LEVEL``), ET a bright enhancing rim of at least
      ``ET_RIM_VOXELS`` voxels (``ET_LEVEL``, above any healthy tissue, as on
      a contrast T1); a smooth multiplicative texture (``LESION_TEXTURE``);
      soft intensity edges (Gaussian sigma 0.5 voxel) while the labels stay
      hard. No mass effect.
    * Timepoint 001: the same anatomy, the lesion grown by a factor in
      ``LESION_GROWTH`` about the same centre with the same irregular shape and
      a larger necrotic fraction; a new acquisition noise and texture draw.
    * Other channels (t1c, t2w, t2f): the same anatomy and labels; the brain
      as :data:`CONTRASTS` says (t1c the template's T1, t2w and t2f mixed
      from its tissue maps), each channel its own gain in ``PATIENT_GAIN``,
      lesion levels in its own bands, lesion texture and noise as t1n's.

    Healthy subjects (``<healthy_root>/<name>``, one per :func:`planned_healthy`
    name): each on its own RAS grid (voxel ``voxel_mm`` times in-plane and
    through-plane factors, a field of view of the brain box plus
    ``HEALTHY_MARGIN_MM``), so never on the BraTS grid; the template deformed as
    above (scaling +-``HEALTHY_SCALE``), posed in the scanner by a rotation of up
    to ``HEALTHY_MAX_ROTATION_DEG`` about a random axis and a translation of up
    to ``HEALTHY_MAX_TRANSLATION_MM`` (applied by resampling, the affine stays
    the scanner's grid); a head around the brain: the brain's smoothed outline
    filled with CSF, a CSF layer, a dark skull band and a bright scalp band of
    smoothly varying thickness (closed below the cut brainstem too, since the
    template has no neck); a multiplicative smooth bias field; Rician noise
    everywhere, including the background. The deformation and the layer
    thicknesses are drawn on the scanner grid (random either way). Stored as
    float32 RAS (real IXI files are int16 in another orientation). No lesions.
    Written as ``IXI<id>-Demo-<num>-<sequence>.nii.gz``, one file per entry
    of ``healthy_sequences`` (BraTS channel -> sequence name; default
    ``{"t1n": "T1"}``, t1n required): the t1n file is that head; another
    channel shows the same head (its contrast from :data:`CONTRASTS`) moved
    by a small rigid motion (``SEQUENCE_MAX_*``), on a grid of its own
    (``SEQUENCE_AXES``, the T1's voxel-size ranges, the same field of view in
    world coordinates), with its own gain, bias field and noise.

    ``voxel_mm`` above ``MAX_VOXEL_MM`` (too coarse for a lesion with all three
    labels) raises ``ValueError``, as do a channel outside :data:`BRATS_CHANNELS`
    and ``healthy_sequences`` without t1n. Every file is written atomically
    (``tumorfab.io.save_nifti``).
    """
    healthy_sequences = dict(healthy_sequences or {"t1n": "T1"})
    _check_channels(modalities, healthy_sequences)
    cases = planned_cases(n_patients, n_second_timepoint)
    names = {channel: planned_healthy(n_healthy, sequence) for channel, sequence in healthy_sequences.items()}
    if not 0 < voxel_mm <= MAX_VOXEL_MM:
        raise ValueError(
            f"demo: voxel_mm={voxel_mm} is outside (0, {MAX_VOXEL_MM}]: coarser grids are "
            "too coarse for a phantom lesion with NCR, ED and ET"
        )
    voxel_mm = float(voxel_mm)
    brats_root, healthy_root = Path(brats_root), Path(healthy_root)

    header = nib.Nifti1Header()
    header.set_xyzt_units("mm")
    grid = _reference_grid(voxel_mm)
    for patient in range(n_patients):
        timepoints = [t for t in (0, 1) if f"BraTS-GLI-{patient:05d}-{t:03d}" in cases]
        patient_rng = _rng(seed, 0, patient)  # anatomy, then lesion
        anatomy = _patient_anatomy(patient_rng, grid, voxel_mm)
        lesion = _draw_lesion(patient_rng, anatomy, grid, voxel_mm)
        ncr_level, et_level, ed_level = lesion.levels
        channels = {
            channel: (
                _Channel(anatomy.tissue, anatomy.white, {NCR: ncr_level, ET: et_level, ED: ed_level})
                if channel == "t1n"
                else _patient_channel(
                    _rng(seed, 3, patient, BRATS_CHANNELS.index(channel)), channel, anatomy, voxel_mm
                )
            )
            for channel in modalities
        }
        for timepoint in timepoints:
            case = f"BraTS-GLI-{patient:05d}-{timepoint:03d}"
            labels, region = _rasterise(lesion, anatomy, grid, timepoint)
            seg = np.zeros(grid.shape, dtype=np.uint8)
            seg[region] = labels
            for channel, contrast in channels.items():
                scan_rng = (
                    _rng(seed, 1, patient, timepoint)
                    if channel == "t1n"
                    else _rng(seed, 4, patient, timepoint, BRATS_CHANNELS.index(channel))
                )
                image = _patient_scan(scan_rng, contrast, anatomy.brain, labels, region, grid)
                save_nifti(image, grid.affine, brats_root / case / f"{case}-{channel}.nii.gz", header)
            save_nifti(seg, grid.affine, brats_root / case / f"{case}-seg.nii.gz", header)

    for index in range(n_healthy):
        image, affine, head = _healthy_head(_rng(seed, 2, index), voxel_mm)
        save_nifti(image, affine, healthy_root / names["t1n"][index], header)
        for channel in healthy_sequences:
            if channel != "t1n":
                sequence_rng = _rng(seed, 5, index, BRATS_CHANNELS.index(channel))
                image, affine = _healthy_sequence(sequence_rng, channel, head, voxel_mm)
                save_nifti(image, affine, healthy_root / names[channel][index], header)


def _check_channels(modalities: Sequence[str], healthy_sequences: Mapping[str, str]) -> None:
    unknown = [c for c in [*modalities, *healthy_sequences] if c not in BRATS_CHANNELS]
    if unknown:
        raise ValueError(f"demo: channel {unknown[0]!r} is not one of the BraTS channels {list(BRATS_CHANNELS)}")
    if len(set(modalities)) != len(modalities) or not modalities:
        raise ValueError(f"demo: modalities must be distinct BraTS channels, got {list(modalities)}")
    if "t1n" not in healthy_sequences:
        raise ValueError(f"demo: healthy_sequences must map t1n (the healthy T1), got {dict(healthy_sequences)}")
    if len(set(healthy_sequences.values())) != len(healthy_sequences):
        raise ValueError(f"demo: healthy_sequences maps two channels to one sequence name: {dict(healthy_sequences)}")


# --- Internals -------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *key]))


def _matvec(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``matrix @ points`` for (3, 3) x (3, N) without BLAS (no thread pool on a shared CPU)."""
    return np.einsum("ij,jn->in", matrix, points)


@dataclass(frozen=True)
class _Template:
    """The template cropped to its brain box (+8 voxels), ready for sampling."""

    t1: np.ndarray  # float32, template units (0-255), anti-aliased inside the brain
    mask: np.ndarray  # float32 in [0, 1], anti-aliased brain mask
    wm: np.ndarray  # float32 in [0, 1], anti-aliased white-matter probability
    affine: np.ndarray  # voxel -> world (mm, RAS) of the cropped arrays
    inverse: np.ndarray  # world -> voxel
    brain_lo: np.ndarray  # world box of the brain (mm)
    brain_hi: np.ndarray
    white: float  # median T1 of white matter (WM probability > 0.9)
    crop: tuple[slice, ...]  # of the template's files
    sigma: float  # of the anti-aliasing Gaussian, in 1 mm voxels


def _template_images() -> dict[str, nib.Nifti1Image]:
    import nilearn  # imported here: only the demo needs it

    folder = Path(nilearn.__file__).parent / "datasets" / "data"
    return {key: nib.load(str(folder / name)) for key, name in TEMPLATE_FILES.items()}


@functools.lru_cache(maxsize=4)
def _template(voxel_mm: float) -> _Template:
    """Load the shipped MNI152 files and anti-alias them for sampling at ``voxel_mm``."""
    images = _template_images()
    t1 = np.asarray(images["t1"].dataobj, dtype=np.float32)
    wm = np.asarray(images["wm"].dataobj, dtype=np.float32) / 255.0
    affine = images["t1"].affine.astype(np.float64)
    brain = t1 > 0
    white = float(np.median(t1[wm > 0.9]))

    index = np.argwhere(brain)
    lo_i, hi_i = index.min(0), index.max(0)
    brain_lo = affine[:3, :3] @ lo_i + affine[:3, 3]
    brain_hi = affine[:3, :3] @ hi_i + affine[:3, 3]
    start = np.maximum(lo_i - 8, 0)
    stop = np.minimum(hi_i + 9, t1.shape)
    crop = tuple(slice(a, b) for a, b in zip(start, stop))
    t1, wm, mask = t1[crop], wm[crop], brain[crop].astype(np.float32)
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]

    sigma = math.sqrt(max(voxel_mm**2 - 1.0, 0.0)) / 2.3548  # in 1 mm voxels
    if sigma > 0.1:
        smooth_mask = ndimage.gaussian_filter(mask, sigma)
        weighted = ndimage.gaussian_filter(t1 * mask, sigma)
        # Normalised convolution: the brain's own mean near its edge, also just
        # outside it, so trilinear sampling at the edge mixes in no background.
        t1 = np.where(smooth_mask > 1e-3, weighted / np.maximum(smooth_mask, 1e-3), 0.0)
        t1 = t1.astype(np.float32)
        mask = smooth_mask
        wm = ndimage.gaussian_filter(wm, sigma)
    for array in (t1, mask, wm):
        array.setflags(write=False)
    return _Template(
        t1=t1,
        mask=mask,
        wm=wm,
        affine=crop_affine,
        inverse=np.linalg.inv(crop_affine),
        brain_lo=brain_lo,
        brain_hi=brain_hi,
        white=white,
        crop=crop,
        sigma=sigma,
    )


def _raw_tissue_fractions(template: _Template) -> tuple[np.ndarray, np.ndarray]:
    """The template's WM, GM and CSF fractions (3, ...) on its cropped arrays, not
    anti-aliased (CSF is the brain less WM and GM), and its brain (bool)."""
    images = _template_images()
    brain = np.asarray(images["t1"].dataobj, dtype=np.float32)[template.crop] > 0
    wm, gm = (
        np.asarray(images[key].dataobj, dtype=np.float32)[template.crop] / 255.0 * brain for key in ("wm", "gm")
    )
    csf = brain * np.clip(1.0 - wm - gm, 0.0, 1.0)
    return np.stack([wm, gm, csf]).astype(np.float32), brain


def _anti_aliased(volume: np.ndarray, template: _Template) -> np.ndarray:
    """``volume`` smoothed as the template's T1 (read-only)."""
    if template.sigma > 0.1:
        volume = ndimage.gaussian_filter(volume, [0] * (volume.ndim - 3) + [template.sigma] * 3)
    volume.setflags(write=False)
    return volume


@functools.lru_cache(maxsize=2)
def _tissue_fractions(voxel_mm: float) -> np.ndarray:
    """The template's WM, GM and CSF fractions (3, ...), float32, on its cropped
    arrays, anti-aliased as its T1: CSF is the brain less WM and GM, so the
    three sum to the brain mask (``_Template.mask``)."""
    template = _template(voxel_mm)
    return _anti_aliased(_raw_tissue_fractions(template)[0], template)


#: Depth (mm) over which the enhancement of the brain's surface CSF fades (``exp(-depth / this)``).
SURFACE_DEPTH_MM = 1.5


@functools.lru_cache(maxsize=2)
def _surface_csf(voxel_mm: float) -> np.ndarray:
    """The CSF at the brain's surface, where the dura and cortical veins lie: the
    template's CSF fraction times ``exp(-depth / SURFACE_DEPTH_MM)`` (depth: distance
    to the outside of the brain, 1 mm voxels), anti-aliased as the fractions."""
    template = _template(voxel_mm)
    fractions, brain = _raw_tissue_fractions(template)
    depth = ndimage.distance_transform_edt(brain)
    return _anti_aliased((fractions[2] * np.exp(-depth / SURFACE_DEPTH_MM)).astype(np.float32), template)


def _contrast(channel: str, voxel_mm: float, points: np.ndarray) -> np.ndarray:
    """The healthy brain of ``channel`` (x white matter) at template points (3, N).

    As the template's T1 is sampled: the brain's own level up to its edge
    (the tissue mix divided by the anti-aliased brain mask), so that the edge
    mixes in no background.
    """
    template = _template(voxel_mm)
    contrast = CONTRASTS[channel]
    if contrast.tissue is None:
        healthy = _sample(template.t1, template.inverse, points) / template.white
    else:
        fractions = _tissue_fractions(voxel_mm)
        mixed = sum(level * _sample(f, template.inverse, points) for level, f in zip(contrast.tissue, fractions))
        healthy = mixed / np.maximum(_sample(template.mask, template.inverse, points), 1e-3)
    if contrast.surface_enhancement:
        surface = _sample(_surface_csf(voxel_mm), template.inverse, points)
        mask = np.maximum(_sample(template.mask, template.inverse, points), 1e-3)
        healthy = healthy + contrast.surface_enhancement * surface / mask
    return healthy


@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int, int]
    affine: np.ndarray

    def points(self, region: tuple[slice, ...] | None = None) -> np.ndarray:
        """World coordinates (mm), shape (3, N), of the voxels of ``region`` (C order)."""
        region = region or tuple(slice(0, n) for n in self.shape)
        index = np.mgrid[region].reshape(3, -1).astype(np.float64)
        return _matvec(self.affine[:3, :3], index) + self.affine[:3, 3:4]

    def axes(self, region: tuple[slice, ...] | None = None) -> tuple[np.ndarray, ...]:
        """World coordinate (mm) of each index along x, y, z (grids here are axis-aligned)."""
        region = region or tuple(slice(0, n) for n in self.shape)
        return tuple(
            self.affine[d, d] * np.arange(r.start, r.stop) + self.affine[d, 3]
            for d, r in enumerate(region)
        )

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)


def _reference_grid(voxel_mm: float) -> _Grid:
    """The BraTS phantom grid: brain box + margin, ``voxel_mm`` isotropic, RAS."""
    template = _template(voxel_mm)
    margin = GRID_MARGIN_MM + voxel_mm
    origin = template.brain_lo - margin
    shape = np.ceil((template.brain_hi + margin - origin) / voxel_mm).astype(int) + 1
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = origin
    return _Grid(tuple(int(n) for n in shape), affine)


def _brain_field(
    rng: np.random.Generator, template: _Template, spacing: float, components: int = 1
) -> SmoothField:
    """A random field over the template's brain box plus ``FIELD_MARGIN_MM``."""
    lo, hi = template.brain_lo - FIELD_MARGIN_MM, template.brain_hi + FIELD_MARGIN_MM
    return SmoothField.draw(rng, lo, hi, spacing, components)


def _sample(volume: np.ndarray, inverse: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear sample of ``volume`` at world points (3, N); 0 outside it."""
    coords = _matvec(inverse[:3, :3], points) + inverse[:3, 3:4]
    return ndimage.map_coordinates(volume, coords, order=1, mode="constant", cval=0.0)


def _warp(
    rng: np.random.Generator,
    points: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    scale_range: float,
    template: _Template,
) -> np.ndarray:
    """Template coordinates (world mm) of ``points`` (3, N): random scaling + displacement.

    The scaling (per axis, about the brain centre) acts on ``points``; the
    smooth displacement (at most ``DEFORM_MM``) is drawn on the output grid
    ``axes``, whose voxels ``points`` are, in C order.
    """
    centre = (template.brain_lo + template.brain_hi) / 2
    scale = 1.0 + rng.uniform(-scale_range, scale_range, size=3)
    field = _brain_field(rng, template, DEFORM_SPACING_MM, components=3)
    displacement = DEFORM_MM * field.on_axes(axes).reshape(3, -1)
    return centre[:, None] + scale[:, None] * (points - centre[:, None]) + displacement


@dataclass(frozen=True)
class _Anatomy:
    tissue: np.ndarray  # float32 on the grid, 0 outside the brain
    brain: np.ndarray  # bool
    wm: np.ndarray  # float32 white-matter probability
    white: float  # this patient's white-matter level
    source: np.ndarray  # (3, N) template point (world mm) of each voxel: the other channels sample it


def _patient_anatomy(rng: np.random.Generator, grid: _Grid, voxel_mm: float) -> _Anatomy:
    template = _template(voxel_mm)
    source = _warp(rng, grid.points(), grid.axes(), PATIENT_SCALE, template)
    gain = rng.uniform(*PATIENT_GAIN)
    brain = (_sample(template.mask, template.inverse, source) > 0.5).reshape(grid.shape)
    tissue = _sample(template.t1, template.inverse, source).reshape(grid.shape) * gain
    tissue = np.where(brain, tissue, 0.0).astype(np.float32)
    wm = _sample(template.wm, template.inverse, source).reshape(grid.shape).astype(np.float32)
    return _Anatomy(tissue, brain, wm, template.white * gain, source)


@dataclass(frozen=True)
class _Channel:
    """One channel of a patient: its healthy brain and its lesion levels."""

    tissue: np.ndarray  # float32 on the grid, 0 outside the brain
    white: float  # its white-matter level
    levels: dict[int, float]  # NCR, ET, ED (x white), in the order t1n's files were blended in


def _patient_channel(rng: np.random.Generator, channel: str, anatomy: _Anatomy, voxel_mm: float) -> _Channel:
    """A channel other than t1n of a patient (the same anatomy; gain and lesion levels from ``rng``)."""
    contrast = CONTRASTS[channel]
    white = _template(voxel_mm).white * rng.uniform(*PATIENT_GAIN)
    levels = {label: rng.uniform(*contrast.lesion[label]) for label in (NCR, ET, ED)}
    tissue = _contrast(channel, voxel_mm, anatomy.source).reshape(anatomy.brain.shape) * white
    return _Channel(np.where(anatomy.brain, tissue, 0.0).astype(np.float32), white, levels)


@dataclass(frozen=True)
class _Lesion:
    centre: np.ndarray  # world mm
    axes: np.ndarray  # whole-tumour semi-axes (mm) at timepoint 000
    rotation: np.ndarray  # 3x3
    ncr: float  # NCR boundary, in units of the semi-axes
    et_thickness: float  # ET rim, mm (converted per timepoint)
    growth: float
    shape_field: SmoothField
    core_field: SmoothField  # (2 components: NCR/ET boundary, ET rim thickness)
    levels: tuple[float, float, float]  # NCR, ET and ED levels (x white)


def _draw_lesion(
    rng: np.random.Generator, anatomy: _Anatomy, grid: _Grid, voxel_mm: float
) -> _Lesion:
    """Draw one lesion whose two timepoints both hold all three labels.

    Up to 50 draws from ``rng``; every draw is checked by rasterising both
    timepoints, so a lesion is never missing a label. ``rng`` continues the
    patient's stream after the anatomy.
    """
    spacing = grid.spacing
    inside = ndimage.distance_transform_edt(anatomy.brain, sampling=spacing)
    levels = (rng.uniform(*NCR_LEVEL), rng.uniform(*ET_LEVEL), rng.uniform(*ED_LEVEL))
    r_min = max(LESION_RADIUS_MM, LESION_RADIUS_VOXELS * voxel_mm)
    for _ in range(50):
        radius = rng.uniform(r_min, r_min + LESION_RADIUS_SPREAD_MM)
        axes = radius * rng.uniform(0.8, 1.2, size=3)
        rotation = Rotation.random(random_state=rng).as_matrix()
        ncr = rng.uniform(0.3, 0.45)
        rim = max(3.0, ET_RIM_VOXELS * voxel_mm)
        et_thickness = rng.uniform(rim, rim + 3.0)
        growth = rng.uniform(*LESION_GROWTH)
        # The core (NCR + ET) at its largest must lie inside the brain.
        core_reach = axes.max() * (
            growth * (ncr + 0.1 + LESION_CORE_NOISE) + 1.5 * et_thickness / axes.mean()
        )
        candidates = np.flatnonzero(
            anatomy.brain.ravel()
            & (anatomy.wm.ravel() >= 0.5)
            & (inside.ravel() >= core_reach + voxel_mm)
        )
        if candidates.size == 0:
            continue
        flat = candidates[rng.integers(candidates.size)]
        index = np.array(np.unravel_index(flat, grid.shape), dtype=np.float64)
        centre = grid.affine[:3, :3] @ index + grid.affine[:3, 3]
        reach = axes.max() * growth * (1 + LESION_SHAPE_NOISE) + voxel_mm
        shape_field = SmoothField.draw(rng, centre - reach, centre + reach, 6.0)
        core_field = SmoothField.draw(rng, centre - reach, centre + reach, 5.0, components=2)
        lesion = _Lesion(
            centre, axes, rotation, ncr, et_thickness, growth, shape_field, core_field, levels
        )
        if all(
            set(np.unique(_rasterise(lesion, anatomy, grid, t)[0])) == set(LABELS) for t in (0, 1)
        ):
            return lesion
    raise ValueError(
        f"demo: voxel_mm={voxel_mm} is too coarse for a phantom lesion with NCR, ED and ET"
    )


def _rasterise(
    lesion: _Lesion, anatomy: _Anatomy, grid: _Grid, timepoint: int
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Labels of ``lesion`` at ``timepoint`` in its bounding region of the grid."""
    growth = lesion.growth if timepoint == 1 else 1.0
    axes = lesion.axes * growth
    reach = axes.max() * (1 + LESION_SHAPE_NOISE) + grid.spacing.max()
    centre_index = np.linalg.solve(grid.affine[:3, :3], lesion.centre - grid.affine[:3, 3])
    half = np.ceil(reach / grid.spacing).astype(int)
    lo = np.maximum(np.round(centre_index).astype(int) - half, 0)
    hi = np.minimum(np.round(centre_index).astype(int) + half + 1, grid.shape)
    region = tuple(slice(a, b) for a, b in zip(lo, hi))
    points = grid.points(region)
    local = _matvec(lesion.rotation.T, points - lesion.centre[:, None])
    radius = np.linalg.norm(local / axes[:, None], axis=0)
    # The irregular fields move with the lesion as it grows (same shape, larger).
    grown = tuple(c + (a - c) / growth for a, c in zip(grid.axes(region), lesion.centre))
    outer = radius - LESION_SHAPE_NOISE * lesion.shape_field.on_axes(grown)[0].ravel()
    core_noise, rim_noise = lesion.core_field.on_axes(grown).reshape(2, -1)
    core = radius - LESION_CORE_NOISE * core_noise
    ncr = lesion.ncr + (0.1 if timepoint == 1 else 0.0)  # the necrotic fraction grows
    et = ncr + lesion.et_thickness * (1 + 0.5 * np.abs(rim_noise)) / axes.mean()
    labels = np.zeros(points.shape[1], dtype=np.uint8)
    labels[outer < 1.0] = ED
    labels[(core < et) & (outer < 1.0)] = ET
    labels[core < ncr] = NCR
    labels = labels.reshape(tuple(s.stop - s.start for s in region))
    labels[~anatomy.brain[region]] = 0
    return labels, region


def _patient_scan(
    rng: np.random.Generator,
    channel: _Channel,
    brain: np.ndarray,
    labels: np.ndarray,
    region: tuple[slice, ...],
    grid: _Grid,
) -> np.ndarray:
    """One BraTS-style scan (float32) of a patient's channel, with the lesion
    ``labels`` (of ``region``, from :func:`_rasterise`) at a timepoint."""
    tissue = channel.tissue[region].astype(np.float64)
    points = grid.points(region)
    lo, hi = points.min(1), points.max(1)
    texture = 1 + LESION_TEXTURE * SmoothField.draw(rng, lo, hi, 4.0).on_axes(grid.axes(region))[0]
    targets = {label: level * channel.white * texture for label, level in channel.levels.items()}
    blended = tissue.copy()
    for label, target in targets.items():
        weight = ndimage.gaussian_filter((labels == label).astype(np.float64), 0.5)
        blended += weight * (target - tissue)

    image = channel.tissue.astype(np.float64)
    image[region] = blended
    image += PATIENT_NOISE * channel.white * rng.standard_normal(grid.shape)
    image = np.maximum(image, 0.02 * channel.white)  # brain stays > 0
    image[~brain] = 0.0
    return image.astype(np.float32)


@dataclass(frozen=True)
class _Head:
    """A healthy subject's head on its T1 grid, for its other sequences."""

    grid: _Grid
    source: np.ndarray  # (3, N) template point (world mm) of each voxel
    brain_weight: np.ndarray  # in [0, 1], anti-aliased brain
    layers: tuple[np.ndarray, np.ndarray, np.ndarray]  # bool: CSF (with the filled outline), skull, scalp
    scalp_texture: np.ndarray


def _healthy_head(rng: np.random.Generator, voxel_mm: float) -> tuple[np.ndarray, np.ndarray, _Head]:
    """One IXI-style T1 head with skull and scalp, on its own grid; returns (image, affine, head)."""
    template = _template(voxel_mm)
    inplane = voxel_mm * rng.uniform(*HEALTHY_INPLANE)
    through = voxel_mm * rng.uniform(*HEALTHY_THROUGH_PLANE)
    spacing = np.round(np.array([inplane, inplane, through]), 2)
    centre = (template.brain_lo + template.brain_hi) / 2
    shape = _healthy_shape(template, spacing)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = centre - spacing * (shape - 1) / 2
    grid = _Grid(tuple(int(n) for n in shape), affine)

    # Pose: scanner point y shows head point x = R^T (y - c - t) + c.
    axis = rng.standard_normal(3)
    angle = np.deg2rad(rng.uniform(0, HEALTHY_MAX_ROTATION_DEG))
    rotation = Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()
    direction = rng.standard_normal(3)
    translation = direction / np.linalg.norm(direction) * rng.uniform(0, HEALTHY_MAX_TRANSLATION_MM)
    scanner = grid.points()
    head = _matvec(rotation.T, scanner - (centre + translation)[:, None]) + centre[:, None]
    source = _warp(rng, head, grid.axes(), HEALTHY_SCALE, template)
    gain = rng.uniform(*HEALTHY_GAIN)
    white = template.white * gain

    brain_weight = np.clip(_sample(template.mask, template.inverse, source), 0, 1)
    brain_weight = brain_weight.reshape(grid.shape)
    tissue = (_sample(template.t1, template.inverse, source) * gain).reshape(grid.shape)
    brain = brain_weight > 0.5

    # Head layers measured from the brain's smoothed, filled outline.
    hull = ndimage.gaussian_filter(brain.astype(np.float32), HULL_SMOOTH_MM / spacing) > 0.3
    hull = ndimage.binary_fill_holes(hull | brain)
    distance = ndimage.distance_transform_edt(~hull, sampling=spacing)
    thickness = _brain_field(rng, template, 30.0, components=3).on_axes(grid.axes())
    csf_out = (CSF_MM[0] + CSF_MM[1] * thickness[0]).reshape(grid.shape)
    skull_out = csf_out + (SKULL_MM[0] + SKULL_MM[1] * thickness[1]).reshape(grid.shape)
    scalp_out = skull_out + (SCALP_MM[0] + SCALP_MM[1] * thickness[2]).reshape(grid.shape)
    layers = (
        hull | (distance <= csf_out),
        (distance > csf_out) & (distance <= skull_out),
        (distance > skull_out) & (distance <= scalp_out),
    )
    scalp_texture = 1 + 0.1 * _brain_field(rng, template, 8.0).on_axes(grid.axes())[0]
    outline = _Head(grid, source, brain_weight, layers, scalp_texture)
    outside = _head_outside(outline, (CSF_LEVEL, SKULL_LEVEL, SCALP_LEVEL), white)

    image = brain_weight * tissue + (1 - brain_weight) * outside
    bias = SmoothField.draw(rng, scanner.min(1), scanner.max(1), BIAS_SPACING_MM).on_axes(grid.axes())[0]
    image *= np.exp(BIAS_AMPLITUDE * bias).reshape(grid.shape)
    return _rician(rng, image, HEALTHY_NOISE * white), affine, outline


def _healthy_shape(template: _Template, spacing: np.ndarray) -> np.ndarray:
    """Voxels along x, y, z of a healthy field of view (the brain box plus ``HEALTHY_MARGIN_MM``)."""
    extent = template.brain_hi - template.brain_lo + 2 * HEALTHY_MARGIN_MM
    return np.ceil(extent / spacing).astype(int) + 1


def _head_outside(head: _Head, levels: tuple[float, float, float], white: float) -> np.ndarray:
    """The head around the brain: CSF, skull and scalp at ``levels`` x ``white``, softened."""
    csf_level, skull_level, scalp_level = levels
    csf, skull, scalp = head.layers
    outside = np.zeros(head.grid.shape)
    outside[csf] = csf_level * white
    outside[skull] = skull_level * white
    outside[scalp] = (scalp_level * white * head.scalp_texture)[scalp]
    return ndimage.gaussian_filter(outside, 0.6)


def _rician(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """The magnitude of ``image`` plus complex Gaussian noise of ``sigma``, float32."""
    real = image + sigma * rng.standard_normal(image.shape)
    imaginary = sigma * rng.standard_normal(image.shape)
    return np.sqrt(real**2 + imaginary**2).astype(np.float32)


def _healthy_sequence(
    rng: np.random.Generator, channel: str, head: _Head, voxel_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Another sequence of a healthy subject (``channel``'s contrast): ``head``
    moved a little, on a grid of its own; returns (image, affine).

    The noise-free image is made on the T1 grid (the same head voxel for
    voxel) and resampled (trilinear) onto the sequence's grid through the
    motion; the bias field and the Rician noise are the sequence's own.
    """
    template = _template(voxel_mm)
    inplane = voxel_mm * rng.uniform(*HEALTHY_INPLANE)
    through = voxel_mm * rng.uniform(*HEALTHY_THROUGH_PLANE)
    spacing = np.round(np.array([inplane, inplane, through]), 2)
    centre = (template.brain_lo + template.brain_hi) / 2
    # The field of view of the T1, its axes along SEQUENCE_AXES.
    world_axis = np.abs(SEQUENCE_AXES).argmax(0)
    shape = _healthy_shape(template, spacing[np.argsort(world_axis)])[world_axis]
    affine = np.eye(4)
    affine[:3, :3] = SEQUENCE_AXES * spacing
    affine[:3, 3] = centre - affine[:3, :3] @ ((shape - 1) / 2)
    grid = _Grid(tuple(int(n) for n in shape), affine)

    # Motion between the scans: this grid's point y shows the T1 scanner's point R (y - c) + c + t.
    axis = rng.standard_normal(3)
    angle = np.deg2rad(rng.uniform(0, SEQUENCE_MAX_ROTATION_DEG))
    rotation = Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle).as_matrix()
    direction = rng.standard_normal(3)
    translation = direction / np.linalg.norm(direction) * rng.uniform(0, SEQUENCE_MAX_TRANSLATION_MM)
    white = template.white * rng.uniform(*HEALTHY_GAIN)

    tissue = _contrast(channel, voxel_mm, head.source).reshape(head.grid.shape) * white
    outside = _head_outside(head, CONTRASTS[channel].head, white)
    clean = head.brain_weight * tissue + (1 - head.brain_weight) * outside
    on_t1 = _matvec(rotation, grid.points() - centre[:, None]) + (centre + translation)[:, None]
    image = _sample(clean, np.linalg.inv(head.grid.affine), on_t1).reshape(grid.shape)

    # The bias field is the scanner's: drawn on this grid's own voxel axes (mm).
    axes = tuple(np.arange(n) * step for n, step in zip(grid.shape, spacing))
    bias = SmoothField.draw(rng, np.zeros(3), (np.array(grid.shape) - 1) * spacing, BIAS_SPACING_MM)
    image *= np.exp(BIAS_AMPLITUDE * bias.on_axes(axes)[0])
    return _rician(rng, image, HEALTHY_NOISE * white), affine
