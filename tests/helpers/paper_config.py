"""The paper's study (config/config.yaml with the schema's defaults), for tests and benchmarks at paper scale."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from tumorfab.config import study_config

REPO = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def paper_config() -> dict:
    return study_config(REPO)


#: G's widths in the paper config (tfgan.generator_widths).
PAPER_GENERATOR_WIDTHS = tuple(paper_config()["tfgan"]["generator_widths"])
