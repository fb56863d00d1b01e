"""TF-Aug's settings from the config (tumorfab.synthesis.tfaug.settings): defaults and checks."""

from __future__ import annotations

import pytest
from helpers.schema_defaults import schema_defaults

from tumorfab.synthesis.tfaug.settings import (
    Controls,
    IntensityFitSettings,
    LocationSpec,
    MaskAugmentation,
    MassEffect,
    TFAugSettings,
)


def tfaug_section(**overrides) -> dict:
    return schema_defaults({"tfaug": overrides})["tfaug"]


def test_the_paper_defaults_are_no_control_at_all():
    """The schema's defaults of tfaug.controls are the paper's TF-Aug: no control."""
    settings = TFAugSettings.from_config(tfaug_section())
    controls = settings.controls
    assert controls.location.mode == "any" and controls.size_ml is None
    assert controls.n_lesions == (1, 1)
    assert controls.offset == ((1, (0.0, 0.0)), (2, (0.0, 0.0)), (3, (0.0, 0.0)))
    assert controls.heterogeneity_amplitude == (0.0, 0.0)
    assert not settings.mass_effect.enabled


def test_settings_are_hashable_so_a_rule_can_compare_them():
    assert hash(TFAugSettings.from_config(tfaug_section())) == hash(TFAugSettings.from_config(tfaug_section()))


def test_the_intensity_fit_records_its_settings_in_the_config_order():
    fit = TFAugSettings.from_config(tfaug_section()).intensity_fit
    assert fit.record() == {"epochs": 200, "lr": 0.01, "batch_size": 2, "n_pairs": 100, "patch_size": 128, "n_stages": 3}


def test_an_unknown_tfaug_key_is_named():
    with pytest.raises(ValueError, match=r"^tfaug: unknown keys \['blur'\]"):
        TFAugSettings.from_config({**tfaug_section(), "blur": 1.0})


def test_unknown_fit_settings_are_named():
    with pytest.raises(ValueError, match=r"^tfaug\.intensity_fit: unknown keys \['epoch'\]"):
        IntensityFitSettings.from_config({**tfaug_section()["intensity_fit"], "epoch": 3})


def test_mask_settings_reject_unknown_keys():
    with pytest.raises(ValueError, match=r"^tfaug\.masks: unknown keys \['sclae'\]"):
        MaskAugmentation.from_config({**tfaug_section()["masks"], "sclae": [1, 2]})


def test_a_scale_range_must_be_ordered():
    with pytest.raises(ValueError, match=r"^tfaug\.masks\.scale \[1\.2, 0\.8\]: need 0 < low <= high"):
        TFAugSettings.from_config(tfaug_section(masks={"scale": [1.2, 0.8]}))


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"size_ml": [5, 1]}, r"^tfaug\.controls\.size_ml: expected a number or \[low, high\] with low <= high"),
        ({"n_lesions": [3, 1]}, r"^tfaug\.controls\.n_lesions: expected"),
        ({"offset": {"et": [0.3, 0.1]}}, r"^tfaug\.controls\.offset\.et: expected"),
        ({"heterogeneity": {"amplitude": [0.2, 0.1]}}, r"^tfaug\.controls\.heterogeneity\.amplitude: expected"),
    ],
)
def test_a_range_with_low_above_high_is_named(controls, message):
    with pytest.raises(ValueError, match=message):
        TFAugSettings.from_config(tfaug_section(controls=controls))


def test_a_mass_effect_range_with_low_above_high_is_named():
    with pytest.raises(ValueError, match=r"^tfaug\.mass_effect\.magnitude_mm: expected"):
        TFAugSettings.from_config(tfaug_section(mass_effect={"magnitude_mm": [6.0, 2.0]}))


def test_unknown_or_incomplete_controls_are_named():
    # Dicts the schema would refuse, passed as a caller might.
    defaults = tfaug_section()["controls"]
    with pytest.raises(ValueError, match=r"^tfaug\.controls: unknown keys \['colour'\]"):
        Controls.from_config({**defaults, "colour": 1})
    with pytest.raises(ValueError, match=r"^tfaug\.controls\.location: mode hemisphere needs side"):
        LocationSpec.from_config({"mode": "hemisphere"})
    with pytest.raises(ValueError, match=r"^tfaug\.controls\.offset: unknown subregions \['tumour'\]"):
        Controls.from_config({**defaults, "offset": {**defaults["offset"], "tumour": 0.1}})
    with pytest.raises(ValueError, match=r"^tfaug\.mass_effect: missing keys \['steps'\]"):
        MassEffect.from_config({"enabled": True, "magnitude_mm": 3.0})
