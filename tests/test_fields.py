"""tumorfab.fields: the random smooth field primitive shared by the demo phantom and TF-Aug."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tumorfab import fields
from tumorfab.fields import SmoothField, cubic_bspline, gaussian_noise, standardize, white_noise

AXES = (np.arange(0.0, 60.0, 2.0), np.arange(-10.0, 40.0, 2.5), np.arange(5.0, 45.0, 4.0))


def test_white_noise_draws_float64_then_casts():
    noise = white_noise(np.random.default_rng(3), (4, 5), np.float32)
    assert noise.dtype == np.float32 and noise.shape == (4, 5)
    expected = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)
    assert np.array_equal(noise, expected)
    assert white_noise(np.random.default_rng(3), (4, 5)).dtype == np.float64


def test_cubic_bspline_is_a_partition_of_unity_with_support_two():
    t = np.linspace(-0.5, 0.5, 11)
    total = sum(cubic_bspline(t - k) for k in range(-3, 4))
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert np.all(cubic_bspline(np.array([2.0, -2.0, 3.5])) == 0)
    assert cubic_bspline(np.array([0.0]))[0] == pytest.approx(2 / 3)


def test_smooth_field_shape_range_and_determinism():
    lo, hi = np.array([0.0, -10.0, 5.0]), np.array([60.0, 40.0, 45.0])
    field = SmoothField.draw(np.random.default_rng(0), lo, hi, 8.0, components=2)
    values = field.on_axes(AXES)
    assert values.shape == (2, *(len(a) for a in AXES)) and values.dtype == np.float64
    assert np.all(np.abs(values) < 1)
    again = SmoothField.draw(np.random.default_rng(0), lo, hi, 8.0, components=2).on_axes(AXES)
    assert np.array_equal(values, again)
    other = SmoothField.draw(np.random.default_rng(1), lo, hi, 8.0, components=2).on_axes(AXES)
    assert not np.array_equal(values, other)


def test_smooth_field_is_tanh_of_the_bspline_of_its_control_values():
    field = SmoothField.draw(np.random.default_rng(5), np.zeros(3), np.full(3, 20.0), 10.0)
    point = np.array([7.0, 13.0, 2.0])
    u = (point - field.origin) / field.spacing
    w = [cubic_bspline(u[d] - np.arange(field.values.shape[d + 1])) for d in range(3)]
    s = np.einsum("ijk,i,j,k->", field.values[0], *w)
    value = field.on_axes(tuple(np.array([p]) for p in point))[0, 0, 0, 0]
    assert value == pytest.approx(np.tanh(fields.TANH_GAIN * s), rel=1e-12)


def test_smooth_field_has_std_about_one_half_and_features_of_its_spacing():
    lo, hi = np.zeros(3), np.full(3, 200.0)
    axes = tuple(np.arange(0.0, 200.0, 2.0) for _ in range(3))
    values = SmoothField.draw(np.random.default_rng(2), lo, hi, 10.0).on_axes(axes)[0]
    assert 0.35 < values.std() < 0.65
    assert abs(values.mean()) < 0.1
    # Smooth: neighbours 2 mm apart (a fifth of the spacing) are strongly correlated.
    assert np.corrcoef(values[:-1].ravel(), values[1:].ravel())[0, 1] > 0.9


def test_gaussian_noise_is_filtered_float32_white_noise():
    noise = gaussian_noise(np.random.default_rng(4), (12, 10, 8), (1.5, 0.7, 2.0))
    expected = ndimage.gaussian_filter(
        np.random.default_rng(4).standard_normal((12, 10, 8)).astype(np.float32), (1.5, 0.7, 2.0)
    )
    assert noise.dtype == np.float32 and np.array_equal(noise, expected)
    assert noise.std() < 0.5  # smoothing lowers the std of unit white noise


def test_standardize_gives_zero_mean_unit_std_and_survives_a_constant():
    values = gaussian_noise(np.random.default_rng(6), (1000,), 3.0)
    out = standardize(values)
    assert out.dtype == np.float32
    assert out.mean() == pytest.approx(0.0, abs=1e-5) and out.std() == pytest.approx(1.0, rel=1e-4)
    assert np.array_equal(standardize(np.full(5, 2.0, np.float32)), np.zeros(5, np.float32))
