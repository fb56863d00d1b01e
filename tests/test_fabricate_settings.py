"""The ``fabricate`` section: cohorts filled from the study, and requests that
cannot be met stopped before any work, naming the cohort and key."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.schema_defaults import schema_defaults
from snakemake.exceptions import WorkflowError

from tumorfab.fabricate.settings import Cohort, check_against_reference, cohorts_from_config

from conftest import write_volume

STUDY_CONTROLS = {"offset": {"et": 0.2}, "heterogeneity": {"amplitude": 0.05}, "n_lesions": [1, 2]}


def config(cohorts: dict, **study) -> dict:
    return schema_defaults({"fabricate": {"cohorts": cohorts}, "tfaug": {"controls": STUDY_CONTROLS}, **study})


def one(section: dict, **study) -> Cohort:
    return cohorts_from_config(config({"c": section}, **study))["c"]


def test_a_cohort_takes_the_study_s_controls_with_its_own_keys_replaced():
    cohort = one(
        {
            "source": "tf",
            "n_cases": 5,
            "controls": {"location": {"mode": "hemisphere", "side": "left"}, "offset": {"ncr": -0.1}},
            "mass_effect": {"enabled": True},
        }
    )
    controls = cohort.tfaug.controls
    assert controls.location.side == "left"
    assert dict(controls.offset) == {1: (-0.1, -0.1), 2: (0.0, 0.0), 3: (0.2, 0.2)}  # ncr the cohort's, et the study's
    assert controls.heterogeneity_amplitude == (0.05, 0.05) and controls.n_lesions == (1, 2)
    assert cohort.tfaug.mass_effect.enabled and cohort.tfaug.mass_effect.magnitude_mm == (2.0, 6.0)
    assert cohort.controls_checked() == {
        "location": {"mode": "hemisphere", "side": "left"}, "size_ml": None, "n_lesions": [1, 2],
    }
    assert cohort.requested()["controls"]["offset"] == {"ncr": -0.1}


def test_defaults_seed_the_study_s_prefix_syn_and_ids_by_name():
    cohorts = cohorts_from_config(
        config({"b": {"source": "tfaug", "n_cases": 1}, "a": {"source": "carvemix", "n_cases": 2, "seed": 3}})
    )
    assert list(cohorts) == ["a", "b"]
    assert (cohorts["a"].seed, cohorts["b"].seed) == (3, 0)
    assert cohorts["a"].tfaug is None and cohorts["a"].controls_checked() == {}
    assert [c.export.nnunet_dataset_id for c in cohorts.values()] == [900, 901]
    assert {c.export.brats_prefix for c in cohorts.values()} == {"SYN"}


@pytest.mark.parametrize(
    "section, message",
    [
        (
            {"source": "tfaug", "n_cases": 1, "controls": {"size_ml": [2500, 3000]}},
            r"^fabricate\.cohorts\.c\.controls\.size_ml \[2500\.0, 3000\.0\]: a lesion of 2500 ml or more "
            r"does not fit in a brain \(at most 2000 ml, skullstrip\.brain_volume_ml\)",
        ),
        (
            {"source": "tf", "n_cases": 1, "controls": {"size_ml": [500, 600], "n_lesions": 4}},
            r"^fabricate\.cohorts\.c\.controls: n_lesions \[4, 4\] of size_ml \[500\.0, 600\.0\]: 4 lesions "
            r"of 500 ml or more do not fit in a brain",
        ),
        (
            {"source": "carvemix", "n_cases": 1, "controls": {"n_lesions": 2}},
            r"^fabricate\.cohorts\.c: source carvemix mixes real cases and draws no lesion; \['controls'\]",
        ),
        (
            {"source": "tfaug", "n_cases": 1, "controls": {"size_ml": [3, 2]}},
            r"^fabricate\.cohorts\.c\.controls\.size_ml: expected a number or \[low, high\] with low <= high",
        ),
    ],
)
def test_a_request_that_cannot_be_met_is_refused_naming_the_cohort_and_key(section, message):
    with pytest.raises(ValueError, match=message):
        one(section)


def test_masks_given_exclude_the_placement_controls_and_must_exist(tmp_path):
    with pytest.raises(ValueError, match=r"^fabricate\.cohorts\.c\.masks_dir: .*missing is not a folder"):
        one({"source": "tfaug", "n_cases": 1, "masks_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match=r"holds no label map \(\*\.nii\.gz\)"):
        one({"source": "tfaug", "n_cases": 1, "masks_dir": str(tmp_path)})
    write_volume(tmp_path / "b.nii.gz", np.zeros((4, 4, 4), np.uint8))
    write_volume(tmp_path / "a.nii.gz", np.zeros((4, 4, 4), np.uint8))
    assert [p.split("/")[-1] for p in one({"source": "tf", "n_cases": 3, "masks_dir": str(tmp_path)}).masks] == [
        "a.nii.gz", "b.nii.gz",
    ]
    with pytest.raises(ValueError, match=r"controls \['size_ml'\]: the lesions come from masks_dir, placed as given"):
        one({"source": "tfaug", "n_cases": 1, "masks_dir": str(tmp_path), "controls": {"size_ml": [1, 2]}})
    assert one({"source": "tfaug", "n_cases": 1, "masks_dir": str(tmp_path)}).controls_checked() == {}


def test_two_cohorts_with_one_dataset_id_and_bad_schema_values_are_refused():
    with pytest.raises(ValueError, match=r"share an nnU-Net dataset id .*: 901: \['a', 'b'\]"):
        cohorts_from_config(
            config(
                {
                    "a": {"source": "tfaug", "n_cases": 1, "export": {"nnunet_dataset_id": 901}},
                    "b": {"source": "tf", "n_cases": 1},
                }
            )
        )
    for bad in ({"source": "gan", "n_cases": 1}, {"source": "tf", "n_cases": 0}, {"source": "tf"},
                {"source": "tf", "n_cases": 1, "export": {"brats_prefix": "syn"}}):
        with pytest.raises(WorkflowError):
            config({"c": bad})
    with pytest.raises(WorkflowError):
        config({"1st": {"source": "tf", "n_cases": 1}})


def test_a_location_outside_the_reference_brain_or_a_mask_on_another_grid_is_refused(tmp_path):
    brain = np.zeros((10, 10, 10), bool)
    brain[2:8, 2:8, 2:8] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    inside = one({"source": "tfaug", "n_cases": 1, "controls": {"location": {"mode": "coordinates", "center_mm": [10, 10, 10]}}})
    check_against_reference([inside], brain, affine, brain.shape)
    outside = one({"source": "tfaug", "n_cases": 1, "controls": {"location": {"mode": "coordinates", "center_mm": [2, 2, 40]}}})
    with pytest.raises(ValueError, match=r"^fabricate\.cohorts\.c\.controls\.location\.center_mm \[2\.0, 2\.0, 40\.0\]: outside"):
        check_against_reference([outside], brain, affine, brain.shape)
    write_volume(tmp_path / "m.nii.gz", np.zeros((10, 10, 9), np.uint8), affine)
    masked = one({"source": "tfaug", "n_cases": 1, "masks_dir": str(tmp_path)})
    with pytest.raises(ValueError, match=r"^fabricate\.cohorts\.c\.masks_dir: .*m\.nii\.gz is on another grid \(\(10, 10, 9\)\)"):
        check_against_reference([masked], brain, affine, brain.shape)
