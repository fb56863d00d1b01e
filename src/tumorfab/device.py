"""Which torch device a job computes on: the one resolver every stage uses.

``auto`` (or None): the GPU when one is visible, else the CPU; ``cuda`` on a
machine without a GPU is an error naming the setting; any other name is
torch's own (``cpu``, ``cuda:1``). Torch is imported when called, so that
modules the workflow reads while it builds the DAG stay light.

Deterministic GPU computation is opt-in: with the environment variable
:data:`DETERMINISTIC_ENV` set to ``1`` (for a whole run: ``TUMORFAB_DETERMINISTIC=1
snakemake ...``), :func:`resolve_device` first calls
:func:`use_deterministic_algorithms`. On the CPU our runs are byte for byte
the same without it (README, "Reproducibility"); on a GPU it trades speed
for repeatability where PyTorch has deterministic kernels (README, "Checking
the GPU paths").
"""

from __future__ import annotations

import os

#: The environment variable that asks for deterministic algorithms (``1``, ``true``, ``yes`` or ``on``).
DETERMINISTIC_ENV = "TUMORFAB_DETERMINISTIC"


def deterministic_requested() -> bool:
    """Whether :data:`DETERMINISTIC_ENV` asks for deterministic algorithms."""
    return os.environ.get(DETERMINISTIC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def use_deterministic_algorithms() -> None:
    """Deterministic kernels wherever PyTorch has them.

    ``torch.use_deterministic_algorithms(True, warn_only=True)``: an operation
    without a deterministic CUDA kernel still runs, and PyTorch warns naming
    it (strict mode would stop TF-GAN's D, whose global head's adaptive
    average pooling has none in its backward pass); cuDNN restricted to
    deterministic convolution algorithms, chosen without benchmarking; and
    cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS
    starts, so this must run before the first matrix product on the GPU;
    a value already set is kept).
    """
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def resolve_device(device=None, setting: str = "device"):
    """``device`` (``auto``/None, ``cpu``, ``cuda``, a torch device) as a ``torch.device``.

    ``setting`` names the config key in the error raised when a GPU is asked
    for and none is visible. With :data:`DETERMINISTIC_ENV` set, torch is
    switched to deterministic algorithms first (:func:`use_deterministic_algorithms`)."""
    import torch

    if deterministic_requested():
        use_deterministic_algorithms()
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{setting} is {str(device)!r} but no GPU is visible")
    return device


def module_device(module):
    """The device a network's parameters are on (the CPU for one without any)."""
    import torch

    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
