"""Real scans (../shared/data/real, see its README) preprocessed once per test
session, for every test file that reads them: the BraTS case normalized (its
t1n alone, as the paper's study does, and its four sequences), and both
healthy heads stripped by deepbet (the default without SynthStrip weights).

Each is made on first use, by whichever test file asks first, and kept for
the session: a fixture imported into several files is one fixture per file to
pytest, so what it makes is kept here. Nothing may write into these folders.
A test file imports the fixtures it uses:
``from real_scan_fixtures import brats_four  # noqa: F401``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import pytest
from helpers.schema_defaults import schema_defaults

from tumorfab.preprocess.normalize import normalize_real_case
from tumorfab.preprocess.settings import NormalizeSettings, SkullstripSettings

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CASE = "BraTS-GLI-00000-000"
CASE_DIR = REAL / "brats" / CASE
FOUR = ("t1n", "t1c", "t2w", "t2f")
HEADS = {"chris": "chris_t1.nii.gz", "swm": "swm_T1.nii.gz"}
NORMALIZE = NormalizeSettings.from_config(schema_defaults()["normalize"])
#: The seed the heads are stripped with (deepbet draws nothing; the workflow passes one).
SKULLSTRIP_SEED = 2025

T = TypeVar("T")
_made: dict[str, object] = {}


def _once(name: str, make: Callable[[], T]) -> T:
    if name not in _made:
        _made[name] = make()
    return _made[name]  # type: ignore[return-value]


def _needs(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} is not there (CI has it)")


def raw_images(channels=FOUR) -> dict[str, Path]:
    """The real BraTS case's raw images, by channel."""
    return {c: CASE_DIR / f"{CASE}-{c}.nii.gz" for c in channels}


def _normalized(tmp_path_factory, channels: tuple[str, ...]) -> Path:
    _needs(CASE_DIR)
    out = tmp_path_factory.mktemp(f"brats_{len(channels)}") / CASE
    normalize_real_case(raw_images(channels), CASE_DIR / f"{CASE}-seg.nii.gz", out, NORMALIZE, remap_label_4_to_3=False)
    return out


@pytest.fixture(scope="session")
def brats_t1n(tmp_path_factory) -> Path:
    """The real BraTS case normalized from its t1n alone (the paper's study): its case folder."""
    return _once("brats_t1n", lambda: _normalized(tmp_path_factory, ("t1n",)))


@pytest.fixture(scope="session")
def brats_four(tmp_path_factory) -> Path:
    """The real BraTS case normalized with its four sequences: its case folder."""
    return _once("brats_four", lambda: _normalized(tmp_path_factory, FOUR))


def strip_with_deepbet(name: str, out: Path) -> dict:
    """Real head ``name`` (:data:`HEADS`) stripped as the workflow does without
    SynthStrip weights (the schema's defaults: deepbet) into ``out``
    (t1n.nii.gz, brainmask.nii.gz, qc.png); skullstrip's result."""
    from tumorfab.preprocess.skullstrip import skullstrip  # ANTs and torch: only where a head is stripped

    _needs(REAL / "healthy" / HEADS[name])
    return skullstrip(
        REAL / "healthy" / HEADS[name], out / "t1n.nii.gz", out / "brainmask.nii.gz", out / "qc.png",
        failure_qc=out / "refused.png", settings=SkullstripSettings.from_config(schema_defaults()["skullstrip"]),
        seed=SKULLSTRIP_SEED,
    )


@pytest.fixture(scope="session")
def deepbet_head(tmp_path_factory) -> Callable[[str], tuple[Path, dict]]:
    """A function: real head name (:data:`HEADS`) -> (its folder, skullstrip's
    result), the head stripped by deepbet (:func:`strip_with_deepbet`) once a session."""

    def stripped(name: str) -> tuple[Path, dict]:
        def make() -> tuple[Path, dict]:
            out = tmp_path_factory.mktemp(f"deepbet_{name}")
            return out, strip_with_deepbet(name, out)

        return _once(f"deepbet_{name}", make)

    return stripped
