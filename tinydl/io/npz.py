"""The ``.npz`` format: a zip of ``.npy`` members, written without pickle and read defensively.

The tinydl tree is a uint8 array under the reserved member ``__tinydl__``. Reading checks every
member's header and sizes before NumPy allocates anything, so a zip bomb or an object array is
refused with the cause instead of exhausting memory or unpickling.
"""

from __future__ import annotations

import io
import math
import struct
import tokenize
import zipfile
import zlib

import numpy as np

from .tree import KINDS, META_KEY, Malformed

__all__ = ["read", "write"]

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

# Deflate expands at most 1032:1 (258-byte matches coded in 2 bits); a member that claims more
# lies about its size, and NumPy would allocate the claimed size before reading a byte.
_DEFLATE_RATIO = 1032


def write(arrays: dict, meta: str) -> bytes:
    """The bytes of an ``.npz`` file holding ``arrays`` and the tinydl metadata."""
    # NOTE: not np.savez: its keyword interface breaks on keys named 'file' or 'allow_pickle'.
    # A fixed timestamp makes the same state give the same bytes.
    arrays = {**arrays, META_KEY: np.frombuffer(meta.encode("utf-8"), np.uint8)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)
    return buf.getvalue()


def _check_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> None:
    """Refuse non-.npy members, object or other unknown dtypes, and sizes that disagree."""
    name = info.filename
    if not name.endswith(".npy") or info.flag_bits & 0x1:
        raise Malformed(f"member {name!r} is not a plain .npy array")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise Malformed(f"member {name!r} uses an unsupported compression")
    if info.compress_size > size:
        raise Malformed(
            f"member {name!r} claims {info.compress_size} stored bytes in a {size}-byte file"
        )
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise Malformed(
            f"member {name!r} claims {info.file_size} bytes but stores {info.compress_size} "
            "uncompressed"
        )
    if info.file_size > _DEFLATE_RATIO * info.compress_size + 1024:
        raise Malformed(
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
            raise Malformed(f"member {name!r}: .npy version {version} is not supported")
        if (dtype.kind, dtype.itemsize) not in KINDS or dtype.fields is not None:
            raise Malformed(f"member {name!r}: dtype {dtype} refused (object arrays need pickle)")
        need = f.tell() + math.prod(shape) * dtype.itemsize
    if need != info.file_size:
        raise Malformed(f"member {name!r} holds {info.file_size} bytes, its header needs {need}")


def read(blob: bytes) -> tuple[dict, str | None]:
    """``(arrays, tinydl metadata or None)`` of an ``.npz`` file's bytes."""
    if not blob:
        raise Malformed("the file is empty")
    if blob[:1] == b"\x80":
        raise Malformed("it holds pickled data, which tinydl never loads (unpickling can run code)")
    if blob.startswith(b"\x93NUMPY"):
        raise Malformed("it is a single .npy array, not an .npz archive")
    if not blob.startswith(b"PK"):
        raise Malformed(f"not an .npz (zip) archive: it starts with {blob[:8]!r}")
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            infos = zf.infolist()
            if len({i.filename for i in infos}) != len(infos):
                raise Malformed("the archive repeats a member name")
            for info in infos:
                _check_member(zf, info, len(blob))
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except _NPZ_ERRORS as e:
        raise Malformed(f"corrupt archive: {type(e).__name__}: {e}") from e
    arrays = {k: np.require(a, a.dtype.newbyteorder("<"), ["C", "W"]) for k, a in arrays.items()}
    meta = arrays.pop(META_KEY, None)
    if meta is None:
        return arrays, None
    if meta.dtype != np.uint8 or meta.ndim != 1:
        raise Malformed(f"the {META_KEY} entry is not a 1-D uint8 array")
    try:
        return arrays, meta.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("the metadata is not UTF-8") from None
