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

The package's modules: ``atomic`` (the atomic write), ``tree`` (the JSON tree codec),
``safetensors_file`` and ``npz`` (each format's checked reader and its writer).

>>> import numpy as np, tinydl as td
>>> td.save({"w": np.ones(3, np.float32), "epoch": 2}, "model.safetensors")  # doctest: +SKIP
>>> td.load("model.safetensors")  # doctest: +SKIP
{'w': array([1., 1., 1.], dtype=float32), 'epoch': 2}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import SerializationError
from . import atomic, npz, safetensors_file
from .safetensors_file import HAVE_SAFETENSORS
from .tree import VERSION, Malformed, decode_state, encode_state, wrap_tensors

__all__ = [
    "save",
    "load",
    "save_checkpoint",
    "load_checkpoint",
    "SerializationError",
    "HAVE_SAFETENSORS",
]

_FORMATS = {".safetensors": safetensors_file, ".npz": npz}  # each with read(blob), write(...)
_CHECKPOINT = "tinydl_checkpoint"


def _format(path: Path, fn: str):
    """The module of ``path``'s format (refusing every other extension)."""
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise SerializationError(
            f"{fn}: '{path}' has the extension {suffix or '(none)'!r}; tinydl uses .safetensors "
            "or .npz (never pickle formats such as .pt or .pkl, which can run code when loaded)"
        )
    return _FORMATS[suffix]


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
    arrays, meta = encode_state(obj)
    atomic.atomic_write(path, fmt.write(arrays, meta))


def load(path, *, as_tensors: bool = False) -> dict:
    """Load what :func:`save` wrote (or a flat dict of arrays from any ``.safetensors`` or
    ``.npz`` file). Arrays come back as writable NumPy arrays, or Tensors with
    ``as_tensors=True``. Raises :class:`SerializationError` for a malformed file."""
    path = Path(os.fspath(path))
    fmt = _format(path, "load")
    blob = path.read_bytes()
    try:
        obj = decode_state(*fmt.read(blob))
    except Malformed as e:
        raise SerializationError(f"load: cannot read '{path}': {e}") from e.__cause__
    return wrap_tensors(obj) if as_tensors else obj


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
            _CHECKPOINT: VERSION,
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
    if obj.get(_CHECKPOINT) != VERSION:
        raise SerializationError(
            f"load_checkpoint: '{path}' is not a tinydl checkpoint (no {_CHECKPOINT!r} marker); "
            "a plain state dict loads with td.load"
        )
    del obj[_CHECKPOINT]
    return obj
