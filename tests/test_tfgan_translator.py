"""TF-GAN as a modality translator (more than one modality) on tiny four-sequence volumes.

Coarse pairs hold all four channels and a TF-Aug manifest whose
``healthy_channels`` say which came from the healthy scan; real cases hold
four channels that are fixed functions of one anatomy (T2 and FLAIR
invert T1's contrast, T1c brightens the enhancing tumour), so that
translation is learnable. F is the training tests' frozen stand-in, on four
channels. The last tests check that with one modality the translator's
machinery is inert: the paper's TF-GAN.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from tumorfab.casefolder import Case, load_case, save_case
from tumorfab.labels import ED, ET, NCR
from tumorfab.synthesis.gan import CHECKPOINT, Volume, load_generator, random_crop, stack_crops
from tumorfab.synthesis.gan_settings import TFGANSettings
from tumorfab.synthesis.histogram_match import brain_quantiles, match_to_quantiles
from tumorfab.synthesis.manifest import write_manifest
from tumorfab.synthesis.tfgan import losses
from tumorfab.synthesis.tfgan.channels import (
    coarse_presence,
    draw_hidden_channels,
    scored_hidden_subsets,
)
from tumorfab.synthesis.tfgan.networks import (
    N_MASK_CHANNELS,
    build_networks,
    generator_input,
    generator_in_channels,
    make_generator,
)
from tumorfab.synthesis.tfgan.refine import (
    MANIFEST_COLUMNS,
    generate_tf,
    load_trained_generator,
    manifest_columns,
    translate,
)
from tumorfab.synthesis.tfgan.train import (
    LOSS_COLUMNS,
    STREAM,
    Trainer,
    loss_columns,
    sample_batch,
    settings_digest,
    train_tfgan,
)

from test_tfgan_training import TFGAN, StandInF, _case

FOUR = ["t1n", "t1c", "t2w", "t2f"]
SHAPE = (48, 56, 44)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
#: The coarse pairs' healthy channels (TF-Aug's manifest column).
HEALTHY_CHANNELS = [["t1n"], ["t1n", "t2w"], FOUR]


def _settings(**overrides) -> TFGANSettings:
    return TFGANSettings.from_config({**TFGAN, **overrides})


def _four_channel_case(rng: np.random.Generator, centre, radius: float) -> Case:
    """One anatomy, four contrasts: t1n a texture, t1c with bright ET, t2w and t2f inverted (t2f: bright oedema)."""
    grid = np.indices(SHAPE).astype(np.float32)
    brain = (((grid - (np.asarray(SHAPE)[:, None, None, None] / 2)) ** 2).sum(0) < 19**2).astype(np.uint8)
    distance = np.sqrt(((grid - np.asarray(centre)[:, None, None, None]) ** 2).sum(0))
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[(distance < radius) & (brain > 0)] = ED
    seg[(distance < radius * 0.6) & (brain > 0)] = ET
    seg[(distance < radius * 0.3) & (brain > 0)] = NCR
    # Smooth "tissue" with a little noise: real-like, and learnable by a tiny G in a few steps.
    t1n = 0.4 * np.sin(grid[0] / 4 + rng.uniform(0, 6)) * np.cos(grid[1] / 5) - 0.1 + rng.normal(0, 0.05, SHAPE)
    images = {
        "t1n": t1n,
        "t1c": np.where(seg == ET, 0.8, t1n),
        "t2w": -0.8 * t1n,
        "t2f": np.where(seg == ED, 0.7, -0.5 * t1n),
    }
    images = {m: np.where(brain > 0, image, -1.0).astype(np.float32) for m, image in images.items()}
    return Case(images, brain, seg, AFFINE, nib.Nifti1Header())


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three coarse pairs (TF-Aug's, with healthy_channels) and two real cases, four channels each."""
    root = tmp_path_factory.mktemp("translator")
    rng = np.random.default_rng(7)
    coarse_dir, real_dirs, rows = root / "tfaug" / "cases", [], []
    for i, channels in enumerate(HEALTHY_CHANNELS):
        save_case(_four_channel_case(rng, (20 + 3 * i, 28, 22), 7.0), coarse_dir / f"tfaug_{i:04d}")
        rows.append({"case_id": f"tfaug_{i:04d}", "seed": 1, "healthy_channels": json.dumps(channels)})
    write_manifest(rows, ["case_id", "seed", "healthy_channels"], root / "tfaug" / "manifest.csv", "tfaug")
    for i in range(2):
        real_dirs.append(root / "real" / f"BraTS-GLI-0000{i}-000")
        save_case(_four_channel_case(rng, (26, 26 + 4 * i, 20), 8.0), real_dirs[-1])
    return root, coarse_dir, real_dirs


