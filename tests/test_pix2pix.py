"""3D Pix2Pix (tumorfab.synthesis.pix2pix; paper 002 §3.2.1 (2)) on tiny volumes.

Real cases and TF-Aug layouts are 64³ case folders with a spherical brain and
lesion; G and D are narrow (widths [4, 8, 16]: sizes multiple of 4, at least
8), crops and windows 32³.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import pickle
import signal
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from tumorfab.casefolder import Case, load_case, save_case
from tumorfab.labels import ED, ET, NCR
from tumorfab.config import study_config, without_resources
from tumorfab.synthesis.gan import CHECKPOINT
from tumorfab.synthesis.gan_settings import Pix2PixSettings
from tumorfab.synthesis.manifest import write_manifest
from tumorfab.synthesis.pix2pix import losses
from tumorfab.synthesis.pix2pix import train as p2p_train
from tumorfab.synthesis.pix2pix.generate import MANIFEST_COLUMNS, generate_pix2pix
from tumorfab.synthesis.pix2pix.networks import LABEL_MAP_CHANNELS, Discriminator, Generator, label_map
from tumorfab.synthesis.pix2pix.train import LOSS_COLUMNS, train_pix2pix

SHAPE = (64, 64, 64)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
WIDTHS = [4, 8, 16]
PIX2PIX = {
    "generator_widths": WIDTHS,
    "discriminator_width": 4,
    "discriminator_layers": 3,
    "epochs": None,  # TF-GAN's: Pix2PixSettings.from_config's tfgan_epochs
    "batch_size": 1,
    "crop": 32,
    "lr_generator": 2e-4,
    "lr_discriminator": 2e-4,
    "betas": [0.5, 0.999],
    "lambda_l1": 100.0,
    "checkpoint_every": 1,
    "mixed_precision": "off",
    "window": 32,
    "overlap": 0.5,
}


def _case(rng: np.random.Generator, centre, radius: float, modalities=("t1n",)) -> Case:
    grid = np.indices(SHAPE).astype(np.float32)
    brain = (((grid - 32.0) ** 2).sum(0) < 24**2).astype(np.uint8)
    distance = np.sqrt(((grid - np.asarray(centre, dtype=np.float32)[:, None, None, None]) ** 2).sum(0))
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[(distance < radius) & (brain > 0)] = ED
    seg[(distance < radius * 0.6) & (brain > 0)] = ET
    seg[(distance < radius * 0.3) & (brain > 0)] = NCR
    images = {}
    for m in modalities:
        image = np.where(brain > 0, rng.uniform(-0.6, 0.4, SHAPE), -1.0).astype(np.float32)
        image[seg == ET] = 0.7
        images[m] = image
    return Case(images, brain, seg, AFFINE, nib.Nifti1Header())


@pytest.fixture(scope="module")
def real_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(3)
    dirs = []
    for i in range(2):
        dirs.append(root / f"BraTS-GLI-0000{i}-000")
        save_case(_case(rng, (28 + 4 * i, 30, 34), 8.0), dirs[-1])
    return dirs


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """TF-Aug's outputs: three cases (labels in a healthy brain) and their manifest."""
    root = tmp_path_factory.mktemp("tfaug")
    rng = np.random.default_rng(4)
    rows = []
    for i in range(3):
        save_case(_case(rng, (26 + 5 * i, 36, 30 - 2 * i), 7.0 + i), root / "cases" / f"tfaug_{i:04d}")
        rows.append({"case_id": f"tfaug_{i:04d}", "healthy_subject": f"00{i}", "seed": 1})
    write_manifest(rows, ["case_id", "healthy_subject", "seed"], root / "manifest.csv", "tfaug")
    return root


def _settings(epochs: int = 2, **overrides) -> Pix2PixSettings:
    return Pix2PixSettings.from_config({**PIX2PIX, **overrides}, tfgan_epochs=epochs)


