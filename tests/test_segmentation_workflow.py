"""The segmentation rules (workflow/rules/segmentation.smk) planned and run for real.

A minimal Snakefile stands in for the rest of the workflow: it defines what
the top of common.smk provides (config, TRAIN_CASES, VAL_CASES), takes
common.smk's real "experiments" and "segmentation" sections and paths.smk, and
the test writes the files earlier stages write (real case folders, a
synthetic source).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import planned_jobs, workflow_sections
from helpers.schema_defaults import schema_defaults
from segmentation_fixtures import SYNTHETIC_IDS, TINY_PLAN, TINY_TRAIN, TRAIN_IDS, VAL_IDS, make_cases

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

SNAKEFILE = f"""
from pathlib import Path
from snakemake.exceptions import WorkflowError
configfile: "config.yaml"
TRAIN_CASES = config["train_cases"]
VAL_CASES = config["val_cases"]
wildcard_constraints:
    case=r"BraTS-[A-Z]+-\\d{{5}}-\\d{{3}}",
{workflow_sections("segmentation")}
include: "{REPO}/workflow/rules/segmentation.smk"
"""


def _config(seeds, **train):
    return {
        "seed": 5,
        "train_cases": TRAIN_IDS,
        "val_cases": VAL_IDS,
        "data": {"modalities": ["t1n"]},
        "experiments": schema_defaults({"experiments": {"carvemix_2": {"source": "carvemix", "n_synthetic": 2}}})[
            "experiments"
        ],
        "segmentation": {
            "seeds": seeds,
            "threads": 1,
            "mem_mb": 4000,
            "plan": TINY_PLAN,
            "train": {**TINY_TRAIN, **train},
            "predict": {"tile_step_size": 0.5, "use_mirroring": False},
        },
    }


def _workdir(root: Path, config: dict) -> Path:
    make_cases(root / "results" / "preprocess" / "real", TRAIN_IDS + VAL_IDS, seed=0, shape=(32, 32, 32))
    make_cases(root / "results" / "synthetic" / "carvemix" / "cases", SYNTHETIC_IDS, seed=1, shape=(32, 32, 32))
    pd.DataFrame({"case_id": SYNTHETIC_IDS}).to_csv(root / "results" / "synthetic" / "carvemix" / "manifest.csv", index=False)
    (root / "Snakefile").write_text(SNAKEFILE)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def _snakemake(root: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(SNAKEMAKE), "--directory", str(root), *args], capture_output=True, text=True,
                            cwd=root)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result


def test_plan_once_preprocess_each_case_once_train_every_experiment_and_seed(tmp_path):
    root = _workdir(tmp_path, _config([0, 1, 2]))
    counts = planned_jobs(_snakemake(root, "-n", "segmentation_all"))
    assert counts == {
        "nnunet_image_real": len(TRAIN_IDS) + len(VAL_IDS),
        "nnunet_images_synthetic": 1,
        "nnunet_raw_dataset": 1,
        "nnunet_plan": 1,
        "nnunet_preprocess_real": 1,
        "nnunet_preprocess_synthetic": 1,
        "nnunet_preprocessed_dataset": 2,
        "nnunet_train": 6,
        "nnunet_predict": 2,  # one job per experiment, for all its seeds
        "nnunet_evaluate": 2,  # one job per experiment, for all its seeds
        "segmentation_all": 1,
    }


@pytest.mark.slow
def test_segmentation_rules_run_and_a_training_setting_reruns_only_training_and_after(tmp_path):
    config = _config([0], epochs=1, iterations_per_epoch=2)
    root = _workdir(tmp_path, config)
    _snakemake(root, "--cores", "2", "segmentation_all")
    for experiment in ("baseline", "carvemix_2"):
        table = pd.read_csv(root / f"results/segmentation/evaluation/{experiment}/seed0/per_case.csv")
        assert list(table["case_id"]) == VAL_IDS
        assert table[["dice_et", "dice_tc", "dice_wt"]].notna().all().all()
        assert (root / f"logs/nnunet_train/{experiment}/seed0.log").exists()
        assert (root / f"results/benchmarks/nnunet_train/{experiment}/seed0.tsv").exists()
    assert "Nothing to be done" in _snakemake(root, "-n", "segmentation_all").stdout

    config["segmentation"]["train"]["epochs"] = 2
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    counts = planned_jobs(_snakemake(root, "-n", "segmentation_all"))
    assert counts == {"nnunet_train": 2, "nnunet_predict": 2, "nnunet_evaluate": 2, "segmentation_all": 1}
