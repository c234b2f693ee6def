"""The autograd core: Tensor, Function, the backward engine, grad mode and ``td.grad``.

Tensor and Function need each other (a Function makes Tensors, a Tensor remembers the node that
made it), so both live here with the engine. A ``Function`` computes ``forward`` on raw backend
arrays and writes ``backward`` with tinydl ops on Tensors, so a backward pass can itself be
differentiated (``create_graph=True``).
"""

from __future__ import annotations

import numpy as np

from . import profiler as _profiler
from .autograd_graph import HookHandle, _queues, count_dependencies, queue_callback
from .autograd_graph import zeros as _zeros
from .backend import as_array as _as_array
from .backend import get_array_module
from .debug import (
    _anomaly,
    _recorder,
    backward_observer,
    check_forward,
    detect_anomaly,
    record_ops,
    trace,
)
from .dtypes import is_floating
from .errors import BackwardError, DeviceError, DTypeError, ShapeError
from .grad_mode import _grad_enabled, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .tensor_methods import TensorMethods

__all__ = ["Tensor", "Function", "Context", "no_grad", "enable_grad", "set_grad_enabled"]
__all__ += ["is_grad_enabled", "grad", "sum_to", "broadcast_to", "trace", "detect_anomaly"]
__all__ += ["record_ops", "queue_callback"]

# ----------------------------------------------------------------------------- Function

_FREED = object()


class Context:
    """What a forward leaves for its backward; it is also the node of the graph.

    ``edges[i]`` says where the gradient of positional input ``i`` goes: ``None`` (no grad),
    a leaf Tensor, or ``(node, output_index)`` of the Function that made the input.
    """

    __slots__ = (
        "fn",
        "needs_input_grad",
        "edges",
        "input_meta",
        "output_meta",
        "hooks",
        "materialize_grads",
        "_to_save",
        "_saved",
        "__dict__",
    )

    def __init__(self):
        self.fn = None
        self.needs_input_grad = ()
        self.edges = ()
        self.input_meta = ()
        self.output_meta = ()
        self.hooks = None
        self.materialize_grads = True
        self._to_save = ()
        self._saved = ()

    @property
    def name(self) -> str:
        return self.fn.__name__ if self.fn is not None else "Context"

    def set_materialize_grads(self, value: bool) -> None:
        """With ``False``, ``backward`` gets ``None`` (not zeros) for an output that received
        no gradient, as in PyTorch: it can skip that work without looking at the values."""
        self.materialize_grads = bool(value)

    def save_for_backward(self, *arrays):
        """Keep arrays for backward. Inputs and outputs come back as the graph's own Tensors,
        so a backward written with them is differentiable again."""
        self._to_save = arrays

    @property
    def saved_tensors(self) -> tuple:
        if self._saved is _FREED:
            raise BackwardError(
                f"{self.name}: trying to backward through the graph a second time; its saved "
                "arrays were freed after the first backward. Pass retain_graph=True to the "
                "first backward() or td.grad() call if you need to backward twice."
            )
        return tuple([v if k == "tensor" else _unpack_saved(self, k, v) for k, v in self._saved])

    def __repr__(self) -> str:
        return f"<{self.name}Backward>"


def _unpack_saved(ctx, kind, value):
    if kind == "output":  # rebuilt on demand: holding the output Tensor would make a cycle
        array, idx = value
        return _make_tensor(array, ctx, idx)
    if kind == "array":
        return _make_tensor(value)
    return value


def _pack_saved(ctx, args, raw_outs, outs):
    packed = []
    for item in ctx._to_save:
        for a in args:  # NOTE: inputs first, the common case (an item that is a Tensor never matches)
            if isinstance(a, Tensor) and a.data is item:
                packed.append(("tensor", a))
                break
        else:
            if isinstance(item, Tensor):
                packed.append(("tensor", item))
                continue
            for i, (r, o) in enumerate(zip(raw_outs, outs)):
                if item is r or item is o:  # r may be a NumPy scalar that o wraps
                    packed.append(("output", (o, i)))
                    break
            else:
                is_array = hasattr(item, "shape") and hasattr(item, "dtype")
                packed.append(("array" if is_array else "value", item))
    ctx._saved = tuple(packed)
    ctx._to_save = ()


