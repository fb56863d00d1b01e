"""Shared fixtures: tiny BraTS- and IXI-layout folders and workflow runners."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import yaml

from tumorfab.config import compose, load_yaml, with_defaults
from tumorfab.study.model import Study

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"



def make_empty_tree(root: Path, n_cases: int, n_heads: int) -> tuple[Path, Path]:
    """A BraTS root of ``n_cases`` case folders and an IXI root of ``n_heads`` T1
    heads, as empty files: building the DAG opens no NIfTI file."""
    brats, ixi = root / "brats", root / "ixi"
    for index in range(n_cases):
        case = f"BraTS-GLI-{index:05d}-000"
        (brats / case).mkdir(parents=True)
        for name in ("t1n", "t1c", "t2w", "t2f", "seg"):
            (brats / case / f"{case}-{name}.nii.gz").touch()
    ixi.mkdir()
    for index in range(n_heads):
        (ixi / f"IXI{index:03d}-Guys-{index:04d}-T1.nii.gz").touch()
    return brats, ixi


@pytest.fixture(scope="session")
def paper_sized_dry_run(tmp_path_factory) -> SimpleNamespace:
    """`snakemake -n --profile profiles/slurm` of the paper's config over an empty
    BraTS 2023-sized tree (1,251 GLI case folders) and 581 IXI heads, made once for
    every test that reads it: ``result`` (the CompletedProcess) and ``n_heads``
    (how long it takes: ``benchmarks/dag_build.py``)."""
    n_heads = 581
    root = tmp_path_factory.mktemp("paper_sized")
    brats, ixi = make_empty_tree(root, 1251, n_heads)
    config = workflow_config(data={"brats_root": str(brats), "healthy_root": str(ixi)})
    result = run_snakemake(root / "run", config, "-n", "--profile", str(REPO / "profiles" / "slurm"), check=False)
    assert result.returncode == 0, result.stdout[-5000:]
    return SimpleNamespace(result=result, n_heads=n_heads)


def write_volume(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def sphere(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
    return distance <= radius


def make_brats_case(root: Path, case_id: str, rng: np.random.Generator, shape=(24, 24, 24)) -> Path:
    """A BraTS-layout case: a bright ball of brain with an NCR/ET/ED lesion."""
    centre = np.array(shape) / 2
    brain = sphere(shape, centre, min(shape) / 2 - 2)
    lesion_centre = centre + rng.uniform(-2, 2, size=3)
    seg = np.zeros(shape, np.uint8)
    seg[sphere(shape, lesion_centre, 5)] = 2
    seg[sphere(shape, lesion_centre, 3)] = 3
    seg[sphere(shape, lesion_centre, 1.5)] = 1
    seg[~brain] = 0
    image = np.where(brain, 100 + rng.normal(0, 5, shape), 0).astype(np.float32)
    image[seg > 0] -= 30
    folder = root / case_id
    write_volume(folder / f"{case_id}-t1n.nii.gz", image)
    write_volume(folder / f"{case_id}-seg.nii.gz", seg)
    return folder


@pytest.fixture
def brats_root(tmp_path: Path) -> Path:
    """Six patients, one with two timepoints: seven cases."""
    rng = np.random.default_rng(0)
    root = tmp_path / "brats"
    for patient in range(6):
        make_brats_case(root, f"BraTS-GLI-{patient:05d}-000", rng)
    make_brats_case(root, "BraTS-GLI-00000-001", rng)
    return root


@pytest.fixture
def healthy_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "ixi"
    shape = (28, 28, 28)
    for index in range(3):
        head = sphere(shape, np.array(shape) / 2, 12).astype(np.float32) * 80
        write_volume(root / f"IXI{index:03d}-Guys-{index:04d}-T1.nii.gz", head + rng.normal(0, 1, shape).astype(np.float32))
    return root


def paper_and(preset: dict) -> dict:
    """The paper's config (config/config.yaml) with ``preset`` over it, as the
    workflow composes them (:func:`tumorfab.config.compose`)."""
    return compose(load_yaml(REPO / "config" / "config.yaml"), preset)


def workflow_config(**overrides) -> dict:
    """The paper's config with ``overrides`` (sections merged key by key)."""
    return paper_and(overrides)


def study_of(config: dict) -> Study:
    """The study the workflow builds from ``config`` (schema defaults filled in)."""
    return Study.from_config(with_defaults(config, REPO / "workflow" / "schemas" / "config.schema.yaml"))


def run_snakemake(workdir: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repo's workflow in ``workdir`` with ``config`` written there."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "test_config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [
        str(SNAKEMAKE),
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(config_path),
        *args,
    ]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout}")
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    counts: dict[str, int] = {}
    lines = result.stdout.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("job") and "count" in line)
    except StopIteration:
        return counts
    for line in lines[start + 2 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts



def tiny_demo_config() -> dict:
    """The demo preset shrunk further: 5 phantom patients at 4 mm, one seed,
    a few nnU-Net iterations, one experiment per source plus the
    synthetic-only study. Same DAG as `make demo`."""
    config = paper_and(load_yaml(REPO / "config" / "demo.yaml"))
    config["demo"].update(n_patients=5, n_second_timepoint=1, n_healthy=2, voxel_mm=4.0)
    config["split"].update(n_real_train=3, n_val=2)
    names = ("baseline", "carvemix_8", "pix2pix_8", "tfaug_8", "tf_8")
    config["experiments"] = {name: spec for name, spec in config["experiments"].items() if name in names}
    for name in names[1:]:
        config["experiments"][name]["n_synthetic"] = 2
    config["tables"] = {"table1": {"title": "Tiny", "experiments": list(names)}}
    config["synthetic_only"].update(n_synthetic=2, real_fraction=0.34)  # 1 of the 3 real cases
    config["segmentation"]["seeds"] = [0]
    config["segmentation"]["train"].update(epochs=2, iterations_per_epoch=3, val_iterations_per_epoch=1)
    config["tfaug"]["intensity_fit"].update(epochs=2, n_pairs=2)
    config["tfgan"].update(generator_widths=[4, 4, 8, 8, 8, 8], discriminator_width=4, epochs=1, checkpoint_every=2)
    config["pix2pix"].update(generator_widths=[4, 4, 8, 8, 8, 8], discriminator_width=4, epochs=1, checkpoint_every=2)
    return config


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> tuple[Path, dict]:
    """The whole workflow run for real on the tiny demo (a few minutes)."""
    config = tiny_demo_config()
    workdir = tmp_path_factory.mktemp("tiny_demo")
    run_snakemake(workdir, config, "--cores", "2")
    return workdir, config

