"""TF-GAN training (paper 002 §2.2 and §3.1.2; SPEC §2 item 5): the ``train_tfgan`` rule.

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

Checkpoints (``checkpoint_every`` steps, and at the end) hold G, D, both
optimizers and schedulers, the scaler, torch's RNG state, the step and the
loss rows, written atomically into a work folder outside the rule's outputs
(Snakemake deletes a failed job's outputs); a rerun resumes from the last one
when its settings are the same, so a killed job loses at most
``checkpoint_every`` steps and, on CPU, ends with the same weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from tumorfab.casefolder import load_case
from tumorfab.io import atomic_path, save_csv
from tumorfab.synthesis.manifest import manifest_case_ids
from tumorfab.synthesis.tfgan import losses
from tumorfab.synthesis.tfgan.networks import N_MASK_CHANNELS, Discriminator, Generator, generator_input, one_hot_labels

log = logging.getLogger(__name__)

#: Spawn key of the training data's random stream.
STREAM = 11
CHECKPOINT = "checkpoint.pt"
LOSS_COLUMNS = ["step", "epoch", "lambda_c", "d_loss", "g_total", "adv_patch", "adv_global", "hinge", "percep"]


@dataclass
class Volume:
    """One case in memory: images [C, X, Y, Z] float32, labels and brain mask uint8 [X, Y, Z]."""

    image: np.ndarray
    labels: np.ndarray
    brainmask: np.ndarray


def load_volumes(case_dirs: Sequence[str | os.PathLike], modalities: Sequence[str]) -> list[Volume]:
    volumes = []
    for case_dir in case_dirs:
        case = load_case(case_dir, modalities)
        if not (case.seg > 0).any():
            raise ValueError(f"{case_dir}: no lesion; TF-GAN crops are centred on lesions")
        volumes.append(Volume(case.stacked(modalities), case.seg, case.brainmask))
    return volumes


def crop_volume(volume: Volume, centre: Sequence[int], size: int) -> Volume:
    """The cube of side ``size`` around ``centre``, padded where it leaves the volume."""
    shape = volume.labels.shape
    lo = [int(c) - size // 2 for c in centre]
    image = np.full((volume.image.shape[0], size, size, size), -1.0, dtype=np.float32)
    labels = np.zeros((size,) * 3, dtype=np.uint8)
    brain = np.zeros((size,) * 3, dtype=np.uint8)
    src, dst = [], []
    for axis in range(3):
        a, b = max(lo[axis], 0), min(lo[axis] + size, shape[axis])
        src.append(slice(a, b))
        dst.append(slice(a - lo[axis], b - lo[axis]))
    image[(slice(None), *dst)] = volume.image[(slice(None), *src)]
    labels[tuple(dst)] = volume.labels[tuple(src)]
    brain[tuple(dst)] = volume.brainmask[tuple(src)]
    return Volume(image, labels, brain)


def random_crop(volume: Volume, size: int, rng: np.random.Generator) -> Volume:
    """A crop centred near a random lesion voxel, mirrored at random (see the module docstring)."""
    lesion = np.argwhere(volume.labels > 0)
    centre = lesion[rng.integers(len(lesion))] + rng.integers(-(size // 4), size // 4 + 1, size=3)
    centre = np.clip(centre, 0, np.asarray(volume.labels.shape) - 1)
    crop = crop_volume(volume, centre, size)
    for axis in range(3):
        if rng.random() < 0.5:
            crop = Volume(
                np.flip(crop.image, axis + 1).copy(), np.flip(crop.labels, axis).copy(), np.flip(crop.brainmask, axis).copy()
            )
    return crop


def _stack(crops: Sequence[Volume], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    image = torch.from_numpy(np.stack([c.image for c in crops])).to(device)
    labels = torch.from_numpy(np.stack([c.labels for c in crops])[:, None].astype(np.int64)).to(device)
    brain = torch.from_numpy(np.stack([c.brainmask for c in crops])[:, None].astype(np.float32)).to(device)
    return image, labels, brain


def sample_batch(
    coarse: Sequence[Volume], real: Sequence[Volume], batch_size: int, crop: int, seed: int, step: int, device
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The crops of one step: ``batch_size`` coarse pairs and as many real cases (unpaired)."""
    rng = np.random.default_rng([seed, STREAM, step])
    coarse_crops = [random_crop(coarse[rng.integers(len(coarse))], crop, rng) for _ in range(batch_size)]
    real_crops = [random_crop(real[rng.integers(len(real))], crop, rng) for _ in range(batch_size)]
    return _stack(coarse_crops, device), _stack(real_crops, device)


