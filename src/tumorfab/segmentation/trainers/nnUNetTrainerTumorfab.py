"""nnU-Net trainer built with tumorfab's training settings and a seed.

:mod:`tumorfab.segmentation.train` builds it with a
:class:`~tumorfab.segmentation.settings.TrainSettings` and the seed, and
``__init__`` sets nnU-Net's attributes from them, as nnU-Net's own trainer
variants set theirs: ``num_epochs`` (paper: 100),
``num_iterations_per_epoch`` and ``num_val_iterations_per_epoch`` (nnU-Net:
250 and 50), ``save_every`` (epochs between ``checkpoint_latest.pth``;
nnU-Net: 50) and ``initial_lr`` (nnU-Net's SGD with its poly schedule,
nnU-Net: 0.01; a short training such as the demo's converges sooner with a
larger one). Built without settings, as nnU-Net's CLI does (``nnUNetv2_train
... -tr nnUNetTrainerTumorfab``, found through ``nnUNet_extTrainer``), it
keeps nnU-Net's values and seed 0. Besides these it is nnU-Net's default
trainer (default augmentation, loss, optimizer, poly learning rate) with:

- The seed: Python's ``random``, NumPy and torch are seeded when the trainer
  is built, before anything draws. nnU-Net has no seed option; with
  ``nnUNet_n_proc_DA=0`` (augmentation in the main process) two CPU runs are
  then identical.
- Checkpoints written under a temporary name and renamed, so a job killed
  while saving leaves the previous checkpoint intact, and carrying the random
  generators' states (``tumorfab_rng_state``), so a resumed training
  continues exactly as an uninterrupted one would.
- Training cases in sorted order (nnU-Net lists the folder, whose order the
  file system decides), so sampling does not depend on the disk.
- On the CPU the network runs in the channels-last memory layout (faster
  3-D convolutions there; same weights and checkpoint format).
- No ``checkpoint_best.pth``: the final model is the one used (as nnU-Net's
  predictor does by default), and its "best" is chosen on a pseudo-Dice of
  training cases on fold ``all``. The progress plot is drawn every
  :data:`PLOT_EVERY` epochs and at the end.
"""

from __future__ import annotations

import inspect
import os
import random

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from tumorfab.rng import capture_rng_state, restore_rng_state
from tumorfab.segmentation.settings import TrainSettings

#: Epochs between redraws of nnU-Net's progress.png (and always at the end):
#: a drawing costs ~1 s of CPU, several iterations of a small demo network.
PLOT_EVERY = 25


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class nnUNetTrainerTumorfab(nnUNetTrainer):
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
        settings: TrainSettings | None = None,
        seed: int = 0,
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.seed = seed
        if settings is not None:
            self.num_epochs = settings.epochs
            self.num_iterations_per_epoch = settings.iterations_per_epoch
            self.num_val_iterations_per_epoch = settings.val_iterations_per_epoch
            self.save_every = settings.checkpoint_every
            if settings.initial_lr is not None:
                self.initial_lr = float(settings.initial_lr)
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
            restore_rng_state(self._rng_state_to_restore)
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
        checkpoint["tumorfab_rng_state"] = capture_rng_state()
        checkpoint["tumorfab_seed"] = self.seed
        torch.save(checkpoint, tmp)
        os.replace(tmp, filename)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        # nnU-Net 2.8.1's load_checkpoint only works with a file name.
        super().load_checkpoint(filename_or_checkpoint)
        checkpoint = torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False)
        self._rng_state_to_restore = checkpoint.get("tumorfab_rng_state")
        self.print_to_log_file(f"tumorfab: resumed from a checkpoint at epoch {self.current_epoch}")


# nnU-Net records a trainer's constructor arguments (``init_args``, saved in
# every checkpoint) by looking up, for each parameter of
# ``inspect.signature(self.__init__)``, the local variable of that name in
# nnUNetTrainer.__init__, which has no ``settings`` or ``seed``. The signature
# it sees is therefore nnU-Net's own: checkpoints record the same five
# arguments as nnUNetTrainer's.
nnUNetTrainerTumorfab.__init__.__signature__ = inspect.signature(nnUNetTrainer.__init__)
