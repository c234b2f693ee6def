"""The JSON tree codec: a state dict as a JSON tree plus a flat dict of arrays, and back.

Arrays are stored under their path joined with '.' and appear in the tree as
``{"__array__": key}``; tuples and dicts with int keys (or keys that look like the tags) are
tagged too. Decoding checks every reference, so a file's metadata cannot invent or drop arrays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from ..autograd import Tensor
from ..backend import is_device_array, to_numpy
from ..errors import SerializationError

__all__ = [
    "DTYPES",
    "KINDS",
    "DTYPE_NAMES",
    "META_KEY",
    "VERSION",
    "Malformed",
    "encode_state",
    "decode_state",
    "json_object",
    "wrap_tensors",
]

# fmt: off
DTYPES = {  # the safetensors dtypes that NumPy holds (not BF16 or the F8 kinds)
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "U32": np.dtype("<u4"), "U64": np.dtype("<u8"),
    "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
}
# fmt: on
KINDS = {(d.kind, d.itemsize) for d in DTYPES.values()}
DTYPE_NAMES = "bool, uint8/16/32/64, int8/16/32/64, float16/32/64"
META_KEY = "__tinydl__"  # the metadata's key in either format
VERSION = 1
_RESERVED = {META_KEY, "__metadata__"}
_ARRAY, _TUPLE, _DICT = "__array__", "__tuple__", "__dict__"
_TAGS = {_ARRAY, _TUPLE, _DICT}


class Malformed(Exception):
    """The cause of a failed load; :func:`tinydl.io.load` adds the file name."""


def _as_numpy(x, where: str) -> np.ndarray:
    x = to_numpy(x.data if isinstance(x, Tensor) else x)
    if (x.dtype.kind, x.dtype.itemsize) not in KINDS:
        raise SerializationError(
            f"save: the array at '{where}' has dtype {x.dtype}; tinydl stores {DTYPE_NAMES}"
        )
    # NOTE: not np.ascontiguousarray, which turns a 0-d array into shape (1,)
    return np.require(x, x.dtype.newbyteorder("<"), ["C"])


def _encode(obj, path: tuple, arrays: dict):
    """``obj`` as JSON-able data; its arrays go into ``arrays`` under their dotted path."""
    where = ".".join(path)
    if isinstance(obj, (Tensor, np.ndarray)) or is_device_array(obj):
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


def encode_state(obj: Mapping) -> tuple[dict, str]:
    """``(arrays, metadata)``: the flat dict of host arrays and the JSON text of the tree."""
    arrays: dict = {}
    try:
        tree = _encode(obj, (), arrays)
    except RecursionError:
        raise SerializationError("save: the state dict nests too deeply") from None
    return arrays, json.dumps({"format": "tinydl", "version": VERSION, "tree": tree})


def _decode(node, arrays: dict, used: set):
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, arrays, used) for v in node]
    if not isinstance(node, dict):
        raise Malformed(f"metadata holds a {type(node).__name__}")
    if len(node) != 1 or next(iter(node)) not in _TAGS:
        return {k: _decode(v, arrays, used) for k, v in node.items()}
    ((tag, value),) = node.items()
    if tag == _ARRAY:
        if not isinstance(value, str) or value not in arrays or value in used:
            raise Malformed(
                f"metadata refers to the tensor {value!r}, which the file does not hold"
            )
        used.add(value)
        return arrays[value]
    if not isinstance(value, list):
        raise Malformed(f"metadata: {tag} must hold a list")
    if tag == _TUPLE:
        return tuple(_decode(v, arrays, used) for v in value)
    out = {}
    for pair in value:
        ok = isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))
        if not ok or isinstance(pair[0], bool) or pair[0] in out:
            raise Malformed(f"metadata: bad or repeated dict entry {pair!r}")
        out[pair[0]] = _decode(pair[1], arrays, used)
    return out


def json_object(text: str, what: str) -> dict:
    """Parse ``text`` as a JSON object that repeats no key (``what`` names it in errors)."""

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise Malformed(f"{what} repeats a key")
        return dict(pairs)

    try:
        obj = json.loads(text, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as e:
        raise Malformed(f"invalid JSON {what}: {e}") from None
    if not isinstance(obj, dict):
        raise Malformed(f"the {what} is not a JSON object")
    return obj


def decode_state(arrays: dict, meta: str | None) -> dict:
    """The state dict from a file's arrays and metadata (None: a flat dict written elsewhere)."""
    if meta is None:
        return dict(arrays)
    info = json_object(meta, "metadata")
    version = info.get("version")
    if info.get("format") != "tinydl" or not isinstance(version, int) or "tree" not in info:
        raise Malformed("the tinydl metadata lacks its format, version or tree")
    if version > VERSION:
        raise Malformed(f"format version {version} is newer than this tinydl reads ({VERSION})")
    used: set = set()
    try:
        obj = _decode(info["tree"], arrays, used)
    except RecursionError:
        raise Malformed("the metadata nests too deeply") from None
    if not isinstance(obj, dict):
        raise Malformed("the metadata tree is not a dict")
    if len(used) != len(arrays):
        raise Malformed(f"tensors missing from the metadata: {sorted(set(arrays) - used)[:5]}")
    return obj


def wrap_tensors(obj):
    """``obj`` with each NumPy array wrapped in a Tensor."""
    if isinstance(obj, np.ndarray):
        return Tensor(obj)
    if isinstance(obj, dict):
        return {k: wrap_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(wrap_tensors(v) for v in obj)
    return obj
