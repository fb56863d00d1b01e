"""The case folder (docs/architecture.md) in memory: read and write.

Every image-label pair the pipeline makes or reads (normalized real cases,
CarveMix and TF-Aug cases) is a folder of ``{modality}.nii.gz`` (float32,
brain in [-1, 1], background -1), ``brainmask.nii.gz`` and ``seg.nii.gz``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from tumorfab.io import load_nifti, save_nifti

LABELS = (0, 1, 2, 3)


@dataclass
class Case:
    """One case folder in memory: images per modality, brain mask, labels, geometry."""

    images: dict[str, np.ndarray]
    brainmask: np.ndarray
    seg: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header

    @property
    def zooms(self) -> tuple[float, float, float]:
        return tuple(float(z) for z in self.header.get_zooms()[:3])


def _integer_volume(image: nib.Nifti1Image, path: Path) -> np.ndarray:
    data = image.get_fdata(dtype=np.float32)
    values = np.unique(data)
    if not np.all(np.isin(values, LABELS)):
        raise ValueError(f"{path}: values {values[~np.isin(values, LABELS)][:5]} outside {LABELS}")
    return data.astype(np.uint8)


def load_case(case_dir: str | os.PathLike, modalities: Sequence[str]) -> Case:
    """Read a case folder (``{modality}.nii.gz``, ``brainmask.nii.gz``, ``seg.nii.gz``)."""
    case_dir = Path(case_dir)
    images = {}
    for modality in modalities:
        images[modality] = load_nifti(case_dir / f"{modality}.nii.gz").get_fdata(dtype=np.float32)
    mask_image = load_nifti(case_dir / "brainmask.nii.gz")
    seg_image = load_nifti(case_dir / "seg.nii.gz")
    brainmask = _integer_volume(mask_image, case_dir / "brainmask.nii.gz")
    seg = _integer_volume(seg_image, case_dir / "seg.nii.gz")
    if brainmask.max(initial=0) > 1:
        raise ValueError(f"{case_dir / 'brainmask.nii.gz'}: values other than 0 and 1")
    shapes = {a.shape for a in [*images.values(), brainmask, seg]}
    if len(shapes) != 1:
        raise ValueError(f"{case_dir}: volumes of different shapes {sorted(shapes)}")
    return Case(images, brainmask, seg, seg_image.affine, seg_image.header.copy())


def save_case(case: Case, case_dir: str | os.PathLike) -> None:
    """Write a case folder; every file is written atomically (``tumorfab.io``)."""
    case_dir = Path(case_dir)
    for modality, image in case.images.items():
        save_nifti(
            image.astype(np.float32), case.affine, case_dir / f"{modality}.nii.gz", case.header
        )
    save_nifti(
        case.brainmask.astype(np.uint8), case.affine, case_dir / "brainmask.nii.gz", case.header
    )
    save_nifti(case.seg.astype(np.uint8), case.affine, case_dir / "seg.nii.gz", case.header)
