"""TF-GAN's generator and discriminator (paper 002 §2.2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tumorfab.labels import ED, ET, LABELS, NCR
from tumorfab.synthesis.tfgan.networks import (
    N_MASK_CHANNELS,
    Discriminator,
    Generator,
    generator_input,
    one_hot_labels,
)

from helpers.paper_config import PAPER_GENERATOR_WIDTHS

TINY_WIDTHS = [4, 4, 8, 8, 8, 8]
SIZE = 64



def paper_generator() -> Generator:
    """G at the paper config's widths (config/config.yaml), for one modality."""
    return Generator(in_channels=1 + N_MASK_CHANNELS, out_channels=1, widths=PAPER_GENERATOR_WIDTHS)

def tiny_generator(n_modalities: int = 1) -> Generator:
    return Generator(in_channels=n_modalities + N_MASK_CHANNELS, out_channels=n_modalities, widths=TINY_WIDTHS)


def tiny_discriminator(n_modalities: int = 1) -> Discriminator:
    return Discriminator(in_channels=n_modalities + N_MASK_CHANNELS, width=4, max_channels=16)


def sample_labels(size: int = SIZE, batch: int = 1) -> torch.Tensor:
    labels = torch.zeros(batch, 1, size, size, size, dtype=torch.long)
    labels[:, :, 20:44, 20:44, 20:44] = ED
    labels[:, :, 26:38, 26:38, 26:38] = ET
    labels[:, :, 30:34, 30:34, 30:34] = NCR
    return labels


def sample_image(channels: int = 1, size: int = SIZE, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def stride2_convs(module: nn.Module) -> list[nn.Conv3d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv3d) and tuple(m.stride) == (2, 2, 2)]


# --- inputs ---


def test_one_hot_labels_channels_follow_label_order():
    labels = sample_labels()
    onehot = one_hot_labels(labels)
    assert onehot.shape == (1, len(LABELS), SIZE, SIZE, SIZE)
    assert onehot.dtype == torch.float32
    assert torch.equal(onehot.sum(dim=1), torch.ones(1, SIZE, SIZE, SIZE))
    for channel, value in enumerate(LABELS):
        assert torch.equal(onehot[:, channel].bool(), labels[:, 0] == value)
    assert torch.equal(one_hot_labels(labels.to(torch.int32)), onehot)


@pytest.mark.parametrize(
    "labels",
    [
        torch.zeros(1, 8, 8, 8, dtype=torch.long),  # no channel axis
        torch.zeros(1, 1, 8, 8, 8),  # float
        torch.full((1, 1, 8, 8, 8), 4, dtype=torch.long),  # legacy ET value
    ],
)
def test_one_hot_labels_rejects_bad_maps(labels):
    with pytest.raises(ValueError):
        one_hot_labels(labels)


def test_generator_input_concatenates_image_and_one_hot():
    image = sample_image(channels=2)
    x = generator_input(image, sample_labels())
    assert x.shape == (1, 2 + N_MASK_CHANNELS, SIZE, SIZE, SIZE)
    assert torch.equal(x[:, :2], image)
    assert torch.equal(x[:, 2:], one_hot_labels(sample_labels()))


# --- generator ---


def test_generator_has_six_levels_and_paper_defaults():
    G = tiny_generator()
    assert G.n_levels == 6 and len(G.encoder) == 6 and len(G.decoder) == 5
    assert len(stride2_convs(G)) == 5  # five down-samplings
    assert paper_generator().widths == tuple(PAPER_GENERATOR_WIDTHS) == (32, 64, 128, 256, 320, 320)
    assert G.size_multiple == 32 and G.min_size == 64


def test_generator_uses_nearest_upsampling_and_no_transposed_conv():
    G = tiny_generator()
    transposed = [m for m in G.modules() if isinstance(m, nn.modules.conv._ConvTransposeNd)]
    assert transposed == []
    upsamplers = [m for m in G.modules() if isinstance(m, nn.Upsample)]
    assert len(upsamplers) == 5
    assert all(m.mode == "nearest" for m in upsamplers)
    for level in G.decoder:  # each up-sampling is followed by a convolution
        assert isinstance(level.up.conv.conv, nn.Conv3d)


def test_an_untrained_generator_returns_the_coarse_image():
    G = tiny_generator(n_modalities=2)
    image = sample_image(channels=2, batch=2)
    with torch.no_grad():
        assert torch.equal(G(generator_input(image, sample_labels(batch=2))), image)


