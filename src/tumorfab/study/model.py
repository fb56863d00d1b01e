"""The study as plain Python: what the workflow's DAG is made of, built once from the config.

:class:`Study` holds the cases the study uses (discovered on disk, or planned
for the demo cohort) and their split, the reference case, the experiments
(the config's, plus paper 003's synthetic-only study when enabled) and tables,
the baseline experiment (planned on; its first-seed model is the feature
extractor F), the seeds, the synthetic sources the experiments use and how
many cases each generates, and every stage's settings. The workflow
(``workflow/rules/common.smk``) builds one and its rules only wire it to the
paths of :mod:`tumorfab.study.layout`; tests build one without Snakemake.

Building reads file names only, no image data (the ``prepare`` rule reads and
checks the data), and imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from tumorfab import demo
from tumorfab.fabricate.settings import Cohort, check_against_reference, cohorts_from_config, reference_brain
from tumorfab.prepare import cases as discovery
from tumorfab.segmentation import experiments as study_experiments
from tumorfab.study import layout
from tumorfab.study.settings import StageSettings
from tumorfab.synthesis import NO_SOURCE, SOURCES, generation_size, source_label

#: Keys the demo cohort needs when ``demo.enabled`` is true.
DEMO_KEYS = ("n_patients", "n_second_timepoint", "n_healthy", "voxel_mm")


class ConfigError(ValueError):
    """A configuration the study cannot run, with the key that is wrong."""

    def __init__(self, message: str):
        super().__init__(f"Invalid configuration: {message}")


def check_data(config: Mapping) -> None:
    """The ``data`` and ``demo`` sections' checks that JSON Schema cannot express."""
    data, demo_settings = config["data"], config["demo"]
    if demo_settings["enabled"]:
        missing = [key for key in DEMO_KEYS if key not in demo_settings]
        if missing:
            raise ConfigError(f"demo.enabled is true but demo.{missing[0]} is not set")
        if data["task"] != "GLI":
            raise ConfigError("the demo cohort is of BraTS task GLI: set data.task: GLI")
    for key in ("brats_root", "healthy_root"):
        if not data[key]:
            raise ConfigError(
                f"data.{key} is not set. Point it at your data, e.g.\n"
                f"  snakemake --cores 8 --config data='{{brats_root: /data/BraTS2023-GLI, "
                f"healthy_root: /data/IXI-T1}}'\n"
                "or edit config/config.yaml; or run the embedded demo: make demo"
            )
    check_healthy_sequences(data)


def check_healthy_sequences(data: Mapping) -> None:
    """``data.healthy_sequences``: the T1 mapped, as t1n, every channel one of
    ``data.modalities``, no sequence name twice. (Whether ``data.healthy_pattern``
    can find them is discovery's check.)"""
    sequences, modalities = data["healthy_sequences"], data["modalities"]
    anchor = discovery.HEALTHY_T1_CHANNEL
    if anchor not in sequences:
        raise ConfigError(
            f"data.healthy_sequences.{anchor} is not set: every healthy subject is its T1 "
            f"(stored as {anchor}) and the other sequences beside it, e.g. {{{anchor}: T1, t2w: T2}}"
        )
    for channel in sequences:
        if channel not in modalities:
            advice = (
                f"healthy T1 scans stand in for {anchor}: add it there"
                if channel == anchor
                else "add it there or leave it out here"
            )
            raise ConfigError(
                f"data.healthy_sequences.{channel}: {channel} is not one of data.modalities "
                f"{list(modalities)}; {advice}"
            )
    seen: dict[str, str] = {}
    for channel, name in sequences.items():
        if name in seen:
            raise ConfigError(
                f"data.healthy_sequences.{channel}: sequence {name!r} is also "
                f"data.healthy_sequences.{seen[name]}'s; each channel needs its own scans"
            )
        seen[name] = channel


def _baseline_of(experiments: Mapping[str, Mapping]) -> str | None:
    """The first real-only experiment on all real cases from scratch."""
    return next(
        (n for n, e in experiments.items() if e["source"] == NO_SOURCE and study_experiments.is_enrichment(e)),
        None,
    )


