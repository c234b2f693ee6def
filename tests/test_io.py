"""tinydl.io: bit-exact round trips, atomic writes, and malformed files that must be refused."""

import json
import math
import os
import pickle
import re
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
from tinydl import io as tio
from tinydl.io import SerializationError

FORMATS = [".safetensors", ".npz"]
DTYPES = [
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
]
SHAPES = [(), (0,), (3, 0, 2), (5,), (2, 3, 4)]


def _needs(fmt):
    if fmt == ".safetensors":
        pytest.importorskip("safetensors", reason="the .safetensors format needs safetensors")
    return fmt


@pytest.fixture(params=FORMATS)
def fmt(request):
    return _needs(request.param)


def _random_array(rng, dtype, shape):
    """Every bit pattern, NaN payloads and -0.0 included (bools stay 0/1)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def _assert_same(got, want):
    """Deep equality, arrays bit for bit, types exact (tuple vs list, int vs float)."""
    assert type(got) is type(want) or isinstance(want, td.Tensor), (got, want)
    if isinstance(want, (np.ndarray, td.Tensor)):
        want = np.asarray(want.data if isinstance(want, td.Tensor) else want)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
        assert got.flags.writeable and got.flags.c_contiguous
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            _assert_same(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_is_bit_exact_for_every_dtype_and_shape(fmt, tmp_path, rng, dtype):
    state = {f"a{i}": _random_array(rng, dtype, s) for i, s in enumerate(SHAPES)}
    tio.save(state, tmp_path / f"m{fmt}")
    _assert_same(tio.load(tmp_path / f"m{fmt}"), state)


def test_round_trip_of_odd_layouts(fmt, tmp_path, rng):
    a = rng.normal(size=(4, 6))
    state = {"t": a.T, "step": a[::2, 1::3], "big": a.astype(">f8"), "f": np.asfortranarray(a)}
    tio.save(state, tmp_path / f"m{fmt}")
    got = tio.load(tmp_path / f"m{fmt}")
    for k, v in state.items():
        np.testing.assert_array_equal(got[k], v)
        assert got[k].dtype == v.dtype.newbyteorder("=")


def test_round_trip_nested_with_metadata_and_tensors(fmt, tmp_path, rng):
    w = td.tensor(rng.normal(size=(3, 2)).astype(np.float32), requires_grad=True)
    state = {
        "layers": {"0": {"weight": w, "bias": np.zeros(2, np.float32)}},
        "blocks": [np.arange(3), {"x": np.ones(1)}, (1, 2.5)],
        "meta": {
            "name": "lenet ✓",
            "n": 2**70,
            "f": 0.1,
            "nan": math.nan,
            "inf": -math.inf,
            "none": None,
            "flag": True,
            "empty": {},
            "tup": (),
            "np": np.float32(0.5),
        },
        "int_keys": {0: "a", 7: [1, 2], "s": 3},
        "__array__": "a user key that looks like a tag",
        "z.dotted.key": np.int64(3),
    }
    tio.save(state, tmp_path / f"m{fmt}")
    got = tio.load(tmp_path / f"m{fmt}")
    want = dict(state, layers={"0": {"weight": w.data, "bias": state["layers"]["0"]["bias"]}})
    want["meta"] = dict(state["meta"], np=0.5)
    want["z.dotted.key"] = 3  # NumPy scalars come back as Python numbers
    _assert_same(got, want)
    tensors = tio.load(tmp_path / f"m{fmt}", as_tensors=True)
    assert isinstance(tensors["layers"]["0"]["weight"], td.Tensor)
    assert isinstance(tensors["blocks"][2], tuple)


class _DeviceArray:
    """Stands in for a CuPy array: save must copy it to the host with ``.get()``."""

    __module__ = "cupy._core.core"  # what tinydl.backend.is_device_array looks at

    def __init__(self, array):
        self._a, self.gets = array, 0
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def get(self):
        self.gets += 1
        return self._a.copy()

    def __array__(self, *args, **kwargs):
        raise AssertionError("a device array was read through np.asarray, not .get()")


def test_device_arrays_are_saved_through_one_host_copy(fmt, tmp_path):
    w, b = np.arange(6.0).reshape(2, 3), np.ones(2, np.int8)
    on_device = {"w": _DeviceArray(w), "fc": [_DeviceArray(b)]}
    tio.save(on_device, tmp_path / f"m{fmt}")
    _assert_same(tio.load(tmp_path / f"m{fmt}"), {"w": w, "fc": [b]})
    assert on_device["w"].gets == 1 and on_device["fc"][0].gets == 1


def test_array_keys_in_the_file_are_the_dotted_paths(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs safetensors")
    tio.save(
        {"fc": {"weight": np.ones(2)}, "conv.bias": np.zeros(1), "ep": 1},
        tmp_path / "m.safetensors",
    )
    raw = safetensors_numpy.load((tmp_path / "m.safetensors").read_bytes())
    assert set(raw) == {"fc.weight", "conv.bias"}
    tio.save({"fc": {"weight": np.ones(2)}}, tmp_path / "m.npz")
    assert set(np.load(tmp_path / "m.npz").files) == {"fc.weight", "__tinydl__"}


def test_files_written_elsewhere_load_as_flat_dicts(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.arange(4.0), b=np.ones(2, np.int8))
    _assert_same(tio.load(tmp_path / "plain.npz"), {"w": np.arange(4.0), "b": np.ones(2, np.int8)})
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs safetensors")
    (tmp_path / "plain.safetensors").write_bytes(
        safetensors_numpy.save({"w": np.arange(4.0)}, metadata={"who": "someone else"})
    )
    _assert_same(tio.load(tmp_path / "plain.safetensors"), {"w": np.arange(4.0)})


def test_npz_writes_are_deterministic(tmp_path):
    state = {"w": np.arange(5.0), "file": np.ones(1), "allow_pickle": 3}  # np.savez's own names
    tio.save(state, tmp_path / "a.npz")
    tio.save(state, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    _assert_same(tio.load(tmp_path / "a.npz"), state)


def test_checkpoint_round_trip_with_optimizer_state(fmt, tmp_path, rng):
    model = {"fc.weight": rng.normal(size=(4, 3)).astype(np.float32), "fc.bias": np.zeros(4)}
    opt = {
        "state": {
            0: {"step": 3, "exp_avg": rng.normal(size=(4, 3)), "exp_avg_sq": np.ones(4)},
            1: {"step": 3, "momentum_buffer": None},
        },
        "param_groups": [{"lr": 0.1, "betas": [0.9, 0.999], "params": [0, 1], "nesterov": False}],
    }
    sched = {"last_epoch": 4, "base_lrs": [0.1], "milestones": (2, 5)}
    path = tmp_path / f"ckpt{fmt}"
    tio.save_checkpoint(path, model, opt, sched, epoch=4, metrics={"val_acc": 0.987}, seed=0)
    got = tio.load_checkpoint(path)
    want = {
        "model_state": model,
        "optimizer_state": opt,
        "scheduler_state": sched,
        "epoch": 4,
        "metrics": {"val_acc": 0.987},
        "seed": 0,
    }
    _assert_same(got, want)
    tio.save_checkpoint(path, model)
    assert tio.load_checkpoint(path)["optimizer_state"] is None
    tio.save(model, path)
    with pytest.raises(SerializationError, match="not a tinydl checkpoint"):
        tio.load_checkpoint(path)


@pytest.mark.parametrize(
    "obj, match",
    [
        ({"x": np.array([object()])}, "dtype object"),
        ({"x": np.ones(2, np.complex64)}, "dtype complex64"),
        ({"x": {1, 2}}, "cannot store a set at 'x'"),
        ({"a.b": np.ones(1), "a": {"b": np.ones(1)}}, "share the key 'a.b'"),
        ({"__tinydl__": np.ones(1)}, "reserved"),
        ({"x": {True: 1}}, "keys must be str or int"),
        (np.ones(3), "expected a state dict"),
    ],
)
def test_save_refuses_what_it_cannot_store(fmt, tmp_path, obj, match):
    with pytest.raises(SerializationError, match=match):
        tio.save(obj, tmp_path / f"m{fmt}")
    assert list(tmp_path.iterdir()) == []


def test_extensions_and_folders(tmp_path):
    for name in ("m.pt", "m.pkl", "m"):
        with pytest.raises(SerializationError, match="extension"):
            tio.save({"x": np.ones(1)}, tmp_path / name)
        with pytest.raises(SerializationError, match="extension"):
            tio.load(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tio.save({"x": np.ones(1)}, tmp_path / "missing" / "m.npz")
    with pytest.raises(FileNotFoundError):
        tio.load(tmp_path / "absent.npz")


# ----------------------------------------------------------------------------- atomicity


def _half_then(exc):
    def writer(f, data):
        f.write(data[: len(data) // 2])
        raise exc

    return writer


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_save_keeps_the_previous_file(fmt, tmp_path, monkeypatch, exc):
    path = tmp_path / f"best{fmt}"
    tio.save({"w": np.arange(3.0)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(tio.atomic, "_write_chunks", _half_then(exc))
    with pytest.raises(type(exc)):
        tio.save({"w": np.arange(1000.0)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    _assert_same(tio.load(path), {"w": np.arange(3.0)})


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failing_fsync_or_rename_keeps_the_previous_file(tmp_path, monkeypatch, step):
    path = tmp_path / "best.npz"
    tio.save({"w": np.arange(3.0)}, path)
    before = path.read_bytes()

    def fail(*args):
        raise OSError(f"{step} failed")

    monkeypatch.setattr(tio.atomic.os, step, fail)
    with pytest.raises(OSError, match=f"{step} failed"):
        tio.save({"w": np.arange(9.0)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_replaces_the_file_and_respects_the_umask(tmp_path):
    path = tmp_path / "m.npz"
    tio.save({"w": np.arange(3.0)}, path)
    tio.save({"w": np.arange(4.0)}, path)
    assert tio.load(path)["w"].shape == (4,)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ----------------------------------------------------------------------------- malformed files


def _st_file(header, data=b"", length=None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(raw) if length is None else length
    return n.to_bytes(8, "little") + raw + data


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def _valid_st():
    return _st_file({"a": _entry(), "b": _entry("I8", (3,), (8, 11))}, bytes(11))


def _meta(tree, version=1):
    return {
        "__metadata__": {
            "__tinydl__": json.dumps({"format": "tinydl", "version": version, "tree": tree})
        }
    }


SAFETENSORS_CASES = {
    "empty": (b"", "empty"),
    "shorter than 8 bytes": (b"\x05\x00\x00", "only 3 bytes"),
    "header length beyond the file": (_st_file({"a": _entry()}, bytes(8), 5000), "beyond the end"),
    "header length over 100 MB": (_st_file({}, b"", 200_000_000), "100 MB"),
    "header truncated": (_valid_st()[:30], "beyond the end"),
    "not starting with {": (_st_file(b'["a"]'), "does not start with"),
    "invalid JSON header": (_st_file(b'{"a": '), "invalid JSON header"),
    "header not UTF-8": (_st_file(b'{"\xff": 1}'), "not UTF-8"),
    "repeated key": (_st_file(b'{"a": {}, "a": {}}'), "repeats a key"),
    "entry not an object": (_st_file({"a": [1, 2]}), "needs exactly dtype"),
    "unknown dtype": (_st_file({"a": _entry("F128")}, bytes(8)), "unknown dtype 'F128'"),
    "bfloat16": (_st_file({"a": _entry("BF16", (2,), (0, 4))}, bytes(4)), "unknown dtype 'BF16'"),
    "negative shape": (_st_file({"a": _entry(shape=(-2,))}, bytes(8)), "non-negative ints"),
    "shape of floats": (_st_file({"a": _entry(shape=(2.0,))}, bytes(8)), "non-negative ints"),
    "offsets not a pair": (_st_file({"a": _entry(offsets=(0,))}, bytes(8)), "not [begin, end]"),
    "offsets out of range": (_st_file({"a": _entry(offsets=(0, 8))}, bytes(4)), "out of range"),
    "data truncated": (_valid_st()[:-3], "out of range"),
    "size disagrees with shape": (_st_file({"a": _entry(offsets=(0, 4))}, bytes(4)), "needs 8"),
    "gap": (_st_file({"a": _entry(offsets=(4, 12))}, bytes(12)), "gap or overlap"),
    "overlap": (
        _st_file({"a": _entry(), "b": _entry(offsets=(4, 12))}, bytes(12)),
        "gap or overlap",
    ),
    "trailing bytes": (_valid_st() + b"xx", "2 trailing bytes"),
    "metadata not strings": (_st_file({"__metadata__": {"k": 1}}), "strings to strings"),
    "metadata not JSON": (_st_file({"__metadata__": {"__tinydl__": "{"}}), "invalid JSON metadata"),
    "metadata names a missing tensor": (_st_file(_meta({"w": {"__array__": "nope"}})), "'nope'"),
    "tensor missing from metadata": (
        _st_file({**_meta({}), "a": _entry()}, bytes(8)),
        "missing from the metadata",
    ),
    "newer format": (_st_file(_meta({}, version=99)), "newer"),
    "bad dict entry": (_st_file(_meta({"d": {"__dict__": [[True, 1]]}})), "dict entry"),
}


@pytest.mark.parametrize("case", list(SAFETENSORS_CASES))
def test_malformed_safetensors_raise_serialization_error(tmp_path, case):
    pytest.importorskip("safetensors", reason="the .safetensors format needs safetensors")
    blob, cause = SAFETENSORS_CASES[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    with pytest.raises(SerializationError, match=re.escape(cause)) as info:
        tio.load(path)
    assert str(path) in str(info.value)


class _Exploit:
    """Unpickling this would create a file: proof that loading runs no code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _npz_member(name, payload):
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, payload)
    return buf.getvalue()


