"""Reader and writer of the IDX format of MNIST and Fashion-MNIST, gzip-compressed or raw.

Layout: a big-endian header of two zero bytes, a type code (0x08 = unsigned byte), the number
of dimensions, one 4-byte size per dimension, then the data in row-major order. Every part is
checked; a truncated or corrupt file raises ``DatasetError`` naming the file, what was expected
and what was found.
"""

from __future__ import annotations

import gzip
import math
import os
import sys
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = ["read_idx", "write_idx", "IDX_TYPES"]

IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as exc:
        raise DatasetError(
            f"{path}: truncated gzip stream (expected the end-of-stream marker, found the end "
            f"of the file after {len(raw)} compressed bytes: {exc}); delete the file and fetch "
            "it again"
        ) from None
    except (OSError, zlib.error) as exc:
        raise DatasetError(
            f"{path}: corrupt gzip data (expected a valid deflate stream and checksum, found "
            f"{exc}); delete the file and fetch it again"
        ) from None


def read_idx(path, ndim: int | None = None, dtype=None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw, told apart by content) into a native-endian array.

    Parameters
    ----------
    path : str or os.PathLike
    ndim : int, optional
        Required number of dimensions (3 for images, 1 for labels).
    dtype : numpy dtype, optional
        Required element type, e.g. ``np.uint8`` (type code 0x08).

    Raises
    ------
    DatasetError
        Wrong magic, unknown type code, unexpected dims, truncated header or payload, trailing
        bytes, or corrupt gzip data.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetError(
            f"{path}: truncated IDX header (expected at least 4 bytes, found {len(raw)})"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DatasetError(
            f"{path}: not an IDX file (expected magic 0x0000TTDD with type code TT in "
            f"{', '.join(f'0x{t:02X}' for t in IDX_TYPES)}, found 0x{raw[:4].hex().upper()})"
        )
    code, dims = raw[2], raw[3]
    item = IDX_TYPES[code]
    if dtype is not None and item.newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        raise DatasetError(
            f"{path}: wrong element type (expected {np.dtype(dtype)}, found type code "
            f"0x{code:02X} = {item.newbyteorder('=')})"
        )
    if dims == 0 or (ndim is not None and dims != ndim):
        expected = ndim if ndim is not None else "at least 1"
        raise DatasetError(
            f"{path}: wrong number of dimensions (expected {expected}, found {dims})"
        )
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DatasetError(
            f"{path}: truncated IDX header (expected {header} bytes for {dims} dimensions, "
            f"found {len(raw)})"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=dims, offset=4))
    # NOTE: Python ints, not np.prod: four sizes of 65536 would wrap an int64 around to 0.
    expected = math.prod(shape) * item.itemsize
    found = len(raw) - header
    if found != expected:
        what = "truncated payload" if found < expected else "trailing bytes after the payload"
        swapped = tuple(int(s) for s in np.frombuffer(raw, dtype="<u4", count=dims, offset=4))
        hint = ""
        if math.prod(swapped) * item.itemsize == found:
            hint = f"; the sizes read little-endian, {swapped}, would fit: IDX is big-endian"
        raise DatasetError(
            f"{path}: {what} (expected {expected} bytes of data for shape {shape}, found "
            f"{found}){hint}"
        )
    # NOTE: an empty shape like (0, 2**30, 2**30, 2**30) passes the size check, but NumPy
    # refuses any shape whose non-zero sizes multiply beyond what memory can address.
    addressed = math.prod(n for n in shape if n) * item.itemsize
    if addressed > sys.maxsize:
        raise DatasetError(
            f"{path}: impossible dimensions (expected sizes that NumPy can address, found "
            f"shape {shape}, {addressed} bytes without its zero sizes)"
        )
    data = np.frombuffer(raw, dtype=item, offset=header)
    return data.astype(item.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path, array) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes or array.ndim == 0 or array.ndim > 255:
        raise ValueError(
            f"write_idx: cannot store dtype {array.dtype} with {array.ndim} dims in IDX "
            f"(types: uint8, int8, int16, int32, float32, float64; 1 to 255 dims)"
        )
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    path = Path(path)
    if os.fspath(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path