def experiments_and_tables(config: Mapping) -> tuple[dict, dict, str]:
    """The study's experiments and tables (the config's, plus the synthetic-only
    study's when ``synthetic_only.enabled``) and its baseline, checked."""
    experiments, tables = dict(config["experiments"]), dict(config["tables"])
    settings = config["synthetic_only"]
    if settings["enabled"]:
        if settings["source"] not in SOURCES:
            raise ConfigError(
                f"synthetic_only.source {settings['source']!r} is not a synthetic source; "
                f"choose one of {list(SOURCES)}"
            )
        added, table = study_experiments.synthetic_only_study(
            settings, _baseline_of(experiments), source_label(settings["source"])
        )
        for name in [*added, *table]:
            if name in experiments or name in tables:
                raise ConfigError(
                    f"synthetic_only.enabled adds {name!r}, which the config already defines; rename yours"
                )
        experiments.update(added)
        tables.update(table)
    for table, spec in tables.items():
        for name in spec["experiments"]:
            if name not in experiments:
                raise ConfigError(f"tables.{table}: unknown experiment {name!r}")
    for name, experiment in experiments.items():
        if experiment["source"] != NO_SOURCE and experiment["source"] not in SOURCES:
            raise ConfigError(
                f"experiments.{name}.source {experiment['source']!r} is not a "
                f"synthetic source; choose one of {[NO_SOURCE, *SOURCES]}"
            )
    try:
        study_experiments.check_experiments(experiments)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    baseline = _baseline_of(experiments)
    if baseline is None:
        raise ConfigError(
            "experiments needs one experiment with source 'none' "
            "on all real cases from scratch (the real-only baseline: it is planned on, "
            "and its encoder is the feature extractor F)"
        )
    return experiments, tables, baseline


def healthy_sequences(data: Mapping) -> dict[str, str]:
    """``data.healthy_sequences`` (checked) in the order of ``data.modalities``."""
    return {c: data["healthy_sequences"][c] for c in data["modalities"] if c in data["healthy_sequences"]}


def discover(config: Mapping) -> tuple[list[discovery.BratsCase], dict[str, dict[str, Path]]]:
    """Every BraTS case and healthy subject (subject -> {channel: file}): planned
    for the demo cohort, globbed otherwise. A
    :class:`~tumorfab.prepare.cases.DataError` names what is wrong on disk,
    in both data roots at once."""
    data, demo_settings = config["data"], config["demo"]
    sequences = healthy_sequences(data)
    if demo_settings["enabled"]:
        case_ids = demo.planned_cases(demo_settings["n_patients"], demo_settings["n_second_timepoint"])
        found = [discovery.brats_case_files(data["brats_root"], c, data["modalities"]) for c in case_ids]
        healthy: dict[str, dict[str, Path]] = {}
        for channel, sequence in sequences.items():
            for name in demo.planned_healthy(demo_settings["n_healthy"], sequence):
                subject = discovery.healthy_subject_id(name, sequence)
                healthy.setdefault(subject, {})[channel] = Path(data["healthy_root"]) / name
        return found, healthy
    # Both roots are scanned before anything is raised, so that one message
    # lists what is wrong in either (a shared folder's broken entries: one round of fixes).
    errors = []
    try:
        found = discovery.discover_brats(data["brats_root"], data["modalities"], data["task"])
    except discovery.DataError as error:
        errors.append(error)
    try:
        healthy = discovery.discover_healthy(data["healthy_root"], data["healthy_pattern"], sequences)
    except discovery.DataError as error:
        errors.append(error)
    if errors:
        raise discovery.DataError("\n".join(map(str, errors)))
    return found, healthy