def _train(cohort, out: Path, modalities=FOUR, **overrides) -> pd.DataFrame:
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
        modalities=list(modalities),
        tfgan=_settings(**{"epochs": 1, **overrides}),
        seed=5,
        threads=1,
        device="cpu",
        extractor=StandInF(channels=len(modalities)),
    )


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained4")
    rows = _train(cohort, out)
    return out, rows


# --- networks ---


@pytest.mark.parametrize("n_modalities, in_channels", [(1, 1 + N_MASK_CHANNELS), (4, 8 + N_MASK_CHANNELS)])
def test_generator_input_has_indicators_only_for_more_than_one_modality(n_modalities, in_channels):
    assert generator_in_channels(n_modalities) == in_channels
    generator, discriminator = build_networks(_settings(), n_modalities, seed=0)
    assert generator.in_channels == in_channels and generator.out_channels == n_modalities
    assert discriminator.in_channels == n_modalities + N_MASK_CHANNELS  # D sees every channel


def test_an_absent_channel_keeps_its_fill_and_its_indicator_is_constant():
    image = torch.rand(2, 4, 8, 8, 8) * 2 - 1  # the absent channels' values stand for their fills
    labels = torch.zeros(2, 1, 8, 8, 8, dtype=torch.long)
    present = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    x = generator_input(image, labels, present)
    assert x.shape == (2, 8 + N_MASK_CHANNELS, 8, 8, 8)
    assert torch.equal(x[:, :4], image)
    assert torch.equal(x[:, 4:8], present[:, :, None, None, None].expand(2, 4, 8, 8, 8))
    assert torch.equal(x[:, 8:], generator_input(image, labels)[:, 4:])
    with pytest.raises(ValueError, match=r"present must be \[B, C\]"):
        generator_input(image, labels, present[:, :3])


def test_a_translator_outputs_every_channel_finite_and_in_range():
    generator = make_generator(_settings(), 4)
    torch.manual_seed(2)
    torch.nn.init.normal_(generator.head.weight, std=0.5)  # far from the identity
    image = torch.rand(1, 4, 64, 64, 64) * 2 - 1
    labels = torch.zeros(1, 1, 64, 64, 64, dtype=torch.long)
    labels[..., 20:40, 20:40, 20:40] = ED
    out = generator(generator_input(image, labels, torch.tensor([[1.0, 0.0, 0.0, 0.0]])))
    assert out.shape == (1, 4, 64, 64, 64) and torch.isfinite(out).all()
    assert out.min() >= -1 and out.max() <= 1 and out[:, 1:].std() > 0


# --- channels ---


def test_hidden_channels_never_hide_t1n_nor_all_and_favour_the_scored_subsets():
    rng = np.random.default_rng(0)
    draws = [tuple(np.asarray(FOUR)[draw_hidden_channels(FOUR, rng) > 0]) for _ in range(3000)]
    assert all(hidden and "t1n" not in hidden for hidden in draws)
    assert scored_hidden_subsets(FOUR) == [("t1c", "t2w", "t2f"), ("t1c", "t2f")]
    for scored in scored_hidden_subsets(FOUR):
        assert draws.count(scored) / len(draws) > 0.3  # 2/3 · 1/2 + 1/3 · 1/7 expected
    assert len(set(draws)) == 7  # every non-empty subset of the three others
    assert scored_hidden_subsets(["t1n", "t2w"]) == [("t2w",)]
    with pytest.raises(ValueError, match="translation needs t1n and another channel"):
        draw_hidden_channels(["t1c", "t2w"], rng)


