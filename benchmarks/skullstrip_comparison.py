"""Brain extraction on real heads: deepbet against the atlas method.

On the two real healthy T1 heads of ``../shared/data/real/healthy``
(``chris_t1``: 0.88 mm, RAS, neck in view; ``swm_T1``: 1 mm, LIA, defaced),
runs :func:`tumorfab.preprocess.skullstrip.atlas_mask` (the schema's
``atlas_transform``) and :func:`tumorfab.preprocess.skullstrip.deepbet_mask`
on one CPU core (one torch thread, one ITK thread) and prints per method and
head:

* the mask's volume in ml;
* Dice against FreeSurfer's segmentation of ``swm_T1``
  (``reference/swm_aparc.DKTatlas+aseg.nii.gz > 0``, 1277 ml): the brain
  without the CSF outside it;
* Dice against that reference grown to take in the CSF outside the brain,
  as BraTS masks, deepbet and SynthStrip do: holes filled, closed with a
  ball of :data:`CLOSE_MM` (fills the sulci), holes filled again, dilated by
  a ball of :data:`DILATE_MM` (the CSF over the surface); 1550 ml;
* the seconds the method took (deepbet: loading its two networks included).

``chris_t1`` has no reference (–). Also prints the brain mask volume of the
real BraTS case (its non-zero voxels), for what a tumour scan's brain looks
like. Run: ``python benchmarks/skullstrip_comparison.py`` (about a minute).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from tumorfab.preprocess.settings import SkullstripSettings  # noqa: E402
from tumorfab.preprocess.skullstrip import atlas_mask, deepbet_mask, mask_volume_ml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.schema_defaults import schema_defaults  # noqa: E402  (the config schema's defaults)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
HEADS = {"chris_t1": "chris_t1.nii.gz", "swm_T1": "swm_T1.nii.gz"}
REFERENCE = {"swm_T1": REAL / "reference" / "swm_aparc.DKTatlas+aseg.nii.gz"}
BRATS_T1 = REAL / "brats" / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-t1n.nii.gz"
SEED = 2025
#: Growing FreeSurfer's brain into one with the CSF outside it (mm, on its 1 mm grid).
CLOSE_MM = 3
DILATE_MM = 2


def ball(radius: int) -> np.ndarray:
    grid = np.mgrid[(slice(-radius, radius + 1),) * 3]
    return (grid**2).sum(axis=0) <= radius**2


def with_outer_csf(reference: np.ndarray, close_mm: int = CLOSE_MM, dilate_mm: int = DILATE_MM) -> np.ndarray:
    """``reference`` (a 1 mm brain mask) filled, closed and dilated: the brain with the CSF around it."""
    filled = np.pad(ndimage.binary_fill_holes(reference), close_mm)
    closed = ndimage.binary_closing(filled, ball(close_mm))[(slice(close_mm, -close_mm),) * 3]
    return ndimage.binary_dilation(ndimage.binary_fill_holes(closed), ball(dilate_mm))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def main() -> None:
    torch.set_num_threads(1)
    settings = SkullstripSettings.from_config(schema_defaults()["skullstrip"])
    methods = {
        "atlas": lambda image: atlas_mask(image, settings.atlas_transform, SEED),
        "deepbet": lambda image: deepbet_mask(image, device="cpu"),
    }
    print("| method | head | brain (ml) | Dice vs FreeSurfer | Dice vs FreeSurfer + outer CSF | seconds (1 core) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method, run in methods.items():
        for head, file in HEADS.items():
            source = nib.load(str(REAL / "healthy" / file))
            image = nib.Nifti1Image(source.get_fdata(dtype=np.float32), source.affine, source.header)
            start = time.perf_counter()
            mask = run(image)
            seconds = time.perf_counter() - start
            if head in REFERENCE:
                reference = np.asarray(nib.load(str(REFERENCE[head])).dataobj) > 0
                scores = f"{dice(mask, reference):.3f} | {dice(mask, with_outer_csf(reference)):.3f}"
            else:
                scores = "– | –"
            volume = mask_volume_ml(mask, image.affine)
            print(f"| {method} | {head} | {volume:.0f} | {scores} | {seconds:.1f} |", flush=True)
    for head, path in REFERENCE.items():
        reference = nib.load(str(path))
        data = np.asarray(reference.dataobj) > 0
        print(
            f"\n{head} reference: FreeSurfer {mask_volume_ml(data, reference.affine):.0f} ml, "
            f"with outer CSF (closed {CLOSE_MM} mm, dilated {DILATE_MM} mm) "
            f"{mask_volume_ml(with_outer_csf(data), reference.affine):.0f} ml"
        )
    if BRATS_T1.is_file():
        brats = nib.load(str(BRATS_T1))
        volume = mask_volume_ml(np.asarray(brats.dataobj) > 0, brats.affine)
        print(f"BraTS-GLI-00000-000 brain mask (t1n > 0): {volume:.0f} ml")


if __name__ == "__main__":
    main()
