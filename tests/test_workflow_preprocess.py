"""The prepare + preprocess part of the DAG, through the snakemake CLI, and the
config errors that stop it (on the study's model, one of each kind end to end)."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import nibabel as nib
from snakemake.exceptions import WorkflowError

from conftest import planned_jobs, run_snakemake, study_of, workflow_config
from tumorfab.prepare.cases import DataError

PREPROCESS_RULES = {"normalize_real", "skullstrip_healthy", "register_healthy", "normalize_healthy"}


def _real_data_config(brats_root: Path, healthy_root: Path, n_train: int = 4, n_val: int = 2) -> dict:
    return workflow_config(
        data={"brats_root": str(brats_root), "healthy_root": str(healthy_root)},
        split={"n_real_train": n_train, "n_val": n_val},
    )


def test_paper_config_plans_every_preprocessing_job_no_demo_rule_and_no_rule_of_other_sequences(
    brats_root, healthy_root, tmp_path
):
    result = run_snakemake(tmp_path / "run", _real_data_config(brats_root, healthy_root), "-n", "preprocess_all")
    jobs = planned_jobs(result)
    assert jobs["normalize_real"] == 6
    assert jobs["skullstrip_healthy"] == jobs["register_healthy"] == jobs["normalize_healthy"] == 3
    assert jobs["prepare"] == 1
    assert "make_demo_cohort" not in jobs
    # T1 only: nothing of the other sequences' chain
    assert not {"coregister_healthy", "register_healthy_sequence", "normalize_healthy_sequence"} & set(jobs)
    assert "registered/IXI000-Guys-0000/transform" not in result.stdout


def _with_t2(brats_root: Path, healthy_root: Path, subjects: int) -> dict:
    """Each case's t1n copied as its t2w, and a T2 beside the first ``subjects``
    healthy T1s: the config of a T1 + T2 study on that tree."""
    for t1n in brats_root.glob("*/*-t1n.nii.gz"):
        shutil.copyfile(t1n, t1n.with_name(t1n.name.replace("-t1n.", "-t2w.")))
    for t1 in sorted(healthy_root.glob("*-T1.nii.gz"))[:subjects]:
        shutil.copyfile(t1, t1.with_name(t1.name.replace("-T1.", "-T2.")))
    config = _real_data_config(brats_root, healthy_root)
    config["data"].update(
        modalities=["t1n", "t2w"], healthy_sequences={"t1n": "T1", "t2w": "T2"}, healthy_pattern="*-{sequence}.nii.gz"
    )
    return config


def test_t1_t2_config_plans_the_coregistration_of_each_t2(brats_root, healthy_root, tmp_path):
    config = _with_t2(brats_root, healthy_root, subjects=2)
    result = run_snakemake(tmp_path / "run", config, "-n", "preprocess_all")
    jobs = planned_jobs(result)
    assert jobs["skullstrip_healthy"] == jobs["register_healthy"] == jobs["normalize_healthy"] == 3
    assert jobs["coregister_healthy"] == jobs["register_healthy_sequence"] == jobs["normalize_healthy_sequence"] == 2
    for subject in ("IXI000-Guys-0000", "IXI001-Guys-0001"):
        assert f"results/preprocess/coregistered/{subject}/t2w.mat" in result.stdout
        assert f"results/qc/coregistration/{subject}_t2w.png" in result.stdout
        assert f"results/preprocess/healthy/{subject}/t2w.nii.gz" in result.stdout
    assert "results/preprocess/healthy/IXI002-Guys-0002/t2w.nii.gz" not in result.stdout


def test_a_t2_without_its_t1_is_refused_naming_the_file(brats_root, healthy_root):
    config = _with_t2(brats_root, healthy_root, subjects=1)
    orphan = healthy_root / "IXI009-Guys-0009-T2.nii.gz"
    shutil.copyfile(healthy_root / "IXI000-Guys-0000-T2.nii.gz", orphan)
    with pytest.raises(DataError, match=re.escape(f"{orphan}: T2 scan of subject 'IXI009-Guys-0009', which has no T1")):
        study_of(config)


# One end-to-end test per kind of message the DAG build stops at: a model
# error (here) and a schema error (below); test_broken_entries.py has the data
# error. Each is printed without a traceback.


def test_paper_config_without_data_paths_says_how_to_set_them(tmp_path):
    result = run_snakemake(tmp_path, workflow_config(), "-n", check=False)
    assert result.returncode != 0
    assert "data.brats_root is not set" in result.stdout
    assert "make demo" in result.stdout
    assert "Traceback" not in result.stdout


def test_unknown_config_key_is_named(tmp_path):
    config = workflow_config()
    config["registration"]["typo_of_transform"] = "SyN"
    result = run_snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0
    assert "typo_of_transform" in result.stdout
    assert "Traceback" not in result.stdout


def test_out_of_range_value_is_named():
    config = workflow_config(normalize={"ceiling_over_white_matter": {"t1c": 0.75}})
    with pytest.raises(WorkflowError, match="t1c") as error:
        study_of(config)
    assert "0.75" in str(error.value)


def test_too_few_cases_for_the_split_is_refused_naming_the_keys(brats_root, healthy_root):
    config = _real_data_config(brats_root, healthy_root, n_train=6, n_val=3)
    with pytest.raises(DataError, match=re.escape("split.n_real_train=6 and split.n_val=3")):
        study_of(config)


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
        # White-matter scaling: +1 is the ceiling, not a value every scan reaches.
        assert data.min() == -1 and -1 < data.max() <= 1
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
