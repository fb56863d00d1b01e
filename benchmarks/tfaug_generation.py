"""Speed of TF-Aug generation per case on the BraTS grid (240×240×155), against I/O alone.

Writes a synthetic healthy case folder (an ellipsoidal brain with smooth
texture) and a real case with a ~60 ml three-label tumour in a temporary
folder, then times, per case (median of ``--repeats``):

* **load + save**: reading the healthy case folder (t1n, brainmask) and
  writing a case folder (t1n, seg, brainmask), what any generator must do;
* **generate**: the same plus TF-Aug's work (``generate.make_case`` +
  the case-folder writer: mask augmentation and placement, ROI blur, a·x+b),
  with the paper preset, then with texture and with the mass effect on.

Target: generate / (load + save) ≤ 1.5 with the paper
preset. Run: ``python benchmarks/tfaug_generation.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from tumorfab.casefolder import load_case, save_case
from tumorfab.synthesis.tfaug.generate import CaseRecipe, make_case
from tumorfab.synthesis.tfaug.masks import MaskBank
from tumorfab.synthesis.tfaug.settings import TFAugSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.schema_defaults import schema_defaults  # noqa: E402  (the config schema's defaults)

SHAPE = (240, 240, 155)


def ellipsoid(centre, radii) -> np.ndarray:
    axes = [((np.arange(n) - c) / r) ** 2 for n, c, r in zip(SHAPE, centre, radii)]
    return (axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]) <= 1.0


def write_inputs(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    brain = ellipsoid((120, 120, 78), (70, 85, 65))
    texture = ndimage.gaussian_filter(rng.standard_normal(SHAPE).astype(np.float32), 3.0)
    image = np.where(brain, np.clip(0.2 + 4.0 * texture, -1, 1), -1.0).astype(np.float32)
    healthy = root / "healthy" / "IXI000"
    real = root / "real" / "BraTS-GLI-00000-000"
    for folder in (healthy, real):
        folder.mkdir(parents=True)
        nib.save(nib.Nifti1Image(image, affine), str(folder / "t1n.nii.gz"))
        nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), str(folder / "brainmask.nii.gz"))
    seg = np.zeros(SHAPE, np.uint8)
    seg[ellipsoid((100, 130, 80), (28, 22, 24))] = 2
    seg[ellipsoid((100, 130, 80), (16, 13, 14))] = 3
    seg[ellipsoid((100, 130, 80), (8, 7, 7))] = 1
    nib.save(nib.Nifti1Image(seg, affine), str(real / "seg.nii.gz"))
    return real, healthy


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        real, healthy = write_inputs(root)
        start = time.perf_counter()
        bank = MaskBank.from_case_dirs([real])
        bank_seconds = time.perf_counter() - start
        subjects = {healthy.name: healthy}

        def settings(controls=None, mass_effect=None) -> CaseRecipe:
            """The schema's defaults of tfaug (the paper preset) with ``controls``, ``mass_effect`` overrides."""
            overrides = {"controls": controls or {}, "mass_effect": mass_effect or {}}
            tfaug = TFAugSettings.from_config(schema_defaults({"tfaug": overrides})["tfaug"])
            return CaseRecipe(
                tfaug, ("t1n",), np.array([[0.7, 1.1, 1.3]], np.float32), np.array([[-0.4, 0.1, 0.35]], np.float32), 2025
            )

        paper = settings()
        example = make_case(0, bank, subjects, paper)

        def load_and_save():
            case = load_case(healthy, ["t1n"], with_seg=False)
            example.case.images, example.case.brainmask = case.images, case.brainmask
            save_case(example.case, root / "io_only")

        def generate(case_settings):
            return lambda: save_case(make_case(0, bank, subjects, case_settings).case, root / "out")

        io_seconds = median_time(load_and_save, args.repeats)
        runs = {
            "paper preset": generate(paper),
            "+ texture": generate(settings({"heterogeneity": {"amplitude": 0.1, "scale_mm": 3.0}})),
            "+ mass effect": generate(settings(mass_effect={"enabled": True, "magnitude_mm": [5.0, 5.0]})),
        }
        print(f"grid {SHAPE}, lesion {example.row['volume_ml']:.1f} ml, repeats {args.repeats} (median)")
        print(f"mask bank (1 case, once per run): {bank_seconds:.2f} s")
        print(f"load + save only:                 {io_seconds:.2f} s")
        for name, run in runs.items():
            seconds = median_time(run, args.repeats)
            print(f"generate, {name:<14}         {seconds:.2f} s  ratio {seconds / io_seconds:.2f}x")


if __name__ == "__main__":
    main()
