"""nnU-Net training, resume, prediction and the feature extractor F on a tiny study.

One study (6 real training cases, 3 held-out, 3 synthetic; 40^3 voxels) is
planned and preprocessed once per session; run "a" (baseline, seed 0, CPU) is
shared by the tests that need a trained model. Trainings run in the test's
process (``segmentation_fixtures.train_in_process``), the one to be killed in a
forked child.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from helpers.schema_defaults import schema_defaults
from segmentation_fixtures import (
    TRAIN_IDS,
    VAL_IDS,
    make_study,
    plan_and_preprocess,
    tiny_settings,
    train_in_process,
    train_predict_evaluate,
)
from tumorfab.segmentation.environment import nnunet_environment
from tumorfab.segmentation.train import FOLD, trainer_output_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    return plan_and_preprocess(make_study(tmp_path_factory.mktemp("seg_training")))


@pytest.fixture(scope="session")
def run_a(study):
    return train_predict_evaluate(study, "baseline", "a")


def _log_of(study, run, experiment="baseline"):
    folder = trainer_output_folder(study["root"] / "runs" / run / "work", experiment, study["configuration"])
    return "\n".join(p.read_text() for p in sorted((folder / f"fold_{FOLD}").glob("training_log_*.txt")))


def test_shared_plan_differs_between_experiments_only_in_the_dataset_name(study):
    plans = {e: json.loads((study["root"] / "nnpre" / e / f"Dataset001_{e}" / "tumorfabPlans.json").read_text())
             for e in ("baseline", "syn")}
    assert plans["baseline"]["dataset_name"] == "Dataset001_baseline"
    assert {**plans["syn"], "dataset_name": None} == {**plans["baseline"], "dataset_name": None}
    custom = plans["baseline"]["configurations"][study["configuration"]]
    assert custom["inherits_from"] == "3d_fullres"
    assert custom["patch_size"] == [32, 32, 32]
    assert custom["architecture"]["arch_kwargs"]["features_per_stage"] == [4, 8, 16, 32]
    assert plans["baseline"]["configurations"]["3d_fullres"]["use_mask_for_norm"] == [True]


def test_data_identifier_resolves_as_nnunets_plans_manager(study):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from tumorfab.segmentation.plans import data_identifier

    plans = json.loads((study["root"] / "nnpre" / "baseline" / "Dataset001_baseline" / "tumorfabPlans.json").read_text())
    manager = PlansManager(plans)
    for configuration in ("3d_fullres", study["configuration"]):
        assert data_identifier(plans, configuration) == manager.get_configuration(configuration).data_identifier
    own = {**plans, "configurations": {**plans["configurations"]}}
    own["configurations"][study["configuration"]] = {**plans["configurations"][study["configuration"]], "data_identifier": "x"}
    assert data_identifier(own, study["configuration"]) == PlansManager(own).get_configuration(study["configuration"]).data_identifier == "x"


def _trainer(study, results, trainer_class=None, **kwargs):
    """A trainer of the baseline's preprocessed dataset on the CPU, as train() builds it."""
    from tumorfab.segmentation.trainers.nnUNetTrainerTumorfab import nnUNetTrainerTumorfab

    dataset = study["root"] / "nnpre" / "baseline" / "Dataset001_baseline"
    plans = {**json.loads((dataset / "tumorfabPlans.json").read_text()), "continue_training": False}
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    with nnunet_environment(nnUNet_preprocessed=dataset.parent, nnUNet_results=results):
        return (trainer_class or nnUNetTrainerTumorfab)(
            plans, study["configuration"], FOLD, dataset_json, torch.device("cpu"), **kwargs
        )


def test_trainer_takes_its_settings_and_seed_without_any_environment_variable(study, tmp_path, monkeypatch):
    from tumorfab.segmentation.trainers.nnUNetTrainerTumorfab import seed_everything

    for name in [n for n in os.environ if n.startswith("TUMORFAB_")]:
        monkeypatch.delenv(name)
    settings = tiny_settings(epochs=7, iterations_per_epoch=5, val_iterations_per_epoch=2, checkpoint_every=3,
                             initial_lr=0.05).train
    trainer = _trainer(study, tmp_path, settings=settings, seed=4)
    drawn = (random.random(), np.random.rand(), torch.rand(1).item())
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (7, 5, 2)
    assert (trainer.save_every, trainer.initial_lr, trainer.seed) == (3, 0.05, 4)
    seed_everything(4)
    assert drawn == (random.random(), np.random.rand(), torch.rand(1).item())  # seeded when built
    # nnU-Net's own record of the constructor's arguments (saved in every checkpoint as init_args)
    assert list(trainer.my_init_kwargs) == ["plans", "configuration", "fold", "dataset_json", "device"]