def autocast_dtype(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision (see the module docstring)."""
    if mixed_precision == "off" or (mixed_precision == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def build_networks(tfgan: Mapping, n_modalities: int, seed: int) -> tuple[Generator, Discriminator]:
    """G and D from the ``tfgan`` settings, their weights drawn from ``seed``."""
    torch.manual_seed(seed)
    generator = make_generator(tfgan, n_modalities)
    discriminator = Discriminator(
        in_channels=n_modalities + N_MASK_CHANNELS,
        width=int(tfgan["discriminator_width"]),
        max_channels=int(tfgan["discriminator_max_channels"]),
    )
    return generator, discriminator


def make_generator(tfgan: Mapping, n_modalities: int) -> Generator:
    """G for images of ``n_modalities`` channels: image ⊕ one-hot mask in, image out."""
    return Generator(
        in_channels=n_modalities + N_MASK_CHANNELS, out_channels=n_modalities, widths=list(tfgan["generator_widths"])
    )


def settings_digest(tfgan: Mapping, seed: int, coarse_ids: Sequence[str], real_dirs: Sequence[str]) -> str:
    """What a checkpoint must have been made with to be resumed from."""
    text = json.dumps({"tfgan": dict(tfgan), "seed": seed, "coarse": list(coarse_ids), "real": [str(d) for d in real_dirs]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class Trainer:
    """G, D, their optimizers and schedulers, and one training step."""

    def __init__(self, tfgan: Mapping, n_modalities: int, extractor: torch.nn.Module, total_steps: int, seed: int, device):
        self.tfgan, self.total_steps, self.device = tfgan, total_steps, torch.device(device)
        self.generator, self.discriminator = (m.to(self.device) for m in build_networks(tfgan, n_modalities, seed))
        self.extractor = extractor.to(self.device)
        betas = tuple(float(b) for b in tfgan["betas"])
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=float(tfgan["lr_generator"]), betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=float(tfgan["lr_discriminator"]), betas=betas)

        def decay(step: int) -> float:
            return max(0.0, 1.0 - step / total_steps)

        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.amp_dtype = autocast_dtype(str(tfgan["mixed_precision"]), self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.weights = {"patch": float(tfgan["lambda_patch"]), "global": float(tfgan["lambda_global"]), "percep": float(tfgan["lambda_percep"])}

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def refine(self, image: torch.Tensor, labels: torch.Tensor, brain: torch.Tensor) -> torch.Tensor:
        refined = self.generator(generator_input(image, labels))
        return torch.where(brain > 0, refined.float(), torch.full_like(refined.float(), -1.0))

    def step(self, step: int, coarse: tuple[torch.Tensor, ...], real: tuple[torch.Tensor, ...]) -> dict[str, float]:
        (x_coarse, m_coarse, brain_coarse), (x_real, m_real, brain_real) = coarse, real
        onehot_coarse, onehot_real = one_hot_labels(m_coarse), one_hot_labels(m_real)
        lambda_c = losses.lambda_c(step, self.total_steps, start=float(self.tfgan["lambda_c"][0]), end=float(self.tfgan["lambda_c"][1]))

        with self._autocast():
            refined = self.refine(x_coarse, m_coarse, brain_coarse)
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
                "hinge": losses.hinge_l1_outside_roi(refined, x_coarse, (m_coarse > 0).float(), float(self.tfgan["hinge_margin"])),
                "percep": losses.classwise_perceptual(fake_features, m_coarse, real_features, m_real),
            }
            g_total, parts = losses.generator_loss(
                terms["adv_patch"], terms["adv_global"], terms["hinge"], terms["percep"], self.weights, lambda_c
            )
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_total).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.sched_g.step()
        self.sched_d.step()
        return {"lambda_c": lambda_c, "d_loss": float(d_loss.detach()), "g_total": float(g_total.detach()), **{k: float(v) for k, v in parts.items() if k in LOSS_COLUMNS}}

    def state(self, step: int, rows: list[dict], digest: str) -> dict:
        return {
            "step": step,
            "digest": digest,
            "rows": rows,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def _save_torch(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def plot_losses(rows: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """The loss curves of a training, one panel per term, against the step."""
    columns = ["d_loss", "g_total", "adv_patch", "adv_global", "hinge", "percep"]
    figure = Figure(figsize=(12, 5.5), layout="constrained")
    axes = figure.subplots(2, 3).ravel()
    for ax, column in zip(axes, columns):
        ax.plot(rows["step"], rows[column], lw=0.8)
        ax.set_title(column)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    figure.suptitle("TF-GAN training losses")
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


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
    tfgan: Mapping,
    seed: int,
    threads: int,
    device: str | None = None,
    extractor: torch.nn.Module | None = None,
) -> pd.DataFrame:
    """The ``train_tfgan`` rule: train G and D, write G's weights and the loss curves.

    ``tfgan`` is the validated config's ``tfgan`` section (defaults: the
    schema). ``coarse_manifest``/``coarse_cases_dir``: TF-Aug's pairs (every
    row); ``real_case_dirs``: the real training case folders (D's real
    samples, the perceptual loss's unpaired real cases). ``work_dir`` holds
    the checkpoint a rerun resumes from. ``extractor`` replaces F read from
    ``feature_extractor_dir`` (tests). ``threads``: torch's CPU threads;
    ``device`` None: the GPU when there is one.
    Returns the loss rows.
    """
    torch.set_num_threads(threads)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    coarse_ids = manifest_case_ids(coarse_manifest)
    if not coarse_ids:
        raise ValueError(f"{coarse_manifest}: no coarse pairs to train TF-GAN on")
    coarse = load_volumes([Path(coarse_cases_dir) / c for c in coarse_ids], modalities)
    real = load_volumes(real_case_dirs, modalities)
    if extractor is None:
        from tumorfab.segmentation.features import load_feature_extractor

        extractor = load_feature_extractor(feature_extractor_dir, n_stages=int(tfgan["n_stages"]), device=device)
    batch_size, crop = int(tfgan["batch_size"]), int(tfgan["crop"])
    steps_per_epoch = math.ceil(len(coarse) / batch_size)
    total_steps = int(tfgan["epochs"]) * steps_per_epoch
    trainer = Trainer(tfgan, len(modalities), extractor, total_steps, seed, device)
    digest = settings_digest(tfgan, seed, coarse_ids, [str(d) for d in real_case_dirs])

    checkpoint = Path(work_dir) / CHECKPOINT
    start, rows = 0, []
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["digest"] == digest:
            trainer.load(state)
            start, rows = int(state["step"]), list(state["rows"])
            log.info("TF-GAN: resuming from step %d of %d (%s)", start, total_steps, checkpoint)
        else:
            log.info("TF-GAN: %s was made with other settings; starting over", checkpoint)
    log.info(
        "TF-GAN: %d coarse pairs, %d real cases, %d epochs x %d steps, crop %d, batch %d, %s, autocast %s",
        len(coarse), len(real), int(tfgan["epochs"]), steps_per_epoch, crop, batch_size, device, trainer.amp_dtype,
    )
    every = int(tfgan["checkpoint_every"])
    for step in range(start, total_steps):
        coarse_batch, real_batch = sample_batch(coarse, real, batch_size, crop, seed, step, device)
        row = {"step": step, "epoch": step // steps_per_epoch, **trainer.step(step, coarse_batch, real_batch)}
        rows.append(row)
        if step % steps_per_epoch == steps_per_epoch - 1:
            log.info("epoch %d: %s", row["epoch"], ", ".join(f"{k} {row[k]:.4f}" for k in LOSS_COLUMNS[2:]))
        if (step + 1) % every == 0 or step + 1 == total_steps:
            _save_torch(trainer.state(step + 1, rows, digest), checkpoint)

    frame = pd.DataFrame(rows, columns=LOSS_COLUMNS)
    _save_torch(
        {
            "generator": trainer.generator.state_dict(),
            "n_modalities": len(modalities),
            "modalities": list(modalities),
            "tfgan": dict(tfgan),
            "seed": seed,
            "steps": total_steps,
        },
        Path(out_generator),
    )
    save_csv(frame, out_losses)
    plot_losses(frame, out_curves)
    return frame
