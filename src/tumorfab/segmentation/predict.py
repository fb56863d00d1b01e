"""Predict the held-out cases with a trained nnU-Net model (nnU-Net's predictor).

nnU-Net's ``nnUNetPredictor`` does the work: its preprocessing (crop to the
non-zero region, z-score with the plan's settings), Gaussian-weighted sliding
window with the planned patch size and, by default, test-time mirroring,
then export of region-based predictions as BraTS labels (regions_class_order
[2, 1, 3]: ED, then NCR inside TC, then ET). Cases are run one after the
other in this process (``predict_from_files_sequential``: no worker pools).

nnU-Net's post-processing (keeping the largest component where it helped) is
chosen by ``nnUNetv2_find_best_configuration`` from a 5-fold
cross-validation; training on fold ``all`` has none, so no post-processing is
applied, the same for every experiment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from tumorfab.device import resolve_device
from tumorfab.io import atomic_directory
from tumorfab.segmentation.dataset import FILE_ENDING
from tumorfab.segmentation.environment import nnunet_environment
from tumorfab.segmentation.model import load_trained_model
from tumorfab.segmentation.settings import PredictSettings


def predict(
    model_dir: str | os.PathLike,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    modalities: Sequence[str],
    case_ids: Sequence[str] | None,
    settings: PredictSettings,
    threads: int,
) -> list[Path]:
    """Segment ``{case}_{channel:04d}.nii.gz`` images of ``images_dir`` into ``out_dir/{case}.nii.gz``.

    ``model_dir`` is an exported model folder (see ``train.export_model``).
    ``case_ids`` None: every case in ``images_dir``. ``out_dir`` is
    written under a temporary name and renamed when all cases are done.
    Returns the prediction files.
    """
    import torch

    images_dir = Path(images_dir)
    if case_ids is None:
        suffix = f"_0000{FILE_ENDING}"
        case_ids = sorted(p.name[: -len(suffix)] for p in images_dir.glob(f"*{suffix}"))
    if not case_ids:
        raise ValueError(f"{images_dir}: no images to predict")
    torch_device = resolve_device(settings.device, setting="segmentation.train.device")
    if torch_device.type == "cpu":
        torch.set_num_threads(max(1, threads))
    inputs = [
        [str(images_dir / f"{case}_{channel:04d}{FILE_ENDING}") for channel in range(len(modalities))]
        for case in case_ids
    ]
    with nnunet_environment(nnUNet_def_n_proc=max(1, threads)):
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        predictor = nnUNetPredictor(
            tile_step_size=settings.tile_step_size,
            use_gaussian=True,
            use_mirroring=settings.use_mirroring,
            perform_everything_on_device=torch_device.type == "cuda",
            device=torch_device,
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        _initialize(predictor, Path(model_dir).resolve())
        if torch_device.type == "cpu":
            # as in training (nnUNetTrainerTumorfab.initialize): faster 3-D convolutions on the CPU
            predictor.network.to(memory_format=torch.channels_last_3d)
            _tiles_in_pairs(predictor.network)
        with atomic_directory(out_dir) as tmp:
            predictor.predict_from_files_sequential(
                inputs, [str(tmp / case) for case in case_ids], save_probabilities=False, overwrite=True
            )
    return [Path(out_dir) / f"{case}{FILE_ENDING}" for case in case_ids]


def _tiles_in_pairs(network) -> None:
    """Run each one-tile batch of the sliding window as a batch of two (the tile twice), keep one.

    nnU-Net predicts one tile at a time. On the CPU, PyTorch hands a batch of
    one small 3-D tile to its slow reference convolution instead of oneDNN
    (ATen's ``use_mkldnn`` heuristic: batch 1 and ``N*C*D*H <= 20480``); a
    batch of two goes to oneDNN, ~3x faster for the demo's 32^3 tiles even
    though it computes the tile twice. Samples do not mix (instance norm), so
    the kept half is the tile's own prediction. Hooks, not a wrapper, so the
    network's state dict (which nnU-Net reloads per fold) keeps its keys.
    """
    doubled = [False]

    def before(module, args):
        doubled[0] = args[0].shape[0] == 1
        return (args[0].repeat(2, *([1] * (args[0].ndim - 1))), *args[1:]) if doubled[0] else None

    def after(module, args, output):
        return output[:1] if doubled[0] else None

    network.register_forward_pre_hook(before)
    network.register_forward_hook(after)


def _initialize(predictor, model_dir: Path) -> None:
    """Load an exported model (fold ``all``) into ``predictor``, as nnU-Net's
    ``initialize_from_trained_model_folder`` does, without its trainer search
    (:func:`tumorfab.segmentation.model.load_trained_model`)."""
    model = load_trained_model(model_dir)
    predictor.manual_initialization(
        model.network,
        model.plans_manager,
        model.configuration,
        [model.checkpoint["network_weights"]],
        model.dataset_json,
        model.checkpoint["trainer_name"],
        model.checkpoint.get("inference_allowed_mirroring_axes"),
    )
