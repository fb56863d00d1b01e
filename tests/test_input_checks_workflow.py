"""Input checks: the README's --config form, case folders of other tasks or
with wrong names (on the study's model), and bad volumes stopping prepare."""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from snakemake.cli import parse_config
from snakemake.exceptions import WorkflowError

from conftest import REPO, SNAKEMAKE, make_brats_case, paper_and, planned_jobs, run_snakemake, study_of, workflow_config
from tumorfab.config import typed_command_line_config
from tumorfab.prepare.cases import DataError

#: The --config argument of README "Running on real data", exactly as written there.
README_CONFIG = "data='{brats_root: /data/BraTS2023-GLI, healthy_root: /data/IXI-T1}'"


def _run_command_line(workdir: Path, arguments: str) -> subprocess.CompletedProcess:
    """``snakemake ARGUMENTS`` through a shell, as typed, with the paper config in ``workdir``."""
    (workdir / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", workdir / "config" / "config.yaml")
    return subprocess.run(
        f"{SNAKEMAKE} --snakefile {REPO / 'Snakefile'} {arguments}",
        shell=True,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _readme_config(brats_root: Path, healthy_root: Path, extra: str = "") -> str:
    """The README's --config argument on the test folders, ``extra`` added inside the braces."""
    config = README_CONFIG.replace("/data/BraTS2023-GLI", str(brats_root))
    config = config.replace("/data/IXI-T1", str(healthy_root)).replace("}'", f"{extra}}}'")
    return f"{config} split='{{n_real_train: 5, n_val: 2}}'"


def _real_data_config(brats_root: Path, healthy_root: Path, **data) -> dict:
    return workflow_config(
        data={"brats_root": str(brats_root), "healthy_root": str(healthy_root), **data},
        split={"n_real_train": 5, "n_val": 2},
    )


def _rewrite(path: Path, change) -> None:
    image = nib.load(str(path))
    nib.save(nib.Nifti1Image(change(np.asarray(image.dataobj).copy()), image.affine), str(path))


def _labels_4_and_5(labels: np.ndarray) -> np.ndarray:
    """ET as BraTS 2021's 4, oedema as an unknown 5."""
    labels[labels == 3] = 4
    labels[labels == 2] = 5
    return labels


def test_readme_config_string_passes_the_schema():
    assert README_CONFIG in (REPO / "README.md").read_text()
    (argument,) = shlex.split(README_CONFIG)  # as the shell hands it to snakemake
    config = paper_and(typed_command_line_config(parse_config([argument])))
    with pytest.raises(DataError, match="data.brats_root: /data/BraTS2023-GLI is not a directory"):
        study_of(config)


def test_readme_config_form_with_a_boolean_plans_and_runs_prepare_remapping_label_4(brats_root, healthy_root, tmp_path):
    seg = brats_root / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-seg.nii.gz"
    _rewrite(seg, lambda labels: np.where(labels == 3, 4, labels).astype(np.uint8))
    config = _readme_config(brats_root, healthy_root, ", remap_label_4_to_3: true")
    result = _run_command_line(tmp_path, f"prepare --cores 1 --config {config}")
    assert result.returncode == 0, result.stdout
    assert planned_jobs(result) == {"prepare": 1}
    assert (tmp_path / "results" / "prepare" / "cases.csv").exists()


def test_bad_volumes_stop_prepare_with_every_file_named(brats_root, healthy_root, tmp_path):
    nan_seg = brats_root / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-seg.nii.gz"
    n_necrotic = int((np.asarray(nib.load(str(nan_seg)).dataobj) == 1).sum())
    _rewrite(nan_seg, lambda labels: np.where(labels == 1, np.nan, labels).astype(np.float32))
    label_5_seg = brats_root / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-seg.nii.gz"
    _rewrite(label_5_seg, _labels_4_and_5)
    singular = healthy_root / "IXI000-Guys-0000-T1.nii.gz"
    image = nib.load(str(singular))
    image.header.set_sform(np.zeros((4, 4)), code=1)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), None, image.header), str(singular))

    config = _real_data_config(brats_root, healthy_root, remap_label_4_to_3=True)
    result = run_snakemake(tmp_path / "run", config, "--cores", "1", "preprocess_all", check=False)
    assert result.returncode != 0
    assert "3 problem(s) in the input data" in result.stdout
    assert f"{nan_seg}: {n_necrotic} NaN/inf voxels" in result.stdout
    assert f"{label_5_seg}: labels [5] outside {{0,1,2,3}}" in result.stdout
    assert f"{singular}: affine is singular" in result.stdout
    assert not (tmp_path / "run" / "results" / "prepare" / "cases.csv").exists()
    assert not (tmp_path / "run" / "results" / "preprocess").exists()


def test_misnamed_case_folder_is_refused_with_the_fix(brats_root, healthy_root):
    shutil.copytree(brats_root / "BraTS-GLI-00003-000", brats_root / "BraTS-GLI-00003-000 copy")
    with pytest.raises(DataError) as error:
        study_of(_real_data_config(brats_root, healthy_root))
    assert f"'{brats_root}/BraTS-GLI-00003-000 copy': looks like a case folder" in str(error.value)
    assert "rename it to its case id or move it out of data.brats_root" in str(error.value)


def test_task_key_plans_the_cases_of_that_task_and_names_the_other_tasks_folders_in_a_warning(
    brats_root, healthy_root, tmp_path
):
    rng = np.random.default_rng(5)
    for patient in range(7):
        make_brats_case(brats_root, f"BraTS-MEN-{patient:05d}-000", rng)
    config = _real_data_config(brats_root, healthy_root, task="MEN")
    result = run_snakemake(tmp_path, config, "-n", "preprocess_all")
    assert planned_jobs(result)["normalize_real"] == 7
    assert "results/preprocess/real/BraTS-MEN-00000-000/seg.nii.gz" in result.stdout
    assert "results/preprocess/real/BraTS-GLI-" not in result.stdout
    assert "left out because data.task is MEN: 7 GLI (BraTS-GLI-00000-000, " in result.stdout


def test_task_must_be_an_upper_case_code():
    with pytest.raises(WorkflowError, match=re.escape("'gli' does not match '^[A-Z]+$'")):
        study_of(workflow_config(data={"task": "gli"}))
