"""3D Pix2Pix training (paper 002 §3.2.1 (2)): the ``train_pix2pix`` rule.

Paired data: each real training case gives its image ``x`` and its label map
``y`` (``networks.label_map``: background, brain minus tumour, NCR, ED, ET).
G learns ``y -> x``; D tells ``(y, x)`` from ``(y, G(y))``. Each step:

1. a batch of crops of real training cases (:func:`sample_batch`), drawn from
   ``SeedSequence([seed, STREAM, step])`` (:data:`STREAM` is Pix2Pix's own):
   the data of a step depend only on the seed and the step, so a resumed run
   sees the crops of an uninterrupted one;
2. D step: ``0.5·(BCE(D(y, x), 1) + BCE(D(y, G(y)), 0))`` with ``G(y)``
   detached (``losses.discriminator_loss``);
3. G step: ``BCE(D(y, G(y)), 1) + λ_L1·|G(y) - x|₁`` (``losses.generator_loss``).

Our choices where the paper is silent (docs/interpretations.md, "Pix2Pix"),
the same as TF-GAN's so that the two GANs differ only in what they are:

* **Crops**: cubes of ``crop`` voxels (paper 128, as TF-GAN) centred on a
  random lesion voxel moved by up to a quarter of the crop
  (``tumorfab.synthesis.gan.random_crop``), the image and its own label map
  cut alike; volumes smaller than a crop are padded (image -1, background).
* **Standard augmentation**: mirroring along each axis with p = 0.5, the
  same for the image and its label map.
* **Brain**: G's output is set to -1 outside the crop's brain mask before D
  and the L1 see it (the case-folder contract; generation does the same), so
  the L1 is 0 in the background, where the real image is -1 too.
* **Epoch**: one pass over the real training cases, ``ceil(n_real /
  batch_size)`` steps (each draws its cases at random); paper 002 trains
  every GAN for 200 epochs, so ``epochs`` is TF-GAN's unless
  ``pix2pix.epochs`` says otherwise (``Pix2PixSettings.from_config``). Adam
  (β from the config, pix2pix's (0.5, 0.999)), both learning rates (2e-4)
  decayed linearly to 0 over all steps.
* **Mixed precision**: as TF-GAN (``gan.autocast_dtype``): ``auto`` on a GPU
  only, ``on`` forces it (bf16 on the CPU), ``off``; losses in float32.

Checkpoints, resume and the loss curves are the GANs' shared machinery
(``tumorfab.synthesis.gan.run_training``).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from tumorfab.device import resolve_device
from tumorfab.synthesis import gan
from tumorfab.synthesis.gan_settings import Pix2PixSettings
from tumorfab.synthesis.pix2pix import losses
from tumorfab.synthesis.pix2pix.networks import build_networks, label_map

log = logging.getLogger(__name__)

#: Spawn key of Pix2Pix's training data stream (TF-GAN's is 11).
STREAM = 13
#: The loss CSV's columns.
LOSS_COLUMNS = ["step", "epoch", "d_loss", "g_total", "g_adv", "l1"]


def sample_batch(real: Sequence[gan.Volume], batch_size: int, crop: int, seed: int, step: int, device) -> tuple[torch.Tensor, ...]:
    """The crops of one step: ``batch_size`` real cases, each image with its own
    labels and brain mask (paired); (image, labels, brain) tensors."""
    rng = np.random.default_rng([seed, STREAM, step])
    crops = [gan.random_crop(real[rng.integers(len(real))], crop, rng) for _ in range(batch_size)]
    return gan.stack_crops(crops, device)


class Trainer(gan.GANTrainer):
    """Pix2Pix's G and D (``networks.build_networks``), λ_L1 and one training step;
    optimizers, schedulers, scaler and checkpoint state: ``gan.GANTrainer``."""

    def __init__(self, pix2pix: Pix2PixSettings, n_modalities: int, total_steps: int, seed: int, device):
        generator, discriminator = build_networks(pix2pix, n_modalities, seed)
        super().__init__(generator, discriminator, pix2pix, total_steps, device)
        self.lambda_l1 = pix2pix.lambda_l1

    def generate(self, condition: torch.Tensor, brain: torch.Tensor) -> torch.Tensor:
        """``G(y)``, float32, -1 outside the brain mask ``brain`` [B, 1, ...]."""
        fake = self.generator(condition).float()
        return torch.where(brain > 0, fake, torch.full_like(fake, -1.0))

    def step(self, step: int, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        image, labels, brain = batch
        condition = label_map(labels, brain)

        with self._autocast():
            fake = self.generate(condition, brain)
            d_loss = losses.discriminator_loss(self.discriminator(image, condition), self.discriminator(fake.detach(), condition))
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(d_loss).backward()
        self.scaler.step(self.opt_d)

        with self._autocast():
            g_total, parts = losses.generator_loss(self.discriminator(fake, condition), fake, image, self.lambda_l1)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_total).backward()
        self.scaler.step(self.opt_g)
        self.end_step()
        return {"d_loss": float(d_loss.detach()), **parts}


def train_pix2pix(
    real_case_dirs: Sequence[str | os.PathLike],
    work_dir: str | os.PathLike,
    out_generator: str | os.PathLike,
    out_losses: str | os.PathLike,
    out_curves: str | os.PathLike,
    modalities: Sequence[str],
    pix2pix: Pix2PixSettings,
    seed: int,
    threads: int,
    device: str | None = None,
) -> pd.DataFrame:
    """The ``train_pix2pix`` rule: train G and D on the real training cases,
    write G's record and the loss curves.

    ``real_case_dirs``: the real training case folders (each must hold a
    lesion). ``work_dir`` holds the checkpoint a rerun resumes from (same
    settings, seed, modalities and cases). ``threads``: torch's CPU threads;
    ``device`` None: the GPU when there is one.

    ``out_generator`` gets ``{"generator": state dict, "pix2pix": the
    settings (``Pix2PixSettings.as_record``, ``epochs`` resolved),
    "n_modalities", "modalities", "seed", "steps"}``; ``out_losses`` the rows
    (:data:`LOSS_COLUMNS`), ``out_curves`` their plot. Returns the loss rows.
    """
    if not real_case_dirs:
        raise ValueError("no real training cases to train Pix2Pix on")
    torch.set_num_threads(threads)
    device = resolve_device(device)
    real = gan.load_volumes(real_case_dirs, modalities, who="Pix2Pix")
    batch_size, crop = pix2pix.batch_size, pix2pix.crop
    steps_per_epoch = math.ceil(len(real) / batch_size)
    total_steps = pix2pix.epochs * steps_per_epoch
    trainer = Trainer(pix2pix, len(modalities), total_steps, seed, device)
    digest = gan.settings_digest(
        {"pix2pix": pix2pix.as_record(), "seed": seed, "modalities": list(modalities), "real": [str(d) for d in real_case_dirs]}
    )
    log.info(
        "Pix2Pix: %d real cases, %d epochs x %d steps, crop %d, batch %d, %s, autocast %s",
        len(real), pix2pix.epochs, steps_per_epoch, crop, batch_size, device, trainer.amp_dtype,
    )
    rows = gan.run_training(
        trainer,
        lambda step: (sample_batch(real, batch_size, crop, seed, step, device),),
        total_steps,
        steps_per_epoch,
        pix2pix.checkpoint_every,
        work_dir,
        digest,
        "Pix2Pix",
        LOSS_COLUMNS[2:],
    )
    record = {
        "generator": trainer.generator.state_dict(),
        "pix2pix": pix2pix.as_record(),
        "n_modalities": len(modalities),
        "modalities": list(modalities),
        "seed": seed,
        "steps": total_steps,
    }
    return gan.write_training_outputs(
        rows, LOSS_COLUMNS, LOSS_COLUMNS[2:], record, out_generator, out_losses, out_curves, "Pix2Pix training losses"
    )
