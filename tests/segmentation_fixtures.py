"""Tiny case folders (pipeline format) and an nnU-Net pipeline over them.

A case: an ellipsoid "brain" in [-1, 1] (background exactly -1) with a
spherical tumour whose subregions (ED 2 around TC, NCR 1 and ET 3 inside)
have their own intensities, so a tiny network learns something in a few
iterations. Used by tests/test_segmentation_*.py (and by benchmarks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_case(folder: Path, rng: np.random.Generator, shape=(40, 40, 40), spacing=3.0, lesions=1) -> Path:
    """Write t1n.nii.gz, brainmask.nii.gz, seg.nii.gz of one synthetic case."""
    grid = np.indices(shape, dtype=np.float32)
    centre = np.array(shape, dtype=np.float32) / 2
    radii = np.array(shape, dtype=np.float32) / 2 - 3
    brain = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
    image = np.where(brain, rng.normal(-0.2, 0.08, shape), -1.0).astype(np.float32)
    seg = np.zeros(shape, np.uint8)
    for _ in range(lesions):
        lesion = centre + rng.uniform(-0.35, 0.35, 3) * radii
        radius = rng.uniform(0.18, 0.28) * min(shape)
        distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, lesion)))
        seg[(distance <= radius) & brain] = 2
        seg[(distance <= 0.6 * radius) & brain] = 3
        seg[(distance <= 0.3 * radius) & brain] = 1
    image[seg == 2] += 0.35
    image[seg == 3] += 0.9
    image[seg == 1] -= 0.5
    image = np.where(brain, np.clip(image, -1, 1), -1).astype(np.float32)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), str(folder / "t1n.nii.gz"))
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), str(folder / "brainmask.nii.gz"))
    nib.save(nib.Nifti1Image(seg, affine), str(folder / "seg.nii.gz"))
    return folder


def make_cases(root: Path, ids: list[str], seed: int, **kwargs) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    return {case: make_case(root / case, rng, **kwargs) for case in ids}


#: Intensity of each label in a region case: brain < ED < NCR < ET, so that
#: every region (WT, TC, ET) is the part of the tumour above one threshold.
REGION_CASE_LEVELS = {0: -0.9, 1: -0.1, 2: -0.5, 3: 0.9}


def make_region_case(folder: Path, rng: np.random.Generator, shape=(40, 40, 40), spacing=3.0) -> Path:
    """A case whose three regions a tiny nnU-Net learns in ~100 iterations (t1n only).

    An ED ball (radius 13 voxels) holds an NCR ball (6.5) and a smaller ET
    ball (5.5) side by side; each label has its own intensity
    (:data:`REGION_CASE_LEVELS`). NCR is the larger half of TC, so an "ET"
    that is really the tumour core scores Dice at most 0.55 against ET, and
    NCR taken for ET about 0: a swap of the regions or labels shows.
    """
    grid = np.indices(shape, dtype=np.float32)
    centre = np.array(shape, dtype=np.float32) / 2
    radii = centre - 3
    brain = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1

    def ball(at: np.ndarray, radius: float) -> np.ndarray:
        return sum((g - c) ** 2 for g, c in zip(grid, at)) <= radius**2

    tumour = centre + rng.uniform(-1.5, 1.5, 3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    seg = np.zeros(shape, np.uint8)
    seg[ball(tumour, 13)] = 2
    seg[ball(tumour - 6.0 * direction, 6.5)] = 1
    seg[ball(tumour + 6.5 * direction, 5.5)] = 3
    seg[~brain] = 0
    levels = np.array([REGION_CASE_LEVELS[label] for label in range(4)], np.float32)
    image = levels[seg] + rng.normal(0, 0.03, shape)
    image = np.where(brain, np.clip(image, -1, 1), -1).astype(np.float32)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), str(folder / "t1n.nii.gz"))
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), str(folder / "brainmask.nii.gz"))
    nib.save(nib.Nifti1Image(seg, affine), str(folder / "seg.nii.gz"))
    return folder


def run_python(code: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (nnU-Net's spawn pools need a real __main__)."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


TRAIN_IDS = [f"BraTS-GLI-{i:05d}-000" for i in range(6)]
VAL_IDS = [f"BraTS-GLI-{i:05d}-000" for i in range(6, 9)]
SYNTHETIC_IDS = ["syn_0002", "syn_0000", "syn_0001"]  # manifest order, deliberately not sorted
#: A tiny network: 32^3 patch, 4 stages of 4..32 features (config keys of segmentation.plan).
TINY_PLAN = {"patch_size": [32, 32, 32], "base_features": 4, "max_features": 32, "batch_size": 2}
#: Three short epochs on the CPU (config keys of segmentation.train).
TINY_TRAIN = {
    "epochs": 3,
    "iterations_per_epoch": 3,
    "val_iterations_per_epoch": 1,
    "checkpoint_every": 1,
    "device": "cpu",
    "data_augmentation_workers": None,
}


def tiny_settings(**train):
    """The tiny study's :class:`SegmentationSettings`: the schema's defaults with
    :data:`TINY_PLAN`, :data:`TINY_TRAIN` (``train`` overrides its keys) and no
    test-time mirroring."""
    from helpers.schema_defaults import schema_defaults
    from tumorfab.segmentation.settings import SegmentationSettings

    overrides = {"plan": TINY_PLAN, "train": {**TINY_TRAIN, **train}, "predict": {"use_mirroring": False}}
    return SegmentationSettings.from_config(schema_defaults({"segmentation": overrides})["segmentation"])


def make_study(root: Path, shape=(40, 40, 40)) -> dict:
    """Real and synthetic case folders, converted images, the raw dataset (real cases).

    Returns a dict of the paths the tests use.
    """
    import pandas as pd

    from tumorfab.segmentation import dataset as ds

    real = make_cases(root / "real", TRAIN_IDS + VAL_IDS, seed=0, shape=shape)
    synthetic_cases = root / "synthetic" / "cases"
    make_cases(synthetic_cases, SYNTHETIC_IDS, seed=1, shape=shape)
    manifest = root / "synthetic" / "manifest.csv"
    pd.DataFrame({"case_id": SYNTHETIC_IDS, "note": ["c", "a", "b"]}).to_csv(manifest, index=False)
    for case, folder in real.items():
        ds.convert_real_case(folder, root / "images" / "real" / case, ["t1n"])
    ds.convert_synthetic(manifest, synthetic_cases, root / "images" / "synthetic", ["t1n"])
    raw = ds.build_raw_dataset(
        root / "raw",
        "baseline",
        modalities=["t1n"],
        train_cases=TRAIN_IDS,
        val_cases=VAL_IDS,
        real_image_root=root / "images" / "real",
        real_case_root=root / "real",
    )
    return {
        "root": root,
        "real": real,
        "manifest": manifest,
        "synthetic_cases": synthetic_cases,
        "raw": raw,
    }


def plan_and_preprocess(study: dict) -> dict:
    """Plan on the raw dataset (in a subprocess: nnU-Net's spawn pool), preprocess, assemble."""
    root = study["root"]
    plan = tiny_settings().plan
    run_python(
        "from tumorfab.segmentation.plans import plan_experiment\n"
        "from tumorfab.segmentation.settings import PlanSettings\n"
        "if __name__ == '__main__':\n"
        f"    plan_experiment({str(study['raw'])!r}, {str(root / 'plans.json')!r}, "
        f"{str(root / 'fingerprint.json')!r}, plan={plan!r}, num_processes=1)\n",
        env={"nnUNet_def_n_proc": "1"},
    )
    from tumorfab.segmentation import preprocessed as pp

    configuration = plan.configuration
    pp.preprocess_real(root / "plans.json", ["t1n"], TRAIN_IDS, root / "images" / "real", root / "real",
                       root / "preprocessed" / "real", configuration)
    pp.preprocess_synthetic(root / "plans.json", ["t1n"], study["manifest"], root / "images" / "synthetic",
                            study["synthetic_cases"], root / "preprocessed" / "synthetic", configuration)
    common = dict(plans_file=root / "plans.json", fingerprint_file=root / "fingerprint.json", modalities=["t1n"],
                  train_cases=TRAIN_IDS, real_preprocessed=root / "preprocessed" / "real",
                  configuration=configuration)
    pp.build_preprocessed_dataset(root / "nnpre" / "baseline", "baseline", **common)
    pp.build_preprocessed_dataset(root / "nnpre" / "syn", "syn", n_synthetic=2, synthetic_manifest=study["manifest"],
                                  synthetic_preprocessed=root / "preprocessed" / "synthetic", **common)
    return {**study, "configuration": configuration, "plans": root / "plans.json"}


def train_in_process(study: dict, experiment: str, run: str, pretrained_model: str | None = None, **train) -> Path:
    """Train ``experiment`` (seed 0) into ``root/runs/{run}`` in this process
    (``train``: keys of :data:`TINY_TRAIN` to change): on the CPU nnU-Net's
    augmentation runs in the main process, with no worker pool to spawn, as
    ``make gpu-check`` trains it. Returns the model folder."""
    from tumorfab.segmentation.train import train as train_nnunet

    root = study["root"]
    return train_nnunet(
        root / "nnpre" / experiment, experiment, root / "runs" / run / "work", root / "runs" / run / "model", seed=0,
        configuration=study["configuration"], settings=tiny_settings(**train).train, threads=1,
        pretrained_model=pretrained_model,
    )


def train_predict_evaluate(study: dict, experiment: str, run: str, **train) -> Path:
    """Train (:func:`train_in_process`), predict the held-out cases, evaluate; returns the CSV."""
    from tumorfab.segmentation.evaluate import evaluate
    from tumorfab.segmentation.predict import predict

    root = study["root"]
    train_in_process(study, experiment, run, **train)
    predict(root / "runs" / run / "model", study["raw"] / "imagesTs", root / "runs" / run / "pred", ["t1n"],
            case_ids=VAL_IDS, settings=tiny_settings().predict, threads=1)
    out = root / "runs" / run / "per_case.csv"
    evaluate(root / "runs" / run / "pred", {c: study["real"][c] / "seg.nii.gz" for c in VAL_IDS}, out)
    return out