def test_coarse_presence_reads_the_tfaug_manifest(cohort, tmp_path):
    root, _, _ = cohort
    ids = ["tfaug_0000", "tfaug_0001", "tfaug_0002"]
    presence = coarse_presence(root / "tfaug" / "manifest.csv", ids, FOUR)
    assert presence.tolist() == [[1, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]]
    write_manifest([{"case_id": "tfaug_0000", "seed": 1}], ["case_id", "seed"], tmp_path / "plain.csv", "tfaug")
    assert coarse_presence(tmp_path / "plain.csv", ["tfaug_0000"], FOUR).tolist() == [[1, 1, 1, 1]]
    for bad, message in [('["t1n", "pd"]', r"channels \['pd'\] are not among"), ("t1n", "not a JSON list"), ("[]", "no channel")]:
        write_manifest(
            [{"case_id": "tfaug_0000", "seed": 1, "healthy_channels": bad}],
            ["case_id", "seed", "healthy_channels"], tmp_path / "bad.csv", "tfaug",
        )
        with pytest.raises(ValueError, match=f"bad.csv: tfaug_0000's healthy_channels: .*{message}"):
            coarse_presence(tmp_path / "bad.csv", ["tfaug_0000"], FOUR)


# --- losses ---


def test_translation_l1_counts_the_hidden_channels_inside_the_brain():
    target = torch.zeros(1, 3, 4, 4, 4)
    output = torch.zeros(1, 3, 4, 4, 4)
    output[:, 0] = 5.0  # given channel: not counted
    output[:, 1] = 0.5
    output[:, 2, :2] = 1.0
    brain = torch.zeros(1, 1, 4, 4, 4)
    brain[..., :2, :, :] = 1
    value = losses.translation_l1(output, target, torch.tensor([[0.0, 1.0, 1.0]]), brain)
    assert value.dtype == torch.float32 and value.item() == pytest.approx((0.5 + 1.0) / 2)
    assert losses.translation_l1(output, target, torch.zeros(1, 3), brain).item() == 0.0


def test_the_hinge_of_a_translator_compares_the_present_channels_only():
    coarse = torch.zeros(2, 2, 4, 4, 4)
    refined = coarse.clone()
    refined[:, 1] = 1.0  # only the second channel moves
    roi = torch.zeros(2, 1, 4, 4, 4)
    present = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert losses.hinge_l1_outside_roi(refined, coarse, roi, 0.1, present).item() == 0.0
    everything = losses.hinge_l1_outside_roi(refined, coarse, roi, 0.1)
    assert losses.hinge_l1_outside_roi(refined, coarse, roi, 0.1, torch.ones(2, 2)).item() == pytest.approx(everything.item())


def test_generator_loss_adds_the_weighted_translation_term():
    terms = [torch.tensor(v) for v in (0.7, 0.6, 0.01, 0.4)]
    weights = {"patch": 10.0, "global": 1.0, "percep": 1.0}
    eq5, record5 = losses.generator_loss(*terms, weights, 5.0)
    total, record = losses.generator_loss(*terms, weights, 5.0, torch.tensor(0.3), 100.0)
    assert "translation" not in record5 and record["translation"] == pytest.approx(0.3)
    assert total.item() == pytest.approx(eq5.item() + 30.0)


# --- training ---


