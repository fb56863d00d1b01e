"""Every stage up to synthesis on real scans (../shared/data/real, see its README):
a BraTS 2023 case with its labels, and a real healthy T1 head with skull
(swm_T1: 1 mm LIA defaced, with a FreeSurfer reference brain mask).

The stages run in order on one module-scoped folder, as the workflow runs them:
validation, skull stripping of the head (the atlas method: no SynthStrip
weights here), registration of it onto the BraTS case's 1 mm grid,
normalization, then one TF-Aug case (the real mask on the real healthy brain),
TF-GAN's whole-volume refinement of the real 240x240x155 case and one
CarveMix case. The BraTS case is normalized once for every test file that
reads it (tests/real_scan_fixtures.py). Registration uses an affine transform
and no bias-field correction (the paper's preprocessing) to keep the suite
short: the SyN stage is the same code, tested on the demo cohort, and N4 on a
real head is tested in test_bias_correction.py. The atlas method on the other
real head (chris_t1), posed as no scanner poses a head, is tested in
test_skullstrip.py; deepbet on both heads in test_skullstrip_deepbet.py and
test_normalize_real.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers.schema_defaults import schema_defaults
from real_scan_fixtures import CASE, REAL, brats_four, brats_t1n  # noqa: F401

from tumorfab.synthesis.carvemix import CarveMixSettings, generate_carvemix
from tumorfab.prepare.cases import discover_brats, discover_healthy
from tumorfab.preprocess.normalize import normalize_healthy_scan
from tumorfab.preprocess.registration import register_to_reference
from tumorfab.preprocess.settings import (
    BiasCorrectionSettings,
    NormalizeSettings,
    RegistrationSettings,
    SkullstripSettings,
)
from tumorfab.preprocess.skullstrip import skullstrip
from tumorfab.synthesis.tfaug.generate import generate_tfaug
from tumorfab.synthesis.tfaug.intensity_fit import FitResult, save_intensity
from tumorfab.synthesis.tfaug.settings import TFAugSettings
from tumorfab.synthesis.tfgan.refine import refine_volume
from tumorfab.synthesis.tfgan.networks import N_MASK_CHANNELS, Generator
from tumorfab.prepare.validate import prepare_manifests

NORMALIZE = NormalizeSettings.from_config(schema_defaults()["normalize"])

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is not there (CI has it)")


def load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real")


@pytest.fixture(scope="module")
def manifests(work):
    cases = discover_brats(REAL / "brats", ["t1n"], task="GLI")
    prepare_manifests(
        cases=cases,
        split={c.case_id: "train" for c in cases},
        healthy=discover_healthy(REAL / "healthy", "*.nii.gz"),
        remap_label_4_to_3=False,
        out_cases=work / "cases.csv",
        out_healthy=work / "healthy.csv",
    )
    return pd.read_csv(work / "cases.csv"), pd.read_csv(work / "healthy.csv")


@pytest.fixture(scope="module")
def stripped(work):
    """swm_T1 stripped by the atlas method (the only head here: FreeSurfer's mask of it is the reference)."""
    out = work / "stripped" / "swm"
    return skullstrip(
        REAL / "healthy" / "swm_T1.nii.gz", out / "t1n.nii.gz", out / "brainmask.nii.gz", out / "qc.png",
        failure_qc=out / "refused.png",
        settings=SkullstripSettings(None, method="atlas", border_mm=1.0, atlas_transform="SyN", brain_volume_ml=(900, 2000)),
        seed=2025,
    )


@pytest.fixture(scope="module")
def real_case(brats_t1n):
    """The BraTS case normalized from its t1n, as the paper's study does."""
    return brats_t1n


#: Moves the head far from the BraTS grid in world space, as scanners do: the
#: registration must not depend on where the head lies.
FAR_AWAY_MM = np.array([300.0, -250.0, 200.0])
#: The stripped head is registered at 2 mm (every other voxel): onto the 1 mm
#: BraTS grid all the same, in 3/4 of the time (brain Dice 0.87 against the
#: BraTS brain, 0.88 at 1 mm).
MOVING_STEP = 2


def world_box(image: nib.Nifti1Image) -> np.ndarray:
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in image.shape])).reshape(3, -1).T
    world = nib.affines.apply_affine(image.affine, corners)
    return np.stack([world.min(axis=0), world.max(axis=0)])


