"""Fused recurrent ops: the LSTM cell's pointwise step, and an LSTM or GRU layer's whole time loop.

They exist for speed only (one op instead of a dozen per time step, and a backward on plain
arrays); each has a ``*_reference`` twin composed of primitives, which the tests compare it
with and whose graph a ``create_graph`` backward differentiates.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor, grad
from ..backend import get_array_module, threads
from ..errors import ShapeError
from ..grad_mode import enable_grad, is_grad_enabled
from .arithmetic import matmul
from .elementwise import sigmoid, tanh, where
from .shape import cat, chunk, stack

__all__ = ["lstm_pointwise", "lstm_sequence", "gru_sequence"]


def _activations(gates: Tensor) -> tuple:
    i, f, g, o = chunk(gates, 4, dim=-1)
    return sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)


def lstm_pointwise_reference(gates: Tensor, c: Tensor) -> tuple:
    """The composed twin of ``lstm_pointwise``."""
    i, f, g, o = _activations(gates)
    c = f * c + i * g
    return o * tanh(c), c


def _step(xp, gates, c):
    """The step on arrays: activations i, f, g, o, tanh(c') and the new states."""
    n, half = c.shape[-1], gates.dtype.type(0.5)
    # NOTE: sigmoid(x) = (1 + tanh(x / 2)) / 2: one ufunc, and no overflow for any x.
    i_f = xp.tanh(gates[..., : 2 * n] * half) * half + half
    i, f = i_f[..., :n], i_f[..., n:]
    g = xp.tanh(gates[..., 2 * n : 3 * n])
    o = xp.tanh(gates[..., 3 * n :] * half) * half + half
    c_new = f * c + i * g
    tc = xp.tanh(c_new)
    return (i, f, g, o, tc), o * tc, c_new


def _step_grads(gh, gc, c, i, f, g, o, tc, join):
    """Gradients of the gates and of ``c`` from those of ``h'`` and ``c'`` (arrays or Tensors)."""
    gct = gc + gh * o * (1 - tc * tc)  # the gradient reaching the new cell state
    dgates = join(
        [gct * g * i * (1 - i), gct * c * f * (1 - f), gct * i * (1 - g * g),
         gh * tc * o * (1 - o)], -1,
    )  # fmt: skip
    return dgates, gct * f


class LSTMPointwise(Function):
    @staticmethod
    def forward(ctx, gates, c):
        acts, h, c_new = _step(get_array_module(gates, c), gates, c)
        ctx.save_for_backward(gates, c, *acts)
        return h, c_new

    @staticmethod
    def backward(ctx, gh, gc):
        gates, c, i, f, g, o, tc = ctx.saved_tensors
        if is_grad_enabled():  # create_graph: activations rebuilt from ops, differentiable again
            i, f, g, o = _activations(gates)
            tc = tanh(f * c + i * g)
            join = cat
        else:  # NOTE: plain arrays: a dozen array expressions, not forty recorded ops
            gh, gc, c, i, f, g, o, tc = (t.data for t in (gh, gc, c, i, f, g, o, tc))
            join = get_array_module(c).concatenate
        dgates, dc = _step_grads(gh, gc, c, i, f, g, o, tc, join)
        return dgates, (dc if ctx.needs_input_grad[1] else None)


def lstm_pointwise(gates: Tensor, c: Tensor) -> tuple:
    """One LSTM step after the matmuls: ``gates`` ``(*, 4H)`` are the pre-activations in
    PyTorch's order i, f, g, o, ``c`` ``(*, H)`` the cell state. Returns ``(h', c')`` with
    ``c' = s(f) c + s(i) tanh(g)`` and ``h' = s(o) tanh(c')``."""
    if c.ndim == 0 or gates.shape != c.shape[:-1] + (4 * c.shape[-1],):
        raise ShapeError(
            f"lstm_pointwise: gates must have shape (*, 4H) for c of shape (*, H), got gates "
            f"{gates.shape} and c {c.shape}"
        )
    return LSTMPointwise.apply(gates, c)


def lstm_sequence_reference(gi, h, c, w_hh, valid=None, reverse=False) -> tuple:
    """The composed twin of ``lstm_sequence``: one ``lstm_pointwise`` per step."""
    outs = [None] * gi.shape[0]
    for t in reversed(range(len(outs))) if reverse else range(len(outs)):
        h_new, c_new = lstm_pointwise(gi[t] + matmul(h, w_hh.mT), c)
        if valid is not None:
            h_new, c_new = where(valid[t], h_new, h), where(valid[t], c_new, c)
            outs[t] = where(valid[t], h_new, 0)
        else:
            outs[t] = h_new
        h, c = h_new, c_new
    return stack(outs, 0), h, c


def _by_rows(xp, rows, batch: int) -> None:
    """``rows((0, batch))``, or on NumPy the batch split across the worker threads: the
    elements of a batch run their time loops independently, so each thread runs the whole
    loop for its rows (one parallel region per sequence, not one per step: a region's hand-off
    costs more than a step's 32-row GEMM)."""
    parts = threads.get_num_threads() if xp is np else 1
    if batch >= _ROWS_PER_THREAD * parts > _ROWS_PER_THREAD:
        threads.parallel(rows, threads.split(batch, parts))
    else:
        rows((0, batch))


_ROWS_PER_THREAD = 8  # below this a thread's GEMMs are too thin to pay for the split


def _twin_grads(reference, inputs, needs, extra, grads) -> tuple:
    """The backward under ``create_graph``: the gradients of the composed twin
    ``reference(*inputs, *extra)``, recorded, so they are differentiable again."""
    with enable_grad():
        outs = reference(*inputs, *extra)
    wrt = [x for x, need in zip(inputs, needs) if need]
    found = iter(grad(outs, wrt, list(grads), create_graph=True, allow_unused=True))
    return tuple(next(found) if need else None for need in needs)


class LSTMSequence(Function):
    """One layer and direction of an LSTM over a whole sequence, the time loop inside: one GEMM
    per step forward and backward, and the weight gradient as one GEMM over all the steps."""

    @staticmethod
    def forward(ctx, gi, h0, c0, w_hh, valid, reverse):
        xp = get_array_module(gi, h0, c0, w_hh)
        n = h0.shape[-1]
        h_in = xp.empty(gi.shape[:2] + (n,), gi.dtype)  # the states entering each step
        c_in, out = xp.empty_like(h_in), xp.empty_like(h_in)
        acts = xp.empty(gi.shape[:2] + (5 * n,), gi.dtype)  # i, f, g, o, tanh(c') per step
        h_n, c_n = xp.empty_like(h0), xp.empty_like(c0)
        w_t = w_hh.T

        def rows(r):  # the whole time loop for batch rows r[0]:r[1]
            b = slice(*r)
            h, c = h0[b], c0[b]
            for t in reversed(range(gi.shape[0])) if reverse else range(gi.shape[0]):
                h_in[t, b], c_in[t, b] = h, c
                step_acts, h_new, c_new = _step(xp, gi[t, b] + h @ w_t, c)
                for k, a in enumerate(step_acts):
                    acts[t, b, k * n : (k + 1) * n] = a
                if valid is not None:
                    v = valid[t, b]
                    h_new, c_new = xp.where(v, h_new, h), xp.where(v, c_new, c)
                    out[t, b] = xp.where(v, h_new, 0)
                else:
                    out[t, b] = h_new
                h, c = h_new, c_new
            h_n[b], c_n[b] = h, c

        _by_rows(xp, rows, gi.shape[1])
        ctx.valid, ctx.reverse = valid, reverse
        ctx.save_for_backward(gi, h0, c0, w_hh, h_in, c_in, acts)
        return out, h_n, c_n

    @staticmethod
    def backward(ctx, g_out, g_h, g_c):
        gi, h0, c0, w_hh, h_in, c_in, acts = ctx.saved_tensors
        valid, reverse, needs = ctx.valid, ctx.reverse, ctx.needs_input_grad[:4]
        if is_grad_enabled():
            twin = (lstm_sequence_reference, (gi, h0, c0, w_hh), needs, (valid, reverse))
            return (*_twin_grads(*twin, (g_out, g_h, g_c)), None, None)
        xp = get_array_module(gi.data)
        g_out, g_h, g_c, w = g_out.data, g_h.data, g_c.data, w_hh.data
        n = w.shape[1]
        dgates = xp.empty_like(gi.data)
        dh0, dc0 = xp.empty_like(g_h), xp.empty_like(g_c)

        def rows(r):  # the time loop backwards for batch rows r[0]:r[1]
            b = slice(*r)
            dh, dc = g_h[b], g_c[b]
            for t in range(gi.shape[0]) if reverse else reversed(range(gi.shape[0])):
                i, f, g, o, tc = (acts.data[t, b, k * n : (k + 1) * n] for k in range(5))
                dh_step, dc_step = dh + g_out[t, b], dc
                if valid is not None:
                    dh_step, dc_step = dh_step * valid[t, b], dc_step * valid[t, b]
                dgates[t, b], dc_new = _step_grads(dh_step, dc_step, c_in.data[t, b], i, f, g, o,
                                                   tc, xp.concatenate)  # fmt: skip
                dh_new = dgates[t, b] @ w
                if valid is not None:
                    v = valid[t, b]
                    dh_new, dc_new = xp.where(v, dh_new, dh), xp.where(v, dc_new, dc)
                dh, dc = dh_new, dc_new
            dh0[b], dc0[b] = dh, dc

        _by_rows(xp, rows, gi.shape[1])
        flat = dgates.reshape(-1, dgates.shape[-1])
        dw = threads.matmul(flat.T, h_in.data.reshape(-1, n)) if needs[3] else None
        return dgates, dh0, dc0, dw, None, None


def _check_valid(op: str, valid, gi) -> None:
    if valid is not None and tuple(valid.shape) != gi.shape[:2] + (1,):
        raise ShapeError(f"{op}: valid must have shape {gi.shape[:2] + (1,)}, got {valid.shape}")


def lstm_sequence(gi, h0, c0, w_hh, valid=None, reverse=False) -> tuple:
    """An LSTM layer's time loop after the input projection: ``gi`` ``(T, B, 4H)`` holds
    ``x_t W_ih^T + b_ih + b_hh`` for every step, ``h0``/``c0`` ``(B, H)``, ``w_hh`` ``(4H, H)``.
    ``valid`` (bool array ``(T, B, 1)``, optional): where False an element skips the step (state
    kept, output zero). ``reverse`` runs from the last step to the first. Returns
    ``(output (T, B, H), h_n, c_n)``."""
    n = w_hh.shape[-1] if w_hh.ndim == 2 else -1
    if (
        gi.ndim != 3 or w_hh.shape != (4 * n, n) or gi.shape[2] != 4 * n
        or h0.shape != (gi.shape[1], n) or c0.shape != h0.shape
    ):  # fmt: skip
        raise ShapeError(
            f"lstm_sequence: expected gi (T, B, 4H), h0 and c0 (B, H), w_hh (4H, H); got gi "
            f"{gi.shape}, h0 {h0.shape}, c0 {c0.shape}, w_hh {w_hh.shape}"
        )
    _check_valid("lstm_sequence", valid, gi)
    return LSTMSequence.apply(gi, h0, c0, w_hh, valid, bool(reverse))


def gru_sequence_reference(gi, h, w_hh, b_hh=None, valid=None, reverse=False) -> tuple:
    """The composed twin of ``gru_sequence``: the GRU step of primitives, once per step."""
    outs = [None] * gi.shape[0]
    for t in reversed(range(len(outs))) if reverse else range(len(outs)):
        gh = matmul(h, w_hh.mT) if b_hh is None else matmul(h, w_hh.mT) + b_hh
        (i_r, i_z, i_n), (h_r, h_z, h_n) = chunk(gi[t], 3, dim=-1), chunk(gh, 3, dim=-1)
        r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
        n = tanh(i_n + r * h_n)
        h_new = n + z * (h - n)
        if valid is not None:
            h_new = where(valid[t], h_new, h)
            outs[t] = where(valid[t], h_new, 0)
        else:
            outs[t] = h_new
        h = h_new
    return stack(outs, 0), h


class GRUSequence(Function):
    """One layer and direction of a GRU over a whole sequence, as ``LSTMSequence``: one GEMM
    per step forward and backward, the weight gradient one GEMM over all the steps."""

    @staticmethod
    def forward(ctx, gi, h0, w_hh, b_hh, valid, reverse):
        xp = get_array_module(gi, h0, w_hh)
        n, half = h0.shape[-1], gi.dtype.type(0.5)
        h_in = xp.empty(gi.shape[:2] + (n,), gi.dtype)  # the states entering each step
        out, h_n = xp.empty_like(h_in), xp.empty_like(h0)
        acts = xp.empty(gi.shape[:2] + (4 * n,), gi.dtype)  # r, z, n and h W_hn^T + b_hn
        w_t = w_hh.T

        def rows(r):  # the whole time loop for batch rows r[0]:r[1]
            b = slice(*r)
            h = h0[b]
            for t in reversed(range(gi.shape[0])) if reverse else range(gi.shape[0]):
                h_in[t, b] = h
                gh = h @ w_t if b_hh is None else h @ w_t + b_hh
                a = acts[t, b]  # a view: the activations are written in place
                # NOTE: sigmoid(x) = (1 + tanh(x / 2)) / 2: one ufunc, and no overflow for any x.
                rz = xp.tanh((gi[t, b, : 2 * n] + gh[:, : 2 * n]) * half, out=a[:, : 2 * n])
                rz *= half
                rz += half
                a[:, 3 * n :] = gh[:, 2 * n :]
                new = xp.tanh(gi[t, b, 2 * n :] + rz[:, :n] * a[:, 3 * n :], out=a[:, 2 * n : 3 * n])
                h_new = new + rz[:, n:] * (h - new)
                if valid is not None:
                    v = valid[t, b]
                    h_new = xp.where(v, h_new, h)
                    out[t, b] = xp.where(v, h_new, 0)
                else:
                    out[t, b] = h_new
                h = h_new
            h_n[b] = h

        _by_rows(xp, rows, gi.shape[1])
        ctx.valid, ctx.reverse = valid, reverse
        ctx.save_for_backward(gi, h0, w_hh, b_hh, h_in, acts)
        return out, h_n

    @staticmethod
    def backward(ctx, g_out, g_h):
        gi, h0, w_hh, b_hh, h_in, acts = ctx.saved_tensors
        valid, reverse, needs = ctx.valid, ctx.reverse, ctx.needs_input_grad[:4]
        if is_grad_enabled():
            twin = (gru_sequence_reference, (gi, h0, w_hh, b_hh), needs, (valid, reverse))
            return (*_twin_grads(*twin, (g_out, g_h)), None, None)
        xp = get_array_module(gi.data)
        g_out, g_h, w, acts, h_in = g_out.data, g_h.data, w_hh.data, acts.data, h_in.data
        n = w.shape[1]
        dgi, dgh = xp.empty_like(gi.data), xp.empty_like(gi.data)  # dgh: of h W_hh^T + b_hh
        dh0 = xp.empty_like(g_h)

        def rows(rg):  # the time loop backwards for batch rows rg[0]:rg[1]
            b = slice(*rg)
            dh = g_h[b]
            for t in range(gi.shape[0]) if reverse else reversed(range(gi.shape[0])):
                r, z, new, hn = (acts[t, b, k * n : (k + 1) * n] for k in range(4))
                dh_step = dh + g_out[t, b]
                if valid is not None:
                    dh_step = dh_step * valid[t, b]
                da_n = dh_step * (1 - z) * (1 - new * new)  # of n's pre-activation
                da_r = da_n * hn * r * (1 - r)
                da_z = dh_step * (h_in[t, b] - new) * z * (1 - z)
                dgi[t, b, : n], dgi[t, b, n : 2 * n], dgi[t, b, 2 * n :] = da_r, da_z, da_n
                dgh[t, b, : 2 * n] = dgi[t, b, : 2 * n]
                dgh[t, b, 2 * n :] = da_n * r
                dh_new = dh_step * z + dgh[t, b] @ w
                dh = dh_new if valid is None else xp.where(valid[t, b], dh_new, dh)
            dh0[b] = dh

        _by_rows(xp, rows, gi.shape[1])
        flat = dgh.reshape(-1, dgh.shape[-1])
        dw = threads.matmul(flat.T, h_in.reshape(-1, n)) if needs[2] else None
        db = flat.sum(0) if needs[3] else None
        return dgi, dh0, dw, db, None, None


def gru_sequence(gi, h0, w_hh, b_hh=None, valid=None, reverse=False) -> tuple:
    """A GRU layer's time loop after the input projection: ``gi`` ``(T, B, 3H)`` holds
    ``x_t W_ih^T + b_ih`` for every step (gates r, z, n, PyTorch's order), ``h0`` ``(B, H)``,
    ``w_hh`` ``(3H, H)``, ``b_hh`` ``(3H,)`` or None. Each step: ``r = s(gi_r + h W_hr^T +
    b_hr)``, ``z`` likewise, ``n = tanh(gi_n + r (h W_hn^T + b_hn))``, ``h' = (1 - z) n + z h``.
    ``valid`` and ``reverse`` as for ``lstm_sequence``. Returns ``(output (T, B, H), h_n)``."""
    n = w_hh.shape[-1] if w_hh.ndim == 2 else -1
    if (
        gi.ndim != 3 or w_hh.shape != (3 * n, n) or gi.shape[2] != 3 * n
        or h0.shape != (gi.shape[1], n) or (b_hh is not None and b_hh.shape != (3 * n,))
    ):  # fmt: skip
        raise ShapeError(
            f"gru_sequence: expected gi (T, B, 3H), h0 (B, H), w_hh (3H, H), b_hh (3H,); got gi "
            f"{gi.shape}, h0 {h0.shape}, w_hh {w_hh.shape}, "
            f"b_hh {None if b_hh is None else b_hh.shape}"
        )
    _check_valid("gru_sequence", valid, gi)
    return GRUSequence.apply(gi, h0, w_hh, b_hh, valid, bool(reverse))
