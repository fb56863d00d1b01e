"""One nnU-Net plan for every experiment, and preprocessing each case once.

Paper 002 §3 trains nnU-Net (3d_fullres) on each training set; SPEC §2 item 8
asks that the plan be made once and shared, so that the experiments differ
only in their data. We run nnU-Net's own fingerprint extraction and
``ExperimentPlanner`` on the *real training cases* (the baseline experiment's
raw dataset) and give every experiment a copy of that plan with its own
dataset name (what ``nnUNetv2_move_plans_between_datasets`` does).

Choices made here (the paper is silent):

- Only ``3d_fullres`` is kept. Its ``use_mask_for_norm`` is set to true:
  images have a background of exactly 0 outside the brain and are z-scored
  inside it, as nnU-Net plans for BraTS; nnU-Net would otherwise decide from
  how much cropping shrinks the volumes, which depends on how tightly a
  dataset was cropped (the demo's volumes are), not on the data.
- Overrides for small machines (the demo): ``patch_size``, ``base_features`` /
  ``max_features`` (the network's width per stage, ``min(max, base * 2**i)``
  as nnU-Net computes it) and ``batch_size`` add a configuration
  ``3d_fullres_tumorfab`` that ``inherits_from`` 3d_fullres; the network
  topology for a new patch size comes from nnU-Net's
  ``get_pool_and_conv_props``. It reuses 3d_fullres's preprocessed data.
- With a shared plan and z-score normalization per image, a case's
  preprocessed files depend only on the case and the plan, so each case is
  preprocessed once (:func:`preprocess_cases`) and linked into every
  experiment's preprocessed folder (:func:`write_preprocessed_dataset`).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from tumorfab.io import atomic_directory
from tumorfab.segmentation.dataset import (
    NnunetCase,
    _link,
    dataset_json,
    dataset_name,
    manifest_case_ids,
)
from tumorfab.segmentation.environment import nnunet_environment

PLANS_NAME = "tumorfabPlans"
BASE_CONFIGURATION = "3d_fullres"
CUSTOM_CONFIGURATION = "3d_fullres_tumorfab"
#: nnU-Net's smallest feature-map edge in the bottleneck (ExperimentPlanner default).
MIN_FEATURE_MAP_EDGE = 4


def configuration_name(
    patch_size: Sequence[int] | None = None,
    base_features: int | None = None,
    max_features: int | None = None,
    batch_size: int | None = None,
) -> str:
    """The configuration trained: 3d_fullres, or 3d_fullres_tumorfab when any override is set."""
    overrides = (patch_size, base_features, max_features, batch_size)
    return BASE_CONFIGURATION if all(v is None for v in overrides) else CUSTOM_CONFIGURATION


def _custom_configuration(
    base: dict,
    patch_size: Sequence[int] | None,
    base_features: int | None,
    max_features: int | None,
    batch_size: int | None,
) -> dict:
    """A configuration inheriting from 3d_fullres with the given overrides."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    arch = copy.deepcopy(base["architecture"])
    kwargs = arch["arch_kwargs"]
    custom: dict = {"inherits_from": BASE_CONFIGURATION}
    if patch_size is not None:
        if len(patch_size) != len(base["patch_size"]):
            raise ValueError(f"patch_size {list(patch_size)} must have {len(base['patch_size'])} entries")
        _, strides, kernels, fitted, _ = get_pool_and_conv_props(
            base["spacing"], list(patch_size), MIN_FEATURE_MAP_EDGE, 999999
        )
        fitted = [int(i) for i in fitted]
        if fitted != [int(i) for i in patch_size]:
            print(f"patch_size {list(patch_size)} -> {fitted} (divisible by the network's downsampling)")
        n_stages = len(strides)
        kwargs.update(
            n_stages=n_stages,
            kernel_sizes=[[int(k) for k in ks] for ks in kernels],
            strides=[[int(s) for s in ss] for ss in strides],
            n_conv_per_stage=[2] * n_stages,
            n_conv_per_stage_decoder=[2] * (n_stages - 1),
        )
        custom["patch_size"] = fitted
    n_stages = kwargs["n_stages"]
    planned = list(kwargs["features_per_stage"])
    if base_features is not None or max_features is not None or len(planned) != n_stages:
        first = base_features if base_features is not None else 32
        cap = max_features if max_features is not None else 320
        kwargs["features_per_stage"] = [min(cap, first * 2**i) for i in range(n_stages)]
    custom["architecture"] = arch
    if batch_size is not None:
        custom["batch_size"] = int(batch_size)
    return custom


