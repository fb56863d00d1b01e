"""TF-GAN training and refinement (tumorfab.synthesis.tfgan.train / refine) on tiny volumes.

Coarse pairs and real cases are small case folders with a spherical lesion;
F is a frozen stand-in of three conv stages (the nnU-Net encoder's interface:
``F(image, brainmask) -> [stage features]``); G and D are narrow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from tumorfab.casefolder import Case, load_case, save_case
from tumorfab.synthesis.gan import CHECKPOINT, load_generator
from tumorfab.synthesis.gan_settings import TFGANSettings
from tumorfab.synthesis.manifest import write_manifest
from tumorfab.synthesis.tfgan.networks import make_generator
from tumorfab.synthesis.tfgan.refine import MANIFEST_COLUMNS, generate_tf, manifest_columns, refine_volume
from tumorfab.synthesis.tfgan.train import train_tfgan

SHAPE = (48, 56, 44)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
TFGAN = {
    "generator_widths": [2, 2, 4, 4, 4, 4],
    "discriminator_width": 2,
    "discriminator_max_channels": 4,
    "epochs": 2,
    "batch_size": 1,
    "crop": 64,
    "lr_generator": 2e-4,
    "lr_discriminator": 1e-4,
    "betas": [0.5, 0.999],
    "hinge_margin": 0.1,
    "lambda_patch": 10.0,
    "lambda_global": 1.0,
    "lambda_c": [10.0, 1.0],
    "lambda_percep": 1.0,
    "n_stages": 3,
    "checkpoint_every": 1,
    "mixed_precision": "off",
    "window": 64,
    "overlap": 0.5,
    "translation_weight": 100.0,
}


class StandInF(torch.nn.Module):
    """Three frozen conv stages (strides 1, 2, 2), like F's first three."""

    def __init__(self, channels: int = 1):
        super().__init__()
        torch.manual_seed(0)
        self.stages = torch.nn.ModuleList(
            [
                torch.nn.Conv3d(channels, 4, 3, stride=1, padding=1),
                torch.nn.Conv3d(4, 4, 3, stride=2, padding=1),
                torch.nn.Conv3d(4, 4, 3, stride=2, padding=1),
            ]
        )
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def forward(self, image, brainmask):
        x, features = image, []
        for stage in self.stages:
            x = torch.relu(stage(x))
            features.append(x)
        return features


def _case(rng: np.random.Generator, centre, radius: float, tumour: bool) -> Case:
    grid = np.indices(SHAPE).astype(np.float32)
    brain = (((grid - (np.asarray(SHAPE)[:, None, None, None] / 2)) ** 2).sum(0) < 19**2).astype(np.uint8)
    image = np.where(brain > 0, rng.uniform(-0.6, 0.4, SHAPE), -1.0).astype(np.float32)
    seg = np.zeros(SHAPE, dtype=np.uint8)
    if tumour:
        distance = np.sqrt(((grid - np.asarray(centre)[:, None, None, None]) ** 2).sum(0))
        seg[(distance < radius) & (brain > 0)] = 2
        seg[(distance < radius * 0.6) & (brain > 0)] = 3
        seg[(distance < radius * 0.3) & (brain > 0)] = 1
        image[seg == 3] = 0.7
    header = nib.Nifti1Header()
    return Case({"t1n": image}, brain, seg, AFFINE, header)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfgan")
    rng = np.random.default_rng(3)
    coarse_dir, real_dirs = root / "tfaug" / "cases", []
    rows = []
    for i in range(3):
        save_case(_case(rng, (20 + 3 * i, 28, 22), 7.0, True), coarse_dir / f"tfaug_{i:04d}")
        rows.append({"case_id": f"tfaug_{i:04d}", "seed": 1})
    write_manifest(rows, ["case_id", "seed"], root / "tfaug" / "manifest.csv", "tfaug")
    for i in range(2):
        real_dirs.append(root / "real" / f"BraTS-GLI-0000{i}-000")
        save_case(_case(rng, (26, 26 + 4 * i, 20), 8.0, True), real_dirs[-1])
    return root, coarse_dir, real_dirs


def _train(cohort, out: Path, **overrides):
    root, coarse_dir, real_dirs = cohort
    return train_tfgan(
        coarse_manifest=root / "tfaug" / "manifest.csv",
        coarse_cases_dir=coarse_dir,
        real_case_dirs=real_dirs,
        feature_extractor_dir=None,
        work_dir=out / "work",
        out_generator=out / "generator.pt",
        out_losses=out / "losses.csv",
        out_curves=out / "losses.png",
        modalities=["t1n"],
        tfgan=TFGANSettings.from_config({**TFGAN, **overrides}),
        seed=5,
        threads=1,
        device="cpu",
        extractor=StandInF(),
    )


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    """The module's one training of G (one epoch: three steps), shared by every test that reads a trained G."""
    out = tmp_path_factory.mktemp("trained")
    _train(cohort, out, epochs=1)
    return out


