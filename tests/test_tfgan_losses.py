"""TF-GAN's losses (paper 002 Eq. 2-5) against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from tumorfab.synthesis.tfgan.losses import (
    classwise_perceptual,
    discriminator_loss,
    generator_adversarial_loss,
    generator_loss,
    hinge_l1_outside_roi,
    lambda_c,
)


def _vol(values, channels=1):
    """A [1, channels, N, 1, 1] float tensor from ``channels`` lists of N values."""
    if channels == 1:
        values = [values]
    return torch.tensor(values, dtype=torch.float32)[None, :, :, None, None]


def _labels(values):
    return torch.tensor(values, dtype=torch.int64)[None, None, :, None, None]


# --- Eq. 2: hinge ---------------------------------------------------------------------
def test_hinge_hand_computed():
    margin = 0.1
    coarse = torch.zeros(1, 2, 4, 1, 1)
    # channel 0: |Δ| 0.05 (<= margin: 0), 0.3 (0.2), ROI voxel (never counts), 0.6 (0.5)
    # channel 1: exactly the margin at the last voxel (0), ROI voxel again
    refined = _vol([[0.05, 0.3, 100.0, -0.6], [0.0, 0.0, -50.0, 0.1]], channels=2)
    roi = _vol([0.0, 0.0, 1.0, 0.0])
    loss = hinge_l1_outside_roi(refined, coarse, roi, margin)
    # mean over all 8 elements (ROI and sub-margin ones count as 0)
    assert loss.item() == pytest.approx((0.2 + 0.5) / 8, abs=1e-6)
    assert loss.dtype == torch.float32


def test_hinge_zero_within_margin_and_bool_roi():
    coarse = torch.zeros(2, 1, 3, 2, 2)
    refined = torch.full_like(coarse, 0.2)
    assert hinge_l1_outside_roi(refined, coarse, torch.zeros_like(coarse, dtype=torch.bool), 0.2).item() == 0.0
    # everything inside the ROI: 0 however large the difference
    big = torch.full_like(coarse, 5.0)
    assert hinge_l1_outside_roi(big, coarse, torch.ones_like(coarse, dtype=torch.bool), 0.0).item() == 0.0


def test_hinge_gradient_only_outside_roi_above_margin():
    coarse = torch.zeros(1, 1, 4, 1, 1)
    refined = _vol([0.05, 0.3, 0.9, -0.6]).requires_grad_(True)
    roi = _vol([0.0, 0.0, 1.0, 0.0])
    hinge_l1_outside_roi(refined, coarse, roi, 0.1).backward()
    assert refined.grad.flatten().tolist() == pytest.approx([0.0, 0.25, 0.0, -0.25])


def test_hinge_rejects_negative_margin():
    x = torch.zeros(1, 1, 2, 1, 1)
    with pytest.raises(ValueError):
        hinge_l1_outside_roi(x, x, x, -0.1)


# --- Eq. 3: class-wise perceptual --------------------------------------------------------
# One stage, 2 channels, 4 voxels; the labels live at the feature resolution.
FAKE_FEATURES = [[1.0, 3.0, 5.0, 100.0], [0.0, 0.0, 2.0, 7.0]]
REAL_FEATURES = [[4.0, 6.0, 8.0, 9.0], [3.0, 1.0, 1.0, 1.0]]
FAKE_LABELS = [1, 1, 2, 0]  # NCR: voxels 0, 1; ED: voxel 2
REAL_LABELS = [1, 2, 2, 0]  # NCR: voxel 0; ED: voxels 1, 2
# pooled fake: NCR (2, 0), ED (5, 2); pooled real: NCR (4, 3), ED (7, 1)
# NCR: (|2-4| + |0-3|) / 2 = 2.5; ED: (|5-7| + |2-1|) / 2 = 1.5; mean 2.0
EXPECTED = 2.0


def test_perceptual_hand_computed():
    loss = classwise_perceptual(
        [_vol(FAKE_FEATURES, 2)], _labels(FAKE_LABELS), [_vol(REAL_FEATURES, 2)], _labels(REAL_LABELS)
    )
    assert loss.item() == pytest.approx(EXPECTED)
    assert loss.dtype == torch.float32


def test_perceptual_averages_layers():
    # a second layer identical on both sides adds 0 to two more (layer, class) pairs
    same = _vol([1.0, 1.0, 1.0, 1.0])
    loss = classwise_perceptual(
        [_vol(FAKE_FEATURES, 2), same], _labels(FAKE_LABELS), [_vol(REAL_FEATURES, 2), same], _labels(REAL_LABELS)
    )
    assert loss.item() == pytest.approx((2.5 + 1.5 + 0 + 0) / 4)


def test_perceptual_zero_for_identical_pooled_features():
    features = [torch.randn(1, 3, 4, 4, 4), torch.randn(1, 5, 2, 2, 2)]
    labels = torch.randint(0, 4, (1, 1, 4, 4, 4))
    labels[0, 0, 0, 0, :3] = torch.tensor([1, 2, 3])
    assert classwise_perceptual(features, labels, features, labels).item() == pytest.approx(0.0, abs=1e-6)
    # features that differ only outside the class masks (the background voxel 3)
    fake = _vol(FAKE_FEATURES, 2)
    real = fake.clone()
    real[..., 3, :, :] = -42.0
    loss = classwise_perceptual([fake], _labels(FAKE_LABELS), [real], _labels(FAKE_LABELS))
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_perceptual_ignores_class_absent_from_one_side():
    # the fake case has ET at voxel 3, the real case none: ET is left out
    loss = classwise_perceptual(
        [_vol(FAKE_FEATURES, 2)], _labels([1, 1, 2, 3]), [_vol(REAL_FEATURES, 2)], _labels(REAL_LABELS)
    )
    assert loss.item() == pytest.approx(EXPECTED)
    # and the other way round: the real case has ET, the fake case none
    loss = classwise_perceptual(
        [_vol(FAKE_FEATURES, 2)], _labels(FAKE_LABELS), [_vol(REAL_FEATURES, 2)], _labels([1, 2, 2, 3])
    )
    assert loss.item() == pytest.approx(EXPECTED)


def test_perceptual_differentiable_zero_when_no_class_shared():
    fake = _vol(FAKE_FEATURES, 2).requires_grad_(True)
    loss = classwise_perceptual([fake], _labels([1, 1, 0, 0]), [_vol(REAL_FEATURES, 2)], _labels([2, 2, 3, 0]))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.count_nonzero(fake.grad) == 0


def test_perceptual_gradient_flows_to_fake_features():
    fake = _vol(FAKE_FEATURES, 2).requires_grad_(True)
    real = _vol(REAL_FEATURES, 2).requires_grad_(True)
    classwise_perceptual([fake], _labels(FAKE_LABELS), [real], _labels(REAL_LABELS)).backward()
    grad = fake.grad[0, :, :, 0, 0]
    # d/d f: sign(fake - real) / (channels · pairs · class voxels); background voxel gets none
    # NCR (2 voxels): ch0 sign(2-4) = -1, ch1 sign(0-3) = -1 -> -1/(2·2·2) each
    # ED (1 voxel): ch0 sign(5-7) = -1 -> -1/4, ch1 sign(2-1) = +1 -> +1/4
    expected = torch.tensor([[-0.125, -0.125, -0.25, 0.0], [-0.125, -0.125, 0.25, 0.0]])
    assert torch.allclose(grad, expected)


def test_perceptual_batches():
    fake = torch.cat([_vol(FAKE_FEATURES, 2), _vol(REAL_FEATURES, 2)])
    fake_labels = torch.cat([_labels(FAKE_LABELS), _labels(REAL_LABELS)])
    # one real case broadcast to both fakes: case 0 -> 2.5, 1.5; case 1 is identical -> 0, 0
    single = classwise_perceptual([fake], fake_labels, [_vol(REAL_FEATURES, 2)], _labels(REAL_LABELS))
    assert single.item() == pytest.approx((2.5 + 1.5) / 4)
    # pairwise: real batch = the fake batch reversed -> case 0 vs REAL, case 1 vs FAKE (same distances)
    real = torch.cat([_vol(REAL_FEATURES, 2), _vol(FAKE_FEATURES, 2)])
    real_labels = torch.cat([_labels(REAL_LABELS), _labels(FAKE_LABELS)])
    paired = classwise_perceptual([fake], fake_labels, [real], real_labels)
    assert paired.item() == pytest.approx(EXPECTED)
    with pytest.raises(ValueError):
        classwise_perceptual([fake], fake_labels, [torch.cat([real, real[:1]])], torch.cat([real_labels] * 2)[:3])


def test_perceptual_lower_resolution_stage():
    # a stage at half resolution: the class masks are area-averaged onto it
    labels = torch.zeros(1, 1, 4, 4, 4, dtype=torch.int64)
    labels[..., :2, :2, :2] = 1  # exactly one low-resolution voxel
    fake = torch.zeros(1, 2, 2, 2, 2)
    real = torch.zeros(1, 2, 2, 2, 2)
    real[0, :, 0, 0, 0] = torch.tensor([1.0, 3.0])
    loss = classwise_perceptual([fake], labels, [real], labels)
    assert loss.item() == pytest.approx(2.0)


# --- Eq. 4: adversarial ------------------------------------------------------------------
def test_discriminator_loss_at_zero_logits():
    for shape in [(2, 1), (2, 1, 3, 3, 3)]:
        zeros = torch.zeros(shape)
        assert discriminator_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))


def test_discriminator_loss_hand_computed():
    real = torch.tensor([[2.0], [-1.0]])
    fake = torch.tensor([[0.5], [-3.0]])

    def softplus(x):
        return math.log1p(math.exp(x))

    expected = (softplus(-2.0) + softplus(1.0)) / 2 + (softplus(0.5) + softplus(-3.0)) / 2
    assert discriminator_loss(real, fake).item() == pytest.approx(expected)
    # stable for extreme logits
    assert torch.isfinite(discriminator_loss(torch.tensor([[1e4]]), torch.tensor([[-1e4]])))


def test_generator_adversarial_loss():
    assert generator_adversarial_loss(torch.zeros(1, 1, 2, 2, 2)).item() == pytest.approx(math.log(2))
    values = [generator_adversarial_loss(torch.full((1, 1), v)).item() for v in (-3.0, -1.0, 0.0, 1.0, 3.0)]
    assert all(a > b for a, b in zip(values, values[1:]))
    # non-saturating: a strong gradient where D rejects the fake
    logit = torch.full((1, 1), -10.0, requires_grad=True)
    generator_adversarial_loss(logit).backward()
    assert logit.grad.item() == pytest.approx(-1.0, abs=1e-4)


# --- λc and Eq. 5 ------------------------------------------------------------------------
def test_lambda_c_schedule():
    assert lambda_c(0, 11, start=10.0, end=1.0) == 10.0
    assert lambda_c(10, 11, start=10.0, end=1.0) == 1.0
    assert lambda_c(5, 11, start=10.0, end=1.0) == pytest.approx(5.5)
    assert lambda_c(-3, 11, start=10.0, end=1.0) == 10.0
    assert lambda_c(50, 11, start=10.0, end=1.0) == 1.0
    assert lambda_c(0, 1, start=10.0, end=1.0) == 10.0
    with pytest.raises(ValueError):
        lambda_c(0, 0, start=10.0, end=1.0)
    with pytest.raises(TypeError):
        lambda_c(0, 11)  # no defaults: the config gives start and end


def test_generator_loss_weighted_sum():
    terms = [torch.tensor(v, requires_grad=True) for v in (0.5, 0.7, 0.2, 1.3)]
    weights = {"patch": 10.0, "global": 1.0, "percep": 1.0}
    total, record = generator_loss(*terms, weights=weights, lambda_c=4.0)
    expected = 10 * 0.5 + 0.7 + 4.0 * 0.2 + 1.3
    assert total.item() == pytest.approx(expected)
    assert record == pytest.approx(
        {"adv_patch": 0.5, "adv_global": 0.7, "hinge": 0.2, "percep": 1.3, "lambda_c": 4.0, "total": expected}
    )
    assert all(type(v) is float for v in record.values())
    total.backward()
    assert [t.grad.item() for t in terms] == pytest.approx([10.0, 1.0, 4.0, 1.0])
    with pytest.raises(KeyError):
        generator_loss(*terms, weights={"patch": 10.0, "global": 1.0}, lambda_c=4.0)


# --- Mixed precision -----------------------------------------------------------------------
def test_bf16_autocast_gives_float32():
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(1, 2, 1)
    image = torch.randn(1, 1, 4, 4, 4)
    labels = torch.randint(0, 4, (1, 1, 4, 4, 4))
    labels[0, 0, 0, 0, :3] = torch.tensor([1, 2, 3])
    roi = (labels > 0).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = conv(image)
        assert features.dtype == torch.bfloat16
        logits = conv(image)[:, :1]
        results = [
            hinge_l1_outside_roi(features, features.detach() * 0.5, roi, 0.01),
            classwise_perceptual([features], labels, [features.detach() + 1], labels),
            discriminator_loss(logits, logits),
            generator_adversarial_loss(logits),
        ]
        total, _ = generator_loss(
            results[3], results[3], results[0], results[1], {"patch": 10.0, "global": 1.0, "percep": 1.0}, 2.0
        )
    for value in [*results, total]:
        assert value.dtype == torch.float32
        assert torch.isfinite(value)
    total.backward()
    assert conv.weight.grad is not None
    # bf16 inputs outside autocast too
    half = torch.zeros(1, 1, 2, 1, 1, dtype=torch.bfloat16)
    assert generator_adversarial_loss(half).dtype == torch.float32
    assert hinge_l1_outside_roi(half, half, half, 0.0).dtype == torch.float32
