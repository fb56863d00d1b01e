"""The case folder (docs/architecture.md): its files, and the one reader and writer.

Every image-label pair the pipeline makes or reads (normalized real cases,
CarveMix and TF-Aug cases) and every preprocessed healthy scan is a folder of

* ``{modality}.nii.gz``: float32, brain in [-1, 1], background exactly -1;
* ``brainmask.nii.gz``: uint8 {0, 1};
* ``seg.nii.gz``: uint8 BraTS labels {0, 1, 2, 3} (``tumorfab.labels``);
  absent for a healthy scan.

All files of a folder share one grid. This module is the only one that knows
the file names (:func:`case_file`), reads the files (:func:`load_case`, or one
volume: :func:`read_image`, :func:`read_brainmask`, :func:`read_seg`) and
writes them (:func:`save_case`, every file atomically, ``tumorfab.io``).
Reading checks the values of the brain mask and the labels and names the file
that breaks the contract.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from tumorfab.io import load_nifti, save_nifti
from tumorfab.labels import LABELS

#: File names (without the ending) besides the modalities'.
BRAINMASK = "brainmask"
SEG = "seg"
FILE_ENDING = ".nii.gz"
#: The values a brain mask may hold.
BRAINMASK_VALUES = (0, 1)


def case_file(case_dir: str | os.PathLike, name: str) -> Path:
    """A file of a case folder: ``name`` is a modality, :data:`BRAINMASK` or :data:`SEG`."""
    return Path(case_dir) / f"{name}{FILE_ENDING}"


def channels_in(case_dir: str | os.PathLike, modalities: Sequence[str]) -> list[str]:
    """The entries of ``modalities`` whose image the folder holds, in that order
    (a healthy scan has its T1 and maybe other sequences)."""
    return [m for m in modalities if case_file(case_dir, m).is_file()]


@dataclass
class Case:
    """One case folder in memory: images per modality, brain mask, labels, geometry.

    ``seg`` is None for a healthy scan. ``header`` (None: nibabel's default
    for the data) and ``affine`` are written into every file.
    """

    images: dict[str, np.ndarray]
    brainmask: np.ndarray
    seg: np.ndarray | None
    affine: np.ndarray
    header: nib.Nifti1Header | None = None

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel size in mm."""
        if self.header is None:
            return tuple(float(z) for z in np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0))
        return tuple(float(z) for z in self.header.get_zooms()[:3])

    def stacked(self, modalities: Sequence[str]) -> np.ndarray:
        """The images of ``modalities`` as one (C, D, H, W) array."""
        return np.stack([self.images[m] for m in modalities])


def read_image(case_dir: str | os.PathLike, name: str) -> nib.Nifti1Image:
    """One file of a case folder as a NIfTI image (for its header and grid)."""
    return load_nifti(case_file(case_dir, name))


def _integer_volume(image: nib.Nifti1Image, path: Path, allowed: Sequence[int]) -> np.ndarray:
    """The volume as uint8; a value outside ``allowed`` is an error naming the file."""
    data = image.get_fdata(dtype=np.float32)
    bad = ~np.isin(data, allowed)
    if bad.any():
        raise ValueError(f"{path}: values {np.unique(data[bad])[:5]} outside {tuple(allowed)}")
    return data.astype(np.uint8)


def read_brainmask(case_dir: str | os.PathLike) -> tuple[np.ndarray, nib.Nifti1Image]:
    """The brain mask (uint8 {0, 1}, checked) and its NIfTI image."""
    image = read_image(case_dir, BRAINMASK)
    return _integer_volume(image, case_file(case_dir, BRAINMASK), BRAINMASK_VALUES), image


def read_seg(case_dir: str | os.PathLike) -> tuple[np.ndarray, nib.Nifti1Image]:
    """The labels (uint8, BraTS values, checked) and their NIfTI image."""
    image = read_image(case_dir, SEG)
    return _integer_volume(image, case_file(case_dir, SEG), LABELS), image


def load_case(case_dir: str | os.PathLike, modalities: Sequence[str], with_seg: bool = True) -> Case:
    """Read a case folder; ``with_seg=False`` for a healthy scan (no ``seg``).

    Images are float32; the geometry (affine, header) is the labels' when they
    are read, else the brain mask's (every file of a folder is on one grid).
    """
    case_dir = Path(case_dir)
    images = {m: read_image(case_dir, m).get_fdata(dtype=np.float32) for m in modalities}
    brainmask, geometry = read_brainmask(case_dir)
    seg = None
    if with_seg:
        seg, geometry = read_seg(case_dir)
    shapes = {a.shape for a in [*images.values(), brainmask, *([] if seg is None else [seg])]}
    if len(shapes) != 1:
        raise ValueError(f"{case_dir}: volumes of different shapes {sorted(shapes)}")
    return Case(images, brainmask, seg, geometry.affine, geometry.header.copy())


def save_case(case: Case, case_dir: str | os.PathLike) -> None:
    """Write a case folder (no ``seg`` if ``case.seg`` is None); every file atomically."""
    for modality, image in case.images.items():
        save_nifti(image.astype(np.float32), case.affine, case_file(case_dir, modality), case.header)
    save_nifti(case.brainmask.astype(np.uint8), case.affine, case_file(case_dir, BRAINMASK), case.header)
    if case.seg is not None:
        save_nifti(case.seg.astype(np.uint8), case.affine, case_file(case_dir, SEG), case.header)
