"""3D Pix2Pix generation (paper 002 §3.2.1 (2); SPEC §2 items 6-7): the ``pix2pix`` source.

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
cases gives the first ``n`` of generating ``m > n``, byte for byte; ``seed``
is the study seed, recorded.

The manifest (:data:`MANIFEST_COLUMNS`) records the layout case, its healthy
subject (copied from the TF-Aug manifest), the seed, the generator file's
SHA-256, the window and the overlap.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from tumorfab.casefolder import Case, load_case, save_case
from tumorfab.io import atomic_directory
from tumorfab.synthesis.gan import brain_box_inference, cpu_layout, file_sha256, resolve_device
from tumorfab.synthesis.manifest import first_cases, synthetic_case_id, write_manifest
from tumorfab.synthesis.pix2pix.networks import LABEL_MAP_PAD_VALUES, Generator, label_map, make_generator

log = logging.getLogger(__name__)

SOURCE = "pix2pix"
MANIFEST_COLUMNS = ["case_id", "layout_case", "healthy_subject", "seed", "generator_sha256", "window", "overlap"]


def load_generator(path: str | os.PathLike, device: torch.device) -> tuple[Generator, dict]:
    """G (in eval mode) and its training record from the ``train_pix2pix`` rule's generator file."""
    record = torch.load(path, map_location=device, weights_only=False)
    generator = make_generator(record["pix2pix"], int(record["n_modalities"]))
    generator.load_state_dict(record["generator"])
    return cpu_layout(generator.to(device), device).eval(), record


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
    return brain_box_inference(generator, condition, LABEL_MAP_PAD_VALUES, brainmask, window, overlap, device, mixed_precision)


def generate_pix2pix(
    layout_manifest: str | os.PathLike,
    layout_cases_dir: str | os.PathLike,
    generator_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    n_cases: int,
    modalities: Sequence[str],
    seed: int,
    window: int,
    overlap: float,
    mixed_precision: str,
    threads: int,
    device: str | None = None,
) -> pd.DataFrame:
    """The ``generate_pix2pix`` rule: an image for each of the first ``n_cases`` TF-Aug layouts.

    ``layout_manifest``/``layout_cases_dir``: TF-Aug's manifest and case
    folders; ``generator_path``: the ``train_pix2pix`` rule's file (its
    modalities must be ``modalities``). ``out_dir`` (the cases folder) is
    built whole and renamed into place; the manifest is written after it.
    ``window`` must suit G (``Generator.check_spatial_shape``).
    Returns the manifest.
    """
    torch.set_num_threads(threads)
    device = resolve_device(device)
    layout_ids = first_cases(layout_manifest, n_cases)
    layouts = pd.read_csv(layout_manifest, dtype={"case_id": str, "healthy_subject": str}).set_index("case_id")
    if "healthy_subject" not in layouts.columns:
        raise ValueError(f"{layout_manifest}: no healthy_subject column; Pix2Pix's layouts are TF-Aug's cases")
    generator, record = load_generator(generator_path, device)
    if list(record["modalities"]) != list(modalities):
        raise ValueError(f"{generator_path}: G was trained for modalities {record['modalities']}, not {list(modalities)}")
    generator.check_spatial_shape((int(window),) * 3)
    digest = file_sha256(generator_path)
    rows = []
    with atomic_directory(out_dir) as tmp:
        for index, layout_id in enumerate(layout_ids):
            layout = load_case(Path(layout_cases_dir) / layout_id, [])
            image = synthesize_volume(generator, layout.seg, layout.brainmask, int(window), float(overlap), device, mixed_precision)
            case_id = synthetic_case_id(SOURCE, index)
            images = {m: image[c] for c, m in enumerate(modalities)}
            save_case(Case(images, layout.brainmask, layout.seg, layout.affine, layout.header), tmp / case_id)
            log.info("%s <- the labels of %s", case_id, layout_id)
            rows.append(
                {
                    "case_id": case_id,
                    "layout_case": layout_id,
                    "healthy_subject": layouts.loc[layout_id, "healthy_subject"],
                    "seed": seed,
                    "generator_sha256": digest,
                    "window": window,
                    "overlap": overlap,
                }
            )
    return write_manifest(rows, MANIFEST_COLUMNS, manifest_path, SOURCE)
