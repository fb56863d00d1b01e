"""Every file and folder the study writes below ``results/``: the one owner of the layout.

Rules name their inputs and outputs with these functions and hand scripts the
folders; the report finds a run's files through them too, so no other code
builds or parses a path below ``results/``. Each function also makes a rule's
pattern when given a wildcard: ``real_case_dir("{case}")``. Paths are relative
to the working directory the workflow runs in. The folders of a case
(images, brain mask, labels) are :mod:`tumorfab.casefolder`'s.
"""

from __future__ import annotations

from typing import Sequence

from tumorfab import casefolder
from tumorfab.prepare.cases import HEALTHY_T1_CHANNEL
from tumorfab.segmentation.dataset import dataset_name
from tumorfab.segmentation.plans import PLANS_NAME

RESULTS = "results"
#: A healthy subject's T1, stored as the BraTS channel it stands in for: every
#: subject has it, and its other sequences are aligned to it.
HEALTHY_CHANNEL = HEALTHY_T1_CHANNEL


def case_file(case_dir: str, name: str) -> str:
    """A file of a case folder: ``name`` is a channel, ``brainmask`` or ``seg``."""
    return str(casefolder.case_file(case_dir, name))


def benchmark_tsv(rule: str, name: str) -> str:
    """Snakemake's ``benchmark:`` record of one job of ``rule``."""
    return f"{RESULTS}/benchmarks/{rule}/{name}.tsv"


# --- prepare -----------------------------------------------------------------------------


def prepared_cases() -> str:
    """The checked real cases and their split (the ``prepare`` rule)."""
    return f"{RESULTS}/prepare/cases.csv"


def prepared_healthy() -> str:
    """The checked healthy scans (the ``prepare`` rule)."""
    return f"{RESULTS}/prepare/healthy.csv"


# --- preprocess --------------------------------------------------------------------------


def qc_png(step: str, name: str) -> str:
    """The QC picture a preprocessing step leaves for a case or subject."""
    return f"{RESULTS}/qc/{step}/{name}.png"


def real_cases_root() -> str:
    """The folder of the normalized real case folders."""
    return f"{RESULTS}/preprocess/real"


def real_case_dir(case: str) -> str:
    """Case folder of a normalized real case."""
    return f"{real_cases_root()}/{case}"


def real_case_files(case: str, modalities: Sequence[str]) -> list[str]:
    """The files of a real case folder: images, brain mask, labels."""
    return [case_file(real_case_dir(case), name) for name in [*modalities, "brainmask", "seg"]]


def stripped_dir(subject: str) -> str:
    """A skull-stripped healthy scan, on its own grid."""
    return f"{RESULTS}/preprocess/stripped/{subject}"


def coregistration_transform(subject: str, channel: str) -> str:
    """The rigid transform of a healthy subject's ``channel`` scan onto its own T1."""
    return f"{RESULTS}/preprocess/coregistered/{subject}/{channel}.mat"


def registered_dir(subject: str) -> str:
    """A skull-stripped healthy scan on the reference case's grid (every channel of the subject)."""
    return f"{RESULTS}/preprocess/registered/{subject}"


def registration_transform_dir(subject: str) -> str:
    """The transforms of a healthy T1 onto the reference, in the order ANTs applies
    them: the subject's other sequences are carried to the reference by them."""
    return f"{registered_dir(subject)}/transform"


def similarity_csv(subject: str) -> str:
    """How well one healthy scan matches the reference after registration."""
    return f"{registered_dir(subject)}/similarity.csv"


def registration_table() -> str:
    """Every healthy scan's similarity to the reference, one row each."""
    return f"{RESULTS}/preprocess/registration.csv"


def healthy_case_dir(subject: str) -> str:
    """Case folder of a preprocessed healthy scan (no labels)."""
    return f"{RESULTS}/preprocess/healthy/{subject}"


def healthy_case_files(subject: str, channels: Sequence[str] = (HEALTHY_CHANNEL,)) -> list[str]:
    """The files of a healthy case folder: one image per channel the subject has
    (its T1 as :data:`HEALTHY_CHANNEL`) and the brain mask."""
    return [case_file(healthy_case_dir(subject), name) for name in (*channels, "brainmask")]


# --- synthesize --------------------------------------------------------------------------


def synthetic_dir(source: str) -> str:
    """Everything one synthetic source writes (its cases, manifest, fits, models)."""
    return f"{RESULTS}/synthetic/{source}"


def synthetic_cases_dir(source: str) -> str:
    """The case folders of one synthetic source, one per manifest row."""
    return f"{synthetic_dir(source)}/cases"


def synthetic_manifest(source: str) -> str:
    """One row per case in generation order (:mod:`tumorfab.synthesis.manifest`)."""
    return f"{synthetic_dir(source)}/manifest.csv"


def intensity_fit_json(source: str) -> str:
    """TF-Aug's fitted intensity model (a, b per subregion and channel)."""
    return f"{synthetic_dir(source)}/intensity.json"


def generator_file(source: str) -> str:
    """A GAN source's trained generator and its training record."""
    return f"{synthetic_dir(source)}/generator.pt"