def test_trainer_built_by_nnunets_cli_keeps_nnunets_settings_and_seed_0(study, tmp_path):
    """``nnUNetv2_train ... -tr nnUNetTrainerTumorfab``: nnU-Net finds the trainer by name and builds it."""
    from nnunetv2.run.run_training import get_trainer_from_args
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    with nnunet_environment(nnUNet_preprocessed=study["root"] / "nnpre" / "baseline", nnUNet_results=tmp_path):
        trainer = get_trainer_from_args("Dataset001_baseline", study["configuration"], FOLD, "nnUNetTrainerTumorfab",
                                        "tumorfabPlans", device=torch.device("cpu"))
    nnunet = _trainer(study, tmp_path / "nnunet", trainer_class=nnUNetTrainer)
    names = ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch", "save_every", "initial_lr")
    assert type(trainer).__name__ == "nnUNetTrainerTumorfab" and trainer.seed == 0
    assert {n: getattr(trainer, n) for n in names} == {n: getattr(nnunet, n) for n in names}


def test_a_real_case_is_preprocessed_once_and_linked_into_every_experiment(study):
    case = TRAIN_IDS[0]
    links = [study["root"] / "nnpre" / e / f"Dataset001_{e}" / "tumorfabPlans_3d_fullres" / f"{case}.b2nd"
             for e in ("baseline", "syn")]
    assert all(link.is_symlink() for link in links)
    assert {link.resolve() for link in links} == {(study["root"] / "preprocessed" / "real" / f"{case}.b2nd").resolve()}
    syn = sorted(p.name for p in (study["root"] / "nnpre" / "syn" / "Dataset001_syn" / "tumorfabPlans_3d_fullres").glob("syn_*.b2nd")
                 if not p.name.endswith("_seg.b2nd"))
    assert syn == ["syn_0000.b2nd", "syn_0002.b2nd"]  # the manifest's first two rows


def test_killed_training_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(study, run_a):
    """SIGKILL once a checkpoint exists; the rerun continues from it (not epoch 0).

    Run c ends with run a's weights and per-case Dice: its epochs before the kill
    are a second CPU training of the same experiment and seed, so this is also
    the check that two such trainings are identical."""
    folder = trainer_output_folder(study["root"] / "runs" / "c" / "work", "baseline", study["configuration"])
    latest = folder / f"fold_{FOLD}" / "checkpoint_latest.pth"
    process = multiprocessing.get_context("fork").Process(target=train_in_process, args=(study, "baseline", "c"))
    process.start()
    try:
        deadline = time.time() + 600
        while not latest.exists() and process.is_alive() and time.time() < deadline:
            time.sleep(0.02)
        assert latest.exists(), "no checkpoint was written"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.join()
    assert not (folder / f"fold_{FOLD}" / "checkpoint_final.pth").exists(), "training finished before the kill"
    killed_at = torch.load(latest, weights_only=False)["current_epoch"]
    assert killed_at >= 1

    run_c = train_predict_evaluate(study, "baseline", "c")
    log = _log_of(study, "c")
    assert f"resumed from a checkpoint at epoch {killed_at}" in log
    assert f"training epochs {killed_at} to 2" in log
    assert "training epochs 0 to 2" in log  # the first, killed attempt
    pd.testing.assert_frame_equal(pd.read_csv(run_a), pd.read_csv(run_c), check_exact=True)
    weights = [torch.load(study["root"] / "runs" / r / "model" / f"fold_{FOLD}" / "checkpoint_final.pth",
                          weights_only=False)["network_weights"] for r in ("a", "c")]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_changed_training_settings_start_over_instead_of_resuming(study, run_a, capsys):
    """Same work folder as run a, other epochs: the old checkpoints must not be reused."""
    import shutil

    shutil.copytree(study["root"] / "runs" / "a" / "work", study["root"] / "runs" / "d" / "work")
    capsys.readouterr()
    train_in_process(study, "baseline", "d", epochs=1, iterations_per_epoch=1)
    assert "starting over" in capsys.readouterr().out
    log = _log_of(study, "d")
    assert "resumed" not in log and "training epochs 0 to 0" in log