def test_generator_output_shape_and_range():
    torch.manual_seed(0)
    G = tiny_generator(n_modalities=2)
    torch.nn.init.normal_(G.head.weight, std=1.0)  # a trained G: a correction that reaches the clamp
    x = generator_input(sample_image(channels=2, batch=2), sample_labels(batch=2))
    with torch.no_grad():  # (a backward pass of a 3D U-Net takes tens of seconds on 2 CPU cores)
        y = G(x)
    assert y.shape == (2, 2, SIZE, SIZE, SIZE)
    assert torch.isfinite(y).all()
    assert y.min() >= -1 and y.max() <= 1
    assert y.std() > 0


def test_generator_accepts_non_cubic_multiples_of_32():
    G = tiny_generator()
    x = torch.zeros(1, 1 + N_MASK_CHANNELS, 64, 96, 128)
    with torch.no_grad():
        assert G(x).shape == (1, 1, 64, 96, 128)


@pytest.mark.parametrize("shape", [(32, 32, 32), (64, 64, 32), (80, 64, 64)])
def test_generator_rejects_unsupported_sizes_naming_the_minimum(shape):
    G = tiny_generator()
    with pytest.raises(ValueError, match="at least 64"):
        G(torch.zeros(1, 1 + N_MASK_CHANNELS, *shape))


def test_generator_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="5"):
        tiny_generator()(torch.zeros(1, 3, SIZE, SIZE, SIZE))


# --- discriminator ---


def test_discriminator_stages_heads_and_channel_cap():
    D = tiny_discriminator()
    convs = stride2_convs(D)
    assert len(convs) == 5 == D.n_stages
    assert [c.out_channels for c in convs] == [4, 8, 16, 16, 16]  # min(4 * 2**i, 16)
    assert max(m.out_channels for m in D.modules() if isinstance(m, nn.Conv3d)) <= 16
    # paper widths: 32 .. 256, never 512 or 1024
    assert Discriminator(in_channels=5, width=32, max_channels=256).channels == (32, 64, 128, 256, 256)
    # instance norm in every stage but the first
    norms = [any(isinstance(m, nn.InstanceNorm3d) for m in stage.modules()) for stage in D.encoder]
    assert norms == [False, True, True, True, True]
    assert all(
        m.negative_slope == pytest.approx(0.2) for m in D.modules() if isinstance(m, nn.LeakyReLU)
    )


def test_discriminator_outputs_patch_map_and_global_logit():
    D = tiny_discriminator()
    image = sample_image(batch=2)
    onehot = one_hot_labels(sample_labels(batch=2))
    patch, global_logits = D(image, onehot)
    assert patch.shape == (2, 1, 2, 2, 2)  # 64 / 2**5
    assert global_logits.shape == (2, 1)
    assert torch.isfinite(patch).all() and torch.isfinite(global_logits).all()
    # the mask conditions D: another mask, other logits
    other = one_hot_labels(torch.zeros_like(sample_labels(batch=2)))
    assert not torch.allclose(D(image, other)[1], global_logits)


def test_discriminator_rejects_too_small_crops():
    with pytest.raises(ValueError, match="at least 64"):
        tiny_discriminator()(torch.zeros(1, 1, 32, 32, 32), torch.zeros(1, 4, 32, 32, 32))


# --- precision, determinism ---


def test_autocast_bfloat16_forward_is_finite():
    G, D = tiny_generator(), tiny_discriminator()
    labels = sample_labels()
    x = generator_input(sample_image(), labels)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = G(x)
        patch, global_logits = D(y, one_hot_labels(labels))
    assert y.shape == (1, 1, SIZE, SIZE, SIZE)
    assert torch.isfinite(y.float()).all() and y.float().abs().max() <= 1
    assert torch.isfinite(patch.float()).all() and torch.isfinite(global_logits.float()).all()


def test_same_seed_gives_identical_weights():
    def weights(build):
        torch.manual_seed(123)
        return [p.detach().clone() for p in build().parameters()]

    for build in (tiny_generator, tiny_discriminator):
        a, b = weights(build), weights(build)
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    torch.manual_seed(124)
    other = [p.detach().clone() for p in tiny_generator().parameters()]
    assert not all(torch.equal(x, y) for x, y in zip(weights(tiny_generator), other, strict=True))


def test_parameter_counts_at_paper_widths():
    # G: a six-level nnU-Net-sized U-Net; D: capped at 256 channels (~7.0 M; uncapped 512 and ~11.2 M)
    assert 30e6 < paper_generator().parameter_count() < 40e6
    assert Discriminator(in_channels=5, width=32, max_channels=256).parameter_count() < 8e6
    uncapped = Discriminator(in_channels=5, width=32, max_channels=10**6)
    assert uncapped.channels[-1] == 512 and uncapped.parameter_count() > 11e6
