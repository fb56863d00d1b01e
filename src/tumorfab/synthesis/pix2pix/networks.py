"""3D Pix2Pix's generator G and discriminator D (paper 002 §3.2.1 (2); Isola et al. 2017).

Paper 002 compares TF with "a 3D Pix2Pix model" trained on pairs whose input
is a real scan's tumour labels "and an extra label [that] stands for
non-background brain area (exclusive from the tumor masks)" and whose target
is the scan. Pix2Pix is Isola, Zhu, Zhou and Efros, *Image-to-Image
Translation with Conditional Adversarial Networks*, CVPR 2017: a U-Net G, a
PatchGAN D that sees the input and the output together, cGAN + λ·L1.

Label map (G's input, D's condition)
    Five one-hot channels (:data:`LABEL_MAP_CHANNELS`, :func:`label_map`):
    0 background (outside the brain mask, no tumour), 1 brain (brain mask
    minus tumour), 2 NCR, 3 ED, 4 ET (the values of :mod:`tumorfab.labels`).
    A tumour voxel is in its tumour channel wherever it lies (a real case can
    have tumour voxels outside its image-derived brain mask,
    ``tumorfab.preprocess.normalize``), so the channels partition the volume.

Generator G
    MONAI's ``UNet`` (3D; ``channels`` = the config's ``generator_widths``,
    paper [32, 64, 128, 256, 320, 320]; stride 2 between levels; instance
    norm; LeakyReLU 0.2, pix2pix's encoder slope, everywhere) followed by
    ``tanh``: the image in [-1, 1], ``n_modalities`` channels. Like the
    original pix2pix U-Net, MONAI's down-samples by strided convolutions from
    its first layer on (``widths[i]`` features at ``1/2**(i+1)`` of the input
    size, the last two widths at the bottleneck, ``1/2**(L-1)``), **up-samples
    by transposed convolutions** and concatenates the encoder's skips; its top transposed convolution has no norm and no activation,
    then ``tanh``, as pix2pix's outermost block. Our choices: 3×3×3 kernels
    (MONAI's default; pix2pix's 2D kernels are 4×4), one convolution per
    level (MONAI's ``num_res_units=0``), no dropout (pix2pix's decoder
    dropout is its only noise; without it G is deterministic and generation
    reproducible to the byte), and pix2pix's initialisation: convolution
    weights from N(0, 0.02), biases 0 (``monai.networks.utils.normal_init``).
    Instance norm without affine parameters and running statistics (MONAI's
    ``"INSTANCE"``, as pix2pix's ``--norm instance``), so G computes the same
    in ``train()`` and ``eval()``.

    **Spatial size** (:meth:`Generator.check_spatial_shape`): ``L`` levels
    down-sample ``L - 1`` times, so every size must be a multiple of
    ``2**(L-1)`` (32 at six levels); instance norm needs more than one voxel
    per axis at the bottleneck, so the minimum is ``2**L`` (64 at six levels).

Discriminator D
    MONAI's ``PatchDiscriminator`` (the pix2pix/pix2pixHD PatchGAN: a 4×4×4
    stride-2 conv without norm, ``discriminator_layers - 1`` more stride-2
    convs and one stride-1 conv, channels doubling from
    ``discriminator_width``, instance norm, LeakyReLU 0.2, a last 4×4×4 conv
    to one channel; weights from N(0, 0.02)). Paper widths: 32 and 3 layers,
    pix2pix's 70×70 PatchGAN in 3D. Conditioned on the label map: its input is
    the image ⊕ the 5-channel label map. ``D(image, label_map)`` returns the
    logits map [B, 1, x, y, z] (no sigmoid). Minimum size ``3·2**layers`` per
    axis (24 at 3 layers): the last normalised layer needs two voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import PatchDiscriminator, UNet
from monai.networks.utils import normal_init
from torch import nn

from tumorfab.labels import BACKGROUND, ED, ET, LABELS, NCR
from tumorfab.synthesis.gan_settings import Pix2PixSettings, patchgan_min_size, unet_sizes

#: The label map's channels, in order (G's input, D's condition).
LABEL_MAP_CHANNELS = ("background", "brain", "NCR", "ED", "ET")
N_LABEL_MAP_CHANNELS = len(LABEL_MAP_CHANNELS)
#: What the label map holds outside the volume (padding): background.
LABEL_MAP_PAD_VALUES = (1.0, 0.0, 0.0, 0.0, 0.0)
#: LeakyReLU slope of G and D (pix2pix's encoder and discriminator).
NEGATIVE_SLOPE = 0.2


# --- Input -----------------------------------------------------------------------------


def label_map(seg: torch.Tensor, brainmask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The one-hot label map ``[B, 5, X, Y, Z]`` of ``seg`` and ``brainmask`` (each ``[B, 1, X, Y, Z]``).

    Channels (:data:`LABEL_MAP_CHANNELS`): background (outside the brain,
    no tumour), brain (brain mask minus tumour), NCR, ED, ET; a tumour voxel
    is in its tumour channel inside or outside the brain mask. ``seg`` is an
    integer tensor of BraTS labels (:data:`tumorfab.labels.LABELS`);
    ``brainmask`` holds 0 and 1 (any dtype). ``ValueError`` for a wrong
    shape, a floating-point ``seg`` or a value outside those sets.
    """
    if seg.ndim != 5 or seg.shape[1] != 1:
        raise ValueError(f"seg must be [B, 1, X, Y, Z], got shape {tuple(seg.shape)}")
    if brainmask.shape != seg.shape:
        raise ValueError(f"brainmask {tuple(brainmask.shape)} and seg {tuple(seg.shape)} must have one shape")
    if seg.is_floating_point() or seg.is_complex():
        raise ValueError(f"seg must be an integer tensor, got {seg.dtype}")
    bad = ~torch.isin(seg, torch.tensor(LABELS, device=seg.device))
    if bool(bad.any()):
        raise ValueError(f"seg holds values {sorted(torch.unique(seg[bad]).tolist())[:5]} outside {LABELS}")
    bad = (brainmask != 0) & (brainmask != 1)
    if bool(bad.any()):
        raise ValueError(f"brainmask holds values {sorted(torch.unique(brainmask[bad]).tolist())[:5]} outside (0, 1)")
    healthy = seg == BACKGROUND
    channels = [healthy & (brainmask == 0), healthy & (brainmask == 1), seg == NCR, seg == ED, seg == ET]
    return torch.cat(channels, dim=1).to(dtype)