def plan_experiment(
    raw_dataset_dir: str | os.PathLike,
    out_plans: str | os.PathLike,
    out_fingerprint: str | os.PathLike,
    patch_size: Sequence[int] | None = None,
    base_features: int | None = None,
    max_features: int | None = None,
    batch_size: int | None = None,
    num_processes: int = 1,
) -> dict:
    """Plan nnU-Net on a raw dataset (the real training cases) and write the shared plan.

    Runs nnU-Net's ``DatasetFingerprintExtractor`` (a spawn pool of
    ``num_processes`` workers: call from a ``__main__``-guarded script) and
    ``ExperimentPlanner``; writes the plans JSON (``plans_name`` = tumorfabPlans)
    and the dataset fingerprint. Returns the plans dict.
    """
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
        DatasetFingerprintExtractor,
    )
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    raw_dataset_dir = Path(raw_dataset_dir).resolve()
    name = raw_dataset_dir.name
    with tempfile.TemporaryDirectory(prefix="nnunet_plan_") as work:
        # nnUNet_n_proc_DA=0 must not be set while planning (nnU-Net sets threads from it).
        with nnunet_environment(
            nnUNet_raw=raw_dataset_dir.parent,
            nnUNet_preprocessed=work,
            nnUNet_results=None,
            nnUNet_n_proc_DA=None,
            nnUNet_def_n_proc=num_processes,
        ):
            extractor = DatasetFingerprintExtractor(name, num_processes=num_processes, verbose=False)
            extractor.show_progress_bar = False
            extractor.run(overwrite_existing=True)
            planner = ExperimentPlanner(name, plans_name=PLANS_NAME)
            plans = planner.plan_experiment()
        plans = json.loads(Path(work, name, f"{PLANS_NAME}.json").read_text())
        fingerprint = Path(work, name, "dataset_fingerprint.json").read_text()

    if BASE_CONFIGURATION not in plans["configurations"]:
        raise RuntimeError("nnU-Net planned no 3d_fullres configuration (is the data 3D?)")
    fullres = plans["configurations"][BASE_CONFIGURATION]
    fullres.pop("next_stage", None)
    fullres["use_mask_for_norm"] = [
        scheme == "ZScoreNormalization" or used
        for scheme, used in zip(fullres["normalization_schemes"], fullres["use_mask_for_norm"])
    ]
    plans["configurations"] = {BASE_CONFIGURATION: fullres}
    if configuration_name(patch_size, base_features, max_features, batch_size) == CUSTOM_CONFIGURATION:
        plans["configurations"][CUSTOM_CONFIGURATION] = _custom_configuration(
            fullres, patch_size, base_features, max_features, batch_size
        )
    _write_json(plans, out_plans)
    _write_text(fingerprint, out_fingerprint)
    return plans


def plans_for_dataset(plans: dict, experiment: str) -> dict:
    """The shared plan with the dataset name of ``experiment`` (only the name differs)."""
    plans = copy.deepcopy(plans)
    plans["dataset_name"] = dataset_name(experiment)
    plans["plans_name"] = PLANS_NAME
    return plans


