"""Dropout's compiled loop (``numba_dropout``) against its NumPy reference (``dropout_ref``),
bit for bit (NaN, infinities and signed zeros included); the reference's mask against the
hash it documents; and the mask's statistics (drop rate, neighbours, keys)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinydl as td
import tinydl.functional as F
from tinydl.backend import kernels
from tinydl.backend.kernels import dropout_ref as R

# under NUMBA_DISABLE_JIT the loop runs on NumPy scalars, which warn where it means to wrap
# (the hash's uint32 products) and where inf * 0 gives NaN
pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered in scalar multiply:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered in scalar multiply:RuntimeWarning"),
]

B = pytest.importorskip("tinydl.backend.kernels.numba_dropout", reason="Numba is not importable")

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0]
KEYS = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))


def _lowbias32(h):
    """Wellons' lowbias32 on a Python int, as written in its description."""
    h ^= h >> 16
    h = (h * 0x7FEB352D) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x846CA68B) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@given(key=KEYS, p=st.floats(0.0, 1.0), n=st.integers(0, 300))
def test_the_reference_mask_is_the_documented_hash(key, p, n):
    thr = R.threshold(p) if 0 < p < 1 else (0 if p == 0 else 2**32 - 1)
    expected = [_lowbias32(_lowbias32(i ^ key[0]) ^ key[1]) >= thr for i in range(n)]
    np.testing.assert_array_equal(R.keep_mask(key, n, thr), np.array(expected, dtype=bool))


@given(
    x=st.sampled_from([np.float32, np.float64]).flatmap(lambda dt: hnp.arrays(
        dt, st.integers(0, 700), elements=st.floats(width=32) | st.sampled_from(SPECIALS))),
    key=KEYS,
    p=st.floats(0.01, 0.99),
)  # fmt: skip
def test_loop_equals_the_reference_bit_for_bit(x, key, p):
    thr, scale = R.threshold(p), x.dtype.type(1 / (1 - p))
    expected = R.dropout_apply(x, key, thr, scale, out=np.empty_like(x))
    got = B.dropout_apply(x, key, thr, scale, out=np.full_like(x, 7))
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(_bits(got), _bits(expected))


@pytest.fixture
def two_threads():
    old = td.backend.get_num_threads()
    td.backend.set_num_threads(2)
    yield
    td.backend.set_num_threads(old)


def test_the_threads_shares_draw_the_same_mask(monkeypatch, two_threads):
    x = np.random.default_rng(0).standard_normal(10_001).astype(np.float32)
    thr, scale, key = R.threshold(0.3), np.float32(1 / 0.7), (5, 6)
    expected = R.dropout_apply(x, key, thr, scale, out=np.empty_like(x))
    monkeypatch.setattr(B, "_PARALLEL_MIN", 100)
    got = B.dropout_apply(x, key, thr, scale, out=np.empty_like(x))
    np.testing.assert_array_equal(got, expected)


def test_blocks_past_the_counter_take_their_own_key(monkeypatch):
    # the uint32 index wraps every BLOCK elements; each block then hashes under another key
    for module in (R, B):
        monkeypatch.setattr(module, "BLOCK", 1000)
    x = np.ones(3500, np.float32)
    thr, scale, key = R.threshold(0.5), np.float32(2), (1, 2)
    expected = R.dropout_apply(x, key, thr, scale, out=np.empty_like(x))
    np.testing.assert_array_equal(B.dropout_apply(x, key, thr, scale, out=np.empty_like(x)),
                                  expected)
    blocks = expected[:3000].reshape(3, 1000)
    assert (blocks[0] != blocks[1]).any() and (blocks[1] != blocks[2]).any()  # not periodic


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_statistics(p):
    n = 1_000_000
    keep = R.keep_mask((12345, 678), n, R.threshold(p))
    q = 1 - p
    sigma = lambda r: 5 * np.sqrt(r * (1 - r) / n)  # noqa: E731
    assert abs(keep.mean() - q) < sigma(q)
    both = (keep[1:] & keep[:-1]).mean()  # neighbours independent
    assert abs(both - q * q) < sigma(q * q)
    other = R.keep_mask((12346, 678), n, R.threshold(p))  # a key one apart: another mask
    agree = (keep == other).mean()
    assert abs(agree - (q * q + p * p)) < sigma(q * q + p * p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_is_the_same_on_both_kernel_variants(dtype):
    x0 = np.random.default_rng(0).standard_normal((8, 4, 30, 30)).astype(dtype)
    x0[0, 0, 0, :3] = [np.nan, -0.0, np.inf]
    results = []
    for variant in kernels.available_kernels():
        with kernels.use_kernels(variant):
            x = td.tensor(x0, requires_grad=True)
            out = F.dropout(x, 0.4, generator=np.random.default_rng(3))
            out.backward(td.ones_like(out))
            results.append((variant, _bits(out.detach().numpy()), _bits(x.grad.numpy())))
    for variant, out, grad in results[1:]:
        np.testing.assert_array_equal(out, results[0][1], err_msg=variant)
        np.testing.assert_array_equal(grad, results[0][2], err_msg=variant)
