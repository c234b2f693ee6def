"""The ``.safetensors`` format: the header validated before the safetensors library sees it.

The tinydl tree is kept under ``__tinydl__`` in the header's ``__metadata__`` map. The
safetensors package is imported here only, when a file is read or written.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

from .tree import DTYPE_NAMES, DTYPES, META_KEY, Malformed, json_object

__all__ = ["HAVE_SAFETENSORS", "read", "write"]

HAVE_SAFETENSORS = importlib.util.find_spec("safetensors") is not None

_MAX_HEADER = 100_000_000  # the safetensors library's own limit
_ZIP_MAGIC = b"PK\x03\x04"


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as e:
        raise ImportError(
            "the .safetensors format needs the safetensors package: pip install safetensors "
            "(a dependency of tinydl), or use a .npz path"
        ) from e
    return safetensors, safetensors.numpy


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


def _not_safetensors(blob: bytes) -> str | None:
    """What a file that is plainly another format holds, or None."""
    if blob[:1] == b"\x80" and blob[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "it holds pickled data, which tinydl never loads (unpickling can run code)"
    if blob.startswith(_ZIP_MAGIC):
        return "it is a zip archive (an .npz, or a PyTorch .pt/.pth file), not safetensors"
    if blob.startswith(b"\x93NUMPY"):
        return "it is a .npy array, not safetensors"
    return None


def _check_entry(name: str, entry, data_len: int) -> tuple[int, int, str]:
    """One tensor's header entry checked against the data section; its ``(begin, end, name)``."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise Malformed(f"tensor {name!r}: the entry needs exactly dtype, shape, data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise Malformed(
            f"tensor {name!r}: unknown dtype {_short(dtype)} (tinydl reads {DTYPE_NAMES})"
        )
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise Malformed(
            f"tensor {name!r}: shape {_short(shape)} is not a list of non-negative ints"
        )
    if not (isinstance(offsets, list) and len(offsets) == 2):
        raise Malformed(f"tensor {name!r}: data_offsets {_short(offsets)} is not [begin, end]")
    if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
        raise Malformed(f"tensor {name!r}: data_offsets {_short(offsets)} are not integers")
    begin, end = offsets
    if begin < 0 or end < 0:
        raise Malformed(f"tensor {name!r}: negative data_offsets [{begin}, {end}]")
    if begin > end:
        raise Malformed(f"tensor {name!r}: data_offsets [{begin}, {end}] end before they begin")
    if end > data_len:
        raise Malformed(
            f"tensor {name!r}: data_offsets [{begin}, {end}] out of range of the "
            f"{data_len}-byte data section (truncated or corrupt)"
        )
    need = _nbytes(shape, DTYPES[dtype].itemsize, sys.maxsize)
    if need is None:
        raise Malformed(
            f"tensor {name!r}: shape {_short(shape)} overflows: its size in bytes is beyond 2**63"
        )
    if end - begin != need:
        raise Malformed(
            f"tensor {name!r}: data_offsets span {end - begin} bytes but shape "
            f"{_short(shape)} of {dtype} needs {need}"
        )
    return begin, end, name


def _check_header(blob: bytes) -> str | None:
    """Validate the header (before the library sees the bytes); return the tinydl metadata."""
    size = len(blob)
    if size < 8:
        raise Malformed(
            "the file is empty" if size == 0 else f"only {size} bytes, no 8-byte header"
        )
    other = _not_safetensors(blob)
    if other and "pickled" in other:
        raise Malformed(other)
    n = int.from_bytes(blob[:8], "little")
    if n > _MAX_HEADER:
        why = other or "corrupt or not safetensors"
        raise Malformed(f"header length {n} exceeds the 100 MB limit ({why})")
    if n > size - 8:
        raise Malformed(
            f"header length {n} goes beyond the end of the file ({size} bytes): truncated"
        )
    raw = blob[8 : 8 + n]
    if not raw.startswith(b"{"):
        raise Malformed("invalid JSON header: it does not start with '{'")
    try:
        header = json_object(raw.decode("utf-8"), "header")
    except UnicodeDecodeError:
        raise Malformed("invalid JSON header: not UTF-8") from None
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise Malformed("__metadata__ must map strings to strings")
    data_len = size - 8 - n
    pos = 0
    for begin, end, name in sorted(_check_entry(k, v, data_len) for k, v in header.items()):
        if begin != pos:
            why = f"a gap of {begin - pos}" if begin > pos else f"an overlap of {pos - begin}"
            raise Malformed(
                f"tensor {name!r} starts at data byte {begin}, expected {pos}: gap or overlap "
                f"({why} bytes)"
            )
        pos = end
    if pos != data_len:
        raise Malformed(f"{data_len - pos} trailing bytes after the last tensor")
    return meta.get(META_KEY)


def read(blob: bytes) -> tuple[dict, str | None]:
    """``(arrays, tinydl metadata or None)`` of a ``.safetensors`` file's bytes."""
    meta = _check_header(blob)
    safetensors, st = _safetensors_numpy()
    try:
        arrays = st.load(blob)
    except (safetensors.SafetensorError, ValueError, TypeError, OverflowError) as e:
        raise Malformed(f"the safetensors library rejected it: {e}") from e
    return {k: np.require(a, requirements=["C", "W"]) for k, a in arrays.items()}, meta


def write(arrays: dict, meta: str) -> bytes:
    """The bytes of a ``.safetensors`` file holding ``arrays`` and the tinydl metadata."""
    return _safetensors_numpy()[1].save(arrays, metadata={META_KEY: meta})
