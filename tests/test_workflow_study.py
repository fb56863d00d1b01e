"""The whole study DAG of the paper config, planned on a BraTS/IXI-layout folder."""

import re

import pytest

from conftest import make_empty_tree, planned_jobs, run_snakemake, workflow_config


@pytest.fixture(scope="module")
def paper_dry_run(tmp_path_factory):
    """The paper config's dry run over 6 patients (4 training, 2 held out) and 3 heads, and its config."""
    root = tmp_path_factory.mktemp("paper")
    brats, ixi = make_empty_tree(root, 6, 3)
    config = workflow_config(
        data={"brats_root": str(brats), "healthy_root": str(ixi)},
        split={"n_real_train": 4, "n_val": 2},
    )
    return config, run_snakemake(root / "run", config, "-n")


def test_each_training_set_and_seed_is_trained_exactly_once(paper_dry_run):
    config, result = paper_dry_run
    trainings = re.findall(
        r"rule nnunet_train:\n(?:.*\n)*?\s+wildcards: experiment=(\S+), seed=(\d+)", result.stdout
    )
    expected = {(n, str(s)) for n in config["experiments"] for s in config["segmentation"]["seeds"]}
    # tf_100 is in Tables 1, 2 and 3 of the config, baseline in all three.
    assert len(trainings) == len(set(trainings)) == planned_jobs(result)["nnunet_train"]
    assert set(trainings) == expected


def test_the_plan_is_made_once_and_real_cases_preprocessed_once(paper_dry_run):
    _, result = paper_dry_run
    jobs = planned_jobs(result)
    assert jobs["nnunet_plan"] == 1
    assert jobs["nnunet_preprocess_real"] == 1
    assert jobs["generate_carvemix"] == jobs["generate_tfaug"] == jobs["fit_tfaug_intensity"] == 1


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
    assert "tf," in realism and "tfaug," in realism and "carvemix," in realism and "pix2pix," in realism
    assert (workdir / "results/synthetic/tf/losses.png").exists()
    assert (workdir / "results/synthetic/pix2pix/losses.png").exists()
    assert "Pix2Pix" in table
    synthetic_only = (workdir / "results/report/table_synthetic_only.md").read_text()
    for label in ("Baseline", "34% real only", "Synthetic only (TF, 2)", "Synthetic only, fine-tuned on 34% real"):
        assert label in synthetic_only, label


@pytest.mark.slow
def test_changed_trainer_setting_reruns_training_to_report_and_nothing_upstream(tiny_demo):
    workdir, config = tiny_demo
    changed = {**config, "segmentation": {**config["segmentation"]}}
    changed["segmentation"]["train"] = {**config["segmentation"]["train"], "epochs": 3}
    jobs = planned_jobs(run_snakemake(workdir, changed, "-n"))
    # 5 experiments of Table 1 and the synthetic-only study's 3, one seed
    assert jobs["nnunet_train"] == jobs["nnunet_predict"] == jobs["nnunet_evaluate"] == 8
    assert {"report_collect", "report_tables", "report_dice_vs_synthetic"} <= set(jobs)
    assert not UPSTREAM_OF_TRAINING & set(jobs)
    assert jobs["fit_tfaug_intensity"] == 1
    # tfaug's, tf's (TF-GAN uses F too) and pix2pix's (TF-Aug's label maps), not carvemix's
    assert jobs["nnunet_preprocess_synthetic"] == 3
    assert jobs["train_tfgan"] == jobs["generate_tf"] == jobs["generate_pix2pix"] == 1
    assert "train_pix2pix" not in jobs  # trained on real cases only


