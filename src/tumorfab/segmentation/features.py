"""Feature extractor F: the frozen encoder of the baseline nnU-Net (paper 002 §2.2).

The paper fits TF-Aug's intensities and trains TF-GAN's class-wise perceptual
loss on features of "the first layers" of the baseline segmentation network's
encoder. F loads a trained model folder (plans, dataset.json,
``fold_all/checkpoint_final.pth``), builds the network with nnU-Net's own
builder (:func:`tumorfab.segmentation.model.load_trained_model`: what the
trainer's ``build_network_architecture`` builds), and keeps the first
``n_stages`` encoder stages, frozen and in eval mode.

F takes pipeline images (``[B, C, X, Y, Z]`` in nibabel's axis order, brain
in [-1, 1], background -1) and their brain masks, and feeds the encoder what
nnU-Net fed it in training:

1. :func:`~tumorfab.segmentation.dataset.to_nnunet_image`: ``x + 2`` in the
   brain, 0 outside;
2. nnU-Net's z-score: per image and channel, mean and standard deviation of
   the voxels in the non-zero mask (holes filled, as nnU-Net's
   ``create_nonzero_mask``), ``(x - mean) / max(std, 1e-8)`` inside, 0
   outside (``ZScoreNormalization`` with ``use_mask_for_norm``; the whole
   volume when the plan says not to use the mask);
3. nnU-Net's axis order: its NIfTI reader reverses the axes (``Z, Y, X``)
   and the plan may transpose them (``transpose_forward``).

The returned feature maps are permuted back to the pipeline's axis order, so
masks in pipeline space can be pooled against them after down-sampling.
Cropping to the non-zero region (nnU-Net's) is not applied: convolutions give
the same values inside the brain, away from the volume border. F assumes the
images are on the plan's voxel spacing (every pipeline image is on the
reference grid the baseline was trained on). Gradients flow to the image.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from tumorfab.device import resolve_device

#: nnU-Net's NibabelIO reverses the axes of a NIfTI array (to SimpleITK's order).
_READER_AXES = (2, 1, 0)


def to_nnunet_tensor(image: torch.Tensor, brainmask: torch.Tensor) -> torch.Tensor:
    """Torch version of ``dataset.to_nnunet_image``: ``x + 2`` inside, exactly 0 outside."""
    inside = brainmask.to(torch.bool)
    return torch.where(inside, image + 2.0, torch.zeros((), dtype=image.dtype, device=image.device))


def nonzero_mask(x: torch.Tensor) -> torch.Tensor:
    """nnU-Net's non-zero mask of ``[B, C, *spatial]``: any channel != 0, holes filled. ``[B, *spatial]``."""
    nonzero = (x.detach() != 0).any(dim=1).cpu().numpy()
    filled = np.stack([ndimage.binary_fill_holes(m) for m in nonzero])
    return torch.from_numpy(filled).to(x.device)


def zscore_like_nnunet(x: torch.Tensor, mask: torch.Tensor | None, eps: float = 1e-8) -> torch.Tensor:
    """Per image and channel z-score inside ``mask`` (``[B, *spatial]``); unchanged outside.

    Same as nnU-Net's ``ZScoreNormalization.run`` (population std, ``max(std, eps)``);
    ``mask=None`` normalizes over the whole volume (``use_mask_for_norm`` false).
    """
    out = []
    for b in range(x.shape[0]):
        channels = []
        for c in range(x.shape[1]):
            v = x[b, c]
            if mask is None:
                values = v.reshape(-1)
            else:
                values = v[mask[b]]
            mean = values.mean()
            std = torch.clamp(values.std(unbiased=False), min=eps)
            normalized = (v - mean) / std
            channels.append(normalized if mask is None else torch.where(mask[b], normalized, v))
        out.append(torch.stack(channels))
    return torch.stack(out)


class FeatureExtractor(nn.Module):
    """The first encoder stages of a trained nnU-Net, frozen, with nnU-Net's input normalization.

    ``forward(image, brainmask)`` -> list of ``n_stages`` feature maps
    ``[B, C_s, X_s, Y_s, Z_s]`` (pipeline axis order). ``output_channels`` and
    ``strides`` (cumulative down-sampling per stage, pipeline axis order)
    describe them.
    """

    def __init__(
        self,
        stem: nn.Module | None,
        stages: list[nn.Module],
        output_channels: list[int],
        strides: list[list[int]],
        use_mask_for_norm: list[bool],
        transpose_forward: list[int],
    ):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.use_mask_for_norm = list(use_mask_for_norm)
        axes = [_READER_AXES[t] for t in transpose_forward]  # network axis j = pipeline axis axes[j]
        self._to_network = (0, 1, *[2 + a for a in axes])
        self._to_pipeline = tuple(int(i) for i in np.argsort(self._to_network))
        self.output_channels = list(output_channels)
        cumulative, total = [], np.ones(3, dtype=int)
        for stride in strides:
            total = total * np.asarray(stride)
            # stride is given on network axes; report it on pipeline axes
            cumulative.append([int(total[axes.index(k)]) for k in range(3)])
        self.strides = cumulative
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """F stays in eval mode (frozen), whatever a parent module asks."""
        return super().train(False)

    def normalize(self, image: torch.Tensor, brainmask: torch.Tensor) -> torch.Tensor:
        """The encoder's input in pipeline axis order: to_nnunet_image, then nnU-Net's z-score."""
        if image.ndim != 5:
            raise ValueError(f"image must be [B, C, X, Y, Z], got shape {tuple(image.shape)}")
        if brainmask.ndim == 4:
            brainmask = brainmask[:, None]
        if len(self.use_mask_for_norm) != image.shape[1]:
            raise ValueError(f"F was trained on {len(self.use_mask_for_norm)} channel(s), got {image.shape[1]}")
        x = to_nnunet_tensor(image, brainmask)
        mask = nonzero_mask(x)
        channels = [
            zscore_like_nnunet(x[:, c : c + 1], mask if self.use_mask_for_norm[c] else None)
            for c in range(x.shape[1])
        ]
        return torch.cat(channels, dim=1)

    def forward(self, image: torch.Tensor, brainmask: torch.Tensor) -> list[torch.Tensor]:
        x = self.normalize(image, brainmask).permute(*self._to_network)
        if self.stem is not None:
            x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x.permute(*self._to_pipeline))
        return features


def load_feature_extractor(
    model_dir: str | os.PathLike, n_stages: int, device: str | torch.device | None = None
) -> FeatureExtractor:
    """F from a trained model folder (the baseline model of one seed).

    ``model_dir`` holds ``plans.json``, ``dataset.json`` and
    ``fold_all/checkpoint_final.pth`` (``results/segmentation/models/
    {baseline}/seed{seed}``). ``device``: as :func:`tumorfab.device.resolve_device`
    takes it (None: the GPU when there is one).
    """
    from tumorfab.segmentation.model import load_trained_model

    model = load_trained_model(model_dir)
    network, manager, config = model.network, model.plans_manager, model.configuration
    encoder = network.encoder
    available = len(encoder.stages)
    if not 1 <= n_stages <= available:
        raise ValueError(f"n_stages must be in 1..{available} (the encoder has {available} stages)")
    extractor = FeatureExtractor(
        stem=getattr(encoder, "stem", None),
        stages=list(encoder.stages[:n_stages]),
        output_channels=list(encoder.output_channels[:n_stages]),
        strides=[list(s) for s in encoder.strides[:n_stages]],
        use_mask_for_norm=list(config.use_mask_for_norm),
        transpose_forward=list(manager.transpose_forward),
    )
    return extractor.to(resolve_device(device))