# --- Size rules ------------------------------------------------------------------------


def _check_shape(shape: Sequence[int], minimum: int, multiple: int, who: str) -> None:
    spatial = tuple(int(s) for s in shape)
    if len(spatial) != 3:
        raise ValueError(f"{who}: expected three spatial sizes, got {spatial}")
    small = [s for s in spatial if s < minimum]
    odd = [s for s in spatial if s % multiple]
    if small or odd:
        problems = ([f"sizes {small} are below the minimum {minimum}"] if small else []) + (
            [f"sizes {odd} are not multiples of {multiple}"] if odd else []
        )
        raise ValueError(
            f"{who}: spatial shape {spatial} is not supported ({'; '.join(problems)}). Every spatial size must be "
            f"a multiple of {multiple} and at least {minimum}; size pix2pix.crop and pix2pix.window accordingly."
        )


# --- Generator -------------------------------------------------------------------------


class Generator(nn.Module):
    """Pix2Pix's G: MONAI's 3D ``UNet`` then ``tanh`` (see the module docstring).

    ``forward(label_map [B, 5, X, Y, Z]) -> image [B, out_channels, X, Y, Z]`` in [-1, 1].
    """

    def __init__(self, out_channels: int, widths: Sequence[int], in_channels: int = N_LABEL_MAP_CHANNELS):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"generator_widths must list at least two positive channel counts, got {widths}")
        self.in_channels, self.out_channels, self.widths = int(in_channels), int(out_channels), tuple(widths)
        self.unet = UNet(
            spatial_dims=3,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            channels=widths,
            strides=[2] * (len(widths) - 1),
            num_res_units=0,
            act=("leakyrelu", {"negative_slope": NEGATIVE_SLOPE}),
            norm="instance",
        )
        self.unet.apply(normal_init)

    @property
    def size_multiple(self) -> int:
        """Every spatial size must be a multiple of this (``2 ** (levels - 1)``)."""
        return unet_sizes(len(self.widths))[0]

    @property
    def min_size(self) -> int:
        """Smallest spatial size: two voxels per axis at the bottleneck (instance norm)."""
        return unet_sizes(len(self.widths))[1]

    def check_spatial_shape(self, shape: Sequence[int]) -> None:
        """``ValueError`` naming the required multiple and minimum when G cannot take ``shape``."""
        _check_shape(shape, self.min_size, self.size_multiple, "Pix2Pix generator")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"Pix2Pix generator expects [B, {self.in_channels}, X, Y, Z], got {tuple(x.shape)}")
        self.check_spatial_shape(x.shape[2:])
        return torch.tanh(self.unet(x))


