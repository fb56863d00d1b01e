"""The nnU-Net stage's settings: built from the config section, checked, and handed
to scripts. Snakemake's params trigger on them: test_study.py
(test_snakemake_records_every_stage_settings_for_its_params_trigger) and the
tiny demo's rerun tests (test_workflow_study.py, test_segmentation_workflow.py)."""

from __future__ import annotations

import pickle

import pytest

from helpers.schema_defaults import schema_defaults
from segmentation_fixtures import TINY_TRAIN, tiny_settings
from tumorfab.segmentation.settings import (
    PlanSettings,
    PredictSettings,
    SegmentationSettings,
    TrainSettings,
)


def _section(**overrides) -> dict:
    return schema_defaults({"segmentation": overrides})["segmentation"]


def test_settings_hold_the_sections_values_with_lists_as_tuples():
    settings = tiny_settings(initial_lr=0.05)
    assert settings.plan == PlanSettings(
        patch_size=(32, 32, 32), base_features=4, max_features=32, batch_size=2, n_conv_per_stage=None
    )
    assert settings.train == TrainSettings(**{**TINY_TRAIN, "initial_lr": 0.05})
    assert settings.predict == PredictSettings(tile_step_size=0.5, use_mirroring=False, device="cpu")
    assert settings.seeds == (0,)
    assert hash(settings) == hash(tiny_settings(initial_lr=0.05))


def test_the_jobs_threads_and_memory_are_not_settings():
    assert SegmentationSettings.from_config(_section(threads=1, mem_mb=1000)) == SegmentationSettings.from_config(
        _section(threads=8, mem_mb=64000)
    )


def test_prediction_runs_on_the_training_device():
    assert SegmentationSettings.from_config(_section(train={"device": "cuda"})).predict.device == "cuda"


def test_configuration_is_nnunets_unless_the_plan_overrides_something():
    assert SegmentationSettings.from_config(_section()).plan.configuration == "3d_fullres"
    assert tiny_settings().plan.configuration == "3d_fullres_tumorfab"
    assert SegmentationSettings.from_config(_section(plan={"n_conv_per_stage": 1})).plan.configuration == (
        "3d_fullres_tumorfab"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["train"].pop("epochs"), r"segmentation\.train: missing keys \['epochs'\]"),
        (lambda s: s["plan"].update(patch=[32, 32, 32]), r"segmentation\.plan: unknown keys \['patch'\]"),
        (lambda s: s["predict"].update(device="cpu"), r"segmentation\.predict: unknown keys \['device'\]"),
        (lambda s: s.pop("seeds"), r"segmentation: missing keys \['seeds'\]"),
    ],
    ids=["train without epochs", "plan with an unknown key", "predict with a device", "no seeds"],
)
def test_a_section_with_missing_or_unknown_keys_is_refused_naming_them(change, message):
    section = _section()
    change(section)
    with pytest.raises(ValueError, match=message):
        SegmentationSettings.from_config(section)


def test_a_width_cap_below_the_first_stages_width_is_refused_naming_the_key():
    section = _section(plan={"base_features": 16, "max_features": 8})
    with pytest.raises(ValueError, match=r"^segmentation\.plan\.max_features: 8 is below base_features 16"):
        SegmentationSettings.from_config(section)


def test_settings_survive_pickling_as_snakemake_hands_params_to_a_script():
    settings = tiny_settings()
    assert pickle.loads(pickle.dumps(settings)) == settings
