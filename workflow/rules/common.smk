# Config validation, the case lists the DAG is built from, and input functions;
# then one section per stage ("# --- segmentation", "# --- report") with the
# globals and input functions of that stage's rule file.
# Everything here runs when the DAG is built: file names only, no image data
# (the prepare rule reads and checks the data).

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, update_config, validate

from tumorfab.prepare import cases as tf_cases
from tumorfab import demo as tf_demo
from tumorfab.config import typed_command_line_config

min_version("9.0")

# --config data='{remap_label_4_to_3: true}' arrives as strings: type it first.
update_config(config, typed_command_line_config(workflow.config_settings.config))
validate(config, schema="../schemas/config.schema.yaml", set_default=True)

# Sources whose generator exists in this version; experiments of the other
# sources are skipped (and their table rows left out, never filled).
IMPLEMENTED_SOURCES = ["none", "carvemix", "tfaug"]


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
    for name, experiment in config["experiments"].items():
        if (experiment["source"] == "none") != (experiment["n_synthetic"] == 0):
            _config_error(
                f"experiments.{name}: n_synthetic must be 0 exactly when source is 'none'"
            )
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


_check_config()
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

EXPERIMENTS = {
    name: experiment
    for name, experiment in config["experiments"].items()
    if experiment["source"] in IMPLEMENTED_SOURCES
}
_skipped = sorted(set(config["experiments"]) - set(EXPERIMENTS))
if _skipped:
    print(f"tumorfab: experiments not available in this version, skipped: {_skipped}")


wildcard_constraints:
    case=tf_cases.case_id_pattern(config["data"]["task"]),
    subject=r"[A-Za-z0-9_.-]+",


def real_case_dir(case):
    return f"results/preprocess/real/{case}"


def real_case_files(case):
    """The files of a preprocessed real case folder."""
    folder = real_case_dir(case)
    names = [*config["data"]["modalities"], "brainmask", "seg"]
    return [f"{folder}/{name}.nii.gz" for name in names]


def healthy_case_files(subject):
    """The files of a preprocessed healthy case folder."""
    folder = f"results/preprocess/healthy/{subject}"
    return [f"{folder}/t1n.nii.gz", f"{folder}/brainmask.nii.gz"]


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
# nnU-Net experiments (segmentation.smk); the feature extractor F (tfaug.smk)
# and the evaluation CSVs (report.smk) are found here too.

from tumorfab.segmentation.plans import configuration_name as _seg_configuration_name

SEG = config["segmentation"]
SEEDS = [int(s) for s in SEG["seeds"]]
SEG_MODALITIES = config["data"]["modalities"]
SEG_CONFIGURATION = _seg_configuration_name(**SEG["plan"])
_BASELINES = [n for n, e in EXPERIMENTS.items() if e["source"] == "none"]
if not _BASELINES:
    raise WorkflowError(
        "Invalid configuration: experiments needs one experiment with source 'none' "
        "(the real-only baseline: it is planned on, and its encoder is the feature extractor F)"
    )
BASELINE_EXPERIMENT = _BASELINES[0]
SYNTHETIC_SOURCES = sorted(
    {e["source"] for e in EXPERIMENTS.values() if e["source"] != "none"}
)

SEG_DIR = "results/segmentation"


wildcard_constraints:
    seed=r"\d+",
    experiment="|".join(EXPERIMENTS) or "(?!)",


def nnunet_root(experiment, kind):
    """An experiment's nnU-Net folder: kind = nnUNet_raw | nnUNet_preprocessed | nnUNet_results."""
    return f"{SEG_DIR}/nnunet/{experiment}/{kind}"


def model_dir(experiment, seed):
    """Exported nnU-Net model folder of one training (plans.json, fold_all/...)."""
    return f"{SEG_DIR}/models/{experiment}/seed{seed}"


def baseline_model_dir(seed):
    """The baseline model of ``seed``: load F with
    tumorfab.segmentation.features.load_feature_extractor(baseline_model_dir(seed))."""
    return model_dir(BASELINE_EXPERIMENT, seed)


def case_root_of(files):
    """The folder holding the case folders of ``files`` (``{root}/{case}/{name}``)."""
    return str(Path(files[0]).parent.parent)


def get_feature_model_dir():
    """Model folder of the feature extractor F (SPEC §2 item 3): the baseline
    trained with the first seed (F must exist before TF-Aug/TF-GAN run, so
    one seed is chosen; the first is the documented choice)."""
    return baseline_model_dir(SEEDS[0])


def get_evaluation_csvs():
    """Every per-case evaluation CSV (all experiments x seeds), for the report."""
    return [
        f"{SEG_DIR}/evaluation/{experiment}/seed{seed}/per_case.csv"
        for experiment in EXPERIMENTS
        for seed in SEEDS
    ]


def _synthetic_manifest(source):
    return f"results/synthetic/{source}/manifest.csv"


def get_experiment_synthetic_inputs(wildcards, what):
    """Synthetic inputs of an experiment (none for the baseline)."""
    source = EXPERIMENTS[wildcards.experiment]["source"]
    if source == "none":
        return {}
    inputs = {"manifest": _synthetic_manifest(source)}
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


# --- report
# Tables, figures and the HTML report (report.smk).

import re


def report_sources():
    """Synthetic sources with at least one experiment in this version (EXPERIMENTS)."""
    return sorted({e["source"] for e in EXPERIMENTS.values() if e["source"] != "none"})


def get_report_outputs():
    """Every file of the report; the Snakefile's `rule all` requests them."""
    return [
        "results/report/per_case.csv",
        "results/report/per_run.csv",
        *expand(
            "results/report/{table}.{ext}",
            table=list(config["tables"]),
            ext=["csv", "md"],
        ),
        "results/report/figures/dice_vs_n_synthetic.png",
        *expand("results/report/figures/mosaic_{source}.png", source=report_sources()),
    ]


def get_table_labels(wildcards):
    """Only the labels of this table's experiments: another label changes nothing here."""
    names = config["tables"][wildcards.table]["experiments"]
    return {n: config["experiments"][n].get("label", n) for n in names}
