import nibabel as nib
import numpy as np
import pytest
import torch

from helpers.write_random_synthstrip_weights import write_random_weights
from tumorfab.skullstrip import load_synthstrip, skullstrip


def test_synthstrip_runs_with_a_weights_file_loaded_safely(healthy_root, tmp_path):
    weights = tmp_path / "synthstrip.pt"
    write_random_weights(str(weights))
    scan = healthy_root / "IXI000-Guys-0000-T1.nii.gz"
    method = skullstrip(
        scan, tmp_path / "t1n.nii.gz", tmp_path / "mask.nii.gz",
        synthstrip_weights=str(weights), border_mm=1.0, atlas_transform="SyN", threads=2,
    )
    mask = np.asarray(nib.load(str(tmp_path / "mask.nii.gz")).dataobj)
    stripped = nib.load(str(tmp_path / "t1n.nii.gz")).get_fdata()
    assert method == "synthstrip"
    assert mask.shape == nib.load(str(scan)).shape and mask.any()
    assert np.all(stripped[mask == 0] == 0)


def test_weights_file_with_pickled_code_is_refused(tmp_path):
    weights = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {}, "payload": object()}, weights)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_synthstrip(weights, torch.device("cpu"))


def test_missing_weights_file_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="skullstrip.synthstrip_weights"):
        load_synthstrip(tmp_path / "nope.pt", torch.device("cpu"))
