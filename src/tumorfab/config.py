"""The config as the workflow reads it: presets over the paper's study, and
the values given with ``snakemake --config`` typed as a config file would be.

``config/config.yaml`` states the paper's study; every default is in
``workflow/schemas/config.schema.yaml``; a preset (``--configfile``, e.g.
``config/demo.yaml``) states only what differs from the paper's study
(:func:`compose`).

Snakemake reads ``--config data='{brats_root: /data/x, remap_label_4_to_3: true}'``
with YAML's base loader, so every value inside the braces arrives as a string
(``"true"``, ``"4"``, ``"null"``) and the schema refuses the booleans and
numbers, although the README shows that form. ``common.smk`` types these
values before validating the config.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
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


# --- Presets -----------------------------------------------------------------------------

#: Sections a preset replaces whole rather than key by key: the paper's
#: experiments and tables must not leak into a preset's study.
REPLACED_SECTIONS = ("experiments", "tables")


def compose(base: Mapping[str, Any], preset: Mapping[str, Any]) -> dict[str, Any]:
    """``preset`` over ``base`` (a new dict): mappings merged key by key, as
    Snakemake merges config files, except :data:`REPLACED_SECTIONS`, which the
    preset replaces whole where it has them; other values replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in preset.items():
        if key not in REPLACED_SECTIONS and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = compose(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def with_defaults(config: Mapping[str, Any], schema: str | os.PathLike) -> dict[str, Any]:
    """``config`` validated against ``schema`` with its defaults filled in (a new
    dict), as the workflow does at start-up (Snakemake's ``validate``)."""
    from snakemake.utils import validate

    config = copy.deepcopy(dict(config))
    validate(config, str(schema), set_default=True)
    return config


# --- Settings ----------------------------------------------------------------------------

#: Config keys that size a job (threads, memory) rather than change what it computes.
RESOURCE_KEYS = ("threads", "mem_mb")


def without_resources(section: Mapping[str, Any]) -> dict[str, Any]:
    """A config section less :data:`RESOURCE_KEYS`: what its stage's settings hold."""
    return {key: value for key, value in section.items() if key not in RESOURCE_KEYS}


class Settings(tuple):
    """Base of every stage's settings: frozen dataclasses made by ``from_config``.

    A rule's ``params`` is its stage's settings object, and Snakemake's params
    rerun trigger records a param only when it is a built-in value (it stores
    its ``repr``), silently skipping any other object. Being a tuple (an empty
    one: the values are the dataclass's fields) lets Snakemake record the
    dataclass's ``repr``, which names every field and value, so a changed
    setting reruns exactly the jobs that read it.
    """

    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __bool__(self) -> bool:
        return True

    def __ne__(self, other):
        # tuple's own != would compare the (empty) tuples.
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal


# --- The README's table of keys ----------------------------------------------------------


def _flow(value: Any) -> str:
    """A value as it is written in a config file (YAML flow style)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...")


def _leaves(properties: Mapping[str, Any], prefix: str = ""):
    """(key path, its schema) of every key with a value of its own."""
    for key, spec in properties.items():
        if spec.get("type") == "object" and "properties" in spec:
            yield from _leaves(spec["properties"], f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", spec


_ABSENT = object()


def _lookup(config: Mapping[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(config, Mapping) or key not in config:
            return _ABSENT
        config = config[key]
    return config


def _cell(value: Any) -> str:
    return "–" if value is _ABSENT else f"`{_flow(value)}`"


def keys_table(schema: str | os.PathLike, paper: Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table of every config key: its value in the paper's study and
    in each preset (``presets``: column title -> config; all with the schema's
    defaults; – when unset; "same" when as in the paper's) and its description
    from the schema."""
    rows = [
        "| key | paper | " + " | ".join(presets) + " | what it does |",
        "| --- | --- | " + " | ".join("---" for _ in presets) + " | --- |",
    ]
    for path, spec in _leaves(load_yaml(schema)["properties"]):
        if path in REPLACED_SECTIONS:
            cells = ["see `config/config.yaml`"] + [f"see the {title} preset" for title in presets]
        else:
            paper_value = _lookup(paper, path)
            cells = [_cell(paper_value)] + [
                "same" if _lookup(preset, path) == paper_value else _cell(_lookup(preset, path))
                for preset in presets.values()
            ]
        description = " ".join(spec["description"].split()).replace("|", "\\|")
        rows.append(f"| `{path}` | " + " | ".join(cells) + f" | {description} |")
    return "\n".join(rows) + "\n"


#: The schema, relative to the repository.
SCHEMA = Path("workflow") / "schemas" / "config.schema.yaml"


def study_config(repo: str | os.PathLike, preset: str | os.PathLike | None = None) -> dict[str, Any]:
    """The config a run of the workflow in ``repo`` reads: the paper's study,
    ``preset`` over it, the schema's defaults."""
    paper = load_yaml(Path(repo) / "config" / "config.yaml")
    config = compose(paper, load_yaml(preset) if preset else {})
    return with_defaults(config, Path(repo) / SCHEMA)


#: The presets the README's table of keys shows, column title -> file.
README_PRESETS = {"demo": "demo.yaml", "demo, four sequences": "demo_four_sequences.yaml"}


def readme_presets(repo: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The configs of the README's presets (:data:`README_PRESETS`) in ``repo``."""
    return {title: study_config(repo, Path(repo) / "config" / name) for title, name in README_PRESETS.items()}


if __name__ == "__main__":
    # The README's table of keys, for the repository in the working directory.
    print(keys_table(SCHEMA, study_config("."), readme_presets(".")), end="")