class Function:
    """Base class of every op. Subclass it, write two static methods, call ``apply``::

        class Square(td.Function):
            @staticmethod
            def forward(ctx, x):              # raw arrays in and out
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, grad):          # Tensors in and out
                (x,) = ctx.saved_tensors
                return 2 * x * grad

        y = Square.apply(t)

    ``backward`` returns one gradient per positional input of ``forward`` (``None`` where there is
    none). Gradients may have the broadcast shape: the engine reduces them to the input's shape.
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        frame = _profiler._open and _profiler.op_begin(cls, args)  # one read when not profiling
        # NOTE: one pass over the arguments; this is the path every op takes (see
        # benchmarks/overhead.py), so it is written out by hand: no generators, no sets. The
        # device check is skipped when every tensor holds a NumPy array (all on the CPU).
        raw, needs, grad, host = [], [], False, True
        for a in args:
            if isinstance(a, Tensor):
                data = a.data
                raw.append(data)
                needs.append(a._requires_grad)
                grad = grad or a._requires_grad
                host = host and type(data) is _ndarray
            else:
                raw.append(a)
                needs.append(False)
        if not host:
            _check_devices(cls, args)
        calls = _recorder.get()
        if calls is not None:
            calls.append((cls, args, kwargs))
        ctx = Context()
        ctx.needs_input_grad = needs = tuple(needs)
        out = cls.forward(ctx, *raw, **kwargs) if kwargs else cls.forward(ctx, *raw)
        # NOTE: one output (the common case) is handled without comprehensions (a call each)
        multi = isinstance(out, tuple)
        if multi:
            outs = [o if type(o) is _ndarray else _as_array(o) for o in out]
        else:
            outs = [out if type(out) is _ndarray else _as_array(out)]
        if _anomaly.get():
            check_forward(cls, args, outs)
        if grad and _grad_enabled.get():
            ctx.fn = cls
            edges, meta = [], []
            for a in args:
                if isinstance(a, Tensor):
                    meta.append((a.data.shape, a.data.dtype))
                    if a._requires_grad:
                        edges.append(a if a._node is None else (a._node, a._idx))
                        continue
                else:
                    meta.append(None)
                edges.append(None)
            ctx.edges, ctx.input_meta = tuple(edges), tuple(meta)
            if multi:
                ctx.output_meta = tuple([(o.shape, o.dtype) for o in outs])
                results = [
                    _make_tensor(o, ctx if o.dtype.kind == "f" else None, i)
                    for i, o in enumerate(outs)
                ]
            else:
                o = outs[0]
                ctx.output_meta = ((o.shape, o.dtype),)
                results = [_make_tensor(o, ctx if o.dtype.kind == "f" else None, 0)]
            if ctx._to_save:
                _pack_saved(ctx, args, out if multi else (out,), outs)
        else:
            results = []
            for o in outs:
                results.append(_make_tensor(o))
        if frame:
            _profiler.op_end(frame, outs)
        return tuple(results) if multi else results[0]


_ndarray = np.ndarray
_new = object.__new__


def _check_devices(cls, args) -> None:
    devices = [a.device for a in args if isinstance(a, Tensor)]
    for dev in devices[1:]:
        if dev != devices[0]:
            raise DeviceError(
                f"{cls.__name__}: tensors on different devices ({devices[0]} and {dev}); "
                "move them with .to(device) first"
            )


# ----------------------------------------------------------------------------- broadcasting


class SumTo(Function):
    """Sum an array down to ``shape`` (the inverse of broadcasting)."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        lead = x.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            i + lead for i, n in enumerate(shape) if n == 1 and x.shape[i + lead] != 1
        )
        y = x.sum(axis=axes, keepdims=True) if axes else x
        return y.reshape(shape) if lead else y

    @staticmethod
    def backward(ctx, grad):
        return broadcast_to(grad, ctx.shape), None


