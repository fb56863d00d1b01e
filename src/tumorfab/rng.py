"""Saving and restoring the global random generators (Python, NumPy, torch on
every device), so that a training resumed from a checkpoint draws what an
uninterrupted one would have drawn."""

from __future__ import annotations

import random

import numpy as np


def capture_rng_state() -> dict:
    """The generators' states, to store in a checkpoint."""
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Set the generators to :func:`capture_rng_state`'s ``state`` (CUDA's only
    where it was saved and a GPU is visible)."""
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
