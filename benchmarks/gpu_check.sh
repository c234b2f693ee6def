#!/bin/sh
# The device check of the CuPy backend (see benchmarks/gpu_check.py), from any directory:
# python3 (the interpreter that holds PyTorch and CuPy on the lent GPU machines), unbuffered
# output, the arguments passed on. On the GPU machine: carry benchmarks/gpu_data (MNIST).
cd "$(dirname "$0")/.." || exit 1
PY=$(command -v python3 || command -v python)
PYTHONUNBUFFERED=1 exec "$PY" benchmarks/gpu_check.py "$@"
