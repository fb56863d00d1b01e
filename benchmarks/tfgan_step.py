"""Cost of one TF-GAN training step and of a whole-volume refinement.

**Training step** (batch 1, paper widths: G ``[32, 64, 128, 256, 320, 320]``,
D width 32 capped at 256, F a frozen stand-in for the baseline nnU-Net's first
3 encoder stages): G forward; D forward on real and on fake (detached), D's
loss, backward, Adam step; then D forward on fake (D frozen), F forward on
fake (with gradient) and on real (no gradient), G's loss (Eq. 5: adversarial
on both heads, hinge L1 outside the ROI, class-wise perceptual), backward,
Adam step. The losses are ``tumorfab.synthesis.tfgan.losses``' when that
module imports, else stand-ins of the same structure (BCE, L1).

F: ``dynamic_network_architectures``' ``PlainConvEncoder`` as nnU-Net plans
it for BraTS at 128³ (3×3×3 kernels, strides 1, 2, 2, two convs per stage,
instance norm, LeakyReLU), its first three stages (32, 64, 128 features);
without the package, three MONAI conv stages of those widths.

**Memory** of a step, per crop and precision::

    params (G + D trainable, F frozen) + grads (G + D) + Adam (2 × G + D params)
    + saved activations

where *saved activations* are the tensors autograd packs for backward
(``torch.autograd.graph.saved_tensors_hooks``; the sum of the ``nbytes`` of
the unique storages, parameters excluded, autocast's low-precision weight
copies included), at the step's peak: G's (alive until G's backward) plus the
larger of the D phase's (D on real and fake) and the G-loss phase's (D and F
on fake). Everything else (the forward outputs, backward's transient
buffers, the allocator's slack) comes on top, so read it as a close lower
bound of the GPU's peak. The count runs on fake tensors
(``FakeTensorMode``: shapes and dtypes only, no arithmetic, no memory), so it
costs nothing at any crop and precision; the timed runs count the same way on
real tensors (the ``saved act`` of the timing table), which checks it.
Targets: a 128³ step within 16 GiB in fp32, 10 GiB under autocast.

**Time** of one step on this machine's CPU (``torch.set_num_threads``,
default 2), fp32: one warm-up step (only at crops <= ``--warmup-up-to``) and
one timed step; ``max RSS`` is the process's peak resident memory so far (a
cross-check of the CPU run's total). bf16 autocast is timed only where the CPU has bf16 hardware
(AVX512-BF16 / AMX) or with ``--force-bf16-timing``: on an AVX2 CPU oneDNN
falls back to reference kernels (a 32-channel 3×3×3 conv on 32³ is ~100×
slower than in fp32), so a CPU bf16 time says nothing about a GPU's.

**Sliding window**: ``monai.inferers.sliding_window_inference`` over one
240×240×155 volume, ROI 128³, overlap 0.5, Gaussian blending, G at paper
widths, no gradient. ``--sliding full`` runs it; ``--sliding estimate``
(default) times one 128³ window and multiplies by the number of windows
MONAI visits, plus the blending and padding (timed on an identity
predictor).
Also prints the windows and estimated time of other ROI/overlap choices.
Target: within 3 minutes.

Run: ``python benchmarks/tfgan_step.py [--parts memory step sliding]
[--crops 64 128] [--precisions fp32 bf16] [--sliding estimate|full]``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tumorfab.labels import ED, ET, NCR
from tumorfab.synthesis.tfgan.networks import (
    N_MASK_CHANNELS,
    Discriminator,
    Generator,
    generator_input,
    one_hot_labels,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.paper_config import PAPER_GENERATOR_WIDTHS  # noqa: E402  (G's widths in config/config.yaml)

try:  # the package's losses; the stand-ins below where they do not import
    from tumorfab.synthesis.tfgan import losses as _losses

    LOSSES = "tumorfab.synthesis.tfgan.losses"
except ImportError:  # pragma: no cover - depends on the checkout
    _losses = None
    LOSSES = "stand-ins (BCE, L1)"

VOLUME = (240, 240, 155)
GiB, MiB = 2.0**30, 2.0**20
N_MODALITIES = 1
HINGE_MARGIN = 0.1
WEIGHTS = {"patch": 10.0, "global": 1.0, "percep": 1.0}
LAMBDA_C = 10.0


# --- models --------------------------------------------------------------------------------


def build_feature_extractor(n_modalities: int = N_MODALITIES) -> tuple[nn.Module, str]:
    """Frozen stand-in for F: nnU-Net's encoder (BraTS 128³ plan), first 3 stages."""
    try:
        from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder

        encoder = PlainConvEncoder(
            input_channels=n_modalities,
            n_stages=3,
            features_per_stage=[32, 64, 128],
            conv_op=nn.Conv3d,
            kernel_sizes=[[3, 3, 3]] * 3,
            strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
            n_conv_per_stage=[2, 2, 2],
            conv_bias=True,
            norm_op=nn.InstanceNorm3d,
            norm_op_kwargs={"eps": 1e-5, "affine": True},
            nonlin=nn.LeakyReLU,
            nonlin_kwargs={"inplace": True},
            return_skips=True,
        )
        name = "dynamic_network_architectures PlainConvEncoder (3 stages: 32, 64, 128)"
    except ImportError:  # pragma: no cover
        from monai.networks.blocks import Convolution

        class _Stages(nn.Module):
            def __init__(self):
                super().__init__()
                widths, previous, stages = (32, 64, 128), n_modalities, []
                for i, w in enumerate(widths):
                    stages.append(
                        nn.Sequential(
                            Convolution(3, previous, w, strides=1 if i == 0 else 2, act="leakyrelu", norm="instance"),
                            Convolution(3, w, w, act="leakyrelu", norm="instance"),
                        )
                    )
                    previous = w
                self.stages = nn.ModuleList(stages)

            def forward(self, x):
                out = []
                for stage in self.stages:
                    x = stage(x)
                    out.append(x)
                return out

        encoder, name = _Stages(), "MONAI conv stages (32, 64, 128)"
    encoder.requires_grad_(False).eval()
    return encoder, name


