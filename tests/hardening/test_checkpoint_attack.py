"""The checkpoint loader under attack.

Each malformed file of the catalog below is rejected with one ``SerializationError`` naming the
file and the cause, without allocating more than a small multiple of the file's size; random
and mutated byte strings (hypothesis: ``ci`` 1,000, ``thorough`` 10,000) raise nothing else and
allocate no more; and save-then-load is bit-identical for every dtype, 0-d and empty tensors and
optimizer state.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import re
import struct
import tempfile
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
from tests.hardening import figures
from tinydl import layers as nn
from tinydl import optim
from tinydl.io import SerializationError, load_checkpoint, save_checkpoint
from tinydl.layers.module import StateDictError

pytest.importorskip("safetensors", reason="the .safetensors format needs the safetensors package")

EXTENSIONS = [".safetensors", ".npz", ".SAFETENSORS", ".NPZ"]  # every accepted spelling
DTYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
          "float16", "float32", "float64"]  # fmt: skip

# Loading reads the file once and parses it; JSON objects are larger than their text, so the
# bound is a constant factor. What must never happen is an allocation sized by a length,
# shape or count the file merely declares.
ALLOCATION_FACTOR, ALLOCATION_SLACK = 32, 1 << 20


# ----------------------------------------------------------------------------- builders


def st_file(header, data=b"", length=None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(raw) if length is None else length
    return struct.pack("<Q", n) + raw + data


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def npy(array, **kwargs) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, **kwargs)
    return buf.getvalue()


def zip_of(members, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a repeated name is the point of one case
        for name, payload in members:
            zf.writestr(name, payload)
    return buf.getvalue()


def set_member_sizes(blob: bytes, file_size=None, compress_size=None) -> bytes:
    """Rewrite the sizes that the central directory (and local header) of a one-member zip
    claim, leaving the data alone: a zip that lies about its size."""
    out = bytearray(blob)
    central = blob.rindex(b"PK\x01\x02")
    local = blob.index(b"PK\x03\x04")
    for offset, sizes_at in ((central, 20), (local, 18)):
        if compress_size is not None:
            struct.pack_into("<I", out, offset + sizes_at, compress_size)
        if file_size is not None:
            struct.pack_into("<I", out, offset + sizes_at + 4, file_size)
    return bytes(out)


def valid_safetensors() -> bytes:
    return st_file({"a": entry(), "b": entry("I8", (3,), (8, 11))}, bytes(11))


def tinydl_meta(tree, version=1):
    meta = json.dumps({"format": "tinydl", "version": version, "tree": tree})
    return {"__metadata__": {"__tinydl__": meta}}


class Exploit:
    """Unpickling this would create a file: proof that nothing is ever unpickled."""

    target = "/nonexistent/pwned"

    def __reduce__(self):
        return (open, (self.target, "w"))


PICKLE = pickle.dumps({"weight": Exploit()}, protocol=4)
OBJECT_NPY = npy(np.array([1, "a", None], dtype=object), allow_pickle=True)


def _big_claim_npy(count: int) -> bytes:
    """A .npy header for ``count`` float64 values, and no data."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (count,)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _size_lie(compression, stored_too=False) -> bytes:
    """A one-member archive whose .npy header claims 4 GB of float64 and whose zip entry
    claims the same 4 GB (so the two agree) while the file holds only the header: NumPy would
    allocate the 4 GB before finding the data missing."""
    payload = _big_claim_npy(500_000_000)
    claimed = len(payload) + 8 * 500_000_000
    blob = zip_of([("w.npy", payload)], compression)
    return set_member_sizes(blob, claimed, claimed if stored_too else None)


