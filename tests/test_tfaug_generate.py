"""Generating TF-Aug case folders + manifest (paper 002 §2.1; nested sets: docs/architecture.md)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers.schema_defaults import schema_defaults
from test_tfaug_data import AFFINE, make_cohort

from tumorfab.synthesis.tfaug.generate import MANIFEST_COLUMNS, generate_tfaug
from tumorfab.synthesis.tfaug.intensity_fit import FitResult, save_intensity
from tumorfab.synthesis.tfaug.settings import TFAugSettings

FILES = ("t1n.nii.gz", "seg.nii.gz", "brainmask.nii.gz")
A = np.array([[0.6, 1.2, 1.4]])
B = np.array([[-0.5, 0.1, 0.3]])
#: The schema's defaults: the paper preset of each section.
PAPER = TFAugSettings.from_config(schema_defaults()["tfaug"])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfaug")
    real, healthy = make_cohort(root, n_real=4, n_healthy=3)
    save_intensity(FitResult(A, B, 1.0, 0.5), ["t1n"], root / "intensity.json")
    return root, real, healthy


def generate(inputs, name: str, n: int) -> tuple[Path, pd.DataFrame]:
    root, real, healthy = inputs
    out = root / name
    manifest = generate_tfaug(
        real, healthy, root / "intensity.json", out / "cases", out / "manifest.csv", n, 11, ["t1n"], PAPER
    )
    return out, manifest


@pytest.fixture(scope="module")
def paper_set(inputs):
    return generate(inputs, "paper", 4)


def load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def test_cases_follow_the_case_folder_contract(paper_set):
    out, manifest = paper_set
    assert sorted(p.name for p in (out / "cases").iterdir()) == [f"tfaug_{i:04d}" for i in range(4)]
    for case_id in manifest.case_id:
        folder = out / "cases" / case_id
        image, seg, brain = (nib.load(str(folder / f)) for f in FILES)
        assert image.get_data_dtype() == np.float32
        assert seg.get_data_dtype() == np.uint8 and brain.get_data_dtype() == np.uint8
        assert np.allclose(image.affine, AFFINE)
        image, seg, brain = load(folder / FILES[0]), load(folder / FILES[1]), load(folder / FILES[2])
        assert set(np.unique(seg)) <= {0, 1, 2, 3} and seg.any()
        assert not seg[brain == 0].any()
        assert (image[brain == 0] == -1).all()
        assert image.min() >= -1 and image.max() <= 1


def test_outside_the_roi_the_case_is_its_healthy_source_exactly(inputs, paper_set):
    _, _, healthy = inputs
    out, manifest = paper_set
    sources = {p.name: p for p in healthy}
    for row in manifest.itertuples():
        folder = out / "cases" / row.case_id
        seg = load(folder / "seg.nii.gz")
        source = sources[row.healthy_subject]
        assert np.array_equal(load(folder / "t1n.nii.gz")[seg == 0], load(source / "t1n.nii.gz")[seg == 0])
        assert np.array_equal(load(folder / "brainmask.nii.gz"), load(source / "brainmask.nii.gz"))


def test_the_manifest_records_provenance_in_generation_order(paper_set):
    out, manifest = paper_set
    on_disk = pd.read_csv(out / "manifest.csv")
    assert list(on_disk.columns) == MANIFEST_COLUMNS and on_disk.columns[0] == "case_id"
    assert list(on_disk.case_id) == [f"tfaug_{i:04d}" for i in range(4)]
    assert list(on_disk.seed_index) == [0, 1, 2, 3]
    row = on_disk.iloc[0]
    lesions = json.loads(row.lesions)
    assert len(lesions) == row.n_lesions == 1
    component = lesions[0]["components"][0]
    assert component["source"].startswith("BraTS-GLI-") and {"scale", "angles_deg", "flip", "offset_mm"} <= set(component)
    assert json.loads(row.a)["t1n"]["ed"] == pytest.approx(1.2)
    assert json.loads(row.b)["t1n"]["et"] == pytest.approx(0.3)
    assert json.loads(row.location) == {"mode": "any"}
    assert row.mass_effect_mm == 0.0


def test_the_same_seed_gives_bit_identical_cases(inputs, paper_set):
    out, manifest = paper_set
    again, manifest_again = generate(inputs, "again", 4)
    assert (out / "manifest.csv").read_bytes() == (again / "manifest.csv").read_bytes()
    for case_id in manifest.case_id:
        for name in FILES:
            assert (out / "cases" / case_id / name).read_bytes() == (again / "cases" / case_id / name).read_bytes()


def test_a_smaller_set_is_a_prefix_of_a_larger_one(inputs, paper_set):
    out, manifest = paper_set
    small, small_manifest = generate(inputs, "small", 2)
    pd.testing.assert_frame_equal(small_manifest, manifest.iloc[:2])
    for case_id in small_manifest.case_id:
        for name in FILES:
            assert (small / "cases" / case_id / name).read_bytes() == (out / "cases" / case_id / name).read_bytes()


def test_another_seed_gives_other_cases(inputs, paper_set):
    root, real, healthy = inputs
    out, manifest = paper_set
    other = generate_tfaug(real, healthy, root / "intensity.json", root / "other" / "cases", root / "other" / "m.csv", 2, 12, ["t1n"], PAPER)
    assert list(other.lesions) != list(manifest.lesions[:2])


def test_zero_cases_write_an_empty_manifest(inputs):
    out, manifest = generate(inputs, "empty", 0)
    assert manifest.empty and list(pd.read_csv(out / "manifest.csv").columns) == MANIFEST_COLUMNS
    assert (out / "cases").is_dir() and not any((out / "cases").iterdir())


def test_the_user_s_own_masks_are_placed_as_given(inputs, tmp_path):
    """Fabricated cohorts (masks_dir): case i takes map i, cycling; voxels outside
    the healthy brain dropped; each connected component one lesion."""
    root, real, healthy = inputs
    maps = []
    for index, (real_case, corner) in enumerate(zip(real[:2], (0, 3))):
        labels = load(Path(real_case) / "seg.nii.gz").copy()
        labels[:corner, :corner, :corner] = 0
        maps.append(labels)
        nib.save(nib.Nifti1Image(labels.astype(np.float32), AFFINE), str(tmp_path / f"map{index}.nii.gz"))
    given = sorted(str(p) for p in tmp_path.glob("*.nii.gz"))
    manifest = generate_tfaug(
        real, healthy, root / "intensity.json", tmp_path / "cases", tmp_path / "manifest.csv", 3, 11, ["t1n"],
        PAPER, given_masks=given,
    )
    for index, row in manifest.iterrows():
        case = tmp_path / "cases" / row["case_id"]
        brain = load(case / "brainmask.nii.gz") > 0
        assert np.array_equal(load(case / "seg.nii.gz"), np.where(brain, maps[index % 2], 0))
        assert row["source_cases"] == f"map{index % 2}.nii.gz"
        lesions = json.loads(row["lesions"])
        assert row["n_lesions"] == len(lesions) >= 1
        assert sum(lesion["volume_ml"] for lesion in lesions) == pytest.approx(row["volume_ml"], abs=1e-3)
    outside = np.zeros_like(maps[0])
    outside[0, 0, 0] = 2
    nib.save(nib.Nifti1Image(outside, AFFINE), str(tmp_path / "outside.nii.gz"))
    with pytest.raises(ValueError, match=r"outside\.nii\.gz: no lesion voxel inside the healthy scan's brain \(1 given\)"):
        generate_tfaug(
            real, healthy, root / "intensity.json", tmp_path / "bad", tmp_path / "bad.csv", 1, 11, ["t1n"],
            PAPER, given_masks=[str(tmp_path / "outside.nii.gz")],
        )
