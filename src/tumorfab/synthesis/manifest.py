"""Comparison methods that produce synthetic cases in the same format as TF.

SPEC §2 item 7 (paper 002 §3.2.1): CarveMix (``tumorfab.synthesis.carvemix``);
3D Pix2Pix lives beside it. Every source writes case folders under
``results/synthetic/{source}/cases/`` and a manifest in generation order, and
is generated once at the largest size any experiment needs (nested prefixes).
"""

from __future__ import annotations

from typing import Mapping


def synthetic_size(experiments: Mapping[str, Mapping], source: str) -> int:
    """The number of cases to generate for ``source``: its largest ``n_synthetic``.

    ``experiments`` is the config's ``experiments`` mapping (name -> {source,
    n_synthetic, label}). Smaller experiments of the same source take the first
    rows of the manifest, so one generation at the largest size serves all of
    them (SPEC §2 item 6). Returns 0 when no experiment uses ``source``.
    """
    sizes = [int(e["n_synthetic"]) for e in experiments.values() if e["source"] == source]
    return max(sizes, default=0)