# name: (file bytes, extension, what the message must say)
FILE_CASES = {
    "empty (.safetensors)": (b"", ".safetensors", "the file is empty"),
    "empty (.npz)": (b"", ".npz", "the file is empty"),
    "under 8 bytes": (b"\x05\x00\x00", ".safetensors", "only 3 bytes, no 8-byte header"),
    "header length beyond the file": (
        st_file({"a": entry()}, bytes(8), length=5000),
        ".safetensors",
        "goes beyond the end of the file",
    ),
    "header length above 100 MB": (
        st_file({}, b"", length=200_000_000),
        ".safetensors",
        "exceeds the 100 MB limit",
    ),
    "header length 2**64-1": (
        st_file({}, b"", length=2**64 - 1),
        ".safetensors",
        "header length 18446744073709551615 exceeds the 100 MB limit",
    ),
    "header not UTF-8": (st_file(b'{"\xff\xfe": 1}'), ".safetensors", "not UTF-8"),
    "header invalid JSON": (st_file(b'{"a": {"dtype": '), ".safetensors", "invalid JSON header"),
    "header not an object": (st_file(b'["a", "b"]'), ".safetensors", "does not start with '{'"),
    "header nests without end": (
        st_file(b'{"a": ' + b"[" * 100_000),
        ".safetensors",
        "invalid JSON header",
    ),
    "unknown dtype": (st_file({"a": entry("F128")}, bytes(8)), ".safetensors", "unknown dtype"),
    "bfloat16 (no NumPy dtype)": (
        st_file({"a": entry("BF16", (2,), (0, 4))}, bytes(4)),
        ".safetensors",
        "unknown dtype 'BF16'",
    ),
    "negative offsets": (
        st_file({"a": entry(offsets=(-8, 0))}, bytes(8)),
        ".safetensors",
        "negative data_offsets [-8, 0]",
    ),
    "offsets that end before they begin": (
        st_file({"a": entry(offsets=(8, 0))}, bytes(8)),
        ".safetensors",
        "end before they begin",
    ),
    "overlapping offsets": (
        st_file({"a": entry(), "b": entry(offsets=(4, 12))}, bytes(12)),
        ".safetensors",
        "an overlap of 4 bytes",
    ),
    "gapped offsets": (
        st_file({"a": entry(offsets=(4, 12))}, bytes(12)),
        ".safetensors",
        "a gap of 4 bytes",
    ),
    "offsets out of range": (
        st_file({"a": entry(offsets=(0, 8))}, bytes(4)),
        ".safetensors",
        "out of range of the 4-byte data section",
    ),
    "byte length not shape x itemsize": (
        st_file({"a": entry(offsets=(0, 4))}, bytes(4)),
        ".safetensors",
        "span 4 bytes but shape [2] of F32 needs 8",
    ),
    "shape product overflow": (
        st_file({"a": entry(shape=(2**62, 2**62, 16), offsets=(0, 8))}, bytes(8)),
        ".safetensors",
        "overflows",
    ),
    "shape product beyond the data": (
        st_file({"a": entry(shape=(2**30, 2**30), offsets=(0, 8))}, bytes(8)),
        ".safetensors",
        "needs 4611686018427387904",
    ),
    "truncated data": (valid_safetensors()[:-3], ".safetensors", "truncated or corrupt"),
    "trailing bytes": (valid_safetensors() + b"\x00\x00", ".safetensors", "2 trailing bytes"),
    "duplicate keys": (
        st_file(
            b'{"a": '
            + json.dumps(entry()).encode()
            + b', "a": '
            + json.dumps(entry()).encode()
            + b"}",
            bytes(8),
        ),  # fmt: skip
        ".safetensors",
        "repeats a key",
    ),
    "object array dtype": (
        st_file({"a": entry("O", (1,), (0, 8))}, bytes(8)),
        ".safetensors",
        "unknown dtype 'O'",
    ),
    "metadata names a missing tensor": (
        st_file(tinydl_meta({"w": {"__array__": "nope"}})),
        ".safetensors",
        "'nope', which the file does not hold",
    ),
    "newer format version": (
        st_file(tinydl_meta({}, version=99)),
        ".safetensors",
        "format version 99 is newer",
    ),
    "single .npy as .npz": (npy(np.ones(2)), ".npz", "a single .npy array"),
    "not a zip": (b"GIF89a not an archive", ".npz", "not an .npz (zip) archive"),
    "truncated zip": (
        zip_of([("w.npy", npy(np.arange(64.0)))])[:300],
        ".npz",
        "corrupt archive",
    ),
    "member not .npy": (zip_of([("w.txt", b"12345")]), ".npz", "is not a plain .npy array"),
    "repeated member": (
        zip_of([("w.npy", npy(np.ones(1))), ("w.npy", npy(np.ones(1)))]),
        ".npz",
        "repeats a member name",
    ),
    "npy data truncated": (
        zip_of([("w.npy", npy(np.ones(4))[:-8])]),
        ".npz",
        "its header needs",
    ),
    "member claims 4 GB (stored, sizes agree)": (
        _size_lie(zipfile.ZIP_STORED, stored_too=True),
        ".npz",
        "stored bytes in a",
    ),
    "member claims 4 GB (stored)": (
        _size_lie(zipfile.ZIP_STORED),
        ".npz",
        "uncompressed",
    ),
    "member claims 4 GB (deflated)": (
        _size_lie(zipfile.ZIP_DEFLATED),
        ".npz",
        "more than deflate can expand",
    ),
}
for _ext in EXTENSIONS:
    cause = "pickled data, which tinydl never loads"
    FILE_CASES[f"pickle as {_ext}"] = (PICKLE, _ext, cause)
    if _ext.lower() == ".npz":
        FILE_CASES[f"object array in {_ext}"] = (
            zip_of([("x.npy", OBJECT_NPY)]),
            _ext,
            "dtype object refused (object arrays need pickle)",
        )
    else:
        FILE_CASES[f"object array in {_ext}"] = (
            st_file({"x": entry("object", (1,), (0, 8))}, bytes(8)),
            _ext,
            "unknown dtype 'object'",
        )


