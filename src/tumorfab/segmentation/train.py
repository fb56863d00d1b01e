"""Train nnU-Net on one experiment with one seed, resuming a killed training.

Paper 002 §3 trains nnU-Net 3d_fullres for 100 epochs per experiment and
seed. Choices (the paper is silent):

- Fold ``all``: every training case is used for training. The evaluation is
  the held-out set (never seen by any generator or trainer); nnU-Net's 5-fold
  split would differ between experiments (their case lists differ) and would
  leave a fifth of the real cases out of training. nnU-Net's final validation
  (which on fold ``all`` would only re-predict training cases) is skipped.
- The trainer (:mod:`~tumorfab.segmentation.trainers.nnUNetTrainerTumorfab`)
  is built here with the :class:`~tumorfab.segmentation.settings.TrainSettings`
  and the seed; nnU-Net's folders and worker counts stay environment
  variables, which nnU-Net reads (:mod:`~tumorfab.segmentation.environment`).
- On the CPU, data augmentation runs in the main process
  (``nnUNet_n_proc_DA=0``) so that two runs are identical; on a GPU it uses
  as many workers as the job has threads unless ``data_augmentation_workers``
  is given (nnU-Net's own default ignores the job's allocation).
- Resume: nnU-Net's state lives in a work folder outside the rule's declared
  output (Snakemake deletes declared outputs of a failed job). A rerun
  continues from ``checkpoint_latest.pth`` (or finishes from
  ``checkpoint_final.pth``) when the work folder was made with the same
  settings and the same preprocessed input files (size and modification
  time); otherwise it starts over. The finished model
  is exported to the model folder (nnU-Net's trained-model layout:
  plans.json, dataset.json, fold_all/checkpoint_final.pth).
- Fine-tuning (``pretrained_model``, paper 003's synthetic-only study): a
  fresh training whose network starts from another model's
  ``checkpoint_final.pth``, loaded by nnU-Net's own
  ``load_pretrained_weights`` (what ``nnUNetv2_train -pretrained_weights``
  does): every weight but the segmentation heads is transferred, the optimizer
  and the learning-rate schedule start anew. The checkpoint's identity (size,
  modification time) is part of the training key, so a new pretrained model
  restarts the fine-tune; a resumed fine-tune continues from its own
  checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from tumorfab.device import deterministic_requested, resolve_device
from tumorfab.io import atomic_directory
from tumorfab.segmentation.dataset import dataset_name
from tumorfab.segmentation.environment import TRAINER_NAME, nnunet_environment
from tumorfab.segmentation.plans import PLANS_NAME
from tumorfab.segmentation.settings import TrainSettings

FOLD = "all"
KEY_FILE = "tumorfab_training.json"


def trainer_output_folder(results_root: str | os.PathLike, experiment: str, configuration: str) -> Path:
    """nnU-Net's training folder (holding ``fold_all``) under ``nnUNet_results``."""
    return Path(results_root) / dataset_name(experiment) / f"{TRAINER_NAME}__{PLANS_NAME}__{configuration}"


def pretrained_checkpoint(model_dir: str | os.PathLike) -> Path:
    """The final checkpoint of an exported model folder (:func:`export_model`)."""
    path = Path(model_dir) / f"fold_{FOLD}" / "checkpoint_final.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no finished model to fine-tune from")
    return path


def train(
    preprocessed_root: str | os.PathLike,
    experiment: str,
    work_root: str | os.PathLike,
    model_dir: str | os.PathLike,
    seed: int,
    configuration: str,
    settings: TrainSettings,
    threads: int,
    pretrained_model: str | os.PathLike | None = None,
) -> Path:
    """Train (or resume) nnU-Net on ``experiment`` and export the model to ``model_dir``.

    ``preprocessed_root`` plays ``nnUNet_preprocessed`` (holds
    ``Dataset001_{experiment}``); ``work_root`` plays ``nnUNet_results`` for
    this seed (checkpoints, logs); ``pretrained_model``: a model folder to
    fine-tune from (None: from scratch). Call from a ``__main__``-guarded
    script. Returns ``model_dir``.
    """
    device, workers = _set_up_compute(settings, threads)
    preprocessed = Path(preprocessed_root) / dataset_name(experiment)
    pretrained = None if pretrained_model is None else pretrained_checkpoint(pretrained_model)
    key = _training_key(experiment, seed, configuration, settings, device.type, workers, preprocessed, pretrained)
    output_base = trainer_output_folder(work_root, experiment, configuration)
    _reset_work_folder(output_base, key)
    fold_dir = output_base / f"fold_{FOLD}"
    final = fold_dir / "checkpoint_final.pth"
    with nnunet_environment(
        nnUNet_raw=None,
        nnUNet_preprocessed=Path(preprocessed_root).resolve(),
        nnUNet_results=Path(work_root).resolve(),
        nnUNet_n_proc_DA=workers,
        nnUNet_def_n_proc=max(1, threads),
    ):
        if final.exists():
            print(f"{final}: training already finished with these settings")
        else:
            _run_training(preprocessed, configuration, device, settings, seed, fold_dir, pretrained)
    return export_model(output_base, model_dir)


