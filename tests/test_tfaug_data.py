"""Tiny phantom cohorts for the TF-Aug tests (imported by the other test_tfaug_* files).

A 40³ grid of 2 mm voxels (RAS, world origin at the grid centre). Healthy
scans: an ellipsoidal brain, white matter inside (bright), a grey-matter
shell, two CSF "ventricles" (dark), noise. Real cases: the same brain with a
spherical lesion, ED around ET around NCR, with their own intensities.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch

SHAPE = (40, 40, 40)
SPACING = 2.0
AFFINE = np.diag([SPACING, SPACING, SPACING, 1.0])
AFFINE[:3, 3] = -SPACING * (np.array(SHAPE) - 1) / 2
CENTRE = (np.array(SHAPE) - 1) / 2
#: Intensities of the phantom tissues and lesion subregions, in [-1, 1].
WM, GM, CSF = 0.6, 0.1, -0.6
LESION = {1: -0.7, 2: 0.3, 3: 0.9}


def ellipsoid(centre, radii, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def healthy_scan(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    brain = ellipsoid(CENTRE, (17, 18, 15))
    wm = ellipsoid(CENTRE, (12, 13, 10))
    csf = ellipsoid(CENTRE + [-4, 0, 0], (2.5, 5, 3)) | ellipsoid(CENTRE + [4, 0, 0], (2.5, 5, 3))
    image = np.where(wm, WM, GM).astype(np.float32)
    image[csf] = CSF
    image += rng.normal(0, 0.05, SHAPE).astype(np.float32)
    image = np.clip(image, -1, 1)
    image[~brain] = -1.0
    return image.astype(np.float32), brain.astype(np.uint8)


def lesion_labels(centre, radius: float = 5.0) -> np.ndarray:
    seg = np.zeros(SHAPE, np.uint8)
    seg[ellipsoid(centre, (radius,) * 3)] = 2
    seg[ellipsoid(centre, (0.6 * radius,) * 3)] = 3
    seg[ellipsoid(centre, (0.3 * radius,) * 3)] = 1
    return seg


def real_case(rng: np.random.Generator, centre, radius: float = 5.0):
    image, brain = healthy_scan(rng)
    seg = lesion_labels(centre, radius) * brain
    for label, value in LESION.items():
        image[seg == label] = value + rng.normal(0, 0.05, int((seg == label).sum()))
    return image, brain, seg


def write_case(folder: Path, image: np.ndarray, brain: np.ndarray, seg: np.ndarray | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image.astype(np.float32), AFFINE), str(folder / "t1n.nii.gz"))
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), AFFINE), str(folder / "brainmask.nii.gz"))
    if seg is not None:
        nib.save(nib.Nifti1Image(seg.astype(np.uint8), AFFINE), str(folder / "seg.nii.gz"))
    return folder


def make_cohort(root: Path, n_real: int = 4, n_healthy: int = 3, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Real training case folders (BraTS-like ids) and healthy case folders."""
    rng = np.random.default_rng(seed)
    real = []
    for i in range(n_real):
        centre = CENTRE + rng.uniform(-5, 5, 3)
        real.append(write_case(root / "real" / f"BraTS-GLI-{i:05d}-000", *real_case(rng, centre, rng.uniform(4, 6))))
    healthy = [write_case(root / "healthy" / f"IXI{i:03d}", *healthy_scan(rng)) for i in range(n_healthy)]
    return real, healthy


class TinyEncoder(torch.nn.Module):
    """A random, frozen 3-stage conv encoder with F's interface: forward(image, brainmask) -> list."""

    def __init__(self, channels: int = 1, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.stages = torch.nn.ModuleList(
            [
                torch.nn.Sequential(torch.nn.Conv3d(channels, 4, 3, padding=1), torch.nn.LeakyReLU(0.01)),
                torch.nn.Sequential(torch.nn.Conv3d(4, 8, 3, stride=2, padding=1), torch.nn.LeakyReLU(0.01)),
                torch.nn.Sequential(torch.nn.Conv3d(8, 8, 3, stride=2, padding=1), torch.nn.LeakyReLU(0.01)),
            ]
        )

    def forward(self, image: torch.Tensor, brainmask: torch.Tensor) -> list[torch.Tensor]:
        x = torch.where(brainmask > 0, image + 2.0, torch.zeros_like(image))  # like to_nnunet_image
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def test_phantom_cohort_is_on_one_grid_with_lesions_inside_the_brain(tmp_path):
    real, healthy = make_cohort(tmp_path, n_real=2, n_healthy=1)
    for folder in real:
        seg = np.asarray(nib.load(folder / "seg.nii.gz").dataobj)
        brain = np.asarray(nib.load(folder / "brainmask.nii.gz").dataobj)
        assert set(np.unique(seg)) == {0, 1, 2, 3}
        assert not (seg[brain == 0] > 0).any()
    image = nib.load(healthy[0] / "t1n.nii.gz")
    assert image.shape == SHAPE and np.allclose(image.affine, AFFINE)
