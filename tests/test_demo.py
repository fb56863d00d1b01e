"""The embedded demo cohort (tumorfab.demo): a phantom built from nilearn's MNI152 files.

One small cohort (3 patients, 1 second timepoint, 2 healthy heads, 4 mm voxels)
is built once per module and read back from real files, with t1n only (the
paper's) and with the four BraTS channels and a healthy T2.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tumorfab import demo
from tumorfab.config import compose, study_config
from tumorfab.demo import cohort as phantom  # not `cohort`: that name is the fixture below
from tumorfab.study.model import Study

REPO = Path(__file__).resolve().parents[1]
SETTINGS = dict(n_patients=3, n_second_timepoint=1, n_healthy=2, voxel_mm=4.0)
SEED = 7
FOUR_CHANNELS = ["t1n", "t1c", "t2w", "t2f"]
HEALTHY_SEQUENCES = {"t1n": "T1", "t2w": "T2"}


def build(root: Path, seed: int = SEED) -> Path:
    phantom.make_demo_cohort(root / "brats", root / "ixi", seed=seed, **SETTINGS)
    return root


def build_four(root: Path) -> Path:
    phantom.make_demo_cohort(
        root / "brats",
        root / "ixi",
        seed=SEED,
        modalities=FOUR_CHANNELS,
        healthy_sequences=HEALTHY_SEQUENCES,
        **SETTINGS,
    )
    return root


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> Path:
    return build_four(tmp_path_factory.mktemp("four"))


def cases() -> list[str]:
    return demo.planned_cases(SETTINGS["n_patients"], SETTINGS["n_second_timepoint"])


def load_case(root: Path, case: str) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    folder = root / "brats" / case
    return nib.load(folder / f"{case}-t1n.nii.gz"), nib.load(folder / f"{case}-seg.nii.gz")


def t1n_and_seg(root: Path, case: str) -> tuple[np.ndarray, np.ndarray]:
    image, seg = load_case(root, case)
    return np.asarray(image.dataobj), np.asarray(seg.dataobj)


def all_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


# --- planned names (pure) ------------------------------------------------------------


def test_planned_cases_lists_every_patient_and_first_second_timepoints_sorted():
    assert demo.planned_cases(3, 2) == [
        "BraTS-GLI-00000-000",
        "BraTS-GLI-00000-001",
        "BraTS-GLI-00001-000",
        "BraTS-GLI-00001-001",
        "BraTS-GLI-00002-000",
    ]


def test_planned_cases_rejects_more_second_timepoints_than_patients():
    with pytest.raises(ValueError, match="n_second_timepoint"):
        demo.planned_cases(2, 3)


def test_planned_healthy_uses_ixi_t1_names():
    assert demo.planned_healthy(2) == ["IXI100-Demo-0000-T1.nii.gz", "IXI101-Demo-0001-T1.nii.gz"]


def test_planned_healthy_names_other_sequences_as_ixi_does():
    assert demo.planned_healthy(2, "T2") == ["IXI100-Demo-0000-T2.nii.gz", "IXI101-Demo-0001-T2.nii.gz"]
    with pytest.raises(ValueError, match="letters and digits"):
        demo.planned_healthy(2, "T2/x")


# --- layout ------------------------------------------------------------------------


def test_cohort_writes_exactly_the_planned_files(cohort):
    expected = [
        Path("brats") / case / f"{case}-{kind}.nii.gz"
        for case in cases()
        for kind in ("seg", "t1n")
    ]
    expected += [Path("ixi") / name for name in demo.planned_healthy(SETTINGS["n_healthy"])]
    assert all_files(cohort) == sorted(expected)


# --- tumour cases --------------------------------------------------------------------


def test_t1n_is_float32_and_seg_is_uint8(cohort):
    for case in cases():
        image, seg = load_case(cohort, case)
        assert image.get_data_dtype() == np.float32
        assert seg.get_data_dtype() == np.uint8


def test_seg_labels_are_brats_labels_with_ncr_ed_et_in_every_case(cohort):
    for case in cases():
        _, seg = t1n_and_seg(cohort, case)
        assert set(np.unique(seg).tolist()) == {0, 1, 2, 3}, case


def test_seg_lies_inside_the_nonzero_brain(cohort):
    for case in cases():
        image, seg = t1n_and_seg(cohort, case)
        assert np.all(image[seg > 0] > 0), case


def test_background_is_exactly_zero_and_brain_does_not_touch_the_grid_border(cohort):
    for case in cases():
        image, _ = t1n_and_seg(cohort, case)
        assert image.min() == 0.0
        border = np.ones(image.shape, dtype=bool)
        border[1:-1, 1:-1, 1:-1] = False
        # The template's brain ends at its field of view below the brainstem
        # (lowest slice); every other side keeps a margin of zeros.
        border[:, :, 0] = False
        assert np.all(image[border] == 0), case


def test_t1n_and_seg_share_shape_and_affine(cohort):
    for case in cases():
        image, seg = load_case(cohort, case)
        assert image.shape == seg.shape
        np.testing.assert_array_equal(image.affine, seg.affine)


def test_all_tumour_cases_share_one_isotropic_grid(cohort):
    images = [load_case(cohort, case)[0] for case in cases()]
    for image in images[1:]:
        assert image.shape == images[0].shape
        np.testing.assert_array_equal(image.affine, images[0].affine)
    np.testing.assert_allclose(images[0].header.get_zooms(), [SETTINGS["voxel_mm"]] * 3)


def test_patients_have_different_brains(cohort):
    brains = [t1n_and_seg(cohort, f"BraTS-GLI-{p:05d}-000")[0] > 0 for p in range(3)]
    assert not np.array_equal(brains[0], brains[1])
    assert not np.array_equal(brains[1], brains[2])


def test_each_lesion_label_has_its_own_intensity_band(cohort):
    """NCR darker than ED, ED darker than grey matter, ET brighter than any healthy tissue."""
    for case in cases():
        image, seg = t1n_and_seg(cohort, case)
        healthy = image[(seg == 0) & (image > 0)]
        # label interiors: the intensity edges are soft (sigma 0.5 voxel)
        core = {label: image[ndimage.binary_erosion(seg == label)] for label in (1, 2, 3)}
        core[1] = core[1] if core[1].size else image[seg == 1]
        assert np.median(core[1]) < np.median(core[2]) < np.percentile(healthy, 25), case
        assert np.median(core[3]) > np.percentile(healthy, 99.5), case


def test_necrotic_core_is_the_darkest_label(cohort):
    for case in cases():
        image, seg = t1n_and_seg(cohort, case)
        ncr = image[seg == 1].mean()
        assert ncr < image[seg == 3].mean() and ncr < image[seg == 2].mean(), case


def test_second_timepoint_keeps_the_brain_and_grows_the_lesion(cohort):
    first_image, first_seg = t1n_and_seg(cohort, "BraTS-GLI-00000-000")
    second_image, second_seg = t1n_and_seg(cohort, "BraTS-GLI-00000-001")
    np.testing.assert_array_equal(first_image > 0, second_image > 0)
    assert (second_seg > 0).sum() > (first_seg > 0).sum()


# --- healthy heads -------------------------------------------------------------------


def test_healthy_heads_have_signal_outside_the_brain(cohort):
    # A head (brain + CSF + skull + scalp) is much larger than the MNI brain.
    nilearn_dir = Path(importlib.util.find_spec("nilearn").origin).parent
    mni = nib.load(nilearn_dir / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    brain_ml = np.count_nonzero(np.asarray(mni.dataobj)) * np.prod(mni.header.get_zooms()) / 1000
    for name in demo.planned_healthy(SETTINGS["n_healthy"]):
        image = nib.load(cohort / "ixi" / name)
        data = np.asarray(image.dataobj)
        head = ndimage.binary_fill_holes(data > 0.2 * np.percentile(data, 99))
        head_ml = head.sum() * np.prod(image.header.get_zooms()) / 1000
        assert head_ml > 1.3 * brain_ml, name


def test_healthy_background_is_noisy_not_zero(cohort):
    for name in demo.planned_healthy(SETTINGS["n_healthy"]):
        data = np.asarray(nib.load(cohort / "ixi" / name).dataobj)
        corner = data[:5, :5, :5]
        assert corner.min() >= 0 and corner.mean() > 0, name


def test_healthy_heads_are_not_on_the_tumour_grid(cohort):
    brats = load_case(cohort, cases()[0])[0]
    for name in demo.planned_healthy(SETTINGS["n_healthy"]):
        image = nib.load(cohort / "ixi" / name)
        assert image.shape != brats.shape or not np.allclose(image.affine, brats.affine), name


# --- every file ----------------------------------------------------------------------


def test_no_image_contains_nan_or_inf(cohort):
    for path in (cohort / "brats").rglob("*-t1n.nii.gz"):
        assert np.isfinite(np.asarray(nib.load(path).dataobj)).all(), path
    for path in (cohort / "ixi").iterdir():
        assert np.isfinite(np.asarray(nib.load(path).dataobj)).all(), path


def test_same_seed_gives_bit_identical_files(cohort, tmp_path):
    phantom._template.cache_clear()  # nothing carried over from the first build
    again = build(tmp_path)
    files = all_files(cohort)
    assert files == all_files(again)
    for relative in files:
        assert (cohort / relative).read_bytes() == (again / relative).read_bytes(), relative


def test_different_seed_gives_different_files(cohort, tmp_path):
    other = build(tmp_path, seed=SEED + 1)
    for relative in all_files(cohort):
        assert (cohort / relative).read_bytes() != (other / relative).read_bytes(), relative


def test_voxel_too_coarse_for_a_lesion_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="too coarse"):
        phantom.make_demo_cohort(
            tmp_path / "brats",
            tmp_path / "ixi",
            n_patients=1,
            n_second_timepoint=0,
            n_healthy=0,
            voxel_mm=20.0,
            seed=SEED,
        )


# --- four sequences --------------------------------------------------------------------


def channel(root: Path, case: str, name: str) -> np.ndarray:
    return np.asarray(nib.load(root / "brats" / case / f"{case}-{name}.nii.gz").dataobj).astype(np.float64)


def test_four_sequence_cohort_writes_every_channel_and_each_healthy_sequence(four):
    expected = [
        Path("brats") / case / f"{case}-{kind}.nii.gz" for case in cases() for kind in ["seg", *FOUR_CHANNELS]
    ]
    for sequence in HEALTHY_SEQUENCES.values():
        expected += [Path("ixi") / name for name in demo.planned_healthy(SETTINGS["n_healthy"], sequence)]
    assert all_files(four) == sorted(expected)


def test_the_study_plans_exactly_the_files_the_four_sequence_phantom_writes(four):
    config = study_config(REPO, REPO / "config" / "demo_four_sequences.yaml")
    config = compose(
        config,
        {
            "data": {"brats_root": str(four / "brats"), "healthy_root": str(four / "ixi")},
            "demo": SETTINGS,
            "split": {"n_real_train": 2, "n_val": 1},
        },
    )
    study = Study.from_config(config)
    assert sorted(study.demo_cohort_files()) == sorted(str(four / f) for f in all_files(four))


def test_t1n_seg_and_healthy_t1_are_those_of_the_t1n_only_cohort(cohort, four):
    """Other channels draw from streams of their own: adding them changes no t1n-only file."""
    for relative in all_files(cohort):
        assert (cohort / relative).read_bytes() == (four / relative).read_bytes(), relative


def test_every_channel_is_on_the_case_grid_with_the_same_brain(four):
    for case in cases():
        seg = nib.load(four / "brats" / case / f"{case}-seg.nii.gz")
        brain = channel(four, case, "t1n") > 0
        for name in FOUR_CHANNELS:
            image = nib.load(four / "brats" / case / f"{case}-{name}.nii.gz")
            data = np.asarray(image.dataobj)
            assert image.get_data_dtype() == np.float32, (case, name)
            assert image.shape == seg.shape and np.array_equal(image.affine, seg.affine), (case, name)
            assert np.isfinite(data).all(), (case, name)
            np.testing.assert_array_equal(data > 0, brain, err_msg=f"{case} {name}")


def tissue_levels(root: Path, case: str, name: str) -> dict[str, float]:
    """Mean CSF and GM and median lesion-label interiors of a channel, x its WM median.

    Healthy tissue is told apart on t1n (the template's T1), away from the
    lesion: WM its brightest fifth, GM its 35th-50th percentiles, CSF its darkest 5 %.
    """
    t1n, seg, image = channel(root, case, "t1n"), channel(root, case, "seg"), channel(root, case, name)
    healthy = ndimage.binary_erosion(t1n > 0) & ~ndimage.binary_dilation(seg > 0, iterations=2)
    percentile = functools.partial(np.percentile, t1n[healthy])
    white = np.median(image[healthy & (t1n >= percentile(80))])
    levels = {
        "CSF": image[healthy & (t1n <= percentile(5))].mean(),
        "GM": image[healthy & (t1n >= percentile(35)) & (t1n <= percentile(50))].mean(),
    }
    for label, key in ((1, "NCR"), (2, "ED"), (3, "ET")):
        interior = ndimage.binary_erosion(seg == label)
        levels[key] = np.median(image[interior if interior.any() else seg == label])
    return {key: value / white for key, value in levels.items()}


def test_each_channel_shows_its_contrast(four):
    for case in cases():
        t1n, t1c, t2w, t2f = (tissue_levels(four, case, name) for name in FOUR_CHANNELS)
        # T2: CSF bright, GM above WM; oedema and the fluid-like necrosis bright.
        assert t2w["CSF"] > t2w["GM"] > 1.0, case
        assert t2w["ED"] > t2w["GM"] and t2w["NCR"] > t2w["ED"], case
        # FLAIR: CSF dark, GM slightly above WM; oedema bright, necrosis dark.
        assert t2f["CSF"] < 1.0 < t2f["GM"] < 1.3, case
        assert t2f["ED"] > t2f["GM"] and t2f["NCR"] < 1.0, case
        # T1: oedema and necrosis dark; the enhancing rim clearly brighter on t1c.
        for levels in (t1n, t1c):
            assert levels["NCR"] < levels["ED"] < levels["GM"], case
        assert t1c["ET"] > t1n["ET"] + 0.3, case


def test_t1c_enhances_the_csf_at_the_brain_s_surface_not_in_the_ventricles(four):
    """What a monotone map of t1n cannot make: dark CSF on t1n is bright on t1c at the
    surface (dura, cortical veins) and stays dark deep in the brain."""
    for case in cases():
        t1n, t1c, seg = (channel(four, case, name) for name in ("t1n", "t1c", "seg"))
        brain = (t1n > 0) & ~ndimage.binary_dilation(seg > 0, iterations=2)
        dark = brain & (t1n <= np.percentile(t1n[brain], 10))
        depth = ndimage.distance_transform_edt(t1n > 0)
        white = [np.median(image[brain & (t1n >= np.percentile(t1n[brain], 80))]) for image in (t1n, t1c)]
        surface, deep = dark & (depth <= 1), dark & (depth >= 4)
        gain = [(t1c[region] / white[1]).mean() - (t1n[region] / white[0]).mean() for region in (surface, deep)]
        assert gain[0] > 0.1 and abs(gain[1]) < 0.05, (case, gain)  # measured: 0.16 and 0.001


def test_healthy_t2_is_the_same_head_on_another_grid(four):
    nilearn_dir = Path(importlib.util.find_spec("nilearn").origin).parent
    mni = nib.load(nilearn_dir / "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    brain_ml = np.count_nonzero(np.asarray(mni.dataobj)) * np.prod(mni.header.get_zooms()) / 1000
    for t1_name, t2_name in zip(*(demo.planned_healthy(SETTINGS["n_healthy"], s) for s in ("T1", "T2"))):
        t1, t2 = nib.load(four / "ixi" / t1_name), nib.load(four / "ixi" / t2_name)
        assert nib.aff2axcodes(t1.affine) != nib.aff2axcodes(t2.affine), t2_name
        assert not np.allclose(sorted(t1.header.get_zooms()), sorted(t2.header.get_zooms())), t2_name
        spacing = max(*t1.header.get_zooms(), *t2.header.get_zooms())
        np.testing.assert_allclose(world_box(t1), world_box(t2), atol=2 * spacing, err_msg=t2_name)
        heads = [head_mask(image) for image in (t1, t2)]
        # A head with scalp and skull, its centre where the T1's is: the motion is a few mm.
        for image, head in zip((t1, t2), heads):
            assert head.sum() * np.prod(image.header.get_zooms()) / 1000 > 1.3 * brain_ml, t2_name
        centres = [
            image.affine[:3, :3] @ ndimage.center_of_mass(head) + image.affine[:3, 3]
            for image, head in zip((t1, t2), heads)
        ]
        assert np.linalg.norm(centres[0] - centres[1]) < phantom.SEQUENCE_MAX_TRANSLATION_MM + spacing, t2_name
        data = np.asarray(t2.dataobj)
        assert np.isfinite(data).all() and data.min() >= 0 and data[:5, :5, :5].mean() > 0, t2_name


def world_box(image: nib.Nifti1Image) -> np.ndarray:
    """World (mm) bounds of the voxel centres: [[x, y, z] min, [x, y, z] max]."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in image.shape], indexing="ij")).reshape(3, -1)
    world = image.affine[:3, :3] @ corners + image.affine[:3, 3:4]
    return np.stack([world.min(1), world.max(1)])


def head_mask(image: nib.Nifti1Image) -> np.ndarray:
    data = np.asarray(image.dataobj)
    return ndimage.binary_fill_holes(data > 0.2 * np.percentile(data, 99))


def test_four_sequence_cohort_is_bit_identical_for_the_same_seed(four, tmp_path):
    phantom._template.cache_clear()
    phantom._tissue_fractions.cache_clear()
    again = build_four(tmp_path)
    assert all_files(four) == all_files(again)
    for relative in all_files(four):
        assert (four / relative).read_bytes() == (again / relative).read_bytes(), relative


@pytest.mark.parametrize(
    ("modalities", "healthy_sequences", "message"),
    [
        (["t1n", "flair"], None, "'flair' is not one of the BraTS channels"),
        (["t1n", "t1n"], None, "distinct"),
        (["t1n", "t2w"], {"t2w": "T2"}, "must map t1n"),
        (["t1n", "t2w"], {"t1n": "T1", "t2w": "T1"}, "two channels to one sequence name"),
    ],
)
def test_unknown_or_inconsistent_channels_are_refused(tmp_path, modalities, healthy_sequences, message):
    with pytest.raises(ValueError, match=message):
        phantom.make_demo_cohort(
            tmp_path / "brats",
            tmp_path / "ixi",
            seed=SEED,
            modalities=modalities,
            healthy_sequences=healthy_sequences,
            **SETTINGS,
        )