def build_models() -> tuple[Generator, Discriminator, nn.Module, str]:
    torch.manual_seed(0)
    G = Generator(
        in_channels=N_MODALITIES + N_MASK_CHANNELS, out_channels=N_MODALITIES, widths=PAPER_GENERATOR_WIDTHS
    )
    D = Discriminator(in_channels=N_MODALITIES + N_MASK_CHANNELS, width=32, max_channels=256)
    F, name = build_feature_extractor()
    return G, D, F, name


def make_batch(crop: int) -> dict[str, torch.Tensor]:
    """A coarse image, its synthetic labels, an unpaired real image and its labels (batch 1)."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(crop, dtype=torch.float32)] * 3, indexing="ij"))

    def tumour(centre: float) -> torch.Tensor:
        r = (grid - centre).norm(dim=0)
        labels = torch.zeros(crop, crop, crop, dtype=torch.long)
        labels[r < 0.25 * crop] = ED
        labels[r < 0.15 * crop] = ET
        labels[r < 0.07 * crop] = NCR
        return labels[None, None]

    g = torch.Generator().manual_seed(0)
    batch = {
        "coarse": torch.rand(1, N_MODALITIES, crop, crop, crop, generator=g) * 2 - 1,
        "labels": tumour(0.5 * crop),
        "real": torch.rand(1, N_MODALITIES, crop, crop, crop, generator=g) * 2 - 1,
        "real_labels": tumour(0.45 * crop),
    }
    # one-hot masks made here (the data loader's work; on fake tensors they could not be checked)
    batch["onehot"] = one_hot_labels(batch["labels"])
    batch["onehot_real"] = one_hot_labels(batch["real_labels"])
    return batch


# --- losses --------------------------------------------------------------------------------


def d_loss(real_logits, fake_logits, real_losses: bool = True):
    if _losses is not None and real_losses:
        return _losses.discriminator_loss(real_logits, fake_logits)
    bce = nn.functional.binary_cross_entropy_with_logits
    return bce(real_logits.float(), torch.ones_like(real_logits.float())) + bce(
        fake_logits.float(), torch.zeros_like(fake_logits.float())
    )


def g_adv(fake_logits, real_losses: bool = True):
    if _losses is not None and real_losses:
        return _losses.generator_adversarial_loss(fake_logits)
    return nn.functional.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones_like(fake_logits.float()))


def _masked_gap(features, onehot):
    """Class-wise masked global average pooling of each layer (masks area-resized), [B, K, C] per layer."""
    pooled = []
    for f in features:
        masks = nn.functional.adaptive_avg_pool3d(onehot[:, 1:].float(), f.shape[2:])  # tumour classes
        pooled.append(torch.einsum("bc...,bk...->bkc", f.float(), masks) / masks.flatten(2).sum(-1)[..., None].clamp(min=1e-6))
    return pooled


def g_total(patch, global_, fake, batch, feats_fake, feats_real, real_losses: bool = True):
    coarse, labels = batch["coarse"], batch["labels"]
    if _losses is not None and real_losses:
        roi = (labels > 0).float()
        hinge = _losses.hinge_l1_outside_roi(fake, coarse, roi, HINGE_MARGIN)
        percep = _losses.classwise_perceptual(feats_fake, labels, feats_real, batch["real_labels"])
        total, _ = _losses.generator_loss(g_adv(patch), g_adv(global_), hinge, percep, WEIGHTS, LAMBDA_C)
        return total
    # stand-ins of the same structure, free of data-dependent branches (they also run on fake tensors)
    roi = 1.0 - batch["onehot"][:, :1]
    hinge = torch.clamp((1 - roi) * (fake.float() - coarse.float()).abs() - HINGE_MARGIN, min=0).mean()
    percep = sum(
        (a - b).abs().mean()
        for a, b in zip(_masked_gap(feats_fake, batch["onehot"]), _masked_gap(feats_real, batch["onehot_real"]))
    )
    adv = WEIGHTS["patch"] * g_adv(patch, False) + WEIGHTS["global"] * g_adv(global_, False)
    return adv + LAMBDA_C * hinge + WEIGHTS["percep"] * percep


# --- saved-activation counting ---------------------------------------------------------------


@dataclass
class SavedCounter:
    """Bytes of the unique storages autograd saves, per phase (parameters excluded)."""

    exclude: set[int]
    phases: dict[str, dict[int, int]] = field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str):
        seen = self.phases.setdefault(name, {})

        def pack(t: torch.Tensor):
            storage = t.untyped_storage()
            key = storage._cdata
            if key not in self.exclude:
                seen[key] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield

    def bytes(self, name: str) -> int:
        return sum(self.phases.get(name, {}).values())

    def peak(self) -> int:
        return self.bytes("G") + max(self.bytes("D step"), self.bytes("G loss"))


def autocast_ctx(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def train_step(G, D, F, opt_g, opt_d, batch, precision, counter: SavedCounter, real_losses: bool = True) -> None:
    onehot, onehot_real = batch["onehot"], batch["onehot_real"]
    with counter.phase("G"), autocast_ctx(precision):
        fake = G(torch.cat([batch["coarse"], onehot], dim=1))  # = generator_input(coarse, labels)
    # discriminator
    D.requires_grad_(True)
    with counter.phase("D step"), autocast_ctx(precision):
        patch_real, global_real = D(batch["real"], onehot_real)
        patch_fake, global_fake = D(fake.detach(), onehot)
        loss_d = d_loss(patch_real, patch_fake, real_losses) + d_loss(global_real, global_fake, real_losses)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # generator
    D.requires_grad_(False)
    with counter.phase("G loss"), autocast_ctx(precision):
        patch_fake, global_fake = D(fake, onehot)
        feats_fake = F(fake)
        with torch.no_grad():
            feats_real = F(batch["real"])
        loss_g = g_total(patch_fake, global_fake, fake, batch, feats_fake, feats_real, real_losses)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    D.requires_grad_(True)


def optimizers(G, D):
    return (
        torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999)),
        torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.999)),
    )


def param_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def static_bytes(G, D, F) -> dict[str, int]:
    trainable = param_bytes(G) + param_bytes(D)
    return {"params": trainable + param_bytes(F), "grads": trainable, "adam": 2 * trainable}


def storage_keys(*modules: nn.Module) -> set[int]:
    return {p.untyped_storage()._cdata for m in modules for p in m.parameters()}


# --- parts ------------------------------------------------------------------------------------


def memory_part(crops, precisions) -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    print("\n== Memory of one training step (batch 1, paper widths; fake tensors, so stand-in losses of the "
          "same structure: no data-dependent branches)")
    print(f"{'crop':>5} {'prec':>5} {'params MiB':>10} {'grads MiB':>9} {'Adam MiB':>8} "
          f"{'act G':>6} {'act D':>6} {'act G-loss':>10} {'saved act GiB':>13} {'total GiB':>9}")
    for crop in crops:
        for precision in precisions:
            batch = make_batch(crop)
            mode = FakeTensorMode()
            with mode:
                G, D, F, _ = build_models()
                opt_g, opt_d = optimizers(G, D)
                batch = {key: mode.from_tensor(value) for key, value in batch.items()}
                counter = SavedCounter(storage_keys(G, D, F))
                train_step(G, D, F, opt_g, opt_d, batch, precision, counter, real_losses=False)
            s = static_bytes(G, D, F)
            act = counter.peak()
            total = s["params"] + s["grads"] + s["adam"] + act
            print(f"{crop:>4}³ {precision:>5} {s['params'] / MiB:>10.0f} {s['grads'] / MiB:>9.0f} {s['adam'] / MiB:>8.0f} "
                  f"{counter.bytes('G') / GiB:>6.2f} {counter.bytes('D step') / GiB:>6.2f} "
                  f"{counter.bytes('G loss') / GiB:>10.2f} {act / GiB:>13.2f} {total / GiB:>9.2f}")
    print("act G / D / G-loss: GiB saved by G's forward, the D phase (D on real + fake), the G-loss phase "
          "(D and F on fake); saved act = G + max(D, G-loss). Targets at 128³: fp32 <= 16 GiB, autocast <= 10 GiB.")


def max_rss_gib() -> float:
    """The process's peak resident memory so far (Linux: KiB), a cross-check of the CPU run's total."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB


