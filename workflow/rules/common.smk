# What the stage files share, in this order: the config (validated against
# workflow/schemas/config.schema.yaml, which holds every default; the checks
# JSON Schema cannot express are in _check_config), the cases the DAG is built
# from, the experiments and synthetic sources (tumorfab.synthesis.SOURCES),
# and the input functions (get_*), one section per stage. Every path below
# results/ is in paths.smk, included right after this file.
# Everything here runs when the DAG is built: file names only, no image data
# (the prepare rule reads and checks the data).

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, update_config, validate

from tumorfab import demo as tf_demo
from tumorfab.config import typed_command_line_config
from tumorfab.prepare import cases as tf_cases
from tumorfab.segmentation import experiments as tf_experiments
from tumorfab.synthesis import NO_SOURCE, SOURCES, source_label
from tumorfab.synthesis.carvemix import check_lambda_range

min_version("9.0")

# --config data='{remap_label_4_to_3: true}' arrives as strings: type it first.
update_config(config, typed_command_line_config(workflow.config_settings.config))
validate(config, schema="../schemas/config.schema.yaml", set_default=True)


def _config_error(message):
    raise WorkflowError(f"Invalid configuration: {message}")


def _check_config():
    low, high = config["skullstrip"]["brain_volume_ml"]
    if low >= high:
        _config_error("skullstrip.brain_volume_ml must be [min, max] with min < max")
    norm = config["normalize"]
    if norm["lower_percentile"] >= norm["upper_percentile"]:
        _config_error(
            "normalize.lower_percentile must be below normalize.upper_percentile"
        )
    try:
        check_lambda_range(config["carvemix"]["lambda_range"])
    except ValueError as error:
        _config_error(str(error))
    for table, spec in config["tables"].items():
        for name in spec["experiments"]:
            if name not in config["experiments"]:
                _config_error(f"tables.{table}: unknown experiment {name!r}")
    data, demo = config["data"], config["demo"]
    if demo["enabled"]:
        missing = [
            k
            for k in ("n_patients", "n_second_timepoint", "n_healthy", "voxel_mm")
            if k not in demo
        ]
        if missing:
            _config_error(f"demo.enabled is true but demo.{missing[0]} is not set")
        if data["modalities"] != ["t1n"]:
            _config_error("the demo cohort has t1n only: set data.modalities: [t1n]")
        if data["task"] != "GLI":
            _config_error("the demo cohort is of BraTS task GLI: set data.task: GLI")
    for key in ("brats_root", "healthy_root"):
        if not data[key]:
            _config_error(
                f"data.{key} is not set. Point it at your data, e.g.\n"
                f"  snakemake --cores 8 --config data='{{brats_root: /data/BraTS2023-GLI, "
                f"healthy_root: /data/IXI-T1}}'\n"
                "or edit config/config.yaml; or run the embedded demo: make demo"
            )


def _discover():
    """Case files and healthy scans: planned for the demo, globbed otherwise."""
    data, demo = config["data"], config["demo"]
    if demo["enabled"]:
        case_ids = tf_demo.planned_cases(demo["n_patients"], demo["n_second_timepoint"])
        found = [
            tf_cases.brats_case_files(data["brats_root"], c, data["modalities"])
            for c in case_ids
        ]
        healthy = {
            tf_cases.healthy_subject_id(name): Path(data["healthy_root"]) / name
            for name in tf_demo.planned_healthy(demo["n_healthy"])
        }
    else:
        found = tf_cases.discover_brats(
            data["brats_root"], data["modalities"], data["task"]
        )
        healthy = tf_cases.discover_healthy(
            data["healthy_root"], data["healthy_pattern"]
        )
    train, val = tf_cases.split_by_patient(
        [c.case_id for c in found],
        config["split"]["n_real_train"],
        config["split"]["n_val"],
        config["seed"],
    )
    used = set(train) | set(val)
    return (
        found,
        {c.case_id: c for c in found if c.case_id in used},
        healthy,
        train,
        val,
    )