def _train(real_dirs, out: Path, epochs: int = 2, **overrides) -> pd.DataFrame:
    return train_pix2pix(
        real_case_dirs=real_dirs,
        work_dir=out / "work",
        out_generator=out / "generator.pt",
        out_losses=out / "losses.csv",
        out_curves=out / "losses.png",
        modalities=["t1n"],
        pix2pix=_settings(epochs, **overrides),
        seed=5,
        threads=1,
        device="cpu",
    )


@pytest.fixture(scope="module")
def trained(real_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    rows = _train(real_dirs, out)
    return out, rows


def _generate(layouts, generator, out: Path, n_cases: int, settings: Pix2PixSettings | None = None) -> pd.DataFrame:
    return generate_pix2pix(
        layout_manifest=layouts / "manifest.csv",
        layout_cases_dir=layouts / "cases",
        generator_path=generator,
        out_dir=out / "cases",
        manifest_path=out / "manifest.csv",
        n_cases=n_cases,
        modalities=["t1n"],
        seed=5,
        pix2pix=settings or _settings(),
        threads=1,
        device="cpu",
    )


# --- the settings ---

REPO = Path(__file__).resolve().parents[1]
#: The generator file's ``pix2pix`` keys, in the order its bytes (and the
#: manifests' generator_sha256) depend on.
RECORD_ORDER = [
    "generator_widths", "discriminator_width", "discriminator_layers", "epochs", "batch_size", "crop",
    "lr_generator", "lr_discriminator", "betas", "lambda_l1", "checkpoint_every", "mixed_precision", "window",
    "overlap",
]


@pytest.mark.parametrize("preset", ["demo.yaml", "config.yaml"])
def test_the_record_is_the_config_section_as_plain_values_in_the_fixed_order_epochs_resolved(preset):
    config = study_config(REPO, None if preset == "config.yaml" else REPO / "config" / preset)
    section = without_resources(config["pix2pix"])
    settings = Pix2PixSettings.from_config(config["pix2pix"], tfgan_epochs=config["tfgan"]["epochs"])
    record = settings.as_record()
    assert list(record) == RECORD_ORDER and set(section) == set(RECORD_ORDER)
    expected = {key: section[key] for key in RECORD_ORDER}
    expected["epochs"] = section["epochs"] or config["tfgan"]["epochs"]
    # the same bytes as the section itself in that order: same values, same types (lists, ints, floats)
    assert pickle.dumps(record, protocol=2) == pickle.dumps(expected, protocol=2)
    assert Pix2PixSettings.from_config(record) == settings


def test_epochs_null_are_tfgans_and_otherwise_its_own():
    assert _settings(epochs=7).epochs == 7
    assert Pix2PixSettings.from_config({**PIX2PIX, "epochs": 3}, tfgan_epochs=7).epochs == 3
    with pytest.raises(ValueError, match="pix2pix.epochs: null means tfgan.epochs"):
        Pix2PixSettings.from_config(PIX2PIX)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"crop": 30}, r"pix2pix\.crop: 30 does not suit G's 3 levels \(a multiple of 4 and at least 8\)"),
        ({"window": 6}, r"pix2pix\.window: 6 does not suit G's 3 levels"),
        ({"generator_widths": [4, 8], "crop": 16}, r"pix2pix\.crop: 16 is below D's minimum 24 \(3 layers\)"),
        ({"epochs": 0}, r"pix2pix\.epochs: at least one epoch"),
        ({"lambda_l1": "strong"}, r"pix2pix\.lambda_l1: 'strong' is not of type float"),
        ({"mixed_precision": "bf16"}, r"pix2pix\.mixed_precision: one of"),
        ({"dropout": 0.5}, r"pix2pix: unknown keys \['dropout'\]"),
    ],
)
def test_a_refused_setting_is_named(change, message):
    with pytest.raises(ValueError, match=message):
        _settings(**change)


# --- the label map ---


