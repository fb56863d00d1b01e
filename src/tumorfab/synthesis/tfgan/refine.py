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

With more than one modality G is a modality translator
(docs/interpretations.md, "TF-GAN as a modality translator"): each coarse
pair is refined with the indicators of the channels its healthy scan gave
(the TF-Aug manifest's ``healthy_channels``, ``channels.coarse_presence``);
G makes the others from TF-Aug's fill of them, the margin fraction counts
the given channels only, and the manifest copies ``healthy_channels``.
:func:`translate` runs G on a real case given some of its channels, the
others filled as in training (the translation's evaluation).
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from tumorfab.casefolder import Case
from tumorfab.synthesis import gan
from tumorfab.synthesis.gan_settings import TFGANSettings
from tumorfab.synthesis.manifest import first_cases
from tumorfab.device import module_device, resolve_device
from tumorfab.synthesis.tfaug.fill import FILL_SOURCE, fill_missing
from tumorfab.synthesis.tfgan.channels import HEALTHY_CHANNELS_COLUMN, coarse_presence, presence_vector
from tumorfab.synthesis.tfgan.networks import N_MASK_CHANNELS, generator_input, make_generator, uses_presence_indicators

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


def manifest_columns(n_modalities: int) -> list[str]:
    """The manifest's columns: :data:`MANIFEST_COLUMNS`, and a translator's ``healthy_channels``."""
    return MANIFEST_COLUMNS + ([HEALTHY_CHANNELS_COLUMN] if uses_presence_indicators(n_modalities) else [])


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
    present: np.ndarray | None = None,
) -> np.ndarray:
    """G over a whole volume: ``image`` [C, X, Y, Z] in [-1, 1], ``labels`` and
    ``brainmask`` [X, Y, Z]; a translator's ``present`` [C] (1/0: the
    channels G is given). G's input, the image ⊕ (a translator's presence
    indicators ⊕) the one-hot labels (:func:`generator_input`), goes through
    the GANs' brain-box sliding window
    (``tumorfab.synthesis.gan.brain_box_inference``): windows of ``window``³
    voxels overlapping by ``overlap`` (a fraction), blended with Gaussian
    weights, over the brain's bounding box plus ``BRAIN_MARGIN`` voxels,
    padded where smaller than a window (image -1, an absent channel's fill
    included; indicators their value; background label). Returns the refined
    image [C, X, Y, Z] float32, -1 outside the brain."""
    x = torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32))
    m = torch.from_numpy(np.ascontiguousarray(labels[None, None]).astype(np.int64))
    mask_pad = [1.0] + [0.0] * (N_MASK_CHANNELS - 1)
    if present is None:
        inputs = generator_input(x, m)[0].numpy()
        pad_values = [-1.0] * image.shape[0] + mask_pad
    else:
        present = np.asarray(present, dtype=np.float32)
        inputs = generator_input(x, m, torch.from_numpy(present[None]))[0].numpy()
        pad_values = [-1.0] * image.shape[0] + [float(p) for p in present] + mask_pad
    return gan.brain_box_inference(generator, inputs, pad_values, brainmask, window, overlap, device, mixed_precision)


def within_margin_fraction(
    refined: np.ndarray,
    coarse: np.ndarray,
    labels: np.ndarray,
    brainmask: np.ndarray,
    margin: float,
    present: np.ndarray | None = None,
) -> float:
    """Share of brain voxels outside the ROI whose change is at most ``margin`` (every
    channel; a translator's: every channel in ``present`` [C], those G was given)."""
    outside = (brainmask > 0) & (labels == 0)
    if not outside.any():
        return float("nan")
    if present is not None:
        given = np.asarray(present) > 0
        refined, coarse = refined[given], coarse[given]
    close = (np.abs(refined - coarse) <= margin).all(axis=0)
    return float(close[outside].mean())


def load_trained_generator(generator_path: str | os.PathLike, device: str | torch.device | None = None) -> gan.TrainedGenerator:
    """The ``train_tfgan`` rule's G (``gan.load_generator``); ``device`` None or ``auto``: the GPU when there is one."""
    return gan.load_generator(generator_path, resolve_device(device), TFGANSettings, make_generator)


