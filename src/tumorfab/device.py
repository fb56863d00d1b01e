"""Which torch device a job computes on: the one resolver every stage uses.

``auto`` (or None): the GPU when one is visible, else the CPU; ``cuda`` on a
machine without a GPU is an error naming the setting; any other name is
torch's own (``cpu``, ``cuda:1``). Torch is imported when called, so that
modules the workflow reads while it builds the DAG stay light.
"""

from __future__ import annotations


def resolve_device(device=None, setting: str = "device"):
    """``device`` (``auto``/None, ``cpu``, ``cuda``, a torch device) as a ``torch.device``.

    ``setting`` names the config key in the error raised when a GPU is asked
    for and none is visible."""
    import torch

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