@dataclass(frozen=True)
class Study:
    """The study one config describes (see the module's docstring)."""

    seed: int
    modalities: list[str]
    settings: StageSettings
    experiments: dict[str, dict]
    tables: dict[str, dict]
    baseline: str
    seeds: list[int]
    found: list[discovery.BratsCase]
    #: Subject -> {BraTS channel: raw file} (t1n: its T1), channels in ``modalities`` order.
    healthy_scans: dict[str, dict[str, Path]]
    train_cases: list[str]
    val_cases: list[str]
    reference_case: str
    cases: dict[str, discovery.BratsCase] = field(repr=False)
    #: ``fabricate.cohorts``, in name order (:mod:`tumorfab.fabricate.settings`).
    cohorts: dict[str, Cohort] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping) -> "Study":
        """From the validated config (schema defaults set); :class:`ConfigError` or
        :class:`~tumorfab.prepare.cases.DataError` say what is wrong."""
        check_data(config)
        try:
            settings = StageSettings.from_config(config)
            cohorts = cohorts_from_config(config)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        experiments, tables, baseline = experiments_and_tables(config)
        found, healthy = discover(config)
        train, val = discovery.split_by_patient(
            [c.case_id for c in found], config["split"]["n_real_train"], config["split"]["n_val"], config["seed"]
        )
        reference = config["registration"]["reference_case"] or train[0]
        if reference not in train:
            raise ConfigError(
                f"registration.reference_case {reference!r} is not a training case; "
                f"choose one of {train[:5]}..."
            )
        used = set(train) | set(val)
        reference_images = next(c for c in found if c.case_id == reference).images
        # Where the data are there already (not the demo's before its first run),
        # a cohort's request that cannot be met stops the DAG build.
        if cohorts and all(Path(p).exists() for p in reference_images.values()):
            try:
                check_against_reference(cohorts.values(), *reference_brain(reference_images))
            except ValueError as error:
                raise ConfigError(str(error)) from None
        return cls(
            seed=int(config["seed"]),
            modalities=list(config["data"]["modalities"]),
            settings=settings,
            experiments=experiments,
            tables=tables,
            baseline=baseline,
            seeds=[int(s) for s in config["segmentation"]["seeds"]],
            found=found,
            healthy_scans=healthy,
            train_cases=train,
            val_cases=val,
            reference_case=reference,
            cases={c.case_id: c for c in found if c.case_id in used},
            cohorts=cohorts,
        )

    # --- cases ---------------------------------------------------------------------------

    @property
    def healthy_subjects(self) -> list[str]:
        return sorted(self.healthy_scans)

    def healthy_channels(self, subject: str) -> tuple[str, ...]:
        """The BraTS channels ``subject`` has a scan of (t1n always), in ``modalities`` order."""
        return tuple(self.healthy_scans[subject])

    def healthy_sequence_files(self, subject: str) -> dict[str, Path]:
        """The raw scans of ``subject``: BraTS channel -> file (t1n: its T1)."""
        return dict(self.healthy_scans[subject])

    def healthy_extra_channels(self, subject: str) -> tuple[str, ...]:
        """The channels of ``subject`` besides its T1: each is co-registered to the T1."""
        return tuple(c for c in self.healthy_scans[subject] if c != layout.HEALTHY_CHANNEL)

    @property
    def has_healthy_sequences(self) -> bool:
        """Whether some healthy subject has a sequence besides its T1 (then the T1's
        registration is kept for them: :func:`tumorfab.study.layout.registration_transform_dir`)."""
        return any(self.healthy_extra_channels(s) for s in self.healthy_scans)

    @property
    def split(self) -> dict[str, str]:
        """Case id -> ``train`` or ``val``."""
        return {**{c: "train" for c in self.train_cases}, **{c: "val" for c in self.val_cases}}

    @property
    def reference_images(self) -> dict[str, str]:
        """The raw reference case's images (channel -> file): its grid is every case's."""
        return {m: str(p) for m, p in self.cases[self.reference_case].images.items()}

    @property
    def train_raw_images(self) -> list[dict[str, str]]:
        """The raw images (channel -> file) of each real training case."""
        return [{m: str(p) for m, p in self.cases[case].images.items()} for case in self.train_cases]

    @property
    def reference_files(self) -> dict[str, str]:
        """The raw reference case healthy T1 scans are registered to: its t1n and its labels."""
        case = self.cases[self.reference_case]
        return {"image": str(case.images[layout.HEALTHY_CHANNEL]), "seg": str(case.seg)}

    def raw_case_files(self, case_ids) -> list[str]:
        """The raw images and labels of ``case_ids``."""
        found = {c.case_id: c for c in self.found}
        return [str(p) for c in case_ids for p in [*found[c].images.values(), found[c].seg]]

    def raw_healthy_files(self) -> list[str]:
        """Every healthy subject's raw scans."""
        return [str(p) for subject in self.healthy_subjects for p in self.healthy_scans[subject].values()]

    def raw_files(self) -> list[str]:
        """Every raw file the study reads: its cases' and the healthy scans."""
        return self.raw_case_files(self.cases) + self.raw_healthy_files()

    def demo_cohort_files(self) -> list[str]:
        """Every file the demo cohort writes (also the cases the split leaves out)."""
        return self.raw_case_files([c.case_id for c in self.found]) + self.raw_healthy_files()

    def real_files(self, case_ids) -> list[str]:
        """The normalized case folders' files of ``case_ids``."""
        return [f for case in case_ids for f in layout.real_case_files(case, self.modalities)]

    def healthy_files_preprocessed(self) -> list[str]:
        """Every preprocessed healthy case folder's files (each subject's channels)."""
        return [
            f
            for subject in self.healthy_subjects
            for f in layout.healthy_case_files(subject, self.healthy_channels(subject))
        ]

    # --- experiments ---------------------------------------------------------------------

    @property
    def synthetic_sources(self) -> list[str]:
        """The sources at least one experiment uses."""
        return sorted({e["source"] for e in self.experiments.values() if e["source"] != NO_SOURCE})

    def generation_size(self, source: str) -> int:
        """How many cases ``source`` generates (the largest size any experiment
        of it, or of a source derived from it, needs)."""
        return generation_size(self.experiments, source)

    def source_of(self, experiment: str) -> str:
        return self.experiments[experiment]["source"]

    def real_subset(self, experiment: str) -> list[str]:
        """The real training cases of an experiment (a seeded share for real_fraction < 1)."""
        fraction = float(self.experiments[experiment]["real_fraction"])
        return study_experiments.real_subset(self.train_cases, fraction, self.seed)

    def pretrained_from(self, experiment: str) -> str | None:
        """The experiment whose model (same seed) ``experiment`` is fine-tuned from."""
        return self.experiments[experiment]["init_from"]

    def in_fine_tuning_chain(self, experiment: str) -> bool:
        """Fine-tuned, or the starting point of a fine-tune."""
        return self.pretrained_from(experiment) is not None or any(
            e.get("init_from") == experiment for e in self.experiments.values()
        )

    def enrichment_experiments(self) -> dict[str, dict]:
        """Paper 002's experiments (all real cases, from scratch): the Dice-vs-size figure's."""
        return {n: e for n, e in self.experiments.items() if study_experiments.is_enrichment(e)}

    def table_labels(self, table: str) -> dict[str, str]:
        """The labels of one table's experiments (only those: another label changes nothing here)."""
        return {n: self.experiments[n].get("label", n) for n in self.tables[table]["experiments"]}

    @property
    def runs(self) -> list[tuple[str, int]]:
        """Every (experiment, seed) training, in the config's order."""
        return [(e, s) for e in self.experiments for s in self.seeds]

    # --- the feature extractor F and what each source needs ------------------------------

    @property
    def feature_extractor_dir(self) -> str:
        """F: the encoder of the baseline model trained with the first seed (F must
        exist before the sources that use it generate, so one seed is chosen)."""
        return layout.model_dir(self.baseline, self.seeds[0])

    def feature_extractor_input(self, source: str) -> dict[str, str]:
        """``{"feature_extractor": F}`` when the registry says ``source`` learns with F."""
        return {"feature_extractor": self.feature_extractor_dir} if SOURCES[source].needs_feature_extractor else {}

    def parent_of(self, source: str) -> str | None:
        """The source ``source``'s cases are made from (the registry's ``derived_from``)."""
        return SOURCES[source].derived_from

    # --- report --------------------------------------------------------------------------

    def evaluation_csvs(self) -> list[str]:
        """Every per-case evaluation CSV, in the order of :attr:`runs`."""
        return [layout.evaluation_csv(e, s) for e, s in self.runs]

    def report_outputs(self) -> list[str]:
        """Every file of the report."""
        outputs = [layout.report_file("per_case.csv"), layout.report_file("per_run.csv")]
        outputs += [layout.report_file(f"{table}.{ext}") for table in self.tables for ext in ("csv", "md")]
        outputs.append(layout.report_figure("dice_vs_n_synthetic"))
        outputs += [layout.report_figure(f"mosaic_{source}") for source in self.synthetic_sources]
        if self.refined_source:
            outputs.append(layout.report_figure("refinement"))
        if self.synthetic_sources:
            outputs += [layout.report_file("realism.csv"), layout.report_file("realism.md"), layout.report_figure("realism")]
            outputs += [layout.report_file("intensities.csv"), layout.report_file("intensities.md")]
        if len(self.modalities) > 1:
            outputs.append(layout.report_figure("sequences"))
        if self.scores_translation:
            outputs += [layout.report_file("translation.csv"), layout.report_file("translation.md")]
        return outputs

    @property
    def scores_translation(self) -> bool:
        """Whether TF-GAN's G is a modality translator to be scored on the held-out
        cases: several sequences and the source ``tf`` in use (docs/interpretations.md,
        "Translation accuracy")."""
        return len(self.modalities) > 1 and "tf" in self.synthetic_sources

    @property
    def refined_source(self) -> str | None:
        """The source in use that refines another source's cases (the refinement
        figure compares the two), if any."""
        return next((s for s in self.synthetic_sources if SOURCES[s].refines), None)
