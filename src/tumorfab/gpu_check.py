"""``make gpu-check``: one command that runs every GPU code path of the study.

On a machine with a CUDA GPU each item runs at the paper's size
(``config/config.yaml``) for a few steps; without one, the same items run at
a SMALL size on the CPU (the BraTS case at 3 mm, narrow networks, 1-2 steps),
so that CI keeps the check itself working. The items, in order:

* ``nnunet-train``: nnU-Net planned on the real BraTS case (the paper's plan
  on a GPU; a tiny network on the CPU), the case preprocessed, then a few
  iterations of ``nnUNetTrainerTumorfab`` through
  ``tumorfab.segmentation.train.train`` (exported as a model folder);
* ``nnunet-predict``: that model predicts the case
  (``tumorfab.segmentation.predict.predict``, the paper's tile step and
  mirroring);
* ``feature-extractor``: F, the model's first ``tfgan.n_stages`` encoder
  stages (``load_feature_extractor``), over the whole case;
* ``tfgan-{fp32,bf16,fp16}`` and ``pix2pix-{fp32,bf16,fp16}``: training steps
  of each GAN's ``Trainer`` on crops of the case (``sample_batch``; the real
  case also stands in for TF-GAN's coarse pair), in full precision, under
  bf16 autocast, and under fp16 autocast with the gradient scaler;
* ``tfgan-refine``: G at the paper's widths (untrained: its correction is
  zero, so the refined image must equal the input) over the whole case
  (``refine.refine_volume``, the paper's window, overlap and mixed precision);
* ``synthstrip``: SynthStrip's forward pass on a real head with skull
  (``load_synthstrip``; random weights when none are given);
* ``checkpoint-resume``: TF-GAN steps (on a GPU fp16 with the scaler) through
  ``gan.run_training``, its checkpoint loaded into a new trainer and compared
  with the saved state, then the training resumed for more steps.

The items call the package's own functions; nothing here computes what they
compute. Each prints one table row: item, device, precision, size, steps,
seconds, peak memory (``torch.cuda.max_memory_allocated`` on a GPU, reset per
item; on the CPU the process's peak RSS so far, children included), status.
An exception or a non-finite loss or output fails the item (``FAILED: why``)
and the command (exit status 1). An item's output (nnU-Net's log lines) goes
to ``logs/<item>.log`` in the work folder; a traceback also to stderr.

``--deterministic`` sets ``TUMORFAB_DETERMINISTIC=1``
(``tumorfab.device.use_deterministic_algorithms``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from tumorfab.casefolder import Case, load_case, save_case
from tumorfab.config import study_config
from tumorfab.device import DETERMINISTIC_ENV, deterministic_requested, resolve_device
from tumorfab.log import log_to
from tumorfab.study.settings import StageSettings

REPO = Path(__file__).resolve().parents[2]
#: The real scans beside the repository (as the tests read them).
REAL_DATA = REPO.parent / "shared" / "data" / "real"
BRATS_CASE = REAL_DATA / "brats" / "BraTS-GLI-00000-000"
HEALTHY_HEAD = REAL_DATA / "healthy" / "chris_t1.nii.gz"
#: The paper's one sequence.
MODALITIES = ["t1n"]
SEED = 0
#: The nnU-Net experiment the check trains (the study's real-only one).
EXPERIMENT = "baseline"
#: The autocast dtype of each precision a GAN item runs at (None: full precision).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COLUMNS = ["item", "device", "precision", "size", "steps", "seconds", "peak memory", "status"]


@dataclass(frozen=True)
class Scale:
    """How large the check runs: the paper's sizes on a GPU, tiny ones on the CPU.

    None keeps the paper's setting (``config/config.yaml``)."""

    name: str
    #: Voxel size the BraTS case is resampled to, mm (None: as distributed, 1 mm).
    voxel_mm: float | None
    #: GAN widths and crop (also TF-GAN's refinement window).
    generator_widths: tuple[int, ...] | None
    discriminator_width: int | None
    crop: int | None
    gan_steps: int
    #: Overrides of ``segmentation.plan`` (None: nnU-Net's own plan, the paper's).
    nnunet_plan: dict | None
    nnunet_iterations: int
    #: Test-time mirroring of the prediction (None: the paper's, on; eight passes per tile).
    nnunet_mirroring: bool | None
    #: Side of SynthStrip's input: 256 is the grid its CLI conforms a 1 mm head to.
    synthstrip_side: int
    #: TF-GAN steps before the checkpoint, and after the resume, and their precision
    #: (fp16 puts the gradient scaler's state into the checkpoint; on the CPU it is slow).
    resume_steps: tuple[int, int]
    resume_precision: str


