"""The study's experiments: what each nnU-Net training is trained on, and from what.

An experiment (``experiments.<name>`` in the config) is a training set plus a
starting point:

- ``source``/``n_synthetic``: the first ``n_synthetic`` cases of a synthetic
  source (``none`` and 0 for real data only);
- ``real_fraction``: the share of the real training cases it trains on
  (default 1: all of them), a seeded random selection (:func:`real_subset`);
- ``init_from``: another experiment whose model (same seed) gives the
  starting weights, as ``nnUNetv2_train -pretrained_weights`` does (default
  null: from scratch).

Paper 002's experiments use the defaults. Paper 003 (§4.2) adds the
*synthetic-only* study (config section ``synthetic_only``, expanded into
experiments and a table by :func:`synthetic_only_study`): a model trained on
synthetic cases only, then fine-tuned on a small share of the real cases
(paper: 10%), against training on that share alone and on all real cases.

This module imports nothing heavy: the workflow reads it while it builds the DAG.
"""

from __future__ import annotations

import math
import random
from typing import Mapping, Sequence

#: Names of the synthetic-only study's experiments and table (config section ``synthetic_only``).
SYNTHETIC_ONLY = "synthetic_only"
SYNTHETIC_ONLY_FINETUNED = "synthetic_only_finetuned"
REAL_FRACTION_ONLY = "real_fraction_only"
SYNTHETIC_ONLY_TABLE = "table_synthetic_only"

#: Salt of the real-subset draw, so that it shares no stream with other draws of the study seed.
SUBSET_STREAM = "real_subset"


def n_real_cases(n_train: int, fraction: float) -> int:
    """Real training cases an experiment with ``real_fraction`` gets: ``ceil(fraction × n)``
    (so any fraction above 0 keeps at least one case)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"real_fraction must be in [0, 1], got {fraction}")
    return math.ceil(round(fraction * n_train, 9))


def real_subset(train_cases: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The real training cases of an experiment with ``real_fraction`` = ``fraction``.

    All of them (in the given order) for 1; otherwise ``n_real_cases`` of them
    drawn without replacement, seeded by the study ``seed`` only, so every
    experiment with the same fraction (the fine-tuned one and the fraction-only
    one) trains on the same cases, whatever its training seed. Returned in the
    order of ``train_cases``.
    """
    cases = list(train_cases)
    n = n_real_cases(len(cases), fraction)
    if n == len(cases):
        return cases
    chosen = set(random.Random(f"{seed}:{SUBSET_STREAM}").sample(range(len(cases)), n))
    return [case for i, case in enumerate(cases) if i in chosen]


def is_enrichment(experiment: Mapping) -> bool:
    """Paper 002's kind of experiment: all real cases (plus synthetic ones), from scratch."""
    return float(experiment["real_fraction"]) == 1.0 and experiment["init_from"] is None


def percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def synthetic_only_study(settings: Mapping, baseline: str, source_label: str) -> tuple[dict, dict]:
    """The experiments and the table of paper 003's study from the ``synthetic_only`` section.

    Rows of the table: ``baseline`` (all real cases: the reference of Mean
    Diff and the p-value), the real fraction alone, synthetic only, and
    synthetic only fine-tuned on that fraction. Returns ``(experiments,
    {table name: table})`` in the config's own format.
    """
    fraction = float(settings["real_fraction"])
    source, n = settings["source"], int(settings["n_synthetic"])
    share = percent(fraction)
    experiments = {
        REAL_FRACTION_ONLY: {
            "source": "none",
            "n_synthetic": 0,
            "real_fraction": fraction,
            "init_from": None,
            "label": f"{share} real only",
        },
        SYNTHETIC_ONLY: {
            "source": source,
            "n_synthetic": n,
            "real_fraction": 0.0,
            "init_from": None,
            "label": f"Synthetic only ({source_label}, {n})",
        },
        SYNTHETIC_ONLY_FINETUNED: {
            "source": "none",
            "n_synthetic": 0,
            "real_fraction": fraction,
            "init_from": SYNTHETIC_ONLY,
            "label": f"Synthetic only, fine-tuned on {share} real",
        },
    }
    table = {
        "title": settings["title"],
        "experiments": [baseline, REAL_FRACTION_ONLY, SYNTHETIC_ONLY, SYNTHETIC_ONLY_FINETUNED],
    }
    return experiments, {SYNTHETIC_ONLY_TABLE: table}


def check_experiments(experiments: Mapping[str, Mapping]) -> None:
    """What JSON Schema cannot check about the (validated) experiments; ``ValueError`` naming the key."""
    for name, experiment in experiments.items():
        key = f"experiments.{name}"
        if (experiment["source"] == "none") != (int(experiment["n_synthetic"]) == 0):
            raise ValueError(f"{key}: n_synthetic must be 0 exactly when source is 'none'")
        fraction = float(experiment["real_fraction"])
        if fraction == 0 and int(experiment["n_synthetic"]) == 0:
            raise ValueError(f"{key}: real_fraction 0 and no synthetic case leaves nothing to train on")
        parent = experiment["init_from"]
        if parent is None:
            continue
        if parent == name or parent not in experiments:
            raise ValueError(f"{key}.init_from: {parent!r} is not another experiment; choose one of {sorted(set(experiments) - {name})}")
        if experiments[parent]["init_from"] is not None:
            raise ValueError(f"{key}.init_from: {parent!r} is itself fine-tuned; start from a model trained from scratch")