def cpu_has_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def step_part(crops, precisions, warmup_up_to: int, force_bf16: bool) -> None:
    print(f"\n== Time of one training step on this CPU ({torch.get_num_threads()} threads; losses: {LOSSES})")
    print(f"{'crop':>5} {'prec':>5} {'warm-up':>7} {'seconds':>8} {'saved act GiB':>13} {'total GiB':>9} "
          f"{'max RSS GiB':>11}")
    for crop in crops:
        for precision in precisions:
            if precision == "bf16" and not (cpu_has_bf16() or force_bf16):
                print(f"{crop:>4}³ {precision:>5}  skipped: no bf16 hardware on this CPU (AVX2 only); "
                      "oneDNN's bf16 fallback is ~100x slower than fp32, so the figure would be meaningless")
                continue
            G, D, F, _ = build_models()
            opt_g, opt_d = optimizers(G, D)
            batch = make_batch(crop)
            warm = crop <= warmup_up_to
            if warm:
                train_step(G, D, F, opt_g, opt_d, batch, precision, SavedCounter(storage_keys(G, D, F)))
            counter = SavedCounter(storage_keys(G, D, F))
            start = time.perf_counter()
            train_step(G, D, F, opt_g, opt_d, batch, precision, counter)
            seconds = time.perf_counter() - start
            s = static_bytes(G, D, F)
            total = sum(s.values()) + counter.peak()
            print(f"{crop:>4}³ {precision:>5} {'yes' if warm else 'no':>7} {seconds:>8.1f} "
                  f"{counter.peak() / GiB:>13.2f} {total / GiB:>9.2f} {max_rss_gib():>11.2f}", flush=True)
            del G, D, F, opt_g, opt_d, batch, counter


