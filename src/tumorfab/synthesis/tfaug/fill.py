"""The sequences a healthy scan lacks: TF-Aug's fill (docs/interpretations.md, "TF-Aug on several sequences").

The paper's healthy scans are T1 only (paper 002 §3: IXI and PPMI T1); some
healthy subjects have other sequences too (IXI: T2, PD). A healthy case folder
holds ``{channel}.nii.gz`` for the configured channels the subject has, always
:data:`FILL_SOURCE` (t1n). TF-Aug synthesizes each channel the healthy scan has
with its own fitted ``a·x + b``; a configured channel it lacks is *filled*:
the case's synthetic t1n (lesion included) histogram-matched onto the real
training cases' pooled brain distribution of that channel
(``tumorfab.synthesis.histogram_match``), so every case folder holds every
configured channel, and the channels that came from the healthy scan are named
in the manifest (``healthy_channels``).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import torch

from tumorfab.casefolder import case_file, channels_in
from tumorfab.study.layout import HEALTHY_CHANNEL
from tumorfab.synthesis.histogram_match import BACKGROUND, match_to_quantiles

#: The channel every healthy scan has, from which the missing ones are filled.
FILL_SOURCE = HEALTHY_CHANNEL


def healthy_channels(healthy_dirs: Sequence[str | os.PathLike], modalities: Sequence[str]) -> list[list[str]]:
    """The configured channels each healthy case folder holds, in ``modalities`` order; checked.

    A folder without :data:`FILL_SOURCE` (when configured) is an error naming
    the file; a folder lacking a channel needs :data:`FILL_SOURCE` configured,
    since the fill is made from it.
    """
    found = [channels_in(folder, modalities) for folder in healthy_dirs]
    for folder, channels in zip(healthy_dirs, found):
        if FILL_SOURCE in modalities and FILL_SOURCE not in channels:
            raise FileNotFoundError(f"{case_file(folder, FILL_SOURCE)}: missing (every healthy scan has its T1)")
        missing = [m for m in modalities if m not in channels]
        if missing and FILL_SOURCE not in modalities:
            raise ValueError(
                f"{folder} lacks {missing}: TF-Aug fills a sequence a healthy scan lacks from its "
                f"synthetic {FILL_SOURCE}, so data.modalities must include {FILL_SOURCE}"
            )
    return found


def fill_missing(
    images: Mapping[str, np.ndarray], brain: np.ndarray, modalities: Sequence[str], quantiles: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Every channel of ``modalities``: ``images``' own, and for each one it lacks
    the synthetic :data:`FILL_SOURCE` matched onto ``quantiles[channel]`` (-1 outside ``brain``)."""
    return {
        m: images[m] if m in images else match_to_quantiles(images[FILL_SOURCE], brain, quantiles[m])
        for m in modalities
    }


def interpolate(values: torch.Tensor, knots: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """``np.interp(values, *knots)`` in torch (ends held constant), without gradient.

    ``knots`` from ``histogram_match.quantile_map``; computed in float64, as
    numpy does, so that close knots stay distinct.
    """
    xk, yk = (torch.as_tensor(k, dtype=torch.float64, device=values.device) for k in knots)
    if len(xk) == 1:
        return torch.full_like(values, float(yk[0]))
    x = values.detach().double().contiguous()
    upper = torch.searchsorted(xk, x).clamp(1, len(xk) - 1)
    x0, x1, y0, y1 = xk[upper - 1], xk[upper], yk[upper - 1], yk[upper]
    t = ((x - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return (y0 + t * (y1 - y0)).to(values.dtype)


def fill_patch(source: torch.Tensor, brain: torch.Tensor, knots: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """A missing channel of a patch: its synthetic :data:`FILL_SOURCE` ``source``
    mapped by ``knots`` inside ``brain``, background outside; no gradient."""
    return torch.where(brain > 0, interpolate(source, knots), torch.full_like(source, BACKGROUND))
