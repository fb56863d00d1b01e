"""Write a randomly initialised SynthStrip weights file, for testing the
loading and inference path without FreeSurfer's real weights.

The last layer's bias is set very negative, so the predicted signed distance
is negative ("inside the brain") nearly everywhere and the mask is
non-empty whatever the random weights are. Usage: python THIS OUT.pt
"""

import sys

import torch
from nipreps.synthstrip.model import StripModel


def write_random_weights(path: str, seed: int = 0) -> None:
    torch.manual_seed(seed)
    model = StripModel()
    last_conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)][-1]
    with torch.no_grad():
        last_conv.bias.fill_(-1000.0)
    torch.save({"model_state_dict": model.state_dict()}, path)


if __name__ == "__main__":
    write_random_weights(sys.argv[1])
