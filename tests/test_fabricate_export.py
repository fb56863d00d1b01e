"""Exporting a fabricated cohort: the real intensity scale, the BraTS layout, the nnU-Net dataset.

Tiny case folders made here, and the real BraTS case (../shared/data/real)
normalized and exported back, which must give its raw intensities again.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import sphere, write_volume
from helpers.schema_defaults import schema_defaults
from real_scan_fixtures import CASE_DIR as REAL_CASE
from real_scan_fixtures import FOUR as CHANNELS
from real_scan_fixtures import brats_four, raw_images  # noqa: F401

from tumorfab.casefolder import Case, save_case
from tumorfab.fabricate.export import (
    DESCRIPTION,
    export_brats,
    export_nnunet,
    intensity_scale,
    load_intensity_scale,
    save_intensity_scale,
)
from tumorfab.prepare.cases import discover_brats
from tumorfab.prepare.validate import prepare_manifests
from tumorfab.preprocess.settings import NormalizeSettings
from tumorfab.segmentation.dataset import dataset_json, to_nnunet_image
from tumorfab.synthesis.manifest import write_manifest

NORMALIZE = NormalizeSettings.from_config(schema_defaults()["normalize"])
SHAPE = (20, 20, 16)
#: A BraTS-like orientation (LPS voxel axes) and a shifted origin.
AFFINE = np.array([[-1.0, 0, 0, 10], [0, -1.0, 0, 29], [0, 0, 1.0, -3], [0, 0, 0, 1]])
#: What a source subject's header might carry: it must not reach an export.
SECRET = "IXI042-Guys-0828 patient text"
SCALE = {c: {"white_matter": 400.0 + 100 * i, "ceiling": 3.0 + i} for i, c in enumerate(CHANNELS)}

needs_real_case = pytest.mark.skipif(not REAL_CASE.is_dir(), reason=f"{REAL_CASE} is not there (CI has it)")


def secret_header() -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header["descrip"] = SECRET.encode()
    header["aux_file"] = b"secret-aux"
    header["intent_name"] = b"secret"
    header["db_name"] = b"secret-db"
    return header


def tiny_case(rng: np.random.Generator, shape=SHAPE, affine=AFFINE) -> Case:
    """A case folder's content: images in [-1, 1] in a ball of brain, -1 outside, a lesion of three labels."""
    centre = np.array(shape) / 2
    brain = sphere(shape, centre, min(shape) / 2 - 1)
    seg = np.zeros(shape, np.uint8)
    seg[sphere(shape, centre, 4)] = 2
    seg[sphere(shape, centre, 2.5)] = 3
    seg[sphere(shape, centre, 1)] = 1
    images = {c: np.where(brain, rng.uniform(-1, 1, shape), -1.0).astype(np.float32) for c in CHANNELS}
    return Case(images, brain.astype(np.uint8), seg, affine, secret_header())


def make_cohort(root: Path, n_cases: int, rng: np.random.Generator, **geometry) -> tuple[Path, Path]:
    """A cohort of ``n_cases`` tiny case folders and its manifest (source ``syn``)."""
    ids = [f"syn_{i:04d}" for i in range(n_cases)]
    for case_id in ids:
        save_case(tiny_case(rng, **geometry), root / "cases" / case_id)
    manifest = root / "manifest.csv"
    write_manifest([{"case_id": c, "seed": 7} for c in ids], ["case_id", "seed"], manifest, "syn")
    return root / "cases", manifest


def reference_image(path: Path, shape=SHAPE, affine=AFFINE) -> Path:
    image = nib.Nifti1Image(np.ones(shape, np.int16), affine)
    image.header["descrip"] = SECRET.encode()
    nib.save(image, str(path))
    return path


def load(path: Path) -> np.ndarray:
    return nib.load(str(path)).get_fdata(dtype=np.float32)


@pytest.fixture
def cohort(tmp_path):
    cases_dir, manifest = make_cohort(tmp_path, 3, np.random.default_rng(0))
    return cases_dir, manifest, reference_image(tmp_path / "reference.nii.gz")


