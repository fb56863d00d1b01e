"""Which channels G is given: TF-GAN as a modality translator (more than one modality).

Paper 002 §4 names modality translation as TF-GAN's future work; our design
(docs/interpretations.md, "TF-GAN as a modality translator"):

* **Coarse pairs** (:func:`coarse_presence`): a TF-Aug case holds every
  configured channel, but only those of its manifest's ``healthy_channels``
  (a JSON list, e.g. ``["t1n", "t2w"]``) come from its healthy scan; the
  others are TF-Aug's histogram-matched fill, which G is given as absent
  (indicator 0: to be translated, starting from the fill). Without the
  column every channel is present.
* **Translation on real cases** (:func:`draw_hidden_channels`): each step,
  each real crop hides a non-empty subset of its channels from G, never
  :data:`~tumorfab.study.layout.HEALTHY_CHANNEL` (a healthy scan always has
  it) and so never all; G is given their fills instead and taught to make
  them. The subsets the study meets (a healthy scan gives T1, sometimes T2)
  are drawn most: :data:`SCORED_SHARE` of the draws are "all but t1n" or
  "all but t1n and t2w" (one of them at random), the rest any non-empty
  subset, uniformly.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from tumorfab.study.layout import HEALTHY_CHANNEL
from tumorfab.synthesis.manifest import read_manifest

#: The TF-Aug manifest's column naming the channels a case took from its healthy scan.
HEALTHY_CHANNELS_COLUMN = "healthy_channels"
#: The channel the study's healthy scans most often have besides T1 (IXI's T2).
SECOND_HEALTHY_CHANNEL = "t2w"
#: Share of the hidden subsets that are the ones the study meets (module docstring).
SCORED_SHARE = 2 / 3


def presence_vector(present: Sequence[str], modalities: Sequence[str], who: str) -> np.ndarray:
    """``[C]`` float32, 1 for each of ``modalities`` in ``present``; an empty
    ``present`` or a channel outside ``modalities`` is an error naming ``who``."""
    unknown = sorted(set(present) - set(modalities))
    if unknown:
        raise ValueError(f"{who}: channels {unknown} are not among the modalities {list(modalities)}")
    if not len(present):
        raise ValueError(f"{who}: no channel given; G needs at least one of {list(modalities)}")
    return np.array([m in present for m in modalities], dtype=np.float32)


def coarse_presence(manifest_path: str | os.PathLike, case_ids: Sequence[str], modalities: Sequence[str]) -> np.ndarray:
    """``[N, C]`` float32: 1 where coarse case ``case_ids[n]`` took ``modalities[c]`` from
    its healthy scan (the manifest's :data:`HEALTHY_CHANNELS_COLUMN`), 0 where TF-Aug filled
    it; every channel present when the manifest has no such column."""
    manifest = read_manifest(manifest_path).set_index("case_id")
    if HEALTHY_CHANNELS_COLUMN not in manifest.columns:
        return np.ones((len(case_ids), len(modalities)), dtype=np.float32)
    rows = []
    for case_id in case_ids:
        who = f"{manifest_path}: {case_id}'s {HEALTHY_CHANNELS_COLUMN}"
        try:
            channels = json.loads(manifest.loc[case_id, HEALTHY_CHANNELS_COLUMN])
        except (KeyError, TypeError, json.JSONDecodeError):
            raise ValueError(f"{who}: not a JSON list of channels") from None
        if not isinstance(channels, list):
            raise ValueError(f"{who}: not a JSON list of channels")
        rows.append(presence_vector(channels, modalities, who))
    return np.stack(rows) if rows else np.ones((0, len(modalities)), dtype=np.float32)


def scored_hidden_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """The hidden subsets the study meets: all but t1n, and all but t1n and t2w (when that hides any)."""
    hideable = tuple(m for m in modalities if m != HEALTHY_CHANNEL)
    without_second = tuple(m for m in hideable if m != SECOND_HEALTHY_CHANNEL)
    return [hideable] + ([without_second] if without_second and without_second != hideable else [])


def draw_hidden_channels(modalities: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """``[C]`` float32, 1 for each channel hidden from G on one real crop (module docstring).

    Needs :data:`HEALTHY_CHANNEL` and at least one more channel among ``modalities``.
    """
    hideable = [m for m in modalities if m != HEALTHY_CHANNEL]
    if HEALTHY_CHANNEL not in modalities or not hideable:
        raise ValueError(f"translation needs {HEALTHY_CHANNEL} and another channel, got modalities {list(modalities)}")
    if rng.random() < SCORED_SHARE:
        scored = scored_hidden_subsets(modalities)
        hidden = scored[rng.integers(len(scored))]
    else:
        bits = int(rng.integers(1, 2 ** len(hideable)))
        hidden = tuple(m for i, m in enumerate(hideable) if bits >> i & 1)
    return np.array([m in hidden for m in modalities], dtype=np.float32)