def _set_up_compute(settings: TrainSettings, threads: int):
    """The torch device and the number of data-augmentation workers; sets torch's threads.

    As ``nnUNetv2_train`` on a GPU: one torch thread (augmentation runs in
    worker processes) and cuDNN autotuning. On the CPU: the job's threads,
    augmentation in the main process unless told otherwise.
    """
    import torch

    device = resolve_device(settings.device, setting="segmentation.train.device")
    workers = settings.data_augmentation_workers
    if device.type == "cpu":
        torch.set_num_threads(max(1, threads))
        return device, 0 if workers is None else workers
    torch.set_num_threads(1)
    # Autotuning picks the fastest algorithm per run: off under TUMORFAB_DETERMINISTIC.
    torch.backends.cudnn.benchmark = not deterministic_requested()
    return device, max(1, threads) if workers is None else workers


def _file_identity(path: Path, name: str) -> bytes:
    stat = path.stat()  # follows links: the preprocessed case itself
    return f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()


def _training_key(
    experiment: str,
    seed: int,
    configuration: str,
    settings: TrainSettings,
    device_type: str,
    workers: int,
    preprocessed_dataset: Path,
    pretrained: Path | None,
) -> dict:
    """What a work folder was made with (:data:`KEY_FILE`): the settings that
    change the training, and a digest of (name, size, mtime) of every input
    file: the preprocessed dataset and the pretrained checkpoint, if any."""
    key = {
        "experiment": experiment,
        "seed": seed,
        "configuration": configuration,
        "fold": FOLD,
        "epochs": settings.epochs,
        "iterations_per_epoch": settings.iterations_per_epoch,
        "val_iterations_per_epoch": settings.val_iterations_per_epoch,
        "device": device_type,
        "data_augmentation_workers": workers,
        # absent when unset: the keys of runs made before the setting existed stay valid
        **({} if settings.initial_lr is None else {"initial_lr": settings.initial_lr}),
    }
    digest = hashlib.sha256()
    for path in sorted(p for p in preprocessed_dataset.rglob("*") if p.is_file()):
        digest.update(_file_identity(path, str(path.relative_to(preprocessed_dataset))))
    if pretrained is not None:
        digest.update(_file_identity(pretrained, "pretrained"))
    return {**key, "inputs_sha256": digest.hexdigest()}


def _reset_work_folder(output_base: Path, key: dict) -> None:
    """Keep ``output_base`` only if it was made with ``key``, else start it over; record ``key``."""
    key_file = output_base / KEY_FILE
    if output_base.exists():
        previous = json.loads(key_file.read_text()) if key_file.exists() else None
        if previous != key:
            print(f"{output_base}: made with other settings or inputs; starting over")
            shutil.rmtree(output_base)
    output_base.mkdir(parents=True, exist_ok=True)
    key_file.write_text(json.dumps(key, indent=2))


def _build_trainer(preprocessed: Path, configuration: str, device, settings: TrainSettings, seed: int, resume: bool):
    """The trainer of the preprocessed dataset ``preprocessed`` (under nnU-Net's environment)."""
    # Imported directly: nnU-Net's lookup by name (recursive_find_trainer_class_by_name)
    # first imports every trainer module nnU-Net ships (~1-3 s of CPU per training).
    from tumorfab.segmentation.trainers.nnUNetTrainerTumorfab import nnUNetTrainerTumorfab

    plans = json.loads((preprocessed / f"{PLANS_NAME}.json").read_text())
    plans["continue_training"] = resume
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    return nnUNetTrainerTumorfab(plans, configuration, FOLD, dataset_json, device, settings=settings, seed=seed)


def _run_training(
    preprocessed: Path, configuration: str, device, settings: TrainSettings, seed: int, fold_dir: Path,
    pretrained: Path | None,
) -> None:
    """Train to the last epoch: from ``fold_dir``'s latest checkpoint when there is
    one, else from the start, the network from ``pretrained``'s weights when given
    (nnU-Net's ``load_pretrained_weights``: all but the segmentation heads)."""
    latest = fold_dir / "checkpoint_latest.pth"
    resume = latest.exists()
    trainer = _build_trainer(preprocessed, configuration, device, settings, seed, resume)
    if resume:
        print(f"resuming from {latest}")
        trainer.load_checkpoint(str(latest))
    elif pretrained is not None:
        from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

        trainer.initialize()
        load_pretrained_weights(trainer.network, str(pretrained))
    trainer.run_training()


def export_model(output_base: str | os.PathLike, model_dir: str | os.PathLike) -> Path:
    """Copy a finished training into a clean nnU-Net model folder (atomically).

    The checkpoint is hard-linked where the file system allows, else copied.
    """
    output_base, model_dir = Path(output_base), Path(model_dir)
    fold_dir = output_base / f"fold_{FOLD}"
    final = fold_dir / "checkpoint_final.pth"
    if not final.exists():
        raise RuntimeError(f"{final}: training did not finish")
    with atomic_directory(model_dir) as tmp:
        for name in ("plans.json", "dataset.json", "dataset_fingerprint.json", KEY_FILE):
            if (output_base / name).exists():
                shutil.copyfile(output_base / name, tmp / name)
        (tmp / f"fold_{FOLD}").mkdir()
        try:
            os.link(final, tmp / f"fold_{FOLD}" / final.name)
        except OSError:
            shutil.copyfile(final, tmp / f"fold_{FOLD}" / final.name)
        for path in sorted(fold_dir.glob("training_log_*.txt")) + sorted(fold_dir.glob("progress.png")):
            shutil.copyfile(path, tmp / f"fold_{FOLD}" / path.name)
    return model_dir
