"""The report's settings (imports nothing heavy: the workflow builds them with the DAG)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from tumorfab.config import Settings, config_section


@dataclass(frozen=True)
class ReportSettings(Settings):
    """``report``: how many synthetic cases each mosaic shows (the first, in generation order)."""

    mosaic_cases: int

    @classmethod
    def from_config(cls, section: Mapping) -> ReportSettings:
        section = config_section(section, cls.__dataclass_fields__, "report")
        mosaic_cases = int(section["mosaic_cases"])
        if mosaic_cases < 1:
            raise ValueError("report.mosaic_cases must be >= 1")
        return cls(mosaic_cases)
