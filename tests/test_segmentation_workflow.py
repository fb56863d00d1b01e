"""The segmentation rules (workflow/rules/segmentation.smk) in the real workflow:
planned on the tiny demo's config, and as they ran in the tiny demo."""

from __future__ import annotations

import copy
import re
import subprocess

import pandas as pd
import pytest

from conftest import planned_jobs, run_snakemake, study_of, tiny_demo_config
from tumorfab.segmentation.evaluate import COLUMNS
from tumorfab.study import layout
from tumorfab.synthesis import SOURCES


def planned_wildcards(result: subprocess.CompletedProcess, rule: str) -> list[str]:
    """The wildcards (``experiment=baseline, seed=0``) of each job of ``rule`` a dry run planned."""
    return re.findall(rf"^(?:local)?rule {rule}:\n(?:    .*\n)*?    wildcards: (.*)$", result.stdout, re.MULTILINE)


def made_with_f(source: str) -> bool:
    """Whether ``source``'s cases depend on F: it learns with F, or is made from cases that do."""
    spec = SOURCES[source]
    return spec.needs_feature_extractor or (spec.derived_from is not None and made_with_f(spec.derived_from))


def test_plan_once_preprocess_each_case_once_train_every_experiment_and_seed(tmp_path):
    config = tiny_demo_config()
    config["segmentation"]["seeds"] = [0, 1, 2]
    study = study_of(config)
    result = run_snakemake(tmp_path, config, "-n", "segmentation_all")
    segmentation = {
        rule: n for rule, n in planned_jobs(result).items() if rule.startswith("nnunet_") or rule == "segmentation_all"
    }
    n_experiments = len(study.experiments)
    assert segmentation == {
        "nnunet_image_real": len(study.train_cases) + len(study.val_cases),
        "nnunet_images_synthetic": len(study.synthetic_sources),
        "nnunet_raw_dataset": 1,
        "nnunet_plan": 1,
        "nnunet_preprocess_real": 1,
        "nnunet_preprocess_synthetic": len(study.synthetic_sources),
        "nnunet_preprocessed_dataset": n_experiments,
        "nnunet_train": n_experiments * 3,
        "nnunet_predict": n_experiments,  # one job per experiment, for all its seeds
        "nnunet_evaluate": n_experiments,  # one job per experiment, for all its seeds
        "segmentation_all": 1,
    }
    assert sorted(planned_wildcards(result, "nnunet_train")) == sorted(
        f"experiment={e}, seed={s}" for e, s in study.runs
    )


@pytest.mark.slow
def test_every_run_is_evaluated_on_the_held_out_cases_with_its_log_and_benchmark(tiny_demo):
    workdir, config = tiny_demo
    study = study_of(config)
    for experiment, seed in study.runs:
        table = pd.read_csv(workdir / layout.evaluation_csv(experiment, seed))
        assert list(table.columns) == COLUMNS
        assert list(table["case_id"]) == study.val_cases, experiment
        assert table["dice_wt"].notna().all(), experiment  # every phantom has a tumour
        assert (workdir / "logs" / "nnunet_train" / experiment / f"seed{seed}.log").exists()
        assert (workdir / layout.benchmark_tsv("nnunet_train", f"{experiment}/seed{seed}")).exists()
    for experiment in study.experiments:
        assert (workdir / "logs" / "nnunet_predict" / f"{experiment}.log").exists()
        assert (workdir / layout.benchmark_tsv("nnunet_predict", experiment)).exists()
        assert (workdir / "logs" / "nnunet_evaluate" / f"{experiment}.log").exists()
    assert (workdir / layout.benchmark_tsv("nnunet_plan", "nnunet_plan")).exists()


@pytest.mark.slow
def test_a_training_setting_reruns_training_and_after_and_reuses_the_data_made_without_f(tiny_demo):
    workdir, config = tiny_demo
    study = study_of(config)
    changed = copy.deepcopy(config)
    changed["segmentation"]["train"]["epochs"] += 1
    result = run_snakemake(workdir, changed, "-n", "segmentation_all")
    jobs = planned_jobs(result)
    assert sorted(planned_wildcards(result, "nnunet_train")) == sorted(
        f"experiment={e}, seed={s}" for e, s in study.runs
    )
    assert jobs["nnunet_predict"] == jobs["nnunet_evaluate"] == len(study.experiments)
    # The real cases, the plan and the sources made without F are reused ...
    assert not {
        "prepare", "normalize_real", "nnunet_image_real", "nnunet_raw_dataset", "nnunet_plan",
        "nnunet_preprocess_real", "generate_carvemix",
    } & set(jobs)
    # ... and F, the baseline's first-seed model, changes: the sources made with
    # it are made again, and only their cases and experiments are prepared again.
    remade = {s for s in study.synthetic_sources if made_with_f(s)}
    assert remade and remade != set(study.synthetic_sources)
    assert set(planned_wildcards(result, "nnunet_preprocess_synthetic")) == {f"source={s}" for s in remade}
    assert set(planned_wildcards(result, "nnunet_preprocessed_dataset")) == {
        f"experiment={e}" for e in study.experiments if study.source_of(e) in remade
    }
