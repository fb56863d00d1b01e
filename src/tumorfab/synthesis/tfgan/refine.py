"""TF-GAN refinement (paper 002 §2.2, §3.1.3; SPEC §2 items 5-6): the ``tf`` source.

Every coarse pair of TF-Aug, in manifest order, is refined as a whole volume
by G with MONAI's sliding-window inferer and Gaussian-weighted blending of the
overlapping windows (the paper saw square artifacts without it). The labels
and the brain mask are the coarse pair's, unchanged; the refined image is -1
outside the brain (the case-folder contract). Case ``tf_{i:04d}`` is the
refinement of ``tfaug_{i:04d}``, so the nested sets of TF are those of TF-Aug.

The manifest records, per case, the coarse case, the generator checkpoint
(its SHA-256), the window and overlap, and ``within_margin_fraction``: the
share of brain voxels outside the ROI whose refined value stays within the
hinge margin of the coarse one (how well refinement keeps the anatomy, the
aim of Eq. 2).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from tumorfab.casefolder import Case, load_case, save_case
from tumorfab.io import atomic_directory
from tumorfab.synthesis.gan import BRAIN_MARGIN, brain_box_inference, cpu_layout, file_sha256, resolve_device  # noqa: F401  (BRAIN_MARGIN: benchmarks)
from tumorfab.synthesis.manifest import first_cases, synthetic_case_id, write_manifest
from tumorfab.synthesis.tfgan.networks import N_MASK_CHANNELS, Generator, generator_input
from tumorfab.synthesis.tfgan.train import make_generator

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "case_id",
    "coarse_case",
    "seed",
    "generator_sha256",
    "window",
    "overlap",
    "within_margin_fraction",
]


def load_generator(path: str | os.PathLike, device: torch.device) -> tuple[Generator, dict]:
    """G and its training record from the ``train_tfgan`` rule's ``generator.pt``."""
    record = torch.load(path, map_location=device, weights_only=False)
    generator = make_generator(record["tfgan"], int(record["n_modalities"]))
    generator.load_state_dict(record["generator"])
    return cpu_layout(generator.to(device), device).eval(), record


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
    return brain_box_inference(generator, inputs, pad_values, brainmask, window, overlap, device, mixed_precision)


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
    window: int,
    overlap: float,
    hinge_margin: float,
    mixed_precision: str,
    threads: int,
    device: str | None = None,
):
    """The ``generate_tf`` rule: refine the first ``n_cases`` coarse pairs.

    ``out_dir`` (the cases folder) is built whole and renamed into place; the
    manifest (:data:`MANIFEST_COLUMNS`) is written after it. ``seed`` is the
    study seed, recorded: refinement itself draws nothing.
    """
    torch.set_num_threads(threads)
    device = resolve_device(device)
    coarse_ids = first_cases(coarse_manifest, n_cases)
    generator, _ = load_generator(generator_path, device)
    digest = file_sha256(generator_path)
    rows = []
    with atomic_directory(out_dir) as tmp:
        for index, coarse_id in enumerate(coarse_ids):
            coarse = load_case(Path(coarse_cases_dir) / coarse_id, modalities)
            image = coarse.stacked(modalities)
            refined = refine_volume(generator, image, coarse.seg, coarse.brainmask, window, overlap, device, mixed_precision)
            case_id = synthetic_case_id("tf", index)
            images = {m: refined[c] for c, m in enumerate(modalities)}
            save_case(Case(images, coarse.brainmask, coarse.seg, coarse.affine, coarse.header), tmp / case_id)
            kept = within_margin_fraction(refined, image, coarse.seg, coarse.brainmask, hinge_margin)
            log.info("%s <- %s: %.3f of the brain outside the ROI within the margin", case_id, coarse_id, kept)
            rows.append(
                {
                    "case_id": case_id,
                    "coarse_case": coarse_id,
                    "seed": seed,
                    "generator_sha256": digest,
                    "window": window,
                    "overlap": overlap,
                    "within_margin_fraction": round(kept, 6),
                }
            )
    return write_manifest(rows, MANIFEST_COLUMNS, manifest_path, "tf")
