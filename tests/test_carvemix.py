"""CarveMix baseline (tumorfab.synthesis.carvemix) and its Snakemake rule."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import planned_jobs, run_snakemake, study_of, tiny_demo_config

from tumorfab.synthesis import generation_size
from tumorfab.synthesis.carvemix import (
    MANIFEST_COLUMNS,
    CarveMixSettings,
    carve_region,
    generate_carvemix,
    lesion_depth,
    load_case,
    signed_distance,
)
from tumorfab.io import save_nifti
from tumorfab.study import layout
from tumorfab.study.model import ConfigError

SHAPE = (32, 30, 20)
ZOOMS = (1.0, 1.2, 2.0)  # anisotropic on purpose: spacing must be respected


def make_case(
    case_dir: Path, center, radius: float, seed: int, modalities=("t1n",), lesion=True
) -> None:
    """A tiny case folder: ellipsoid brain, layered lesion (NCR core, ET rim, ED shell)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), axis=-1) * ZOOMS
    brain_r = np.linalg.norm(
        (grid - np.array(SHAPE) * ZOOMS / 2) / (np.array(SHAPE) * ZOOMS * 0.45), axis=-1
    )
    brainmask = (brain_r < 1).astype(np.uint8)
    r = np.linalg.norm(grid - np.asarray(center) * ZOOMS, axis=-1)
    seg = np.zeros(SHAPE, np.uint8)
    if lesion:
        seg[r < radius] = 2
        seg[r < 0.7 * radius] = 3
        seg[r < 0.4 * radius] = 1
        seg[brainmask == 0] = 0
    affine = np.diag([*ZOOMS, 1.0])
    for m in modalities:
        image = np.full(SHAPE, -1.0, np.float32)
        image[brainmask > 0] = rng.uniform(-0.9, 0.9, int(brainmask.sum())).astype(np.float32)
        save_nifti(image, affine, case_dir / f"{m}.nii.gz")
    save_nifti(brainmask, affine, case_dir / "brainmask.nii.gz")
    save_nifti(seg, affine, case_dir / "seg.nii.gz")


@pytest.fixture()
def train_cases(tmp_path):
    dirs = {}
    centers = [(12, 12, 9), (18, 16, 10), (15, 13, 11), (14, 17, 8)]
    for i, center in enumerate(centers):
        case_id = f"BraTS-GLI-{i:05d}-000"
        make_case(tmp_path / "real" / case_id, center, radius=5.0 + i, seed=i)
        dirs[case_id] = tmp_path / "real" / case_id
    return dirs


def generate(dirs, out, n, lambda_range=(0.0, 1.0), seed=7, modalities=("t1n",)):
    return generate_carvemix(
        dirs, out / "cases", out / "manifest.csv", n, list(modalities), CarveMixSettings(lambda_range), seed
    )


def volumes(case_dir: Path, name: str) -> np.ndarray:
    return np.asanyarray(nib.load(case_dir / f"{name}.nii.gz").dataobj)


def test_signed_distance_is_negative_inside_positive_outside_in_mm():
    lesion = np.zeros((9, 9, 9), bool)
    lesion[3:6, 3:6, 3:6] = True
    d = signed_distance(lesion, (1.0, 1.0, 2.0))
    assert (d[lesion] < 0).all() and (d[~lesion] > 0).all()
    assert d[4, 4, 4] == -2.0  # centre: two voxels of 1 mm to the nearest non-lesion voxel in x
    assert d[4, 4, 6] == 2.0  # one voxel of 2 mm above the lesion
    assert d[3, 4, 4] == -1.0  # border voxel in x (1 mm)
    assert d[4, 4, 5] == -2.0  # border voxel in z: 2 mm in z, or 2 voxels of 1 mm in x


def test_carve_region_on_a_crop_equals_thresholding_the_full_map():
    lesion = np.zeros(SHAPE, bool)
    lesion[10:16, 8:15, 5:9] = True
    lesion[14:18, 12:14, 8:11] = True
    d = signed_distance(lesion, ZOOMS)
    depth = lesion_depth(lesion, ZOOMS)
    assert depth == pytest.approx(float(-d[lesion].min()))
    for lam in [-0.6 * depth, -0.1, 0.3, depth, 7.5]:
        np.testing.assert_array_equal(carve_region(lesion, ZOOMS, lam), d < lam)


def test_labels_are_only_0_to_3_and_brain_is_minus_one_outside_the_mask(train_cases, tmp_path):
    generate(train_cases, tmp_path / "out", 6)
    for case_dir in sorted((tmp_path / "out" / "cases").iterdir()):
        seg = volumes(case_dir, "seg")
        assert seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 1, 2, 3}
        mask = volumes(case_dir, "brainmask")
        assert set(np.unique(mask)) <= {0, 1}
        image = volumes(case_dir, "t1n")
        assert image.dtype == np.float32
        assert (image[mask == 0] == -1).all()


