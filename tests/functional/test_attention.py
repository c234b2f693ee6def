"""scaled_dot_product_attention: PyTorch 2.13's results (fully masked rows included), dropout
statistics and determinism, float32 kept, double backward, and the errors for wrong inputs."""

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl.errors import DTypeError, ShapeError

torch = pytest.importorskip("torch", reason="the attention tests compare with PyTorch")
TF = torch.nn.functional


def _qkv(rng, dtype=np.float64, L=4, S=6, E=5, Ev=3):
    return [
        rng.standard_normal(s).astype(dtype) for s in ((2, 3, L, E), (2, 3, S, E), (2, 3, S, Ev))
    ]


def _both(arrays, upstream, **kw):
    """(output, gradients) of tinydl and of PyTorch for the same inputs and keywords."""
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    out_t = TF.scaled_dot_product_attention(*ts, **tkw)
    out_t.backward(torch.tensor(upstream))
    xs = [td.tensor(a, requires_grad=True) for a in arrays]
    out = F.scaled_dot_product_attention(*xs, **kw)
    out.backward(td.tensor(upstream))
    return (out, [x.grad.numpy() for x in xs]), (
        out_t.detach().numpy(),
        [t.grad.numpy() for t in ts],
    )


@pytest.mark.parametrize(
    "kw",
    [{}, {"scale": 0.4}, {"is_causal": True}, {"mask": "bool"}, {"mask": "float"}],
    ids=["plain", "scale", "causal", "bool mask", "float mask"],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pytorch(kw, dtype):
    rng = np.random.default_rng(0)
    arrays = _qkv(rng, dtype)
    kw = dict(kw)
    mask = kw.pop("mask", None)
    if mask == "bool":
        kw["attn_mask"] = rng.random((3, 4, 6)) > 0.3
    elif mask == "float":
        kw["attn_mask"] = np.where(
            rng.random((4, 6)) > 0.3, rng.standard_normal((4, 6)), -np.inf
        ).astype(dtype)
    upstream = rng.standard_normal((2, 3, 4, 3)).astype(dtype)
    (out, grads), (want, want_grads) = _both(arrays, upstream, **kw)
    assert out.dtype == dtype  # float32 stays float32
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=tol, atol=tol)
    for g, w in zip(grads, want_grads):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_rows_give_zeros_as_pytorch(kind):
    rng = np.random.default_rng(1)
    arrays = _qkv(rng)
    allowed = rng.random((4, 6)) > 0.3
    allowed[:, 0] = True
    allowed[2] = False  # query 2 may attend to no key
    mask = allowed if kind == "bool" else np.where(allowed, 0.0, -np.inf)
    upstream = rng.standard_normal((2, 3, 4, 3))
    (out, grads), (want, want_grads) = _both(arrays, upstream, attn_mask=mask)
    assert not np.isnan(out.detach().numpy()).any() and not any(np.isnan(g).any() for g in grads)
    assert not out.detach().numpy()[..., 2, :].any() and not grads[0][..., 2, :].any()
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_causal_with_more_queries_than_keys_is_top_left_aligned_as_pytorch():
    rng = np.random.default_rng(2)
    arrays = _qkv(rng, L=6, S=3)
    (out, _), (want, _) = _both(arrays, rng.standard_normal((2, 3, 6, 3)), is_causal=True)
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-12, atol=1e-12)


def test_double_backward_matches_pytorch():
    rng = np.random.default_rng(3)
    arrays = _qkv(rng)
    mask = rng.random((4, 6)) > 0.3
    mask[:, 0] = True
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    (gq,) = torch.autograd.grad(
        TF.scaled_dot_product_attention(*ts, attn_mask=torch.tensor(mask)).pow(2).sum(),
        ts[0],
        create_graph=True,
    )
    want = torch.autograd.grad(gq.sum(), ts)
    xs = [td.tensor(a, requires_grad=True) for a in arrays]
    (g,) = td.grad((F.scaled_dot_product_attention(*xs, attn_mask=mask) ** 2).sum(), [xs[0]],
                   create_graph=True)  # fmt: skip
    got = td.grad(g.sum(), xs)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def test_dropout_is_seeded_and_drops_at_its_rate():
    rng = np.random.default_rng(4)
    q, k = (td.tensor(a) for a in _qkv(rng, L=64, S=64)[:2])
    v = td.tensor(np.eye(64)[None, None].repeat(2, 0).repeat(3, 1))  # output = the weights
    full = F.scaled_dot_product_attention(q, k, v).numpy()

    def dropped(seed):
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=0.25, generator=np.random.default_rng(seed)
        ).numpy()

    a, b, c = dropped(7), dropped(7), dropped(8)
    np.testing.assert_array_equal(a, b)  # same seed, same mask
    assert (a != c).any()
    kept = a != 0
    assert abs(kept.mean() - 0.75) < 0.01  # 24576 weights: 5 sigma is 0.014
    np.testing.assert_allclose(a[kept], full[kept] / 0.75, rtol=1e-12)
    td.manual_seed(5)
    first = F.scaled_dot_product_attention(q, k, v, dropout_p=0.25).numpy()
    td.manual_seed(5)
    np.testing.assert_array_equal(
        F.scaled_dot_product_attention(q, k, v, dropout_p=0.25).numpy(), first
    )


def test_wrong_shapes_and_arguments_are_named():
    q, k, v = (td.tensor(a) for a in _qkv(np.random.default_rng(5)))
    with pytest.raises(ShapeError, match=r"scaled_dot_product_attention: query .* key .*same E"):
        F.scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ShapeError, match=r"key .* value .*same S"):
        F.scaled_dot_product_attention(q, k, v[..., :5, :])
    with pytest.raises(
        ShapeError, match=r"attn_mask of shape \(4, 5\) does not broadcast.*\(2, 3, 4, 6\)"
    ):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((4, 5), bool))
    with pytest.raises(ShapeError, match="batch dimensions"):
        F.scaled_dot_product_attention(q, k[:1, :2], v[:1, :2])
    with pytest.raises(ShapeError, match="at least 2-D"):
        F.scaled_dot_product_attention(q, k, td.tensor(np.ones(6)))
    with pytest.raises(DTypeError, match="attn_mask must be bool or floating point"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((4, 6), np.int64))
    with pytest.raises(ValueError, match="not both"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((4, 6), bool), is_causal=True)
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.5)
