"""What the study's GANs share (TF-GAN, ``tfgan/``; Pix2Pix, ``pix2pix/``): one owner.

Each GAN keeps here only what is its own (networks, losses, one training
step, how a step's crops are drawn, how the network input is built); this
module holds the rest:

* **Data**: :class:`Volume` (a case in memory), :func:`load_volumes` (every
  case must hold a lesion: crops are centred on lesions), :func:`crop_volume`,
  :func:`random_crop` (a cube near a random lesion voxel, mirrored at random)
  and :func:`stack_crops` (a batch of tensors).
* **CPU speed**: :func:`cpu_layout` (networks in the channels-last layout
  on the CPU) and :data:`CPU_WINDOWS_PER_BATCH` (sliding windows in batches).
* **Mixed precision**: :func:`autocast_dtype` (``mixed_precision``: ``auto``
  uses it on a GPU only, bf16 where supported, else fp16 with a gradient
  scaler; ``on`` forces it, bf16 on the CPU; ``off``),
  :func:`float32_context` (losses computed in float32 under autocast) and
  :func:`precision_kernels` (bf16 on the CPU on ATen's kernels, not oneDNN's).
* **Training**: :class:`GANTrainer` (G, D, their Adam optimizers, learning
  rates decayed linearly to 0 over all steps, the gradient scaler, the
  autocast context, the checkpoint's state) and :func:`run_training` (the
  loop: a checkpoint every ``checkpoint_every`` steps and at the end, written
  atomically into a work folder outside the rule's outputs, since Snakemake
  deletes a failed job's outputs; a rerun resumes from it when the settings
  digest is the same, else starts over; a loss that turns non-finite stops
  it at once, :class:`NonFiniteTraining`), :func:`write_training_outputs`
  (G's record, the loss CSV, the curves of :func:`plot_losses`).
* **Generation**: :func:`load_generator` (G from a training's generator
  file, rebuilt from the settings it stores) and :func:`generate_cases` (the
  loop over the layout cases: checks G against the request, writes the case
  folders whole and the manifest); :func:`brain_box_inference`, a network
  over a whole volume by MONAI's sliding-window inferer with Gaussian
  blending, over the brain's bounding box plus :data:`BRAIN_MARGIN` voxels;
  -1 (background) outside the brain.
* :func:`save_torch` (atomic ``torch.save``) and :func:`settings_digest`.

The settings both GANs share are ``tumorfab.synthesis.gan_settings.GANSettings``.

Reproducibility: the data of a step come from the GAN's own
``SeedSequence([seed, STREAM, step])`` (the caller's sampler), the weights
from ``torch.manual_seed(seed)`` before the networks are built, and a
checkpoint holds the random generators' state (``tumorfab.rng``), so on CPU
a resumed run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from monai.inferers import sliding_window_inference

from tumorfab.casefolder import Case, load_case, save_case
from tumorfab.device import resolve_device
from tumorfab.io import atomic_directory, atomic_path, save_csv
from tumorfab.rng import capture_rng_state, restore_rng_state
from tumorfab.synthesis.gan_settings import GANSettings
from tumorfab.synthesis.manifest import first_cases, synthetic_case_id, write_manifest

log = logging.getLogger(__name__)

#: File name of a training's checkpoint inside its work folder.
CHECKPOINT = "checkpoint.pt"
#: The layout of :meth:`GANTrainer.state`; part of the settings digest, so that
#: a checkpoint of another layout is never resumed from.
CHECKPOINT_FORMAT = 2
#: Voxels kept around the brain's bounding box by :func:`brain_box_inference`,
#: so that a generator sees the brain's edge with background around it, as in
#: its training crops.
BRAIN_MARGIN = 8
#: Sliding windows run per forward pass on the CPU (one elsewhere, MONAI's
#: default). PyTorch runs a 3x3x3 convolution of one sample with few channels
#: (N*C*D*H <= 20480) on its slow im2col path, not oneDNN's; two or more
#: windows per pass take oneDNN's.
CPU_WINDOWS_PER_BATCH = 4


# --- Data ------------------------------------------------------------------------------


@dataclass
class Volume:
    """One case in memory: images [C, X, Y, Z] float32, labels and brain mask uint8 [X, Y, Z]."""

    image: np.ndarray
    labels: np.ndarray
    brainmask: np.ndarray


def load_volumes(case_dirs: Sequence[str | os.PathLike], modalities: Sequence[str], who: str = "GAN") -> list[Volume]:
    """The case folders as :class:`Volume` s; a case without lesion is an error
    naming it (``who``'s crops are centred on lesions)."""
    volumes = []
    for case_dir in case_dirs:
        case = load_case(case_dir, modalities)
        if not (case.seg > 0).any():
            raise ValueError(f"{case_dir}: no lesion; {who} crops are centred on lesions")
        volumes.append(Volume(case.stacked(modalities), case.seg, case.brainmask))
    return volumes


def crop_volume(volume: Volume, centre: Sequence[int], size: int) -> Volume:
    """The cube of side ``size`` around ``centre``, padded where it leaves the
    volume (image -1, labels 0, brain 0: background)."""
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
    """A training crop: a cube of ``size`` voxels centred on a random lesion
    voxel moved by up to a quarter of the crop per axis (so that every crop
    holds tumour), then mirrored along each axis with probability 0.5
    (nnU-Net's mirroring; our reading of "standard augmentation"), the same
    for the image, its labels and its brain mask."""
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


def stack_crops(crops: Sequence[Volume], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch: images [B, C, ...] float32, labels [B, 1, ...] int64, brain masks [B, 1, ...] float32."""
    image = torch.from_numpy(np.stack([c.image for c in crops])).to(device)
    labels = torch.from_numpy(np.stack([c.labels for c in crops])[:, None].astype(np.int64)).to(device)
    brain = torch.from_numpy(np.stack([c.brainmask for c in crops])[:, None].astype(np.float32)).to(device)
    return image, labels, brain


# --- CPU speed -------------------------------------------------------------------------


def cpu_layout(module: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """``module`` in the channels-last 3-D layout when ``device`` is the CPU
    (in place; returned): oneDNN's 3-D convolutions and their backward pass
    run ~1.5x faster on it there (measured: a TF-GAN demo step at batch 2,
    2.34 s -> 1.54 s), and the activations follow the weights' layout. The
    parameters stay the same objects with the same values; GPUs keep the
    default layout."""
    if torch.device(device).type == "cpu":
        module.to(memory_format=torch.channels_last_3d)
    return module


# --- Precision -------------------------------------------------------------------------


def autocast_dtype(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mixed_precision`` (``auto``/``on``/``off``) on
    ``device``, or None for full precision: ``auto`` uses autocast on a GPU
    only; ``on`` forces it (bf16 on the CPU); on a GPU bf16 where supported,
    else fp16 (then with a gradient scaler, :class:`GANTrainer`)."""
    if mixed_precision == "off" or (mixed_precision == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def precision_kernels(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a step or an inference at autocast ``dtype`` on ``device``
    runs in, its backward pass included: oneDNN off for bf16 on the CPU, so
    that convolutions run on ATen's own kernels; nothing otherwise.

    oneDNN's bf16 convolution (backward-weights) on a 2³ input with a 3×3×3
    kernel and padding 1 (TF-GAN's D patch head and G's bottleneck at 64³
    crops) reads scratch memory it never writes (PyTorch 2.14.1, oneDNN
    3.12): its weight gradient is then whatever the heap held, NaN in a
    process whose freed memory held NaN-like bytes (every time with glibc's
    ``MALLOC_PERTURB_``; now and then in a long pytest run). fp32 (oneDNN),
    ATen's bf16 and the GPU's cuDNN are not affected (docs/architecture.md,
    "Mixed precision on the CPU")."""
    if dtype == torch.bfloat16 and torch.device(device).type == "cpu":
        return _onednn_disabled()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _onednn_disabled():
    # not torch.backends.mkldnn.flags(): it also sets oneDNN's TF32 switch, which warns on every CPU build
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


def precision_name(dtype: torch.dtype | None, scaler_enabled: bool = False) -> str:
    """How a training computes, for messages: ``fp32``, ``bf16 autocast`` or ``fp16 autocast + gradient scaler``."""
    if dtype is None:
        return "fp32"
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))
    return f"{name} autocast" + (" + gradient scaler" if scaler_enabled else "")


def float32_context(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """A context with autocast off on ``tensor``'s device, so that a loss's
    arithmetic stays float32 inside ``torch.autocast``."""
    try:
        return torch.autocast(device_type=tensor.device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know: nothing to disable
        return contextlib.nullcontext()


# --- Files -----------------------------------------------------------------------------


def save_torch(obj, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary name (``tumorfab.io.atomic_path``).

    Saved through an open file, not the name: ``torch.save`` given a name
    puts that name into the archive, and the temporary name is random, so the
    same object would give other bytes each time (and another SHA-256 in the
    manifests that record a generator file)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


def settings_digest(settings: Mapping) -> str:
    """What a checkpoint must have been made with to be resumed from: the
    SHA-256 of ``settings`` (plain values only) and :data:`CHECKPOINT_FORMAT`
    as sorted JSON."""
    text = json.dumps({"checkpoint_format": CHECKPOINT_FORMAT, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# --- Training --------------------------------------------------------------------------


class GANTrainer:
    """G, D, their optimizers and schedulers, the gradient scaler and the autocast context.

    Read from ``settings``: ``lr_generator``, ``lr_discriminator``, ``betas``
    (Adam's, both networks) and ``mixed_precision``. Both learning rates
    decay linearly to 0 over ``total_steps`` (``LambdaLR``, stepped once per
    training step). The scaler is enabled only for fp16 autocast. Subclasses
    build the networks (weights drawn after ``torch.manual_seed``), hand them
    to this constructor and implement :meth:`step`.
    """

    def __init__(
        self, generator: torch.nn.Module, discriminator: torch.nn.Module, settings: GANSettings, total_steps: int, device
    ):
        self.total_steps, self.device = total_steps, torch.device(device)
        self.generator = cpu_layout(generator.to(self.device), self.device)
        self.discriminator = cpu_layout(discriminator.to(self.device), self.device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=settings.lr_generator, betas=settings.betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=settings.lr_discriminator, betas=settings.betas)

        def decay(step: int) -> float:
            return max(0.0, 1.0 - step / total_steps)

        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.amp_dtype = autocast_dtype(settings.mixed_precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def _autocast(self):
        """The forward passes' context: autocast at :attr:`amp_dtype`, or nothing."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def step(self, step: int, *batch) -> dict[str, float]:
        """One D step and one G step on ``batch``; the loss row's values (plain floats)."""
        raise NotImplementedError

    def train_step(self, step: int, *batch) -> dict[str, float]:
        """:meth:`step` on the kernels its precision needs (:func:`precision_kernels`)."""
        with precision_kernels(self.amp_dtype, self.device):
            return self.step(step, *batch)

    @property
    def precision(self) -> str:
        """The precision the steps compute in (:func:`precision_name`)."""
        return precision_name(self.amp_dtype, self.scaler.is_enabled())

    def nonfinite_parameters(self) -> list[str]:
        """The names (``G.…``, ``D.…``) of the networks' parameters that hold a non-finite value."""
        return [
            f"{tag}.{name}"
            for tag, network in (("G", self.generator), ("D", self.discriminator))
            for name, parameter in network.named_parameters()
            if not bool(torch.isfinite(parameter).all())
        ]

    def end_step(self) -> None:
        """After G's update: the scaler's update and both schedulers' step."""
        self.scaler.update()
        self.sched_g.step()
        self.sched_d.step()

    def state(self, step: int, rows: list[dict], digest: str) -> dict:
        """The checkpoint: networks, optimizers, schedulers, scaler, the random
        generators' state, the next step, the loss rows so far and the settings digest."""
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
            "rng": capture_rng_state(),
        }

    def load(self, state: dict) -> None:
        """Restore :meth:`state`'s checkpoint (the step and rows are the caller's)."""
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])


#: Consecutive steps with a non-finite loss that fp16's gradient scaler may
#: skip (halving its scale each time, as PyTorch's scaler does) before the
#: training stops: from the scaler's initial 2**16, ten halvings still leave
#: a scale of 64, so a loss non-finite for longer is not an overflow that a
#: smaller scale cures. Without the scaler (fp32, bf16) the first one stops it.
SCALER_SKIP_LIMIT = 10


class NonFiniteTraining(RuntimeError):
    """A training's loss (or weights) turned non-finite: it stops, keeping its last good checkpoint."""


def _nonfinite_terms(row: Mapping[str, float]) -> list[str]:
    return [f"{key} {value}" for key, value in row.items() if key not in ("step", "epoch") and not math.isfinite(value)]


def run_training(
    trainer: GANTrainer,
    sample: Callable[[int], tuple],
    total_steps: int,
    steps_per_epoch: int,
    checkpoint_every: int,
    work_dir: str | os.PathLike,
    digest: str,
    name: str,
    log_columns: Sequence[str],
) -> list[dict]:
    """The training loop: ``trainer.train_step(step, *sample(step))`` for every step.

    Each row is ``{"step", "epoch", **trainer.train_step(...)}``. A checkpoint
    (:meth:`GANTrainer.state`) goes to ``work_dir/checkpoint.pt`` every
    ``checkpoint_every`` steps and after the last; a checkpoint already there
    is resumed from when its ``digest`` is ``digest`` (else the training
    starts over), so a killed job loses at most ``checkpoint_every`` steps.
    ``sample(step)`` must depend on the step only (a resumed run then sees the
    crops of an uninterrupted one). ``name`` and ``log_columns`` (the row's
    values logged at the end of each epoch) are for the log. Returns the rows.

    A non-finite loss raises :class:`NonFiniteTraining` naming the step, the
    terms and the precision, before anything of that step is saved, so the
    checkpoint on disk is the last good one; with fp16's gradient scaler a
    step whose loss is non-finite is skipped by the scaler, and only
    :data:`SCALER_SKIP_LIMIT` of them in a row stop the training. Weights
    made non-finite by a non-finite gradient under a finite loss stop it too,
    before the checkpoint would keep them.
    """
    checkpoint = Path(work_dir) / CHECKPOINT
    start, rows = 0, []
    if checkpoint.exists():
        # On the CPU: the RNG states must stay CPU tensors; the networks and
        # optimizers copy theirs to the trainer's device.
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state["digest"] == digest:
            trainer.load(state)
            start, rows = int(state["step"]), list(state["rows"])
            log.info("%s: resuming from step %d of %d (%s)", name, start, total_steps, checkpoint)
        else:
            log.info("%s: %s was made with other settings; starting over", name, checkpoint)
    saved, nonfinite_streak = (start if start else None), 0
    for step in range(start, total_steps):
        row = {"step": step, "epoch": step // steps_per_epoch, **trainer.train_step(step, *sample(step))}
        bad = _nonfinite_terms(row)
        nonfinite_streak = nonfinite_streak + 1 if bad else 0
        if bad and (not trainer.scaler.is_enabled() or nonfinite_streak > SCALER_SKIP_LIMIT):
            streak = f" for {nonfinite_streak} steps in a row" if nonfinite_streak > 1 else ""
            _stop(name, f"loss non-finite at step {step}{streak} ({', '.join(bad)})", trainer.precision, checkpoint, saved)
        rows.append(row)
        if step % steps_per_epoch == steps_per_epoch - 1:
            log.info("%s epoch %d: %s", name, row["epoch"], ", ".join(f"{k} {row[k]:.4f}" for k in log_columns))
        if (step + 1) % checkpoint_every == 0 or step + 1 == total_steps:
            broken = trainer.nonfinite_parameters()
            if broken:
                what = f"weights non-finite after step {step} ({', '.join(broken[:4])}{', ...' if len(broken) > 4 else ''})"
                _stop(name, what, trainer.precision, checkpoint, saved)
            save_torch(trainer.state(step + 1, rows, digest), checkpoint)
            saved = step + 1
    return rows


def _stop(name: str, what: str, precision: str, checkpoint: Path, saved: int | None) -> None:
    kept = f"{checkpoint} (step {saved}) is the last good checkpoint" if saved else "no checkpoint was written"
    raise NonFiniteTraining(f"{name}: {what} under {precision}; training stopped, {kept}")


def plot_losses(rows: pd.DataFrame, columns: Sequence[str], title: str, out_png: str | os.PathLike) -> None:
    """The loss curves of a training, one panel per column of ``rows``, against the step.

    Each step's value (thin), and the mean over the last epoch's worth of
    steps (thick): a GAN's per-step losses swing with each crop, and only the
    running mean shows whether a term still falls or has levelled off.
    """
    columns = list(columns)
    ncols = math.ceil(math.sqrt(len(columns)))
    nrows = math.ceil(len(columns) / ncols)
    figure = Figure(figsize=(4 * ncols, 2.75 * nrows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(nrows, ncols)).ravel()
    window = int(rows.groupby("epoch").size().max()) if len(rows) else 1
    for ax, column in zip(axes, columns):
        ax.plot(rows["step"], rows[column], lw=0.6, alpha=0.6, label="step")
        ax.plot(rows["step"], rows[column].rolling(window, min_periods=1).mean(), lw=1.8, label=f"mean of last {window} steps")
        ax.set_title(column)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    figure.suptitle(title)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def write_training_outputs(
    rows: Sequence[dict],
    columns: Sequence[str],
    plot_columns: Sequence[str],
    record: Mapping,
    out_generator: str | os.PathLike,
    out_losses: str | os.PathLike,
    out_curves: str | os.PathLike,
    title: str,
) -> pd.DataFrame:
    """A finished training's outputs: ``record`` (G's state dict and what
    rebuilds it) as a torch file, the loss rows (``columns``: ``step``,
    ``epoch``, then the losses) as CSV and the curves of ``plot_columns`` as
    PNG (:func:`plot_losses`, titled ``title``). Returns the loss table."""
    frame = pd.DataFrame(list(rows), columns=list(columns))
    save_torch(dict(record), out_generator)
    save_csv(frame, out_losses)
    plot_losses(frame, plot_columns, title, out_curves)
    return frame


# --- Generation ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedGenerator:
    """A training's generator file read back: G (eval mode, on its device), the
    settings it was trained with, its modalities, the file's SHA-256 and, for a
    modality translator, the reference quantiles of its fills (channel -> quantiles)."""

    network: torch.nn.Module
    settings: GANSettings
    modalities: list[str]
    sha256: str
    fill_quantiles: dict = field(default_factory=dict)


def load_generator(
    path: str | os.PathLike,
    device: torch.device,
    settings_type: type[GANSettings],
    make_generator: Callable[[GANSettings, int], torch.nn.Module],
) -> TrainedGenerator:
    """G from a training rule's generator file: ``make_generator`` rebuilds it
    from the settings the file stores (under ``settings_type.SECTION``, read by
    ``settings_type.from_record``) and its number of modalities, then its weights are loaded."""
    data = Path(path).read_bytes()  # read once: loaded and hashed
    record = torch.load(io.BytesIO(data), map_location=device, weights_only=False)
    settings = settings_type.from_record(record[settings_type.SECTION])
    generator = make_generator(settings, int(record["n_modalities"]))
    generator.load_state_dict(record["generator"])
    sha256 = hashlib.sha256(data).hexdigest()
    network = cpu_layout(generator.to(device), device).eval()
    fill_quantiles = dict(record.get("fill_quantiles", {}))
    return TrainedGenerator(network, settings, list(record["modalities"]), sha256, fill_quantiles)


#: What a GAN makes of one layout case: ``(generator, layout_id, layout, device)`` ->
#: the image [C, X, Y, Z] and the GAN's own manifest columns of the case.
Synthesize = Callable[[torch.nn.Module, str, Case, torch.device], tuple[np.ndarray, dict]]


def generate_cases(
    layout_manifest: str | os.PathLike,
    layout_cases_dir: str | os.PathLike,
    generator_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    n_cases: int,
    modalities: Sequence[str],
    seed: int,
    threads: int,
    device: str | None,
    *,
    source: str,
    columns: Sequence[str],
    settings: GANSettings,
    make_generator: Callable[[GANSettings, int], torch.nn.Module],
    synthesize: Synthesize,
    layout_images: bool,
) -> pd.DataFrame:
    """A GAN's generation (its generating rule's arguments, then what is the
    GAN's own): case ``{source}_{i:04d}`` is G's image of the ``i``-th layout case.

    The layouts are the first ``n_cases`` rows of ``layout_manifest`` (case
    folders in ``layout_cases_dir``, read with their images when
    ``layout_images``); each keeps its labels, brain mask, affine and header.
    G comes from ``generator_path`` (:func:`load_generator`); it must have
    been trained for ``modalities`` and take ``settings.window``. The image
    is ``synthesize``'s; the manifest holds ``case_id``, ``seed`` (the study
    seed, recorded: G draws nothing), ``generator_sha256``, ``window``,
    ``overlap`` and the GAN's own columns, in ``columns`` order. ``out_dir``
    is built whole and renamed into place, the manifest written after it.
    ``threads``: torch's CPU threads; ``device`` None or ``auto``: the GPU
    when there is one (``tumorfab.device.resolve_device``). Returns the manifest.
    """
    torch.set_num_threads(threads)
    device = resolve_device(device)
    layout_ids = first_cases(layout_manifest, n_cases)
    trained = load_generator(generator_path, device, type(settings), make_generator)
    if trained.modalities != list(modalities):
        raise ValueError(f"{generator_path}: G was trained for modalities {trained.modalities}, not {list(modalities)}")
    trained.network.check_spatial_shape((settings.window,) * 3)
    rows = []
    with atomic_directory(out_dir) as tmp:
        for index, layout_id in enumerate(layout_ids):
            layout = load_case(Path(layout_cases_dir) / layout_id, modalities if layout_images else [])
            image, own = synthesize(trained.network, layout_id, layout, device)
            case_id = synthetic_case_id(source, index)
            images = {m: image[c] for c, m in enumerate(modalities)}
            save_case(Case(images, layout.brainmask, layout.seg, layout.affine, layout.header), tmp / case_id)
            log.info("%s <- %s: %s", case_id, layout_id, own)
            rows.append(
                {
                    "case_id": case_id,
                    "seed": seed,
                    "generator_sha256": trained.sha256,
                    "window": settings.window,
                    "overlap": settings.overlap,
                    **own,
                }
            )
    return write_manifest(rows, columns, manifest_path, source)


@torch.no_grad()
def brain_box_inference(
    network: torch.nn.Module,
    inputs: np.ndarray,
    pad_values: Sequence[float],
    brainmask: np.ndarray,
    window: int,
    overlap: float,
    device: torch.device,
    mixed_precision: str,
) -> np.ndarray:
    """A network over a whole volume, over the brain's bounding box only.

    ``inputs`` [C_in, X, Y, Z] is the network's input, already assembled (its
    channels as the network takes them); ``brainmask`` [X, Y, Z]. The box is
    the brain mask's bounding box plus :data:`BRAIN_MARGIN` voxels (outside
    it the image is background, -1, and so is the result: a BraTS volume
    needs 8 windows of 128³ instead of 18); where it is smaller than a window
    it is padded at its far side up to one window, channel ``c`` with
    ``pad_values[c]`` (what the input holds in background, e.g. image -1,
    one-hot background 1). MONAI's ``sliding_window_inference`` runs windows
    of ``window``³ voxels overlapping by ``overlap`` (a fraction), blended
    with Gaussian weights (square seams otherwise), under autocast as
    ``mixed_precision`` says (:func:`autocast_dtype`). Returns the output
    [C_out, X, Y, Z] float32, -1 outside the brain mask.
    """
    if inputs.ndim != 4 or inputs.shape[1:] != brainmask.shape:
        raise ValueError(f"inputs {inputs.shape} must be [C, X, Y, Z] on the brain mask's grid {brainmask.shape}")
    if len(pad_values) != inputs.shape[0]:
        raise ValueError(f"{len(pad_values)} pad values for {inputs.shape[0]} input channels")
    inside = np.argwhere(brainmask > 0)
    if not len(inside):
        raise ValueError("brain_box_inference: the brain mask is empty")
    lo = np.maximum(inside.min(0) - BRAIN_MARGIN, 0)
    hi = np.minimum(inside.max(0) + 1 + BRAIN_MARGIN, brainmask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    x = torch.from_numpy(np.ascontiguousarray(inputs[(slice(None), *box)][None], dtype=np.float32)).to(device)
    shape = tuple(x.shape[2:])
    keep = tuple(slice(0, s) for s in shape)
    padded = tuple(max(s, window) for s in shape)
    if padded != shape:
        values = torch.tensor([float(v) for v in pad_values], dtype=torch.float32, device=device)
        canvas = values.view(1, -1, 1, 1, 1).expand(1, len(pad_values), *padded).clone()
        canvas[(slice(None), slice(None), *keep)] = x
        x = canvas
    dtype = autocast_dtype(mixed_precision, device)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None), precision_kernels(dtype, device):
        output = sliding_window(network, x, window, overlap)
    output = output.float()[0][(slice(None), *keep)].cpu().numpy()
    result = np.full((output.shape[0], *brainmask.shape), -1.0, dtype=np.float32)
    result[(slice(None), *box)] = output
    return np.where(brainmask[None] > 0, result, -1.0).astype(np.float32)


def sliding_window(network: torch.nn.Module, x: torch.Tensor, window: int, overlap: float) -> torch.Tensor:
    """MONAI's sliding-window inferer: windows of ``window``³, Gaussian blending;
    :data:`CPU_WINDOWS_PER_BATCH` per pass on the CPU, one elsewhere (as :func:`cpu_layout`)."""
    windows_per_batch = CPU_WINDOWS_PER_BATCH if x.device.type == "cpu" else 1
    return sliding_window_inference(
        x, roi_size=(window,) * 3, sw_batch_size=windows_per_batch, predictor=network, overlap=overlap, mode="gaussian"
    )