# Paper 003's synthetic-only study adds its experiments and table to the
# config's own (tumorfab.segmentation.experiments), so every rule, table and
# figure treats them like any other.
def _add_synthetic_only_study():
    settings = config["synthetic_only"]
    if not settings["enabled"]:
        return
    if settings["source"] not in SOURCES:
        _config_error(
            f"synthetic_only.source {settings['source']!r} is not a synthetic source; "
            f"choose one of {list(SOURCES)}"
        )
    baseline = next(
        (
            n
            for n, e in config["experiments"].items()
            if e["source"] == NO_SOURCE and tf_experiments.is_enrichment(e)
        ),
        None,
    )
    study, table = tf_experiments.synthetic_only_study(
        settings, baseline, source_label(settings["source"])
    )
    for name in [*study, *table]:
        if name in config["experiments"] or name in config["tables"]:
            _config_error(
                f"synthetic_only.enabled adds {name!r}, which the config already defines; rename yours"
            )
    config["experiments"].update(study)
    config["tables"].update(table)


_check_config()
_add_synthetic_only_study()
try:
    _FOUND, CASES, HEALTHY_FILES, TRAIN_CASES, VAL_CASES = _discover()
except tf_cases.DataError as error:
    raise WorkflowError(str(error)) from None
HEALTHY_SUBJECTS = sorted(HEALTHY_FILES)
SPLIT = {**{c: "train" for c in TRAIN_CASES}, **{c: "val" for c in VAL_CASES}}

REFERENCE_CASE = config["registration"]["reference_case"] or TRAIN_CASES[0]
if REFERENCE_CASE not in TRAIN_CASES:
    _config_error(
        f"registration.reference_case {REFERENCE_CASE!r} is not a training case; "
        f"choose one of {TRAIN_CASES[:5]}..."
    )

# Healthy scans are T1: they are registered to the reference's first channel.
REFERENCE_FILES = {
    "image": str(CASES[REFERENCE_CASE].images[config["data"]["modalities"][0]]),
    "seg": str(CASES[REFERENCE_CASE].seg),
}


wildcard_constraints:
    case=tf_cases.case_id_pattern(config["data"]["task"]),
    subject=r"[A-Za-z0-9_.-]+",


# --- experiments
# The experiments (training sets) and synthetic sources (the registry
# tumorfab.synthesis.SOURCES), the seeds, the baseline that is also F.

from tumorfab.segmentation import experiments as tf_experiments
from tumorfab.synthesis import NO_SOURCE, SOURCES, generation_size

for _name, _experiment in config["experiments"].items():
    _source = _experiment["source"]
    if _source != NO_SOURCE and _source not in SOURCES:
        raise WorkflowError(
            f"Invalid configuration: experiments.{_name}.source {_source!r} is not a "
            f"synthetic source; choose one of {[NO_SOURCE, *SOURCES]}"
        )
try:
    tf_experiments.check_experiments(config["experiments"])
except ValueError as error:
    raise WorkflowError(f"Invalid configuration: {error}") from None

EXPERIMENTS = config["experiments"]
_BASELINES = [
    n
    for n, e in EXPERIMENTS.items()
    if e["source"] == NO_SOURCE and tf_experiments.is_enrichment(e)
]
if not _BASELINES:
    raise WorkflowError(
        "Invalid configuration: experiments needs one experiment with source 'none' "
        "on all real cases from scratch (the real-only baseline: it is planned on, "
        "and its encoder is the feature extractor F)"
    )
BASELINE_EXPERIMENT = _BASELINES[0]
# Sources with at least one experiment, and how many cases each generates
# (the largest size any experiment needs, derived sources included).
SYNTHETIC_SOURCES = sorted(
    {e["source"] for e in EXPERIMENTS.values() if e["source"] != NO_SOURCE}
)
GENERATION_SIZE = {
    source: generation_size(config["experiments"], source) for source in SOURCES
}

SEG = config["segmentation"]
SEEDS = [int(s) for s in SEG["seeds"]]


wildcard_constraints:
    seed=r"\d+",
    experiment="|".join(EXPERIMENTS) or "(?!)",


# --- input functions