def export_tiny(cohort, out_dir: Path, **overrides) -> pd.DataFrame:
    cases_dir, manifest, reference = cohort
    arguments = dict(prefix="SYN", channels=CHANNELS, scale=SCALE, reference_image=reference, cohort="mine")
    return export_brats(cases_dir, manifest, out_dir, **{**arguments, **overrides})


# --- The intensity scale ---------------------------------------------------------------------


def raw_head(root: Path, name: str, gain: float) -> dict[str, Path]:
    """A skull-stripped raw case: CSF, grey and white matter shells (20, 60, 100 on t1n), x ``gain``."""
    shape = (24, 24, 24)
    centre = np.array(shape) / 2
    rng = np.random.default_rng(3)
    t1n = np.where(sphere(shape, centre, 10), 20.0, 0.0)
    t1n[sphere(shape, centre, 8.5)] = 60.0
    t1n[sphere(shape, centre, 6)] = 100.0
    t1n = np.where(t1n > 0, t1n + rng.normal(0, 2, shape), 0.0)
    images = {"t1n": t1n * gain, "t2w": np.where(t1n > 0, 300.0 - 2 * t1n, 0.0) * gain}
    return {c: write_volume(root / name / f"{c}.nii.gz", image.astype(np.float32)) for c, image in images.items()}


def test_intensity_scale_takes_the_median_white_matter_level_over_the_cases(tmp_path):
    base = intensity_scale([raw_head(tmp_path, "base", 1.0)], NORMALIZE)
    assert base["t1n"]["white_matter"] == pytest.approx(100.0, rel=0.03)  # the white matter shell
    assert base["t2w"]["white_matter"] == pytest.approx(100.0, rel=0.06)  # 300 - 2 x 100
    cases = [raw_head(tmp_path, name, gain) for name, gain in (("a", 1.0), ("b", 4.0), ("c", 2.0))]
    scale = intensity_scale(cases, NORMALIZE)
    for channel in ("t1n", "t2w"):
        assert scale[channel]["white_matter"] == pytest.approx(2.0 * base[channel]["white_matter"], rel=1e-6)
        assert scale[channel]["ceiling"] == NORMALIZE.ceiling(channel)


def test_intensity_scale_refuses_cases_without_the_t1(tmp_path):
    case = raw_head(tmp_path, "a", 1.0)
    with pytest.raises(ValueError, match="no t1n among the channels"):
        intensity_scale([{"t2w": case["t2w"]}], NORMALIZE)


def test_intensity_scale_is_saved_and_loaded_as_json(tmp_path):
    path = tmp_path / "scale" / "intensity_scale.json"
    save_intensity_scale(SCALE, path)
    assert json.loads(path.read_text()) == SCALE
    assert load_intensity_scale(path) == SCALE


def test_a_scale_without_its_ceiling_is_refused_naming_file_and_channel(tmp_path):
    path = tmp_path / "intensity_scale.json"
    path.write_text(json.dumps({"t1n": {"white_matter": 400.0}}))
    with pytest.raises(ValueError, match=rf"{path}: t1n must have exactly the keys \['white_matter', 'ceiling'\]"):
        load_intensity_scale(path)
    path.write_text(json.dumps({"t1n": {"white_matter": -4.0, "ceiling": 3.0}}))
    with pytest.raises(ValueError, match=rf"{path}: t1n.white_matter must be a positive number, got -4.0"):
        load_intensity_scale(path)


# --- The BraTS layout on tiny cases ----------------------------------------------------------