def _one_crop(case_dir: Path) -> tuple[torch.Tensor, ...]:
    """A real case as one 64³ crop (image, labels, brain): the brain, padded."""
    case = load_case(case_dir, FOUR)
    box = (slice(0, 48), slice(0, 48), slice(0, 44))
    crop = np.full((4, 64, 64, 64), -1.0, np.float32)
    crop[(slice(None), *box)] = case.stacked(FOUR)[(slice(None), *box)]
    seg = np.zeros((64,) * 3, np.uint8)
    seg[box] = case.seg[box]
    brain = np.zeros((64,) * 3, np.uint8)
    brain[box] = case.brainmask[box]
    return (
        torch.from_numpy(crop[None]),
        torch.from_numpy(seg[None, None].astype(np.int64)),
        torch.from_numpy(brain[None, None].astype(np.float32)),
    )


#: The hidden channels the study meets most: all but t1n.
ALL_BUT_T1N = torch.tensor([[0.0, 1.0, 1.0, 1.0]])


def _t1n_fill(batch) -> torch.Tensor:
    """A stand-in for the real crop's fills: its t1n in every channel."""
    return batch[0][:, :1].expand_as(batch[0]).clone()


def test_the_translation_loss_decreases_over_a_few_steps_on_a_real_like_pair(cohort):
    _, _, real_dirs = cohort
    batch = _one_crop(real_dirs[0])
    torch.set_num_threads(1)
    trainer = Trainer(_settings(lr_generator=2e-3), 4, StandInF(channels=4), total_steps=1000, seed=0, device="cpu")
    fill = _t1n_fill(batch)
    values = [trainer.step(step, batch, batch, torch.ones(1, 4), ALL_BUT_T1N, fill)["translation"] for step in range(8)]
    assert np.isfinite(values).all()
    assert values[-1] < values[0] and np.mean(values[-3:]) < 0.9 * np.mean(values[:3])  # measured: 0.154 -> 0.124


def test_a_translator_training_writes_every_channel_s_generator_and_a_translation_column(cohort, trained):
    out, rows = trained
    assert list(rows.columns) == loss_columns(4) and loss_columns(4)[-1] == "translation" and loss_columns(1)[-1] == "percep"
    assert len(rows) == 3 and np.isfinite(rows.drop(columns=["step", "epoch"]).to_numpy()).all()
    assert (rows["translation"] > 0).all()
    record = torch.load(out / "generator.pt", weights_only=False)
    assert record["n_modalities"] == 4 and record["modalities"] == FOUR
    assert record["tfgan"] == _settings(epochs=1).as_record() and record["tfgan"]["translation_weight"] == 100.0
    loaded = load_generator(out / "generator.pt", torch.device("cpu"), TFGANSettings, make_generator)
    assert loaded.network.in_channels == 8 + N_MASK_CHANNELS and loaded.network.out_channels == 4
    assert loaded.settings == _settings(epochs=1)
    # The fills' references: the real training cases' pooled brain intensities of each channel but t1n.
    _, _, real_dirs = cohort
    cases = [load_case(d, FOUR) for d in real_dirs]
    assert sorted(loaded.fill_quantiles) == ["t1c", "t2f", "t2w"]
    for channel, quantiles in loaded.fill_quantiles.items():
        assert np.array_equal(quantiles, brain_quantiles((c.images[channel], c.brainmask) for c in cases))


class Interrupted(Exception):
    pass


