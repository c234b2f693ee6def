"""Run the CUDA kernel bodies of ``tinydl.backend.kernels.cuda`` on the CPU, without a GPU.

Each ``Spec``'s C++ body is wrapped in a plain loop over the output elements (``i`` from 0 to
size - 1, what CuPy's ``ElementwiseKernel`` gives each thread), compiled with the system C++
compiler (``-ffp-contract=off``, as the kernels run with ``--fmad=false``) and called through
ctypes with NumPy arrays. ``harness_kernel(name)`` stands in for ``cuda._kernel(name)`` the way
``kernels/cuda.py`` calls it: inputs then outputs, positionally; ``raw`` arrays are pointers the
body indexes itself, the other arrays are element ``i``, scalars are values. It supports what
the kernels use (no broadcasting: every non-raw array has the output's size; C-contiguous
arrays).

``nvcc_source()`` gives the same bodies as ``__global__`` functions, for a compile check with
NVIDIA's compiler where one is installed.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy as np

from tinydl.backend.kernels import cuda

__all__ = ["CXX", "NVCC", "harness_kernel", "nvcc_source"]

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
NVCC = shutil.which("nvcc")

_C_TYPES = {"int32": "int", "int64": "long long", "float32": "float", "float64": "double"}
_CTYPES = {"int32": ctypes.c_int, "int64": ctypes.c_longlong, "float32": ctypes.c_float,
           "float64": ctypes.c_double}
_BUILD = tempfile.mkdtemp(prefix="tinydl-cuda-harness-")
atexit.register(shutil.rmtree, _BUILD, ignore_errors=True)


def _params(text: str) -> list[tuple[bool, str, str]]:
    """``"raw T x, int32 C"`` -> ``[(True, "T", "x"), (False, "int32", "C")]``."""
    out = []
    for part in text.split(","):
        words = part.split()
        raw = words[0] == "raw"
        typ, name = words[1:] if raw else words
        out.append((raw, typ, name))
    return out


def _ctype(typ: str, t_name: str) -> str:
    return t_name if typ == "T" else _C_TYPES[typ]


def _source(name: str, kinds: tuple, t_dtype: str) -> str:
    spec = cuda.SPECS[name]
    n_in = len(_params(spec.inputs))
    params = _params(spec.inputs) + _params(spec.outputs)
    head = ["#include <cmath>", "#include <cstddef>", "using std::isnan;", "using std::sqrt;",
            f"typedef {_C_TYPES[t_dtype]} T;",
            'extern "C" void run(long long size, void** args) {']
    loop = []
    for k, ((_, typ, pname), kind) in enumerate(zip(params, kinds)):
        ct = _ctype(typ, "T")
        const = "const " if k < n_in else ""
        if kind == "raw":
            head.append(f"  {const}{ct}* {pname} = ({ct}*)args[{k}];")
        elif kind == "scalar":
            head.append(f"  const {ct} {pname} = *({ct}*)args[{k}];")
        else:
            loop.append(f"    {const}{ct}& {pname} = (({ct}*)args[{k}])[i];")
    body = ["  for (long long i = 0; i < size; ++i) {", *loop, "    {", spec.body, "    }", "  }"]
    return "\n".join(head + body + ["}", ""])


@functools.cache
def _compile(source: str):
    if CXX is None:
        raise RuntimeError("no C++ compiler (g++, c++ or clang++) on PATH")
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    src = os.path.join(_BUILD, f"k{digest}.cpp")
    lib = os.path.join(_BUILD, f"k{digest}.so")
    with open(src, "w") as f:
        f.write(source)
    cmd = [CXX, "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", lib, src]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"compiling the kernel failed:\n{result.stderr}\n--- source ---\n{source}")
    fn = ctypes.CDLL(lib).run
    fn.argtypes = [ctypes.c_longlong, ctypes.POINTER(ctypes.c_void_p)]
    fn.restype = None
    return fn


def harness_kernel(name: str):
    """A callable like ``cuda._kernel(name)`` that runs the body on the CPU."""
    spec = cuda.SPECS[name]
    params = _params(spec.inputs) + _params(spec.outputs)
    n_in = len(_params(spec.inputs))

    def call(*args):
        if len(args) != len(params):
            raise TypeError(f"{name}: {len(params)} arguments expected, got {len(args)}")
        t_dtype = None
        for (_, typ, _), a in zip(params, args):
            if typ == "T" and isinstance(a, np.ndarray):
                t_dtype = t_dtype or a.dtype.name
                assert a.dtype.name == t_dtype, f"{name}: mixed dtypes for T"
        kinds, keep, size = [], [], None
        for (raw, typ, pname), a in zip(params, args):
            dtype = t_dtype if typ == "T" else typ
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous, f"{name}: {pname} is not C-contiguous"
                assert a.dtype.name == dtype, f"{name}: {pname} is {a.dtype}, expected {dtype}"
                kinds.append("raw" if raw else "array")
                keep.append(a)
                if not raw:
                    assert size in (None, a.size), f"{name}: {pname} broadcasts"
                    size = a.size
            else:
                assert not raw, f"{name}: raw {pname} must be an array"
                kinds.append("scalar")
                keep.append(_CTYPES[dtype](a))
        pointers = (ctypes.c_void_p * len(keep))()
        for k, a in enumerate(keep):
            addr = a.ctypes.data if isinstance(a, np.ndarray) else ctypes.addressof(a)
            pointers[k] = ctypes.c_void_p(addr)
        _compile(_source(name, tuple(kinds), t_dtype))(size, pointers)
        outs = args[n_in:]
        return outs[0] if len(outs) == 1 else tuple(outs)

    return call


def nvcc_source(t_dtype: str = "float32") -> str:
    """Every kernel body as a ``__global__`` function over contiguous arrays (T = t_dtype)."""
    parts = [f"typedef {_C_TYPES[t_dtype]} T;"]
    for name, spec in cuda.SPECS.items():
        n_in = len(_params(spec.inputs))
        args, refs = ["long long size"], []
        for k, (raw, typ, pname) in enumerate(_params(spec.inputs) + _params(spec.outputs)):
            ct = _ctype(typ, "T")
            const = "const " if k < n_in else ""
            if raw:
                args.append(f"{const}{ct}* {pname}")
            elif typ != "T" or k >= n_in:  # outputs and typed arrays: element references
                args.append(f"{ct}* {pname}_ptr")
                refs.append(f"    {const}{ct}& {pname} = {pname}_ptr[i];")
            else:  # a T input: an array in the kernels' calls, except the optimizer scalars
                args.append(f"const {ct}* {pname}_ptr")
                refs.append(f"    const {ct}& {pname} = {pname}_ptr[i];")
        parts += [
            f'extern "C" __global__ void tinydl_{name}({", ".join(args)}) {{',
            "  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < size;",
            "       i += (long long)blockDim.x * gridDim.x) {",
            *refs,
            "    {",
            spec.body,
            "    }",
            "  }",
            "}",
        ]
    return "\n".join(parts) + "\n"