@pytest.fixture(scope="module")
def registered(work, stripped):
    folder = REAL / "brats" / CASE
    moved = work / "stripped" / "swm_moved"
    moved.mkdir()
    for file in ("t1n.nii.gz", "brainmask.nii.gz"):
        image = nib.load(str(work / "stripped" / "swm" / file))
        affine = image.affine.copy()
        affine[:3, :3] *= MOVING_STEP
        affine[:3, 3] += FAR_AWAY_MM
        data = np.asarray(image.dataobj)[::MOVING_STEP, ::MOVING_STEP, ::MOVING_STEP]
        nib.save(nib.Nifti1Image(data, affine), str(moved / file))
    out = work / "registered" / "swm"
    scratch = work / "registration_tmp"
    scratch.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(scratch))
        similarity = register_to_reference(
            moved / "t1n.nii.gz", moved / "brainmask.nii.gz",
            folder / f"{CASE}-t1n.nii.gz", folder / f"{CASE}-seg.nii.gz",
            out / "t1n.nii.gz", out / "brainmask.nii.gz", out / "qc.png",
            RegistrationSettings(type_of_transform="Affine", interpolator="linear"),
            BiasCorrectionSettings.from_config({**schema_defaults()["bias_correction"], "enabled": False}), seed=2025,
        )
    return out, similarity, scratch


@pytest.fixture(scope="module")
def healthy_case(work, registered):
    out = work / "preprocess" / "healthy" / "swm"
    folder, _, _ = registered
    normalize_healthy_scan(folder / "t1n.nii.gz", folder / "brainmask.nii.gz", out, "t1n", NORMALIZE)
    return out


def test_real_case_and_heads_pass_validation(manifests):
    cases, healthy = manifests
    assert cases.case_id.tolist() == [CASE]
    assert cases.spacing_mm.tolist() == ["1x1x1"]
    assert sorted(healthy.subject) == ["chris_t1", "swm"]


def test_atlas_skull_stripping_matches_freesurfer_on_swm(work, stripped):
    mask = load(work / "stripped" / "swm" / "brainmask.nii.gz") > 0
    reference = load(REAL / "reference" / "swm_aparc.DKTatlas+aseg.nii.gz") > 0
    assert dice(mask, reference) >= 0.90


def test_atlas_brain_of_a_real_head_is_plausible_on_the_scan_s_own_grid(work, stripped):
    assert 1000 <= stripped["brain_volume_ml"] <= 1800
    source = nib.load(str(REAL / "healthy" / "swm_T1.nii.gz"))
    mask = nib.load(str(work / "stripped" / "swm" / "brainmask.nii.gz"))
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
    image = load(work / "stripped" / "swm" / "t1n.nii.gz")
    assert np.all(image[np.asarray(mask.dataobj) == 0] == 0)
    assert (work / "stripped" / "swm" / "qc.png").stat().st_size > 0


def test_registration_puts_a_far_away_head_on_the_brats_grid(work, registered):
    folder, similarity, scratch = registered
    image = nib.load(str(folder / "t1n.nii.gz"))
    reference = nib.load(str(REAL / "brats" / CASE / f"{CASE}-t1n.nii.gz"))
    head, grid = world_box(nib.load(str(work / "stripped" / "swm_moved" / "t1n.nii.gz"))), world_box(reference)
    assert np.any(head[0] > grid[1]) or np.any(head[1] < grid[0]), "the moved head still overlaps the grid"
    assert image.shape == reference.shape and np.allclose(image.affine, reference.affine)
    assert similarity["after"] < similarity["before"]
    brain = load(folder / "brainmask.nii.gz") > 0
    assert dice(brain, np.asarray(reference.dataobj) != 0) >= 0.85
    assert (folder / "qc.png").stat().st_size > 0
    assert not list(scratch.iterdir()), "ANTs left its transforms in the temporary folder"


