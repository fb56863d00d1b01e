"""Train nnU-Net on one experiment with one seed, resuming a killed training.

Paper 002 §3 trains nnU-Net 3d_fullres for 100 epochs per experiment and
seed. Choices (SPEC §2 item 8):

- Fold ``all``: every training case is used for training. The evaluation is
  the held-out set (never seen by any generator or trainer); nnU-Net's 5-fold
  split would differ between experiments (their case lists differ) and would
  leave a fifth of the real cases out of training. nnU-Net's final validation
  (which on fold ``all`` would only re-predict training cases) is skipped.
- The trainer (:mod:`~tumorfab.segmentation.trainers.nnUNetTrainerTumorfab`)
  takes epochs, iterations and seed from environment variables set here.
- On the CPU, data augmentation runs in the main process
  (``nnUNet_n_proc_DA=0``) so that two runs are identical; on a GPU it uses
  as many workers as the job has threads unless ``data_augmentation_workers``
  is given (nnU-Net's own default ignores the job's allocation).
- Resume: nnU-Net's state lives in a work folder outside the rule's declared
  output (Snakemake deletes declared outputs of a failed job). A rerun
  continues from ``checkpoint_latest.pth`` (or finishes from
  ``checkpoint_final.pth``) when the work folder was made with the same
  settings and the same preprocessed input files (size and modification
  time); otherwise it starts over. The finished model is exported to the
  model folder (nnU-Net's trained-model layout: plans.json, dataset.json,
  fold_all/checkpoint_final.pth).
- Fine-tuning (``pretrained_model``, paper 003's synthetic-only study): a
  fresh training whose network starts from another model's
  ``checkpoint_final.pth``, loaded by nnU-Net's own
  ``load_pretrained_weights`` (what ``nnUNetv2_train -pretrained_weights``
  does): every weight but the segmentation heads is transferred, the optimizer
  and the learning-rate schedule start anew. The checkpoint's identity (size,
  modification time) is part of the settings, so a new pretrained model
  restarts the fine-tune; a resumed fine-tune continues from its own
  checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from tumorfab.segmentation.dataset import dataset_name
from tumorfab.segmentation.environment import TRAINER_NAME, nnunet_environment
from tumorfab.io import atomic_directory
from tumorfab.segmentation.plans import PLANS_NAME

FOLD = "all"
KEY_FILE = "tumorfab_training.json"


def resolve_device(device: str):
    """``auto``: the GPU when there is one, else the CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("segmentation.device is 'cuda' but no GPU is visible")
    return torch.device(device)


def trainer_output_folder(results_root: str | os.PathLike, experiment: str, configuration: str) -> Path:
    """nnU-Net's training folder (holding ``fold_all``) under ``nnUNet_results``."""
    return Path(results_root) / dataset_name(experiment) / f"{TRAINER_NAME}__{PLANS_NAME}__{configuration}"


def _file_identity(path: Path, name: str) -> bytes:
    stat = path.stat()  # follows links: the preprocessed case itself
    return f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()