def test_exported_images_are_the_case_images_on_the_real_scale_and_zero_outside(cohort, tmp_path):
    cases_dir, _, _ = cohort
    export_tiny(cohort, tmp_path / "brats")
    source = cases_dir / "syn_0001"
    brain = load(source / "brainmask.nii.gz") > 0
    for channel in CHANNELS:
        exported = nib.load(str(tmp_path / "brats" / "BraTS-SYN-00001-000" / f"BraTS-SYN-00001-000-{channel}.nii.gz"))
        assert exported.get_data_dtype() == np.float32
        data = exported.get_fdata(dtype=np.float32)
        full_scale = SCALE[channel]["ceiling"] * SCALE[channel]["white_matter"]
        expected = (load(source / f"{channel}.nii.gz")[brain] + 1) / 2 * full_scale
        np.testing.assert_allclose(data[brain], expected, rtol=1e-5)
        assert np.all(data[~brain] == 0.0)
        np.testing.assert_allclose(exported.affine, AFFINE)


def test_cases_are_numbered_in_manifest_order_and_listed_in_cases_csv(cohort, tmp_path):
    table = export_tiny(cohort, tmp_path / "brats", prefix="FAB")
    expected = pd.DataFrame(
        {"case_id": ["syn_0000", "syn_0001", "syn_0002"], "brats_id": [f"BraTS-FAB-0000{i}-000" for i in range(3)]}
    )
    pd.testing.assert_frame_equal(table, expected)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "brats" / "cases.csv"), expected)
    folders = sorted(p.name for p in (tmp_path / "brats").iterdir() if p.is_dir())
    assert folders == expected["brats_id"].tolist()
    seg = load(tmp_path / "brats" / "BraTS-FAB-00002-000" / "BraTS-FAB-00002-000-seg.nii.gz")
    np.testing.assert_array_equal(seg, load(cohort[0] / "syn_0002" / "seg.nii.gz"))


def header_texts(path: Path) -> list[bytes]:
    header = nib.load(str(path)).header
    return [header[field].item() for field in ("descrip", "aux_file", "intent_name", "db_name")]


def test_exported_headers_carry_no_source_text(cohort, tmp_path):
    cases_dir, manifest, reference = cohort
    assert header_texts(cases_dir / "syn_0000" / "t1n.nii.gz")[0] == SECRET.encode()  # the test means something
    assert nib.load(str(reference)).header["descrip"].item() == SECRET.encode()
    export_tiny(cohort, tmp_path / "brats")
    dataset = export_nnunet(cases_dir, manifest, tmp_path / "raw", 901, "mine", CHANNELS, cohort="mine")
    exported = [*(tmp_path / "brats").glob("*/*.nii.gz"), *dataset.glob("*/*.nii.gz")]
    assert len(exported) == 3 * 5 + 3 * 5
    for path in exported:
        assert header_texts(path) == [DESCRIPTION.encode(), b"", b"", b""], path
        header = nib.load(str(path)).header
        assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 1), path
        whole_file = gzip.decompress(path.read_bytes())  # header, extensions and data
        assert SECRET.encode() not in whole_file and b"secret" not in whole_file, path


def test_a_case_off_the_reference_shape_is_refused_naming_it(tmp_path):
    cases_dir, manifest = make_cohort(tmp_path, 2, np.random.default_rng(1), shape=(20, 20, 18))
    reference = reference_image(tmp_path / "reference.nii.gz")
    with pytest.raises(ValueError, match=r"case syn_0000 has shape \(20, 20, 18\), the reference .* \(20, 20, 16\)"):
        export_tiny((cases_dir, manifest, reference), tmp_path / "brats")
    assert not (tmp_path / "brats").exists()


def test_a_case_off_the_reference_affine_is_refused_naming_it(tmp_path):
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.01
    cases_dir, manifest = make_cohort(tmp_path, 1, np.random.default_rng(1), affine=shifted)
    reference = reference_image(tmp_path / "reference.nii.gz")
    with pytest.raises(ValueError, match=r"case syn_0000 is not on the grid of the reference .* by up to 0.01 mm"):
        export_tiny((cases_dir, manifest, reference), tmp_path / "brats")


@pytest.mark.parametrize("prefix", ["syn", "GLI2", "", "S-Y"])
def test_a_prefix_that_is_no_brats_task_is_refused_naming_the_key(cohort, tmp_path, prefix):
    message = rf"fabricate.cohorts.mine.export.brats_prefix must be upper-case .* {prefix!r}"
    with pytest.raises(ValueError, match=message):
        export_tiny(cohort, tmp_path / "brats", prefix=prefix)