PAPER = Scale(
    "paper",
    voxel_mm=None,
    generator_widths=None,
    discriminator_width=None,
    crop=None,
    gan_steps=3,
    nnunet_plan=None,
    nnunet_iterations=5,
    nnunet_mirroring=None,
    synthstrip_side=256,
    resume_steps=(2, 2),
    resume_precision="fp16",
)
SMALL = Scale(
    "small",
    voxel_mm=3.0,
    generator_widths=(4, 8, 16, 16, 32, 32),
    discriminator_width=4,
    crop=64,
    gan_steps=1,
    nnunet_plan={"patch_size": (32, 32, 32), "base_features": 4, "max_features": 32, "batch_size": 2},
    nnunet_iterations=2,
    nnunet_mirroring=False,
    synthstrip_side=64,
    resume_steps=(1, 1),
    resume_precision="fp32",
)


class NonFinite(ValueError):
    """A loss or an output holds NaN or infinity."""


def require_finite(what: str, values) -> None:
    """Raise :class:`NonFinite` naming ``what`` unless every value of ``values``
    (a number, an array, a tensor, or a mapping or sequence of them) is finite."""
    if isinstance(values, dict):
        for key, value in values.items():
            require_finite(f"{what} {key}", value)
    elif isinstance(values, (list, tuple)):
        for index, value in enumerate(values):
            require_finite(f"{what} [{index}]", value)
    else:
        array = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
        if not np.isfinite(array).all():
            raise NonFinite(f"non-finite {what}: {int((~np.isfinite(array)).sum())} of {array.size} values")


def state_differences(saved, restored, path: str = "") -> list[str]:
    """The paths where ``restored`` differs from ``saved`` (a checkpoint: nested
    mappings and sequences of tensors, arrays and plain values); tensors must be
    equal bit for bit, wherever they live."""
    if isinstance(saved, dict):
        if not isinstance(restored, dict) or set(saved) != set(restored):
            return [f"{path or '/'} (keys)"]
        return [d for key in saved for d in state_differences(saved[key], restored[key], f"{path}/{key}")]
    if isinstance(saved, (list, tuple)):
        if not isinstance(restored, (list, tuple)) or len(saved) != len(restored):
            return [f"{path} (length)"]
        return [d for i, (a, b) in enumerate(zip(saved, restored)) for d in state_differences(a, b, f"{path}/{i}")]
    if isinstance(saved, torch.Tensor):
        same = (
            isinstance(restored, torch.Tensor)
            and saved.dtype == restored.dtype
            and torch.equal(saved.cpu(), restored.detach().cpu())
        )
        return [] if same else [path]
    if isinstance(saved, np.ndarray):
        return [] if np.array_equal(saved, restored) else [path]
    return [] if saved == restored else [path]


def set_precision(trainer, precision: str) -> None:
    """Run a GAN trainer's steps at ``precision`` (:data:`PRECISIONS`): the autocast
    dtype and the gradient scaler ``GANTrainer`` sets up for it (the scaler for fp16
    only). ``mixed_precision`` picks fp16 only on a GPU without bf16; the check runs
    all three wherever it runs."""
    trainer.amp_dtype = PRECISIONS[precision]
    trainer.scaler = torch.amp.GradScaler(trainer.device.type, enabled=trainer.amp_dtype == torch.float16)


def resampled_case(case: Case, voxel_mm: float) -> Case:
    """``case`` on a grid of ``voxel_mm`` voxels (the SMALL check's tiny volume):
    images linear, brain mask and labels nearest; -1 outside the brain."""
    from scipy import ndimage

    factors = [zoom / voxel_mm for zoom in case.zooms]
    brainmask = ndimage.zoom(case.brainmask, factors, order=0)
    images = {
        m: np.where(brainmask > 0, ndimage.zoom(image, factors, order=1), -1.0).astype(np.float32)
        for m, image in case.images.items()
    }
    affine = np.array(case.affine, dtype=float)
    affine[:3, :3] = affine[:3, :3] / np.asarray(factors)  # column j is axis j's step
    return Case(images, brainmask, ndimage.zoom(case.seg, factors, order=0), affine)


