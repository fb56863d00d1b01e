"""TF-GAN refinement (paper 002 §2.2, §3.1.3): the ``tf`` source.

Every coarse pair of TF-Aug, in manifest order, is refined as a whole volume
by G with MONAI's sliding-window inferer and Gaussian-weighted blending of the
overlapping windows (the paper saw square artifacts without it). The labels
and the brain mask are the coarse pair's, unchanged; the refined image is -1
outside the brain (the case-folder contract). Case ``tf_{i:04d}`` is the
refinement of ``tfaug_{i:04d}``, so the nested sets of TF are those of TF-Aug.

The loop, the generator file and its checks are the GANs' shared
generation (``tumorfab.synthesis.gan.generate_cases``); this module adds G's
input (the coarse image ⊕ its one-hot labels) and its manifest columns: the
coarse case and ``within_margin_fraction``, the share of brain voxels
outside the ROI whose refined value stays within the hinge margin of the
coarse one (how well refinement keeps the anatomy, the aim of Eq. 2).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from tumorfab.casefolder import Case
from tumorfab.synthesis import gan
from tumorfab.synthesis.gan_settings import TFGANSettings
from tumorfab.synthesis.tfgan.networks import N_MASK_CHANNELS, generator_input, make_generator

SOURCE = "tf"
MANIFEST_COLUMNS = [
    "case_id",
    "coarse_case",
    "seed",
    "generator_sha256",
    "window",
    "overlap",
    "within_margin_fraction",
]


@torch.no_grad()
def refine_volume(
    generator: torch.nn.Module,
    image: np.ndarray,
    labels: np.ndarray,
    brainmask: np.ndarray,
    window: int,
    overlap: float,
    device: torch.device,
    mixed_precision: str,
) -> np.ndarray:
    """G over a whole volume: ``image`` [C, X, Y, Z] in [-1, 1], ``labels`` and
    ``brainmask`` [X, Y, Z]. G's input, the image ⊕ the one-hot labels
    (:func:`generator_input`), goes through the GANs' brain-box sliding window
    (``tumorfab.synthesis.gan.brain_box_inference``): windows of ``window``³
    voxels overlapping by ``overlap`` (a fraction), blended with Gaussian
    weights, over the brain's bounding box plus ``BRAIN_MARGIN`` voxels,
    padded where smaller than a window (image -1, background label). Returns
    the refined image [C, X, Y, Z] float32, -1 outside the brain."""
    x = torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32))
    m = torch.from_numpy(np.ascontiguousarray(labels[None, None]).astype(np.int64))
    inputs = generator_input(x, m)[0].numpy()
    pad_values = [-1.0] * image.shape[0] + [1.0] + [0.0] * (N_MASK_CHANNELS - 1)
    return gan.brain_box_inference(generator, inputs, pad_values, brainmask, window, overlap, device, mixed_precision)


def within_margin_fraction(refined: np.ndarray, coarse: np.ndarray, labels: np.ndarray, brainmask: np.ndarray, margin: float) -> float:
    """Share of brain voxels outside the ROI whose change is at most ``margin`` (every channel)."""
    outside = (brainmask > 0) & (labels == 0)
    if not outside.any():
        return float("nan")
    close = (np.abs(refined - coarse) <= margin).all(axis=0)
    return float(close[outside].mean())


def generate_tf(
    coarse_manifest: str | os.PathLike,
    coarse_cases_dir: str | os.PathLike,
    generator_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    n_cases: int,
    modalities: Sequence[str],
    seed: int,
    tfgan: TFGANSettings,
    threads: int,
    device: str | None = None,
) -> pd.DataFrame:
    """The ``generate_tf`` rule: refine the first ``n_cases`` coarse pairs
    (``tfgan``: the window, overlap, mixed precision and hinge margin) with the
    ``train_tfgan`` rule's G. Returns the manifest (:data:`MANIFEST_COLUMNS`).
    """

    def refine(generator: torch.nn.Module, coarse_id: str, coarse: Case, device: torch.device) -> tuple[np.ndarray, dict]:
        image = coarse.stacked(modalities)
        refined = refine_volume(
            generator, image, coarse.seg, coarse.brainmask, tfgan.window, tfgan.overlap, device, tfgan.mixed_precision
        )
        kept = within_margin_fraction(refined, image, coarse.seg, coarse.brainmask, tfgan.hinge_margin)
        return refined, {"coarse_case": coarse_id, "within_margin_fraction": round(kept, 6)}

    return gan.generate_cases(
        coarse_manifest, coarse_cases_dir, generator_path, out_dir, manifest_path, n_cases, modalities, seed, threads,
        device, source=SOURCE, columns=MANIFEST_COLUMNS, settings=tfgan, make_generator=make_generator,
        synthesize=refine, layout_images=True,
    )
