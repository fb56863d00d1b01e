"""TF-GAN's generator G and dual-head discriminator D (paper 002 §2.2).

Generator G
    A 3D U-Net with six resolution levels (paper default widths
    ``[32, 64, 128, 256, 320, 320]``, nnU-Net's widths for a six-stage 3D
    network). Every level has two conv blocks (3×3×3 conv, instance norm,
    LeakyReLU); levels 1-5 begin with a stride-2 conv (five down-samplings).
    The decoder up-samples by **nearest-neighbour interpolation followed by a
    3×3×3 conv** (the paper's replacement for transposed convolutions, against
    checkerboard artifacts; no transposed convolution anywhere), concatenates
    the encoder's skip and applies two conv blocks. A final 1×1×1 conv and
    ``tanh`` give a correction ``r`` in [-1, 1]; the refined image is
    ``clamp(x_s' + 2·r, -1, 1)``, in [-1, 1]. The final conv starts at zero,
    so an untrained G returns the coarse image: refinement starts from
    TF-Aug's pair and learns only what the losses ask to change (our reading:
    the paper does not say whether G outputs the image or a correction; with
    the image, the anatomy outside the ROI, which Eq. 2 asks G to keep, would
    first have to be learned from scratch).

    Input: the coarse image (``n_modalities`` channels) ⊕ the one-hot
    synthetic mask (4 channels: background, NCR, ED, ET, in
    :data:`tumorfab.labels.LABELS` order); see :func:`generator_input`.

    **Modality translator** (more than one modality,
    :func:`uses_presence_indicators`; paper 002 §4 names modality
    translation as TF-GAN's future work): the input is the C image channels,
    an absent one holding its histogram-matched fill (t1n matched onto the
    real cases' distribution of that channel, the baseline that learns
    nothing: ``tumorfab.synthesis.tfaug.fill``), ⊕ C presence indicators (a
    constant volume, 1 for a channel given, 0 for one to make) ⊕ the one-hot
    mask, so ``2·C + 4`` channels; G outputs all C channels, an absent
    channel's correction starting from its fill. With one modality G is the
    paper's (no indicators).

    **Spatial size.** Five down-samplings need every spatial size divisible by
    ``2**5 = 32``. With instance norm, the bottleneck must hold more than one
    voxel per axis: a 32³ input leaves 1³ there, where instance norm is
    undefined (a single voxel has no variance), so the minimum is **64³**
    (bottleneck 2³). :meth:`Generator.check_spatial_shape` raises a
    ``ValueError`` naming the minimum; crops and sliding windows (paper: 128³)
    must be sized accordingly.

Discriminator D
    A 3D conv encoder with five down-sampling stages (4×4×4 conv, stride 2;
    instance norm except in the first stage; LeakyReLU 0.2; PatchGAN style)
    with ``min(width * 2**i, max_channels)`` channels at stage ``i`` (the cap,
    default 256, keeps D at ~7.0 M parameters at width 32; unbounded
    doubling over the five stages would reach 512 channels and ~11.2 M, and a
    sixth stage 1024 channels and ~45 M). Two heads share it:

    * local (PatchGAN): a 3×3×3 conv to one channel, a map of logits
      (``input / 32`` per axis: 2³ for a 64³ crop, 4³ for 128³);
    * global: adaptive average pooling to 1³ and a linear layer, one logit.

    D is conditioned on the mask: its input is the image ⊕ the one-hot mask.
    ``D(image, onehot) -> (patch_logits [B, 1, x, y, z], global_logits [B, 1])``
    (logits, no sigmoid). The same instance-norm argument gives D a minimum
    size of 64 per axis.

Weights keep PyTorch's default initialisation (deterministic under
``torch.manual_seed``), except G's final conv (zeros, see above). Blocks are MONAI's ``Convolution`` and ``UpSample``
(mode ``"nontrainable"``, ``interp_mode="nearest"``). :func:`make_generator`
and :func:`build_networks` build them from the settings, for training and
generation alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from torch import nn

from tumorfab.labels import LABELS
from tumorfab.synthesis.gan_settings import TFGANSettings, unet_sizes

#: Channels of the one-hot mask (background, NCR, ED, ET).
N_MASK_CHANNELS = len(LABELS)
#: LeakyReLU slopes: nnU-Net's 0.01 in G, the usual GAN discriminator 0.2 in D.
GENERATOR_NEGATIVE_SLOPE = 0.01
DISCRIMINATOR_NEGATIVE_SLOPE = 0.2


# --- Inputs ----------------------------------------------------------------------------


def one_hot_labels(labels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot of an integer label map ``[B, 1, X, Y, Z]`` -> ``[B, 4, X, Y, Z]``.

    Channels in :data:`tumorfab.labels.LABELS` order (background, NCR, ED, ET).
    Raises ``ValueError`` for a wrong shape, a floating-point map or a value
    outside ``LABELS``.
    """
    if labels.ndim != 5 or labels.shape[1] != 1:
        raise ValueError(f"labels must be [B, 1, X, Y, Z], got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    onehot = torch.cat([labels == value for value in LABELS], dim=1)
    if not bool(onehot.any(dim=1).all()):
        bad = sorted(set(torch.unique(labels).tolist()) - set(LABELS))
        raise ValueError(f"labels hold values {bad} outside {LABELS}")
    return onehot.to(dtype)


def uses_presence_indicators(n_modalities: int) -> bool:
    """Whether G of ``n_modalities`` channels is a modality translator (more than one):
    its input then holds presence indicators (:func:`generator_input`)."""
    return n_modalities > 1


def generator_in_channels(n_modalities: int) -> int:
    """G's input channels: the image, the presence indicators of a translator, the one-hot mask."""
    image_channels = 2 * n_modalities if uses_presence_indicators(n_modalities) else n_modalities
    return image_channels + N_MASK_CHANNELS


def generator_input(image: torch.Tensor, labels: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """G's input: ``image [B, C, X, Y, Z]`` ⊕ ``one_hot_labels(labels)`` -> ``[B, C + 4, ...]``.

    A translator's (``present`` given, ``[B, C]``, 1 where case ``b`` has
    channel ``c``, 0 where G is to make it): ``image``, whose absent
    channels hold their fill (the caller's: ``tfaug.fill``), ⊕ C indicator
    volumes (channel ``c`` of case ``b`` constant ``present[b, c]``) ⊕ the
    one-hot mask -> ``[B, 2·C + 4, ...]``.
    """
    if image.ndim != 5:
        raise ValueError(f"image must be [B, C, X, Y, Z], got shape {tuple(image.shape)}")
    if image.shape[0] != labels.shape[0] or image.shape[2:] != labels.shape[2:]:
        raise ValueError(f"image {tuple(image.shape)} and labels {tuple(labels.shape)} differ in batch or grid")
    onehot = one_hot_labels(labels, dtype=image.dtype)
    if present is None:
        return torch.cat([image, onehot], dim=1)
    if tuple(present.shape) != tuple(image.shape[:2]):
        raise ValueError(f"present must be [B, C] = {tuple(image.shape[:2])}, got {tuple(present.shape)}")
    indicators = present.to(image.dtype)[:, :, None, None, None].expand_as(image)
    return torch.cat([image, indicators, onehot], dim=1)


# --- Building blocks -------------------------------------------------------------------


def _norm(norm: str | None) -> tuple | None:
    """MONAI norm spec: instance norm with affine parameters (nnU-Net's), or batch norm, or none."""
    if norm is None or norm == "none":
        return None
    if norm in ("instance", "batch"):
        return (norm, {"affine": True})
    raise ValueError(f"norm must be 'instance', 'batch' or 'none', got {norm!r}")


def _conv(
    in_channels: int,
    out_channels: int,
    *,
    norm: str | None,
    negative_slope: float,
    kernel_size: int = 3,
    strides: int = 1,
) -> Convolution:
    """Conv -> norm -> LeakyReLU (MONAI ``Convolution``, 'NDA' order).

    Padding ``(kernel_size - 1) // 2``: size kept at stride 1, halved (even sizes) at
    stride 2 for kernels 3 and 4.
    """
    return Convolution(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        strides=strides,
        kernel_size=kernel_size,
        padding=(kernel_size - 1) // 2,
        act=("leakyrelu", {"negative_slope": negative_slope, "inplace": False}),
        norm=_norm(norm),
    )


def _count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _check_min_size(shape: Sequence[int], minimum: int, multiple: int, who: str) -> None:
    spatial = tuple(int(s) for s in shape)
    if len(spatial) != 3:
        raise ValueError(f"{who}: expected three spatial sizes, got {spatial}")
    small = [s for s in spatial if s < minimum]
    odd = [s for s in spatial if s % multiple]
    if small or odd:
        problem = []
        if small:
            problem.append(f"sizes {small} are below the minimum {minimum}")
        if odd:
            problem.append(f"sizes {odd} are not divisible by {multiple}")
        raise ValueError(
            f"{who}: spatial shape {spatial} is not supported ({'; '.join(problem)}). "
            f"Every spatial size must be a multiple of {multiple} and at least {minimum} "
            f"(minimum crop {minimum}x{minimum}x{minimum}); size crops and sliding windows accordingly."
        )


# --- Generator -------------------------------------------------------------------------


class UpBlock(nn.Module):
    """Nearest-neighbour ×2 up-sampling followed by a 3×3×3 conv block (no transposed conv)."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: str | None, negative_slope: float):
        super().__init__()
        self.upsample = UpSample(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=in_channels,
            scale_factor=2,
            mode="nontrainable",
            pre_conv=None,
            interp_mode="nearest",
            align_corners=None,
        )
        self.conv = _conv(in_channels, out_channels, norm=norm, negative_slope=negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.upsample(x))


class DecoderLevel(nn.Module):
    """Up-sample the coarser level, concatenate the skip, two conv blocks."""

    def __init__(self, coarse_channels: int, channels: int, *, norm: str | None, negative_slope: float):
        super().__init__()
        self.up = UpBlock(coarse_channels, channels, norm=norm, negative_slope=negative_slope)
        self.convs = nn.Sequential(
            _conv(2 * channels, channels, norm=norm, negative_slope=negative_slope),
            _conv(channels, channels, norm=norm, negative_slope=negative_slope),
        )

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(coarse), skip], dim=1))


class Generator(nn.Module):
    """TF-GAN generator: a 3D U-Net, nearest-neighbour up-sampling, ``tanh`` output.

    Args:
        in_channels: :func:`generator_in_channels` (paper: 1 + 4 = 5).
        out_channels: image channels of the refined image (paper: 1).
        widths: channels per resolution level, one entry per level (paper:
            ``[32, 64, 128, 256, 320, 320]``, six levels).
        norm: ``"instance"`` (paper / nnU-Net), ``"batch"`` or ``"none"``.
        negative_slope: LeakyReLU slope (nnU-Net's 0.01).

    ``forward(x)`` takes ``generator_input(image, labels[, present])`` ``[B, in_channels, X, Y, Z]``
    with every spatial size a multiple of :attr:`size_multiple` (32 for six
    levels) and at least :attr:`min_size` (64 with instance norm: see the
    module docstring) and returns ``[B, out_channels, X, Y, Z]`` in [-1, 1].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: Sequence[int],
        norm: str | None = "instance",
        negative_slope: float = GENERATOR_NEGATIVE_SLOPE,
    ):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"widths must list at least two positive channel counts, got {widths}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.widths = tuple(widths)
        self.norm = norm
        kw = dict(norm=norm, negative_slope=negative_slope)

        encoder = []
        previous = self.in_channels
        for level, width in enumerate(widths):
            encoder.append(
                nn.Sequential(
                    _conv(previous, width, strides=1 if level == 0 else 2, **kw),
                    _conv(width, width, **kw),
                )
            )
            previous = width
        #: One module per resolution level (levels 1.. start with a stride-2 conv).
        self.encoder = nn.ModuleList(encoder)
        #: ``decoder[i]`` brings level ``i + 1`` up to level ``i`` (applied deepest first).
        self.decoder = nn.ModuleList(
            DecoderLevel(widths[level + 1], widths[level], **kw) for level in range(len(widths) - 1)
        )
        self.head = nn.Conv3d(widths[0], self.out_channels, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.activation = nn.Tanh()

    # -- size rules --
    @property
    def n_levels(self) -> int:
        return len(self.widths)

    @property
    def size_multiple(self) -> int:
        """Every spatial size must be a multiple of this (``2 ** (levels - 1)``)."""
        return unet_sizes(self.n_levels)[0]

    @property
    def min_size(self) -> int:
        """Smallest spatial size: two voxels per axis at the bottleneck with instance norm (64 for six levels)."""
        return unet_sizes(self.n_levels)[1] if self.norm == "instance" else self.size_multiple

    def check_spatial_shape(self, shape: Sequence[int]) -> None:
        """Raise ``ValueError`` (naming the minimum) when G cannot take this spatial shape."""
        _check_min_size(shape, self.min_size, self.size_multiple, "Generator")

    def parameter_count(self, trainable_only: bool = False) -> int:
        return _count_parameters(self, trainable_only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"Generator expects [B, {self.in_channels}, X, Y, Z], got {tuple(x.shape)}")
        self.check_spatial_shape(x.shape[2:])
        coarse = x[:, : self.out_channels]
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        x = skips.pop()
        for level in reversed(range(len(self.decoder))):
            x = self.decoder[level](x, skips.pop())
        return torch.clamp(coarse + 2 * self.activation(self.head(x)), -1.0, 1.0)


# --- Discriminator ---------------------------------------------------------------------


class Discriminator(nn.Module):
    """TF-GAN dual-head discriminator, conditioned on the one-hot mask.

    Args:
        in_channels: image channels + 4 mask channels (paper: 1 + 4 = 5).
        width: channels of the first stage (paper default 32).
        max_channels: cap on the channels of any stage (default 256).
        n_stages: stride-2 down-sampling stages (paper: 5).
        norm: ``"instance"`` (default), ``"batch"`` or ``"none"``; never in the first stage.
        negative_slope: LeakyReLU slope (0.2).

    ``forward(image, onehot)`` -> ``(patch_logits [B, 1, X/32, Y/32, Z/32], global_logits [B, 1])``.
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        max_channels: int,
        n_stages: int = 5,
        norm: str | None = "instance",
        negative_slope: float = DISCRIMINATOR_NEGATIVE_SLOPE,
    ):
        super().__init__()
        if width < 1 or max_channels < 1 or n_stages < 1:
            raise ValueError("width, max_channels and n_stages must be positive")
        self.in_channels = int(in_channels)
        self.norm = norm
        self.n_stages = int(n_stages)
        #: Channels of each stage: ``min(width * 2**i, max_channels)``.
        self.channels = tuple(min(int(width) * 2**i, int(max_channels)) for i in range(self.n_stages))
        stages = []
        previous = self.in_channels
        for i, channels in enumerate(self.channels):
            stages.append(
                _conv(
                    previous,
                    channels,
                    kernel_size=4,
                    strides=2,
                    norm=None if i == 0 else norm,
                    negative_slope=negative_slope,
                )
            )
            previous = channels
        #: The shared encoder: one stride-2 stage per entry.
        self.encoder = nn.Sequential(*stages)
        #: Local (PatchGAN) head: a map of logits.
        self.patch_head = nn.Conv3d(previous, 1, kernel_size=3, padding=1)
        #: Global head: adaptive average pooling + linear.
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.global_head = nn.Linear(previous, 1)

    @property
    def min_size(self) -> int:
        """Smallest spatial size: more than one voxel per axis at the last (normalized) stage."""
        return 2**self.n_stages * (2 if self.norm == "instance" else 1)

    def check_spatial_shape(self, shape: Sequence[int]) -> None:
        """Raise ``ValueError`` (naming the minimum) when D cannot take this spatial shape."""
        _check_min_size(shape, self.min_size, 1, "Discriminator")

    def parameter_count(self, trainable_only: bool = False) -> int:
        return _count_parameters(self, trainable_only)

    def forward(self, image: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.ndim != 5 or onehot.ndim != 5 or image.shape[2:] != onehot.shape[2:]:
            raise ValueError(f"image {tuple(image.shape)} and onehot {tuple(onehot.shape)} must be [B, C, X, Y, Z] on one grid")
        x = torch.cat([image, onehot.to(image.dtype)], dim=1)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Discriminator expects {self.in_channels} channels (image ⊕ one-hot), got {x.shape[1]}")
        self.check_spatial_shape(x.shape[2:])
        features = self.encoder(x)
        patch = self.patch_head(features)
        pooled = torch.flatten(self.pool(features), 1)
        return patch, self.global_head(pooled)


# --- From the settings -----------------------------------------------------------------


def make_generator(tfgan: TFGANSettings, n_modalities: int) -> Generator:
    """G for images of ``n_modalities`` channels: :func:`generator_input` in
    (:func:`generator_in_channels`), the ``n_modalities`` image channels out."""
    return Generator(
        in_channels=generator_in_channels(n_modalities), out_channels=n_modalities, widths=tfgan.generator_widths
    )


def build_networks(tfgan: TFGANSettings, n_modalities: int, seed: int) -> tuple[Generator, Discriminator]:
    """G and D, their weights drawn (in this order) after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    generator = make_generator(tfgan, n_modalities)
    discriminator = Discriminator(
        in_channels=n_modalities + N_MASK_CHANNELS,
        width=tfgan.discriminator_width,
        max_channels=tfgan.discriminator_max_channels,
    )
    return generator, discriminator
