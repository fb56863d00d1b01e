"""nnU-Net training, resume, prediction and the feature extractor F on a tiny study.

One study (6 real training cases, 3 held-out, 3 synthetic; 40^3 voxels) is
planned and preprocessed once per session; run "a" (baseline, seed 0, CPU) is
shared by the tests that need a trained model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
    train_code,
    train_predict_evaluate,
)
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


def test_a_real_case_is_preprocessed_once_and_linked_into_every_experiment(study):
    case = TRAIN_IDS[0]
    links = [study["root"] / "nnpre" / e / f"Dataset001_{e}" / "tumorfabPlans_3d_fullres" / f"{case}.b2nd"
             for e in ("baseline", "syn")]
    assert all(link.is_symlink() for link in links)
    assert {link.resolve() for link in links} == {(study["root"] / "preprocessed" / "real" / f"{case}.b2nd").resolve()}
    syn = sorted(p.name for p in (study["root"] / "nnpre" / "syn" / "Dataset001_syn" / "tumorfabPlans_3d_fullres").glob("syn_*.b2nd")
                 if not p.name.endswith("_seg.b2nd"))
    assert syn == ["syn_0000.b2nd", "syn_0002.b2nd"]  # the manifest's first two rows


def test_two_cpu_trainings_of_one_experiment_and_seed_give_identical_per_case_dice(study, run_a):
    run_b = train_predict_evaluate(study, "baseline", "b")
    a, b = pd.read_csv(run_a), pd.read_csv(run_b)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    weights = [torch.load(study["root"] / "runs" / r / "model" / f"fold_{FOLD}" / "checkpoint_final.pth",
                          weights_only=False)["network_weights"] for r in ("a", "b")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_killed_training_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(study, run_a):
    """SIGKILL once a checkpoint exists; the rerun continues from it (not epoch 0)."""
    folder = trainer_output_folder(study["root"] / "runs" / "c" / "work", "baseline", study["configuration"])
    latest = folder / f"fold_{FOLD}" / "checkpoint_latest.pth"
    process = subprocess.Popen([sys.executable, "-c", train_code(study, "baseline", "c")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not latest.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert latest.exists(), "no checkpoint was written"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert not (folder / f"fold_{FOLD}" / "checkpoint_final.pth").exists(), "training finished before the kill"
    killed_at = torch.load(latest, weights_only=False)["current_epoch"]
    assert killed_at >= 1

    run_c = train_predict_evaluate(study, "baseline", "c")
    log = _log_of(study, "c")
    assert f"resumed from a checkpoint at epoch {killed_at}" in log
    assert f"training epochs {killed_at} to 2" in log
    assert "training epochs 0 to 2" in log  # the first, killed attempt
    pd.testing.assert_frame_equal(pd.read_csv(run_a), pd.read_csv(run_c), check_exact=True)


def test_changed_training_settings_start_over_instead_of_resuming(study, run_a, tmp_path):
    """Same work folder as run a, other epochs: the old checkpoints must not be reused."""
    import shutil

    shutil.copytree(study["root"] / "runs" / "a" / "work", study["root"] / "runs" / "d" / "work")
    from segmentation_fixtures import run_python

    result = run_python(train_code(study, "baseline", "d", epochs=1, iterations_per_epoch=1))
    assert "starting over" in result.stdout
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


def test_fine_tune_starts_from_the_pretrained_weights_and_trains_on_the_real_subset_only(study, run_a):
    """Paper 003's fine-tune: nnU-Net's load_pretrained_weights before the first epoch."""
    from tumorfab.segmentation import preprocessed as pp
    from tumorfab.segmentation.experiments import real_subset
    from segmentation_fixtures import run_python

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
    run_python(train_code(study, "ft", "ft", pretrained_model=str(pretrained), **short))
    run_python(train_code(study, "ft", "scratch", **short))
    source = torch.load(pretrained / f"fold_{FOLD}" / "checkpoint_final.pth", weights_only=False)["network_weights"]
    after = {run: torch.load(root / "runs" / run / "model" / f"fold_{FOLD}" / "checkpoint_final.pth",
                             weights_only=False)["network_weights"] for run in ("ft", "scratch")}
    transferred = [k for k in source if ".seg_layers." not in k and source[k].is_floating_point()]

    def distance(run):
        return sum(float((after[run][k].float() - source[k].float()).norm()) for k in transferred)

    # without the transfer, both runs would start from the same seeded weights: ratio 1
    assert transferred and distance("ft") < 0.2 * distance("scratch")