def test_normalized_real_and_healthy_cases_are_in_range(real_case, healthy_case):
    for folder in (real_case, healthy_case):
        image = load(folder / "t1n.nii.gz")
        brain = load(folder / "brainmask.nii.gz") > 0
        assert image.min() == -1.0 and image.max() <= 1.0
        assert np.all(image[~brain] == -1.0)
    assert set(np.unique(load(real_case / "seg.nii.gz"))) == {0, 1, 2, 3}


def test_tfaug_puts_the_real_mask_into_the_real_healthy_brain(work, real_case, healthy_case):
    save_intensity(FitResult(np.array([[0.6, 1.2, 1.4]]), np.array([[-0.5, 0.1, 0.3]]), 1.0, 0.5), ["t1n"], work / "intensity.json")
    out = work / "tfaug"
    tfaug = TFAugSettings.from_config(schema_defaults()["tfaug"])  # the paper preset
    manifest = generate_tfaug(
        [real_case], [healthy_case], work / "intensity.json", out / "cases", out / "manifest.csv", 1, seed=7,
        modalities=["t1n"], settings=tfaug,
    )
    case = out / "cases" / manifest.case_id[0]
    seg, image = load(case / "seg.nii.gz"), load(case / "t1n.nii.gz")
    healthy, brain = load(healthy_case / "t1n.nii.gz"), load(healthy_case / "brainmask.nii.gz") > 0
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    assert not seg[~brain].any()
    # Mass effect off: outside the lesion the healthy scan is untouched.
    assert np.array_equal(image[seg == 0], healthy[seg == 0])
    assert not np.array_equal(image[seg > 0], healthy[seg > 0])


def test_carvemix_mixes_the_real_case_with_its_mirror(work, real_case):
    # One real case cannot pair with itself: its left-right mirror stands in for a second patient.
    mirror = work / "preprocess" / "real" / "BraTS-GLI-00001-000"
    mirror.mkdir(parents=True, exist_ok=True)
    for file in ("t1n.nii.gz", "seg.nii.gz", "brainmask.nii.gz"):
        image = nib.load(str(real_case / file))
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[::-1].copy(), image.affine, image.header), str(mirror / file))
    out = work / "carvemix"
    manifest = generate_carvemix(
        {CASE: real_case, mirror.name: mirror}, out / "cases", out / "manifest.csv", 1, ["t1n"], CarveMixSettings((0.0, 1.0)), seed=3
    )
    seg = load(out / "cases" / manifest.case_id[0] / "seg.nii.gz")
    assert set(np.unique(seg)) <= {0, 1, 2, 3} and seg.any()


#: G's sliding window on the real case: its brain box (152 x 187 x 155 voxels with
#: the margin) takes two overlapping windows of 160³ along y and one, padded, along
#: x and z (windows of 128³: eight, twice the voxels for G to go through).
WINDOW = 160


def test_tfgan_refines_the_whole_real_volume_over_its_brain_box_and_keeps_the_rest(real_case):
    import torch

    image, seg, brain = (load(real_case / f"{n}.nii.gz") for n in ("t1n", "seg", "brainmask"))
    torch.manual_seed(0)
    generator = Generator(in_channels=1 + N_MASK_CHANNELS, out_channels=1, widths=[2, 2, 4, 4, 4, 4]).eval()

    def refine():
        return refine_volume(generator, image[None], seg.astype(np.uint8), brain.astype(np.uint8), WINDOW, 0.5, torch.device("cpu"), "off")[0]

    # An untrained G returns the coarse image: the windows go back where they came
    # from (up to the rounding of the Gaussian-weighted average of overlaps), and
    # the padding of the box's short sides is cut off again.
    untouched = refine()
    assert untouched.shape == image.shape == (240, 240, 155)
    assert np.abs(untouched - np.where(brain > 0, image, -1.0)).max() < 1e-5
    torch.nn.init.normal_(generator.head.weight, std=0.5)
    refined = refine()
    assert (refined[brain == 0] == -1).all() and refined.min() >= -1 and refined.max() <= 1
    assert not np.array_equal(refined[brain > 0], image[brain > 0])
    assert np.array_equal(refined, refine())  # same bytes twice


# --- four sequences: the real BraTS case (t1n, t1c, t2w, t2f) and a real T1-only head ---

