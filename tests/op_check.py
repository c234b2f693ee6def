"""One test helper for every op: forward vs a NumPy reference, gradients vs central differences,
inputs unchanged, and (when PyTorch is importable) forward and gradients vs PyTorch; on any
device (``backend``): the op computes there, the references on the host."""

from __future__ import annotations

import numpy as np

import tinydl as td
from tests.devices import CPU
from tinydl.backend import to_numpy
from tinydl.testing import assert_close

try:
    import torch
except ImportError:  # PyTorch is a test-time reference only
    torch = None


def _host(x):
    return to_numpy(x.detach().data) if isinstance(x, td.Tensor) else x


def check_op(fn, inputs, reference=None, torch_fn=None, second_order=False, rtol=1e-7,
             atol=1e-12, grad_atol=1e-5, grad_rtol=1e-3, backend=CPU):
    """``fn(*inputs)`` (tinydl, with the tensor inputs on ``backend``'s device) against
    ``reference(*arrays)`` (NumPy) and ``torch_fn(*torch_tensors)``; gradients checked
    numerically in float64. Returns the output."""
    inputs = [backend.put(t) for t in inputs]
    before = [_host(t).copy() if isinstance(t, td.Tensor) else t for t in inputs]
    out = fn(*inputs)
    assert out.device == backend.device, f"output on {out.device}, inputs on {backend.name}"
    if reference is not None:
        expected = reference(*[_host(t) for t in inputs])
        assert_close(out, expected, rtol=rtol, atol=atol, msg="forward vs NumPy reference: ")
    td.gradcheck(fn, inputs, atol=grad_atol, rtol=grad_rtol)
    if second_order:
        td.gradgradcheck(fn, inputs, atol=grad_atol, rtol=grad_rtol)
    for t, b in zip(inputs, before):
        if isinstance(t, td.Tensor):
            np.testing.assert_array_equal(_host(t), b, err_msg="the op mutated its input")
    if torch_fn is not None and torch is not None:
        compare_with_torch(fn, torch_fn, inputs)
    return out


def compare_with_torch(fn, torch_fn, inputs, rtol=1e-6, atol=1e-9):
    """Forward and input gradients (for a random upstream gradient) equal PyTorch's; the tinydl
    side runs where its tensor inputs live."""
    tt = [torch.tensor(_host(t), requires_grad=t.requires_grad)
          if isinstance(t, td.Tensor) else t for t in inputs]
    ref = torch_fn(*tt)
    xs = [td.tensor(t, requires_grad=t.requires_grad) if isinstance(t, td.Tensor) else t
          for t in inputs]
    out = fn(*xs)
    assert_close(out, ref.detach().numpy(), rtol=rtol, atol=atol, msg="forward vs PyTorch: ")
    if not out.requires_grad:
        return
    g = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
    out.backward(td.tensor(g, device=out.device))
    ref.backward(torch.tensor(g))
    for x, t in zip(xs, tt):
        if isinstance(x, td.Tensor) and x.requires_grad:
            expected = np.zeros(x.shape) if t.grad is None else t.grad.numpy()
            got = np.zeros(x.shape) if x.grad is None else _host(x.grad)
            assert_close(got, expected, rtol=rtol, atol=atol, msg="gradient vs PyTorch: ")
