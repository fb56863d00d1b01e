"""TF-GAN training (paper 002 §2.2 and §3.1.2): the ``train_tfgan`` rule.

G refines TF-Aug's coarse pairs ``(x_s', m_s)``; D tells refined crops from
crops of real cases, both conditioned on their masks; F (the frozen encoder of
the baseline model) gives the class-wise perceptual loss against a real case
drawn at random, unpaired. Each step, in this order:

1. a batch of crops of coarse pairs and a batch of crops of real training
   cases (:func:`sample_batch`), drawn from ``SeedSequence([seed, STREAM,
   step])``: the data of a step depend only on the seed and the step, so a
   resumed run sees the same crops as an uninterrupted one;
2. D step: Eq. 4 on both heads, real crops with their own masks against the
   refined crops (detached) with the synthetic masks, weighted like G's
   adversarial terms (λa patch, λb global; our reading: D maximises the same
   weighted adversarial objective G minimises);
3. G step: Eq. 5, ``λa·adv_patch + λb·adv_global + λc·hinge + λd·percep``,
   λc linear from 10 to 1 over the run (``losses.lambda_c``).

With more than one modality G is a modality translator (paper 002 §4's
future work; docs/interpretations.md, "TF-GAN as a modality translator"):

* G is given the coarse pair's channels with presence indicators
  (``networks.generator_input``): 1 for those that came from its healthy
  scan (``channels.coarse_presence``), 0 for TF-Aug's fill of the others,
  and outputs every channel; the hinge compares only the healthy ones; D
  and F see every channel of the refined crop and of the real crop;
* the step's stream then draws, for each real crop, channels to hide
  (``channels.draw_hidden_channels``); G is given the real crop with each
  hidden channel replaced by its fill (:func:`real_fills`: the crop's t1n
  histogram-matched onto the real training cases' pooled brain intensities
  of that channel, the fill TF-Aug writes and the baseline that learns
  nothing), in the same forward pass as the coarse crops (instance norm
  keeps the samples apart), and ``translation_weight·translation``
  (``losses.translation_l1``: L1 on the hidden channels inside the brain,
  plus :data:`GIVEN_CHANNELS_WEIGHT` x the same on the given channels) is
  added to Eq. 5;
* the loss rows get a ``translation`` column; the generator file keeps the
  fill's reference quantiles (``fill_quantiles``), with which
  ``refine.translate`` fills what a real case lacks.

With one modality nothing of this runs: no indicators, no translation term,
no further draws, and the generator file is the paper's TF-GAN's.

Our choices where the paper is silent (docs/interpretations.md):

* **Crops**: cubes of ``crop`` voxels (paper 128) centred on a random voxel of
  the case's lesion, moved by up to a quarter of the crop, so that every crop
  holds tumour for the perceptual loss and D sees tumour; volumes smaller than
  a crop are padded (image -1, labels 0, brain 0).
* **Standard augmentation**: mirroring along each axis with probability 0.5
  (nnU-Net's mirroring), the same for the image and its mask.
* **Epoch**: one pass over the coarse pairs, ``ceil(n_pairs / batch_size)``
  steps; Adam (β from the config) with both learning rates decayed linearly
  to 0 over all steps (paper: "linear decay over 200 epochs").
* **Brain**: G's output is set to -1 outside the coarse pair's brain mask
  (the case-folder contract), before D, F and the losses see it.
* **Mixed precision**: ``mixed_precision: auto`` uses it on a GPU only
  (bf16 where supported, else fp16 with a gradient scaler); ``on`` forces it
  (bf16 on the CPU: the path the tests run); losses are computed in float32.

Checkpoints, resume, mixed precision, the crops and the loss curves are the
GANs' shared machinery (``tumorfab.synthesis.gan``): checkpoints
(``checkpoint_every`` steps, and at the end) hold G, D, both optimizers and
schedulers, the scaler, the random generators' state, the step and the loss
rows, written atomically into a work folder outside the rule's outputs
(Snakemake deletes a failed job's outputs); a rerun resumes from the last one
when its settings are the same, so a killed job loses at most
``checkpoint_every`` steps and, on CPU, ends with the same weights. This module keeps what is TF-GAN's own: its
step (D on both heads, then Eq. 5), its batches (coarse pairs and unpaired
real cases) and its settings digest; its networks are in ``networks``, its
settings ``tumorfab.synthesis.gan_settings.TFGANSettings``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from tumorfab.device import resolve_device
from tumorfab.synthesis import gan
from tumorfab.synthesis.gan import Volume, random_crop, stack_crops
from tumorfab.synthesis.gan_settings import TFGANSettings
from tumorfab.synthesis.histogram_match import brain_quantiles
from tumorfab.synthesis.manifest import manifest_case_ids
from tumorfab.synthesis.tfaug.fill import FILL_SOURCE, fill_missing
from tumorfab.synthesis.tfgan import losses
from tumorfab.synthesis.tfgan.channels import HEALTHY_CHANNELS_COLUMN, coarse_presence, draw_hidden_channels
from tumorfab.synthesis.tfgan.networks import build_networks, generator_input, one_hot_labels, uses_presence_indicators

log = logging.getLogger(__name__)

#: Spawn key of the training data's random stream.
STREAM = 11
LOSS_COLUMNS = ["step", "epoch", "lambda_c", "d_loss", "g_total", "adv_patch", "adv_global", "hinge", "percep"]
#: The loss column a modality translator adds.
TRANSLATION_COLUMN = "translation"
#: Weight, within the translation term, of L1 on the channels G was given
#: (a translator keeps them): without it, on the four-sequence demo G drifted
#: the given channels of the coarse pairs (TF's non-tumour t1n +0.06 off the
#: real cases'); at 1.0 it kept every input as given and translated nothing;
#: 0.1 keeps both (docs/interpretations.md, "TF-GAN as a modality translator").
GIVEN_CHANNELS_WEIGHT = 0.1


def loss_columns(n_modalities: int) -> list[str]:
    """The loss CSV's columns: :data:`LOSS_COLUMNS`, and :data:`TRANSLATION_COLUMN` for a translator."""
    return LOSS_COLUMNS + ([TRANSLATION_COLUMN] if uses_presence_indicators(n_modalities) else [])


