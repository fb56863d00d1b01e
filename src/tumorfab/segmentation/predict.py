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

from tumorfab.segmentation.dataset import FILE_ENDING
from tumorfab.segmentation.environment import nnunet_environment
from tumorfab.io import atomic_directory
from tumorfab.segmentation.train import FOLD, resolve_device


def predict(
    model_dir: str | os.PathLike,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    modalities: Sequence[str],
    case_ids: Sequence[str] | None,
    device: str,
    tile_step_size: float,
    use_mirroring: bool,
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
    torch_device = resolve_device(device)
    if torch_device.type == "cpu":
        torch.set_num_threads(max(1, threads))
    inputs = [
        [str(images_dir / f"{case}_{channel:04d}{FILE_ENDING}") for channel in range(len(modalities))]
        for case in case_ids
    ]
    with nnunet_environment(nnUNet_def_n_proc=max(1, threads)):
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        predictor = nnUNetPredictor(
            tile_step_size=tile_step_size,
            use_gaussian=True,
            use_mirroring=use_mirroring,
            perform_everything_on_device=torch_device.type == "cuda",
            device=torch_device,
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        predictor.initialize_from_trained_model_folder(
            str(Path(model_dir).resolve()), use_folds=(FOLD,), checkpoint_name="checkpoint_final.pth"
        )
        with atomic_directory(out_dir) as tmp:
            predictor.predict_from_files_sequential(
                inputs, [str(tmp / case) for case in case_ids], save_probabilities=False, overwrite=True
            )
    return [Path(out_dir) / f"{case}{FILE_ENDING}" for case in case_ids]
