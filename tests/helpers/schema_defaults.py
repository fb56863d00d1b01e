"""The config schema's defaults, as the workflow sees them.

``workflow/schemas/config.schema.yaml`` is the only place a config default
lives (``common.smk`` fills them with Snakemake's
``validate(config, schema, set_default=True)``); package code takes the
validated dicts. Tests and benchmarks build their settings from here, so they
follow the schema instead of repeating its values.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

#: The smallest config the schema accepts: its required keys only.
MINIMAL = {
    "seed": 0,
    "data": {"brats_root": None, "healthy_root": None, "modalities": ["t1n"]},
    "demo": {"enabled": False},
    "split": {"n_real_train": 2, "n_val": 1},
    "skullstrip": {"synthstrip_weights": None},
    "registration": {"type_of_transform": "SyN"},
    "experiments": {"baseline": {"source": "none", "n_synthetic": 0}},
    "tables": {},
    "segmentation": {
        "seeds": [0],
        "plan": {},
        "train": {"epochs": 1, "iterations_per_epoch": 1, "val_iterations_per_epoch": 1},
        "predict": {},
    },
}


def _merged(base: dict, overrides: Mapping) -> dict:
    """``base`` with ``overrides`` merged in, mappings key by key, other values replaced."""
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merged(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def schema_defaults(overrides: Mapping | None = None) -> dict:
    """The minimal config (plus ``overrides``, nested) validated with the schema's defaults set.

    ``overrides`` are merged into :data:`MINIMAL` before validation, so they
    are checked by the schema and their own sections get the remaining
    defaults, e.g. ``schema_defaults({"tfaug": {"controls": {"offset": {"ed":
    0.1}}}})["tfaug"]["controls"]`` has ``offset.ncr`` and ``offset.et`` 0.
    A new dict on every call.
    """
    return copy.deepcopy(_validated(json.dumps(overrides or {}, sort_keys=True)))


@lru_cache(maxsize=None)
def _validated(overrides_json: str) -> dict:
    # Cached: Snakemake reads the schema's YAML at every validate (~0.2 s).
    config = _merged(copy.deepcopy(MINIMAL), json.loads(overrides_json))
    validate(config, str(SCHEMA), set_default=True)
    return config
