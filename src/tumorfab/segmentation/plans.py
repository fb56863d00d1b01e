"""One nnU-Net plan for every experiment.

Paper 002 §3 trains nnU-Net (3d_fullres) on each training set; we make the
plan once and share it, so that the experiments differ only in their data.
We run nnU-Net's own fingerprint extraction and ``ExperimentPlanner`` on the
*real training cases* (the study's one raw dataset, named after the baseline
experiment) and give every experiment a copy of that plan with its own dataset
name (:func:`plans_for_dataset`, what ``nnUNetv2_move_plans_between_datasets``
does).

Choices made here (the paper is silent):

- Only ``3d_fullres`` is kept. Its ``use_mask_for_norm`` is set to true:
  images have a background of exactly 0 outside the brain and are z-scored
  inside it, as nnU-Net plans for BraTS; nnU-Net would otherwise decide from
  how much cropping shrinks the volumes, which depends on how tightly a
  dataset was cropped (the demo's volumes are), not on the data.
- Overrides for small machines (the demo), the
  :class:`~tumorfab.segmentation.settings.PlanSettings`: ``patch_size``,
  ``base_features`` / ``max_features`` (the network's width per stage,
  ``min(max, base * 2**i)`` as nnU-Net computes it), ``batch_size`` and
  ``n_conv_per_stage`` (convolutions per encoder and decoder stage, nnU-Net 2)
  add a configuration ``3d_fullres_tumorfab`` that ``inherits_from``
  3d_fullres; the network topology for a new patch size comes from nnU-Net's
  ``get_pool_and_conv_props``. It reuses 3d_fullres's preprocessed data.
- With a shared plan and z-score normalization per image, a case's
  preprocessed files depend only on the case and the plan, so each case is
  preprocessed once and linked into every experiment's preprocessed folder
  (``tumorfab.segmentation.preprocessed``).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

from tumorfab.segmentation.dataset import dataset_name
from tumorfab.segmentation.environment import nnunet_environment
from tumorfab.segmentation.settings import BASE_CONFIGURATION, CUSTOM_CONFIGURATION, PlanSettings

PLANS_NAME = "tumorfabPlans"
#: nnU-Net's smallest feature-map edge in the bottleneck (ExperimentPlanner default).
MIN_FEATURE_MAP_EDGE = 4


def data_identifier(plans: Mapping, configuration: str) -> str:
    """The folder name of ``configuration``'s preprocessed data: its own
    ``data_identifier``, else that of the configuration it ``inherits_from``
    (as nnU-Net's ``PlansManager`` resolves it; a test compares the two). Read
    from the plans' JSON because importing nnU-Net's plans handler costs ~4 s
    of CPU, paid by every experiment's dataset job."""
    configurations = plans["configurations"]
    config = configurations[configuration]
    while "data_identifier" not in config and "inherits_from" in config:
        config = configurations[config["inherits_from"]]
    return config["data_identifier"]


def _custom_configuration(base: dict, plan: PlanSettings) -> dict:
    """A configuration inheriting from 3d_fullres with the plan's overrides."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    arch = copy.deepcopy(base["architecture"])
    kwargs = arch["arch_kwargs"]
    custom: dict = {"inherits_from": BASE_CONFIGURATION}
    patch_size = plan.patch_size
    if patch_size is not None:
        if len(patch_size) != len(base["patch_size"]):
            raise ValueError(
                f"segmentation.plan.patch_size {list(patch_size)} must have {len(base['patch_size'])} entries"
            )
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
    if plan.base_features is not None or plan.max_features is not None or len(planned) != n_stages:
        first = plan.base_features if plan.base_features is not None else 32
        cap = plan.max_features if plan.max_features is not None else 320
        kwargs["features_per_stage"] = [min(cap, first * 2**i) for i in range(n_stages)]
    if plan.n_conv_per_stage is not None:
        kwargs["n_conv_per_stage"] = [int(plan.n_conv_per_stage)] * n_stages
        kwargs["n_conv_per_stage_decoder"] = [int(plan.n_conv_per_stage)] * (n_stages - 1)
    custom["architecture"] = arch
    if plan.batch_size is not None:
        custom["batch_size"] = int(plan.batch_size)
    return custom


def plan_experiment(
    raw_dataset_dir: str | os.PathLike,
    out_plans: str | os.PathLike,
    out_fingerprint: str | os.PathLike,
    plan: PlanSettings,
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
    if plan.configuration == CUSTOM_CONFIGURATION:
        plans["configurations"][CUSTOM_CONFIGURATION] = _custom_configuration(fullres, plan)
    _write_json(plans, out_plans)
    _write_text(fingerprint, out_fingerprint)
    return plans


def plans_for_dataset(plans: dict, experiment: str) -> dict:
    """The shared plan with the dataset name of ``experiment`` (only the name differs)."""
    plans = copy.deepcopy(plans)
    plans["dataset_name"] = dataset_name(experiment)
    plans["plans_name"] = PLANS_NAME
    return plans


def _write_json(data: dict, path: str | os.PathLike) -> None:
    _write_text(json.dumps(data, indent=2, sort_keys=False), path)


def _write_text(text: str, path: str | os.PathLike) -> None:
    from tumorfab.io import save_text

    save_text(text, path)
