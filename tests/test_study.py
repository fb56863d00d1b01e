"""The study's model (tumorfab.study) built from the presets without Snakemake:
cases and split, experiments and tables, the baseline and F, generation sizes,
what each source's rules need, scheduling, every path below results/, and how
presets compose."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import pytest
import yaml

from tumorfab.config import REPLACED_SECTIONS, compose, keys_table, load_yaml, study_config, with_defaults
from tumorfab.prepare.cases import DataError
from tumorfab.segmentation.plans import PLANS_NAME
from tumorfab.study import layout, scheduling
from tumorfab.study.model import ConfigError, Study
from tumorfab.synthesis import SOURCES

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PAPER = REPO / "config" / "config.yaml"
DEMO = REPO / "config" / "demo.yaml"


def demo_config(**changes) -> dict:
    """The demo preset as the workflow reads it (paper config, preset over it, defaults)."""
    return with_defaults(compose(compose(load_yaml(PAPER), load_yaml(DEMO)), changes), SCHEMA)


@pytest.fixture(scope="module")
def demo() -> Study:
    return Study.from_config(demo_config())


def test_demo_split_is_by_patient_with_the_configured_sizes(demo):
    assert len(demo.train_cases) == 8 and len(demo.val_cases) == 4
    assert not set(demo.train_cases) & set(demo.val_cases)
    assert set(demo.cases) == set(demo.train_cases) | set(demo.val_cases)
    assert {c.case_id for c in demo.found} >= set(demo.cases)
    assert demo.reference_case == demo.train_cases[0]
    assert demo.split[demo.val_cases[0]] == "val"


def test_demo_experiments_include_the_synthetic_only_study_and_its_table(demo):
    assert list(demo.experiments)[:8] == list(load_yaml(DEMO)["experiments"])
    assert {"synthetic_only", "synthetic_only_finetuned", "real_fraction_only"} <= set(demo.experiments)
    assert demo.tables["table_synthetic_only"]["experiments"][0] == demo.baseline == "baseline"
    assert demo.pretrained_from("synthetic_only_finetuned") == "synthetic_only"
    assert len(demo.real_subset("real_fraction_only")) == 2  # 25% of 8
    assert demo.real_subset("real_fraction_only") == demo.real_subset("synthetic_only_finetuned")
    assert demo.runs[:3] == [("baseline", 0), ("baseline", 1), ("baseline", 2)]
    assert len(demo.evaluation_csvs()) == len(demo.experiments) * 3


def test_generation_sizes_cover_every_source_derived_from_it(demo):
    assert demo.synthetic_sources == sorted(SOURCES)
    # tf_24 and the synthetic-only study's 24 TF cases are TF-Aug's 24 pairs refined.
    assert demo.generation_size("tf") == 24
    assert demo.generation_size("tfaug") == 24
    assert demo.generation_size("carvemix") == 8


def test_the_registry_says_which_source_gets_f_and_which_is_refined(demo):
    f = demo.feature_extractor_dir
    assert f == layout.model_dir("baseline", 0)
    for name, source in SOURCES.items():
        assert demo.feature_extractor_input(name) == ({"feature_extractor": f} if source.needs_feature_extractor else {})
    assert demo.refined_source == "tf" and demo.parent_of("tf") == "tfaug"
    assert [s for s in demo.synthetic_sources if demo.parent_of(s) == "tfaug"] == ["pix2pix", "tf"]


def test_report_outputs_follow_the_sources_in_use():
    only_carvemix = Study.from_config(
        demo_config(
            experiments={
                "baseline": {"source": "none", "n_synthetic": 0},
                "carvemix_8": {"source": "carvemix", "n_synthetic": 8},
            },
            tables={"table1": {"title": "T", "experiments": ["baseline", "carvemix_8"]}},
            synthetic_only={"enabled": False},
        )
    )
    outputs = only_carvemix.report_outputs()
    assert layout.report_figure("mosaic_carvemix") in outputs
    assert layout.report_figure("refinement") not in outputs
    assert layout.report_file("realism.csv") in outputs
    assert only_carvemix.refined_source is None


def test_f_first_then_fine_tuning_chains_then_the_other_trainings(demo):
    assert scheduling.training_priority(demo, "baseline", 0) == scheduling.CRITICAL_PATH
    assert scheduling.training_priority(demo, "baseline", 1) == 0
    assert scheduling.training_priority(demo, "synthetic_only", 2) == scheduling.FINE_TUNING_CHAIN
    assert scheduling.training_priority(demo, "synthetic_only_finetuned", 0) == scheduling.FINE_TUNING_CHAIN
    assert scheduling.training_priority(demo, "tf_8", 0) == 0
    assert scheduling.HEALTHY_SCANS < scheduling.CRITICAL_PATH


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tables": {"t": {"title": "T", "experiments": ["baseline", "nope"]}}}, "tables.t: unknown experiment 'nope'"),
        ({"experiments": {"baseline": {"source": "none", "n_synthetic": 0}, "x": {"source": "gan", "n_synthetic": 2}},
          "tables": {}}, "experiments.x.source 'gan' is not a synthetic source"),
        ({"experiments": {"x": {"source": "tf", "n_synthetic": 2}}, "tables": {}, "synthetic_only": {"enabled": False}},
         "needs one experiment with source 'none'"),
        ({"registration": {"reference_case": "BraTS-GLI-99999-000"}}, "registration.reference_case 'BraTS-GLI-99999-000'"),
        ({"synthetic_only": {"source": "nope"}}, "synthetic_only.source 'nope'"),
        ({"experiments": {"baseline": {"source": "none", "n_synthetic": 0}, "synthetic_only": {"source": "none", "n_synthetic": 0}},
          "tables": {}}, "synthetic_only.enabled adds 'synthetic_only'"),
        ({"data": {"modalities": ["t1n", "t2f"]}}, "the demo cohort has t1n only"),
    ],
)
def test_a_bad_config_is_refused_naming_the_key(changes, message):
    with pytest.raises(ConfigError, match="Invalid configuration") as error:
        Study.from_config(demo_config(**changes))
    assert message in str(error.value)


def test_missing_data_roots_are_refused_with_the_readme_command():
    with pytest.raises(ConfigError, match="data.brats_root is not set") as error:
        Study.from_config(with_defaults(load_yaml(PAPER), SCHEMA))
    assert "make demo" in str(error.value)


def test_a_missing_data_folder_is_a_data_error(tmp_path):
    config = with_defaults(compose(load_yaml(PAPER), {"data": {"brats_root": str(tmp_path / "none"),
                                                               "healthy_root": str(tmp_path)}}), SCHEMA)
    with pytest.raises(DataError):
        Study.from_config(config)


def test_every_path_is_below_results_and_the_plans_file_is_nnunets_name():
    functions = {
        name: function
        for name, function in inspect.getmembers(layout, inspect.isfunction)
        if function.__module__ == layout.__name__ and name != "case_file"
    }
    assert len(functions) > 25
    for name, function in functions.items():
        arguments = ["x"] * len(inspect.signature(function).parameters)
        if name == "real_case_files":
            arguments = ["x", ["t1n"]]
        path = function(*arguments)
        for one in path if isinstance(path, list) else [path]:
            assert one.startswith(f"{layout.RESULTS}/"), name
    assert layout.nnunet_plans().endswith(f"/{PLANS_NAME}.json")
    assert layout.real_case_dir("{case}") == "results/preprocess/real/{case}"


def test_the_demo_preset_states_only_what_differs_from_the_paper():
    paper = with_defaults(load_yaml(PAPER), SCHEMA)
    preset = load_yaml(DEMO)

    def differing(values, reference, path):
        for key, value in values.items():
            if isinstance(value, dict) and key not in REPLACED_SECTIONS:
                differing(value, reference[key], f"{path}{key}.")
            else:
                assert reference.get(key) != value, f"config/demo.yaml repeats the paper's {path}{key}"

    differing(preset, paper, "")


def test_the_paper_config_states_no_schema_default():
    schema = yaml.safe_load(SCHEMA.read_text())

    def check(values, properties, path):
        for key, value in values.items():
            spec = properties[key]
            if isinstance(value, dict) and "properties" in spec:
                check(value, spec["properties"], f"{path}{key}.")
            else:
                assert spec.get("default", object()) != value, f"config/config.yaml repeats the default of {path}{key}"

    check(load_yaml(PAPER), schema["properties"], "")


def test_experiments_and_tables_of_a_preset_replace_the_papers_whole():
    demo = compose(load_yaml(PAPER), load_yaml(DEMO))
    assert list(demo["experiments"]) == list(load_yaml(DEMO)["experiments"])
    assert "carvemix_100" not in demo["experiments"]
    assert demo["split"] == {"n_real_train": 8, "n_val": 4}
    assert demo["segmentation"]["seeds"] == [0, 1, 2]  # the paper's, merged key by key


def test_a_key_added_to_the_schema_reaches_both_presets(tmp_path):
    schema = yaml.safe_load(SCHEMA.read_text())
    normalize = schema["properties"]["normalize"]["properties"]
    normalize["clip_outliers"] = {"type": "boolean", "default": True}
    extended = tmp_path / "config.schema.yaml"
    extended.write_text(yaml.safe_dump(schema))
    for preset in ({}, load_yaml(DEMO)):
        config = with_defaults(compose(load_yaml(PAPER), copy.deepcopy(preset)), extended)
        assert config["normalize"]["clip_outliers"] is True


def test_snakemake_records_every_stage_settings_for_its_params_trigger():
    from snakemake.persistence import UNREPRESENTABLE, PersistenceBase

    def recorded(value):
        return PersistenceBase._serialize_param_builtin(None, value)

    settings = Study.from_config(demo_config()).settings
    changed = Study.from_config(
        demo_config(
            skullstrip={"border_mm": 2.0}, registration={"interpolator": "nearestNeighbor"},
            normalize={"upper_percentile": 99.0}, carvemix={"lambda_range": [-0.5, 1.0]},
            tfaug={"blur_sigma": 1.0}, tfgan={"hinge_margin": 0.2}, pix2pix={"lambda_l1": 10.0},
            segmentation={"train": {"epochs": 3}}, report={"mosaic_cases": 2},
        )
    ).settings
    for stage in settings.__dataclass_fields__:
        value = getattr(settings, stage)
        assert recorded(value) is not UNREPRESENTABLE, stage
        assert recorded(value) != recorded(getattr(changed, stage)), stage
        assert recorded(value) == recorded(getattr(Study.from_config(demo_config()).settings, stage)), stage


def test_the_readme_lists_every_key_with_its_values_in_both_presets():
    table = keys_table(SCHEMA, study_config(REPO), study_config(REPO, DEMO))
    assert table in (REPO / "README.md").read_text(), "README: regenerate with python -m tumorfab.config"
    assert "| `tfgan.hinge_margin` | `0.1` | same |" in table
    assert "| `split.n_val` | `200` | `4` |" in table