def preprocess_cases(
    plans_file: str | os.PathLike,
    modalities: Sequence[str],
    cases: Sequence[NnunetCase],
    out_dir: str | os.PathLike,
    configuration: str = BASE_CONFIGURATION,
) -> None:
    """nnU-Net-preprocess each case (with labels) once into ``out_dir``.

    Writes nnU-Net's ``{case}.b2nd``, ``{case}_seg.b2nd`` and ``{case}.pkl``
    (DefaultPreprocessor.run_case_save, run sequentially: no worker pool).
    The folder is built under a temporary name and renamed when complete.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads(Path(plans_file).read_text())
    manager = PlansManager(plans)
    config = manager.get_configuration(configuration)
    ds_json = dataset_json(modalities, len(cases))
    with atomic_directory(out_dir) as tmp:
        preprocessor = config.preprocessor_class(verbose=False)
        for case in cases:
            images = [str(case.image_dir / f"{m}.nii.gz") for m in modalities]
            preprocessor.run_case_save(
                str(tmp / case.case_id), images, str(case.seg), manager, config, ds_json
            )
            print(f"preprocessed {case.case_id}")


def write_preprocessed_dataset(
    root: str | os.PathLike,
    experiment: str,
    plans_file: str | os.PathLike,
    fingerprint_file: str | os.PathLike,
    modalities: Sequence[str],
    case_folders: dict[str, Path],
    configuration: str = BASE_CONFIGURATION,
) -> Path:
    """Assemble an experiment's nnU-Net preprocessed folder from links.

    ``root`` plays ``nnUNet_preprocessed``; inside it ``Dataset001_{experiment}``
    gets the shared plan (renamed), dataset.json, the baseline fingerprint and
    the data folder with links to each training case's preprocessed files
    (``case_folders``: case id -> folder written by :func:`preprocess_cases`).
    Returns the dataset folder.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = plans_for_dataset(json.loads(Path(plans_file).read_text()), experiment)
    identifier = PlansManager(plans).get_configuration(configuration).data_identifier
    folder = Path(root) / dataset_name(experiment)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{PLANS_NAME}.json").write_text(json.dumps(plans, indent=2, sort_keys=False))
    (folder / "dataset.json").write_text(json.dumps(dataset_json(modalities, len(case_folders)), indent=2))
    shutil.copyfile(fingerprint_file, folder / "dataset_fingerprint.json")
    for case_id, source in case_folders.items():
        for suffix in (".b2nd", "_seg.b2nd", ".pkl"):
            target = Path(source) / f"{case_id}{suffix}"
            if not target.exists():
                raise FileNotFoundError(f"{target}: preprocessed file missing for case {case_id}")
            _link(target, folder / identifier / f"{case_id}{suffix}")
    return folder


def _write_json(data: dict, path: str | os.PathLike) -> None:
    _write_text(json.dumps(data, indent=2, sort_keys=False), path)


def _write_text(text: str, path: str | os.PathLike) -> None:
    from tumorfab.io import save_text

    save_text(text, path)


def preprocess_real(
    plans_file: str | os.PathLike,
    modalities: Sequence[str],
    case_ids: Sequence[str],
    image_root: str | os.PathLike,
    case_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    configuration: str = BASE_CONFIGURATION,
) -> None:
    """Preprocess the real training cases once (images ``image_root/{case}``,
    labels ``case_root/{case}/seg.nii.gz``) into ``out_dir``."""
    cases = [NnunetCase(c, Path(image_root) / c, Path(case_root) / c / "seg.nii.gz") for c in case_ids]
    preprocess_cases(plans_file, modalities, cases, out_dir, configuration)


def preprocess_synthetic(
    plans_file: str | os.PathLike,
    modalities: Sequence[str],
    manifest: str | os.PathLike,
    image_root: str | os.PathLike,
    cases_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    configuration: str = BASE_CONFIGURATION,
) -> None:
    """Preprocess every case of a synthetic source once (all experiments link prefixes)."""
    cases = [
        NnunetCase(c, Path(image_root) / c, Path(cases_root) / c / "seg.nii.gz")
        for c in manifest_case_ids(manifest)
    ]
    preprocess_cases(plans_file, modalities, cases, out_dir, configuration)


def build_preprocessed_dataset(
    out_root: str | os.PathLike,
    experiment: str,
    plans_file: str | os.PathLike,
    fingerprint_file: str | os.PathLike,
    modalities: Sequence[str],
    train_cases: Sequence[str],
    real_preprocessed: str | os.PathLike,
    n_synthetic: int = 0,
    synthetic_manifest: str | os.PathLike | None = None,
    synthetic_preprocessed: str | os.PathLike | None = None,
    configuration: str = BASE_CONFIGURATION,
) -> Path:
    """An experiment's preprocessed folder (``out_root`` plays ``nnUNet_preprocessed``),
    linking the real training cases and the first ``n_synthetic`` synthetic ones;
    built whole, then renamed. Returns the dataset folder."""
    folders = {c: Path(real_preprocessed) for c in train_cases}
    if n_synthetic:
        if synthetic_manifest is None or synthetic_preprocessed is None:
            raise ValueError("n_synthetic > 0 needs the source's manifest and preprocessed folder")
        for case_id in manifest_case_ids(synthetic_manifest, n_synthetic):
            if case_id in folders:
                raise ValueError(f"synthetic case id {case_id} is also a real case id")
            folders[case_id] = Path(synthetic_preprocessed)
    with atomic_directory(out_root) as tmp:
        write_preprocessed_dataset(tmp, experiment, plans_file, fingerprint_file, modalities, folders, configuration)
    return Path(out_root) / dataset_name(experiment)
