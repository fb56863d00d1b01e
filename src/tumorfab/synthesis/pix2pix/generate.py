"""3D Pix2Pix generation (paper 002 §3.2.1 (2)): the ``pix2pix`` source.

Pix2Pix turns a label map into an image; which label maps? Ours are
TF-Aug's: case ``pix2pix_{i:04d}`` takes the labels, brain mask, affine and
header of ``tfaug_{i:04d}`` (the TF-Aug manifest's first ``n_cases`` rows:
masks of the mask bank, augmented and placed in a healthy brain), so Pix2Pix
and TF differ only in how the image is made, and Pix2Pix's nested sets are
TF-Aug's (the paper says only that the layouts are label maps with a brain
label).

The image is ``G(label map)`` over the whole volume by the GANs' brain-box
sliding window (``tumorfab.synthesis.gan.brain_box_inference``: windows of
``window``³ voxels, ``overlap``, Gaussian blending, over the brain's bounding
box plus a margin, padded with background where smaller than a window), -1
outside the brain mask. G draws nothing (no dropout), so generating ``n``
cases gives the first ``n`` of generating ``m > n``, byte for byte.

The loop, the generator file and its checks are the GANs' shared generation
(``tumorfab.synthesis.gan.generate_cases``); this module adds G's input (the
label map) and its manifest columns (:data:`MANIFEST_COLUMNS`): the layout
case and its healthy subject (copied from the TF-Aug manifest).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from tumorfab.casefolder import Case
from tumorfab.synthesis import gan
from tumorfab.synthesis.gan_settings import Pix2PixSettings
from tumorfab.synthesis.pix2pix.networks import LABEL_MAP_PAD_VALUES, label_map, make_generator

SOURCE = "pix2pix"
MANIFEST_COLUMNS = ["case_id", "layout_case", "healthy_subject", "seed", "generator_sha256", "window", "overlap"]


@torch.no_grad()
def synthesize_volume(
    generator: torch.nn.Module,
    seg: np.ndarray,
    brainmask: np.ndarray,
    window: int,
    overlap: float,
    device: torch.device,
    mixed_precision: str,
) -> np.ndarray:
    """The image G makes of one layout: ``seg`` and ``brainmask`` [X, Y, Z] ->
    [n_modalities, X, Y, Z] float32 in [-1, 1], -1 outside the brain mask."""
    condition = label_map(
        torch.from_numpy(np.ascontiguousarray(seg[None, None]).astype(np.int64)),
        torch.from_numpy(np.ascontiguousarray(brainmask[None, None]).astype(np.int64)),
    )[0].numpy()
    return gan.brain_box_inference(generator, condition, LABEL_MAP_PAD_VALUES, brainmask, window, overlap, device, mixed_precision)


def generate_pix2pix(
    layout_manifest: str | os.PathLike,
    layout_cases_dir: str | os.PathLike,
    generator_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    n_cases: int,
    modalities: Sequence[str],
    seed: int,
    pix2pix: Pix2PixSettings,
    threads: int,
    device: str | None = None,
) -> pd.DataFrame:
    """The ``generate_pix2pix`` rule: an image for each of the first ``n_cases``
    TF-Aug layouts (``layout_manifest``/``layout_cases_dir``: TF-Aug's manifest
    and case folders) by the ``train_pix2pix`` rule's G (``pix2pix``: the
    window, overlap and mixed precision). Returns the manifest.
    """
    layouts = pd.read_csv(layout_manifest, dtype={"case_id": str, "healthy_subject": str}).set_index("case_id")
    if "healthy_subject" not in layouts.columns:
        raise ValueError(f"{layout_manifest}: no healthy_subject column; Pix2Pix's layouts are TF-Aug's cases")

    def synthesize(generator: torch.nn.Module, layout_id: str, layout: Case, device: torch.device) -> tuple[np.ndarray, dict]:
        image = synthesize_volume(
            generator, layout.seg, layout.brainmask, pix2pix.window, pix2pix.overlap, device, pix2pix.mixed_precision
        )
        return image, {"layout_case": layout_id, "healthy_subject": layouts.loc[layout_id, "healthy_subject"]}

    return gan.generate_cases(
        layout_manifest, layout_cases_dir, generator_path, out_dir, manifest_path, n_cases, modalities, seed, threads,
        device, source=SOURCE, columns=MANIFEST_COLUMNS, settings=pix2pix, make_generator=make_generator,
        synthesize=synthesize, layout_images=False,
    )