def n_windows(image_size, roi, overlap: float) -> int:
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    padded = [max(i, r) for i, r in zip(image_size, roi)]
    interval = _get_scan_interval(padded, roi, len(roi), (overlap,) * len(roi))
    return len(dense_patch_slices(padded, roi, interval))


def sliding_part(precisions, mode: str, force_bf16: bool) -> None:
    from monai.inferers import sliding_window_inference

    roi, overlap = (128, 128, 128), 0.5
    windows = n_windows(VOLUME, roi, overlap)
    print(f"\n== Sliding-window refinement of one {'x'.join(map(str, VOLUME))} volume "
          f"(ROI 128³, overlap {overlap}, gaussian; {windows} windows; {torch.get_num_threads()} threads)")
    torch.manual_seed(0)
    G = Generator(in_channels=N_MODALITIES + N_MASK_CHANNELS, out_channels=N_MODALITIES, widths=PAPER_GENERATOR_WIDTHS).eval()
    labels = torch.zeros(1, 1, *VOLUME, dtype=torch.long)
    labels[..., 100:140, 100:140, 60:100] = ED
    image = torch.rand(1, N_MODALITIES, *VOLUME) * 2 - 1
    x = generator_input(image, labels)
    # blending and padding alone (an identity predictor)
    start = time.perf_counter()
    with torch.no_grad():
        sliding_window_inference(x, roi, 1, lambda w: w[:, :N_MODALITIES], overlap=overlap, mode="gaussian")
    overhead = time.perf_counter() - start
    print(f"blending/padding overhead (identity predictor): {overhead:.1f} s")
    per_window = {}
    for precision in precisions:
        if precision == "bf16" and not (cpu_has_bf16() or force_bf16):
            print(f"{precision}: skipped (no bf16 hardware on this CPU, see the step table)")
            continue
        window = x[..., :128, :128, :128].contiguous()
        with torch.no_grad(), autocast_ctx(precision):
            start = time.perf_counter()
            G(window)
            per_window[precision] = time.perf_counter() - start
        if mode == "full":
            with torch.no_grad(), autocast_ctx(precision):
                start = time.perf_counter()
                out = sliding_window_inference(x, roi, 1, G, overlap=overlap, mode="gaussian")
                seconds = time.perf_counter() - start
            assert out.shape == (1, N_MODALITIES, *VOLUME)
            print(f"{precision}: one window {per_window[precision]:.1f} s; whole volume (measured) {seconds:.1f} s "
                  f"({seconds / 60:.1f} min; target 3 min)")
        else:
            estimate = windows * per_window[precision] + overhead
            print(f"{precision}: one window {per_window[precision]:.1f} s; whole volume (estimated: "
                  f"{windows} x window + overhead) {estimate:.0f} s ({estimate / 60:.1f} min; target 3 min)")
    if "fp32" in per_window:
        brain_box_part(per_window["fp32"], overhead, mode, G)
        print("\nOther window choices (fp32 estimate = windows x window voxels / 128³ x one 128³ window; "
              "G's cost is linear in voxels):")
        print(f"{'ROI':>13} {'overlap':>7} {'windows':>7} {'voxels / 128³':>13} {'est. s':>7}")
        for choice, ov in [((128,) * 3, 0.5), ((128,) * 3, 0.25), ((128,) * 3, 0.0), ((160,) * 3, 0.5),
                           ((192, 192, 160), 0.5), ((256, 256, 160), 0.0)]:
            n = n_windows(VOLUME, choice, ov)
            units = n * math.prod(choice) / 128**3
            print(f"{'x'.join(map(str, choice)):>13} {ov:>7} {n:>7} {units:>13.1f} "
                  f"{units * per_window['fp32'] + overhead:>7.0f}")