def test_a_scale_without_an_exported_channel_is_refused(cohort, tmp_path):
    scale = {c: v for c, v in SCALE.items() if c != "t2f"}
    with pytest.raises(ValueError, match=r"the intensity scale has no \['t2f'\]"):
        export_tiny(cohort, tmp_path / "brats", scale=scale)


# --- The BraTS layout on the real case -----------------------------------------------------


@pytest.fixture(scope="module")
def real_round_trip(brats_four, tmp_path_factory):
    """The real BraTS case normalized as the study does (real_scan_fixtures, shared
    with the other real-scan tests), then exported with its own intensity scale."""
    work = tmp_path_factory.mktemp("round_trip")
    raw = raw_images(CHANNELS)
    (work / "cases").mkdir()
    (work / "cases" / "real_0000").symlink_to(brats_four, target_is_directory=True)
    manifest = work / "manifest.csv"
    write_manifest([{"case_id": "real_0000", "seed": 0}], ["case_id", "seed"], manifest, "real")
    scale = intensity_scale([raw], NORMALIZE)
    export_brats(work / "cases", manifest, work / "brats", "SYN", CHANNELS, scale, raw["t1n"], cohort="real")
    return raw, brats_four, work / "brats" / "BraTS-SYN-00000-000"


@needs_real_case
def test_the_real_case_exported_back_has_its_raw_intensities(real_round_trip):
    raw, case_dir, exported = real_round_trip
    brain = load(case_dir / "brainmask.nii.gz") > 0
    for channel in CHANNELS:
        original = load(raw[channel])
        data = load(exported / f"BraTS-SYN-00000-000-{channel}.nii.gz")
        unclipped = brain & (load(case_dir / f"{channel}.nii.gz") < 1.0)
        assert unclipped.sum() > 0.99 * brain.sum(), channel
        np.testing.assert_allclose(data[unclipped], original[unclipped], rtol=1e-3, atol=1e-2, err_msg=channel)
        assert np.all(data[~brain] == 0.0), channel


