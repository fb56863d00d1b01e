"""What skull stripping and registration share about ANTsPy: image
conversion, and the settings that make ANTs give the same result twice."""

from __future__ import annotations

from pathlib import Path

import ants
import ants.config
import nibabel as nib
import numpy as np


def to_ants(image: nib.Nifti1Image) -> ants.ANTsImage:
    """A NIfTI image as a float32 ANTs image (ANTs ignores scaling and dtype quirks)."""
    data = np.asarray(image.get_fdata(dtype=np.float32))
    return ants.from_nibabel_nifti(nib.Nifti1Image(data, image.affine, image.header))


def deterministic_ants(seed: int) -> None:
    """One ITK thread and a fixed sampling seed for every ANTs call that follows.

    ANTs samples the metric at random points (seeded here) and sums it over
    threads in an order that depends on the thread count and timing, so two
    runs with two threads differ in the last bits and, after a few hundred
    iterations, in the transform. With one thread the result is
    byte-identical; the rules that register therefore declare one thread.
    ANTsPy's own switch sets both (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1``
    and ``--random-seed`` on every registration).
    """
    ants.config.set_ants_deterministic(True, seed)


def centre_alignment(fixed_mask: ants.ANTsImage, moving_mask: ants.ANTsImage, path: str | Path) -> str:
    """Write to ``path`` the translation that puts the centre of
    ``moving_mask`` on the centre of ``fixed_mask`` (an ANTs transform maps
    fixed points to moving points). A registration started from it does not
    depend on where each scanner put the head in world space: IXI heads and
    the SRI24 grid of BraTS need not even overlap."""
    shift = np.subtract(ants.get_center_of_mass(moving_mask), ants.get_center_of_mass(fixed_mask))
    transform = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, translation=shift.tolist()
    )
    ants.write_transform(transform, str(path))
    return str(path)
