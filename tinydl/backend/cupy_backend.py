"""The CuPy backend: NVIDIA GPUs through CuPy. The only module of tinydl that imports ``cupy``.

Nothing here runs at ``import tinydl``: CuPy is imported on the first question about CUDA
(``td.cuda.is_available()``, a ``"cuda"`` device, a CuPy array reaching an op). ``import cupy``
succeeds on machines without a GPU, so CUDA counts as available only when the CUDA runtime also
reports a device. Asking for ``"cuda"`` where it is not available raises ``DeviceError`` with the
missing piece (CuPy, or a GPU) in the message.

The CUDA kernels (``kernels/cuda.py``) build on this module; ``kernels.get_kernel`` loads them
for CuPy arrays. This module imports nothing else of tinydl but ``errors``.
"""

from __future__ import annotations

import collections
import sys
import threading

import numpy as np

from ..errors import DeviceError

__all__ = [
    "is_available",
    "device_count",
    "unavailable_reason",
    "cupy_module",
    "nccl_module",
    "synchronize",
    "device_name",
    "describe",
    "seed",
    "to_device",
    "uniform",
    "AsyncCopier",
]

_lock = threading.Lock()
# filled once by _probe(): the cupy module (None when unusable), the GPU count, why not
_state: dict = {"probed": False, "cupy": None, "count": 0, "reason": None}


def _probe() -> None:
    """Import CuPy and count the GPUs, once."""
    if _state["probed"]:
        return
    with _lock:
        if _state["probed"]:
            return
        try:
            import cupy
        except (ImportError, OSError, RuntimeError) as exc:  # absent, or a broken CUDA install
            _state["reason"] = (
                f"CuPy is not installed or does not import ({type(exc).__name__}: {exc}); "
                "install it with `pip install tinydl[gpu]` (cupy-cuda12x) on a machine with an "
                "NVIDIA GPU and its driver"
            )
        else:
            try:
                count = int(cupy.cuda.runtime.getDeviceCount())
                detail = "the CUDA runtime reports 0 devices"
            except RuntimeError as exc:  # CUDARuntimeError: no driver, no device, ...
                count, detail = 0, f"{type(exc).__name__}: {exc}"
            if count > 0:
                _state.update(cupy=cupy, count=count)
            else:
                _state["reason"] = (
                    f"CuPy {cupy.__version__} is installed but finds no CUDA GPU ({detail}); "
                    "run on a machine with an NVIDIA GPU and its driver, or use device='cpu'"
                )
        _state["probed"] = True


def is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA GPU."""
    _probe()
    return _state["cupy"] is not None


def device_count() -> int:
    """The number of CUDA GPUs CuPy sees (0 without CuPy or without a GPU)."""
    _probe()
    return _state["count"]


def unavailable_reason() -> str | None:
    """Why CUDA cannot be used here, or None when it can."""
    _probe()
    return _state["reason"]


def cupy_module(device=None):
    """The ``cupy`` module, after checking that ``device`` (a ``Device``, default ``cuda:0``)
    exists; raises ``DeviceError`` saying what is missing otherwise."""
    _probe()
    name = "cuda" if device is None else str(device)
    cp = _state["cupy"]
    if cp is None:
        raise DeviceError(f"device '{name}': CUDA is not available: {_state['reason']}")
    index = 0 if device is None else device.index
    if index >= _state["count"]:
        raise DeviceError(
            f"device '{name}': there are {_state['count']} CUDA GPU(s) here "
            f"(cuda:0 to cuda:{_state['count'] - 1})"
        )
    return cp


def nccl_module():
    """``cupy.cuda.nccl`` (collectives between GPUs), or ``DeviceError`` saying what is missing."""
    cupy_module()
    try:
        from cupy.cuda import nccl
    except ImportError as exc:
        raise DeviceError(f"NCCL is not available in this CuPy ({exc})") from exc
    if not getattr(nccl, "available", True):
        raise DeviceError("NCCL is not available in this CuPy: install a CuPy built with NCCL")
    return nccl


def synchronize(device=None) -> None:
    """Wait until the GPU has finished the work queued so far (no-op without CUDA)."""
    if not is_available():
        return
    cp = cupy_module(device)
    with cp.cuda.Device(0 if device is None else device.index):
        cp.cuda.runtime.deviceSynchronize()


def device_name(index: int = 0) -> str:
    """The GPU's name, e.g. ``"NVIDIA H100 80GB HBM3"``."""
    cp = cupy_module()
    name = cp.cuda.runtime.getDeviceProperties(index)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def describe() -> str:
    """One line for ``td.info()``: the GPUs and CuPy version, or why CUDA is unavailable."""
    if not is_available():
        return f"not available ({_state['reason']})"
    cp = _state["cupy"]
    names = ", ".join(f"cuda:{i} {device_name(i)}" for i in range(_state["count"]))
    return f"CuPy {cp.__version__}, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}: {names}"


