# Every file and folder below results/ (docs/architecture.md, "Paths"): rules
# name their inputs and outputs with these, and hand scripts the folders, so
# that no rule or script builds a path itself. Each function also makes a
# rule's pattern: real_case_dir("{case}"). Needs from common.smk (or a test's
# stand-in): config, BASELINE_EXPERIMENT and SEEDS.

from tumorfab import casefolder as tf_casefolder
from tumorfab.segmentation.dataset import dataset_name as nnunet_dataset_name

PREPARED_CASES = "results/prepare/cases.csv"
PREPARED_HEALTHY = "results/prepare/healthy.csv"


def qc_png(step, name):
    """The QC picture a preprocessing step leaves for a case or subject."""
    return f"results/qc/{step}/{name}.png"


def case_file(case_dir, name):
    """A file of a case folder: name = a modality, brainmask or seg; the
    folder's layout is tumorfab.casefolder's."""
    return str(tf_casefolder.case_file(case_dir, name))


REAL_CASES_ROOT = "results/preprocess/real"


def real_case_dir(case):
    """Case folder of a normalized real case."""
    return f"{REAL_CASES_ROOT}/{case}"


def real_case_files(case):
    """The files of a real case folder: images, brain mask, labels."""
    names = [*config["data"]["modalities"], "brainmask", "seg"]
    return [case_file(real_case_dir(case), name) for name in names]


def stripped_dir(subject):
    """A skull-stripped healthy scan, on its own grid."""
    return f"results/preprocess/stripped/{subject}"


def registered_dir(subject):
    """A skull-stripped healthy scan on the reference case's grid."""
    return f"results/preprocess/registered/{subject}"


REGISTRATION_TABLE = "results/preprocess/registration.csv"


def healthy_case_dir(subject):
    """Case folder of a preprocessed healthy scan (no labels)."""
    return f"results/preprocess/healthy/{subject}"


def healthy_case_files(subject):
    """Healthy scans are T1, stored as the modality they stand in for (t1n)."""
    return [case_file(healthy_case_dir(subject), n) for n in ("t1n", "brainmask")]


def synthetic_dir(source):
    """Everything one synthetic source writes (its cases, manifest, fits)."""
    return f"results/synthetic/{source}"


def synthetic_cases_dir(source):
    """The case folders of one synthetic source, one per manifest row."""
    return f"{synthetic_dir(source)}/cases"


def synthetic_manifest(source):
    """One row per case in generation order (tumorfab.synthesis.manifest)."""
    return f"{synthetic_dir(source)}/manifest.csv"


# The GANs' generators (sources tf and pix2pix) and the checkpoints a rerun resumes from:
# outside the rule's outputs, which Snakemake deletes when a job fails.
TFGAN_GENERATOR = f"{synthetic_dir('tf')}/generator.pt"
TFGAN_CHECKPOINT_DIR = "results/checkpoints/train_tfgan"
PIX2PIX_GENERATOR = f"{synthetic_dir('pix2pix')}/generator.pt"
PIX2PIX_CHECKPOINT_DIR = "results/checkpoints/train_pix2pix"


SEG_DIR = "results/segmentation"


def nnunet_image_dir(kind, name=""):
    """Images as nnU-Net gets them (background 0): kind real/{case} or synthetic/{source}."""
    return f"{SEG_DIR}/images/{kind}/{name}".rstrip("/")


def nnunet_preprocessed_dir(kind, source=""):
    """Each case preprocessed once: real, or synthetic/{source}."""
    return f"{SEG_DIR}/preprocessed/{kind}/{source}".rstrip("/")


# The one raw dataset (nnUNet_raw) of the real cases, and the plan made on it.
NNUNET_RAW_ROOT = f"{SEG_DIR}/nnunet/nnUNet_raw"
NNUNET_RAW_DATASET = f"{NNUNET_RAW_ROOT}/{nnunet_dataset_name(BASELINE_EXPERIMENT)}"
NNUNET_PLANS = f"{SEG_DIR}/plans/tumorfabPlans.json"
NNUNET_FINGERPRINT = f"{SEG_DIR}/plans/dataset_fingerprint.json"


def nnunet_root(experiment, kind):
    """An experiment's nnU-Net folder: kind = nnUNet_preprocessed | nnUNet_results."""
    return f"{SEG_DIR}/nnunet/{experiment}/{kind}"


def nnunet_checkpoint_dir(experiment, seed):
    """Checkpoints and nnU-Net's logs of one training: outside the declared
    output, so that a killed job's rerun resumes from them (Snakemake deletes
    failed outputs)."""
    return f"{nnunet_root(experiment, 'nnUNet_results')}/seed{seed}"


def model_dir(experiment, seed):
    """Exported nnU-Net model folder of one training (plans.json, fold_all/...)."""
    return f"{SEG_DIR}/models/{experiment}/seed{seed}"


def prediction_dir(experiment, seed):
    return f"{SEG_DIR}/predictions/{experiment}/seed{seed}"


def evaluation_csv(experiment, seed):
    return f"{SEG_DIR}/evaluation/{experiment}/seed{seed}/per_case.csv"


# The feature extractor F (SPEC §2 item 3): the encoder of the baseline model
# trained with the first seed (F must exist before TF-Aug/TF-GAN run, so one
# seed is chosen; the first is the documented choice). The study's one
# backward edge: segment (baseline) -> synthesize (tfaug, tf) -> segment.
# Load it with tumorfab.segmentation.features.load_feature_extractor.
FEATURE_EXTRACTOR_DIR = model_dir(BASELINE_EXPERIMENT, SEEDS[0])

# Scheduler priority of the jobs on the study's critical path (F's training,
# TF-Aug's fit and generation, TF-GAN's training and refinement): more than
# half of the trainings wait for them, so they run as soon as they can
# rather than after whichever training Snakemake picks first.
CRITICAL_PATH_PRIORITY = 10
# The healthy scans' chain (skull strip, register, normalize) just below:
# TF-Aug's fit waits for it and for F, and F's chain (the real cases, nnU-Net's
# plan and preprocessing, F's training) is the longer and more serial one,
# so it goes first and the healthy scans fill the other core meanwhile.
HEALTHY_SCANS_PRIORITY = CRITICAL_PATH_PRIORITY - 1


# Priority of the trainings of a fine-tuning chain (an experiment with
# init_from, and the one it starts from): the fine-tune can only start after
# its pretraining, so the chain goes before the trainings nothing waits for
# (in the demo it ended ~1 min late behind them).
FINE_TUNING_CHAIN_PRIORITY = 5


def training_priority(wildcards):
    """F's training (the baseline's first seed) first: TF-Aug, TF-GAN and every
    experiment of their sources wait for it; then the trainings of a
    fine-tuning chain; the other trainings after."""
    if model_dir(wildcards.experiment, wildcards.seed) == FEATURE_EXTRACTOR_DIR:
        return CRITICAL_PATH_PRIORITY
    in_chain = EXPERIMENTS[wildcards.experiment].get("init_from") or any(
        spec.get("init_from") == wildcards.experiment for spec in EXPERIMENTS.values()
    )
    return FINE_TUNING_CHAIN_PRIORITY if in_chain else 0


REPORT_DIR = "results/report"