def fill_quantiles(real: Sequence[Volume], modalities: Sequence[str]) -> dict[str, np.ndarray]:
    """Channel -> the pooled brain quantiles of the real training cases
    (``histogram_match.brain_quantiles``), for every channel but the fill's source (t1n)."""
    return {
        m: brain_quantiles((volume.image[c], volume.brainmask) for volume in real)
        for c, m in enumerate(modalities)
        if m != FILL_SOURCE
    }


def real_fills(real: Sequence[Volume], modalities: Sequence[str], quantiles: dict[str, np.ndarray]) -> list[Volume]:
    """Each real case with its fills appended to its channels (image [2·C, ...]: the C
    channels, then each one's fill, t1n's being t1n), so that one crop cuts both."""
    filled = []
    for volume in real:
        t1n = volume.image[modalities.index(FILL_SOURCE)]
        fills = fill_missing({FILL_SOURCE: t1n}, volume.brainmask, modalities, quantiles)
        image = np.concatenate([volume.image, np.stack([fills[m] for m in modalities])])
        filled.append(Volume(image, volume.labels, volume.brainmask))
    return filled


def sample_batch(
    coarse: Sequence[Volume],
    real: Sequence[Volume],
    batch_size: int,
    crop: int,
    seed: int,
    step: int,
    device,
    presence: np.ndarray | None = None,
    modalities: Sequence[str] = (),
) -> tuple:
    """The crops of one step: ``batch_size`` coarse pairs and as many real cases (unpaired).

    A translator's (``presence`` [N, C]: the coarse pairs' present channels,
    ``channels.coarse_presence``; ``real`` with their fills, :func:`real_fills`)
    also gets the crops' presence [B, C], the channels hidden from each real
    crop [B, C] (``channels.draw_hidden_channels`` over ``modalities``, drawn
    after the crops) and the real crops' fills [B, C, ...]; its real crops
    hold their own C channels only.
    """
    rng = np.random.default_rng([seed, STREAM, step])
    coarse_crops, coarse_rows = [], []
    for _ in range(batch_size):
        row = rng.integers(len(coarse))
        coarse_rows.append(row)
        coarse_crops.append(random_crop(coarse[row], crop, rng))
    real_crops = [random_crop(real[rng.integers(len(real))], crop, rng) for _ in range(batch_size)]
    coarse_batch, real_batch = stack_crops(coarse_crops, device), stack_crops(real_crops, device)
    if presence is None:
        return coarse_batch, real_batch
    hidden = np.stack([draw_hidden_channels(modalities, rng) for _ in range(batch_size)])
    (real_image, *real_rest), n = real_batch, len(modalities)
    return (
        coarse_batch,
        (real_image[:, :n], *real_rest),
        torch.from_numpy(presence[coarse_rows]).to(device),
        torch.from_numpy(hidden).to(device),
        real_image[:, n:],
    )