def _model():
    return nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))


def _tamper(state: dict, case: str) -> dict:
    state = dict(state)
    if case == "missing key":
        del state["2.bias"]
    elif case == "unexpected key":
        state["3.weight"] = np.ones((1, 1), np.float32)
    elif case == "wrongly-shaped key":
        state["0.weight"] = np.ones((2, 4), np.float32)
    elif case == "wrongly-typed key (string)":
        state["0.bias"] = "not a tensor"
    elif case == "wrongly-typed key (nested dict)":
        state["2.weight"] = {"weight": np.ones((1, 2), np.float32)}
    return state


# name: what the StateDictError must say
MODEL_CASES = {
    "missing key": "missing keys: 2.bias",
    "unexpected key": "unexpected keys: 3.weight",
    "wrongly-shaped key": "0.weight: checkpoint (2, 4) vs model (2, 3)",
    "wrongly-typed key (string)": "0.bias: checkpoint () vs model (2,)",
    "wrongly-typed key (nested dict)": "2.weight: checkpoint () vs model (1, 2)",
}
MALFORMED_COUNT = len(FILE_CASES) + len(MODEL_CASES)


# ----------------------------------------------------------------------------- the catalog


def _peak_of(fn):
    """Run ``fn`` and return (its result or exception, peak bytes it allocated)."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - returned for the caller to judge
            result = exc
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing:
            tracemalloc.stop()


def _allowed(size: int) -> int:
    return ALLOCATION_FACTOR * size + ALLOCATION_SLACK


def test_the_catalog_is_large_enough():
    assert len(FILE_CASES) >= 25 and MALFORMED_COUNT >= 25


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_malformed_file_is_refused_with_its_cause(tmp_path, case):
    blob, ext, cause = FILE_CASES[case]
    path = tmp_path / f"model{ext}"
    path.write_bytes(blob)
    result, peak = _peak_of(lambda: td.load(path))
    assert isinstance(result, SerializationError), f"{case}: got {result!r}"
    message = str(result)
    assert str(path) in message, message
    assert re.search(re.escape(cause), message), f"{case}: {message!r} does not say {cause!r}"
    assert peak <= _allowed(len(blob)), f"{case}: allocated {peak} bytes for {len(blob)}"
    with pytest.raises(SerializationError):  # and through the checkpoint entry point
        load_checkpoint(path)


@pytest.mark.parametrize("case", list(MODEL_CASES))
@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
def test_checkpoint_that_does_not_fit_the_model(tmp_path, case, ext):
    path = tmp_path / f"model{ext}"
    td.save(_tamper(_model().state_dict(), case), path)
    model = _model()
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(StateDictError) as info:
        model.load_state_dict(td.load(path))
    assert MODEL_CASES[case] in str(info.value), str(info.value)
    assert isinstance(info.value, td.SerializationError)  # one exception type for a bad load
    for p, b in zip(model.parameters(), before):  # nothing was half-loaded
        np.testing.assert_array_equal(p.data, b)


# ----------------------------------------------------------------------------- fuzz


@functools.cache
def valid_blobs() -> tuple:
    """Valid files of both formats: model weights, an optimizer state, odd dtypes and shapes.
    Built from explicit generators, so the default generator is left alone."""
    rng = np.random.default_rng(0)
    weights = {
        "0.weight": rng.standard_normal((2, 3)).astype(np.float32),
        "0.bias": np.zeros(2, np.float32),
        "2.weight": np.ones((1, 2), np.float32),
    }
    params = [td.Parameter(td.tensor(w.copy())) for w in weights.values()]
    opt = optim.Adam(params)
    for p in params:
        p.grad = td.tensor(rng.standard_normal(p.shape).astype(np.float32))
    opt.step()
    states = [
        weights,
        {"opt": opt.state_dict(), "epoch": 3, "name": "run ✓"},
        {"e": np.zeros((0, 3), np.int8), "s": np.float16(2.5), "b": rng.random(5) > 0.5},
    ]
    blobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, state in enumerate(states):
            for ext in (".safetensors", ".npz"):
                path = Path(tmp) / f"s{i}{ext}"
                td.save(state, path)
                blobs.append((ext, path.read_bytes()))
    return tuple(blobs)


@st.composite
def _attack(draw):
    """A random byte string, or a valid file with a few bytes set, cut, inserted or swapped."""
    ext = draw(st.sampled_from([".safetensors", ".npz"]))
    if draw(st.integers(0, 4)) == 0:
        return ext, draw(st.binary(max_size=600))
    ext, blob = valid_blobs()[draw(st.integers(0, len(valid_blobs()) - 1))]
    blob = bytearray(blob)
    for _ in range(draw(st.integers(1, 6))):
        if not blob:
            break
        i = draw(st.integers(0, len(blob) - 1))
        op = draw(st.sampled_from(["set", "cut", "insert", "int", "truncate"]))
        if op == "set":
            blob[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del blob[i : i + draw(st.integers(1, 32))]
        elif op == "insert":
            blob[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "int":  # a length or offset field set to an extreme value
            value = draw(st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1]))
            blob[i : i + 8] = value.to_bytes(8, "little")
        else:
            del blob[i:]
    return ext, bytes(blob)


@figures.profile_settings(figures.FUZZ_EXAMPLES)
@given(attack=_attack())
def test_fuzz_only_serialization_error_escapes(tmp_path_factory, attack):
    ext, blob = attack
    figures.RAN["checkpoint fuzz"] += 1
    path = tmp_path_factory.getbasetemp() / f"fuzz{ext}"
    path.write_bytes(blob)
    result, peak = _peak_of(lambda: td.load(path))
    if isinstance(result, Exception) and not isinstance(result, SerializationError):
        raise result
    assert peak <= _allowed(len(blob)), f"allocated {peak} bytes for a {len(blob)}-byte file"
    if not isinstance(result, Exception):
        assert isinstance(result, dict)


def test_fuzz_counts_follow_the_profile():
    assert figures.FUZZ_EXAMPLES["ci"] >= 1000 and figures.FUZZ_EXAMPLES["thorough"] >= 10_000
    if figures.profile() in figures.FUZZ_EXAMPLES:
        wanted = figures.FUZZ_EXAMPLES[figures.profile()]
        used = test_fuzz_only_serialization_error_escapes._hypothesis_internal_use_settings
        assert used.max_examples == wanted


# ----------------------------------------------------------------------------- round trips


def _random_array(rng, dtype, shape):
    """Every bit pattern (NaN payloads, -0.0, subnormals); bools stay 0/1."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def _same_bits(got, want):
    assert type(got) is type(want), (got, want)
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            _same_bits(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _same_bits(g, w)
    else:
        assert got == want


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
def test_save_then_load_is_bit_identical_for_every_dtype(tmp_path, ext):
    rng = np.random.default_rng(1)
    shapes = [(), (0,), (3, 0, 2), (7,), (2, 3, 4)]
    state = {
        f"{dtype}.{i}": _random_array(rng, dtype, shape)
        for dtype in DTYPES
        for i, shape in enumerate(shapes)
    }
    td.save(state, tmp_path / f"m{ext}")
    _same_bits(td.load(tmp_path / f"m{ext}"), state)


@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
@pytest.mark.parametrize("make", [optim.Adam, optim.SGD, optim.RMSprop, optim.AdamW])
def test_optimizer_state_round_trip_resumes_bit_identically(tmp_path, ext, make):
    def train(model, opt, steps, seed):
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            x = td.tensor(rng.standard_normal((5, 3)).astype(np.float32))
            opt.zero_grad()
            (model(x) ** 2).mean().backward()
            opt.step()

    kwargs = {"lr": 0.01, "momentum": 0.9} if make is optim.SGD else {"lr": 0.01}
    td.manual_seed(0)
    model = _model()
    opt = make(model.parameters(), **kwargs)
    train(model, opt, 3, seed=1)
    path = tmp_path / f"ckpt{ext}"
    save_checkpoint(path, model.state_dict(), opt.state_dict(), epoch=3)
    ckpt = load_checkpoint(path)
    _same_bits(ckpt["model_state"], {k: np.asarray(v.data) for k, v in
                                     model.state_dict().items()})  # fmt: skip

    td.manual_seed(1)  # a different initialisation, overwritten by the checkpoint
    resumed = _model()
    resumed_opt = make(resumed.parameters(), **kwargs)
    resumed.load_state_dict(ckpt["model_state"])
    resumed_opt.load_state_dict(ckpt["optimizer_state"])
    train(model, opt, 4, seed=2)
    train(resumed, resumed_opt, 4, seed=2)
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert p.data.tobytes() == q.data.tobytes()
    assert ckpt["epoch"] == 3


def test_loading_never_unpickles(tmp_path):
    target = tmp_path / "pwned"
    Exploit.target = str(target)
    try:
        for ext in EXTENSIONS:
            path = tmp_path / f"m{ext}"
            path.write_bytes(pickle.dumps({"weight": Exploit()}))
            with pytest.raises(SerializationError, match="pickled"):
                td.load(path)
    finally:
        Exploit.target = "/nonexistent/pwned"
    assert not target.exists()


def test_compressed_npz_written_elsewhere_still_loads(tmp_path):
    """The deflate-ratio check refuses lies, not honest compression (1000:1 zeros)."""
    zeros = np.zeros(200_000)
    np.savez_compressed(tmp_path / "z.npz", w=zeros)
    assert (tmp_path / "z.npz").stat().st_size < zeros.nbytes // 100
    np.testing.assert_array_equal(td.load(tmp_path / "z.npz")["w"], zeros)