REAL_CASE = Path(__file__).resolve().parents[2] / "shared/data/real/brats/BraTS-GLI-00000-000"


def brain_box_part(per_window: float, overhead: float, mode: str, G) -> None:
    """``refine_volume`` runs its windows over the brain's bounding box only:
    the count for the real BraTS case in ../shared (its brain = t1n > 0)."""
    import nibabel as nib
    import numpy as np

    from tumorfab.synthesis.gan import BRAIN_MARGIN
    from tumorfab.synthesis.tfgan.refine import refine_volume

    path = REAL_CASE / f"{REAL_CASE.name}-t1n.nii.gz"
    if not path.exists():
        print(f"\n(no real case at {REAL_CASE}: brain-box estimate skipped)")
        return
    t1n = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    brain = (t1n > 0).astype(np.uint8)
    inside = np.argwhere(brain)
    lo, hi = np.maximum(inside.min(0) - BRAIN_MARGIN, 0), np.minimum(inside.max(0) + 1 + BRAIN_MARGIN, brain.shape)
    box = tuple(int(b - a) for a, b in zip(lo, hi))
    windows = n_windows(tuple(max(s, 128) for s in box), (128,) * 3, 0.5)
    estimate = windows * per_window + overhead
    print(f"\nrefine_volume on {REAL_CASE.name} ({'x'.join(map(str, t1n.shape))}): brain box "
          f"{'x'.join(map(str, box))} (+{BRAIN_MARGIN} voxels), {windows} windows of 128³ at overlap 0.5: "
          f"estimated {estimate:.0f} s ({estimate / 60:.1f} min; target 3 min)")
    if mode == "full":
        image = (t1n / max(float(t1n.max()), 1.0) * 2 - 1)[None].astype(np.float32)
        labels = np.zeros(t1n.shape, np.uint8)
        start = time.perf_counter()
        refine_volume(G, image, labels, brain, 128, 0.5, torch.device("cpu"), "off")
        seconds = time.perf_counter() - start
        print(f"refine_volume measured: {seconds:.0f} s ({seconds / 60:.1f} min)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["memory", "step", "sliding"],
                        choices=["memory", "step", "sliding"])
    parser.add_argument("--crops", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup-up-to", type=int, default=64,
                        help="run a warm-up step before the timed one only at crops up to this size")
    parser.add_argument("--sliding", choices=["estimate", "full"], default="estimate")
    parser.add_argument("--force-bf16-timing", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    G, D, F, f_name = build_models()
    print(f"G: {G.parameter_count() / 1e6:.2f} M parameters (widths {list(G.widths)}); "
          f"D: {D.parameter_count() / 1e6:.2f} M (channels {list(D.channels)}); "
          f"F (frozen): {sum(p.numel() for p in F.parameters()) / 1e6:.2f} M, {f_name}")
    del G, D, F
    if "memory" in args.parts:
        memory_part(args.crops, args.precisions)
    if "step" in args.parts:
        step_part(args.crops, args.precisions, args.warmup_up_to, args.force_bf16_timing)
    if "sliding" in args.parts:
        sliding_part(args.precisions, args.sliding, args.force_bf16_timing)


if __name__ == "__main__":
    main()
