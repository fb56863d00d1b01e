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

from tumorfab.config import REPLACED_SECTIONS, compose, keys_table, load_yaml, readme_presets, study_config, with_defaults
from tumorfab.prepare.cases import DataError
from tumorfab.segmentation.plans import PLANS_NAME
from tumorfab.study import layout, scheduling
from tumorfab.study.model import ConfigError, Study
from tumorfab.synthesis import SOURCES

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PAPER = REPO / "config" / "config.yaml"
DEMO = REPO / "config" / "demo.yaml"
DEMO_FOUR_SEQUENCES = REPO / "config" / "demo_four_sequences.yaml"


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
          "tables": {}},
         "experiments.x.source 'gan' is not a synthetic source; choose one of ['none', 'carvemix', 'pix2pix', 'tfaug', 'tf']"),
        ({"experiments": {"x": {"source": "tf", "n_synthetic": 2}}, "tables": {}, "synthetic_only": {"enabled": False}},
         "needs one experiment with source 'none'"),
        ({"registration": {"reference_case": "BraTS-GLI-99999-000"}}, "registration.reference_case 'BraTS-GLI-99999-000'"),
        ({"synthetic_only": {"source": "nope"}}, "synthetic_only.source 'nope'"),
        ({"experiments": {"baseline": {"source": "none", "n_synthetic": 0}, "synthetic_only": {"source": "none", "n_synthetic": 0}},
          "tables": {}}, "synthetic_only.enabled adds 'synthetic_only', which the config already defines"),
        ({"data": {"task": "MEN"}}, "the demo cohort is of BraTS task GLI: set data.task: GLI"),
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


@pytest.mark.parametrize("preset_file", [DEMO, DEMO_FOUR_SEQUENCES], ids=lambda p: p.name)
def test_the_demo_presets_state_only_what_differs_from_the_paper(preset_file):
    paper = with_defaults(load_yaml(PAPER), SCHEMA)
    preset = load_yaml(preset_file)
    schema = yaml.safe_load(SCHEMA.read_text())

    def differing(values, reference, properties, path):
        for key, value in values.items():
            # A mapping the schema gives no keys of (data.healthy_sequences) is one value.
            if isinstance(value, dict) and key not in REPLACED_SECTIONS and "properties" in properties[key]:
                differing(value, reference[key], properties[key]["properties"], f"{path}{key}.")
            else:
                assert reference.get(key) != value, f"config/{preset_file.name} repeats the paper's {path}{key}"

    differing(preset, paper, schema["properties"], "")


def test_the_four_sequence_demo_is_the_demo_with_four_channels_and_a_healthy_t2():
    """A run reads one preset, so the four-sequence preset repeats the demo's; only data
    differs, and TF-GAN's length and G's learning rate (translation needs more steps)."""
    demo, four = load_yaml(DEMO), load_yaml(DEMO_FOUR_SEQUENCES)
    assert {k: v for k, v in four.items() if k not in ("data", "tfgan")} == {
        k: v for k, v in demo.items() if k not in ("data", "tfgan")
    }
    translation_schedule = ("epochs", "lr_generator")
    assert {k: v for k, v in four["tfgan"].items() if k not in translation_schedule} == {
        k: v for k, v in demo["tfgan"].items() if k not in translation_schedule
    }
    assert four["tfgan"]["epochs"] > demo["tfgan"]["epochs"]
    config = study_config(REPO, DEMO_FOUR_SEQUENCES)
    assert config["data"]["modalities"] == ["t1n", "t1c", "t2w", "t2f"]
    assert config["data"]["healthy_sequences"] == {"t1n": "T1", "t2w": "T2"}
    assert config["data"]["healthy_pattern"] == "*-{sequence}.nii.gz"
    for key in ("brats_root", "healthy_root"):  # the T1-only demo's phantom stays as it is
        assert config["data"][key] != demo["data"][key]
    Study.from_config(config)


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
    for preset in ({}, load_yaml(DEMO), load_yaml(DEMO_FOUR_SEQUENCES)):
        config = with_defaults(compose(load_yaml(PAPER), copy.deepcopy(preset)), extended)
        assert config["normalize"]["clip_outliers"] is True


def test_snakemake_records_every_stage_settings_for_its_params_trigger():
    from snakemake.persistence import UNREPRESENTABLE, PersistenceBase

    def recorded(value):
        return PersistenceBase._serialize_param_builtin(None, value)

    settings = Study.from_config(demo_config()).settings
    changed = Study.from_config(
        demo_config(
            skullstrip={"border_mm": 2.0}, bias_correction={"fit_voxel_mm": 3.0},
            registration={"interpolator": "nearestNeighbor"},
            normalize={"ceiling_over_white_matter": {"t1n": 2.0}}, carvemix={"lambda_range": [-0.5, 1.0]},
            tfaug={"blur_sigma": 1.0}, tfgan={"hinge_margin": 0.2}, pix2pix={"lambda_l1": 10.0},
            segmentation={"train": {"epochs": 3}}, report={"mosaic_cases": 2},
        )
    ).settings
    for stage in settings.__dataclass_fields__:
        value = getattr(settings, stage)
        assert recorded(value) is not UNREPRESENTABLE, stage
        assert recorded(value) != recorded(getattr(changed, stage)), stage
        assert recorded(value) == recorded(getattr(Study.from_config(demo_config()).settings, stage)), stage


def test_the_readme_lists_every_key_with_its_values_in_every_preset():
    table = keys_table(SCHEMA, study_config(REPO), readme_presets(REPO))
    assert table in (REPO / "README.md").read_text(), "README: regenerate with python -m tumorfab.config"
    assert "| `tfgan.hinge_margin` | `0.1` | same | same |" in table
    assert "| `split.n_val` | `200` | `4` | `4` |" in table
    assert "| `data.modalities` | `[t1n]` | same | `[t1n, t1c, t2w, t2f]` |" in table