def test_label_map_channels_are_background_brain_ncr_ed_et():
    seg = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    brain = torch.zeros(1, 1, 4, 4, 4, dtype=torch.uint8)
    brain[..., 1:, :, :] = 1
    seg[0, 0, 1, 0, 0], seg[0, 0, 2, 0, 0], seg[0, 0, 3, 0, 0] = NCR, ED, ET
    seg[0, 0, 0, 3, 3] = ED  # tumour outside the brain mask: still ED
    onehot = label_map(seg, brain)
    assert LABEL_MAP_CHANNELS == ("background", "brain", "NCR", "ED", "ET")
    assert onehot.shape == (1, 5, 4, 4, 4) and onehot.dtype == torch.float32
    assert torch.equal(onehot.sum(1), torch.ones(1, 4, 4, 4))  # a partition
    expected = {(0, 0, 0): 0, (0, 3, 3): 3, (1, 1, 1): 1, (1, 0, 0): 2, (2, 0, 0): 3, (3, 0, 0): 4, (3, 3, 3): 1}
    for voxel, channel in expected.items():
        assert onehot[(0, slice(None), *voxel)].argmax().item() == channel, voxel
    assert onehot[0, 0].sum() == 16 - 1 and onehot[0, 1].sum() == 48 - 3


@pytest.mark.parametrize(
    "seg, brain, match",
    [
        (torch.full((1, 1, 4, 4, 4), 4, dtype=torch.long), torch.ones(1, 1, 4, 4, 4), "outside"),  # legacy ET
        (torch.zeros(1, 1, 4, 4, 4, dtype=torch.long), torch.full((1, 1, 4, 4, 4), 2), "brainmask"),
        (torch.zeros(1, 1, 4, 4, 4), torch.ones(1, 1, 4, 4, 4), "integer"),  # a float seg
        (torch.zeros(1, 4, 4, 4, dtype=torch.long), torch.ones(1, 4, 4, 4), r"\[B, 1"),
        (torch.zeros(1, 1, 4, 4, 4, dtype=torch.long), torch.ones(1, 1, 4, 4, 5), "one shape"),
    ],
)
def test_label_map_rejects_bad_maps(seg, brain, match):
    with pytest.raises(ValueError, match=match):
        label_map(seg, brain)


# --- the networks ---


def test_generator_maps_the_label_map_to_images_in_range_before_and_after_training():
    torch.manual_seed(0)
    G = Generator(out_channels=2, widths=WIDTHS)
    assert G.unet.in_channels == 5 and G.min_size == 8 and G.size_multiple == 4
    assert any(isinstance(m, torch.nn.ConvTranspose3d) for m in G.modules())  # pix2pix's up-sampling
    seg = torch.zeros(2, 1, 16, 16, 16, dtype=torch.long)
    seg[:, :, 4:10, 4:10, 4:10] = ED
    y = label_map(seg, torch.ones_like(seg))
    optimizer = torch.optim.Adam(G.parameters(), lr=0.5)
    for _ in range(3):  # push the outputs hard towards +inf
        out = G(y)
        assert out.shape == (2, 2, 16, 16, 16)
        assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1
        optimizer.zero_grad()
        (-G(y).sum() * 100).backward()
        optimizer.step()
    with torch.no_grad():
        for p in G.parameters():  # and random weights far from the initialisation
            p.normal_(0, 3)
        out = G(y)
    assert out.min() >= -1 and out.max() <= 1 and out.abs().max() > 0.99


@pytest.mark.parametrize("shape, match", [((4, 8, 8), "at least 8"), ((10, 8, 8), "multiples of 4")])
def test_generator_size_check_names_the_minimum_and_the_multiple(shape, match):
    with pytest.raises(ValueError, match=match):
        Generator(out_channels=1, widths=WIDTHS)(torch.zeros(1, 5, *shape))
    with pytest.raises(ValueError, match="multiple of 32 and at least 64"):
        Generator(out_channels=1, widths=[2] * 6).check_spatial_shape((32, 32, 32))
    with pytest.raises(ValueError, match="5"):
        Generator(out_channels=1, widths=WIDTHS)(torch.zeros(1, 4, 8, 8, 8))