def translate(
    generator: gan.TrainedGenerator | str | os.PathLike,
    images: Mapping[str, np.ndarray],
    brainmask: np.ndarray,
    labels: np.ndarray,
    present: Sequence[str],
    window: int | None = None,
    device: str | torch.device | None = None,
) -> dict[str, np.ndarray]:
    """Every channel of a case as G makes it from the ``present`` ones alone.

    ``generator``: a trained G (:func:`load_trained_generator`; load it once
    for many cases) or its generator file. ``images``: channel -> [X, Y, Z]
    in [-1, 1] (the case-folder scale); only the ``present`` channels are
    read (each must be among G's modalities, and with a one-modality G that
    one); an absent channel is given to G as in training, t1n
    histogram-matched onto the quantiles the generator file keeps
    (``tfaug.fill.fill_missing``), so ``present`` must hold t1n.
    ``brainmask`` and ``labels`` [X, Y, Z]: G is conditioned on the
    tumour labels. ``window``: the sliding window's side (None: G's training
    setting ``tfgan.window``); overlap and mixed precision are G's settings.
    ``device``: where a generator file is loaded (None or ``auto``: the GPU
    when there is one); a loaded G runs where it is. Returns every
    channel of G's modalities, float32 in [-1, 1], -1 outside the brain; a
    present channel comes back refined (G's output), not copied.
    """
    trained = generator if isinstance(generator, gan.TrainedGenerator) else load_trained_generator(generator, device)
    modalities = trained.modalities
    mask = presence_vector(list(present), modalities, "translate: present")
    missing = [m for m in present if m not in images]
    if missing:
        raise ValueError(f"translate: present channels {missing} are not among the images {sorted(images)}")
    translator = uses_presence_indicators(len(modalities))
    if not translator and not mask.all():
        raise ValueError(f"translate: G was trained on {modalities} alone; it cannot make a channel it is not given")
    window = trained.settings.window if window is None else int(window)
    trained.network.check_spatial_shape((window,) * 3)
    given = {m: np.asarray(images[m], dtype=np.float32) for m in present}
    if not mask.all():
        if FILL_SOURCE not in given:
            raise ValueError(
                f"translate: G fills an absent channel from {FILL_SOURCE}, which is not among present {list(present)}"
            )
        unfilled = [m for m in modalities if m not in given and m not in trained.fill_quantiles]
        if unfilled:
            raise ValueError(
                f"translate: the generator file keeps no fill quantiles for {unfilled} (made before G was given "
                "fills; retrain TF-GAN)"
            )
        given = fill_missing(given, np.asarray(brainmask), modalities, trained.fill_quantiles)
    image = np.stack([given[m] for m in modalities])
    output = refine_volume(
        trained.network, image, np.asarray(labels), np.asarray(brainmask), window, trained.settings.overlap,
        module_device(trained.network), trained.settings.mixed_precision, mask if translator else None,
    )
    return {m: output[c] for c, m in enumerate(modalities)}


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
    ``train_tfgan`` rule's G; a translator gives G each pair's healthy
    channels only. Returns the manifest (:func:`manifest_columns`).
    """
    translator = uses_presence_indicators(len(modalities))
    if translator:
        coarse_ids = first_cases(coarse_manifest, n_cases)
        presence = dict(zip(coarse_ids, coarse_presence(coarse_manifest, coarse_ids, modalities)))

    def refine(generator: torch.nn.Module, coarse_id: str, coarse: Case, device: torch.device) -> tuple[np.ndarray, dict]:
        image = coarse.stacked(modalities)
        present = presence[coarse_id] if translator else None
        refined = refine_volume(
            generator, image, coarse.seg, coarse.brainmask, tfgan.window, tfgan.overlap, device, tfgan.mixed_precision,
            present,
        )
        kept = within_margin_fraction(refined, image, coarse.seg, coarse.brainmask, tfgan.hinge_margin, present)
        own = {"coarse_case": coarse_id, "within_margin_fraction": round(kept, 6)}
        if translator:
            own[HEALTHY_CHANNELS_COLUMN] = json.dumps([m for m, p in zip(modalities, present) if p])
        return refined, own

    return gan.generate_cases(
        coarse_manifest, coarse_cases_dir, generator_path, out_dir, manifest_path, n_cases, modalities, seed, threads,
        device, source=SOURCE, columns=manifest_columns(len(modalities)), settings=tfgan, make_generator=make_generator,
        synthesize=refine, layout_images=True,
    )
