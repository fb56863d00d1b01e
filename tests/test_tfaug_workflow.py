"""The TF-Aug rules (workflow/rules/tfaug.smk) in the real workflow: planned
on the tiny demo's config, and as they ran in the tiny demo."""

from __future__ import annotations

import copy
import re

import pandas as pd
import pytest

from conftest import planned_jobs, run_snakemake, study_of, tiny_demo_config
from tumorfab.study import layout

MANIFEST = layout.synthetic_manifest("tfaug")


def test_the_fit_reads_f_and_the_generation_reads_the_fit(tmp_path):
    config = tiny_demo_config()
    study = study_of(config)
    result = run_snakemake(tmp_path, config, "-n", MANIFEST)
    jobs = planned_jobs(result)
    assert jobs["fit_tfaug_intensity"] == jobs["generate_tfaug"] == 1
    # F is the only model trained first, and no other source is made.
    assert jobs["nnunet_train"] == 1
    assert f"wildcards: experiment={study.baseline}, seed={study.seeds[0]}" in result.stdout
    assert not {"generate_carvemix", "train_tfgan", "generate_tf", "train_pix2pix", "generate_pix2pix"} & set(jobs)
    (fit_inputs,) = re.findall(r"^rule fit_tfaug_intensity:\n    input: (.*)$", result.stdout, re.MULTILINE)
    assert study.feature_extractor_dir in fit_inputs.split(", ")
    (generate_inputs,) = re.findall(r"^rule generate_tfaug:\n    input: (.*)$", result.stdout, re.MULTILINE)
    assert layout.intensity_fit_json("tfaug") in generate_inputs.split(", ")


@pytest.mark.slow
def test_generate_tfaug_writes_the_set_its_experiments_and_the_sources_made_from_it_share(tiny_demo):
    workdir, config = tiny_demo
    study = study_of(config)
    manifest = pd.read_csv(workdir / MANIFEST)
    assert list(manifest["case_id"]) == [f"tfaug_{i:04d}" for i in range(study.generation_size("tfaug"))]
    assert (manifest["seed"] == config["seed"]).all()
    for case_id in manifest["case_id"]:
        assert (workdir / layout.case_file(f"{layout.synthetic_cases_dir('tfaug')}/{case_id}", "seg")).exists()
    log = (workdir / "logs" / "generate_tfaug" / "generate_tfaug.log").read_text()
    assert all(case_id in log for case_id in manifest["case_id"])
    # Nested sets: case i of TF and of Pix2Pix is made from TF-Aug's case i.
    for source, column in (("tf", "coarse_case"), ("pix2pix", "layout_case")):
        derived = pd.read_csv(workdir / layout.synthetic_manifest(source))
        assert 0 < len(derived) <= len(manifest)
        assert list(derived[column]) == list(manifest["case_id"][: len(derived)]), source


@pytest.mark.slow
def test_a_larger_tf_experiment_regenerates_tfaug_without_refitting(tiny_demo):
    workdir, config = tiny_demo
    changed = copy.deepcopy(config)
    changed["experiments"]["tf_8"]["n_synthetic"] = study_of(config).generation_size("tfaug") + 1
    assert planned_jobs(run_snakemake(workdir, changed, "-n", MANIFEST)) == {"generate_tfaug": 1}


@pytest.mark.slow
def test_a_changed_lesion_control_regenerates_tfaug_without_refitting(tiny_demo):
    workdir, config = tiny_demo
    changed = copy.deepcopy(config)
    changed["tfaug"].setdefault("controls", {}).setdefault("offset", {})["et"] = 0.2
    planned = run_snakemake(workdir, changed, "-n", MANIFEST)
    assert planned_jobs(planned) == {"generate_tfaug": 1}
    assert "params" in planned.stdout  # the reason given
