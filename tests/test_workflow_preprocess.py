"""The prepare + preprocess part of the DAG, through the snakemake CLI."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import nibabel as nib

from conftest import planned_jobs, run_snakemake, workflow_config

PREPROCESS_RULES = {"normalize_real", "skullstrip_healthy", "register_healthy", "normalize_healthy"}


def _real_data_config(brats_root: Path, healthy_root: Path, n_train: int = 4, n_val: int = 2) -> dict:
    return workflow_config(
        data={"brats_root": str(brats_root), "healthy_root": str(healthy_root)},
        split={"n_real_train": n_train, "n_val": n_val},
    )


def test_paper_config_plans_every_preprocessing_job_and_no_demo_rule(brats_root, healthy_root, tmp_path):
    result = run_snakemake(tmp_path / "run", _real_data_config(brats_root, healthy_root), "-n", "preprocess_all")
    jobs = planned_jobs(result)
    assert jobs["normalize_real"] == 6
    assert jobs["skullstrip_healthy"] == jobs["register_healthy"] == jobs["normalize_healthy"] == 3
    assert jobs["prepare"] == 1
    assert "make_demo_cohort" not in jobs


def test_paper_config_without_data_paths_says_how_to_set_them(tmp_path):
    result = run_snakemake(tmp_path, workflow_config(), "-n", check=False)
    assert result.returncode != 0
    assert "data.brats_root is not set" in result.stdout
    assert "make demo" in result.stdout


def test_unknown_config_key_is_named(brats_root, healthy_root, tmp_path):
    config = _real_data_config(brats_root, healthy_root)
    config["registration"]["typo_of_transform"] = "SyN"
    result = run_snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0
    assert "typo_of_transform" in result.stdout


def test_out_of_range_value_is_named(brats_root, healthy_root, tmp_path):
    config = _real_data_config(brats_root, healthy_root)
    config["normalize"]["upper_percentile"] = 140
    result = run_snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0
    assert "upper_percentile" in result.stdout and "140" in result.stdout


def test_too_few_cases_for_the_split_stops_before_any_job(brats_root, healthy_root, tmp_path):
    config = _real_data_config(brats_root, healthy_root, n_train=6, n_val=3)
    result = run_snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0
    assert "split.n_real_train=6 and split.n_val=3" in result.stdout


def test_label_4_stops_the_run_at_prepare_and_writes_no_manifest(brats_root, healthy_root, tmp_path):
    seg_path = next(brats_root.glob("*/*-seg.nii.gz"))
    seg = nib.load(str(seg_path))
    labels = np.asarray(seg.dataobj).copy()
    labels[labels == 3] = 4
    nib.save(nib.Nifti1Image(labels, seg.affine), str(seg_path))
    config = _real_data_config(brats_root, healthy_root, n_train=5, n_val=2)
    result = run_snakemake(tmp_path / "run", config, "--cores", "1", "preprocess_all", check=False)
    assert result.returncode != 0
    assert f"{seg_path.name}: label 4" in result.stdout
    assert not (tmp_path / "run" / "results" / "prepare" / "cases.csv").exists()
    assert not (tmp_path / "run" / "results" / "preprocess").exists()


@pytest.mark.slow
def test_demo_preprocessing_writes_every_output(tiny_demo):
    workdir, _ = tiny_demo
    cases = pd.read_csv(workdir / "results/prepare/cases.csv")
    train = set(cases.loc[cases.split == "train", "patient"])
    val = set(cases.loc[cases.split == "val", "patient"])
    assert len(cases) == 5 and not train & val
    registration = pd.read_csv(workdir / "results/preprocess/registration.csv")
    assert registration["improved"].all()
    reference = nib.load(str(next((workdir / "results/preprocess/real").glob("*/t1n.nii.gz"))))
    for image_path in (workdir / "results/preprocess/healthy").glob("*/t1n.nii.gz"):
        image = nib.load(str(image_path))
        assert image.shape == reference.shape and np.allclose(image.affine, reference.affine)
        data = image.get_fdata()
        assert data.min() == -1 and data.max() == 1
    for image_path in (workdir / "results/preprocess/real").glob("*/t1n.nii.gz"):
        data = nib.load(str(image_path)).get_fdata()
        assert data.min() >= -1 and data.max() <= 1
    # One QC picture per real case; per healthy scan one of its skull
    # stripping, one of its registration and one of its normalized scan.
    assert len(list((workdir / "results/qc/real").glob("*.png"))) == 5
    for stage in ("skullstrip", "registration", "healthy"):
        assert len(list((workdir / f"results/qc/{stage}").glob("*.png"))) == 2


@pytest.mark.slow
def test_changed_registration_reruns_registration_and_downstream_only(tiny_demo):
    workdir, config = tiny_demo
    config = {**config, "registration": {**config["registration"], "type_of_transform": "Affine"}}
    jobs = planned_jobs(run_snakemake(workdir, config, "-n", "preprocess_all"))
    assert jobs["register_healthy"] == 2 and jobs["normalize_healthy"] == 2
    assert "registration_table" in jobs
    assert not {"make_demo_cohort", "prepare", "skullstrip_healthy", "normalize_real"} & set(jobs)
