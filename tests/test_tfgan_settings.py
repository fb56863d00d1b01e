"""TF-GAN's settings (tumorfab.synthesis.gan_settings.TFGANSettings): from the config, checked, as the generator file's record."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tumorfab.config import study_config, without_resources
from tumorfab.study.settings import StageSettings
from tumorfab.synthesis.gan_settings import TFGANSettings

REPO = Path(__file__).resolve().parents[1]
#: The generator file's ``tfgan`` keys, in the order its bytes (and the
#: manifests' generator_sha256) depend on.
RECORD_ORDER = [
    "generator_widths", "discriminator_width", "discriminator_max_channels", "epochs", "batch_size", "crop",
    "lr_generator", "lr_discriminator", "betas", "hinge_margin", "lambda_patch", "lambda_global", "lambda_c",
    "lambda_percep", "n_stages", "checkpoint_every", "mixed_precision", "window", "overlap", "translation_weight",
]


def validated(preset: str) -> dict:
    """A preset as the workflow reads it: over the paper's config, with the schema's defaults."""
    return study_config(REPO, None if preset == "config.yaml" else REPO / "config" / preset)


def section(preset: str = "demo.yaml") -> dict:
    return without_resources(validated(preset)["tfgan"])


@pytest.mark.parametrize("preset", ["demo.yaml", "config.yaml"])
def test_the_record_is_the_config_section_as_plain_values_in_the_fixed_order(preset):
    config = section(preset)
    record = TFGANSettings.from_config(config).as_record()
    assert list(record) == RECORD_ORDER and set(config) == set(RECORD_ORDER)
    # the same bytes as the section itself in that order: same values, same types (lists, ints, floats)
    assert pickle.dumps(record, protocol=2) == pickle.dumps({key: config[key] for key in RECORD_ORDER}, protocol=2)


def test_the_record_reads_back_to_the_same_settings():
    settings = TFGANSettings.from_config(section())
    assert TFGANSettings.from_config(settings.as_record()) == settings
    assert settings.betas == (0.5, 0.999) and isinstance(settings.lr_generator, float)


def test_the_stage_settings_hold_the_tfgan_settings():
    assert StageSettings.from_config(validated("demo.yaml")).tfgan == TFGANSettings.from_config(section())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"window": 80}, r"tfgan\.window: 80 does not suit G's 6 levels \(a multiple of 32 and at least 64\)"),
        ({"crop": 32}, r"tfgan\.crop: 32 does not suit G's 6 levels"),
        ({"generator_widths": [4, 8, 16], "crop": 64, "window": 34}, r"tfgan\.window: 34 .* multiple of 4"),
        ({"generator_widths": [4]}, r"tfgan\.generator_widths: at least two"),
        ({"betas": [0.5]}, r"tfgan\.betas: \[0\.5\] is not of type tuple\[float, float\]"),
        ({"lambda_c": "high"}, r"tfgan\.lambda_c"),
        ({"mixed_precision": "yes"}, r"tfgan\.mixed_precision: one of"),
        ({"epochs": 0}, r"tfgan\.epochs: at least one epoch"),
    ],
)
def test_a_refused_setting_is_named(change, message):
    with pytest.raises(ValueError, match=message):
        TFGANSettings.from_config({**section(), **change})


def test_missing_and_unknown_keys_are_named():
    config = section()
    del config["overlap"]
    with pytest.raises(ValueError, match=r"tfgan: missing keys \['overlap'\]"):
        TFGANSettings.from_config(config)
    with pytest.raises(ValueError, match=r"tfgan: unknown keys \['dropout'\]"):
        TFGANSettings.from_config({**section(), "dropout": 0.5})
    # The job sizes are resources, not settings.
    assert TFGANSettings.from_config({**section(), "threads": 2, "mem_mb": 900}) == TFGANSettings.from_config(section())


def test_a_one_modality_generator_file_leaves_the_translator_s_keys_out():
    settings = TFGANSettings.from_config(section())
    assert settings.generator_record(4) == settings.as_record()
    one = settings.generator_record(1)
    assert list(one) == [key for key in RECORD_ORDER if key != "translation_weight"]
    assert TFGANSettings.from_record(one).translation_weight == 0.0
    assert TFGANSettings.from_record(settings.generator_record(4)) == settings