def test_image_is_bit_equal_to_a_outside_the_carved_region(train_cases, tmp_path):
    manifest = generate(train_cases, tmp_path / "out", 6)
    for row in manifest.itertuples():
        out = tmp_path / "out" / "cases" / row.case_id
        a, b = load_case(train_cases[row.case_a], ["t1n"]), load_case(
            train_cases[row.case_b], ["t1n"]
        )
        region = carve_region(b.seg > 0, ZOOMS, row.lambda_mm)
        assert region.sum() == row.carved_voxels
        image, seg, mask = volumes(out, "t1n"), volumes(out, "seg"), volumes(out, "brainmask")
        np.testing.assert_array_equal(image[~region], a.images["t1n"][~region])
        np.testing.assert_array_equal(seg[~region], a.seg[~region])
        np.testing.assert_array_equal(mask[~region], a.brainmask[~region])
        np.testing.assert_array_equal(image[region], b.images["t1n"][region])
        np.testing.assert_array_equal(seg[region], b.seg[region])


def test_default_range_carves_the_whole_lesion_of_b_with_a_margin(train_cases, tmp_path):
    manifest = generate(train_cases, tmp_path / "out", 8)
    assert (manifest["lambda_fraction"].between(0.0, 1.0)).all()
    for row in manifest.itertuples():
        b = load_case(train_cases[row.case_b], ["t1n"])
        lesion = b.seg > 0
        assert row.carved_voxels >= lesion.sum()
        seg = volumes(tmp_path / "out" / "cases" / row.case_id, "seg")
        np.testing.assert_array_equal(seg[lesion], b.seg[lesion])


def test_negative_range_carves_only_part_of_the_lesion(train_cases, tmp_path):
    manifest = generate(train_cases, tmp_path / "out", 6, lambda_range=(-0.5, -0.25))
    assert (manifest["lambda_mm"] < 0).all()
    for row in manifest.itertuples():
        b = load_case(train_cases[row.case_b], ["t1n"])
        lesion = b.seg > 0
        region = carve_region(lesion, ZOOMS, row.lambda_mm)
        assert 0 < region.sum() == row.carved_voxels < lesion.sum()
        assert not (region & ~lesion).any()


def test_manifest_has_a_provenance_row_for_every_case_in_order(train_cases, tmp_path):
    generate(train_cases, tmp_path / "out", 5)
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert list(manifest["case_id"]) == [f"carvemix_{i:04d}" for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "out" / "cases").iterdir()) == list(
        manifest["case_id"]
    )
    assert (manifest["case_a"] != manifest["case_b"]).all()
    assert set(manifest["case_a"]) | set(manifest["case_b"]) <= set(train_cases)
    assert (manifest["seed"] == 7).all()
    np.testing.assert_allclose(
        manifest["lambda_mm"], manifest["lambda_fraction"] * manifest["lesion_depth_mm"]
    )


def test_generation_is_deterministic_for_a_seed(train_cases, tmp_path):
    first = generate(train_cases, tmp_path / "one", 4)
    second = generate(train_cases, tmp_path / "two", 4)
    pd.testing.assert_frame_equal(first, second)
    for case_id in first["case_id"]:
        for name in ["t1n", "seg", "brainmask"]:
            np.testing.assert_array_equal(
                volumes(tmp_path / "one" / "cases" / case_id, name),
                volumes(tmp_path / "two" / "cases" / case_id, name),
            )
    other = generate(train_cases, tmp_path / "three", 4, seed=8)
    assert not first[["case_a", "case_b", "lambda_fraction"]].equals(
        other[["case_a", "case_b", "lambda_fraction"]]
    )


def test_first_k_of_n_cases_equal_generating_k(train_cases, tmp_path):
    big = generate(train_cases, tmp_path / "big", 7)
    small = generate(train_cases, tmp_path / "small", 3)
    pd.testing.assert_frame_equal(big.head(3), small)
    for case_id in small["case_id"]:
        for name in ["t1n", "seg", "brainmask"]:
            np.testing.assert_array_equal(
                volumes(tmp_path / "big" / "cases" / case_id, name),
                volumes(tmp_path / "small" / "cases" / case_id, name),
            )


def test_all_four_channels_are_cut_with_one_region(tmp_path):
    channels = ["t1n", "t1c", "t2w", "t2f"]
    dirs = {}
    for i, center in enumerate([(12, 12, 9), (18, 16, 10), (15, 13, 11)]):
        dirs[f"BraTS-GLI-{i:05d}-000"] = tmp_path / f"c{i}"
        make_case(tmp_path / f"c{i}", center, 6.0, seed=i, modalities=channels)
    manifest = generate(dirs, tmp_path / "out", 3, modalities=channels)
    for row in manifest.itertuples():
        a, b = load_case(dirs[row.case_a], channels), load_case(dirs[row.case_b], channels)
        region = carve_region(b.seg > 0, ZOOMS, row.lambda_mm)
        out = tmp_path / "out" / "cases" / row.case_id
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [f"{c}.nii.gz" for c in channels] + ["brainmask.nii.gz", "seg.nii.gz"]
        )
        for channel in channels:  # each channel its own: B's inside the one region, A's outside
            np.testing.assert_array_equal(volumes(out, channel), np.where(region, b.images[channel], a.images[channel]))
        np.testing.assert_array_equal(volumes(out, "seg"), np.where(region, b.seg, a.seg))