def test_an_interrupted_translator_training_resumes_to_the_uninterrupted_bytes(cohort, trained, tmp_path, monkeypatch):
    """A translator's step also draws the channels it hides from the step's own
    stream: the run resumed from the checkpoint of step 1 writes the bytes of the
    uninterrupted run (of the same seed)."""
    out, _ = trained
    step = Trainer.step

    def dying_step(self, index, *batch):
        if index == 1:
            raise Interrupted
        return step(self, index, *batch)

    monkeypatch.setattr(Trainer, "step", dying_step)
    with pytest.raises(Interrupted):
        _train(cohort, tmp_path)
    assert torch.load(tmp_path / "work" / CHECKPOINT, weights_only=False)["step"] == 1
    monkeypatch.setattr(Trainer, "step", step)
    _train(cohort, tmp_path)
    for name in ("generator.pt", "losses.csv"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_the_translator_s_autocast_path_runs_on_the_cpu(cohort):
    _, _, real_dirs = cohort
    batch = _one_crop(real_dirs[1])
    torch.set_num_threads(1)
    trainer = Trainer(_settings(mixed_precision="on"), 4, StandInF(channels=4), total_steps=10, seed=0, device="cpu")
    assert trainer.amp_dtype == torch.bfloat16
    row = trainer.train_step(0, batch, batch, torch.tensor([[1.0, 0.0, 1.0, 0.0]]), ALL_BUT_T1N, _t1n_fill(batch))
    assert set(row) == set(loss_columns(4)[2:]) and np.isfinite(list(row.values())).all()


# --- refinement and translation ---


def test_refinement_gives_each_pair_its_healthy_channels_and_makes_the_others(cohort, trained, tmp_path):
    root, coarse_dir, _ = cohort
    out, _ = trained
    manifest = generate_tf(
        root / "tfaug" / "manifest.csv", coarse_dir, out / "generator.pt", tmp_path / "cases", tmp_path / "manifest.csv",
        3, FOUR, 5, _settings(epochs=1), threads=1, device="cpu",
    )
    assert list(manifest.columns) == manifest_columns(4) and manifest_columns(4)[-1] == "healthy_channels"
    assert [json.loads(c) for c in manifest["healthy_channels"]] == HEALTHY_CHANNELS
    for case_id, coarse_id in zip(manifest["case_id"], manifest["coarse_case"]):
        refined, coarse = load_case(tmp_path / "cases" / case_id, FOUR), load_case(coarse_dir / coarse_id, FOUR)
        assert np.array_equal(refined.seg, coarse.seg) and np.array_equal(refined.brainmask, coarse.brainmask)
        for image in refined.images.values():
            assert image.shape == SHAPE and (image[refined.brainmask == 0] == -1).all()
            assert image.min() >= -1 and image.max() <= 1


def test_translate_makes_every_channel_from_the_present_ones(cohort, trained):
    _, _, real_dirs = cohort
    out, _ = trained
    case = load_case(real_dirs[1], FOUR)
    generator = load_trained_generator(out / "generator.pt", "cpu")
    made = translate(generator, {"t1n": case.images["t1n"]}, case.brainmask, case.seg, ["t1n"], device="cpu")
    assert list(made) == FOUR
    for image in made.values():
        assert image.shape == SHAPE and image.dtype == np.float32
        assert (image[case.brainmask == 0] == -1).all() and image.min() >= -1 and image.max() <= 1
    # Only the present channels are read: the others' values change nothing.
    again = translate(out / "generator.pt", case.images, case.brainmask, case.seg, ["t1n"], window=64, device="cpu")
    assert all(np.array_equal(made[m], again[m]) for m in FOUR)
    with pytest.raises(ValueError, match=r"channels \['pd'\] are not among"):
        translate(generator, case.images, case.brainmask, case.seg, ["t1n", "pd"])
    with pytest.raises(ValueError, match=r"present channels \['t2w'\] are not among the images"):
        translate(generator, {"t1n": case.images["t1n"]}, case.brainmask, case.seg, ["t1n", "t2w"])
    with pytest.raises(ValueError, match=r"fills an absent channel from t1n, which is not among present \['t2w'\]"):
        translate(generator, case.images, case.brainmask, case.seg, ["t2w"])


def test_an_untrained_translator_makes_the_histogram_matched_fill(cohort, trained, tmp_path):
    """G's correction starts at zero, so before training G makes exactly the baseline that learns nothing."""
    _, _, real_dirs = cohort
    out, _ = trained
    case = load_case(real_dirs[0], FOUR)
    generator = load_trained_generator(out / "generator.pt", "cpu")
    with torch.no_grad():
        for parameter in generator.network.head.parameters():
            parameter.zero_()
    made = translate(generator, {"t1n": case.images["t1n"]}, case.brainmask, case.seg, ["t1n"])
    for channel in ("t1c", "t2w", "t2f"):
        fill = match_to_quantiles(case.images["t1n"], case.brainmask, generator.fill_quantiles[channel])
        np.testing.assert_allclose(made[channel], fill, atol=1e-5)
    record = torch.load(out / "generator.pt", weights_only=False)
    del record["fill_quantiles"]
    torch.save(record, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"keeps no fill quantiles for \['t1c', 't2w', 't2f'\]"):
        translate(tmp_path / "old.pt", case.images, case.brainmask, case.seg, ["t1n"], device="cpu")


# --- one modality: the paper's TF-GAN, the translator inert ---


def _one_modality_volumes(n: int, seed: int) -> list[Volume]:
    rng = np.random.default_rng(seed)
    cases = [_case(rng, (22 + 2 * i, 28, 22), 7.0, True) for i in range(n)]
    return [Volume(c.stacked(["t1n"]), c.seg, c.brainmask) for c in cases]


def _translator_code_refused(monkeypatch) -> None:
    """The translator's draw of hidden channels and its loss raise when called."""
    from tumorfab.synthesis.tfgan import train

    def refused(*args, **kwargs):
        raise AssertionError("translator code ran with one modality")

    monkeypatch.setattr(train, "draw_hidden_channels", refused)
    monkeypatch.setattr(losses, "translation_l1", refused)


def test_with_one_modality_a_step_s_batch_is_the_paper_s_crops_and_nothing_more(monkeypatch):
    """The step's stream draws a coarse pair and its crop, then a real case and its crop,
    per sample (the paper's TF-GAN), and no channel to hide."""
    _translator_code_refused(monkeypatch)
    coarse, real = _one_modality_volumes(3, 1), _one_modality_volumes(2, 2)
    batch = sample_batch(coarse, real, 2, 64, 5, 4, "cpu")
    rng = np.random.default_rng([5, STREAM, 4])
    coarse_crops = [random_crop(coarse[rng.integers(3)], 64, rng) for _ in range(2)]
    real_crops = [random_crop(real[rng.integers(2)], 64, rng) for _ in range(2)]
    assert len(batch) == 2  # no presence, hidden channels nor fills
    for got, crops in zip(batch, (coarse_crops, real_crops)):
        assert all(torch.equal(a, b) for a, b in zip(got, stack_crops(crops, "cpu")))


def test_with_one_modality_g_is_given_image_and_mask_and_no_translation_term_is_computed(monkeypatch):
    _translator_code_refused(monkeypatch)
    torch.set_num_threads(1)
    trainer = Trainer(_settings(translation_weight=100.0), 1, StandInF(), total_steps=3, seed=0, device="cpu")
    assert trainer.generator.in_channels == 1 + N_MASK_CHANNELS and trainer.generator.out_channels == 1
    batch = sample_batch(_one_modality_volumes(1, 1), _one_modality_volumes(1, 2), 1, 64, 5, 0, "cpu")
    row = trainer.train_step(0, *batch)
    assert list(row) == LOSS_COLUMNS[2:] == loss_columns(1)[2:] and np.isfinite(list(row.values())).all()


def test_with_one_modality_translation_weight_is_in_neither_the_generator_file_nor_the_checkpoint_digest():
    with_weight, without = _settings(translation_weight=100.0), _settings(translation_weight=0.0)
    assert with_weight.generator_record(1) == without.generator_record(1)
    assert "translation_weight" not in with_weight.generator_record(1)
    assert with_weight.generator_record(4) != without.generator_record(4)
    digests = {settings_digest(s, 5, ["t1n"], ["tfaug_0000"], ["real"]) for s in (with_weight, without)}
    assert len(digests) == 1  # a one-modality checkpoint is resumed whatever the weight
    assert loss_columns(1) == LOSS_COLUMNS and manifest_columns(1) == MANIFEST_COLUMNS
