"""The environment variables nnU-Net v2 reads, set for one block of code.

nnU-Net finds its folders (``nnUNet_raw``, ``nnUNet_preprocessed``,
``nnUNet_results``), external trainers (``nnUNet_extTrainer``) and worker
counts (``nnUNet_def_n_proc``, ``nnUNet_n_proc_DA``) through environment
variables. The folder variables are read when used, so they can be set in the
running process; ``nnUNet_def_n_proc`` is read when nnU-Net is first imported,
which is why every function here passes worker counts explicitly as well.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

#: Folder searched by nnU-Net for ``nnUNetTrainerTumorfab`` (``-tr`` on its CLI too).
TRAINER_DIR = Path(__file__).resolve().parent / "trainers"
TRAINER_NAME = "nnUNetTrainerTumorfab"


@contextlib.contextmanager
def nnunet_environment(**variables: str | os.PathLike | int | None) -> Iterator[None]:
    """Set nnU-Net's environment variables for the block, restoring them after.

    Keys are the variable names (``nnUNet_raw=...``); a value of ``None``
    removes the variable for the block. ``nnUNet_extTrainer`` always points at
    our trainer folder (kept first if the caller's environment lists others).
    """
    extra = os.environ.get("nnUNet_extTrainer")
    trainer_path = str(TRAINER_DIR) if not extra else os.pathsep.join([str(TRAINER_DIR), extra])
    wanted = {"nnUNet_extTrainer": trainer_path, **variables}
    saved = {name: os.environ.get(name) for name in wanted}
    try:
        for name, value in wanted.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = str(value)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