def test_csv_dice_equals_a_direct_numpy_computation_on_the_nifti_files(study, run_a):
    table = pd.read_csv(run_a).set_index("case_id")
    assert list(table.index) == VAL_IDS
    for case in VAL_IDS:
        pred = np.asarray(nib.load(str(study["root"] / "runs" / "a" / "pred" / f"{case}.nii.gz")).dataobj)
        ref = np.asarray(nib.load(str(study["real"][case] / "seg.nii.gz")).dataobj)
        for region, labels in {"et": [3], "tc": [1, 3], "wt": [1, 2, 3]}.items():
            p, r = np.isin(pred, labels), np.isin(ref, labels)
            expected = 2 * (p & r).sum() / (p.sum() + r.sum()) if (p.sum() + r.sum()) else np.nan
            assert table.loc[case, f"dice_{region}"] == pytest.approx(expected, rel=1e-12, nan_ok=True)


def test_exported_model_is_a_complete_nnunet_model_folder(study, run_a):
    model = study["root"] / "runs" / "a" / "model"
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json", f"fold_{FOLD}/checkpoint_final.pth"):
        assert (model / name).exists(), name
    checkpoint = torch.load(model / f"fold_{FOLD}" / "checkpoint_final.pth", weights_only=False)
    assert checkpoint["trainer_name"] == "nnUNetTrainerTumorfab"
    assert checkpoint["current_epoch"] == 3


def test_feature_extractor_is_frozen_and_returns_the_first_stages(study, run_a):
    from tumorfab.segmentation.features import load_feature_extractor

    extractor = load_feature_extractor(study["root"] / "runs" / "a" / "model", n_stages=3, device="cpu")
    extractor.train()  # a parent module switching to train mode must not unfreeze F
    assert not extractor.training
    assert all(not p.requires_grad for p in extractor.parameters())
    image = torch.rand(2, 1, 40, 40, 40) * 2 - 1
    mask = torch.zeros(2, 1, 40, 40, 40, dtype=torch.uint8)
    mask[:, :, 4:36, 4:36, 4:36] = 1
    features = extractor(image, mask)
    assert [tuple(f.shape) for f in features] == [(2, 4, 40, 40, 40), (2, 8, 20, 20, 20), (2, 16, 10, 10, 10)]
    assert extractor.output_channels == [4, 8, 16]
    assert extractor.strides == [[1, 1, 1], [2, 2, 2], [4, 4, 4]]


def test_gradient_reaches_the_input_image(study, run_a):
    from tumorfab.segmentation.features import load_feature_extractor

    extractor = load_feature_extractor(study["root"] / "runs" / "a" / "model", n_stages=2, device="cpu")
    case = study["real"][VAL_IDS[0]]
    image = torch.from_numpy(nib.load(str(case / "t1n.nii.gz")).get_fdata(dtype=np.float32))[None, None]
    image.requires_grad_(True)
    mask = torch.from_numpy(np.asarray(nib.load(str(case / "brainmask.nii.gz")).dataobj))[None, None]
    sum(f.square().mean() for f in extractor(image, mask)).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert torch.all(image.grad[mask == 0] == 0)  # background is a constant 0 for nnU-Net