def demo_cohort_files():
    """Every file the demo cohort rule writes (also cases the split leaves out)."""
    cases = [str(p) for case in _FOUND for p in [*case.images.values(), case.seg]]
    return cases + [str(p) for p in HEALTHY_FILES.values()]


def get_raw_case_images(wildcards):
    return {m: str(p) for m, p in CASES[wildcards.case].images.items()}


def get_raw_case_seg(wildcards):
    return str(CASES[wildcards.case].seg)


def get_raw_healthy(wildcards):
    return str(HEALTHY_FILES[wildcards.subject])


def get_all_raw_files(wildcards):
    files = [
        str(p) for case in CASES.values() for p in [*case.images.values(), case.seg]
    ]
    return files + [str(p) for p in HEALTHY_FILES.values()]


# --- segmentation
# nnU-Net experiments (segmentation.smk).

from tumorfab.segmentation.plans import configuration_name as _seg_configuration_name

SEG_MODALITIES = config["data"]["modalities"]
SEG_CONFIGURATION = _seg_configuration_name(**SEG["plan"])


def get_evaluation_csvs():
    """Every per-case evaluation CSV (all experiments x seeds), for the report."""
    return [evaluation_csv(e, seed) for e in EXPERIMENTS for seed in SEEDS]


def get_experiment_synthetic_inputs(wildcards, what):
    """Synthetic inputs of an experiment (none for the baseline)."""
    source = EXPERIMENTS[wildcards.experiment]["source"]
    if source == NO_SOURCE:
        return {}
    inputs = {"manifest": synthetic_manifest(source)}
    if what == "images":
        inputs["synthetic_images"] = f"{SEG_DIR}/images/synthetic/{source}"
    else:
        inputs["synthetic_preprocessed"] = f"{SEG_DIR}/preprocessed/synthetic/{source}"
    return inputs


def get_experiment_spec(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    return {
        "source": experiment["source"],
        "n_synthetic": int(experiment["n_synthetic"]),
    }


def get_experiment_real_cases(wildcards):
    """The real training cases of an experiment (a seeded share for real_fraction < 1)."""
    fraction = float(EXPERIMENTS[wildcards.experiment]["real_fraction"])
    return tf_experiments.real_subset(TRAIN_CASES, fraction, config["seed"])


def get_pretrained_model(wildcards):
    """The model (same seed) an experiment is fine-tuned from; none when from scratch."""
    parent = EXPERIMENTS[wildcards.experiment]["init_from"]
    return {} if parent is None else {"pretrained": model_dir(parent, wildcards.seed)}


# --- report
# Tables, figures and the HTML report (report.smk).

import re


def get_report_outputs():
    """Every file of the report; the Snakefile's `rule all` requests them."""
    return [
        f"{REPORT_DIR}/per_case.csv",
        f"{REPORT_DIR}/per_run.csv",
        *expand(
            f"{REPORT_DIR}/{{table}}.{{ext}}",
            table=list(config["tables"]),
            ext=["csv", "md"],
        ),
        f"{REPORT_DIR}/figures/dice_vs_n_synthetic.png",
        *expand(
            f"{REPORT_DIR}/figures/mosaic_{{source}}.png", source=SYNTHETIC_SOURCES
        ),
        *(
            [f"{REPORT_DIR}/figures/refinement.png"]
            if "tf" in SYNTHETIC_SOURCES
            else []
        ),
        *(
            [f"{REPORT_DIR}/realism.{ext}" for ext in ("csv", "md")]
            + [f"{REPORT_DIR}/figures/realism.png"]
            if SYNTHETIC_SOURCES
            else []
        ),
    ]


def get_enrichment_experiments():
    """Paper 002's experiments (all real cases, from scratch): the Dice-vs-size figure's."""
    return {n: e for n, e in EXPERIMENTS.items() if tf_experiments.is_enrichment(e)}


def get_table_labels(wildcards):
    """Only the labels of this table's experiments: another label changes nothing here."""
    names = config["tables"][wildcards.table]["experiments"]
    return {n: config["experiments"][n].get("label", n) for n in names}