def _training_key(settings: dict, preprocessed_dataset: Path, pretrained: Path | None) -> dict:
    """Settings plus (name, size, mtime) of every input file: the preprocessed
    dataset and the pretrained checkpoint, if any."""
    digest = hashlib.sha256()
    for path in sorted(p for p in preprocessed_dataset.rglob("*") if p.is_file()):
        digest.update(_file_identity(path, str(path.relative_to(preprocessed_dataset))))
    if pretrained is not None:
        digest.update(_file_identity(pretrained, "pretrained"))
    return {**settings, "inputs_sha256": digest.hexdigest()}


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
    epochs: int,
    iterations_per_epoch: int,
    val_iterations_per_epoch: int,
    checkpoint_every: int,
    device: str,
    data_augmentation_workers: int | None,
    threads: int,
    pretrained_model: str | os.PathLike | None = None,
    initial_lr: float | None = None,
) -> Path:
    """Train (or resume) nnU-Net on ``experiment`` and export the model to ``model_dir``.

    ``preprocessed_root`` plays ``nnUNet_preprocessed`` (holds
    ``Dataset001_{experiment}``); ``work_root`` plays ``nnUNet_results`` for
    this seed (checkpoints, logs); ``pretrained_model``: a model folder to
    fine-tune from (None: from scratch); ``initial_lr``: the SGD's initial
    learning rate (None: nnU-Net's 0.01). Call from a ``__main__``-guarded
    script. Returns ``model_dir``.
    """
    import torch

    torch_device = resolve_device(device)
    if torch_device.type == "cpu":
        torch.set_num_threads(max(1, threads))
        workers = 0 if data_augmentation_workers is None else data_augmentation_workers
    else:
        # as nnUNetv2_train: one torch thread (augmentation runs in worker processes), cuDNN autotuning
        torch.set_num_threads(1)
        torch.backends.cudnn.benchmark = True
        workers = max(1, threads) if data_augmentation_workers is None else data_augmentation_workers
    preprocessed = Path(preprocessed_root) / dataset_name(experiment)
    settings = {
        "experiment": experiment,
        "seed": seed,
        "configuration": configuration,
        "fold": FOLD,
        "epochs": epochs,
        "iterations_per_epoch": iterations_per_epoch,
        "val_iterations_per_epoch": val_iterations_per_epoch,
        "device": torch_device.type,
        "data_augmentation_workers": workers,
        **({} if initial_lr is None else {"initial_lr": initial_lr}),  # absent: keys of older runs stay valid
    }
    pretrained = None if pretrained_model is None else pretrained_checkpoint(pretrained_model)
    key = _training_key(settings, preprocessed, pretrained)
    output_base = trainer_output_folder(work_root, experiment, configuration)
    fold_dir = output_base / f"fold_{FOLD}"
    key_file = output_base / KEY_FILE
    if output_base.exists():
        previous = json.loads(key_file.read_text()) if key_file.exists() else None
        if previous != key:
            print(f"{output_base}: made with other settings or inputs; starting over")
            shutil.rmtree(output_base)
    output_base.mkdir(parents=True, exist_ok=True)
    key_file.write_text(json.dumps(key, indent=2))

    env = {
        "nnUNet_raw": None,
        "nnUNet_preprocessed": Path(preprocessed_root).resolve(),
        "nnUNet_results": Path(work_root).resolve(),
        "nnUNet_n_proc_DA": workers,
        "nnUNet_def_n_proc": max(1, threads),
        "TUMORFAB_SEED": seed,
        "TUMORFAB_EPOCHS": epochs,
        "TUMORFAB_ITERATIONS": iterations_per_epoch,
        "TUMORFAB_VAL_ITERATIONS": val_iterations_per_epoch,
        "TUMORFAB_CHECKPOINT_EVERY": checkpoint_every,
        "TUMORFAB_INITIAL_LR": initial_lr,
    }
    final = fold_dir / "checkpoint_final.pth"
    latest = fold_dir / "checkpoint_latest.pth"
    with nnunet_environment(**env):
        if final.exists():
            print(f"{final}: training already finished with these settings")
        else:
            # Imported directly: nnU-Net's lookup by name (recursive_find_trainer_class_by_name)
            # first imports every trainer module nnU-Net ships (~1-3 s of CPU per training).
            from tumorfab.segmentation.trainers.nnUNetTrainerTumorfab import nnUNetTrainerTumorfab as trainer_class

            plans = json.loads((preprocessed / f"{PLANS_NAME}.json").read_text())
            resume = latest.exists()
            plans["continue_training"] = resume
            ds_json = json.loads((preprocessed / "dataset.json").read_text())
            trainer = trainer_class(plans, configuration, FOLD, ds_json, torch_device)
            if resume:
                print(f"resuming from {latest}")
                trainer.load_checkpoint(str(latest))
            elif pretrained is not None:
                from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

                trainer.initialize()
                load_pretrained_weights(trainer.network, str(pretrained))
            trainer.run_training()
            del trainer
    return export_model(output_base, model_dir)


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
