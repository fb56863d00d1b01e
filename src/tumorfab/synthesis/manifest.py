"""The manifest of a synthetic source: one contract, written and read here only.

Every source writes ``results/synthetic/{source}/manifest.csv``: one row per
generated case, **in generation order**, ``case_id`` first, then the source's
provenance columns in the order the source defines (docs/architecture.md).
Every manifest has the :data:`CORE_COLUMNS`; case ids are
``{source}_{i:04d}`` (:func:`synthetic_case_id`), ``i`` the generation index.

A source is generated once at the largest size any experiment needs
(``tumorfab.synthesis.generation_size``); an experiment with ``n`` synthetic
cases takes the first ``n`` rows (:func:`first_cases`), so smaller sets are
nested prefixes of larger ones (paper 002 §3.2.5's Syn50 ⊂ Syn100 ⊂ …; docs/architecture.md,
"Contract 2"). :func:`training_cases` is an
experiment's training set: the real training cases, then that prefix.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from tumorfab.io import save_csv

#: Columns every source's manifest has (``case_id`` first; ``seed`` anywhere after it).
CORE_COLUMNS = ("case_id", "seed")


def synthetic_case_id(source: str, index: int) -> str:
    """The id of the ``index``-th generated case of ``source``, e.g. ``carvemix_0003``."""
    return f"{source}_{index:04d}"


def write_manifest(
    rows: Sequence[Mapping],
    columns: Sequence[str],
    path: str | os.PathLike,
    source: str,
) -> pd.DataFrame:
    """Check the contract and write a source's manifest atomically; returns the table.

    ``rows`` (one mapping per case, in generation order) must have exactly the
    keys ``columns`` (the source's column order: ``case_id`` first and every
    core column present); case ids must be :func:`synthetic_case_id` ``(source, 0)``,
    ``(source, 1)``, ... (unique, in generation order). An empty ``rows``
    writes the header alone.
    """
    columns = list(columns)
    if not columns or columns[0] != "case_id":
        raise ValueError(f"{path}: a manifest's first column must be case_id, got {columns[:1]}")
    missing = [c for c in CORE_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{path}: manifest columns miss the core columns {missing}")
    for index, row in enumerate(rows):
        if set(row) != set(columns):
            raise ValueError(
                f"{path}: row {index} has columns {sorted(set(row) ^ set(columns))} "
                "missing or beyond the manifest's"
            )
    ids = [row["case_id"] for row in rows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path}: case ids used twice: {duplicates[:5]}")
    expected = [synthetic_case_id(source, i) for i in range(len(ids))]
    if ids != expected:
        wrong = next(i for i, (got, want) in enumerate(zip(ids, expected)) if got != want)
        raise ValueError(
            f"{path}: case ids not in generation order: row {wrong} is {ids[wrong]!r}, "
            f"expected {expected[wrong]!r}"
        )
    manifest = pd.DataFrame(list(rows), columns=columns)
    save_csv(manifest, path)
    return manifest


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """A source's manifest (``case_id`` as text), checked: ``case_id`` first and unique."""
    manifest = pd.read_csv(path, dtype={"case_id": str})
    if not len(manifest.columns) or manifest.columns[0] != "case_id":
        raise ValueError(f"{path}: a manifest's first column must be case_id")
    duplicates = sorted(set(manifest["case_id"][manifest["case_id"].duplicated()]))
    if duplicates:
        raise ValueError(f"{path}: case ids used twice: {duplicates[:5]}")
    return manifest


def manifest_case_ids(path: str | os.PathLike) -> list[str]:
    """Every ``case_id`` of a manifest, in generation order."""
    return read_manifest(path)["case_id"].tolist()


def first_cases(manifest: str | os.PathLike, n: int) -> list[str]:
    """The nested-size rule: the first ``n`` case ids of ``manifest`` in generation
    order; an error naming the manifest when it has fewer rows."""
    if n < 0:
        raise ValueError(f"{manifest}: a negative number of synthetic cases ({n}) wanted")
    ids = manifest_case_ids(manifest)
    if n > len(ids):
        raise ValueError(f"{manifest}: {n} synthetic cases wanted, the manifest has {len(ids)}")
    return ids[:n]


def training_cases(
    train_cases: Sequence[str],
    manifest: str | os.PathLike | None,
    n_synthetic: int,
) -> list[str]:
    """An experiment's training set: the real ``train_cases``, then the first
    ``n_synthetic`` cases of the source's ``manifest`` (None when 0)."""
    cases = list(train_cases)
    if n_synthetic:
        if manifest is None:
            raise ValueError("n_synthetic > 0 needs the source's manifest")
        real = set(cases)
        for synthetic in first_cases(manifest, n_synthetic):
            if synthetic in real:
                raise ValueError(f"synthetic case id {synthetic} is also a real case id")
            cases.append(synthetic)
    return cases
