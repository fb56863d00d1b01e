# Config validation, the case lists the DAG is built from, and input functions.
# Everything here runs when the DAG is built: file names only, no image data
# (the prepare rule reads and checks the data).

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from tumorfab import cases as tf_cases
from tumorfab import demo as tf_demo

min_version("9.0")

validate(config, schema="../schemas/config.schema.yaml", set_default=True)

# Sources whose generator exists in this version; experiments of the other
# sources are skipped (and their table rows left out, never filled).
IMPLEMENTED_SOURCES = ["none", "carvemix", "tfaug"]


def _config_error(message):
    raise WorkflowError(f"Invalid configuration: {message}")


def _check_config():
    norm = config["normalize"]
    if norm["lower_percentile"] >= norm["upper_percentile"]:
        _config_error("normalize.lower_percentile must be below normalize.upper_percentile")
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
        found = tf_cases.discover_brats(data["brats_root"], data["modalities"])
        healthy = tf_cases.discover_healthy(data["healthy_root"], data["healthy_pattern"])
    train, val = tf_cases.split_by_patient(
        [c.case_id for c in found],
        config["split"]["n_real_train"],
        config["split"]["n_val"],
        config["seed"],
    )
    used = set(train) | set(val)
    return found, {c.case_id: c for c in found if c.case_id in used}, healthy, train, val


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
    case=r"BraTS-[A-Z]+-\d{5}-\d{3}",
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
    files = [str(p) for case in CASES.values() for p in [*case.images.values(), case.seg]]
    return files + [str(p) for p in HEALTHY_FILES.values()]