def test_discriminator_is_a_patchgan_conditioned_on_the_label_map():
    torch.manual_seed(0)
    D = Discriminator(n_modalities=1, width=4, n_layers=3)
    image = torch.rand(2, 1, 32, 32, 32) * 2 - 1
    seg = torch.zeros(2, 1, 32, 32, 32, dtype=torch.long)
    seg[:, :, 8:20, 8:20, 8:20] = ET
    logits = D(image, label_map(seg, torch.ones_like(seg)))
    assert logits.shape == (2, 1, 2, 2, 2)  # 32/8 - 2
    other = D(image, label_map(torch.zeros_like(seg), torch.ones_like(seg)))
    assert not torch.allclose(logits, other)
    assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in D.modules())
    with pytest.raises(ValueError, match="at least 24"):
        D(torch.zeros(1, 1, 16, 16, 16), torch.zeros(1, 5, 16, 16, 16))


# --- the losses ---


def test_losses_are_pix2pix_objective_in_float32_under_autocast():
    zeros = torch.zeros(1, 1, 2, 2, 2, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = losses.discriminator_loss(zeros, zeros)
        fake, real = torch.zeros(1, 1, 2, 2, 2, dtype=torch.bfloat16), torch.full((1, 1, 2, 2, 2), 0.5)
        total, parts = losses.generator_loss(zeros, fake, real, lambda_l1=100.0)
    assert d.dtype == total.dtype == torch.float32
    assert d.item() == pytest.approx(math.log(2))  # 0.5 * (ln 2 + ln 2): D's objective halved
    assert parts["g_adv"] == pytest.approx(math.log(2)) and parts["l1"] == pytest.approx(0.5)
    assert parts["g_total"] == pytest.approx(math.log(2) + 50.0) == total.item()


# --- training ---


def test_training_writes_the_generator_the_loss_rows_and_the_curves(trained, real_dirs):
    out, rows = trained
    assert len(rows) == 2 * 2  # epochs x ceil(2 real cases / batch 1)
    table = pd.read_csv(out / "losses.csv")
    assert list(table.columns) == LOSS_COLUMNS == ["step", "epoch", "d_loss", "g_total", "g_adv", "l1"]
    assert list(table["step"]) == [0, 1, 2, 3] and list(table["epoch"]) == [0, 0, 1, 1]
    assert np.isfinite(table[LOSS_COLUMNS[2:]].to_numpy()).all()
    assert (out / "losses.png").stat().st_size > 0
    record = torch.load(out / "generator.pt", weights_only=False)
    assert list(record) == ["generator", "pix2pix", "n_modalities", "modalities", "seed", "steps"]
    assert record["pix2pix"] == _settings().as_record() and record["pix2pix"]["epochs"] == 2 and record["steps"] == 4
    assert record["n_modalities"] == 1 and record["modalities"] == ["t1n"] and record["seed"] == 5


def _train_until_killed(real_dirs, out: Path, ready: Path) -> None:
    """A forked child's training (this process's imports, one thread): it stops before
    step 2, once the checkpoint of step 2 is on disk, says so in ``ready`` and waits to be killed."""
    step = p2p_train.Trainer.step

    def step_until_killed(self, index, *batch):
        if index == 2:
            ready.touch()
            time.sleep(600)
        return step(self, index, *batch)

    p2p_train.Trainer.step = step_until_killed
    _train(real_dirs, out)


def test_a_killed_training_resumes_from_its_checkpoint_and_ends_with_the_uninterrupted_bytes(
    trained, real_dirs, tmp_path, monkeypatch
):
    """The GANs' loop (``gan.run_training``, TF-GAN's too) after a SIGKILL: the rerun
    continues from the checkpoint (step 2, not 0) and writes the uninterrupted run's bytes."""
    whole, _ = trained
    ready = tmp_path / "at_step_2"
    job = multiprocessing.get_context("fork").Process(target=_train_until_killed, args=(real_dirs, tmp_path, ready))
    job.start()
    try:
        deadline = time.time() + 300
        while not ready.exists() and job.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the training did not reach step 2"
    finally:
        if job.is_alive():
            os.kill(job.pid, signal.SIGKILL)
        job.join()
    assert job.exitcode == -signal.SIGKILL
    assert torch.load(tmp_path / "work" / CHECKPOINT, weights_only=False)["step"] == 2
    assert not (tmp_path / "generator.pt").exists()

    step, calls = p2p_train.Trainer.step, []
    monkeypatch.setattr(p2p_train.Trainer, "step", lambda self, index, *batch: calls.append(index) or step(self, index, *batch))
    _train(real_dirs, tmp_path)
    assert calls == [2, 3]  # resumed at step 2
    assert pd.read_csv(whole / "losses.csv").equals(pd.read_csv(tmp_path / "losses.csv"))
    # same bytes (torch.save through a file: no temporary name in the archive)
    for name in ("generator.pt", "losses.csv"):
        assert (whole / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_a_checkpoint_of_other_settings_is_not_resumed(trained, real_dirs, tmp_path):
    whole, _ = trained
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / CHECKPOINT).write_bytes((whole / "work" / CHECKPOINT).read_bytes())
    rows = _train(real_dirs, tmp_path, epochs=1)  # another number of epochs: starts over
    assert list(rows["step"]) == [0, 1]


def test_the_bf16_autocast_path_runs_on_the_cpu_with_float32_losses(real_dirs, tmp_path, monkeypatch):
    seen = []

    def spy(function):
        def wrapped(*args, **kwargs):
            result = function(*args, **kwargs)
            seen.append((function.__name__, (result[0] if isinstance(result, tuple) else result).dtype))
            return result

        return wrapped

    for name in ("discriminator_loss", "generator_loss"):
        monkeypatch.setattr(losses, name, spy(getattr(losses, name)))
    monkeypatch.setattr(torch.nn.Conv3d, "forward", spy(torch.nn.Conv3d.forward))
    rows = _train(real_dirs[:1], tmp_path, epochs=1, mixed_precision="on")  # one step
    assert len(rows) == 1 and np.isfinite(rows[LOSS_COLUMNS[2:]].to_numpy()).all()
    assert {dtype for name, dtype in seen if name == "forward"} == {torch.bfloat16}  # the convolutions under autocast
    assert {(name, dtype) for name, dtype in seen if name != "forward"} == {
        ("discriminator_loss", torch.float32),
        ("generator_loss", torch.float32),
    }


def test_a_checkpoint_of_the_former_format_is_not_resumed(trained, real_dirs, tmp_path):
    whole, _ = trained
    state = torch.load(whole / "work" / CHECKPOINT, weights_only=False)
    former = {"pix2pix": _settings(1).as_record(), "seed": 5, "modalities": ["t1n"], "real": [str(d) for d in real_dirs]}
    state["digest"] = hashlib.sha256(json.dumps(former, sort_keys=True).encode()).hexdigest()  # digest without the format
    state["step"] = 1
    (tmp_path / "work").mkdir()
    torch.save(state, tmp_path / "work" / CHECKPOINT)
    rows = _train(real_dirs, tmp_path, epochs=1)
    assert list(rows["step"]) == [0, 1]


# --- generation ---


def test_generation_keeps_tfaug_layouts_and_makes_images_in_range(trained, layouts, tmp_path):
    out, _ = trained
    manifest = _generate(layouts, out / "generator.pt", tmp_path, 3)
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert list(manifest["case_id"]) == ["pix2pix_0000", "pix2pix_0001", "pix2pix_0002"]
    assert list(manifest["layout_case"]) == ["tfaug_0000", "tfaug_0001", "tfaug_0002"]
    assert list(pd.read_csv(tmp_path / "manifest.csv", dtype=str)["healthy_subject"]) == ["000", "001", "002"]
    assert manifest["generator_sha256"].nunique() == 1 and len(manifest["generator_sha256"][0]) == 64
    for case_id, layout_id in zip(manifest["case_id"], manifest["layout_case"]):
        made, layout = load_case(tmp_path / "cases" / case_id, ["t1n"]), load_case(layouts / "cases" / layout_id, ["t1n"])
        assert np.array_equal(made.seg, layout.seg) and np.array_equal(made.brainmask, layout.brainmask)
        assert np.array_equal(made.affine, layout.affine)
        image = made.images["t1n"]
        assert image.shape == SHAPE and (image[made.brainmask == 0] == -1).all()
        assert image.min() >= -1 and image.max() <= 1 and image[made.brainmask > 0].std() > 0


def test_generation_is_nested(trained, layouts, tmp_path):
    out, _ = trained
    small = _generate(layouts, out / "generator.pt", tmp_path / "small", 1)
    large = _generate(layouts, out / "generator.pt", tmp_path / "large", 2)
    assert small.equals(large.iloc[:1])
    for file in (tmp_path / "small" / "cases" / "pix2pix_0000").iterdir():
        assert file.read_bytes() == (tmp_path / "large" / "cases" / "pix2pix_0000" / file.name).read_bytes()


def test_generation_refuses_a_window_the_generator_cannot_take(trained, layouts, tmp_path):
    out, _ = trained
    shallower = _settings(generator_widths=[4, 8], window=30)  # suits a G of two levels, not the file's three
    with pytest.raises(ValueError, match="multiple of 4"):
        _generate(layouts, out / "generator.pt", tmp_path, 1, shallower)
    assert not (tmp_path / "cases").exists()


def test_generation_refuses_a_generator_trained_for_other_modalities(trained, layouts, tmp_path):
    out, _ = trained
    with pytest.raises(ValueError, match=r"trained for modalities \['t1n'\], not \['t1n', 't2w'\]"):
        generate_pix2pix(
            layouts / "manifest.csv", layouts / "cases", out / "generator.pt", tmp_path / "cases", tmp_path / "m.csv",
            1, ["t1n", "t2w"], 5, _settings(), 1, "cpu",
        )
    assert not (tmp_path / "cases").exists()


def test_four_sequences_are_learned_and_made_together(layouts, tmp_path):
    """With four modalities G learns every channel of the real cases and draws them all."""
    modalities = ["t1n", "t1c", "t2w", "t2f"]
    rng = np.random.default_rng(8)
    real = [tmp_path / "real" / f"BraTS-GLI-0001{i}-000" for i in range(2)]
    for i, case_dir in enumerate(real):
        save_case(_case(rng, (28 + 4 * i, 30, 34), 8.0, modalities), case_dir)
    settings = _settings(epochs=1)
    rows = train_pix2pix(
        real, tmp_path / "work", tmp_path / "generator.pt", tmp_path / "losses.csv", tmp_path / "losses.png",
        modalities, settings, 5, 1, "cpu",
    )
    assert np.isfinite(rows[LOSS_COLUMNS[2:]].to_numpy()).all()
    record = torch.load(tmp_path / "generator.pt", weights_only=False)
    assert record["n_modalities"] == 4 and record["modalities"] == modalities
    manifest = generate_pix2pix(
        layouts / "manifest.csv", layouts / "cases", tmp_path / "generator.pt", tmp_path / "cases",
        tmp_path / "manifest.csv", 1, modalities, 5, settings, 1, "cpu",
    )
    made = load_case(tmp_path / "cases" / manifest["case_id"][0], modalities)
    images = [made.images[m] for m in modalities]
    for image in images:
        assert image.shape == SHAPE and (image[made.brainmask == 0] == -1).all() and image.min() >= -1 and image.max() <= 1
    assert all(not np.array_equal(images[0], other) for other in images[1:])  # one output channel each