def _npy(array, **kwargs):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, **kwargs)
    return buf.getvalue()


def _npz_cases(tmp_path):
    valid = tmp_path / "valid.npz"
    tio.save({"w": np.arange(8.0)}, valid)
    good = valid.read_bytes()
    flipped = bytearray(good)
    flipped[good.index(np.arange(8.0).tobytes()) + 3] ^= 0xFF
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([1, "a"], dtype=object))
    return {
        "empty": (b"", "empty"),
        "pickle": (pickle.dumps(_Exploit(str(tmp_path / "pwned")), protocol=4), "pickled"),
        "pickle protocol 0": (pickle.dumps({"a": 1}, protocol=0), "not an .npz"),
        "single npy": (_npy(np.ones(2)), "single .npy"),
        "not a zip": (b"hello world", "not an .npz"),
        "truncated zip": (good[: len(good) // 2], "corrupt archive"),
        "corrupt data": (bytes(flipped), "CRC"),
        "object array": (obj.read_bytes(), "dtype object refused"),
        "member not npy": (_npz_member("w.txt", b"123"), "not a plain .npy"),
        "npy data truncated": (_npz_member("w.npy", _npy(np.ones(4))[:-8]), "header needs"),
        "bad npy header": (_npz_member("w.npy", b"\x93NUMPY\x01\x00\x04\x00{'a'"), "corrupt"),
        "metadata not uint8": (_npz_member("__tinydl__.npy", _npy(np.ones(2))), "uint8"),
        "metadata not JSON": (
            _npz_member("__tinydl__.npy", _npy(np.frombuffer(b"{", np.uint8))),
            "invalid JSON",
        ),
    }


def test_malformed_npz_raise_serialization_error(tmp_path):
    for case, (blob, cause) in _npz_cases(tmp_path).items():
        path = tmp_path / "bad.npz"
        path.write_bytes(blob)
        with pytest.raises(SerializationError, match=re.escape(cause)) as info:
            tio.load(path)
        assert str(path) in str(info.value), case
    assert not (tmp_path / "pwned").exists()


def test_pickle_renamed_to_either_extension_never_runs(tmp_path):
    payload = pickle.dumps(_Exploit(str(tmp_path / "pwned")))
    for name in ("model.npz", "model.safetensors"):
        (tmp_path / name).write_bytes(payload)
        if name.endswith(".safetensors"):
            pytest.importorskip("safetensors", reason="needs safetensors")
        with pytest.raises(SerializationError):
            tio.load(tmp_path / name)
    assert not (tmp_path / "pwned").exists()


def test_other_format_under_the_wrong_extension(tmp_path):
    pytest.importorskip("safetensors", reason="needs safetensors")
    tio.save({"w": np.ones(2)}, tmp_path / "m.npz")
    (tmp_path / "m.safetensors").write_bytes((tmp_path / "m.npz").read_bytes())
    with pytest.raises(SerializationError, match="100 MB|beyond the end"):
        tio.load(tmp_path / "m.safetensors")
    tio.save({"w": np.ones(2)}, tmp_path / "n.safetensors")
    (tmp_path / "n.npz").write_bytes((tmp_path / "n.safetensors").read_bytes())
    with pytest.raises(SerializationError, match="not an .npz"):
        tio.load(tmp_path / "n.npz")


# ----------------------------------------------------------------------------- fuzz


def _valid_file(fmt, tmp_path):
    """The bytes of a small saved state, and that state."""
    path = tmp_path / f"v{fmt}"
    state = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.ones(2, np.int8),
        "opt": {"state": {0: {"step": 1}}, "lr": 0.1},
    }
    tio.save(state, path)
    return path.read_bytes(), state


def _refused_or_loaded_as_a_state_dict(path, fmt, saved, tmp_path):
    """A mutated file raises SerializationError, or loads as follows. An .npz checks each
    member's CRC, so it loads only as the state it held (a changed timestamp or prepended bytes
    change nothing). A .safetensors file has no checksum: a changed data byte or metadata value
    loads, but only as a state dict that save stores and load gives back bit for bit."""
    try:
        got = tio.load(path)
    except SerializationError:
        return
    if fmt == ".npz":
        _assert_same(got, saved)
    else:
        again = tmp_path / "again.safetensors"
        tio.save(got, again)
        _assert_same(tio.load(again), got)


@pytest.mark.parametrize("fmt", FORMATS)
@given(data=st.data())
def test_fuzz_mutated_files_load_or_raise_serialization_error(fmt, tmp_path_factory, data):
    _needs(fmt)
    tmp_path = tmp_path_factory.mktemp("fuzz")
    blob, saved = _valid_file(fmt, tmp_path)
    blob = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set", "cut", "insert"]))
        i = data.draw(st.integers(0, len(blob) - 1))
        if op == "set":
            blob[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del blob[i : i + data.draw(st.integers(1, 16))]
        else:
            blob[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        if not blob:
            break
    path = tmp_path / f"m{fmt}"
    path.write_bytes(bytes(blob))
    _refused_or_loaded_as_a_state_dict(path, fmt, saved, tmp_path)


def test_every_single_byte_flip_and_truncation(fmt, tmp_path):
    blob, saved = _valid_file(fmt, tmp_path)
    path = tmp_path / f"m{fmt}"
    # every byte of the start (headers, lengths), then a stride through the rest
    for i in sorted(set(range(min(len(blob), 96))) | set(range(0, len(blob), 7))):
        for mutated in (blob[:i], blob[:i] + bytes([blob[i] ^ 0x55]) + blob[i + 1 :]):
            path.write_bytes(mutated)
            _refused_or_loaded_as_a_state_dict(path, fmt, saved, tmp_path)
