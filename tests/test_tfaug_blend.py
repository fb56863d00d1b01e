"""ROI augmentation x_s' = I(B(x_h, m_s)) (paper 002 §2.1, Eq. 1)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from test_tfaug_data import CENTRE, SHAPE, healthy_scan, lesion_labels

from tumorfab.synthesis.tfaug.blend import augment_roi, blur_in_roi, modify_intensity, smooth_noise

IDENTITY = (np.ones((1, 3)), np.zeros((1, 3)))


@pytest.fixture
def scan():
    image, brain = healthy_scan(np.random.default_rng(3))
    labels = lesion_labels(CENTRE + [3, -2, 1], radius=6) * brain
    return image[None], brain, labels


@pytest.fixture
def two_lesions():
    """An L-shaped lesion (1) whose bounding box holds a second, separate lesion (2)."""
    image, brain = healthy_scan(np.random.default_rng(4))
    lesions = np.zeros(SHAPE, np.uint16)
    lesions[12:28, 12:16, 18:22] = 1
    lesions[12:16, 12:28, 18:22] = 1
    lesions[19:26, 19:26, 17:24] = 2
    labels = np.where(lesions == 1, 2, 0).astype(np.uint8)
    labels[lesions == 2] = 3
    labels[21:24, 21:24, 19:22] = 1
    boxes = ndimage.find_objects(lesions)
    assert (lesions[boxes[0]] == 2).any()  # lesion 2 lies inside lesion 1's box
    return image[None], brain, labels, lesions, boxes


def whole_volume_blur(image: np.ndarray, brain: np.ndarray, sigma: float) -> np.ndarray:
    """The normalized convolution over the brain, on the whole volume (the reference)."""
    weight = brain.astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 far outside the brain
        return ndimage.gaussian_filter(image * weight, sigma, mode="constant") / ndimage.gaussian_filter(
            weight, sigma, mode="constant"
        )


def test_identity_intensity_without_blur_leaves_the_roi_as_the_healthy_tissue(scan):
    image, brain, labels = scan
    out = augment_roi(image, brain, labels, *IDENTITY, sigma=0.0)
    assert np.array_equal(out, image)


def test_outside_the_roi_the_image_is_the_healthy_image_bit_for_bit(scan):
    image, brain, labels = scan
    a = np.array([[0.5, 1.3, 0.8]])
    b = np.array([[-0.2, 0.1, 0.4]])
    out = augment_roi(image, brain, labels, a, b, sigma=2.0)
    assert np.array_equal(out[:, labels == 0], image[:, labels == 0])
    assert not np.array_equal(out[:, labels > 0], image[:, labels > 0])


def test_blur_on_the_lesion_box_equals_the_whole_volume_blur(scan):
    image, brain, labels = scan
    sigma = 2.0
    whole = whole_volume_blur(image[0], brain, sigma)
    out = blur_in_roi(image, brain, labels > 0, sigma)
    np.testing.assert_allclose(out[0][labels > 0], whole[labels > 0], rtol=1e-5, atol=1e-6)
    assert np.array_equal(out[0][labels == 0], image[0][labels == 0])


def test_blur_takes_only_healthy_tissue_not_the_background():
    brain = np.zeros(SHAPE, np.uint8)
    brain[:, :, :20] = 1
    image = np.where(brain > 0, 0.5, -1.0).astype(np.float32)[None]
    roi = np.zeros(SHAPE, bool)
    roi[15:25, 15:25, 14:20] = True  # touches the brain's edge at z = 19
    out = blur_in_roi(image, brain, roi, 2.0)
    np.testing.assert_allclose(out[0][roi], 0.5, rtol=1e-5)


def test_each_subregion_gets_its_own_linear_map(scan):
    image, brain, labels = scan
    a = np.array([[1.0, 0.5, 1.0]])
    b = np.array([[0.0, 0.2, -0.1]])
    out = modify_intensity(image, labels, a, b)
    ed, et = labels == 2, labels == 3
    np.testing.assert_allclose(out[0][ed], np.clip(0.5 * image[0][ed] + 0.2, -1, 1), rtol=1e-6)
    np.testing.assert_allclose(out[0][et], np.clip(image[0][et] - 0.1, -1, 1), rtol=1e-6)
    assert np.array_equal(out[0][labels == 1], image[0][labels == 1])


def test_the_result_stays_in_minus_one_to_one(scan):
    image, brain, labels = scan
    out = modify_intensity(image, labels, np.full((1, 3), 3.0), np.full((1, 3), 0.9))
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_texture_has_unit_std_inside_the_lesion_and_is_zero_outside(scan):
    _, _, labels = scan
    boxes = ndimage.find_objects((labels > 0).astype(np.uint8))
    texture = smooth_noise(labels > 0, boxes, (1.5, 1.5, 1.5), np.random.default_rng(0))
    assert texture[labels > 0].std() == pytest.approx(1.0, rel=1e-4)
    assert texture[labels > 0].mean() == pytest.approx(0.0, abs=1e-5)
    assert not texture[labels == 0].any()


def test_overlapping_lesion_boxes_map_each_voxel_once(two_lesions):
    image, _, labels, lesions, boxes = two_lesions
    offset = np.float32(0.1)
    out = modify_intensity(image, labels, np.ones((1, 3)), np.full((1, 3), offset), lesions=lesions, boxes=boxes)
    roi = labels > 0
    assert np.array_equal(out[0][roi], np.clip(image[0][roi] + offset, -1, 1))  # not + 2 · offset in the overlap
    assert np.array_equal(out[0][~roi], image[0][~roi])


def test_overlapping_lesion_boxes_blur_each_voxel_once_from_the_healthy_image(two_lesions):
    image, brain, labels, lesions, boxes = two_lesions
    out = blur_in_roi(image, brain, lesions, 2.0, boxes)
    roi = labels > 0
    np.testing.assert_allclose(out[0][roi], whole_volume_blur(image[0], brain, 2.0)[roi], rtol=1e-5, atol=1e-6)
    assert np.array_equal(out, blur_in_roi(image, brain, roi, 2.0))  # the union ROI blurred at once
    assert np.array_equal(out[0][~roi], image[0][~roi])


def test_overlapping_lesion_boxes_get_texture_once_standardized_per_lesion(two_lesions):
    image, _, labels, lesions, boxes = two_lesions
    texture = smooth_noise(lesions, boxes, (1.5, 1.5, 1.5), np.random.default_rng(0))
    for number in (1, 2):
        assert texture[lesions == number].std() == pytest.approx(1.0, rel=1e-4)
        assert texture[lesions == number].mean() == pytest.approx(0.0, abs=1e-5)
    assert not texture[lesions == 0].any()
    out = modify_intensity(image, labels, *IDENTITY, texture=texture, lesions=lesions, boxes=boxes)
    roi = labels > 0
    assert np.array_equal(out[0][roi], np.clip(image[0][roi] + texture[roi], -1, 1))
