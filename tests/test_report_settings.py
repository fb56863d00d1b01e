import pytest

from helpers.schema_defaults import schema_defaults
from tumorfab.report.settings import ReportSettings


def test_the_schema_default_shows_four_cases_per_mosaic():
    assert ReportSettings.from_config(schema_defaults()["report"]) == ReportSettings(mosaic_cases=4)


def test_an_empty_mosaic_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"^report\.mosaic_cases must be >= 1"):
        ReportSettings.from_config({"mosaic_cases": 0})
