"""TF-Aug on several sequences: per-channel (a, b), the fill of a channel a healthy
scan lacks, the manifest's ``healthy_channels``, and the T1-only study untouched by
them (docs/interpretations.md, "TF-Aug on several sequences")."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from helpers.schema_defaults import schema_defaults
from test_tfaug_data import AFFINE, TinyEncoder, make_cohort

from tumorfab.synthesis.histogram_match import brain_quantiles, match_to_quantiles, quantile_map
from tumorfab.synthesis.tfaug.fill import interpolate
from tumorfab.synthesis.tfaug.generate import HEALTHY_CHANNELS, MANIFEST_COLUMNS, generate_tfaug, manifest_columns
from tumorfab.synthesis.tfaug.intensity_fit import (
    FitResult,
    Patches,
    fit_intensity,
    fit_tfaug_intensity,
    load_intensity,
    load_reference_quantiles,
    save_intensity,
)
from tumorfab.synthesis.tfaug.settings import IntensityFitSettings, TFAugSettings

TWO = ["t1n", "t2w"]
FIT = IntensityFitSettings(epochs=6, lr=0.5, batch_size=2, n_pairs=4, patch_size=24, n_stages=3)
PAPER = TFAugSettings.from_config(schema_defaults()["tfaug"])
#: The demo's kind of TF-Aug: mass effect and texture on (more of generate's paths).
CONTROLLED = TFAugSettings.from_config(
    schema_defaults(
        {"tfaug": {"mass_effect": {"enabled": True}, "controls": {"heterogeneity": {"amplitude": [0.05, 0.1], "scale_mm": 3.0}}}}
    )["tfaug"]
)
FIT_ARGS = {"masks": PAPER.masks, "blur_sigma": PAPER.blur_sigma}
A = np.array([[0.6, 1.2, 1.4], [1.3, 0.7, 0.9]], np.float32)
B = np.array([[-0.5, 0.1, 0.3], [0.4, -0.2, 0.1]], np.float32)


def load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def add_t2w(folder: Path) -> Path:
    """A T2-like channel: T1's contrast inverted inside the brain (CSF bright, lesion core bright)."""
    t1, brain = load(folder / "t1n.nii.gz"), load(folder / "brainmask.nii.gz") > 0
    t2 = np.where(brain, np.clip(0.1 - 0.8 * t1, -1, 1), -1.0).astype(np.float32)
    nib.save(nib.Nifti1Image(t2, AFFINE), str(folder / "t2w.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """Real cases with t1n and t2w; healthy scans T1-only, and the same scans with t2w for two of three."""
    root = tmp_path_factory.mktemp("channels")
    real, t1_only = make_cohort(root / "t1", n_real=3, n_healthy=3)
    for folder in real:
        add_t2w(folder)
    mixed = []
    for i, folder in enumerate(t1_only):
        copy = root / "mixed" / folder.name
        shutil.copytree(folder, copy)
        mixed.append(add_t2w(copy) if i < 2 else copy)
    return root, real, t1_only, mixed


def real_t2w_quantiles(real) -> np.ndarray:
    return brain_quantiles((load(f / "t2w.nii.gz"), load(f / "brainmask.nii.gz")) for f in real)


def fit(real, healthy, out: Path, settings: IntensityFitSettings = FIT):
    return fit_tfaug_intensity(
        real, healthy, None, out, modalities=TWO, seed=1, intensity_fit=settings, extractor=TinyEncoder(channels=2), **FIT_ARGS
    )


# --- The fit ------------------------------------------------------------------------
def test_with_t1_only_healthy_scans_t1n_is_fitted_and_t2w_has_its_reference_quantiles(cohorts, tmp_path):
    _, real, t1_only, _ = cohorts
    result = fit(real, t1_only, tmp_path / "intensity.json")
    assert result.loss_end < result.loss_start
    content = json.loads((tmp_path / "intensity.json").read_text())
    assert content["modalities"] == TWO
    assert list(content["a"]) == list(content["b"]) == ["t1n"]
    assert list(content["reference_quantiles"]) == ["t2w"]
    np.testing.assert_array_equal(load_reference_quantiles(tmp_path / "intensity.json", ["t2w"])["t2w"], real_t2w_quantiles(real))
    a, b = load_intensity(tmp_path / "intensity.json", ["t1n"])
    assert not np.allclose(b, 0.0)
    with pytest.raises(ValueError, match=r"channels \['t2w'\]"):
        load_intensity(tmp_path / "intensity.json", TWO)


def test_with_t2w_in_some_healthy_scans_both_channels_are_fitted_and_the_fit_is_seeded(cohorts, tmp_path):
    _, real, _, mixed = cohorts
    runs = [fit(real, mixed, tmp_path / f"{i}.json") for i in range(2)]
    assert runs[0].loss_end < runs[0].loss_start
    assert (tmp_path / "0.json").read_text() == (tmp_path / "1.json").read_text()
    content = json.loads((tmp_path / "0.json").read_text())
    assert list(content["a"]) == TWO and list(content["reference_quantiles"]) == ["t2w"]
    a, b = load_intensity(tmp_path / "0.json", TWO)
    assert not np.allclose(b[1], 0.0)  # t2w's parameters moved


def test_the_fill_gives_no_gradient_to_a_and_b():
    """A pool of one T1-only pair: t2w's (a, b) see only fills and stay (1, 0)."""
    rng = np.random.default_rng(0)
    labels = np.zeros((16, 16, 16), np.uint8)
    labels[5:11, 5:11, 5:11] = 2
    labels[7:9, 7:9, 7:9] = 3
    brain = np.ones_like(labels, bool)
    t1 = rng.uniform(-0.5, 0.5, labels.shape).astype(np.float32)
    knots = quantile_map(t1, brain, np.linspace(-0.9, 0.9, 101, dtype=np.float32))
    real_image = np.stack([t1 + 0.3 * (labels > 0), -t1]).astype(np.float32)
    real = Patches.stack([(real_image, brain, labels)])
    pool = Patches.stack([(np.stack([t1, np.full_like(t1, -1.0)]), brain, labels)], [{1: knots}], fill_source=0)
    result = fit_intensity(TinyEncoder(channels=2), real, pool, epochs=3, lr=0.5, batch_size=1, seed=0)
    assert not np.allclose(result.b[0], 0.0)
    np.testing.assert_array_equal(result.a[1], 1.0)
    np.testing.assert_array_equal(result.b[1], 0.0)


def test_interpolate_is_numpys_interp():
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(-1, 1, 50))
    y = np.sort(rng.uniform(-1, 1, 50))
    values = rng.uniform(-1.5, 1.5, (4, 5, 6)).astype(np.float32)
    values.flat[:3] = x[[0, 10, 49]]  # knots themselves
    got = interpolate(torch.from_numpy(values), (x, y)).numpy()
    np.testing.assert_allclose(got, np.interp(values, x, y).astype(np.float32), rtol=0, atol=1e-6)


# --- Generation ---------------------------------------------------------------------
def intensity_json(root: Path, fitted: list[str], real) -> Path:
    """An ``intensity.json`` with (A, B) for ``fitted`` and the real t2w quantiles."""
    path = root / f"intensity_{'_'.join(fitted)}.json"
    save_intensity(FitResult(A, B, 1.0, 0.5), TWO, path, fitted=fitted, reference_quantiles={"t2w": real_t2w_quantiles(real)})
    assert list(json.loads(path.read_text())["a"]) == fitted
    return path


def generate(root: Path, real, healthy, intensity: Path, name: str, n: int = 4, settings: TFAugSettings = CONTROLLED):
    out = root / name
    manifest = generate_tfaug(real, healthy, intensity, out / "cases", out / "manifest.csv", n, 11, TWO, settings)
    return out, manifest


def test_a_channel_the_healthy_scan_lacks_is_its_synthetic_t1n_matched_to_the_real_quantiles(cohorts):
    root, real, t1_only, _ = cohorts
    out, manifest = generate(root, real, t1_only, intensity_json(root, ["t1n"], real), "t1_only")
    quantiles = real_t2w_quantiles(real)
    levels = np.linspace(0, 1, len(quantiles))
    assert list(pd.read_csv(out / "manifest.csv").columns) == manifest_columns(TWO)
    for row in manifest.itertuples():
        folder = out / "cases" / row.case_id
        assert sorted(p.name for p in folder.iterdir()) == ["brainmask.nii.gz", "seg.nii.gz", "t1n.nii.gz", "t2w.nii.gz"]
        t1, t2, brain = (load(folder / f"{n}.nii.gz") for n in ("t1n", "t2w", "brainmask"))
        np.testing.assert_array_equal(t2, match_to_quantiles(t1, brain, quantiles))
        assert (t2[brain == 0] == -1).all()
        # Every rank but the clipped extremes (ties share their mean's value).
        inner = (levels >= 0.01) & (levels <= 0.99)
        assert np.abs(np.quantile(t2[brain > 0], levels[inner]) - quantiles[inner]).max() < 0.01
        assert json.loads(getattr(row, HEALTHY_CHANNELS)) == ["t1n"]
        assert list(json.loads(row.a)) == ["t1n"]


def test_channels_the_healthy_scan_has_get_their_own_a_and_b(cohorts):
    root, real, _, mixed = cohorts
    out, manifest = generate(root, real, mixed, intensity_json(root, TWO, real), "mixed", n=6, settings=PAPER)
    sources = {p.name: p for p in mixed}
    kinds = set()
    for row in manifest.itertuples():
        folder, source = out / "cases" / row.case_id, sources[row.healthy_subject]
        channels = json.loads(getattr(row, HEALTHY_CHANNELS))
        kinds.add(tuple(channels))
        assert channels == (TWO if (source / "t2w.nii.gz").exists() else ["t1n"])
        assert list(json.loads(row.a)) == channels
        seg = load(folder / "seg.nii.gz")
        if "t2w" in channels:
            # The paper preset (no mass effect): outside the ROI, the healthy t2w itself.
            assert np.array_equal(load(folder / "t2w.nii.gz")[seg == 0], load(source / "t2w.nii.gz")[seg == 0])
            assert json.loads(row.b)["t2w"]["ncr"] == pytest.approx(0.4)
    assert kinds == {("t1n",), ("t1n", "t2w")}


def test_several_channels_are_generated_bit_identically(cohorts):
    root, real, _, mixed = cohorts
    intensity = intensity_json(root, TWO, real)
    first, manifest = generate(root, real, mixed, intensity, "first", n=3)
    again, _ = generate(root, real, mixed, intensity, "again", n=3)
    assert (first / "manifest.csv").read_bytes() == (again / "manifest.csv").read_bytes()
    for case_id in manifest.case_id:
        for name in ("t1n", "t2w", "seg", "brainmask"):
            path = Path("cases") / case_id / f"{name}.nii.gz"
            assert (first / path).read_bytes() == (again / path).read_bytes()


def test_a_missing_fit_or_reference_or_t1_is_named(cohorts, tmp_path):
    root, real, t1_only, mixed = cohorts
    with pytest.raises(ValueError, match=r"channels \['t2w'\]"):  # a healthy t2w, no (a, b) for it
        generate(tmp_path, real, mixed, intensity_json(root, ["t1n"], real), "no_fit", n=1)
    t1_json = tmp_path / "t1.json"
    save_intensity(FitResult(A[:1], B[:1], 1.0, 0.5), ["t1n"], t1_json)
    with pytest.raises(ValueError, match=r"reference quantiles for channels \['t2w'\]"):
        generate(tmp_path, real, t1_only, t1_json, "no_quantiles", n=1)
    no_t1 = tmp_path / "healthy" / "IXI999"
    shutil.copytree(mixed[0], no_t1)
    (no_t1 / "t1n.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="IXI999/t1n.nii.gz"):
        generate(tmp_path, real, [no_t1], intensity_json(root, TWO, real), "no_t1", n=1)


# --- The T1-only study: the several-sequence machinery inert -------------------------------
def _fill_refused(monkeypatch) -> None:
    """Every piece of the fill a T1-only fit or generation could reach raises when called."""
    from tumorfab.synthesis.tfaug import fill, intensity_fit

    def refused(*args, **kwargs):
        raise AssertionError("the fill ran in a T1-only study")

    for name in ("fill_patch", "quantile_map", "brain_quantiles"):
        monkeypatch.setattr(intensity_fit, name, refused)
    monkeypatch.setattr(fill, "match_to_quantiles", refused)


def test_a_t1_only_fit_writes_the_paper_s_json_and_reads_no_other_channel(cohorts, tmp_path, monkeypatch):
    """Nothing is filled, no reference quantiles are kept, and a healthy folder's
    t2w beside its t1n changes nothing: the same fit, byte for byte."""
    _, real, t1_only, mixed = cohorts
    _fill_refused(monkeypatch)
    for name, healthy in (("t1_only", t1_only), ("mixed", mixed)):
        fit_tfaug_intensity(real, healthy, None, tmp_path / name / "intensity.json", modalities=["t1n"], seed=2,
                            intensity_fit=replace(FIT, epochs=3), extractor=TinyEncoder(), **FIT_ARGS)
    written = (tmp_path / "t1_only" / "intensity.json").read_text()
    content = json.loads(written)
    assert list(content) == ["method", "modalities", "a", "b", "loss_start", "loss_end", "loss_per_epoch", "settings"]
    assert content["modalities"] == list(content["a"]) == list(content["b"]) == ["t1n"]
    assert (tmp_path / "mixed" / "intensity.json").read_text() == written


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("tfaug", [PAPER, CONTROLLED], ids=["paper", "mass_effect_and_texture"])
def test_t1_only_cases_are_the_t1n_of_the_same_cases_made_with_a_second_channel(cohorts, tmp_path, monkeypatch, tfaug):
    """Same draws, same T1 intensities: a case's t1n, labels and brain mask do not
    depend on what else is configured, and the T1-only manifest has the paper's
    columns (no ``healthy_channels``); nothing is filled."""
    root, real, t1_only, _ = cohorts
    intensity = intensity_json(root, ["t1n"], real)  # t1n's (a, b) and t2w's reference quantiles

    def made_with(modalities, name):
        return generate_tfaug(real, t1_only, intensity, tmp_path / name / "cases", tmp_path / name / "manifest.csv", 3, 5,
                              modalities, tfaug)

    two = made_with(TWO, "two")
    _fill_refused(monkeypatch)
    one = made_with(["t1n"], "one")
    assert list(pd.read_csv(tmp_path / "one" / "manifest.csv").columns) == MANIFEST_COLUMNS == manifest_columns(["t1n"])
    pd.testing.assert_frame_equal(one, two.drop(columns=HEALTHY_CHANNELS))
    made = files_of(tmp_path / "one" / "cases")
    assert len(made) == 3 * 3 and made == {k: v for k, v in files_of(tmp_path / "two" / "cases").items() if "t2w" not in k}