def test_feature_extractor_normalizes_like_nnunet_preprocessing(study, run_a):
    """F's input equals nnU-Net's own preprocessing (crop, ZScoreNormalization) of the case."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from tumorfab.segmentation.dataset import dataset_json
    from tumorfab.segmentation.features import load_feature_extractor

    model = study["root"] / "runs" / "a" / "model"
    n_stages = schema_defaults()["tfaug"]["intensity_fit"]["n_stages"]
    extractor = load_feature_extractor(model, n_stages=n_stages, device="cpu")
    case = VAL_IDS[1]
    folder = study["real"][case]
    image = torch.from_numpy(nib.load(str(folder / "t1n.nii.gz")).get_fdata(dtype=np.float32))[None, None]
    mask = torch.from_numpy(np.asarray(nib.load(str(folder / "brainmask.nii.gz")).dataobj))[None, None]
    manager = PlansManager(json.loads((model / "plans.json").read_text()))
    data, _, properties = DefaultPreprocessor(verbose=False).run_case(
        [str(study["root"] / "images" / "real" / case / "t1n.nii.gz")], None, manager,
        manager.get_configuration(study["configuration"]), dataset_json(["t1n"], 1),
    )
    ours = extractor.normalize(image, mask).permute(*extractor._to_network)[0].numpy()
    crop = tuple(slice(lo, hi) for lo, hi in properties["bbox_used_for_cropping"])
    np.testing.assert_allclose(ours[(slice(None), *crop)], data, atol=1e-5)
    outside = np.ones(ours.shape[1:], bool)
    outside[crop] = False
    assert np.all(ours[:, outside] == 0)


def test_fine_tune_starts_from_the_pretrained_weights_and_trains_on_the_real_subset_only(study, run_a, tmp_path):
    """Paper 003's fine-tune: nnU-Net's load_pretrained_weights before the first epoch."""
    from tumorfab.segmentation import preprocessed as pp
    from tumorfab.segmentation.experiments import real_subset

    root = study["root"]
    subset = real_subset(TRAIN_IDS, 0.25, seed=7)
    assert len(subset) == 2 and set(subset) < set(TRAIN_IDS)
    pp.build_preprocessed_dataset(
        root / "nnpre" / "ft", "ft", plans_file=root / "plans.json", fingerprint_file=root / "fingerprint.json",
        modalities=["t1n"], train_cases=subset, real_preprocessed=root / "preprocessed" / "real",
        configuration=study["configuration"],
    )
    data = root / "nnpre" / "ft" / "Dataset001_ft" / "tumorfabPlans_3d_fullres"
    assert sorted(p.name[: -len(".b2nd")] for p in data.glob("*.b2nd") if not p.name.endswith("_seg.b2nd")) == sorted(subset)

    # One iteration: the weights stay next to where they started.
    pretrained = root / "runs" / "a" / "model"
    short = dict(epochs=1, iterations_per_epoch=1, val_iterations_per_epoch=1)
    train_in_process(study, "ft", "ft", pretrained_model=str(pretrained), **short)
    source = torch.load(pretrained / f"fold_{FOLD}" / "checkpoint_final.pth", weights_only=False)["network_weights"]
    after = {"ft": torch.load(root / "runs" / "ft" / "model" / f"fold_{FOLD}" / "checkpoint_final.pth",
                              weights_only=False)["network_weights"]}
    # where a training from scratch starts: the seeded weights of a trainer built as train() builds it
    scratch = _trainer(study, tmp_path, settings=tiny_settings(**short).train, seed=0)
    scratch.initialize()
    after["scratch"] = {k: v.detach() for k, v in scratch.network.state_dict().items()}
    transferred = [k for k in source if ".seg_layers." not in k and source[k].is_floating_point()]

    def distance(run):
        return sum(float((after[run][k].float() - source[k].float()).norm()) for k in transferred)

    # without the transfer, the fine-tune would start from the seeded weights: ratio about 1
    assert transferred and distance("ft") < 0.2 * distance("scratch")


def test_each_region_keeps_its_labels_from_training_to_evaluation(study):
    """WT, TC and ET keep their BraTS labels through the whole chain.

    A tiny nnU-Net (the study's plan) is trained region-based on cases whose
    regions it learns in 100 iterations (``make_region_case``: each label its
    own intensity, NCR the larger half of TC), predicts two held-out cases
    (nnU-Net's export to BraTS labels) and is scored by our evaluation. Were
    ET and TC, or labels 1 and 3, swapped anywhere (dataset.json's regions or
    regions_class_order, the training labels, the export, the evaluation's
    regions), a region would score far below its threshold: an "ET" that is
    the tumour core scores Dice <= 0.55 on these cases, NCR taken for ET ~0.
    """
    from segmentation_fixtures import make_region_case
    from tumorfab.segmentation import dataset as ds
    from tumorfab.segmentation import preprocessed as pp
    from tumorfab.segmentation.evaluate import evaluate
    from tumorfab.segmentation.predict import predict

    root = study["root"] / "regions"
    train_ids, held_out = ["region_0", "region_1"], ["region_2", "region_3"]
    rng = np.random.default_rng(7)
    cases = {c: make_region_case(root / "cases" / c, rng) for c in train_ids + held_out}
    for case, folder in cases.items():
        ds.convert_real_case(folder, root / "images" / case, ["t1n"])
    raw = ds.build_raw_dataset(root / "raw", "regions", ["t1n"], train_ids, held_out, root / "images", root / "cases")
    pp.preprocess_real(study["plans"], ["t1n"], train_ids, root / "images", root / "cases", root / "preprocessed",
                       study["configuration"])
    pp.build_preprocessed_dataset(study["root"] / "nnpre" / "regions", "regions", plans_file=study["plans"],
                                  fingerprint_file=study["root"] / "fingerprint.json", modalities=["t1n"],
                                  train_cases=train_ids, real_preprocessed=root / "preprocessed",
                                  configuration=study["configuration"])
    train_in_process(study, "regions", "regions", epochs=4, iterations_per_epoch=25, checkpoint_every=4)
    predict(study["root"] / "runs" / "regions" / "model", raw / "imagesTs", root / "pred", ["t1n"],
            case_ids=held_out, settings=tiny_settings().predict, threads=1)
    table = evaluate(root / "pred", {c: cases[c] / "seg.nii.gz" for c in held_out}, root / "per_case.csv")

    thresholds = {"et": 0.85, "tc": 0.7, "wt": 0.85}  # reached: ET ~0.94, TC ~0.85, WT ~0.93
    for row in table.itertuples():
        scores = {r: getattr(row, f"dice_{r}") for r in thresholds}
        assert all(scores[r] >= t for r, t in thresholds.items()), f"{row.case_id}: Dice {scores}"
        pred = np.asarray(nib.load(str(root / "pred" / f"{row.case_id}.nii.gz")).dataobj)
        ref = np.asarray(nib.load(str(cases[row.case_id] / "seg.nii.gz")).dataobj)
        # Each exported BraTS label on its own (NCR ~0.77, ED ~0.86, ET ~0.94) ...
        for label in (1, 2, 3):
            p, r = pred == label, ref == label
            assert 2 * (p & r).sum() / (p.sum() + r.sum()) >= 0.5, f"{row.case_id}: label {label}"
        # ... and the evaluation's regions, computed here from the BraTS definition.
        for region, labels in {"et": [3], "tc": [1, 3], "wt": [1, 2, 3]}.items():
            p, r = np.isin(pred, labels), np.isin(ref, labels)
            assert scores[region] == pytest.approx(2 * (p & r).sum() / (p.sum() + r.sum()), rel=1e-12)


def test_prediction_segments_as_nnunets_own_model_loading_does(study, run_a, tmp_path):
    """predict() builds the network itself instead of nnU-Net's trainer lookup
    (which imports every trainer nnU-Net ships) and, on the CPU, runs it
    channels-last with one-tile batches doubled (oneDNN instead of the slow
    reference convolution): the same segmentation as nnU-Net's
    initialize_from_trained_model_folder with its default layout."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from tumorfab.segmentation.trainers.nnUNetTrainerTumorfab import nnUNetTrainerTumorfab

    # predict() builds nnUNetTrainer's network: the trainer must not change it
    assert nnUNetTrainerTumorfab.build_network_architecture is nnUNetTrainer.build_network_architecture
    with nnunet_environment():
        predictor = nnUNetPredictor(
            tile_step_size=schema_defaults()["segmentation"]["predict"]["tile_step_size"], use_gaussian=True,
            use_mirroring=False, perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
            verbose_preprocessing=False, allow_tqdm=False,
        )
        predictor.initialize_from_trained_model_folder(
            str(study["root"] / "runs" / "a" / "model"), use_folds=(FOLD,), checkpoint_name="checkpoint_final.pth"
        )
        predictor.predict_from_files_sequential(
            [[str(study["raw"] / "imagesTs" / f"{case}_0000.nii.gz")] for case in VAL_IDS],
            [str(tmp_path / case) for case in VAL_IDS], save_probabilities=False, overwrite=True,
        )
    for case in VAL_IDS:
        ours = np.asarray(nib.load(str(study["root"] / "runs" / "a" / "pred" / f"{case}.nii.gz")).dataobj)
        theirs = np.asarray(nib.load(str(tmp_path / f"{case}.nii.gz")).dataobj)
        assert np.mean(ours != theirs) <= 1e-3, case  # float rounding may flip a voxel at 0.5
