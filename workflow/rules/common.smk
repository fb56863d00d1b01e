# What the stage files share: the config, the study built from it, and the
# input functions (get_*). The study's model, its checks and every path below
# results/ are the package's (tumorfab.study, docs/architecture.md); this file
# only hands them to the rules. Building the study reads file names only, no
# image data (the prepare rule reads and checks the data).

import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, update_config, validate

from tumorfab.config import compose, load_yaml, typed_command_line_config
from tumorfab.prepare.cases import DataError, case_id_pattern
from tumorfab.study import layout, scheduling
from tumorfab.study.model import ConfigError, Study

min_version("9.0")

# The paper's study (config/config.yaml), with what a preset (--configfile)
# and --config change. --config data='{remap_label_4_to_3: true}' arrives as
# strings: typed first.
update_config(config, typed_command_line_config(workflow.config_settings.config))
_study_config = compose(
    load_yaml(Path(workflow.basedir) / "config" / "config.yaml"), dict(config)
)
config.clear()
config.update(_study_config)
validate(config, schema="../schemas/config.schema.yaml", set_default=True)

try:
    STUDY = Study.from_config(config)
except (ConfigError, DataError) as error:
    raise WorkflowError(str(error)) from None
SETTINGS = STUDY.settings
MODALITIES = STUDY.modalities
# The {channel} of a healthy subject's other sequences (never its T1's t1n).
HEALTHY_EXTRA_CHANNELS = (
    "|".join(m for m in MODALITIES if m != layout.HEALTHY_CHANNEL) or "(?!)"
)
NNUNET_CONFIGURATION = SETTINGS.segmentation.plan.configuration


wildcard_constraints:
    case=case_id_pattern(config["data"]["task"]),
    subject=r"[A-Za-z0-9_.-]+",
    seed=r"\d+",
    experiment="|".join(STUDY.experiments) or "(?!)",


# --- input functions


def get_raw_case_images(wildcards):
    return {m: str(p) for m, p in STUDY.cases[wildcards.case].images.items()}


def get_raw_case_seg(wildcards):
    return str(STUDY.cases[wildcards.case].seg)


def get_raw_healthy(wildcards):
    """A healthy subject's raw T1."""
    return str(STUDY.healthy_sequence_files(wildcards.subject)[layout.HEALTHY_CHANNEL])


def get_raw_healthy_sequence(wildcards):
    """A healthy subject's raw scan of another sequence (BraTS ``channel``)."""
    return str(STUDY.healthy_sequence_files(wildcards.subject)[wildcards.channel])


def get_all_raw_files(wildcards):
    return STUDY.raw_files()


def get_experiment_synthetic_inputs(wildcards):
    """The preprocessed synthetic cases of an experiment's source (none for
    real-only experiments)."""
    source = STUDY.source_of(wildcards.experiment)
    if source not in STUDY.synthetic_sources:
        return {}
    return {
        "manifest": layout.synthetic_manifest(source),
        "synthetic_preprocessed": layout.nnunet_preprocessed_dir("synthetic", source),
    }


def get_experiment_spec(wildcards):
    experiment = STUDY.experiments[wildcards.experiment]
    return {
        "source": experiment["source"],
        "n_synthetic": int(experiment["n_synthetic"]),
    }


def get_experiment_real_cases(wildcards):
    return STUDY.real_subset(wildcards.experiment)


def get_pretrained_model(wildcards):
    """The model (same seed) an experiment is fine-tuned from; none when from scratch."""
    parent = STUDY.pretrained_from(wildcards.experiment)
    return (
        {}
        if parent is None
        else {"pretrained": layout.model_dir(parent, wildcards.seed)}
    )


def get_training_priority(wildcards):
    return scheduling.training_priority(
        STUDY, wildcards.experiment, int(wildcards.seed)
    )


def get_table_labels(wildcards):
    return STUDY.table_labels(wildcards.table)


# --- fabricated cohorts (fabricate.smk)


def get_cohort_cases(wildcards):
    """A cohort's final case folders and manifest: those of its source."""
    source = STUDY.cohorts[wildcards.cohort].source
    return {
        "cases": layout.fabricate_cases_dir(wildcards.cohort, source),
        "manifest": layout.fabricate_manifest(wildcards.cohort, source),
    }


def get_cohort_layouts(wildcards):
    """The TF-Aug manifest a tf or pix2pix cohort's cases were made from (its card
    reads their lesion records); none for the other sources."""
    if STUDY.cohorts[wildcards.cohort].source not in ("tf", "pix2pix"):
        return {}
    return {"layout_manifest": layout.fabricate_manifest(wildcards.cohort, "tfaug")}


def get_cohort_masks(wildcards):
    """The user's own label maps of a cohort (none: TF-Aug draws its lesions)."""
    masks = STUDY.cohorts[wildcards.cohort].masks
    return {"masks": list(masks)} if masks else {}


def get_cohort_models(wildcards):
    """What a cohort's cases were made with, recorded in its card: TF-Aug's
    fitted intensities, and the generator of a GAN source."""
    source = STUDY.cohorts[wildcards.cohort].source
    models = {}
    if source != "carvemix":
        models["intensity"] = layout.intensity_fit_json("tfaug")
    if source in ("tf", "pix2pix"):
        models["generator"] = layout.generator_file(source)
    return models


def get_cohort_real_case_dirs(wildcards):
    """The real training case folders merged into a cohort's nnU-Net dataset, if asked."""
    if not STUDY.cohorts[wildcards.cohort].export.merge_real:
        return []
    return [layout.real_case_dir(case) for case in STUDY.train_cases]


def get_cohort_real_files(wildcards):
    if not STUDY.cohorts[wildcards.cohort].export.merge_real:
        return []
    return STUDY.real_files(STUDY.train_cases)


def get_cohort_command(wildcards):
    """The command that remakes a cohort, with the config files of this run."""
    configfiles = " ".join(f"--configfile {f}" for f in workflow.overwrite_configfiles)
    return f"snakemake --cores all fabricate_{wildcards.cohort} {configfiles}".strip()