def synthstrip_input(head_path: Path, side: int) -> np.ndarray:
    """A head with skull resampled to ``side``³ voxels and scaled to [0, 1] by its
    99th percentile, as SynthStrip's CLI scales its conformed input."""
    from scipy import ndimage

    from tumorfab.io import load_nifti

    head = load_nifti(head_path).get_fdata(dtype=np.float32)
    head = ndimage.zoom(head, [side / s for s in head.shape], order=1)
    head -= head.min()
    return np.clip(head / np.percentile(head, 99), 0, 1).astype(np.float32)


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


@dataclass
class Outcome:
    """What an item reports besides its time and memory."""

    precision: str
    size: str
    steps: int | str
    note: str = ""


@dataclass
class Row:
    item: str
    device: str
    precision: str
    size: str
    steps: int | str
    seconds: float | None
    peak_memory: str
    status: str

    @property
    def passed(self) -> bool:
        return self.status.startswith("passed")

    def cells(self) -> list[str]:
        seconds = "" if self.seconds is None else f"{self.seconds:.1f}"
        values = [self.item, self.device, self.precision, self.size, str(self.steps), seconds, self.peak_memory, self.status]
        return [str(v).replace("|", "/").replace("\n", " ") for v in values]


def markdown_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


class GPUCheck:
    """The items (:data:`ITEMS`) on one device at one :class:`Scale`, sharing one
    work folder: the case folder :meth:`prepare` writes, the nnU-Net model
    ``nnunet-train`` exports, F loaded from it."""

    def __init__(
        self,
        device: torch.device,
        scale: Scale,
        work: Path,
        brats_case: Path,
        healthy_head: Path,
        synthstrip_weights: Path | None,
        threads: int,
    ):
        self.device, self.scale, self.work = device, scale, work
        self.brats_case, self.healthy_head, self.synthstrip_weights = brats_case, healthy_head, synthstrip_weights
        self.threads = threads
        self.settings = StageSettings.from_config(study_config(REPO))
        self.case_id = brats_case.name
        self.case_dir: Path | None = None
        self.raw: Path | None = None
        self.model_dir: Path | None = None
        self._extractor = None

    # --- Inputs ----------------------------------------------------------------------

    def prepare(self) -> str:
        """The BraTS case as a case folder (``normalize_real_case``, as the
        ``preprocess_real`` rule writes it), resampled to the scale's voxel size."""
        from tumorfab.preprocess.normalize import normalize_real_case

        normalized = self.work / "cases" / "normalized" / self.case_id
        normalize_real_case(
            {m: self.brats_case / f"{self.case_id}-{m}.nii.gz" for m in MODALITIES},
            self.brats_case / f"{self.case_id}-seg.nii.gz",
            normalized,
            self.settings.normalize,
            remap_label_4_to_3=False,
        )
        case_dir = normalized
        if self.scale.voxel_mm is not None:
            case_dir = self.work / "cases" / "resampled" / self.case_id
            save_case(resampled_case(load_case(normalized, MODALITIES), self.scale.voxel_mm), case_dir)
        case = load_case(case_dir, MODALITIES)
        self.case_dir = case_dir
        mm = "x".join(f"{z:g}" for z in case.zooms)
        return f"{self.case_id} ({', '.join(MODALITIES)}) at {mm} mm: {shape_text(case.seg.shape)} voxels"

    def case(self) -> Case:
        return load_case(self.case_dir, MODALITIES)

    def gan_settings(self, name: str):
        """The paper's settings of GAN ``name`` (``tfgan``, ``pix2pix``) at the scale's widths and crop."""
        settings = getattr(self.settings, name)
        scale = self.scale
        return replace(
            settings,
            generator_widths=scale.generator_widths or settings.generator_widths,
            discriminator_width=scale.discriminator_width or settings.discriminator_width,
            crop=scale.crop or settings.crop,
            window=scale.crop or settings.window,
        )

    def extractor(self):
        """F from the model ``nnunet-train`` exported (loaded once)."""
        from tumorfab.segmentation.features import load_feature_extractor

        if self._extractor is None:
            if self.model_dir is None:
                raise RuntimeError("F is the model nnunet-train makes, and nnunet-train did not finish")
            self._extractor = load_feature_extractor(self.model_dir, self.settings.tfgan.n_stages, self.device)
        return self._extractor

    # --- nnU-Net ---------------------------------------------------------------------

    def nnunet_train(self) -> Outcome:
        """Plan (the paper's plan, or the scale's overrides), preprocess, train a few iterations."""
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        from tumorfab.segmentation import dataset, preprocessed
        from tumorfab.segmentation.plans import plan_experiment
        from tumorfab.segmentation.train import FOLD, train

        root = self.work / "nnunet"
        case_root = self.case_dir.parent
        dataset.convert_real_case(self.case_dir, root / "images" / self.case_id, MODALITIES)
        self.raw = dataset.build_raw_dataset(
            root / "raw", EXPERIMENT, MODALITIES, [self.case_id], [], root / "images", case_root
        )
        plan = replace(self.settings.segmentation.plan, **(self.scale.nnunet_plan or {}))
        plans = plan_experiment(self.raw, root / "plans.json", root / "fingerprint.json", plan, num_processes=1)
        configuration = plan.configuration
        preprocessed.preprocess_real(
            root / "plans.json", MODALITIES, [self.case_id], root / "images", case_root, root / "preprocessed",
            configuration,
        )
        preprocessed.build_preprocessed_dataset(
            root / "nnpre", EXPERIMENT, plans_file=root / "plans.json", fingerprint_file=root / "fingerprint.json",
            modalities=MODALITIES, train_cases=[self.case_id], real_preprocessed=root / "preprocessed",
            configuration=configuration,
        )
        settings = replace(
            self.settings.segmentation.train,
            epochs=1,
            iterations_per_epoch=self.scale.nnunet_iterations,
            val_iterations_per_epoch=1,
            checkpoint_every=1,
            device=self.device.type,
        )
        model_dir = train(
            root / "nnpre", EXPERIMENT, root / "work", root / "model", SEED, configuration, settings, self.threads
        )
        checkpoint = torch.load(model_dir / f"fold_{FOLD}" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        require_finite("train loss", checkpoint["logging"]["train_losses"])
        require_finite("validation loss", checkpoint["logging"]["val_losses"])
        self.model_dir = model_dir
        config = PlansManager(plans).get_configuration(configuration)
        features = config.network_arch_init_kwargs["features_per_stage"]
        size = (
            f"{configuration}: patch {shape_text(config.patch_size)}, batch {config.batch_size}, "
            f"features {features[0]}-{features[-1]}"
        )
        if self.device.type == "cuda":
            precision = "fp16 autocast + scaler (nnU-Net)"
        else:
            precision = "fp32 (nnU-Net: no autocast on CPU)"
        loss = checkpoint["logging"]["train_losses"][-1]
        return Outcome(precision, size, settings.iterations_per_epoch, f"train loss {loss:.3f}")

    def nnunet_predict(self) -> Outcome:
        """The model of ``nnunet-train`` predicts the case (the paper's predict settings)."""
        from tumorfab.io import load_nifti
        from tumorfab.labels import LABELS
        from tumorfab.segmentation.predict import predict

        settings = replace(self.settings.segmentation.predict, device=self.device.type)
        if self.scale.nnunet_mirroring is not None:
            settings = replace(settings, use_mirroring=self.scale.nnunet_mirroring)
        (output,) = predict(
            self.model_dir, self.raw / "imagesTr", self.work / "nnunet" / "predicted", MODALITIES, [self.case_id],
            settings, self.threads,
        )
        labels = np.asarray(load_nifti(output).dataobj)
        shape = self.case().seg.shape
        if labels.shape != shape or not set(np.unique(labels).tolist()) <= set(LABELS):
            raise ValueError(f"prediction {labels.shape} with labels {np.unique(labels).tolist()}, not {shape} in {LABELS}")
        mirroring = "mirroring" if settings.use_mirroring else "no mirroring"
        precision = "fp16 autocast (nnU-Net)" if self.device.type == "cuda" else "fp32"
        return Outcome(precision, f"{shape_text(shape)}, tile step {settings.tile_step_size}, {mirroring}", 1)

    # --- F and the GANs --------------------------------------------------------------

    def feature_extractor(self) -> Outcome:
        """F over the whole case, as TF-Aug's fit and the realism table run it."""
        case = self.case()
        image = torch.from_numpy(case.stacked(MODALITIES)[None]).to(self.device)
        brain = torch.from_numpy(case.brainmask[None, None]).to(self.device)
        extractor = self.extractor()
        with torch.no_grad():
            features = extractor(image, brain)
        require_finite("F's features", features)
        channels = "-".join(str(c) for c in extractor.output_channels)
        return Outcome("fp32", f"{shape_text(case.seg.shape)}, {len(features)} stages ({channels} channels)", 1)

    def _trainer(self, name: str, total_steps: int):
        """GAN ``name``'s ``Trainer`` at the scale (full precision until :func:`set_precision`)
        and its step's batch as a function of the step (``sample_batch``)."""
        from tumorfab.synthesis import gan
        from tumorfab.synthesis.pix2pix import train as pix2pix_train
        from tumorfab.synthesis.tfgan import train as tfgan_train

        settings = replace(self.gan_settings(name), mixed_precision="off")
        volumes = gan.load_volumes([self.case_dir], MODALITIES, who="gpu check")
        batch, crop = settings.batch_size, settings.crop
        if name == "tfgan":
            trainer = tfgan_train.Trainer(settings, len(MODALITIES), self.extractor(), total_steps, SEED, self.device)

            def sample(step: int) -> tuple:
                # the real case stands in for a TF-Aug coarse pair: the step computes the same
                return tfgan_train.sample_batch(volumes, volumes, batch, crop, SEED, step, self.device)

        else:
            trainer = pix2pix_train.Trainer(settings, len(MODALITIES), total_steps, SEED, self.device)

            def sample(step: int) -> tuple:
                return (pix2pix_train.sample_batch(volumes, batch, crop, SEED, step, self.device),)

        return settings, trainer, sample

    def gan_steps(self, name: str, precision: str) -> Outcome:
        """A few training steps of GAN ``name`` at ``precision``."""
        steps = self.scale.gan_steps
        settings, trainer, sample = self._trainer(name, steps)
        set_precision(trainer, precision)
        for step in range(steps):
            row = trainer.train_step(step, *sample(step))
            require_finite(f"loss at step {step}:", row)
        widths = settings.generator_widths
        size = (
            f"{settings.crop}³ crop, batch {settings.batch_size}, G {widths[0]}-{widths[-1]}, "
            f"D {settings.discriminator_width}"
        )
        scaler = " + scaler" if trainer.scaler.is_enabled() else ""
        return Outcome(f"{precision}{scaler}", size, steps)

    def tfgan_refine(self) -> Outcome:
        """An untrained G at the scale's widths refines the whole case, as ``generate_tf`` does."""
        from tumorfab.synthesis import gan
        from tumorfab.synthesis.tfgan.networks import build_networks
        from tumorfab.synthesis.tfgan.refine import refine_volume

        settings = self.gan_settings("tfgan")
        generator, _ = build_networks(settings, len(MODALITIES), SEED)
        generator = gan.cpu_layout(generator.to(self.device), self.device).eval()
        case = self.case()
        image = case.stacked(MODALITIES)
        refined = refine_volume(
            generator, image, case.seg, case.brainmask, settings.window, settings.overlap, self.device,
            settings.mixed_precision,
        )
        require_finite("refined image", refined)
        brain = case.brainmask > 0
        change = float(np.abs(refined - image)[:, brain].max())
        dtype = gan.autocast_dtype(settings.mixed_precision, self.device)
        precision = "fp32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
        widths = settings.generator_widths
        size = (
            f"{shape_text(case.seg.shape)}, window {settings.window}³, overlap {settings.overlap}, "
            f"G {widths[0]}-{widths[-1]}"
        )
        return Outcome(precision, size, 1, f"untrained G: largest change in the brain {change:.2g}")

    def synthstrip(self) -> Outcome:
        """SynthStrip's forward pass on a real head (random weights when none are given)."""
        from nipreps.synthstrip.model import StripModel

        from tumorfab.preprocess.skullstrip import load_synthstrip
        from tumorfab.synthesis.gan import save_torch

        weights, note = self.synthstrip_weights, ""
        if weights is None:
            weights = self.work / "synthstrip_random.pt"
            torch.manual_seed(SEED)
            save_torch({"model_state_dict": StripModel().state_dict()}, weights)
            note = "random weights (no --synthstrip-weights): the architecture only"
        model = load_synthstrip(weights, self.device)
        side = self.scale.synthstrip_side
        head = torch.from_numpy(synthstrip_input(self.healthy_head, side)[None, None]).to(self.device)
        with torch.no_grad():
            distance = model(head)
        require_finite("signed distance", distance)
        return Outcome("fp32", f"{side}³ ({self.healthy_head.name})", 1, note)

    def checkpoint_resume(self) -> Outcome:
        """TF-GAN steps through ``gan.run_training`` (at the scale's precision), its checkpoint
        loaded into a new trainer and compared with the saved state, then resumed."""
        from tumorfab.synthesis import gan
        from tumorfab.synthesis.tfgan import train as tfgan_train

        before, after = self.scale.resume_steps
        total = before + after
        work = self.work / "resume"

        def trainer_and_sample():
            settings, trainer, sample = self._trainer("tfgan", total)
            set_precision(trainer, self.scale.resume_precision)
            return settings, trainer, sample

        settings, trainer, sample = trainer_and_sample()
        digest = tfgan_train.settings_digest(settings, SEED, MODALITIES, [self.case_id], [str(self.case_dir)])
        gan.run_training(trainer, sample, before, before, before, work, digest, "TF-GAN", [])
        saved = torch.load(work / gan.CHECKPOINT, map_location="cpu", weights_only=False)
        _, resumed, sample = trainer_and_sample()
        resumed.load(saved)
        differences = state_differences(saved, resumed.state(saved["step"], saved["rows"], saved["digest"]))
        if differences:
            raise RuntimeError(f"the resumed state differs from the saved one at {', '.join(differences[:5])}")
        rows = gan.run_training(resumed, sample, total, total, total, work, digest, "TF-GAN", [])
        if len(rows) != total:
            raise RuntimeError(f"{len(rows)} loss rows after resuming, not {total}")
        for row in rows[before:]:
            require_finite(f"loss at step {row['step']}:", row)
        size = f"{settings.crop}³ crop, batch {settings.batch_size}"
        scaler = " + scaler" if resumed.scaler.is_enabled() else ""
        precision = f"{self.scale.resume_precision}{scaler}"
        return Outcome(precision, size, f"{before} + {after}", "resumed state = saved state")


#: The items in the order they run: name -> (method, the items it needs run first).
ITEMS: dict[str, tuple[Callable[[GPUCheck], Outcome], tuple[str, ...]]] = {
    "nnunet-train": (GPUCheck.nnunet_train, ()),
    "nnunet-predict": (GPUCheck.nnunet_predict, ("nnunet-train",)),
    "feature-extractor": (GPUCheck.feature_extractor, ("nnunet-train",)),
    **{
        f"{name}-{precision}": (
            partial(GPUCheck.gan_steps, name=name, precision=precision),
            ("nnunet-train",) if name == "tfgan" else (),
        )
        for name in ("tfgan", "pix2pix")
        for precision in PRECISIONS
    },
    "tfgan-refine": (GPUCheck.tfgan_refine, ()),
    "synthstrip": (GPUCheck.synthstrip, ()),
    "checkpoint-resume": (GPUCheck.checkpoint_resume, ("nnunet-train",)),
}


def selected_items(only: Sequence[str] | None) -> list[str]:
    """:data:`ITEMS` to run, in order: ``only`` and the items they need (None: all)."""
    if not only:
        return list(ITEMS)
    unknown = sorted(set(only) - set(ITEMS))
    if unknown:
        raise SystemExit(f"unknown items {unknown}; the items are {list(ITEMS)}")
    wanted = set(only) | {need for name in only for need in ITEMS[name][1]}
    return [name for name in ITEMS if name in wanted]


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return f"{kib / 2**20:.2f} GiB RSS"


def failure(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    reason = message if isinstance(error, NonFinite) else f"{type(error).__name__}: {message}"
    return f"FAILED: {reason[:300]}"


def run_item(check: GPUCheck, name: str, failed: set[str]) -> Row:
    """One item, timed, its peak memory measured; an exception fails it, as does a
    failed item it needs."""
    method, needs = ITEMS[name]
    device = str(check.device)
    blocked = [need for need in needs if need in failed]
    if blocked:
        return Row(name, device, "", "", "", None, "", f"FAILED: needs {', '.join(blocked)}, which failed")
    if check.device.type == "cuda":
        torch.cuda.synchronize(check.device)
        torch.cuda.reset_peak_memory_stats(check.device)
    start = time.perf_counter()
    try:
        with log_to(str(check.work / "logs" / f"{name}.log")):
            outcome = method(check)
        if check.device.type == "cuda":
            torch.cuda.synchronize(check.device)
    except Exception as error:  # any failure is the item's result, not the command's end
        return Row(name, device, "", "", "", time.perf_counter() - start, peak_memory(check.device), failure(error))
    seconds = time.perf_counter() - start
    status = "passed" + (f"; {outcome.note}" if outcome.note else "")
    return Row(name, device, outcome.precision, outcome.size, outcome.steps, seconds, peak_memory(check.device), status)


def headline(device: torch.device, forced_cpu: bool) -> str:
    """The first line: whether the GPU paths are checked at all (and whether deterministically)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        line = f"GPU check on {name} (CUDA {torch.version.cuda}, torch {torch.__version__}): every item at the paper's size."
    else:
        why = "--cpu given" if forced_cpu else "no CUDA GPU is visible"
        line = (
            f"NO GPU CHECKED ({why}): the GPU paths are not exercised; the same items run at SMALL size on the CPU "
            "(the BraTS case at 3 mm, narrow networks, 1-2 steps) so that the check itself keeps working."
        )
    if deterministic_requested():
        line += f" Deterministic algorithms ({DETERMINISTIC_ENV})."
    return line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tumorfab.gpu_check", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--markdown", type=Path, help="also write the table as Markdown to this file")
    add("--only", nargs="+", metavar="ITEM", help=f"run these items (and those they need): {', '.join(ITEMS)}")
    add("--cpu", action="store_true", help="run the SMALL check on the CPU even where a GPU is visible")
    add("--deterministic", action="store_true", help=f"set {DETERMINISTIC_ENV}=1 (deterministic algorithms)")
    add("--brats-case", type=Path, default=BRATS_CASE, help="a BraTS 2023 case folder (default: %(default)s)")
    add("--healthy-head", type=Path, default=HEALTHY_HEAD, help="a T1 head with skull (default: %(default)s)")
    add("--synthstrip-weights", type=Path, help="FreeSurfer's synthstrip.1.pt (default: random weights)")
    add("--work-dir", type=Path, help="keep the work folder (cases, nnU-Net files, logs) here (default: temporary)")
    add("--threads", type=int, default=min(8, len(os.sched_getaffinity(0))), help="CPU threads (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; 0 when every item passed, else 1."""
    args = parse_args(argv)
    if args.deterministic:
        os.environ[DETERMINISTIC_ENV] = "1"
    device = resolve_device("cpu" if args.cpu else "auto")
    scale = PAPER if device.type == "cuda" else SMALL
    torch.set_num_threads(args.threads)
    names = selected_items(args.only)
    lines = [headline(device, args.cpu)]
    print(lines[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="tumorfab_gpu_check_") as temporary:
        work = (args.work_dir or Path(temporary)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        check = GPUCheck(device, scale, work, args.brats_case, args.healthy_head, args.synthstrip_weights, args.threads)
        start = time.perf_counter()
        try:
            with log_to(str(work / "logs" / "prepare.log")):
                described = check.prepare()
            prepared = f"Input: {described}, prepared in {time.perf_counter() - start:.1f} s."
        except Exception as error:
            prepared = f"Input: {failure(error)}"
        lines += [prepared, "", markdown_line(COLUMNS), markdown_line(["---"] * len(COLUMNS))]
        print("\n".join(lines[1:]), flush=True)
        rows, failed = [], set()
        for name in names:
            if check.case_dir is None:
                row = Row(name, str(device), "", "", "", None, "", "FAILED: no input case (see the Input line)")
            else:
                row = run_item(check, name, failed)
            rows.append(row)
            if not row.passed:
                failed.add(name)
            line = markdown_line(row.cells())
            lines.append(line)
            print(line, flush=True)
    passed = sum(row.passed for row in rows)
    summary = f"{passed} of {len(rows)} items passed at {scale.name} size on {device}."
    lines += ["", summary]
    print(summary, flush=True)
    if args.markdown:
        from tumorfab.io import save_text

        save_text("\n".join(lines) + "\n", args.markdown)
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
