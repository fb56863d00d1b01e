"""Synthesize: the synthetic sources and the contract they share.

A *synthetic source* turns real training cases and/or healthy scans into
annotated case folders (``tumorfab.casefolder``) under
``results/synthetic/{source}/cases/`` plus a manifest in generation order
(``tumorfab.synthesis.manifest``). :data:`SOURCES` is the registry: the
check of each experiment's ``source``, the names in tables and figures, which
rules get the feature extractor F and how many cases each source generates
all come from it (``tumorfab.study``). This module imports nothing heavy: the
workflow reads it while it builds the DAG.

Adding a source (docs/architecture.md, "A new synthetic source"): its module
here, with a generator taking ``out_dir``, ``manifest_path``, ``n_cases``,
``modalities`` and ``seed``; one :class:`SyntheticSource` entry below; its rules
in ``workflow/rules/`` writing ``synthetic_cases_dir(source)`` and
``synthetic_manifest(source)`` (``tumorfab.study.layout``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Mapping


@dataclass(frozen=True)
class SyntheticSource:
    """One synthetic source of the study (a value of ``experiments.*.source``).

    ``generator`` is ``"module:function"``, the function its generating rule
    calls.
    ``needs_feature_extractor``: its generation uses the baseline's encoder F,
    the study's one backward edge (segment -> synthesize -> segment).
    ``derived_from``: the source whose case ``i`` this source's case ``i`` is
    made from (TF refines TF-Aug's pair; Pix2Pix draws an image for TF-Aug's
    label map), so both share their nested sets; that source is then
    generated at the largest size either of them needs.
    ``refines``: case ``i`` is ``derived_from``'s case ``i`` with its image
    refined and its labels unchanged, so the report shows the two side by side.
    """

    name: str
    label: str
    generator: str
    needs_feature_extractor: bool = False
    derived_from: str | None = None
    refines: bool = False

    def load_generator(self) -> Callable:
        module, function = self.generator.split(":")
        return getattr(importlib.import_module(module), function)


#: The registry, in the order of the paper's Table 1 (paper 002 §3.2.1).
SOURCES: dict[str, SyntheticSource] = {
    source.name: source
    for source in (
        SyntheticSource("carvemix", "CarveMix", "tumorfab.synthesis.carvemix:generate_carvemix"),
        SyntheticSource(
            "pix2pix",
            "Pix2Pix",
            "tumorfab.synthesis.pix2pix.generate:generate_pix2pix",
            derived_from="tfaug",
        ),
        SyntheticSource(
            "tfaug",
            "TF-Aug",
            "tumorfab.synthesis.tfaug.generate:generate_tfaug",
            needs_feature_extractor=True,
        ),
        SyntheticSource(
            "tf",
            "TF",
            "tumorfab.synthesis.tfgan.refine:generate_tf",
            needs_feature_extractor=True,
            derived_from="tfaug",
            refines=True,
        ),
    )
}

#: The ``source`` of the real-only baseline's experiments: no synthetic cases.
NO_SOURCE = "none"


def source_label(name: str) -> str:
    """The name tables and figures show for a source (the registry key if unknown)."""
    return SOURCES[name].label if name in SOURCES else name


def generation_size(experiments: Mapping[str, Mapping], source: str) -> int:
    """How many cases ``source`` generates: the largest ``n_synthetic`` of its
    experiments and of the experiments of every source derived from it.

    ``experiments`` is the config's mapping (name -> {source, n_synthetic}).
    An experiment with ``n`` synthetic cases takes the first ``n`` rows of the
    manifest (``tumorfab.synthesis.manifest.first_cases``), so one generation
    at this size serves them all (nested sets, docs/architecture.md). 0 when no
    experiment needs the source.
    """
    users = {source} | {s.name for s in SOURCES.values() if s.derived_from == source}
    sizes = [int(e["n_synthetic"]) for e in experiments.values() if e["source"] in users]
    return max(sizes, default=0)
