"""Seeing and checking autograd: a visible backward pass, NaN/Inf detection, two guards.

* ``trace()``: records every function of a backward pass (name, shapes, gradient norms, time).
* ``detect_anomaly()``: raises ``AnomalyError`` at the first op whose forward output or backward
  gradient holds NaN or Inf.
* ``NumericalStabilityWarning``: ``log`` applied to the output of ``softmax`` or ``sigmoid`` (ops
  marked with a ``log_warning``).
* ``RetainedGraphWarning``: the graph kept alive grows at every optimizer step (``total_loss +=
  loss``).

The engine (``autograd.py``) imports this module's context variables and hooks; this module
imports nothing from the engine, so there is no import cycle. ``td.autograd.trace`` and
``td.autograd.detect_anomaly`` are these same objects.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import os
import sys
import time
import warnings
import weakref
from dataclasses import asdict, dataclass

from . import profiler
from .backend import get_array_module
from .errors import AnomalyError

__all__ = [
    "trace",
    "BackwardTrace",
    "TraceRecord",
    "detect_anomaly",
    "is_anomaly_enabled",
    "NumericalStabilityWarning",
    "RetainedGraphWarning",
]

_anomaly = contextvars.ContextVar("tinydl_detect_anomaly", default=False)
_tracer = contextvars.ContextVar("tinydl_backward_trace", default=None)
_in_backward = contextvars.ContextVar("tinydl_in_backward", default=None)  # node, when observed

_PACKAGE_DIR = os.path.dirname(__file__) + os.sep  # the same form as the frames' co_filename


def _stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside tinydl."""
    frame, level = sys._getframe(2), 2  # 1 would be the function that calls warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


# ----------------------------------------------------------------------------- trace


@dataclass
class TraceRecord:
    """One function of a backward pass.

    ``input_shapes``: the shapes of the function's tensor inputs in forward (the shapes of the
    gradients it produces); ``output_shapes``: its forward outputs (the gradients it receives);
    ``grad_norms``: the L2 norm of the gradient it produced for each input (``None`` where the
    input needs none); ``time_s``: seconds spent in its backward.
    """

    name: str
    input_shapes: tuple
    output_shapes: tuple
    grad_norms: tuple
    time_s: float


def _norm(array) -> float:
    xp = get_array_module(array)
    a = array.astype(xp.float64).ravel()  # float16/32 squares would overflow sooner
    return float(xp.sqrt(xp.dot(a, a)))


def _shape_list(shapes) -> str:
    return ", ".join(str(tuple(s)) for s in shapes)


class BackwardTrace:
    """Records of the backward passes run inside ``with td.autograd.trace() as t:``.

    ``t.records`` is a list of ``TraceRecord`` in the order the engine ran them; ``t.table()``
    (or ``str(t)``) an aligned table; ``t.to_dict()`` plain data.
    """

    def __init__(self):
        self.records: list[TraceRecord] = []
        self._tokens = []

    def __enter__(self) -> BackwardTrace:
        self._tokens.append(_tracer.set(self))
        return self

    def __exit__(self, *exc) -> None:
        _tracer.reset(self._tokens.pop())

    def _add(self, node, grads_out, elapsed: float) -> None:
        tensor_inputs = [i for i, meta in enumerate(node.input_meta) if meta is not None]
        self.records.append(
            TraceRecord(
                name=f"{node.name}Backward",
                input_shapes=tuple(tuple(node.input_meta[i][0]) for i in tensor_inputs),
                output_shapes=tuple(tuple(shape) for shape, _ in node.output_meta),
                grad_norms=tuple(
                    None if grads_out[i] is None else _norm(grads_out[i].data)
                    for i in tensor_inputs
                ),
                time_s=elapsed,
            )
        )

    @property
    def total_time_s(self) -> float:
        return sum(r.time_s for r in self.records)

    def to_dict(self) -> dict:
        """``{"records": [{"name": ..., "input_shapes": ..., ...}, ...], "total_time_s": ...}``."""
        return {"records": [asdict(r) for r in self.records], "total_time_s": self.total_time_s}

    def table(self) -> str:
        """The records as an aligned text table, one row per function, in backward order."""
        head = ("#", "function", "input shapes", "output shapes", "grad norms", "time (us)")
        rows = [
            (
                str(i),
                r.name,
                _shape_list(r.input_shapes),
                _shape_list(r.output_shapes),
                ", ".join("-" if n is None else f"{n:.4g}" for n in r.grad_norms),
                f"{r.time_s * 1e6:.1f}",
            )
            for i, r in enumerate(self.records)
        ]
        widths = [max(len(row[c]) for row in [head, *rows]) for c in range(len(head))]
        right = {0, 5}  # numbers align right

        def line(row):
            cells = (
                v.rjust(w) if c in right else v.ljust(w)
                for c, (v, w) in enumerate(zip(row, widths))
            )
            return "  ".join(cells).rstrip()

        out = [line(head), line(tuple("-" * w for w in widths)), *map(line, rows)]
        out.append(f"{len(rows)} functions, {self.total_time_s * 1e6:.1f} us in backward")
        return "\n".join(out)

    __str__ = table

    def __repr__(self) -> str:
        return f"<BackwardTrace: {len(self.records)} functions>"