def test_a_and_b_are_cases_of_different_patients(tmp_path):
    dirs = {}
    for i, case_id in enumerate(
        ["BraTS-GLI-00001-000", "BraTS-GLI-00001-001", "BraTS-GLI-00002-000"]
    ):
        dirs[case_id] = tmp_path / case_id
        make_case(dirs[case_id], (12 + i, 14, 9), 5.0, seed=i)
    manifest = generate(dirs, tmp_path / "out", 10)
    patients = lambda ids: [c.rsplit("-", 1)[0] for c in ids]  # noqa: E731
    assert all(a != b for a, b in zip(patients(manifest["case_a"]), patients(manifest["case_b"])))


def test_a_case_without_lesion_is_never_the_donor(train_cases, tmp_path):
    make_case(tmp_path / "real" / "empty", (10, 10, 10), 5.0, seed=9, lesion=False)
    dirs = {**train_cases, "empty": tmp_path / "real" / "empty"}
    manifest = generate(dirs, tmp_path / "out", 12)
    assert "empty" not in set(manifest["case_b"])


def test_a_killed_run_leaves_no_cases_folder(train_cases, tmp_path):
    (train_cases["BraTS-GLI-00002-000"] / "t1n.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match="cannot read NIfTI"):
        generate(train_cases, tmp_path / "out", 8)
    assert not (tmp_path / "out" / "cases").exists()
    assert not (tmp_path / "out" / "manifest.csv").exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_lambda_range_is_read_as_two_floats():
    assert CarveMixSettings.from_config({"lambda_range": [-0.5, 1]}) == CarveMixSettings((-0.5, 1.0))


@pytest.mark.parametrize("lambda_range", [[0.5, 0.2], [-1.5, 0.2]])
def test_lambda_range_must_be_ordered_and_not_below_minus_one(lambda_range):
    with pytest.raises(ValueError, match=r"^carvemix\.lambda_range \[.*\]: need -1 <= low <= high"):
        CarveMixSettings.from_config({"lambda_range": lambda_range})


def test_an_unknown_carvemix_key_is_refused():
    with pytest.raises(ValueError, match=r"^carvemix: unknown keys \['lambda'\]"):
        CarveMixSettings.from_config({"lambda_range": [0.0, 1.0], "lambda": 1})


def test_generation_size_is_the_largest_n_of_the_source():
    experiments = {
        "baseline": {"source": "none", "n_synthetic": 0},
        "carvemix_8": {"source": "carvemix", "n_synthetic": 8},
        "carvemix_16": {"source": "carvemix", "n_synthetic": 16},
        "tf_24": {"source": "tf", "n_synthetic": 24},
    }
    assert generation_size(experiments, "carvemix") == 16
    assert generation_size(experiments, "pix2pix") == 0


@pytest.mark.slow
def test_rule_generate_carvemix_writes_the_largest_set_and_its_mosaic(tiny_demo):
    workdir, config = tiny_demo
    study = study_of(config)
    manifest = pd.read_csv(workdir / layout.synthetic_manifest("carvemix"))
    assert len(manifest) == study.generation_size("carvemix") > 0
    assert (manifest["seed"] == config["seed"]).all()
    assert set(manifest["case_a"]) | set(manifest["case_b"]) <= set(study.train_cases)
    cases = workdir / layout.synthetic_cases_dir("carvemix")
    # Snakemake adds a hidden .snakemake_timestamp to directory outputs.
    assert sorted(p.name for p in cases.iterdir() if not p.name.startswith(".")) == list(manifest["case_id"])
    assert (workdir / layout.report_figure("mosaic_carvemix")).stat().st_size > 0
    assert (workdir / "logs" / "generate_carvemix" / "carvemix.log").exists()


@pytest.mark.slow
def test_a_changed_lambda_range_reruns_carvemix_and_no_other_source(tiny_demo):
    workdir, config = tiny_demo
    changed = copy.deepcopy(config)
    changed.setdefault("carvemix", {})["lambda_range"] = [-0.5, 1.0]
    jobs = planned_jobs(run_snakemake(workdir, changed, "-n"))
    assert jobs["generate_carvemix"] == 1
    other_sources = {"fit_tfaug_intensity", "generate_tfaug", "train_tfgan", "generate_tf", "train_pix2pix", "generate_pix2pix"}
    assert not other_sources & set(jobs)


def test_an_inverted_lambda_range_stops_the_study_naming_the_key():
    # Where the workflow builds its settings (common.smk: Study.from_config).
    config = tiny_demo_config()
    config.setdefault("carvemix", {})["lambda_range"] = [0.8, 0.2]
    with pytest.raises(ConfigError, match=re.escape("carvemix.lambda_range [0.8, 0.2]")):
        study_of(config)