# --- Discriminator ---------------------------------------------------------------------


class Discriminator(nn.Module):
    """Pix2Pix's D: MONAI's ``PatchDiscriminator`` on the image ⊕ the label map.

    ``forward(image [B, C, ...], label_map [B, 5, ...]) -> logits [B, 1, x, y, z]``.
    """

    def __init__(self, n_modalities: int, width: int, n_layers: int):
        super().__init__()
        if width < 1 or n_layers < 1:
            raise ValueError(f"discriminator_width and discriminator_layers must be positive, got {width}, {n_layers}")
        self.in_channels, self.n_layers = int(n_modalities) + N_LABEL_MAP_CHANNELS, int(n_layers)
        self.patchgan = PatchDiscriminator(
            spatial_dims=3,
            channels=int(width),
            in_channels=self.in_channels,
            out_channels=1,
            num_layers_d=self.n_layers,
            norm="instance",
        )

    @property
    def min_size(self) -> int:
        """Smallest spatial size: two voxels per axis at the last normalised layer."""
        return patchgan_min_size(self.n_layers)

    def check_spatial_shape(self, shape: Sequence[int]) -> None:
        """``ValueError`` naming the minimum when D cannot take ``shape``."""
        _check_shape(shape, self.min_size, 1, "Pix2Pix discriminator")

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        if image.ndim != 5 or condition.ndim != 5 or image.shape[2:] != condition.shape[2:]:
            raise ValueError(f"image {tuple(image.shape)} and label map {tuple(condition.shape)} must be [B, C, X, Y, Z] on one grid")
        x = torch.cat([image, condition.to(image.dtype)], dim=1)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Pix2Pix discriminator expects {self.in_channels} channels (image ⊕ label map), got {x.shape[1]}")
        self.check_spatial_shape(x.shape[2:])
        return self.patchgan(x)[-1]


# --- From the settings -----------------------------------------------------------------


def make_generator(pix2pix: Pix2PixSettings, n_modalities: int) -> Generator:
    """G for images of ``n_modalities`` channels."""
    return Generator(out_channels=n_modalities, widths=pix2pix.generator_widths)


def build_networks(pix2pix: Pix2PixSettings, n_modalities: int, seed: int) -> tuple[Generator, Discriminator]:
    """G and D, their weights drawn (in this order) after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    generator = make_generator(pix2pix, n_modalities)
    discriminator = Discriminator(n_modalities, width=pix2pix.discriminator_width, n_layers=pix2pix.discriminator_layers)
    return generator, discriminator