def training_losses(source: str, ext: str) -> str:
    """A GAN source's loss rows (``csv``) or their curves (``png``)."""
    return f"{synthetic_dir(source)}/losses.{ext}"


def training_checkpoint_dir(rule: str) -> str:
    """Where a training rule keeps the checkpoint a rerun resumes from: outside
    its outputs, which Snakemake deletes when a job fails."""
    return f"{RESULTS}/checkpoints/{rule}"


# --- segment -----------------------------------------------------------------------------


def segmentation_dir() -> str:
    return f"{RESULTS}/segmentation"


def nnunet_image_dir(kind: str, name: str = "") -> str:
    """Images as nnU-Net gets them (background 0): ``real/{case}``, ``synthetic/{source}``,
    or with no name the folder of that kind."""
    return f"{segmentation_dir()}/images/{kind}/{name}".rstrip("/")


def nnunet_preprocessed_dir(kind: str, source: str = "") -> str:
    """Each case preprocessed once: ``real``, or ``synthetic/{source}``."""
    return f"{segmentation_dir()}/preprocessed/{kind}/{source}".rstrip("/")


def nnunet_raw_root() -> str:
    """``nnUNet_raw`` of the study's one raw dataset (the real cases)."""
    return f"{segmentation_dir()}/nnunet/nnUNet_raw"


def nnunet_raw_dataset(baseline: str) -> str:
    """The raw dataset, named after the baseline experiment that is planned on."""
    return f"{nnunet_raw_root()}/{dataset_name(baseline)}"


def nnunet_test_images(baseline: str) -> str:
    """The held-out cases' images in the raw dataset (nnU-Net's ``imagesTs``)."""
    return f"{nnunet_raw_dataset(baseline)}/imagesTs"


def nnunet_plans() -> str:
    """The one plan every experiment shares."""
    return f"{segmentation_dir()}/plans/{PLANS_NAME}.json"


def nnunet_fingerprint() -> str:
    return f"{segmentation_dir()}/plans/dataset_fingerprint.json"


def nnunet_root(experiment: str, kind: str) -> str:
    """An experiment's nnU-Net folder: ``kind`` = ``nnUNet_preprocessed`` | ``nnUNet_results``."""
    return f"{segmentation_dir()}/nnunet/{experiment}/{kind}"


def nnunet_checkpoint_dir(experiment: str, seed) -> str:
    """Checkpoints and nnU-Net's logs of one training: outside the declared
    output, so that a killed job's rerun resumes from them."""
    return f"{nnunet_root(experiment, 'nnUNet_results')}/seed{seed}"


def model_dir(experiment: str, seed) -> str:
    """Exported nnU-Net model folder of one training (plans.json, fold_all/...)."""
    return f"{segmentation_dir()}/models/{experiment}/seed{seed}"


def prediction_dir(experiment: str, seed) -> str:
    """One model's segmentations of the held-out cases."""
    return f"{segmentation_dir()}/predictions/{experiment}/seed{seed}"


def evaluation_csv(experiment: str, seed) -> str:
    """One model's metrics, one row per held-out case."""
    return f"{segmentation_dir()}/evaluation/{experiment}/seed{seed}/per_case.csv"


# --- report ------------------------------------------------------------------------------


def report_dir() -> str:
    return f"{RESULTS}/report"


def report_file(name: str) -> str:
    """A table of the report: ``per_case.csv``, ``table1.md``, ``realism.csv``..."""
    return f"{report_dir()}/{name}"


def report_figure(name: str) -> str:
    """A figure of the report (PNG)."""
    return f"{report_dir()}/figures/{name}.png"


# --- fabricate ---------------------------------------------------------------------------


def fabricate_dir(cohort: str) -> str:
    """Everything one fabricated cohort writes (:mod:`tumorfab.fabricate`)."""
    return f"{RESULTS}/fabricate/{cohort}"


def fabricate_cases_dir(cohort: str, source: str) -> str:
    """A cohort's case folders as ``source`` made them: a tf or pix2pix cohort
    has its TF-Aug cases (``tfaug``) under its own."""
    return f"{fabricate_dir(cohort)}/{source}/cases"


def fabricate_manifest(cohort: str, source: str) -> str:
    return f"{fabricate_dir(cohort)}/{source}/manifest.csv"


def fabricate_brats_dir(cohort: str) -> str:
    """The cohort in BraTS layout (``BraTS-<prefix>-XXXXX-000/``, ``cases.csv``)."""
    return f"{fabricate_dir(cohort)}/brats"


def fabricate_nnunet_raw(cohort: str) -> str:
    """The cohort as an nnU-Net raw dataset: ``Dataset<id>_<name>/`` in this folder."""
    return f"{fabricate_dir(cohort)}/nnUNet_raw"


def fabricate_card(cohort: str, ext: str) -> str:
    """The cohort's card, ``md`` or ``json``; its figures beside it."""
    return f"{fabricate_dir(cohort)}/card.{ext}"


def fabricate_figure(cohort: str, name: str) -> str:
    return f"{fabricate_dir(cohort)}/figures/{name}.png"


def intensity_scale_json() -> str:
    """The real training cases' white-matter levels: how a cohort's [-1, 1] maps back."""
    return f"{RESULTS}/fabricate/intensity_scale.json"
