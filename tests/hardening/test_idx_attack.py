"""The MNIST/IDX reader under attack: each malformed file is refused with a ``DatasetError``
that names the file, what was expected and what was found; mutated and random files
(hypothesis: ``ci`` 1,000, ``thorough`` 10,000) raise nothing else."""

from __future__ import annotations

import gzip
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hardening import figures
from tinydl.data import MNIST, DatasetError
from tinydl.data.idx import read_idx

N = 3
IMAGES = (np.arange(N * 28 * 28) % 251).astype(np.uint8).reshape(N, 28, 28)
LABELS = np.array([7, 0, 9], np.uint8)


def idx(array, code=0x08, dims=None, byteorder=">") -> bytes:
    """An IDX file: magic, one 4-byte size per dimension (``byteorder``), the data."""
    array = np.asarray(array)
    shape = array.shape if dims is None else dims
    sizes = b"".join(struct.pack(f"{byteorder}I", n) for n in shape)
    return bytes([0, 0, code, len(shape)]) + sizes + array.tobytes()


GOOD_IMAGES, GOOD_LABELS = idx(IMAGES), idx(LABELS)
GZ = gzip.compress(GOOD_IMAGES, mtime=0)

# name: (images file bytes, labels file bytes, the bad file, a phrase of its message)
CASES = {
    "wrong magic": (b"\x12\x34" + GOOD_IMAGES[2:], GOOD_LABELS, "images", "not an IDX file"),
    "unknown type code": (
        GOOD_IMAGES[:2] + b"\x0a" + GOOD_IMAGES[3:],
        GOOD_LABELS,
        "images",
        "type code",
    ),
    "wrong type code (int32 labels)": (
        GOOD_IMAGES,
        idx(LABELS.astype(">i4"), code=0x0C),
        "labels",
        "wrong element type",
    ),
    "wrong number of dimensions": (
        idx(IMAGES.reshape(N, -1)),
        GOOD_LABELS,
        "images",
        "wrong number of dimensions",
    ),  # fmt: skip
    "zero dimensions": (bytes([0, 0, 8, 0]), GOOD_LABELS, "images", "dimensions"),
    "payload shorter than the dimensions": (
        GOOD_IMAGES[:-100],
        GOOD_LABELS,
        "images",
        "truncated payload",
    ),
    "payload longer than the dimensions": (
        GOOD_IMAGES,
        GOOD_LABELS + b"\x01\x02",
        "labels",
        "trailing bytes",
    ),
    "truncated header": (GOOD_IMAGES[:10], GOOD_LABELS, "images", "truncated IDX header"),
    "truncated gzip": (GZ[: len(GZ) // 2], GOOD_LABELS, "images", "truncated gzip"),
    "corrupt gzip": (GZ[:20] + b"\xff" * 40 + GZ[60:], GOOD_LABELS, "images", "corrupt gzip"),
    "image and label counts differ": (
        GOOD_IMAGES,
        idx(LABELS[:2]),
        "labels",
        "3 images but",
    ),
    "a label above 9": (GOOD_IMAGES, idx(np.array([7, 10, 9], np.uint8)), "labels", "label 10"),
    "little-endian dimensions": (
        idx(IMAGES, byteorder="<"),
        GOOD_LABELS,
        "images",
        "little-endian",
    ),
    "dimensions whose product wraps int64 to 0": (
        idx(np.zeros(0, np.uint8), dims=(2**22,) * 3),
        GOOD_LABELS,
        "images",
        "truncated payload",
    ),
    "wrong image size": (idx(IMAGES[:, :20, :20]), GOOD_LABELS, "images", "wrong image size"),
    "non-IDX bytes (a PNG)": (
        b"\x89PNG\r\n\x1a\n" + bytes(64),
        GOOD_LABELS,
        "images",
        "not an IDX file",
    ),
    "non-IDX bytes (text)": (GOOD_IMAGES, b"7,0,9\n", "labels", "not an IDX file"),
    "empty file": (b"", GOOD_LABELS, "images", "expected at least 4 bytes, found 0"),
}
MALFORMED_COUNT = len(CASES)


def _write_split(folder, images: bytes, labels: bytes, gz: bool):
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, stem, blob in (("images", "train-images-idx3-ubyte", images),
                             ("labels", "train-labels-idx1-ubyte", labels)):  # fmt: skip
        is_gz = gz or blob.startswith(b"\x1f\x8b")
        path = folder / (stem + (".gz" if is_gz else ""))
        path.write_bytes(gzip.compress(blob, mtime=0) if gz and not blob[:2] == b"\x1f\x8b"
                         else blob)  # fmt: skip
        paths[kind] = path
    return paths


def test_the_catalog_is_large_enough():
    assert MALFORMED_COUNT >= 12


def test_the_valid_files_load(tmp_path):
    _write_split(tmp_path, GOOD_IMAGES, GOOD_LABELS, gz=False)
    ds = MNIST(root=tmp_path)
    np.testing.assert_array_equal(ds.data, IMAGES)
    np.testing.assert_array_equal(ds.targets, LABELS)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("case", list(CASES))
def test_malformed_idx_is_refused_naming_file_expected_found(tmp_path, monkeypatch, case, gz):
    monkeypatch.delenv("TINYDL_DATA", raising=False)
    monkeypatch.setenv("TINYDL_CACHE", str(tmp_path / "cache"))
    images, labels, bad, phrase = CASES[case]
    paths = _write_split(tmp_path / "d", images, labels, gz)
    with pytest.raises(DatasetError) as info:
        MNIST(root=tmp_path / "d")
    message = str(info.value)
    assert str(paths[bad]) in message, message
    assert "expected" in message and "found" in message, message
    assert phrase in message, message


@pytest.mark.parametrize(
    "shape, cause",
    [
        ((2**22,) * 3, "truncated payload"),  # the byte count wraps an int64 to 0
        ((65536,) * 4, "truncated payload"),
        ((2**32 - 1,) * 2, "truncated payload"),
        ((0, 2**32 - 1, 2**32 - 1, 2**32 - 1), "impossible dimensions"),  # empty, unaddressable
        ((0, 2**32 - 1), None),  # an honest empty array
    ],
)
def test_huge_or_wrapping_dimensions_never_reach_numpy(tmp_path, shape, cause):
    path = tmp_path / "huge"
    path.write_bytes(idx(np.zeros(0, np.uint8), dims=shape))
    if cause is None:
        assert read_idx(path).shape == shape
        return
    with pytest.raises(DatasetError, match=cause) as info:
        read_idx(path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------- fuzz

VALID = [GOOD_IMAGES, GOOD_LABELS, idx(np.arange(6, dtype=">f4").reshape(2, 3), code=0x0D),
         idx(np.arange(4, dtype=">i2"), code=0x0B)]  # fmt: skip


@st.composite
def _attack(draw):
    if draw(st.integers(0, 4)) == 0:
        blob = draw(st.binary(max_size=200))
    else:
        blob = bytearray(draw(st.sampled_from(VALID)))
        for _ in range(draw(st.integers(1, 4))):
            if not blob:
                break
            i = draw(st.integers(0, min(len(blob) - 1, 40)))  # mostly the header
            op = draw(st.sampled_from(["set", "cut", "insert", "truncate"]))
            if op == "set":
                blob[i] = draw(st.integers(0, 255))
            elif op == "cut":
                del blob[i : i + draw(st.integers(1, 8))]
            elif op == "insert":
                blob[i:i] = draw(st.binary(min_size=1, max_size=8))
            else:
                del blob[i:]
        blob = bytes(blob)
    return (gzip.compress(blob, mtime=0) if draw(st.booleans()) else blob), len(blob)


@figures.profile_settings(figures.FUZZ_EXAMPLES)
@given(attack=_attack())
def test_fuzz_only_dataset_error_escapes(tmp_path_factory, attack):
    blob, raw_size = attack
    figures.RAN["IDX fuzz"] += 1
    path = tmp_path_factory.getbasetemp() / "fuzz-idx"
    path.write_bytes(blob)
    tracemalloc.start()
    try:
        try:
            array = read_idx(path)
        except DatasetError as exc:
            assert str(path) in str(exc)
            array = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 8 * raw_size + (1 << 20), f"allocated {peak} bytes for {raw_size}"
    if array is not None:
        assert array.dtype.isnative and array.flags.writeable
