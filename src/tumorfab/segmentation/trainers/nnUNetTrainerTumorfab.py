"""nnU-Net trainer whose length and seed come from the environment.

nnU-Net finds this class through ``nnUNet_extTrainer`` (``nnUNetv2_train ...
-tr nnUNetTrainerTumorfab`` works too). It is nnU-Net's default trainer
(default augmentation, loss, optimizer, poly learning rate) with:

- ``TUMORFAB_EPOCHS``, ``TUMORFAB_ITERATIONS``, ``TUMORFAB_VAL_ITERATIONS``:
  epochs (paper: 100), training and validation iterations per epoch (nnU-Net:
  250 and 50), set by :mod:`tumorfab.segmentation.train` from the config.
- ``TUMORFAB_INITIAL_LR``: the initial learning rate of nnU-Net's SGD (poly
  schedule; nnU-Net: 0.01), unset = nnU-Net's. A short training (the demo's
  ~160 iterations) converges sooner with a larger one.
- ``TUMORFAB_SEED``: seeds Python's ``random``, NumPy and torch. nnU-Net has
  no seed option; with ``nnUNet_n_proc_DA=0`` (augmentation in the main
  process) two CPU runs are then identical.
- ``TUMORFAB_CHECKPOINT_EVERY``: epochs between ``checkpoint_latest.pth``
  (nnU-Net: 50). Checkpoints are written under a temporary name and renamed,
  so a job killed while saving leaves the previous checkpoint intact, and they
  carry the random generators' states, so a resumed training continues
  exactly as an uninterrupted one would.
- Training cases in sorted order (nnU-Net lists the folder, whose order the
  file system decides), so sampling does not depend on the disk.
- On the CPU the network runs in the channels-last memory layout (faster
  3-D convolutions there; same weights and checkpoint format).
- No ``checkpoint_best.pth``: the final model is the one used (as nnU-Net's
  predictor does by default), and its "best" is chosen on a pseudo-Dice of
  training cases on fold ``all``. The progress plot is drawn every 25 epochs
  and at the end. Both save time on short demo epochs.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


#: Epochs between redraws of nnU-Net's progress.png (and always at the end):
#: a drawing costs ~1 s of CPU, several iterations of a small demo network.
PLOT_EVERY = 25


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class nnUNetTrainerTumorfab(nnUNetTrainer):
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.seed = _env_int("TUMORFAB_SEED", 0)
        self.num_epochs = _env_int("TUMORFAB_EPOCHS", self.num_epochs)
        self.num_iterations_per_epoch = _env_int("TUMORFAB_ITERATIONS", self.num_iterations_per_epoch)
        self.num_val_iterations_per_epoch = _env_int("TUMORFAB_VAL_ITERATIONS", self.num_val_iterations_per_epoch)
        self.save_every = max(1, _env_int("TUMORFAB_CHECKPOINT_EVERY", self.save_every))
        if os.environ.get("TUMORFAB_INITIAL_LR"):
            self.initial_lr = float(os.environ["TUMORFAB_INITIAL_LR"])
        self._rng_state_to_restore = None
        seed_everything(self.seed)
        self.print_to_log_file(
            f"tumorfab: seed {self.seed}, {self.num_epochs} epochs x {self.num_iterations_per_epoch} "
            f"iterations ({self.num_val_iterations_per_epoch} validation), checkpoint every {self.save_every}, "
            f"initial learning rate {self.initial_lr}"
        )

    def initialize(self):
        super().initialize()
        if self.device.type == "cpu":
            # oneDNN's 3-D convolutions (and their backward pass) run 1.2-2x
            # faster on channels-last tensors on the CPU; activations follow
            # the weights' layout. The parameters stay the same objects (the
            # optimizer built by initialize keeps them), the checkpoint the same
            # values. GPUs keep nnU-Net's layout.
            self.network.to(memory_format=torch.channels_last_3d)

    def do_split(self):
        tr_keys, val_keys = super().do_split()
        return sorted(tr_keys), sorted(val_keys)

    def on_train_start(self):
        super().on_train_start()
        # Building the data loaders drew random numbers; a resumed run continues
        # from the generators' states saved with the checkpoint instead.
        if self._rng_state_to_restore is not None:
            _set_rng_state(self._rng_state_to_restore)
            self._rng_state_to_restore = None
        self.print_to_log_file(f"tumorfab: training epochs {self.current_epoch} to {self.num_epochs - 1}")

    def on_epoch_end(self):
        last = self.current_epoch == self.num_epochs - 1
        plot = last or (self.current_epoch + 1) % PLOT_EVERY == 0
        original = self.logger.plot_progress_png
        if not plot:
            self.logger.plot_progress_png = lambda output_folder: None
        try:
            super().on_epoch_end()
        finally:
            self.logger.plot_progress_png = original

    def save_checkpoint(self, filename: str) -> None:
        if os.path.basename(filename) == "checkpoint_best.pth":
            return
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)
        directory, name = os.path.split(filename)
        tmp = os.path.join(directory, f".{name}.tmp")
        super().save_checkpoint(tmp)
        checkpoint = torch.load(tmp, map_location="cpu", weights_only=False)
        checkpoint["tumorfab_rng_state"] = _rng_state()
        checkpoint["tumorfab_seed"] = self.seed
        torch.save(checkpoint, tmp)
        os.replace(tmp, filename)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        # nnU-Net 2.8.1's load_checkpoint only works with a file name.
        super().load_checkpoint(filename_or_checkpoint)
        checkpoint = torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False)
        self._rng_state_to_restore = checkpoint.get("tumorfab_rng_state")
        self.print_to_log_file(f"tumorfab: resumed from a checkpoint at epoch {self.current_epoch}")