def test_training_writes_the_generator_the_loss_rows_and_the_curves(trained):
    assert (trained / "generator.pt").exists() and (trained / "losses.png").stat().st_size > 0
    table = pd.read_csv(trained / "losses.csv")
    assert list(table["step"]) == list(range(3)) and list(table["epoch"]) == [0, 0, 0]  # coarse pairs (batch 1)
    assert table["lambda_c"].iloc[0] == pytest.approx(10.0) and table["lambda_c"].iloc[-1] == pytest.approx(1.0)
    assert np.isfinite(table[["d_loss", "g_total", "adv_patch", "adv_global", "hinge", "percep"]].to_numpy()).all()


#: One bf16 TF-GAN step in a process whose heap hands out poisoned memory:
#: glibc fills every allocation with 0x7f bytes (3.4e38 as float32 and bf16)
#: and serves all of them from the heap, so a kernel that reads memory it never
#: wrote gives inf/NaN every time, not only after another test left such bytes.
_POISONED_STEP = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np, torch
import test_tfgan_training as t
from tumorfab.synthesis.gan import Volume, random_crop, stack_crops
from tumorfab.synthesis.gan_settings import TFGANSettings
from tumorfab.synthesis.tfgan.train import Trainer
torch.set_num_threads(1)
cases = [t._case(np.random.default_rng(3), (24, 28, 22), 7.0, True) for _ in range(2)]
crops = [stack_crops([random_crop(Volume(c.stacked(["t1n"]), c.seg, c.brainmask), 64, np.random.default_rng(0))], "cpu") for c in cases]
trainer = Trainer(TFGANSettings.from_config({{**t.TFGAN, "mixed_precision": "on"}}), 1, t.StandInF(), 3, 5, "cpu")
print(trainer.train_step(0, *crops), len(trainer.nonfinite_parameters()))
"""


def test_the_bf16_step_is_finite_whatever_memory_it_is_given():
    """oneDNN's bf16 backward-weights convolution on D's 2³ patch head read memory it
    never wrote (NaN weight gradients in a poisoned heap, intermittently in a long
    pytest run); the CPU's bf16 steps run on ATen's kernels (``gan.precision_kernels``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_PERTURB_": "128", "MALLOC_MMAP_THRESHOLD_": str(2**32)}
    script = _POISONED_STEP.format(tests=str(Path(__file__).parent))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    row, n_broken = result.stdout.strip().rsplit(" ", 1)
    assert n_broken == "0" and "nan" not in row and "inf" not in row, result.stdout


def test_a_loss_made_infinite_stops_the_training_naming_the_step_and_the_term(cohort, tmp_path, monkeypatch):
    from tumorfab.synthesis.gan import NonFiniteTraining
    from tumorfab.synthesis.tfgan import losses

    calls, percep = [], losses.classwise_perceptual

    def infinite_at_the_third_step(*args):
        calls.append(1)
        return percep(*args) * (float("inf") if len(calls) == 3 else 1.0)

    monkeypatch.setattr(losses, "classwise_perceptual", infinite_at_the_third_step)
    with pytest.raises(NonFiniteTraining, match=r"TF-GAN: loss non-finite at step 2 \(g_total inf, percep inf\) under fp32"):
        _train(cohort, tmp_path)
    kept = torch.load(tmp_path / "work" / CHECKPOINT, weights_only=False)
    assert kept["step"] == 2 and len(kept["rows"]) == 2
    assert all(torch.isfinite(w).all() for w in kept["generator"].values() if w.is_floating_point())
    assert not (tmp_path / "generator.pt").exists()


class Interrupted(Exception):
    pass


def test_an_interrupted_training_resumes_and_ends_with_the_uninterrupted_bytes(cohort, trained, tmp_path, monkeypatch):
    """The GANs' loop (``gan.run_training``) with TF-GAN's step and batches: the
    step's crops and F's features depend on the step only, so the run resumed
    from the checkpoint of step 2 ends as the uninterrupted one (the loop's
    resume after a SIGKILL: tests/test_pix2pix.py)."""
    from tumorfab.synthesis.tfgan import train

    step, calls = train.Trainer.step, []

    def dying_step(self, index, *batch):  # the job dies after two steps (two checkpoints)
        if index == 2:
            raise Interrupted
        return step(self, index, *batch)

    monkeypatch.setattr(train.Trainer, "step", dying_step)
    with pytest.raises(Interrupted):
        _train(cohort, tmp_path, epochs=1)
    assert torch.load(tmp_path / "work" / CHECKPOINT, weights_only=False)["step"] == 2
    assert not (tmp_path / "generator.pt").exists()

    monkeypatch.setattr(train.Trainer, "step", lambda self, index, *batch: calls.append(index) or step(self, index, *batch))
    _train(cohort, tmp_path, epochs=1)
    assert calls == [2]  # resumed at step 2
    for name in ("generator.pt", "losses.csv"):
        assert (tmp_path / name).read_bytes() == (trained / name).read_bytes(), name


def _generate(cohort, generator: Path, out: Path, modalities=("t1n",)):
    root, coarse_dir, _ = cohort
    return generate_tf(
        coarse_manifest=root / "tfaug" / "manifest.csv",
        coarse_cases_dir=coarse_dir,
        generator_path=generator,
        out_dir=out / "cases",
        manifest_path=out / "manifest.csv",
        n_cases=2,
        modalities=list(modalities),
        seed=5,
        tfgan=TFGANSettings.from_config(TFGAN),
        threads=1,
        device="cpu",
    )


def _load_generator(path: Path) -> torch.nn.Module:
    return load_generator(path, torch.device("cpu"), TFGANSettings, make_generator).network


def test_refinement_keeps_labels_and_brain_and_writes_the_provenance(cohort, trained, tmp_path):
    _, coarse_dir, _ = cohort
    manifest = _generate(cohort, trained / "generator.pt", tmp_path)
    assert list(manifest.columns) == manifest_columns(1) == MANIFEST_COLUMNS  # one modality: no healthy_channels
    assert list(manifest["case_id"]) == ["tf_0000", "tf_0001"]
    assert list(manifest["coarse_case"]) == ["tfaug_0000", "tfaug_0001"]
    assert manifest["generator_sha256"].nunique() == 1 and len(manifest["generator_sha256"][0]) == 64
    assert ((manifest["within_margin_fraction"] >= 0) & (manifest["within_margin_fraction"] <= 1)).all()
    for case_id, coarse_id in zip(manifest["case_id"], manifest["coarse_case"]):
        refined, coarse = load_case(tmp_path / "cases" / case_id, ["t1n"]), load_case(coarse_dir / coarse_id, ["t1n"])
        assert np.array_equal(refined.seg, coarse.seg) and np.array_equal(refined.brainmask, coarse.brainmask)
        image = refined.images["t1n"]
        assert image.shape == SHAPE and (image[refined.brainmask == 0] == -1).all()
        assert image.min() >= -1 and image.max() <= 1


def test_refinement_refuses_a_generator_trained_for_other_modalities(cohort, trained, tmp_path):
    with pytest.raises(ValueError, match=r"trained for modalities \['t1n'\], not \['t1n', 't2w'\]"):
        _generate(cohort, trained / "generator.pt", tmp_path, modalities=("t1n", "t2w"))
    assert not (tmp_path / "cases").exists() and not (tmp_path / "manifest.csv").exists()


def test_the_generator_file_holds_the_settings_it_was_trained_with(trained):
    record = torch.load(trained / "generator.pt", weights_only=False)
    # One modality: the paper's TF-GAN's record, without the translator's keys.
    settings = TFGANSettings.from_config({**TFGAN, "epochs": 1})
    assert record["tfgan"] == {k: v for k, v in settings.as_record().items() if k != "translation_weight"}
    assert list(record) == ["generator", "n_modalities", "modalities", "tfgan", "seed", "steps"]
    loaded = load_generator(trained / "generator.pt", torch.device("cpu"), TFGANSettings, make_generator)
    assert loaded.settings == TFGANSettings.from_config({**TFGAN, "epochs": 1, "translation_weight": 0.0})
    assert loaded.modalities == ["t1n"] and not loaded.network.training


def test_sliding_windows_leave_no_seams_on_a_constant_input(trained):
    generator = _load_generator(trained / "generator.pt")
    torch.manual_seed(0)  # a correction far from zero everywhere, as a longer training gives
    torch.nn.init.normal_(generator.head.weight, std=0.5)
    shape = (160, 64, 64)  # several windows of 64 along x
    image = np.zeros((1, *shape), dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    refined = refine_volume(generator, image, labels, np.ones(shape, np.uint8), 64, 0.5, torch.device("cpu"), "off")[0]
    assert refined.std() > 0
    steps = np.abs(np.diff(refined, axis=0)).max(axis=(1, 2))  # largest jump between x and x+1
    # Windows start every 32 voxels (overlap 0.5): their borders are at multiples of 32.
    borders = [x for x in range(31, shape[0] - 1, 32)]
    inside = [x for x in range(shape[0] - 1) if x not in borders and 8 <= x % 32 <= 24]
    assert steps[borders].max() <= steps[inside].max()


def test_batched_cpu_windows_give_what_one_window_at_a_time_gives(trained, monkeypatch):
    from tumorfab.synthesis import gan

    generator = _load_generator(trained / "generator.pt")
    torch.manual_seed(1)
    torch.nn.init.normal_(generator.head.weight, std=0.5)
    shape = (128, 64, 64)  # 3 windows of 64 at overlap 0.5: a full batch of two windows and a last one alone
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (1, *shape)).astype(np.float32)
    labels = rng.integers(0, 4, shape).astype(np.uint8)
    brain = np.ones(shape, np.uint8)
    monkeypatch.setattr(gan, "CPU_WINDOWS_PER_BATCH", 2)
    batched = refine_volume(generator, image, labels, brain, 64, 0.5, torch.device("cpu"), "off")
    monkeypatch.setattr(gan, "CPU_WINDOWS_PER_BATCH", 1)
    one_by_one = refine_volume(generator, image, labels, brain, 64, 0.5, torch.device("cpu"), "off")
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)
