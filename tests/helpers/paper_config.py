"""The paper preset (config/config.yaml), for tests and benchmarks at paper scale."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def paper_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


#: G's widths in the paper config (tfgan.generator_widths).
PAPER_GENERATOR_WIDTHS = tuple(paper_config()["tfgan"]["generator_widths"])
