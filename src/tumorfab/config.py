"""Typing the values given with ``snakemake --config`` as the config file would.

Snakemake reads ``--config data='{brats_root: /data/x, remap_label_4_to_3: true}'``
with YAML's base loader, so every value inside the braces arrives as a string
(``"true"``, ``"4"``, ``"null"``) and the schema refuses the booleans and
numbers, although the README shows that form. ``common.smk`` types these
values before validating the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml


def typed_command_line_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (Snakemake's parsed ``--config``) with every string typed as YAML would.

    A string that YAML reads as a plain scalar becomes that scalar: ``true``
    and ``false`` (and YAML 1.1's ``yes``/``no``/``on``/``off``, as in
    config/config.yaml) a bool, ``4`` an int, ``0.5`` a float, ``null``, ``~``
    and an empty value None. Any other string, such as a path, a case id or a
    glob, stays as written; so does one YAML would read as a date, a list or a
    mapping (inside the braces it must have been quoted). Snakemake drops the
    quotes inside the braces, so a number-like string cannot be passed this way:
    put it in a config file.
    """
    return {key: _typed(value) for key, value in values.items()}


def _typed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return typed_command_line_config(value)
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if not isinstance(value, str):
        return value
    try:
        typed = yaml.safe_load(value)
    except yaml.YAMLError:  # e.g. "*.nii.gz" reads as an alias
        return value
    return typed if typed is None or isinstance(typed, (bool, int, float)) else value


def config_section(settings: Mapping[str, Any], keys: Any, section: str) -> dict[str, Any]:
    """``settings`` (a validated config section, named ``section``) as a dict
    holding exactly ``keys``: a caller outside the workflow that passes an
    unknown or incomplete section gets an error naming the keys."""
    settings, keys = dict(settings), list(keys)
    unknown = sorted(set(settings) - set(keys))
    if unknown:
        raise ValueError(f"{section}: unknown keys {unknown}")
    missing = [key for key in keys if key not in settings]
    if missing:
        raise ValueError(f"{section}: missing keys {missing}")
    return settings
