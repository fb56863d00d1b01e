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

import hashlib
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from tumorfab.casefolder import Case, load_case, save_case
from tumorfab.io import atomic_directory
from tumorfab.synthesis.manifest import first_cases, synthetic_case_id, write_manifest
from tumorfab.synthesis.tfgan.networks import Generator, generator_input
from tumorfab.synthesis.tfgan.train import autocast_dtype, make_generator

log = logging.getLogger(__name__)

#: Voxels kept around the brain's bounding box, so that G sees the brain's
#: edge with background around it, as in its training crops.
BRAIN_MARGIN = 8

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
    return generator.to(device).eval(), record


def _padded(image: torch.Tensor, labels: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Pad to at least one window per axis: image -1, labels background."""
    shape = image.shape[2:]
    pad = [max(window - s, 0) for s in shape]
    if not any(pad):
        return image, labels, tuple(slice(0, s) for s in shape)
    spec = [p for axis in reversed(range(3)) for p in (0, pad[axis])]
    return (
        torch.nn.functional.pad(image, spec, value=-1.0),
        torch.nn.functional.pad(labels, spec, value=0),
        tuple(slice(0, s) for s in shape),
    )


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
    ``brainmask`` [X, Y, Z]. Windows of ``window``³ voxels overlapping by
    ``overlap`` (a fraction), blended with Gaussian weights, over the brain's
    bounding box plus :data:`BRAIN_MARGIN` voxels (outside it the image is
    background, -1, and so is the result: a BraTS volume needs 8 windows of
    128³ instead of 18). Returns the refined image [C, X, Y, Z] float32, -1
    outside the brain."""
    inside = np.argwhere(brainmask > 0)
    if not len(inside):
        raise ValueError("refine_volume: the brain mask is empty")
    lo = np.maximum(inside.min(0) - BRAIN_MARGIN, 0)
    hi = np.minimum(inside.max(0) + 1 + BRAIN_MARGIN, brainmask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    x = torch.from_numpy(np.ascontiguousarray(image[(slice(None), *box)][None], dtype=np.float32)).to(device)
    m = torch.from_numpy(np.ascontiguousarray(labels[box][None, None]).astype(np.int64)).to(device)
    x, m, keep = _padded(x, m, window)
    inputs = generator_input(x, m)
    dtype = autocast_dtype(mixed_precision, device)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        refined = sliding_window_inference(
            inputs, roi_size=(window,) * 3, sw_batch_size=1, predictor=generator, overlap=overlap, mode="gaussian"
        )
    result = np.full(image.shape, -1.0, dtype=np.float32)
    result[(slice(None), *box)] = refined.float()[0][(slice(None), *keep)].cpu().numpy()
    return np.where(brainmask[None] > 0, result, -1.0).astype(np.float32)


def within_margin_fraction(refined: np.ndarray, coarse: np.ndarray, labels: np.ndarray, brainmask: np.ndarray, margin: float) -> float:
    """Share of brain voxels outside the ROI whose change is at most ``margin`` (every channel)."""
    outside = (brainmask > 0) & (labels == 0)
    if not outside.any():
        return float("nan")
    close = (np.abs(refined - coarse) <= margin).all(axis=0)
    return float(close[outside].mean())


def _sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    coarse_ids = first_cases(coarse_manifest, n_cases)
    generator, _ = load_generator(generator_path, device)
    digest = _sha256(generator_path)
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