@needs_real_case
def test_the_exported_seg_follows_the_brats_conventions(real_round_trip):
    raw, _, exported = real_round_trip
    seg = nib.load(str(exported / "BraTS-SYN-00000-000-seg.nii.gz"))
    assert seg.get_data_dtype() == np.uint8
    values = np.asarray(seg.dataobj)
    assert set(np.unique(values).tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(values, np.asarray(nib.load(str(REAL_CASE / f"{REAL_CASE.name}-seg.nii.gz")).dataobj))
    reference = nib.load(str(raw["t1n"]))
    for channel in CHANNELS:
        image = nib.load(str(exported / f"BraTS-SYN-00000-000-{channel}.nii.gz"))
        assert image.shape == seg.shape == reference.shape == (240, 240, 155)
        np.testing.assert_allclose(image.affine, seg.affine)
        np.testing.assert_allclose(image.affine, reference.affine, atol=1e-6)


@needs_real_case
def test_the_exported_folder_passes_prepare_as_a_real_cohort(real_round_trip, tmp_path):
    exported_root = real_round_trip[2].parent
    cases = discover_brats(exported_root, list(CHANNELS), "SYN")
    assert [c.case_id for c in cases] == ["BraTS-SYN-00000-000"]
    split = {"BraTS-SYN-00000-000": "train"}
    prepare_manifests(cases, split, {}, False, tmp_path / "cases.csv", tmp_path / "healthy.csv")
    row = pd.read_csv(tmp_path / "cases.csv").iloc[0]
    assert (row["case_id"], row["shape"], row["spacing_mm"]) == ("BraTS-SYN-00000-000", "240x240x155", "1x1x1")


# --- The nnU-Net dataset ------------------------------------------------------------------------


def test_the_nnunet_dataset_has_the_study_s_images_and_dataset_json(cohort, tmp_path):
    cases_dir, manifest, _ = cohort
    dataset = export_nnunet(cases_dir, manifest, tmp_path / "raw", 7, "mine", CHANNELS, cohort="mine")
    assert dataset == tmp_path / "raw" / "Dataset007_mine"
    assert json.loads((dataset / "dataset.json").read_text()) == dataset_json(CHANNELS, 3)
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == [f"syn_000{i}.nii.gz" for i in range(3)]
    brain = load(cases_dir / "syn_0001" / "brainmask.nii.gz")
    for index, channel in enumerate(CHANNELS):
        image = dataset / "imagesTr" / f"syn_0001_{index:04d}.nii.gz"
        assert not image.is_symlink()
        expected = to_nnunet_image(load(cases_dir / "syn_0001" / f"{channel}.nii.gz"), brain)
        np.testing.assert_array_equal(load(image), expected)


def test_nnunet_s_integrity_check_accepts_the_exported_dataset(cohort, tmp_path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    cases_dir, manifest, _ = cohort
    dataset = export_nnunet(cases_dir, manifest, tmp_path / "raw", 901, "mine", CHANNELS, cohort="mine")
    verify_dataset_integrity(str(dataset), num_processes=1)


def test_nnunet_s_integrity_check_accepts_the_dataset_merged_with_real_cases(cohort, tmp_path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    cases_dir, manifest, _ = cohort
    rng = np.random.default_rng(5)
    real = [tmp_path / "real" / f"BraTS-GLI-0000{i}-000" for i in range(2)]
    for case_dir in real:
        save_case(tiny_case(rng), case_dir)
    dataset = export_nnunet(cases_dir, manifest, tmp_path / "raw", 902, "merged", CHANNELS, real, cohort="mine")
    labels = sorted(p.name for p in (dataset / "labelsTr").iterdir())
    assert labels == ["BraTS-GLI-00000-000.nii.gz", "BraTS-GLI-00001-000.nii.gz"] + [
        f"syn_000{i}.nii.gz" for i in range(3)
    ]
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 5
    verify_dataset_integrity(str(dataset), num_processes=1)


def test_a_real_case_named_like_a_synthetic_one_is_refused(cohort, tmp_path):
    cases_dir, manifest, _ = cohort
    with pytest.raises(ValueError, match=r"real case folders named like synthetic cases of .*\['syn_0001'\]"):
        export_nnunet(
            cases_dir, manifest, tmp_path / "raw", 901, "mine", CHANNELS, [cases_dir / "syn_0001"], cohort="mine"
        )


@pytest.mark.parametrize("dataset_id", [0, 1000, -3, 9.0, True])
def test_a_dataset_id_outside_1_to_999_is_refused_naming_the_key(cohort, tmp_path, dataset_id):
    cases_dir, manifest, _ = cohort
    with pytest.raises(ValueError, match=rf"fabricate.cohorts.mine.export.nnunet_dataset_id must be .* {dataset_id!r}"):
        export_nnunet(cases_dir, manifest, tmp_path / "raw", dataset_id, "mine", CHANNELS, cohort="mine")


def test_a_dataset_id_another_dataset_has_is_refused_naming_the_key(cohort, tmp_path):
    cases_dir, manifest, _ = cohort
    (tmp_path / "raw" / "Dataset901_other").mkdir(parents=True)
    message = r"nnunet_dataset_id: .* already holds dataset id 901 as \['Dataset901_other'\]"
    with pytest.raises(ValueError, match=message):
        export_nnunet(cases_dir, manifest, tmp_path / "raw", 901, "mine", CHANNELS, cohort="mine")


@pytest.mark.parametrize("name", ["my-cohort", "", "a b", "glioma/1"])
def test_a_dataset_name_nnunet_cannot_take_is_refused_naming_the_cohort(cohort, tmp_path, name):
    cases_dir, manifest, _ = cohort
    with pytest.raises(ValueError, match=rf"fabricate.cohorts.mine: the nnU-Net dataset name {name!r} must be"):
        export_nnunet(cases_dir, manifest, tmp_path / "raw", 901, name, CHANNELS, cohort="mine")