@pytest.mark.slow
def test_changed_gan_setting_reruns_gan_refinement_tf_experiments_and_report_only(tiny_demo):
    workdir, config = tiny_demo
    changed = {**config, "tfgan": {**config["tfgan"], "hinge_margin": 0.2}}
    result = run_snakemake(workdir, changed, "-n")
    jobs = planned_jobs(result)
    assert jobs["train_tfgan"] == jobs["generate_tf"] == 1
    # tf_8 and the synthetic-only study's TF model and its fine-tune
    trained = {"tf_8", "synthetic_only", "synthetic_only_finetuned"}
    assert jobs["nnunet_train"] == 3
    assert set(re.findall(r"wildcards: experiment=(\S+), seed=0", result.stdout)) == trained
    assert {"report_collect", "report_tables", "report_realism", "mosaic_refinement"} <= set(jobs)
    assert not (UPSTREAM_OF_TRAINING | {"fit_tfaug_intensity", "generate_tfaug", "train_pix2pix", "generate_pix2pix"}) & set(jobs)


@pytest.mark.slow
def test_changed_pix2pix_setting_reruns_pix2pix_its_experiment_and_report_only(tiny_demo):
    workdir, config = tiny_demo
    changed = {**config, "pix2pix": {**config["pix2pix"], "lambda_l1": 50.0}}
    result = run_snakemake(workdir, changed, "-n")
    jobs = planned_jobs(result)
    assert jobs["train_pix2pix"] == jobs["generate_pix2pix"] == 1
    assert jobs["nnunet_images_synthetic"] == jobs["nnunet_preprocess_synthetic"] == 1
    assert jobs["nnunet_train"] == jobs["nnunet_predict"] == jobs["nnunet_evaluate"] == 1
    assert set(re.findall(r"wildcards: experiment=(\S+), seed=0", result.stdout)) == {"pix2pix_8"}
    assert re.findall(r"wildcards: source=(\S+)", result.stdout) == ["pix2pix"] * 3  # images, preprocess, mosaic
    assert {"report_collect", "report_tables", "report_realism", "mosaic_synthetic"} <= set(jobs)
    assert not (
        UPSTREAM_OF_TRAINING
        | {"fit_tfaug_intensity", "generate_tfaug", "train_tfgan", "generate_tf", "mosaic_refinement"}
    ) & set(jobs)


def test_the_feature_extractor_target_is_the_baseline_first_seed_and_nothing_synthetic(
    brats_root, healthy_root, tmp_path
):
    # That TF-Aug's fit reads F: test_tfaug_workflow.py.
    config = workflow_config(
        data={"brats_root": str(brats_root), "healthy_root": str(healthy_root)},
        split={"n_real_train": 4, "n_val": 2},
    )
    result = run_snakemake(tmp_path, config, "-n", "feature_extractor")
    jobs = planned_jobs(result)
    assert jobs["nnunet_train"] == 1
    assert re.search(r"wildcards: experiment=baseline, seed=" + str(config["segmentation"]["seeds"][0]), result.stdout)
    assert not {"generate_carvemix", "generate_tfaug", "fit_tfaug_intensity", "nnunet_preprocess_synthetic"} & set(jobs)


def test_synthetic_only_study_fine_tunes_each_seed_from_its_synthetic_model(brats_root, healthy_root, tmp_path):
    config = workflow_config(
        data={"brats_root": str(brats_root), "healthy_root": str(healthy_root)},
        split={"n_real_train": 4, "n_val": 2},
        synthetic_only={"enabled": True, "source": "tf", "n_synthetic": 500, "real_fraction": 0.25},
    )
    result = run_snakemake(tmp_path, config, "-n", "--printshellcmds")
    seeds = config["segmentation"]["seeds"]
    for seed in seeds:
        assert re.search(
            r"rule nnunet_train:\n\s+input: results/segmentation/models/synthetic_only/seed"
            + str(seed)
            + r", results/segmentation/nnunet/synthetic_only_finetuned/nnUNet_preprocessed\n",
            result.stdout,
        ), seed
    trainings = set(re.findall(r"wildcards: experiment=(synthetic_only\w*|real_fraction_only), seed=(\d+)", result.stdout))
    assert trainings == {(e, str(s)) for e in ("synthetic_only", "synthetic_only_finetuned", "real_fraction_only") for s in seeds}
    assert "results/report/table_synthetic_only.md" in result.stdout
    # TF (and TF-Aug under it) is generated at the study's size
    assert planned_jobs(result)["generate_tf"] == 1