def seed(value: int) -> None:
    """Seed CuPy's global generator too (``td.manual_seed``), when CuPy is in use already;
    CuPy is not imported for this."""
    if "cupy" in sys.modules and is_available():
        # NOTE: as uint64: CuPy casts the seed to uint64 with casting='safe', which NumPy 2
        # refuses for a Python int (an int64 array).
        _state["cupy"].random.seed(np.uint64(int(value) % 2**64))


# ----------------------------------------------------------------------------- moving data


def to_device(array, device):
    """A copy of ``array`` (NumPy or CuPy) on the CUDA ``device``; the array itself when it is
    already there."""
    cp = cupy_module(device)
    with cp.cuda.Device(device.index):
        if isinstance(array, np.ndarray):
            return cp.asarray(array)
        if array.device.id == device.index:
            return array
        return array.copy()  # NOTE: CuPy copies onto the current device


# ----------------------------------------------------------------------------- random numbers

_generators: collections.OrderedDict = collections.OrderedDict()  # (id(gen), index) -> (gen, rs)


def uniform(generator: np.random.Generator, shape, device):
    """float32 samples in [0, 1) on the CUDA ``device``, from a cuRAND generator seeded once from
    ``generator`` (so ``td.manual_seed`` makes GPU dropout reproducible; the masks differ from
    the CPU's, as in PyTorch). Drawing on the host and copying would cost a transfer per call."""
    cp = cupy_module(device)
    key = (id(generator), device.index)
    entry = _generators.get(key)
    if entry is None or entry[0] is not generator:
        with cp.cuda.Device(device.index):
            state = cp.random.RandomState(generator.integers(2**63, dtype=np.uint64))
        entry = _generators[key] = (generator, state)
        while len(_generators) > 8:  # generators made by manual_seed come and go
            _generators.popitem(last=False)
    with cp.cuda.Device(device.index):
        return entry[1].random_sample(tuple(shape), dtype=np.float32)


# ----------------------------------------------------------------------------- host to device


class AsyncCopier:
    """Copies host arrays to one GPU on a side stream, through pinned (page-locked) memory, so
    that the copy of the next batch overlaps the compute on this one.

    ``copy(arrays)`` starts the copies and returns the device arrays with a ticket;
    ``wait(ticket)`` makes the current (compute) stream wait for them. The device arrays are
    allocated on the compute stream, and the side stream first waits for the work queued on
    the compute stream so far, so memory the pool hands out again is never written while a
    queued kernel may still read it. Pinned buffers stay referenced until their copy is done.
    """

    def __init__(self, device):
        self._cp = cp = cupy_module(device)
        self._device, self._index = device, device.index
        with cp.cuda.Device(self._index):
            self._stream = cp.cuda.Stream(non_blocking=True)
        self._pending: collections.deque = collections.deque()  # (event, pinned buffers)

    def copy(self, arrays: list) -> tuple[list, object]:
        cp = self._cp
        with cp.cuda.Device(self._index):
            self._stream.wait_event(cp.cuda.get_current_stream().record())
            pinned, out = [], []
            for a in arrays:
                if not isinstance(a, np.ndarray):  # already a CuPy array
                    out.append(to_device(a, self._device))
                    continue
                a = np.require(a, a.dtype, ["C"])  # NOTE: keeps 0-d arrays 0-d
                dev = cp.empty(a.shape, a.dtype)  # on the compute stream's memory pool
                if a.size:
                    mem = cp.cuda.alloc_pinned_memory(a.nbytes)
                    host = np.ndarray(a.shape, a.dtype, buffer=mem)
                    np.copyto(host, a)
                    dev.set(host, stream=self._stream)
                    pinned.append(host)
                out.append(dev)
            done = self._stream.record()
        self._pending.append((done, pinned))
        while len(self._pending) > 2:  # free host buffers of finished copies
            self._pending.popleft()[0].synchronize()
        return out, done

    def wait(self, ticket) -> None:
        with self._cp.cuda.Device(self._index):
            self._cp.cuda.get_current_stream().wait_event(ticket)

    def close(self) -> None:
        while self._pending:
            self._pending.popleft()[0].synchronize()
