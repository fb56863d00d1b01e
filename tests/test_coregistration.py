"""A healthy subject's other sequence (a T2 on its own grid, the head moved a
little between the scans) co-registered rigidly onto its T1 and carried to the
reference grid by the T1's transforms (tumorfab.preprocess.registration)."""

from __future__ import annotations

from pathlib import Path

import ants
import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from helpers.schema_defaults import schema_defaults
from tumorfab.preprocess.ants import to_ants
from tumorfab.preprocess.registration import (
    coregister_to_t1,
    load_transforms,
    register_sequence_to_reference,
    register_to_reference,
)
from tumorfab.preprocess.settings import BiasCorrectionSettings, RegistrationSettings

#: Tissue levels of the phantom head: (T1, T2). T2 inverts the T1 contrast
#: (CSF bright, white matter darker than grey matter), as mutual information must cope with.
LEVELS = {"scalp": (70.0, 30.0), "grey": (80.0, 100.0), "white": (110.0, 70.0), "csf": (20.0, 180.0)}
#: The head's motion between the T1 and the T2: degrees about x, y, z, and mm.
MOTION_DEGREES = (4.0, -3.0, 6.0)
MOTION_MM = np.array([3.0, -4.0, 2.0])
SEED = 7
BIAS_CORRECTION = BiasCorrectionSettings.from_config(schema_defaults()["bias_correction"])


def _inside(points: np.ndarray, centre, radii) -> np.ndarray:
    return (((points - np.asarray(centre)) / np.asarray(radii)) ** 2).sum(axis=-1) <= 1


def head(points: np.ndarray, sequence: int) -> tuple[np.ndarray, np.ndarray]:
    """Intensity of one sequence (0 T1, 1 T2) and the brain at world points (mm): an
    asymmetric head (scalp, grey and white matter, a ventricle off the midline)."""
    image = np.zeros(points.shape[:-1], np.float32)
    image[_inside(points, (0, 0, 0), (40, 46, 38))] = LEVELS["scalp"][sequence]
    brain = _inside(points, (0, 2, 2), (32, 38, 30))
    image[brain] = LEVELS["grey"][sequence]
    image[_inside(points, (4, 4, 4), (22, 28, 19))] = LEVELS["white"][sequence]
    image[_inside(points, (-7, 10, 6), (5, 13, 6))] = LEVELS["csf"][sequence]
    image[_inside(points, (12, -16, -6), (6, 6, 5))] = LEVELS["csf"][sequence]
    return image, brain


def world_points(shape, affine) -> np.ndarray:
    voxels = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return nib.affines.apply_affine(affine, voxels)


def grid(spacing, shape, axes=(0, 1, 2)) -> np.ndarray:
    """An affine of ``shape`` voxels of ``spacing`` mm centred on the world origin,
    its voxel axes along the world axes ``axes``."""
    affine = np.zeros((4, 4))
    for voxel_axis, world_axis in enumerate(axes):
        affine[world_axis, voxel_axis] = spacing[voxel_axis]
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    affine[3, 3] = 1
    return affine


def save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> dict[str, Path]:
    """The T1 (2 mm, sagittal-like axes) with its brain mask, and the T2 on
    another grid (2.4 x 2.4 x 3 mm, axial-like axes) of the moved head."""
    folder = tmp_path_factory.mktemp("subject")
    t1_affine = grid((2.0, 2.0, 2.0), (48, 52, 46), axes=(2, 1, 0))
    t1, brain = head(world_points((48, 52, 46), t1_affine), 0)
    t2_affine = grid((2.4, 2.4, 3.0), (40, 44, 32))
    motion = Rotation.from_euler("xyz", MOTION_DEGREES, degrees=True)
    # The T2's voxel at world x shows the head point that the motion brought there.
    t2, _ = head(motion.inv().apply(world_points((40, 44, 32), t2_affine).reshape(-1, 3) - MOTION_MM)
                 .reshape(40, 44, 32, 3), 1)
    return {
        "t1": save(folder / "t1.nii.gz", t1, t1_affine),
        "t1_brainmask": save(folder / "t1_brainmask.nii.gz", brain.astype(np.uint8), t1_affine),
        "t2": save(folder / "t2.nii.gz", t2, t2_affine),
        "folder": folder,
    }


