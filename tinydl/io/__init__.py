"""Save and load state dicts and training checkpoints: ``.safetensors`` or ``.npz``, never pickle.

A state dict is a dict, possibly nested, of arrays (Tensors or NumPy arrays) and plain values
(None, bool, int, float, str, lists, tuples, dicts with str or int keys). Arrays are stored under
their path joined with '.' (``{'fc': {'weight': w}}`` -> ``fc.weight``), so a flat model state
dict keeps its own key names in the file. Everything else, and the nesting, is a JSON tree kept
in the file's metadata (the safetensors ``__metadata__`` map, or a uint8 array under the
reserved key ``__tinydl__`` of the ``.npz``), in which each array is ``{"__array__": key}``.

Writes are atomic: a temporary file in the same folder, flushed and fsynced, then renamed over
the target, so an interrupted save leaves the previous file intact. Loading never runs code: no
pickle, object arrays are refused, and a safetensors header is validated before the library sees
it. Any malformed file raises :class:`SerializationError` naming the file and the cause.

>>> import numpy as np, tinydl as td
>>> td.save({"w": np.ones(3, np.float32), "epoch": 2}, "model.safetensors")  # doctest: +SKIP
>>> td.load("model.safetensors")  # doctest: +SKIP
{'w': array([1., 1., 1.], dtype=float32), 'epoch': 2}
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import struct
import sys
import tokenize
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..autograd import Tensor
from ..errors import SerializationError
from . import atomic

__all__ = [
    "save",
    "load",
    "save_checkpoint",
    "load_checkpoint",
    "SerializationError",
    "HAVE_SAFETENSORS",
]

HAVE_SAFETENSORS = importlib.util.find_spec("safetensors") is not None

# fmt: off
_ST_DTYPES = {  # the safetensors dtypes that NumPy holds (not BF16 or the F8 kinds)
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "U32": np.dtype("<u4"), "U64": np.dtype("<u8"),
    "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
}
# fmt: on
_KINDS = {(d.kind, d.itemsize) for d in _ST_DTYPES.values()}
_DTYPE_NAMES = "bool, uint8/16/32/64, int8/16/32/64, float16/32/64"
_MAX_HEADER = 100_000_000  # the safetensors library's own limit
_META_KEY = "__tinydl__"
_RESERVED = {_META_KEY, "__metadata__"}
_ARRAY, _TUPLE, _DICT = "__array__", "__tuple__", "__dict__"
_TAGS = {_ARRAY, _TUPLE, _DICT}
_VERSION = 1
_CHECKPOINT = "tinydl_checkpoint"


class _Bad(Exception):
    """The cause of a failed load; :func:`load` adds the file name."""


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as e:
        raise ImportError(
            "the .safetensors format needs the safetensors package: pip install safetensors "
            "(a dependency of tinydl), or use a .npz path"
        ) from e
    return safetensors, safetensors.numpy


def _format(path: Path, fn: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".npz"):
        raise SerializationError(
            f"{fn}: '{path}' has the extension {suffix or '(none)'!r}; tinydl uses .safetensors "
            "or .npz (never pickle formats such as .pt or .pkl, which can run code when loaded)"
        )
    return suffix


# ----------------------------------------------------------------------------- tree <-> JSON


def _as_numpy(x, where: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.data
    if type(x).__module__.startswith("cupy"):
        x = x.get()
    if (x.dtype.kind, x.dtype.itemsize) not in _KINDS:
        raise SerializationError(
            f"save: the array at '{where}' has dtype {x.dtype}; tinydl stores {_DTYPE_NAMES}"
        )
    # NOTE: not np.ascontiguousarray, which turns a 0-d array into shape (1,)
    return np.require(x, x.dtype.newbyteorder("<"), ["C"])


def _encode(obj, path: tuple, arrays: dict):
    """``obj`` as JSON-able data; its arrays go into ``arrays`` under their dotted path."""
    where = ".".join(path)
    if isinstance(obj, (Tensor, np.ndarray)) or type(obj).__module__.startswith("cupy"):
        if where in arrays or where in _RESERVED:
            raise SerializationError(
                f"save: two arrays, or a reserved name, share the key {where!r}"
            )
        arrays[where] = _as_numpy(obj, where)
        return {_ARRAY: where}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, path + (str(i),), arrays) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else {_TUPLE: items}
    if isinstance(obj, Mapping):
        keys = [int(k) if isinstance(k, np.integer) else k for k in obj]
        for k in keys:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise SerializationError(
                    f"save: the dict at '{where}' has the key {k!r}; keys must be str or int"
                )
        items = [(k, _encode(v, path + (str(k),), arrays)) for k, v in zip(keys, obj.values())]
        if all(isinstance(k, str) for k in keys) and not _TAGS & set(keys):
            return dict(items)
        return {_DICT: [list(kv) for kv in items]}
    raise SerializationError(
        f"save: cannot store a {type(obj).__name__} at '{where}'; a state dict holds arrays, "
        "Tensors, None, bools, ints, floats, strings, lists, tuples and dicts"
    )


def _decode(node, arrays: dict, used: set):
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, arrays, used) for v in node]
    if not isinstance(node, dict):
        raise _Bad(f"metadata holds a {type(node).__name__}")
    if len(node) != 1 or next(iter(node)) not in _TAGS:
        return {k: _decode(v, arrays, used) for k, v in node.items()}
    ((tag, value),) = node.items()
    if tag == _ARRAY:
        if not isinstance(value, str) or value not in arrays or value in used:
            raise _Bad(f"metadata refers to the tensor {value!r}, which the file does not hold")
        used.add(value)
        return arrays[value]
    if not isinstance(value, list):
        raise _Bad(f"metadata: {tag} must hold a list")
    if tag == _TUPLE:
        return tuple(_decode(v, arrays, used) for v in value)
    out = {}
    for pair in value:
        ok = isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))
        if not ok or isinstance(pair[0], bool) or pair[0] in out:
            raise _Bad(f"metadata: bad or repeated dict entry {pair!r}")
        out[pair[0]] = _decode(pair[1], arrays, used)
    return out


def _json_object(text: str, what: str) -> dict:
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise _Bad(f"{what} repeats a key")
        return dict(pairs)

    try:
        obj = json.loads(text, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as e:
        raise _Bad(f"invalid JSON {what}: {e}") from None
    if not isinstance(obj, dict):
        raise _Bad(f"the {what} is not a JSON object")
    return obj


def _rebuild(arrays: dict, meta: str | None) -> dict:
    if meta is None:  # a file written elsewhere: its flat dict of arrays
        return dict(arrays)
    info = _json_object(meta, "metadata")
    version = info.get("version")
    if info.get("format") != "tinydl" or not isinstance(version, int) or "tree" not in info:
        raise _Bad("the tinydl metadata lacks its format, version or tree")
    if version > _VERSION:
        raise _Bad(f"format version {version} is newer than this tinydl reads ({_VERSION})")
    used: set = set()
    try:
        obj = _decode(info["tree"], arrays, used)
    except RecursionError:
        raise _Bad("the metadata nests too deeply") from None
    if not isinstance(obj, dict):
        raise _Bad("the metadata tree is not a dict")
    if len(used) != len(arrays):
        raise _Bad(f"tensors missing from the metadata: {sorted(set(arrays) - used)[:5]}")
    return obj


# ----------------------------------------------------------------------------- safetensors


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= sys.maxsize


def _short(obj, limit: int = 60) -> str:
    """``repr(obj)``, cut to ``limit`` characters (a hostile shape may be very long)."""
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def _nbytes(shape: list, itemsize: int, limit: int) -> int | None:
    """``prod(shape) * itemsize``, or None once it passes ``limit`` (a hostile shape is long)."""
    if 0 in shape:
        return 0
    n = itemsize
    for d in shape:
        n *= d
        if n > limit:
            return None
    return n


_ZIP_MAGIC = b"PK\x03\x04"


def _not_safetensors(blob: bytes) -> str | None:
    """What a file that is plainly another format holds, or None."""
    if blob[:1] == b"\x80" and blob[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "it holds pickled data, which tinydl never loads (unpickling can run code)"
    if blob.startswith(_ZIP_MAGIC):
        return "it is a zip archive (an .npz, or a PyTorch .pt/.pth file), not safetensors"
    if blob.startswith(b"\x93NUMPY"):
        return "it is a .npy array, not safetensors"
    return None


def _check_safetensors(blob: bytes) -> str | None:
    """Validate the header (before the library sees the bytes); return the tinydl metadata."""
    size = len(blob)
    if size < 8:
        raise _Bad("the file is empty" if size == 0 else f"only {size} bytes, no 8-byte header")
    other = _not_safetensors(blob)
    if other and "pickled" in other:
        raise _Bad(other)
    n = int.from_bytes(blob[:8], "little")
    if n > _MAX_HEADER:
        why = other or "corrupt or not safetensors"
        raise _Bad(f"header length {n} exceeds the 100 MB limit ({why})")
    if n > size - 8:
        raise _Bad(f"header length {n} goes beyond the end of the file ({size} bytes): truncated")
    raw = blob[8 : 8 + n]
    if not raw.startswith(b"{"):
        raise _Bad("invalid JSON header: it does not start with '{'")
    try:
        header = _json_object(raw.decode("utf-8"), "header")
    except UnicodeDecodeError:
        raise _Bad("invalid JSON header: not UTF-8") from None
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _Bad("__metadata__ must map strings to strings")
    data_len = size - 8 - n
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _Bad(f"tensor {name!r}: the entry needs exactly dtype, shape, data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
            raise _Bad(
                f"tensor {name!r}: unknown dtype {_short(dtype)} (tinydl reads {_DTYPE_NAMES})"
            )
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise _Bad(f"tensor {name!r}: shape {_short(shape)} is not a list of non-negative ints")
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise _Bad(f"tensor {name!r}: data_offsets {_short(offsets)} is not [begin, end]")
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
            raise _Bad(f"tensor {name!r}: data_offsets {_short(offsets)} are not integers")
        begin, end = offsets
        if begin < 0 or end < 0:
            raise _Bad(f"tensor {name!r}: negative data_offsets [{begin}, {end}]")
        if begin > end:
            raise _Bad(f"tensor {name!r}: data_offsets [{begin}, {end}] end before they begin")
        if end > data_len:
            raise _Bad(
                f"tensor {name!r}: data_offsets [{begin}, {end}] out of range of the "
                f"{data_len}-byte data section (truncated or corrupt)"
            )
        need = _nbytes(shape, _ST_DTYPES[dtype].itemsize, sys.maxsize)
        if need is None:
            raise _Bad(
                f"tensor {name!r}: shape {_short(shape)} overflows: its size in bytes is "
                "beyond 2**63"
            )
        if end - begin != need:
            raise _Bad(
                f"tensor {name!r}: data_offsets span {end - begin} bytes but shape "
                f"{_short(shape)} of {dtype} needs {need}"
            )
        spans.append((begin, end, name))
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            why = f"a gap of {begin - pos}" if begin > pos else f"an overlap of {pos - begin}"
            raise _Bad(
                f"tensor {name!r} starts at data byte {begin}, expected {pos}: gap or overlap "
                f"({why} bytes)"
            )
        pos = end
    if pos != data_len:
        raise _Bad(f"{data_len - pos} trailing bytes after the last tensor")
    return meta.get(_META_KEY)


def _read_safetensors(blob: bytes):
    meta = _check_safetensors(blob)
    safetensors, st = _safetensors_numpy()
    try:
        arrays = st.load(blob)
    except (safetensors.SafetensorError, ValueError, TypeError, OverflowError) as e:
        raise _Bad(f"the safetensors library rejected it: {e}") from e
    return {k: np.require(a, requirements=["C", "W"]) for k, a in arrays.items()}, meta


# ----------------------------------------------------------------------------- npz

# What a corrupt zip member can raise from zipfile or np.lib.format while being read.
_NPZ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    NotImplementedError,
    OverflowError,
    struct.error,
    SyntaxError,  # np.lib.format parses the .npy header as a Python literal
    tokenize.TokenError,
)


def _npz_bytes(arrays: dict, meta: str) -> bytes:
    # NOTE: not np.savez: its keyword interface breaks on keys named 'file' or 'allow_pickle'.
    # A fixed timestamp makes the same state give the same bytes.
    arrays = {**arrays, _META_KEY: np.frombuffer(meta.encode("utf-8"), np.uint8)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    return buf.getvalue()


# Deflate expands at most 1032:1 (258-byte matches coded in 2 bits); a member that claims more
# lies about its size, and NumPy would allocate the claimed size before reading a byte.
_DEFLATE_RATIO = 1032


def _check_npz_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> None:
    """Refuse non-.npy members, object or other unknown dtypes, and sizes that disagree."""
    name = info.filename
    if not name.endswith(".npy") or info.flag_bits & 0x1:
        raise _Bad(f"member {name!r} is not a plain .npy array")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Bad(f"member {name!r} uses an unsupported compression")
    if info.compress_size > size:
        raise _Bad(
            f"member {name!r} claims {info.compress_size} stored bytes in a {size}-byte file"
        )
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise _Bad(
            f"member {name!r} claims {info.file_size} bytes but stores {info.compress_size} "
            "uncompressed"
        )
    if info.file_size > _DEFLATE_RATIO * info.compress_size + 1024:
        raise _Bad(
            f"member {name!r} claims {info.file_size} bytes from {info.compress_size} "
            "compressed ones, more than deflate can expand"
        )
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _Bad(f"member {name!r}: .npy version {version} is not supported")
        if (dtype.kind, dtype.itemsize) not in _KINDS or dtype.fields is not None:
            raise _Bad(f"member {name!r}: dtype {dtype} refused (object arrays need pickle)")
        need = f.tell() + math.prod(shape) * dtype.itemsize
    if need != info.file_size:
        raise _Bad(f"member {name!r} holds {info.file_size} bytes, its header needs {need}")


def _read_npz(blob: bytes):
    if not blob:
        raise _Bad("the file is empty")
    if blob[:1] == b"\x80":
        raise _Bad("it holds pickled data, which tinydl never loads (unpickling can run code)")
    if blob.startswith(b"\x93NUMPY"):
        raise _Bad("it is a single .npy array, not an .npz archive")
    if not blob.startswith(b"PK"):
        raise _Bad(f"not an .npz (zip) archive: it starts with {blob[:8]!r}")
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            infos = zf.infolist()
            if len({i.filename for i in infos}) != len(infos):
                raise _Bad("the archive repeats a member name")
            for info in infos:
                _check_npz_member(zf, info, len(blob))
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except _NPZ_ERRORS as e:
        raise _Bad(f"corrupt archive: {type(e).__name__}: {e}") from e
    arrays = {k: np.require(a, a.dtype.newbyteorder("<"), ["C", "W"]) for k, a in arrays.items()}
    meta = arrays.pop(_META_KEY, None)
    if meta is None:
        return arrays, None
    if meta.dtype != np.uint8 or meta.ndim != 1:
        raise _Bad(f"the {_META_KEY} entry is not a 1-D uint8 array")
    try:
        return arrays, meta.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise _Bad("the metadata is not UTF-8") from None


# ----------------------------------------------------------------------------- public


def save(obj: Mapping, path) -> None:
    """Save a state dict to ``path`` (``.safetensors`` or ``.npz``), atomically.

    Parameters
    ----------
    obj : dict
        Arrays (Tensors, NumPy arrays) and plain values, nested in dicts, lists and tuples.
    path : str or os.PathLike
        The extension picks the format.
    """
    path = Path(os.fspath(path))
    fmt = _format(path, "save")
    if not isinstance(obj, Mapping):
        raise SerializationError(
            f"save: expected a state dict, got a {type(obj).__name__}; wrap a single array "
            "as {'name': array}"
        )
    arrays: dict = {}
    try:
        tree = _encode(obj, (), arrays)
    except RecursionError:
        raise SerializationError("save: the state dict nests too deeply") from None
    meta = json.dumps({"format": "tinydl", "version": _VERSION, "tree": tree})
    if fmt == ".npz":
        blob = _npz_bytes(arrays, meta)
    else:
        blob = _safetensors_numpy()[1].save(arrays, metadata={_META_KEY: meta})
    atomic.atomic_write(path, blob)


def load(path, *, as_tensors: bool = False) -> dict:
    """Load what :func:`save` wrote (or a flat dict of arrays from any ``.safetensors`` or
    ``.npz`` file). Arrays come back as writable NumPy arrays, or Tensors with
    ``as_tensors=True``. Raises :class:`SerializationError` for a malformed file."""
    path = Path(os.fspath(path))
    fmt = _format(path, "load")
    blob = path.read_bytes()
    try:
        arrays, meta = _read_safetensors(blob) if fmt == ".safetensors" else _read_npz(blob)
        obj = _rebuild(arrays, meta)
    except _Bad as e:
        raise SerializationError(f"load: cannot read '{path}': {e}") from e.__cause__
    return _to_tensors(obj) if as_tensors else obj


def _to_tensors(obj):
    if isinstance(obj, np.ndarray):
        return Tensor(obj)
    if isinstance(obj, dict):
        return {k: _to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_tensors(v) for v in obj)
    return obj


def save_checkpoint(
    path,
    model_state: Mapping,
    optimizer_state: Mapping | None = None,
    scheduler_state: Mapping | None = None,
    epoch: int | None = None,
    metrics: Mapping | None = None,
    **extra,
) -> None:
    """Save a training checkpoint atomically; :func:`load_checkpoint` returns a dict with the
    keys ``model_state``, ``optimizer_state``, ``scheduler_state``, ``epoch``, ``metrics`` and
    each ``extra`` keyword."""
    if not isinstance(model_state, Mapping):
        raise ValueError(f"save_checkpoint: model_state must be a state dict, got {model_state!r}")
    if _CHECKPOINT in extra:
        raise ValueError(f"save_checkpoint: the keyword {_CHECKPOINT!r} is reserved")
    save(
        {
            _CHECKPOINT: _VERSION,
            "model_state": model_state,
            "optimizer_state": optimizer_state,
            "scheduler_state": scheduler_state,
            "epoch": epoch,
            "metrics": metrics,
            **extra,
        },
        path,
    )


def load_checkpoint(path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    obj = load(path)
    if obj.get(_CHECKPOINT) != _VERSION:
        raise SerializationError(
            f"load_checkpoint: '{path}' is not a tinydl checkpoint (no {_CHECKPOINT!r} marker); "
            "a plain state dict loads with td.load"
        )
    del obj[_CHECKPOINT]
    return obj