class BroadcastTo(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        xp = get_array_module(x)
        try:
            return xp.broadcast_to(x, shape)
        except ValueError:
            raise ShapeError(
                f"broadcast_to: cannot broadcast shape {x.shape} to {tuple(shape)}"
            ) from None

    @staticmethod
    def backward(ctx, grad):
        return sum_to(grad, ctx.shape), None


def sum_to(x: Tensor, shape) -> Tensor:
    """Sum ``x`` over broadcast dimensions so that it has ``shape``."""
    shape = tuple(shape)
    return x if x.shape == shape else SumTo.apply(x, shape)


def broadcast_to(x: Tensor, shape) -> Tensor:
    """Broadcast ``x`` to ``shape`` (a read-only view forward; ``sum_to`` backward)."""
    shape = tuple(shape)
    return x if x.shape == shape else BroadcastTo.apply(x, shape)


# ----------------------------------------------------------------------------- engine


def _pass(roots, root_grads, retain_graph, create_graph, targets):
    """Run backward from ``roots``. Without ``targets`` gradients accumulate into leaves' ``.grad``;
    with ``targets`` (a list of Tensors) they are returned instead, and no ``.grad`` changes."""
    want = {t._key(): i for i, t in enumerate(targets)} if targets else {}  # key -> position
    found = [None] * len(targets or ())
    buffers = {}  # node -> list of output grads
    leaf_grads = {}  # id(leaf) -> [leaf, grad]

    def route(edge, g):
        if type(edge) is tuple:
            node, idx = edge
            buf = buffers.get(node)
            if buf is None:
                buf = buffers[node] = [None] * len(node.output_meta)
            buf[idx] = g if buf[idx] is None else buf[idx] + g
        else:
            slot = leaf_grads.setdefault(id(edge), [edge, None])
            slot[1] = g if slot[1] is None else slot[1] + g

    observer = backward_observer()  # None unless trace(), detect_anomaly() or profile() is on
    with set_grad_enabled(create_graph), _profiler.backward_pass():
        roots_nodes = []
        for t, g in zip(roots, root_grads):
            route(t._edge(), g)
            if t._node is not None:
                roots_nodes.append(t._node)

        deps = count_dependencies(roots_nodes)
        ready = [n for n in dict.fromkeys(roots_nodes) if deps.get(n, 0) == 0]
        while ready:
            node = ready.pop()
            grads = buffers.pop(node, None) or [None] * len(node.output_meta)
            live = False
            for idx, g in enumerate(grads):
                if g is None:
                    continue
                live = True
                if node.hooks:
                    for hook in node.hooks.get(idx, ()):
                        out = hook(g)
                        g = g if out is None else out
                    grads[idx] = g
                if want:
                    pos = want.get((id(node), idx))
                    if pos is not None:
                        found[pos] = g if found[pos] is None else found[pos] + g
            if live:
                if observer is None:
                    in_grads = _call_backward(node, grads)
                else:  # timed, recorded, checked; returns the gradients already fitted
                    in_grads = observer.run(node, grads, _call_backward, _fit_grad)
                if not retain_graph and node._saved:
                    node._saved = _FREED
                for edge, meta, g in zip(node.edges, node.input_meta, in_grads):
                    if edge is not None and g is not None:
                        # NOTE: a Tensor of the input's shape and dtype (the common case) is
                        # routed as it is, without the call
                        fits = type(g) is Tensor and g.data.shape == meta[0]
                        if not fits or g.data.dtype is not meta[1]:
                            g = _fit_grad(node, g, meta)
                        route(edge, g)
            for edge in node.edges:
                if type(edge) is tuple:
                    child = edge[0]
                    deps[child] -= 1
                    if deps[child] == 0:
                        ready.append(child)

        for leaf, g in leaf_grads.values():
            for hook in leaf._hooks or ():
                out = hook(g)
                g = g if out is None else out
            if targets is not None:
                pos = want.get(leaf._key())
                if pos is not None:
                    found[pos] = g if found[pos] is None else found[pos] + g
            elif leaf.grad is None:
                # NOTE: a copy, so that two leaves never share one gradient array (an in-place
                # update of one .grad must not change another).
                leaf.grad = g if create_graph else _make_tensor(g.data.copy())
            else:
                leaf.grad = _accumulate(leaf.grad, g, not create_graph and observer is None)
    return found


def _accumulate(old, g, plain):
    """``old + g`` for a leaf's ``.grad``: the Add op, or with ``plain`` (no graph, and no profile,
    trace or anomaly check to see the op) and matching NumPy arrays, one array sum."""
    a, b = old.data, g.data
    if plain and type(a) is _ndarray and type(b) is _ndarray and _recorder.get() is None:
        if a.shape == b.shape and a.dtype == b.dtype:
            return _make_tensor(a + b)
    return old + g


def _backward(roots, root_grads, retain_graph, create_graph, targets=None):
    _queues.append([])
    try:
        found = _pass(roots, root_grads, retain_graph, create_graph, targets)
    finally:
        callbacks = _queues.pop()
    for fn in callbacks if targets is None else ():
        fn()
    return found


def _call_backward(node, grads):
    if node._saved is _FREED:
        _ = node.saved_tensors  # raises the "second time" error
    full = grads
    for g in grads if node.materialize_grads else ():  # NOTE: not `None in grads` (Tensor.__eq__)
        if g is None:
            full = [
                g if g is not None else _make_tensor(_zeros(shape, dtype, grads))
                for g, (shape, dtype) in zip(grads, node.output_meta)
            ]
            break
    out = node.fn.backward(node, *full)
    out = out if isinstance(out, tuple) else (out,)
    if len(out) < len(node.edges):
        raise BackwardError(
            f"{node.name}.backward returned {len(out)} gradients for {len(node.edges)} inputs"
        )
    return out


def _fit_grad(node, g, meta):
    """Reduce a broadcast gradient to its input's shape and dtype: the one place this happens."""
    if not isinstance(g, Tensor):
        g = _make_tensor(_as_array(g))
    shape, dtype = meta
    data = g.data
    if data.shape != shape:
        lead = len(data.shape) - len(shape)
        ok = lead >= 0 and all(s in (1, n) for s, n in zip(shape, data.shape[lead:]))
        if not ok:
            raise BackwardError(
                f"{node.name}.backward: gradient of shape {g.shape} does not fit input of shape {shape}"
            )
        g = sum_to(g, shape)
    if g.data.dtype != dtype:
        g = g.to(dtype)
    return g


def grad(
    outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False
):
    """Gradients of ``outputs`` with respect to ``inputs``, returned as a tuple (``.grad`` untouched).

    >>> x = td.tensor(2.0, requires_grad=True)
    >>> (g,) = td.grad(x ** 3, x, create_graph=True)   # 3 x^2 = 12
    >>> (h,) = td.grad(g, x)                           # 6 x = 12
    """
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise BackwardError(f"grad: input {i} does not require grad")
    root_grads = _root_grads("grad", outputs, grad_outputs)
    retain = create_graph if retain_graph is None else retain_graph
    found = _backward(outputs, root_grads, retain, create_graph, targets=inputs)
    for i, g in enumerate(found):
        if g is None and not allow_unused:
            raise BackwardError(
                f"grad: input {i} (shape {inputs[i].shape}) was not used to compute the outputs; "
                "pass allow_unused=True to get None for it"
            )
    return tuple(found)


def _root_grads(op, outputs, grad_outputs):
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise BackwardError(f"{op}: {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    result = []
    for i, (t, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise BackwardError(
                f"{op}: output {i} does not require grad and has no grad_fn; did you compute it "
                "under td.no_grad() or from tensors without requires_grad=True?"
            )
        if g is None:
            if t.data.size != 1:
                raise BackwardError(
                    f"{op}: a gradient can be created implicitly only for a scalar output, got "
                    f"shape {t.shape}; pass grad=td.ones_like(output) or the upstream gradient"
                )
            g = _make_tensor(get_array_module(t.data).ones(t.shape, t.dtype))
        else:
            g = g if isinstance(g, Tensor) else _make_tensor(_as_array(g))
            if g.shape != t.shape:
                raise ShapeError(f"{op}: gradient of shape {g.shape} for output of shape {t.shape}")
        result.append(g)
    return result


# ----------------------------------------------------------------------------- Tensor


class Tensor(TensorMethods):
    """An n-dimensional array with a gradient. ``data`` is the backend array (NumPy or CuPy).

    Create tensors with ``td.tensor``, ``td.zeros``, ``td.randn``, ...
    """

    __slots__ = ("data", "grad", "_requires_grad", "_node", "_idx", "_hooks", "__weakref__")
    __array_ufunc__ = None  # ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False):
        self.data = _as_array(data)
        self.grad = None
        self._node = None
        self._idx = 0
        self._hooks = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @staticmethod
    def from_array(array) -> Tensor:
        """A Tensor around a backend array (NumPy or CuPy) exactly as it is: no copy and no
        conversion of dtype, device or type, and no gradient. This is how ops turn the arrays
        they compute (masks, constants, gradients) into Tensors; ``td.tensor`` copies and
        ``td.as_tensor`` / ``td.from_numpy`` check and convert user data. Always a ``Tensor``,
        also when called on a subclass."""
        return _make_tensor(array)

    # -- graph -------------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool):
        if value and not is_floating(self.data.dtype):
            raise DTypeError(
                f"requires_grad: only floating-point tensors can require grad, got dtype {self.dtype}"
            )
        if not value and self._node is not None:
            raise BackwardError(
                "requires_grad: cannot turn it off on a non-leaf tensor; use .detach()"
            )
        self._requires_grad = bool(value)

    def requires_grad_(self, value: bool = True) -> Tensor:
        self.requires_grad = value
        return self

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    def _edge(self):
        return self if self._node is None else (self._node, self._idx)

    def _key(self):
        return id(self) if self._node is None else (id(self._node), self._idx)

    def backward(self, grad=None, retain_graph: bool = False, create_graph: bool = False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``."""
        root_grads = _root_grads("backward", [self], None if grad is None else [grad])
        _backward([self], root_grads, retain_graph or create_graph, create_graph)

    def register_hook(self, fn):
        """``fn(grad) -> Tensor | None`` runs when this tensor's gradient is computed; a returned
        tensor replaces the gradient. Returns a handle with ``.remove()``."""
        if not self._requires_grad:
            raise BackwardError("register_hook: the tensor does not require grad")
        if self._node is None:
            self._hooks = self._hooks if self._hooks is not None else []
            hooks = self._hooks
        else:
            self._node.hooks = self._node.hooks if self._node.hooks is not None else {}
            hooks = self._node.hooks.setdefault(self._idx, [])
        hooks.append(fn)
        return HookHandle(hooks, fn)

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory)."""
        return _make_tensor(self.data)


def _make_tensor(array, node=None, idx=0) -> Tensor:
    """The engine's constructor behind ``Tensor.from_array``: ``array`` as is (``__init__``
    checks and converts, which an op's own output does not need) and, for a Function's output,
    the graph node that made it and the output's index."""
    t = _new(Tensor)
    t.data = array
    t.grad = None
    t._node = node
    t._idx = idx
    t._hooks = None
    t._requires_grad = node is not None
    return t
