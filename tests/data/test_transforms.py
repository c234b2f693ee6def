"""Transforms on single images and on batches (their speed: benchmarks/data_pipeline.py)."""

import numpy as np
import pytest

import tinydl as td
from tinydl.data import transforms as T


@pytest.fixture
def digits():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (16, 28, 28), dtype=np.uint8)


def test_to_tensor_shapes_and_range(digits):
    one = T.ToTensor()(digits[0])
    assert one.shape == (1, 28, 28) and one.dtype == np.float32
    assert one.min() >= 0 and one.max() <= 1
    np.testing.assert_array_equal(one[0], digits[0] / np.float32(255))
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    chw = T.ToTensor()(rgb)
    assert chw.shape == (3, 5, 7)
    np.testing.assert_allclose(chw[2], rgb[..., 2] / 255, rtol=1e-6)
    batch = T.ToTensor().batch(digits)
    assert batch.shape == (16, 1, 28, 28) and batch.dtype == np.float32
    assert T.ToTensor().batch(np.stack([rgb, rgb])).shape == (2, 3, 5, 7)
    with pytest.raises(ValueError, match="ToTensor"):
        T.ToTensor()(np.zeros(5))


def test_normalize_values():
    x = np.stack([np.full((2, 2), 0.5), np.full((2, 2), 1.0)]).astype(np.float32)
    out = T.Normalize((0.5, 0.0), (0.25, 2.0))(x)
    np.testing.assert_allclose(out[0], 0.0)
    np.testing.assert_allclose(out[1], 0.5)
    assert out.dtype == np.float32
    batch = T.Normalize((0.1307,), (0.3081,)).batch(x[None, :1].repeat(3, 0))
    np.testing.assert_allclose(batch, (0.5 - 0.1307) / 0.3081, rtol=1e-6)
    with pytest.raises(ValueError, match="std"):
        T.Normalize(0.0, 0.0)
    with pytest.raises(ValueError, match="channels"):
        T.Normalize((0.1, 0.2, 0.3), (1, 1, 1))(x)


def test_compose_single_equals_batch(digits):
    tf = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])
    batch = tf.batch(digits)
    single = np.stack([tf(d) for d in digits])
    np.testing.assert_allclose(batch, single, rtol=1e-6)
    assert "Normalize" in repr(tf)


def test_apply_batch_falls_back_to_items():
    np.testing.assert_array_equal(T.apply_batch(lambda v: v * 2, np.arange(3)), [0, 2, 4])
    np.testing.assert_array_equal(T.apply_batch(None, np.arange(3)), [0, 1, 2])


def test_random_shift_moves_content_and_keeps_shape():
    img = np.zeros((9, 9), dtype=np.uint8)
    img[4, 4] = 255
    shift = T.RandomShift(2, generator=np.random.default_rng(0))
    batch = shift.batch(np.repeat(img[None], 64, axis=0))
    assert batch.shape == (64, 9, 9) and batch.dtype == np.uint8
    assert (batch.reshape(64, -1).sum(1) == 255).all()  # the dot is moved, never lost
    positions = {(int(np.argmax(b) // 9), int(np.argmax(b) % 9)) for b in batch}
    assert len(positions) > 5
    assert all(2 <= r <= 6 and 2 <= c <= 6 for r, c in positions)
    single = shift(img[None].astype(np.float32))  # CxHxW works too
    assert single.shape == (1, 9, 9)


def test_random_shift_fills_uncovered_border():
    ones = np.ones((8, 1, 5, 5), dtype=np.float32)
    out = T.RandomShift(1, fill=0.0, generator=np.random.default_rng(1)).batch(ones)
    moved = out.sum(axis=(1, 2, 3)) < 25
    assert moved.any()


def test_random_affine_identity():
    x = np.random.default_rng(0).random((4, 3, 10, 12)).astype(np.float32)
    for interp in ("bilinear", "nearest"):
        out = T.RandomAffine(0, translate=(0, 0), interpolation=interp).batch(x)
        np.testing.assert_array_equal(out, x)
    u8 = (x[:, 0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(T.RandomAffine(0).batch(u8), u8)


def test_random_affine_rotates_counter_clockwise():
    img = np.zeros((9, 9), dtype=np.float32)
    img[4, 8] = 1.0  # right of the centre
    out = T.RandomAffine((90, 90))(img)
    assert np.unravel_index(np.argmax(out), out.shape) == (0, 4)  # now above it
    np.testing.assert_allclose(out.sum(), 1.0, atol=1e-5)


def test_random_affine_translation_matches_shift():
    img = np.zeros((1, 11, 11), dtype=np.float32)
    img[0, 5, 5] = 1
    out = T.RandomAffine(
        0, translate=(0.3, 0.3), interpolation="nearest", generator=np.random.default_rng(0)
    ).batch(np.repeat(img[None], 20, 0))
    assert out.shape == (20, 1, 11, 11)
    centers = [np.unravel_index(np.argmax(o[0]), (11, 11)) for o in out]
    assert len(set(centers)) > 3
    assert all(abs(r - 5) <= 4 and abs(c - 5) <= 4 for r, c in centers)


def test_random_affine_is_seeded():
    x = np.random.default_rng(0).random((3, 28, 28)).astype(np.float32)

    def run(seed):
        return T.RandomAffine(15, (0.1, 0.1), scale=(0.9, 1.1), generator=seed).batch(x)

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))
    td.manual_seed(0)
    a = T.RandomAffine(15).batch(x)
    td.manual_seed(0)
    np.testing.assert_array_equal(T.RandomAffine(15).batch(x), a)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"degrees": (5, -5)},
        {"degrees": 5, "translate": (1.5, 0)},
        {"degrees": 0, "scale": (0, 1)},
        {"degrees": 0, "interpolation": "cubic"},
    ],
)
def test_random_affine_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="RandomAffine"):
        T.RandomAffine(**kwargs)


def test_random_crop_with_padding(digits):
    crop = T.RandomCrop(28, padding=4, generator=np.random.default_rng(0))
    out = crop.batch(digits)
    assert out.shape == (16, 28, 28) and out.dtype == np.uint8
    assert not np.array_equal(out, digits)
    small = T.RandomCrop((20, 24), generator=np.random.default_rng(0))
    assert small(T.ToTensor()(digits[0])).shape == (1, 20, 24)
    # without padding a full-size crop is the identity
    np.testing.assert_array_equal(T.RandomCrop(28).batch(digits), digits)
    # every crop is a window of the zero-padded image
    padded = np.pad(digits[0], 4)
    one = crop(digits[0])
    assert any(
        np.array_equal(one, padded[i : i + 28, j : j + 28]) for i in range(9) for j in range(9)
    )
    with pytest.raises(ValueError, match="larger than the padded image"):
        T.RandomCrop(30).batch(digits)
    with pytest.raises(ValueError, match="RandomCrop"):
        T.RandomCrop(-1)
