"""The TF-Aug rules (workflow/rules/tfaug.smk) in a tiny stand-alone workflow.

A stand-in Snakefile provides what ``common.smk`` gives the rule file (config,
the case lists, the baseline's name and seeds, the generation size) and
includes the real ``paths.smk`` and ``tfaug.smk``; the scripts are the real ones.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from conftest import planned_jobs
from test_tfaug_data import make_cohort

from tumorfab.synthesis.tfaug.intensity_fit import FitResult, save_intensity

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

STUB = """
from tumorfab.synthesis import generation_size

TRAIN_CASES = {train!r}
HEALTHY_SUBJECTS = {healthy!r}
BASELINE_EXPERIMENT = "baseline"
SEEDS = [0]
GENERATION_SIZE = {{"tfaug": generation_size(config["experiments"], "tfaug")}}


include: "{paths}"
include: "{rules}"
"""


def tfaug_config(n_synthetic: int) -> dict:
    paper = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return {
        "seed": 7,
        "data": {"modalities": ["t1n"]},
        "experiments": {
            "baseline": {"source": "none", "n_synthetic": 0, "label": "Baseline"},
            "tfaug_small": {"source": "tfaug", "n_synthetic": 2, "label": "TF-Aug"},
            "tf_big": {"source": "tf", "n_synthetic": n_synthetic, "label": "TF"},
        },
        "tfaug": paper["tfaug"],
    }


def workflow(tmp_path: Path, n_synthetic: int = 3) -> Path:
    work = tmp_path / "work"
    real, healthy = make_cohort(work / "results" / "preprocess", n_real=3, n_healthy=2)
    # make_cohort writes real/ and healthy/ under results/preprocess: the workflow's layout.
    (work / "Snakefile").write_text(
        STUB.format(
            train=[p.name for p in real],
            healthy=[p.name for p in healthy],
            paths=REPO / "workflow" / "rules" / "paths.smk",
            rules=REPO / "workflow" / "rules" / "tfaug.smk",
        )
    )
    (work / "config.yaml").write_text(yaml.safe_dump(tfaug_config(n_synthetic)))
    return work


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(work / "Snakefile"), "--directory", str(work),
         "--configfile", str(work / "config.yaml"), "--cores", "1", *args],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_dry_run_plans_the_fit_then_the_generation(tmp_path):
    work = workflow(tmp_path)
    (work / "results" / "segmentation" / "models" / "baseline" / "seed0").mkdir(parents=True)
    result = snakemake(work, "-n", "results/synthetic/tfaug/manifest.csv")
    assert planned_jobs(result) == {"fit_tfaug_intensity": 1, "generate_tfaug": 1}


def test_generate_tfaug_writes_the_largest_set_any_tfaug_or_tf_experiment_needs(tmp_path):
    work = workflow(tmp_path, n_synthetic=3)
    (work / "results" / "segmentation" / "models" / "baseline" / "seed0").mkdir(parents=True)
    save_intensity(FitResult(np.ones((1, 3)), np.zeros((1, 3)), 1.0, 1.0), ["t1n"], work / "results/synthetic/tfaug/intensity.json")
    snakemake(work, "results/synthetic/tfaug/manifest.csv")
    manifest = pd.read_csv(work / "results/synthetic/tfaug/manifest.csv")
    assert list(manifest.case_id) == ["tfaug_0000", "tfaug_0001", "tfaug_0002"]
    assert (work / "results/synthetic/tfaug/cases/tfaug_0002/seg.nii.gz").exists()
    assert (work / "logs/generate_tfaug/generate_tfaug.log").read_text().count("tfaug_000") == 3
    # A changed control re-runs the generation only (params trigger), not the fit.
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["tfaug"]["controls"]["offset"]["et"] = 0.2
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    planned = snakemake(work, "-n", "results/synthetic/tfaug/manifest.csv")
    assert planned_jobs(planned) == {"generate_tfaug": 1}
    assert "params" in planned.stdout  # the reason given