def trace() -> BackwardTrace:
    """Record every function that backward runs inside the block.

    >>> with td.autograd.trace() as t:
    ...     loss.backward()
    >>> print(t.table())  # name, input/output shapes, gradient norms, time per function
    """
    return BackwardTrace()


# ----------------------------------------------------------------------------- anomalies


@contextlib.contextmanager
def detect_anomaly(enabled: bool = True):
    """Raise ``AnomalyError`` at the first op whose forward output or backward gradient holds NaN
    or Inf, naming the op. Every op then checks its results, so use it to debug, not to train.
    (An intentional ``-inf``, e.g. an attention mask, is reported too.)"""
    token = _anomaly.set(bool(enabled))
    try:
        yield
    finally:
        _anomaly.reset(token)


def is_anomaly_enabled() -> bool:
    return _anomaly.get()


def _bad_values(array) -> str | None:
    """``"NaN"`` or ``"Inf"`` when the array holds one, else ``None``."""
    if getattr(array, "dtype", None) is None or array.dtype.kind not in "fc":
        return None
    xp = get_array_module(array)
    if bool(xp.isfinite(array).all()):
        return None
    return "NaN" if bool(xp.isnan(array).any()) else "Inf"


def _describe(shapes_dtypes) -> str:
    return ", ".join(f"{tuple(s)} {d}" for s, d in shapes_dtypes) or "none"


def check_forward(fn, args, outs) -> None:
    """Called by ``Function.apply`` under ``detect_anomaly``: ``outs`` are the raw outputs."""
    for i, out in enumerate(outs):
        bad = _bad_values(out)
        if bad is None:
            continue
        inputs = [(a.shape, a.dtype) for a in args if hasattr(a, "shape") and hasattr(a, "dtype")]
        node = _in_backward.get()
        if node is not None:  # an op that a backward uses: name the backward
            raise AnomalyError(
                f"detect_anomaly: {node.name}Backward produced {bad} in backward (its "
                f"{fn.__name__} gave output {i} of shape {tuple(out.shape)} from inputs "
                f"{_describe(inputs)}); "
                f"forward inputs of {node.name}: {_describe(m for m in node.input_meta if m)}. "
                "A derivative is infinite where the forward was finite (sqrt or log at 0, ...)."
            )
        raise AnomalyError(
            f"detect_anomaly: {fn.__name__} produced {bad} in forward (output {i}, shape "
            f"{tuple(out.shape)}); its inputs: {_describe(inputs)}. Look for log or sqrt of "
            "a negative number, a division by zero or an overflow in this op's inputs."
        )


def _check_backward(node, grads_in, grads_out) -> None:
    for i, g in enumerate(grads_out):
        bad = None if g is None else _bad_values(g.data)
        if bad is not None:
            inputs = [m for m in node.input_meta if m is not None]
            received = [(g.shape, g.dtype) for g in grads_in if g is not None]
            raise AnomalyError(
                f"detect_anomaly: {node.name}Backward produced {bad} in backward (the gradient "
                f"for input {i} of {node.name}); forward inputs: {_describe(inputs)}; gradients "
                f"received: {_describe(received)}. A derivative is infinite where the forward "
                "was finite (sqrt or log at 0, pow with a negative exponent at 0, ...)."
            )


class _Observer:
    """What the engine calls around each node's backward while tracing, detecting anomalies or
    profiling."""

    __slots__ = ("trace", "anomaly")

    def __init__(self, tr, anomaly):
        self.trace, self.anomaly = tr, anomaly

    def run(self, node, grads, call_backward, fit_grad) -> list:
        """``call_backward(node, grads)`` timed, with each gradient fitted to its input's shape
        (``fit_grad``, as the engine does), recorded and checked."""
        frame, fitted = profiler.node_begin(node, grads), ()
        try:  # NOTE: the profile's frame ends also when the backward raises
            t0 = time.perf_counter()
            token = _in_backward.set(node)  # forward checks of the ops that backward runs name it
            try:
                out = call_backward(node, grads)
            finally:
                _in_backward.reset(token)
            fitted = [
                fit_grad(node, g, meta) if edge is not None and g is not None else None
                for edge, meta, g in zip(node.edges, node.input_meta, out)
            ]
            elapsed = time.perf_counter() - t0
        finally:
            if frame is not None:
                profiler.op_end(frame, [g.data for g in fitted if g is not None])
        if self.trace is not None:  # recorded first, so the trace shows the op that raises
            self.trace._add(node, fitted, elapsed)
        if self.anomaly:
            _check_backward(node, grads, fitted)
        return fitted