def on_t1_grid(image: Path, t1: Path, transforms: list[str]) -> np.ndarray:
    """``image`` resampled onto the T1's grid through ``transforms`` (none: as it lies in world space)."""
    fixed = to_ants(nib.load(str(t1)))
    moving = to_ants(nib.load(str(image)))
    if not transforms:
        return ants.resample_image_to_target(moving, fixed, interp_type="linear").numpy()
    return ants.apply_transforms(fixed=fixed, moving=moving, transformlist=transforms, interpolator="linear").numpy()


@pytest.fixture(scope="module")
def coregistered(subject) -> dict:
    folder = subject["folder"]
    similarity = coregister_to_t1(
        subject["t2"], subject["t1"], subject["t1_brainmask"], folder / "t2.mat", folder / "qc.png", seed=SEED
    )
    return {"similarity": similarity, "transform": folder / "t2.mat"}


def _t2_brain(t2_on_t1_grid: np.ndarray) -> np.ndarray:
    """The brain of the T2 (grey, white matter and ventricles: brighter than the scalp)."""
    return t2_on_t1_grid > (LEVELS["scalp"][1] + min(LEVELS["grey"][1], LEVELS["white"][1])) / 2


def test_coregistration_aligns_the_moved_t2_brain_with_the_t1_brain(subject, coregistered):
    brain = np.asarray(nib.load(str(subject["t1_brainmask"])).dataobj) > 0
    before = _t2_brain(on_t1_grid(subject["t2"], subject["t1"], []))
    after = _t2_brain(on_t1_grid(subject["t2"], subject["t1"], [str(coregistered["transform"])]))
    assert dice(before, brain) < 0.9
    assert dice(after, brain) > 0.95
    similarity = coregistered["similarity"]
    assert similarity["after"] < similarity["before"]  # ANTs' cost: lower is more similar
    assert (subject["folder"] / "qc.png").stat().st_size > 0


def test_coregistration_is_reproducible(subject, coregistered, tmp_path):
    coregister_to_t1(subject["t2"], subject["t1"], subject["t1_brainmask"], tmp_path / "t2.mat", tmp_path / "qc.png",
                     seed=SEED)
    assert (tmp_path / "t2.mat").read_bytes() == coregistered["transform"].read_bytes()


def test_the_t2_follows_its_t1_onto_the_reference_grid(subject, coregistered, tmp_path):
    """The T1 registered onto a reference head on a third grid; the T2, carried by
    both transforms, shows the reference's anatomy in T2 contrast."""
    reference_affine = grid((2.0, 2.0, 2.0), (44, 50, 44))
    reference_affine[:3, 3] += (5.0, -6.0, 3.0)
    reference_points = world_points((44, 50, 44), reference_affine)
    reference, reference_brain = head(reference_points, 0)
    reference_t1 = save(tmp_path / "reference_t1.nii.gz", np.where(reference_brain, reference, 0), reference_affine)
    seg = np.zeros(reference.shape, np.uint8)
    seg[20:23, 24:27, 20:23] = 2
    reference_seg = save(tmp_path / "reference_seg.nii.gz", seg, reference_affine)
    t1 = nib.load(str(subject["t1"]))
    brain = np.asarray(nib.load(str(subject["t1_brainmask"])).dataobj)
    stripped = save(tmp_path / "stripped.nii.gz", np.where(brain > 0, t1.get_fdata(dtype=np.float32), 0), t1.affine)
    settings = RegistrationSettings(type_of_transform="Rigid", interpolator="linear")
    register_to_reference(
        stripped, subject["t1_brainmask"], reference_t1, reference_seg,
        tmp_path / "t1n.nii.gz", tmp_path / "brainmask.nii.gz", tmp_path / "qc.png", settings,
        BIAS_CORRECTION, seed=SEED, out_transforms=tmp_path / "transform",
    )
    assert len(load_transforms(tmp_path / "transform")) == 1

    register_sequence_to_reference(
        subject["t2"], coregistered["transform"], subject["t1_brainmask"], tmp_path / "transform",
        tmp_path / "brainmask.nii.gz", tmp_path / "t2w.nii.gz", settings, BIAS_CORRECTION, seed=SEED,
    )
    t2w = nib.load(str(tmp_path / "t2w.nii.gz"))
    mask = np.asarray(nib.load(str(tmp_path / "brainmask.nii.gz")).dataobj) > 0
    assert np.allclose(t2w.affine, reference_affine) and t2w.shape == reference.shape
    data = t2w.get_fdata()
    assert (data[~mask] == 0).all() and data.min() >= 0
    expected, _ = head(reference_points, 1)
    inside = mask & reference_brain
    assert dice(mask, reference_brain) > 0.95
    assert np.corrcoef(data[inside], expected[inside])[0, 1] > 0.8
