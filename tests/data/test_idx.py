"""IDX reader on files the test builds: gzip and raw, then malformed ones."""

import gzip

import numpy as np
import pytest

from tinydl.data import DatasetError, read_idx, write_idx


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("name", ["imgs-idx3-ubyte", "imgs-idx3-ubyte.gz"])
def test_round_trip_raw_and_gzip(tmp_path, images, name):
    path = write_idx(tmp_path / name, images)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_idx(path, ndim=3, dtype=np.uint8)
    assert out.dtype == np.uint8 and out.flags.writeable
    np.testing.assert_array_equal(out, images)


def test_header_layout_is_the_standard_one(tmp_path):
    labels = np.array([7, 2, 1], dtype=np.uint8)
    raw = write_idx(tmp_path / "labels", labels).read_bytes()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


def test_multibyte_types_are_big_endian(tmp_path):
    values = np.array([[1.5, -2.0]], dtype=np.float32)
    path = write_idx(tmp_path / "f", values)
    assert path.read_bytes()[2] == 0x0D
    np.testing.assert_array_equal(read_idx(path), values)
    assert read_idx(path).dtype == np.dtype("=f4")


def _expect_error(path, *fragments, **kwargs):
    with pytest.raises(DatasetError) as info:
        read_idx(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_wrong_magic(tmp_path, images):
    raw = bytearray(write_idx(tmp_path / "a", images).read_bytes())
    raw[0] = 0x12
    (tmp_path / "bad").write_bytes(bytes(raw))
    _expect_error(tmp_path / "bad", "not an IDX file", "found 0x12000803")
    raw[0], raw[2] = 0, 0x07
    (tmp_path / "badtype").write_bytes(bytes(raw))
    _expect_error(tmp_path / "badtype", "type code", "0x00000703")


def test_wrong_element_type_when_asked(tmp_path):
    path = write_idx(tmp_path / "ints", np.arange(4, dtype=np.int32))
    _expect_error(path, "wrong element type", "uint8", dtype=np.uint8)


def test_truncated_payload(tmp_path, images):
    raw = write_idx(tmp_path / "a", images).read_bytes()
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-100]))
    _expect_error(tmp_path / "short.gz", "truncated payload", "expected 3920 bytes", "found 3820")
    (tmp_path / "long").write_bytes(raw + b"\0")
    _expect_error(tmp_path / "long", "trailing bytes")
    (tmp_path / "tiny").write_bytes(raw[:2])
    _expect_error(tmp_path / "tiny", "truncated IDX header")
    (tmp_path / "header").write_bytes(raw[:10])
    _expect_error(tmp_path / "header", "truncated IDX header", "expected 16 bytes")


def test_truncated_and_corrupt_gzip(tmp_path, images):
    packed = write_idx(tmp_path / "a.gz", images).read_bytes()
    (tmp_path / "cut.gz").write_bytes(packed[: len(packed) // 2])
    _expect_error(tmp_path / "cut.gz", "truncated gzip")
    broken = bytearray(packed)
    broken[20:60] = b"\xff" * 40
    (tmp_path / "broken.gz").write_bytes(bytes(broken))
    _expect_error(tmp_path / "broken.gz", "gzip")


def test_wrong_dims(tmp_path, images):
    path = write_idx(tmp_path / "flat", images.reshape(5, -1))
    _expect_error(path, "wrong number of dimensions", "expected 3, found 2", ndim=3)
    zero = tmp_path / "zero"
    zero.write_bytes(bytes([0, 0, 8, 0]))
    _expect_error(zero, "wrong number of dimensions")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="write_idx"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
