"""The CUDA kernels against the NumPy reference.

Three levels: the kernel bodies compiled for the CPU and driven by the real Python wrappers of
``kernels/cuda.py`` (every machine with a C++ compiler); the bodies compiled by ``nvcc`` (where
the CUDA toolkit is installed); the kernels themselves through CuPy on a GPU. Geometries include
strides, paddings, dilations, non-square kernels, non-contiguous inputs, NaN and -inf.
"""

from __future__ import annotations

import itertools
import subprocess

import numpy as np
import pytest

import tinydl as td
from tests.gpu.cuda_harness import NVCC, nvcc_source
from tinydl.backend import kernels
from tinydl.backend.kernels import numpy_ref
from tinydl.optim.adam import adam_update
from tinydl.optim.sgd import sgd_update

# (kh, kw, stride, padding, dilation) and an input shape (N, C, H, W) they fit
CONV_GEOMETRIES = [
    ((3, 3, 1, 1, 1), (2, 3, 7, 6)),
    ((1, 1, 1, 0, 1), (2, 4, 5, 5)),
    ((5, 5, 1, 2, 1), (3, 1, 9, 8)),
    ((5, 5, 1, 0, 1), (2, 2, 9, 9)),
    ((2, 3, (2, 1), (0, 1), (2, 1)), (1, 3, 8, 7)),
    ((3, 2, 3, 2, 1), (2, 2, 7, 6)),
    ((3, 3, 2, 1, 2), (2, 2, 9, 10)),
]
# (kernel, stride, padding) and an input shape
POOL_GEOMETRIES = [
    ((2, 2, 0), (2, 3, 8, 8)),
    ((2, 2, 0), (2, 2, 7, 9)),
    ((3, 2, 1), (2, 2, 7, 6)),
    (((3, 2), (1, 2), (1, 1)), (1, 2, 6, 7)),
    ((2, 1, 1), (2, 1, 5, 5)),
    ((3, 3, 0), (1, 2, 9, 9)),
]
DTYPES = [np.float32, np.float64]


def _data(shape, dtype, seed=0, noncontiguous=False, specials=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    if specials:
        x.reshape(-1)[::7] = -np.inf
        x.reshape(-1)[3] = np.nan
        x.reshape(-1)[5::11] = x.reshape(-1)[4]  # ties
    if noncontiguous:  # the same values, a transposed memory layout
        x = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    return x


def _check_ops(k, to_device, to_host, dtype, noncontiguous):
    """Every kernel op of ``k`` against ``numpy_ref`` on the same inputs, bit for bit."""
    for geo, shape in CONV_GEOMETRIES:
        x = _data(shape, dtype, noncontiguous=noncontiguous)
        want = numpy_ref.im2col(x, *geo)
        np.testing.assert_array_equal(to_host(k.im2col(to_device(x), *geo)), want, str(geo))
        cols = _data(want.shape[:1] + (1,) + want.shape[1:], dtype, seed=1)[:, 0]
        got = to_host(k.col2im(to_device(cols), shape, *geo))
        np.testing.assert_array_equal(got, numpy_ref.col2im(cols, shape, *geo), str(geo))
    for (kernel, stride, pad), shape in POOL_GEOMETRIES:
        x = _data(shape, dtype, noncontiguous=noncontiguous, specials=True)
        out, arg = numpy_ref.maxpool2d_forward(x, kernel, stride, pad)
        got_out, got_arg = k.maxpool2d_forward(to_device(x), kernel, stride, pad)
        np.testing.assert_array_equal(to_host(got_out), out, f"{kernel} {stride} {pad}")
        np.testing.assert_array_equal(to_host(got_arg), arg, f"{kernel} {stride} {pad}")
        assert got_arg.dtype == np.int64
        g = _data(out.shape, dtype, seed=2)
        want = numpy_ref.maxpool2d_backward(g, arg, shape, kernel, stride, pad)
        got = k.maxpool2d_backward(to_device(g), to_device(arg), shape, kernel, stride, pad)
        np.testing.assert_array_equal(to_host(got), want, f"{kernel} {stride} {pad}")


def _check_batchnorm(k, to_device, to_host, dtype, rtol):
    rng = np.random.default_rng(3)
    for shape in [(4, 3, 5, 6), (8, 5), (2, 4, 7)]:
        x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
        c = shape[1]
        w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
        for weight, bias in [(w, b), (None, None), (w, None), (None, b)]:
            dev = [None if a is None else to_device(a) for a in (weight, bias)]
            want = numpy_ref.batchnorm_forward(x, weight, bias, 1e-5)
            got = k.batchnorm_forward(to_device(x), *dev, 1e-5)
            for name, g_, w_ in zip(("y", "xhat", "mean", "var"), got, want):
                np.testing.assert_allclose(to_host(g_), w_, rtol=rtol, atol=rtol, err_msg=name)
            grad = rng.standard_normal(shape).astype(dtype)
            xhat, inv_std = want[1], (1 / np.sqrt(want[3] + 1e-5)).astype(dtype)
            want = numpy_ref.batchnorm_backward(grad, xhat, weight, inv_std)
            got = k.batchnorm_backward(
                to_device(grad), to_device(xhat), dev[0], to_device(inv_std)
            )
            for name, g_, w_ in zip(("dx", "dweight", "dbias"), got, want):
                np.testing.assert_allclose(to_host(g_), w_, rtol=rtol, atol=rtol, err_msg=name)
                assert g_.dtype == dtype


SGD_CASES = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
    for m, d, n, wd, mx in itertools.product((0, 0.9), (0, 0.3), (False, True), (0, 0.01),
                                             (False, True))
    if not (n and (m == 0 or d))
]
ADAM_CASES = [
    dict(amsgrad=a, weight_decay=wd, maximize=mx, decoupled=dc, beta1=b1, eps=eps)
    for a, wd, mx, dc, b1, eps in itertools.product((False, True), (0, 0.1), (False, True),
                                                    (False, True), (0.9, 0.3), (1e-8, 0.0))
]


