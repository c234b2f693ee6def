"""Deployment preprocessing: any digit image becomes an MNIST-like 28x28 frame."""

import numpy as np
import pytest

from tinydl.digits import area_resize, prepare_digit


def test_area_resize_keeps_the_mean_and_shape():
    img = np.random.default_rng(0).random((37, 53))
    out = area_resize(img, 20, 11)
    assert out.shape == (20, 11)
    assert out.mean() == pytest.approx(img.mean(), rel=1e-9)
    assert np.allclose(area_resize(img, 37, 53), img)


def test_area_resize_block_average():
    img = np.arange(16.0).reshape(4, 4)
    assert np.allclose(area_resize(img, 2, 2), [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("light_background", [False, True])
def test_digit_is_fitted_and_centred(light_background):
    img = np.zeros((200, 100))
    img[20:180, 40:60] = 1.0  # a tall bar, far from the centre of a large canvas
    if light_background:
        img = 1.0 - img
    out = prepare_digit((img * 255).astype(np.uint8))
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    rows, cols = np.nonzero(out > 0.5)
    assert rows.max() - rows.min() + 1 == 20  # longer side fitted into 20 pixels
    cy = (out.sum(1) * np.arange(28)).sum() / out.sum()
    cx = (out.sum(0) * np.arange(28)).sum() / out.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    assert out[0].max() == 0 and out[:, 0].max() == 0  # background is black


def test_colour_and_blank_images():
    rgb = np.zeros((50, 50, 3), np.uint8)
    rgb[10:40, 20:30] = 255
    assert prepare_digit(rgb).max() == pytest.approx(1.0)
    assert prepare_digit(np.full((30, 30), 128, np.uint8)).max() == 0.0


def test_bad_shape_is_named():
    with pytest.raises(ValueError, match="prepare_digit"):
        prepare_digit(np.zeros((2, 2, 2, 2)))
