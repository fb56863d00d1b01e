"""The SGD fit of TF-Aug's a, b on F-features (paper 002 §2.1, §3.1.2)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers.schema_defaults import schema_defaults
from test_tfaug_data import TinyEncoder, make_cohort

from tumorfab.synthesis.tfaug.intensity_fit import (
    classwise_pooled,
    crop_patch,
    fit_tfaug_intensity,
    load_intensity,
)
from tumorfab.synthesis.tfaug.settings import IntensityFitSettings, TFAugSettings

FIT = IntensityFitSettings(epochs=6, lr=0.5, batch_size=2, n_pairs=4, patch_size=24, n_stages=3)
#: The other settings the fit reads (the schema's defaults: the paper's augmentation).
_TFAUG = TFAugSettings.from_config(schema_defaults()["tfaug"])
ARGS = {"modalities": ["t1n"], "masks": _TFAUG.masks, "blur_sigma": _TFAUG.blur_sigma}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"), n_real=3, n_healthy=2)


def test_classwise_pooling_averages_each_feature_over_its_class_mask():
    labels = torch.zeros(1, 1, 8, 8, 8, dtype=torch.uint8)
    labels[..., :4, :, :] = 2
    labels[..., 6:, :4, :] = 3
    feature = torch.zeros(1, 2, 8, 8, 8)
    feature[:, 0] = labels[:, 0].float() * 10  # 20 on ED, 30 on ET
    feature[:, 1] = 1.0
    half = feature[..., ::2, ::2, ::2]  # a stride-2 stage
    pooled, present = classwise_pooled([feature, half], labels)
    assert present.tolist() == [[False, True, True]]
    for stage in pooled:
        assert stage[0, 1].tolist() == pytest.approx([20.0, 1.0])
        assert stage[0, 2].tolist() == pytest.approx([30.0, 1.0])


def test_pooling_passes_gradients_to_the_image():
    image = torch.zeros(1, 1, 8, 8, 8, requires_grad=True)
    labels = torch.zeros(1, 1, 8, 8, 8, dtype=torch.uint8)
    labels[..., 2:6, 2:6, 2:6] = 1
    features = TinyEncoder()(image, torch.ones_like(image))
    pooled, _ = classwise_pooled(features, labels)
    sum(p[:, 0].sum() for p in pooled).backward()
    assert image.grad.abs().sum() > 0


def test_patches_are_centred_and_padded_with_background():
    volume = np.arange(10 * 10 * 10, dtype=np.float32).reshape(10, 10, 10)
    patch = crop_patch(volume, (0, 5, 5), 4, -1.0)
    assert patch.shape == (4, 4, 4)
    assert (patch[:2] == -1).all()
    assert patch[2, 2, 2] == volume[0, 5, 5]


def test_the_fit_lowers_its_loss_and_writes_a_and_b(cohort, tmp_path):
    real, healthy = cohort
    out = tmp_path / "intensity.json"
    result = fit_tfaug_intensity(real, healthy, None, out, seed=1, intensity_fit=FIT, extractor=TinyEncoder(), **ARGS)
    assert result.loss_end < result.loss_start
    assert len(result.loss_per_epoch) == FIT.epochs
    content = json.loads(out.read_text())
    assert content["settings"] == {**FIT.record(), "seed": 1, "blur_sigma": 2.0}
    assert list(content["settings"]) == [*IntensityFitSettings.__dataclass_fields__, "seed", "blur_sigma"]
    assert content["loss_end"] == pytest.approx(result.loss_end)
    assert set(content["a"]["t1n"]) == {"ncr", "ed", "et"}
    a, b = load_intensity(out, ["t1n"])
    np.testing.assert_allclose(a, result.a, rtol=1e-6)
    np.testing.assert_allclose(b, result.b, rtol=1e-6)
    assert not np.allclose(b, 0.0)  # the parameters moved
    with pytest.raises(ValueError, match="t2w"):
        load_intensity(out, ["t1n", "t2w"])


def test_the_fit_is_seeded(cohort, tmp_path):
    real, healthy = cohort
    runs = [
        fit_tfaug_intensity(real, healthy, None, tmp_path / f"{i}.json", seed=3, intensity_fit=replace(FIT, epochs=2), extractor=TinyEncoder(), **ARGS)
        for i in range(2)
    ]
    assert np.array_equal(runs[0].a, runs[1].a) and np.array_equal(runs[0].b, runs[1].b)
    assert (tmp_path / "0.json").read_text() == (tmp_path / "1.json").read_text()


def test_the_fit_leaves_the_feature_extractor_unchanged(cohort, tmp_path):
    real, healthy = cohort
    encoder = TinyEncoder()
    before = [p.detach().clone() for p in encoder.parameters()]
    fit_tfaug_intensity(real, healthy, None, tmp_path / "i.json", seed=0, intensity_fit=replace(FIT, epochs=1), extractor=encoder, **ARGS)
    assert all(torch.equal(p, q) for p, q in zip(before, encoder.parameters()))


def test_the_fit_runs_on_the_nnunet_feature_extractor(cohort, tmp_path):
    """F as the segmentation stage builds it (nnU-Net normalization, instance norm), random weights."""
    from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder

    from tumorfab.segmentation.features import FeatureExtractor

    real, healthy = cohort
    torch.manual_seed(0)
    encoder = PlainConvEncoder(
        1, 3, [8, 16, 32], torch.nn.Conv3d, 3, [1, 2, 2], 2, conv_bias=True,
        norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True}, return_skips=True,
    )
    extractor = FeatureExtractor(
        stem=None, stages=list(encoder.stages), output_channels=encoder.output_channels,
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], use_mask_for_norm=[True], transpose_forward=[0, 1, 2],
    )
    result = fit_tfaug_intensity(
        real, healthy, None, tmp_path / "i.json", seed=1,
        intensity_fit=replace(FIT, epochs=2, lr=0.01), extractor=extractor, **ARGS,
    )
    assert result.loss_end < result.loss_start


def test_a_non_finite_loss_stops_the_fit_naming_epoch_and_batch(cohort, tmp_path, monkeypatch):
    from tumorfab.synthesis.tfaug import intensity_fit

    real, healthy = cohort
    calls = {"n": 0}
    pooled_l1 = intensity_fit.pooled_l1

    def infinite_on_the_second_training_batch(*args):
        calls["n"] += 1
        loss = pooled_l1(*args)
        # call 1..k: the starting pool loss (no gradient); then the training batches
        return loss * float("inf") if calls["n"] == FIT.n_pairs // FIT.batch_size + 2 else loss

    monkeypatch.setattr(intensity_fit, "pooled_l1", infinite_on_the_second_training_batch)
    with pytest.raises(FloatingPointError, match=r"loss inf at epoch 1, batch 2 \(pooled L1, fp32"):
        fit_tfaug_intensity(real, healthy, None, tmp_path / "i.json", seed=0, intensity_fit=FIT, extractor=TinyEncoder(), **ARGS)
    assert not (tmp_path / "i.json").exists()