# --- healthy subjects with several sequences ----------------------------------------------


def _t1_t2_tree(root: Path) -> dict:
    """Empty files named like BraTS (t1n, t2w) and IXI (T1; a T2 for two of
    three subjects): the study reads names only. Returns the data section."""
    for patient in range(7):
        case = f"BraTS-GLI-{patient:05d}-000"
        for name in ("t1n", "t2w", "seg"):
            (root / "brats" / case).mkdir(parents=True, exist_ok=True)
            (root / "brats" / case / f"{case}-{name}.nii.gz").write_bytes(b"")
    (root / "ixi").mkdir()
    for index, sequences in enumerate([("T1", "T2"), ("T1",), ("T1", "T2", "PD")]):
        for sequence in sequences:
            (root / "ixi" / f"IXI{index:03d}-Guys-{index:04d}-{sequence}.nii.gz").write_bytes(b"")
    return {
        "brats_root": str(root / "brats"),
        "healthy_root": str(root / "ixi"),
        "modalities": ["t1n", "t2w"],
        "healthy_sequences": {"t2w": "T2", "t1n": "T1"},
        "healthy_pattern": "*-{sequence}.nii.gz",
    }


def _real_data_study(data: dict) -> Study:
    config = compose(load_yaml(PAPER), {"data": data, "split": {"n_real_train": 4, "n_val": 2}})
    return Study.from_config(with_defaults(config, SCHEMA))


def test_each_healthy_subject_has_its_t1_and_the_sequences_found_beside_it(tmp_path):
    study = _real_data_study(_t1_t2_tree(tmp_path))
    ixi = tmp_path / "ixi"
    assert study.healthy_subjects == ["IXI000-Guys-0000", "IXI001-Guys-0001", "IXI002-Guys-0002"]
    assert study.healthy_channels("IXI000-Guys-0000") == ("t1n", "t2w")  # data.modalities' order
    assert study.healthy_channels("IXI001-Guys-0001") == ("t1n",)
    assert study.healthy_extra_channels("IXI002-Guys-0002") == ("t2w",)
    assert study.healthy_sequence_files("IXI000-Guys-0000") == {
        "t1n": ixi / "IXI000-Guys-0000-T1.nii.gz", "t2w": ixi / "IXI000-Guys-0000-T2.nii.gz"
    }
    assert study.has_healthy_sequences
    assert str(ixi / "IXI002-Guys-0002-T2.nii.gz") in study.raw_files()
    assert str(ixi / "IXI002-Guys-0002-PD.nii.gz") not in study.raw_files()
    assert study.healthy_files_preprocessed()[:3] == layout.healthy_case_files("IXI000-Guys-0000", ("t1n", "t2w"))
    assert layout.case_file(layout.healthy_case_dir("IXI001-Guys-0001"), "t2w") not in study.healthy_files_preprocessed()
    assert study.reference_files["image"].endswith("-t1n.nii.gz")


def test_a_t1_only_study_has_no_other_sequences(tmp_path):
    data = _t1_t2_tree(tmp_path)
    study = _real_data_study({**data, "modalities": ["t1n"], "healthy_sequences": {"t1n": "T1"}})
    assert not study.has_healthy_sequences
    assert study.healthy_files_preprocessed() == [
        f for s in study.healthy_subjects for f in layout.healthy_case_files(s)
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"healthy_sequences": {"t2w": "T2"}}, "data.healthy_sequences.t1n is not set"),
        ({"healthy_sequences": {"t1n": "T1", "t2f": "PD"}}, "data.healthy_sequences.t2f: t2f is not one of data.modalities"),
        ({"healthy_sequences": {"t1n": "T1", "t2w": "T1"}}, "data.healthy_sequences.t2w: sequence 'T1' is also"),
        ({"modalities": ["t2w"], "healthy_sequences": {"t1n": "T1"}},
         "data.healthy_sequences.t1n: t1n is not one of data.modalities ['t2w']; healthy T1 scans stand in for t1n"),
    ],
)
def test_a_bad_healthy_sequence_mapping_is_refused_naming_the_key(tmp_path, data, message):
    with pytest.raises(ConfigError, match="Invalid configuration") as error:
        _real_data_study({**_t1_t2_tree(tmp_path), **data})
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"healthy_sequences": {"t1n": "T1", "t2w": "FLAIR"}}, "data.healthy_sequences.t2w: no subject has a FLAIR scan"),
        ({"healthy_pattern": "*.nii.gz"}, "data.healthy_sequences.t2w: data.healthy_pattern '*.nii.gz' has no {sequence}"),
    ],
)
def test_sequences_the_files_do_not_have_are_a_data_error_naming_the_key(tmp_path, data, message):
    with pytest.raises(DataError) as error:
        _real_data_study({**_t1_t2_tree(tmp_path), **data})
    assert message in str(error.value)


def test_the_demo_plans_each_subjects_sequences_beside_its_t1():
    four = REPO / "config" / "demo_four_sequences.yaml"
    study = Study.from_config(with_defaults(compose(load_yaml(PAPER), load_yaml(four)), SCHEMA))
    subject = study.healthy_subjects[0]
    files = study.healthy_sequence_files(subject)
    assert study.healthy_channels(subject) == ("t1n", "t2w")
    assert files["t2w"] == files["t1n"].with_name(files["t1n"].name.replace("-T1.", "-T2."))
    assert set(map(str, files.values())) <= set(study.demo_cohort_files())