FOUR = ["t1n", "t1c", "t2w", "t2f"]


@pytest.fixture(scope="module")
def real_case_four(brats_four):
    """The BraTS case normalized with its four sequences."""
    return brats_four


def _fabricate_four(work, real_case_four, healthy_case) -> Path:
    """TF-Aug (t1n from the healthy head, the rest filled) and TF-GAN (a few
    steps at a tiny width, translating) on four sequences; the TF case's folder."""
    from test_tfgan_training import TFGAN, StandInF

    from tumorfab.synthesis.gan_settings import TFGANSettings
    from tumorfab.synthesis.histogram_match import brain_quantiles
    from tumorfab.synthesis.tfgan.refine import generate_tf
    from tumorfab.synthesis.tfgan.train import train_tfgan

    out = work / "four"
    brain = load(real_case_four / "brainmask.nii.gz") > 0
    quantiles = {m: brain_quantiles([(load(real_case_four / f"{m}.nii.gz"), brain)]) for m in FOUR[1:]}
    fit = FitResult(np.array([[0.6, 1.2, 1.4]] * 4), np.array([[-0.5, 0.1, 0.3]] * 4), 1.0, 0.5)
    save_intensity(fit, FOUR, out / "intensity.json", fitted=["t1n"], reference_quantiles=quantiles)
    generate_tfaug(
        [real_case_four], [healthy_case], out / "intensity.json", out / "tfaug" / "cases", out / "tfaug" / "manifest.csv", 1,
        seed=7, modalities=FOUR, settings=TFAugSettings.from_config(schema_defaults()["tfaug"]),
    )
    tfgan = TFGANSettings.from_config({**TFGAN, "epochs": 2, "window": WINDOW})
    train_tfgan(
        out / "tfaug" / "manifest.csv", out / "tfaug" / "cases", [real_case_four], None, out / "work",
        out / "generator.pt", out / "losses.csv", out / "losses.png", FOUR, tfgan, seed=5, threads=2, device="cpu",
        extractor=StandInF(channels=len(FOUR)),
    )
    manifest = generate_tf(
        out / "tfaug" / "manifest.csv", out / "tfaug" / "cases", out / "generator.pt", out / "tf" / "cases",
        out / "tf" / "manifest.csv", 1, FOUR, seed=5, tfgan=tfgan, threads=2, device="cpu",
    )
    return out / "tf" / "cases" / manifest.case_id[0]


def test_four_sequences_from_a_real_t1_only_head_and_the_real_brats_case(work, real_case_four, healthy_case):
    tf_case = _fabricate_four(work, real_case_four, healthy_case)
    tfaug_case = work / "four" / "tfaug" / "cases" / pd.read_csv(work / "four" / "tfaug" / "manifest.csv").case_id[0]
    assert pd.read_csv(work / "four" / "tfaug" / "manifest.csv").healthy_channels.tolist() == ['["t1n"]']
    reference = nib.load(str(REAL / "brats" / CASE / f"{CASE}-t1n.nii.gz"))
    brain = load(tf_case / "brainmask.nii.gz") > 0
    for channel in FOUR:
        image = nib.load(str(tf_case / f"{channel}.nii.gz"))
        data = np.asarray(image.dataobj)
        assert image.shape == reference.shape == (240, 240, 155) and np.allclose(image.affine, reference.affine)
        assert np.isfinite(data).all() and data.min() >= -1 and data.max() <= 1, channel
        assert np.all(data[~brain] == -1.0), channel
    # The translated channels are G's, not TF-Aug's fill.
    for channel in FOUR[1:]:
        assert not np.array_equal(load(tf_case / f"{channel}.nii.gz"), load(tfaug_case / f"{channel}.nii.gz")), channel
    assert np.array_equal(load(tf_case / "seg.nii.gz"), load(tfaug_case / "seg.nii.gz"))
    assert set(np.unique(load(tf_case / "seg.nii.gz"))) == {0, 1, 2, 3}
    # Same bytes twice: TF-Aug's in test_tfaug_channels.py, TF-GAN training's in
    # test_tfgan_translator.py, refinement's of this real volume above.