def backward_observer() -> _Observer | None:
    """``None`` unless a trace, anomaly detection or a profile is on (read once per backward)."""
    tr, anomaly = _tracer.get(), _anomaly.get()
    off = tr is None and not anomaly and not profiler._open
    return None if off else _Observer(tr, anomaly)


# ----------------------------------------------------------------------------- guards


class NumericalStabilityWarning(UserWarning):
    """A composition of ops that loses precision or overflows where a fused op does not."""


class RetainedGraphWarning(UserWarning):
    """The autograd graphs of past steps are kept alive (memory grows with every step)."""


_warned: set = set()  # warnings already given in this process

def check_log_input(x) -> None:
    """Called by ``F.log``: warn once per op when ``x`` is the output of an op marked unstable
    under ``log``: a ``Function`` subclass with a ``log_warning`` class attribute (``Softmax``,
    ``Sigmoid``), the text of the warning (what goes wrong and the fused op to use instead).

    The mark lives on the op itself, so the warning follows the op wherever it is defined."""
    node = x._node
    fn = None if node is None else node.fn
    hint = getattr(fn, "log_warning", None)
    if hint is not None and fn not in _warned:
        _warned.add(fn)
        warnings.warn(hint, NumericalStabilityWarning, stacklevel=_stacklevel())


RETAINED_STEPS = 20  # consecutive optimizer steps with a growing graph before the warning


class _GraphWatch:
    """References to an optimizer's parameters seen at its previous steps."""

    def __init__(self):
        self.last = 0  # count at the previous step
        self.base = 0  # count when the current run of growing steps began
        self.rising = 0  # how many steps in a row the count went up


_watches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # optimizer -> _GraphWatch


def _param_refs(optimizer) -> int:
    return sum(sys.getrefcount(p) for g in optimizer.param_groups for p in g["params"])


# NOTE: every graph node that takes a parameter holds a reference to it (in its ``edges``), so
# the parameters' reference counts measure the live graph with no cost per op (a counter of live
# nodes would need a __del__ on every Context: +4% on a tiny op).
def check_retained_graph(optimizer) -> None:
    """Called by ``Optimizer.step``: warn once when the graphs of past steps stay alive.

    In a correct loop the parameters are referenced as often at every ``step()`` (one step's
    graph is alive); when graphs are kept (``total_loss += loss``) that grows at every step.
    """
    if "retained_graph" in _warned or not hasattr(sys, "getrefcount"):
        return
    w = _watches.get(optimizer)
    if w is None:
        w = _watches[optimizer] = _GraphWatch()
    n = _param_refs(optimizer)
    if n > w.last:
        w.rising += 1
    else:
        w.rising, w.base = 0, n
    w.last = n
    if w.rising < RETAINED_STEPS:
        return
    gc.collect()  # graphs in reference cycles are freed only by the collector: not a leak
    n = _param_refs(optimizer)
    if n - w.base < RETAINED_STEPS:
        w.rising, w.base, w.last = 0, n, n
        return
    _warned.add("retained_graph")
    warnings.warn(
        f"the autograd graph kept alive has grown at each of the last {w.rising} optimizer steps: "
        "something holds on to the graphs of past steps, usually `total_loss += loss` or "
        "`losses.append(loss)`. Accumulate plain numbers with `loss.item()` (or tensors cut "
        "from the graph with `loss.detach()`) instead.",
        RetainedGraphWarning,
        stacklevel=_stacklevel(),
    )


def _reset_guards() -> None:
    """Forget the warnings given and the steps seen (for tests)."""
    _warned.clear()
    _watches.clear()


_recorder = contextvars.ContextVar("tinydl_op_recorder", default=None)


@contextlib.contextmanager
def record_ops():
    """Collect ``(Function class, args, kwargs)`` of every op applied inside the block
    (used by ``gradcheck`` to test each op of a failing composite alone)."""
    calls = []
    token = _recorder.set(calls)
    try:
        yield calls
    finally:
        _recorder.reset(token)