def _check_optimizers(k, to_device, to_host, dtype, rtol):
    rng = np.random.default_rng(4)
    for case in SGD_CASES:
        p_ref = rng.standard_normal(40).astype(dtype)
        p = to_device(p_ref.copy())
        buf_ref = buf = None
        for _ in range(3):
            g = rng.standard_normal(40).astype(dtype)
            work = (np.empty_like(p_ref), np.empty_like(p_ref))
            buf_ref = sgd_update(p_ref, g, buf_ref, lr=0.1, work=work, **case)
            buf = k.fused_sgd_update(p, to_device(g), buf, lr=0.1, **case)
        np.testing.assert_allclose(to_host(p), p_ref, rtol=rtol, atol=0, err_msg=str(case))
        if buf_ref is not None:
            np.testing.assert_allclose(to_host(buf), buf_ref, rtol=rtol, err_msg=str(case))
    for case in ADAM_CASES:
        beta1 = case.pop("beta1")
        p_ref = rng.standard_normal(40).astype(dtype)
        p = to_device(p_ref.copy())
        ref = [np.zeros_like(p_ref) for _ in range(3)]
        dev = [to_device(a.copy()) for a in ref]
        for step in range(1, 4):
            g = rng.standard_normal(40).astype(dtype)
            g[:4] = 0  # zero moments with eps=0: the update must be 0, not 0/0
            kw = dict(step=step, lr=0.01, beta1=beta1, beta2=0.999, **case)
            work = (np.empty_like(p_ref), np.empty_like(p_ref))
            adam_update(p_ref, g, ref[0], ref[1], ref[2] if case["amsgrad"] else None,
                        work=work, **kw)
            k.fused_adam_update(p, to_device(g), dev[0], dev[1],
                                dev[2] if case["amsgrad"] else None, **kw)
        case["beta1"] = beta1
        np.testing.assert_allclose(to_host(p), p_ref, rtol=rtol, err_msg=str(case))
        assert not np.isnan(to_host(p)).any()
        for got, want in zip(dev, ref):
            np.testing.assert_allclose(to_host(got), want, rtol=rtol, err_msg=str(case))


# ----------------------------------------------------------------------------- on the CPU


def _same(a):
    return a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noncontiguous", [False, True])
