import pytest

from helpers.schema_defaults import schema_defaults
from tumorfab.preprocess.settings import NormalizeSettings, RegistrationSettings, SkullstripSettings


def test_the_schema_defaults_make_every_preprocessing_setting():
    config = schema_defaults()
    assert SkullstripSettings.from_config(config["skullstrip"]).brain_volume_ml == (900.0, 2000.0)
    assert NormalizeSettings.from_config(config["normalize"]).ceiling("t1n") == 1.5


@pytest.mark.parametrize("volume", [[2000, 900], [900, 900]])
def test_brain_volume_range_must_have_min_below_max(volume):
    section = schema_defaults({"skullstrip": {"brain_volume_ml": volume}})["skullstrip"]
    with pytest.raises(ValueError, match=r"^skullstrip\.brain_volume_ml must be \[min, max\] with min < max"):
        SkullstripSettings.from_config(section)


def test_a_ceiling_at_or_below_white_matter_is_refused():
    with pytest.raises(ValueError, match=r"^normalize\.ceiling_over_white_matter\.t2f must be > 1"):
        NormalizeSettings.from_config({"ceiling_over_white_matter": {"t2f": 1.0}})


def test_registration_settings_leave_the_reference_case_to_the_study():
    section = schema_defaults({"registration": {"reference_case": "BraTS-GLI-00001-000"}})["registration"]
    assert RegistrationSettings.from_config(section) == RegistrationSettings("SyN", "linear")


def test_an_unknown_key_is_refused_naming_the_section():
    with pytest.raises(ValueError, match=r"^registration: unknown keys \['interpolation'\]"):
        RegistrationSettings.from_config({"type_of_transform": "SyN", "interpolator": "linear", "interpolation": "x"})
