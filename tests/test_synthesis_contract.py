"""The synthetic-source registry and the manifest contract every source shares."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest

from tumorfab.synthesis import NO_SOURCE, SOURCES, generation_size, source_label
from tumorfab.synthesis.manifest import (
    CORE_COLUMNS,
    first_cases,
    manifest_case_ids,
    read_manifest,
    synthetic_case_id,
    training_cases,
    write_manifest,
)


def test_every_source_has_an_importable_generator_with_the_contracts_arguments():
    assert list(SOURCES) == ["carvemix", "pix2pix", "tfaug", "tf"]
    for source in SOURCES.values():
        generator = source.load_generator()
        # the contract's arguments (docs/architecture.md, "A new synthetic source")
        assert {"out_dir", "manifest_path", "n_cases", "modalities", "seed"} <= set(inspect.signature(generator).parameters)


def test_labels_are_the_papers_names():
    assert {n: source_label(n) for n in SOURCES} == {
        "carvemix": "CarveMix", "pix2pix": "Pix2Pix", "tfaug": "TF-Aug", "tf": "TF",
    }
    assert source_label("unknown") == "unknown"
    assert NO_SOURCE not in SOURCES


def test_generation_size_includes_the_sources_derived_from_it():
    experiments = {
        "baseline": {"source": "none", "n_synthetic": 0},
        "tfaug_8": {"source": "tfaug", "n_synthetic": 8},
        "tf_24": {"source": "tf", "n_synthetic": 24},
        "pix2pix_30": {"source": "pix2pix", "n_synthetic": 30},
    }
    assert generation_size(experiments, "tfaug") == 30
    assert generation_size(experiments, "tf") == 24
    assert generation_size(experiments, "pix2pix") == 30
    assert generation_size(experiments, "carvemix") == 0


COLUMNS = ["case_id", "donor", "seed", "value"]


def _rows(ids):
    return [{"case_id": c, "donor": "A", "seed": 3, "value": 0.5 * i} for i, c in enumerate(ids)]


def test_writer_writes_what_pandas_writes_in_the_sources_column_order(tmp_path):
    rows = _rows([synthetic_case_id("src", i) for i in range(3)])
    written = write_manifest(rows, COLUMNS, tmp_path / "manifest.csv", "src")
    expected = tmp_path / "expected.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(expected, index=False)
    assert (tmp_path / "manifest.csv").read_bytes() == expected.read_bytes()
    assert list(written.columns) == COLUMNS
    assert manifest_case_ids(tmp_path / "manifest.csv") == ["src_0000", "src_0001", "src_0002"]
    assert list(read_manifest(tmp_path / "manifest.csv").columns) == COLUMNS
    assert set(CORE_COLUMNS) <= set(COLUMNS)


def test_writer_writes_the_header_alone_for_no_cases(tmp_path):
    write_manifest([], COLUMNS, tmp_path / "manifest.csv", "src")
    assert (tmp_path / "manifest.csv").read_text() == ",".join(COLUMNS) + "\n"


@pytest.mark.parametrize(
    "ids, message",
    [
        (["src_0000", "src_0000"], "used twice"),
        (["src_0001", "src_0000"], "not in generation order"),
        (["src_0000", "src_0002"], "not in generation order"),
        (["other_0000"], "not in generation order"),
    ],
)
def test_writer_rejects_duplicate_or_unordered_ids(tmp_path, ids, message):
    with pytest.raises(ValueError, match=message):
        write_manifest(_rows(ids), COLUMNS, tmp_path / "manifest.csv", "src")
    assert not (tmp_path / "manifest.csv").exists()


def test_writer_rejects_a_missing_or_misplaced_case_id_and_missing_core_columns(tmp_path):
    path = tmp_path / "manifest.csv"
    rows = _rows(["src_0000"])
    with pytest.raises(ValueError, match="first column must be case_id"):
        write_manifest([{k: v for k, v in r.items() if k != "case_id"} for r in rows], COLUMNS[1:], path, "src")
    with pytest.raises(ValueError, match="first column must be case_id"):
        write_manifest(rows, ["donor", "case_id", "seed", "value"], path, "src")
    with pytest.raises(ValueError, match="core columns \\['seed'\\]"):
        write_manifest([{k: v for k, v in r.items() if k != "seed"} for r in rows], ["case_id", "donor", "value"],
                       path, "src")
    with pytest.raises(ValueError, match="row 0"):
        write_manifest([{**rows[0], "extra": 1}], COLUMNS, path, "src")
    assert not path.exists()


def test_reader_rejects_a_table_without_case_id_first(tmp_path):
    pd.DataFrame({"seed": [0], "case_id": ["a"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match="m.csv: a manifest's first column must be case_id"):
        read_manifest(tmp_path / "m.csv")


def test_first_cases_is_a_prefix_in_generation_order_and_names_a_short_manifest(tmp_path):
    path = tmp_path / "manifest.csv"
    ids = ["syn_0002", "syn_0000", "syn_0001", "0007"]  # file order, not sorted; ids stay text
    pd.DataFrame({"case_id": ids, "seed": 0}).to_csv(path, index=False)
    assert first_cases(path, 0) == []
    assert first_cases(path, 2) == ids[:2]
    assert first_cases(path, 4) == ids
    with pytest.raises(ValueError, match="manifest.csv: 5 synthetic cases wanted, the manifest has 4"):
        first_cases(path, 5)
    assert training_cases(["real_a"], path, 3) == ["real_a", *ids[:3]]
    with pytest.raises(ValueError, match="needs the source's manifest"):
        training_cases(["real_a"], None, 1)