def settings_digest(
    tfgan: TFGANSettings,
    seed: int,
    modalities: Sequence[str],
    coarse_ids: Sequence[str],
    real_dirs: Sequence[str],
    presence: np.ndarray | None = None,
) -> str:
    """What a checkpoint must have been made with to be resumed from (a translator's: also
    the coarse pairs' present channels)."""
    settings = {
        "tfgan": tfgan.generator_record(len(modalities)),
        "seed": seed,
        "modalities": list(modalities),
        "coarse": list(coarse_ids),
        "real": [str(d) for d in real_dirs],
    }
    if presence is not None:
        settings[HEALTHY_CHANNELS_COLUMN] = presence.astype(int).tolist()
        settings["absent_input"] = "fill"  # a checkpoint of G given zeros for an absent channel is not resumed
    return gan.settings_digest(settings)


class Trainer(gan.GANTrainer):
    """TF-GAN's G and D (:func:`build_networks`), F, the loss weights and one training step;
    optimizers, schedulers, scaler and checkpoint state: ``gan.GANTrainer``."""

    def __init__(self, tfgan: TFGANSettings, n_modalities: int, extractor: torch.nn.Module, total_steps: int, seed: int, device):
        generator, discriminator = build_networks(tfgan, n_modalities, seed)
        super().__init__(generator, discriminator, tfgan, total_steps, device)
        self.tfgan = tfgan
        self.extractor = gan.cpu_layout(extractor.to(self.device), self.device)
        self.weights = {"patch": tfgan.lambda_patch, "global": tfgan.lambda_global, "percep": tfgan.lambda_percep}
        self.loss_columns = loss_columns(n_modalities)

    def refine(
        self, image: torch.Tensor, labels: torch.Tensor, brain: torch.Tensor, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        refined = self.generator(generator_input(image, labels, present))
        return torch.where(brain > 0, refined.float(), torch.full_like(refined.float(), -1.0))

    def step(
        self,
        step: int,
        coarse: tuple[torch.Tensor, ...],
        real: tuple[torch.Tensor, ...],
        present: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
        real_fill: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One D and one G step; ``present``, ``hidden`` ([B, C]) and ``real_fill``
        ([B, C, ...]) are a translator's (the coarse crops' present channels, the
        channels hidden from the real crops, the real crops' fills)."""
        (x_coarse, m_coarse, brain_coarse), (x_real, m_real, brain_real) = coarse, real
        onehot_coarse, onehot_real = one_hot_labels(m_coarse), one_hot_labels(m_real)
        lambda_c = losses.lambda_c(step, self.total_steps, start=self.tfgan.lambda_c[0], end=self.tfgan.lambda_c[1])

        with self._autocast():
            if present is None:
                refined, translated = self.refine(x_coarse, m_coarse, brain_coarse), None
            else:
                given_real = torch.where(hidden[:, :, None, None, None] > 0, real_fill, x_real)
                outputs = self.refine(
                    torch.cat([x_coarse, given_real]),
                    torch.cat([m_coarse, m_real]),
                    torch.cat([brain_coarse, brain_real]),
                    torch.cat([present, 1.0 - hidden]),
                )
                refined, translated = outputs[: len(x_coarse)], outputs[len(x_coarse) :]
            real_patch, real_global = self.discriminator(x_real, onehot_real)
            fake_patch, fake_global = self.discriminator(refined.detach(), onehot_coarse)
            d_loss = self.weights["patch"] * losses.discriminator_loss(real_patch, fake_patch) + self.weights[
                "global"
            ] * losses.discriminator_loss(real_global, fake_global)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(d_loss).backward()
        self.scaler.step(self.opt_d)

        with self._autocast():
            fake_patch, fake_global = self.discriminator(refined, onehot_coarse)
            with torch.no_grad():
                real_features = self.extractor(x_real, brain_real)
            fake_features = self.extractor(refined, brain_coarse)
            terms = {
                "adv_patch": losses.generator_adversarial_loss(fake_patch),
                "adv_global": losses.generator_adversarial_loss(fake_global),
                "hinge": losses.hinge_l1_outside_roi(
                    refined, x_coarse, (m_coarse > 0).float(), self.tfgan.hinge_margin, present
                ),
                "percep": losses.classwise_perceptual(fake_features, m_coarse, real_features, m_real),
            }
            translation = (
                None
                if translated is None
                else losses.translation_l1(translated, x_real, hidden, brain_real)
                + GIVEN_CHANNELS_WEIGHT * losses.translation_l1(translated, x_real, 1.0 - hidden, brain_real)
            )
            g_total, parts = losses.generator_loss(
                terms["adv_patch"], terms["adv_global"], terms["hinge"], terms["percep"], self.weights, lambda_c,
                translation, self.tfgan.translation_weight,
            )
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_total).backward()
        self.scaler.step(self.opt_g)
        self.end_step()
        return {"lambda_c": lambda_c, "d_loss": float(d_loss.detach()), "g_total": float(g_total.detach()), **{k: float(v) for k, v in parts.items() if k in self.loss_columns}}


def train_tfgan(
    coarse_manifest: str | os.PathLike,
    coarse_cases_dir: str | os.PathLike,
    real_case_dirs: Sequence[str | os.PathLike],
    feature_extractor_dir: str | os.PathLike | None,
    work_dir: str | os.PathLike,
    out_generator: str | os.PathLike,
    out_losses: str | os.PathLike,
    out_curves: str | os.PathLike,
    modalities: Sequence[str],
    tfgan: TFGANSettings,
    seed: int,
    threads: int,
    device: str | None = None,
    extractor: torch.nn.Module | None = None,
) -> pd.DataFrame:
    """The ``train_tfgan`` rule: train G and D, write G's weights and the loss curves.

    ``coarse_manifest``/``coarse_cases_dir``: TF-Aug's pairs (every
    row); ``real_case_dirs``: the real training case folders (D's real
    samples, the perceptual loss's unpaired real cases). ``work_dir`` holds
    the checkpoint a rerun resumes from. ``extractor`` replaces F read from
    ``feature_extractor_dir`` (tests). ``threads``: torch's CPU threads;
    ``device`` None: the GPU when there is one.
    ``out_generator`` gets ``{"generator": state dict, "n_modalities",
    "modalities", "tfgan": the settings (``TFGANSettings.generator_record``), "seed",
    "steps"}``: with ``n_modalities`` the networks module rebuilds G, a
    translator when more than one. A translator reads the coarse pairs'
    present channels from ``coarse_manifest`` (``channels.coarse_presence``).
    Returns the loss rows.
    """
    torch.set_num_threads(threads)
    device = resolve_device(device)
    coarse_ids = manifest_case_ids(coarse_manifest)
    if not coarse_ids:
        raise ValueError(f"{coarse_manifest}: no coarse pairs to train TF-GAN on")
    coarse = gan.load_volumes([Path(coarse_cases_dir) / c for c in coarse_ids], modalities, who="TF-GAN")
    real = gan.load_volumes(real_case_dirs, modalities, who="TF-GAN")
    if extractor is None:
        from tumorfab.segmentation.features import load_feature_extractor

        extractor = load_feature_extractor(feature_extractor_dir, n_stages=tfgan.n_stages, device=device)
    presence, quantiles = None, None
    if uses_presence_indicators(len(modalities)):
        presence = coarse_presence(coarse_manifest, coarse_ids, modalities)
        quantiles = fill_quantiles(real, modalities)
        real = real_fills(real, list(modalities), quantiles)
    batch_size, crop = tfgan.batch_size, tfgan.crop
    steps_per_epoch = math.ceil(len(coarse) / batch_size)
    total_steps = tfgan.epochs * steps_per_epoch
    trainer = Trainer(tfgan, len(modalities), extractor, total_steps, seed, device)
    digest = settings_digest(tfgan, seed, modalities, coarse_ids, real_case_dirs, presence)
    log.info(
        "TF-GAN: %d coarse pairs, %d real cases, %d epochs x %d steps, crop %d, batch %d, %s, autocast %s",
        len(coarse), len(real), tfgan.epochs, steps_per_epoch, crop, batch_size, device, trainer.amp_dtype,
    )
    if presence is not None:
        log.info(
            "TF-GAN translates between %s (weight %g); coarse pairs with every channel from a healthy scan: %d of %d",
            list(modalities), tfgan.translation_weight, int(presence.all(axis=1).sum()), len(presence),
        )
    rows = gan.run_training(
        trainer,
        lambda step: sample_batch(coarse, real, batch_size, crop, seed, step, device, presence, modalities),
        total_steps,
        steps_per_epoch,
        tfgan.checkpoint_every,
        work_dir,
        digest,
        "TF-GAN",
        trainer.loss_columns[2:],
    )
    record = {
        "generator": trainer.generator.state_dict(),
        "n_modalities": len(modalities),
        "modalities": list(modalities),
        "tfgan": tfgan.generator_record(len(modalities)),
        "seed": seed,
        "steps": total_steps,
    }
    if quantiles is not None:
        record["fill_quantiles"] = quantiles
    return gan.write_training_outputs(
        rows, trainer.loss_columns, trainer.loss_columns[3:], record, out_generator, out_losses, out_curves,
        "TF-GAN training losses",
    )
