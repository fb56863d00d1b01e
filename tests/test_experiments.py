"""The study's experiments: real subsets, fine-tuning links and paper 003's synthetic-only study."""

from __future__ import annotations

import pytest

from helpers.schema_defaults import schema_defaults
from tumorfab.segmentation.experiments import (
    REAL_FRACTION_ONLY,
    SYNTHETIC_ONLY,
    SYNTHETIC_ONLY_FINETUNED,
    SYNTHETIC_ONLY_TABLE,
    check_experiments,
    is_enrichment,
    n_real_cases,
    real_subset,
    synthetic_only_study,
)

CASES = [f"BraTS-GLI-{i:05d}-000" for i in range(20)]


def test_a_fraction_keeps_ceil_of_its_share_and_at_least_one_case():
    assert n_real_cases(100, 0.1) == 10
    assert n_real_cases(8, 0.25) == 2
    assert n_real_cases(8, 0.1) == 1
    assert n_real_cases(3, 0.34) == 2
    assert n_real_cases(8, 0.0) == 0
    with pytest.raises(ValueError, match="real_fraction"):
        n_real_cases(8, 1.5)


def test_the_real_subset_is_seeded_by_the_study_seed_and_kept_in_order():
    subset = real_subset(CASES, 0.1, seed=2025)
    assert len(subset) == 2 and set(subset) < set(CASES)
    assert subset == sorted(subset, key=CASES.index)
    assert real_subset(CASES, 0.1, seed=2025) == subset  # same seed, same cases
    assert any(real_subset(CASES, 0.1, seed=s) != subset for s in range(5))
    assert real_subset(CASES, 1.0, seed=2025) == CASES
    assert real_subset(CASES, 0.0, seed=2025) == []


def test_the_synthetic_only_study_compares_four_training_sets_against_all_real_cases():
    settings = schema_defaults({"synthetic_only": {"enabled": True, "n_synthetic": 24, "real_fraction": 0.25}})
    experiments, tables = synthetic_only_study(settings["synthetic_only"], "baseline", "TF")
    assert experiments[SYNTHETIC_ONLY] == {
        "source": "tf", "n_synthetic": 24, "real_fraction": 0.0, "init_from": None, "label": "Synthetic only (TF, 24)",
    }
    assert experiments[SYNTHETIC_ONLY_FINETUNED]["init_from"] == SYNTHETIC_ONLY
    assert experiments[SYNTHETIC_ONLY_FINETUNED]["real_fraction"] == experiments[REAL_FRACTION_ONLY]["real_fraction"] == 0.25
    assert experiments[SYNTHETIC_ONLY_FINETUNED]["n_synthetic"] == 0  # the fine-tune sees real cases only
    assert tables[SYNTHETIC_ONLY_TABLE]["experiments"] == ["baseline", REAL_FRACTION_ONLY, SYNTHETIC_ONLY, SYNTHETIC_ONLY_FINETUNED]
    assert not any(is_enrichment(e) for e in experiments.values())
    check_experiments({"baseline": schema_defaults()["experiments"]["baseline"], **experiments})


def _experiments(**extra):
    return schema_defaults({"experiments": extra})["experiments"]


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        ({"source": "none", "n_synthetic": 0, "real_fraction": 0.0}, "leaves nothing to train on"),
        ({"source": "none", "n_synthetic": 0, "init_from": "nope"}, "'nope' is not another experiment"),
        ({"source": "none", "n_synthetic": 0, "init_from": "bad"}, "'bad' is not another experiment"),
        ({"source": "none", "n_synthetic": 3}, "n_synthetic must be 0 exactly when source is 'none'"),
    ],
)
def test_bad_experiments_are_refused_naming_the_key(experiment, message):
    with pytest.raises(ValueError, match=message) as error:
        check_experiments(_experiments(bad=experiment))
    assert "experiments.bad" in str(error.value)


def test_a_chain_of_fine_tunes_is_refused():
    experiments = _experiments(
        a={"source": "none", "n_synthetic": 0, "init_from": "baseline"},
        b={"source": "none", "n_synthetic": 0, "init_from": "a"},
    )
    with pytest.raises(ValueError, match="experiments.b.init_from: 'a' is itself fine-tuned"):
        check_experiments(experiments)
