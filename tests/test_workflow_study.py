"""The whole study DAG of the paper config, planned on a BraTS/IXI-layout folder."""

import re

import pytest

from conftest import planned_jobs, run_snakemake, workflow_config

from tumorfab.synthesis import SOURCES


def _paper_dry_run(brats_root, healthy_root, tmp_path):
    config = workflow_config(
        data={"brats_root": str(brats_root), "healthy_root": str(healthy_root)},
        split={"n_real_train": 4, "n_val": 2},
    )
    return config, run_snakemake(tmp_path, config, "-n")


def test_each_training_set_and_seed_is_trained_exactly_once(brats_root, healthy_root, tmp_path):
    config, result = _paper_dry_run(brats_root, healthy_root, tmp_path)
    trainings = re.findall(
        r"rule nnunet_train:\n(?:.*\n)*?\s+wildcards: experiment=(\S+), seed=(\d+)", result.stdout
    )
    implemented = [
        n for n, e in config["experiments"].items() if e["source"] == "none" or SOURCES[e["source"]].available
    ]
    expected = {(n, str(s)) for n in implemented for s in config["segmentation"]["seeds"]}
    # tf_100 is in Tables 1, 2 and 3 of the config, baseline in all three.
    assert len(trainings) == len(set(trainings)) == planned_jobs(result)["nnunet_train"]
    assert set(trainings) == expected


def test_the_plan_is_made_once_and_real_cases_preprocessed_once(brats_root, healthy_root, tmp_path):
    _, result = _paper_dry_run(brats_root, healthy_root, tmp_path)
    jobs = planned_jobs(result)
    assert jobs["nnunet_plan"] == 1
    assert jobs["nnunet_preprocess_real"] == 1
    assert jobs["generate_carvemix"] == jobs["generate_tfaug"] == jobs["fit_tfaug_intensity"] == 1


def test_unimplemented_sources_are_skipped_with_a_message(brats_root, healthy_root, tmp_path):
    _, result = _paper_dry_run(brats_root, healthy_root, tmp_path)
    assert "experiments not available in this version, skipped" in result.stdout
    assert "pix2pix_100" in result.stdout


# TF-Aug is *downstream* of the baseline training: its intensity fit uses the
# baseline encoder F, so a changed trainer setting rightly re-runs the TF-Aug
# chain (fit, generation, its nnU-Net images) as well.
UPSTREAM_OF_TRAINING = {
    "make_demo_cohort", "prepare", "normalize_real", "skullstrip_healthy", "register_healthy",
    "normalize_healthy", "generate_carvemix", "nnunet_plan", "nnunet_preprocess_real",
    "nnunet_image_real",
}


@pytest.mark.slow
def test_demo_runs_through_the_tables_and_report(tiny_demo):
    workdir, _ = tiny_demo
    table = (workdir / "results/report/table1.md").read_text()
    assert "Baseline" in table and "CarveMix" in table and "TF-Aug" in table
    assert "TF (ours)" in table
    assert (workdir / "results/synthetic/tfaug/intensity.json").exists()
    assert (workdir / "results/report/figures/mosaic_tfaug.png").exists()
    for name in ("refinement.png", "realism.png", "mosaic_tf.png"):
        assert (workdir / "results/report/figures" / name).exists()
    realism = (workdir / "results/report/realism.csv").read_text()
    assert "tf," in realism and "tfaug," in realism and "carvemix," in realism
    assert (workdir / "results/synthetic/tf/losses.png").exists()


@pytest.mark.slow
def test_changed_trainer_setting_reruns_training_to_report_and_nothing_upstream(tiny_demo):
    workdir, config = tiny_demo
    changed = {**config, "segmentation": {**config["segmentation"]}}
    changed["segmentation"]["train"] = {**config["segmentation"]["train"], "epochs": 3}
    jobs = planned_jobs(run_snakemake(workdir, changed, "-n"))
    assert jobs["nnunet_train"] == jobs["nnunet_predict"] == jobs["nnunet_evaluate"] == 4
    assert {"report_collect", "report_tables", "report_dice_vs_synthetic"} <= set(jobs)
    assert not UPSTREAM_OF_TRAINING & set(jobs)
    assert jobs["fit_tfaug_intensity"] == 1
    assert jobs["nnunet_preprocess_synthetic"] == 2  # tfaug's and tf's (TF-GAN uses F too)
    assert jobs["train_tfgan"] == jobs["generate_tf"] == 1


@pytest.mark.slow
def test_changed_gan_setting_reruns_gan_refinement_tf_experiments_and_report_only(tiny_demo):
    workdir, config = tiny_demo
    changed = {**config, "tfgan": {**config["tfgan"], "hinge_margin": 0.2}}
    jobs = planned_jobs(run_snakemake(workdir, changed, "-n"))
    assert jobs["train_tfgan"] == jobs["generate_tf"] == 1
    assert jobs["nnunet_train"] == 1  # tf_8 alone
    assert re.findall(r"wildcards: experiment=(\S+), seed=0", run_snakemake(workdir, changed, "-n").stdout) == ["tf_8"] * 3
    assert {"report_collect", "report_tables", "report_realism", "mosaic_refinement"} <= set(jobs)
    assert not (UPSTREAM_OF_TRAINING | {"fit_tfaug_intensity", "generate_tfaug"}) & set(jobs)


def test_the_feature_extractor_target_is_the_baseline_first_seed_and_nothing_synthetic(
    brats_root, healthy_root, tmp_path
):
    config = workflow_config(
        data={"brats_root": str(brats_root), "healthy_root": str(healthy_root)},
        split={"n_real_train": 4, "n_val": 2},
    )
    result = run_snakemake(tmp_path, config, "-n", "feature_extractor")
    jobs = planned_jobs(result)
    assert jobs["nnunet_train"] == 1
    assert re.search(r"wildcards: experiment=baseline, seed=" + str(config["segmentation"]["seeds"][0]), result.stdout)
    assert not {"generate_carvemix", "generate_tfaug", "fit_tfaug_intensity", "nnunet_preprocess_synthetic"} & set(jobs)
    # The loop: TF-Aug's fit reads F.
    full = run_snakemake(tmp_path, config, "-n", "results/synthetic/tfaug/intensity.json")
    assert planned_jobs(full)["nnunet_train"] == 1