def test_cuda_kernel_bodies_match_the_reference(cuda_kernels_on_cpu, dtype, noncontiguous):
    _check_ops(cuda_kernels_on_cpu, _same, _same, dtype, noncontiguous)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_batchnorm_bodies_match_the_reference(cuda_kernels_on_cpu, dtype):
    _check_batchnorm(cuda_kernels_on_cpu, _same, _same, dtype, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_optimizer_bodies_match_the_updates_bit_for_bit(cuda_kernels_on_cpu, dtype):
    _check_optimizers(cuda_kernels_on_cpu, _same, _same, dtype, rtol=0)


def test_non_float_arrays_take_the_reference(cuda_kernels_on_cpu):
    x = np.arange(2 * 2 * 4 * 4).reshape(2, 2, 4, 4)
    np.testing.assert_array_equal(cuda_kernels_on_cpu.im2col(x, 2, 2), numpy_ref.im2col(x, 2, 2))
    got = cuda_kernels_on_cpu.maxpool2d_forward(x, 2, 2)
    for g, w in zip(got, numpy_ref.maxpool2d_forward(x, 2, 2)):
        np.testing.assert_array_equal(g, w)


def test_every_kernel_op_has_a_cuda_twin():
    from tinydl.backend.kernels import cuda as cuda_kernels

    for op in kernels.OPS:
        assert callable(getattr(cuda_kernels, op)), op


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_kernel_bodies_compile_with_nvcc(tmp_path, dtype):
    src = tmp_path / f"kernels_{dtype}.cu"
    src.write_text(nvcc_source(dtype))
    cmd = [NVCC, "-c", "--fmad=false", "-diag-suppress", "177", str(src), "-o",
           str(tmp_path / "k.o")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr


# ----------------------------------------------------------------------------- on a GPU


def _same_layout(b, a):
    """``a`` on the device with its memory layout (a transposed view stays one)."""
    if a.ndim == 4 and not a.flags.c_contiguous:
        return b.array(np.ascontiguousarray(a.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    return b.array(a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noncontiguous", [False, True])
def test_cuda_kernels_match_the_reference_on_the_gpu(cuda, dtype, noncontiguous):
    from tinydl.backend.kernels import cuda as cuda_kernels

    _check_ops(cuda_kernels, lambda a: _same_layout(cuda, a), cuda.numpy, dtype, noncontiguous)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_batchnorm_matches_the_reference_on_the_gpu(cuda, dtype):
    from tinydl.backend.kernels import cuda as cuda_kernels

    _check_batchnorm(cuda_kernels, cuda.array, cuda.numpy, dtype,
                     rtol=2e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_optimizers_match_the_updates_on_the_gpu(cuda, dtype):
    from tinydl.backend.kernels import cuda as cuda_kernels

    _check_optimizers(cuda_kernels, cuda.array, cuda.numpy, dtype,
                      rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_cupy_arrays_get_the_cuda_kernels(cuda):
    from tinydl.backend.kernels import cuda as cuda_kernels

    x = cuda.array(np.ones((1, 1, 4, 4), np.float32))
    for op in kernels.OPS:
        assert kernels.get_kernel(op, like=x) is getattr(cuda_kernels, op)
    assert kernels.get_kernel("im2col", like=np.ones(2)) is not cuda_kernels.im2col


def test_float16_kernels_on_the_gpu(cuda):
    from tinydl.backend.kernels import cuda as cuda_kernels

    x = _data((2, 3, 6, 6), np.float16)
    np.testing.assert_array_equal(
        cuda.numpy(cuda_kernels.im2col(cuda.array(x), 3, 3, 1, 1)), numpy_ref.im2col(x, 3, 3, 1, 1)
    )
    out, arg = cuda_kernels.maxpool2d_forward(cuda.array(x), 2, 2)
    want_out, want_arg = numpy_ref.maxpool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(cuda.numpy(out), want_out)
    np.testing.assert_array_equal(cuda.numpy(arg), want_arg)
    y = cuda_kernels.batchnorm_forward(cuda.array(x), None, None, 1e-5)[0]
    assert y.dtype == np.float16
    np.testing.assert_allclose(cuda.numpy(y), numpy_ref.batchnorm_forward(x, None, None, 1e-5)[0],
                               atol=1e-2)
    td.cuda.synchronize()
