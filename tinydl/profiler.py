"""``td.profile()``: where the time of a step goes, per op and pass.

>>> with td.profile() as prof:
...     loss = F.cross_entropy(model(x), y)
...     opt.zero_grad()
...     loss.backward()
...     opt.step()
>>> print(prof.table())          # top 20 rows by total time, with each row's share
>>> prof.to_dict()               # the same as plain data

What is recorded, per ``(name, pass)`` row: calls, total time and bytes.

* **forward**: every ``Function.apply`` outside a backward pass and an optimizer step, named by
  the op's class (``Matmul``, ``Conv2d``).
* **backward**: each node the engine runs, named ``<Op>Backward`` (its ``backward`` plus the
  reduction of broadcast gradients); the ops that a backward or the engine itself applies
  (``Matmul`` called by ``Conv2dBackward``, ``Add`` accumulating two gradients, ``SumTo``) are
  their own rows in this pass, under the op's name.
* **optimizer**: ``<Optimizer>.step`` and ``<Optimizer>.zero_grad``, once per call.
* **data**: time spent waiting for a batch, where a loop wraps its loader (``tinydl train
  --profile``).
* **(other)**: the rest of the block's wall time: Python between ops (module calls, the loop),
  the profiler's own bookkeeping.

Times are **exclusive**: a row's time excludes the rows nested inside it (``Conv2dBackward``
excludes the ``Matmul`` it calls), so the rows, ``(other)`` included, add up to the wall time of
the block. **Bytes** are the ``nbytes`` of the arrays a row's calls return (the outputs in
forward, the input-gradients in backward), each counted once, less those that share memory with
what the call received or with what a nested op returned (counted in that op's row): a view of
an input (``Permute``, ``Reshape``) or a gradient handed on unchanged (``AddBackward``) counts 0.
Memory that an op allocates and frees inside (workspaces, im2col columns) and the optimizer's
in-place updates are not counted.

On a GPU (CuPy) work is asynchronous; while a profile is open and CuPy arrays are involved, the
device is synchronised at the start and end of every timed call, so each row holds its own
kernels' time. That serialises the GPU and CPU: profiled steps are slower than unprofiled ones.

A profile belongs to the thread (and context) that opened it: ops of other threads are not
recorded. Opening a second profile inside an open one in the same context raises
``RuntimeError``. Off, the cost is one module-attribute read per op (``benchmarks overhead
--profile`` measures it, and the cost per op when on).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import time

import numpy as np

from .backend import cupy_backend, get_device, is_device_array

__all__ = ["profile", "Profile"]

# NOTE: a plain module global, read by ``Function.apply`` on every op: a ContextVar ``.get()``
# costs more (benchmarks overhead --profile). It only says whether some profile is open anywhere;
# which profile (if any) belongs to the caller is the ContextVar's answer, asked only then.
_open = 0
_open_lock = threading.Lock()
_current = contextvars.ContextVar("tinydl_profile", default=None)
_OFF = contextlib.nullcontext()
_now = time.perf_counter
PASSES = ("forward", "backward", "optimizer", "data")


class _Frame:
    """One timed call in progress."""

    __slots__ = ("prof", "depth", "name", "pass_", "start", "child", "skip", "caller")

    def __init__(self, prof, depth, name, pass_, skip, caller):
        self.prof, self.depth, self.name, self.pass_ = prof, depth, name, pass_
        self.child, self.skip, self.caller = 0.0, skip, caller
        if prof._sync:
            cupy_backend.synchronize()
        self.start = _now()


class Profile:
    """What ``td.profile()`` records; see the module's documentation."""

    def __init__(self, sync: bool | None = None):
        self._stats: dict = {}  # (name, pass) -> [calls, seconds, bytes]
        self._stack: list = []
        self._pass = "forward"  # the pass of calls outside any timed call
        self._sync = sync  # None: from the first CuPy array seen
        self._state = "new"
        self._token = None
        self._start = 0.0
        self.wall_s = 0.0

    # -- the block -----------------------------------------------------------------------------
    def __enter__(self) -> Profile:
        global _open
        if self._state != "new":
            raise RuntimeError("td.profile: a Profile can be used for one with-block only")
        if _current.get() is not None:
            raise RuntimeError(
                "td.profile: a profile is already open in this thread; nested profiles are not "
                "supported (read the outer one, or close it first)"
            )
        self._token = _current.set(self)
        with _open_lock:
            _open += 1
        self._state = "open"
        self._start = self._clock()
        return self

    def __exit__(self, *exc) -> None:
        global _open
        self.wall_s = self._clock() - self._start
        self._stack.clear()
        self._state = "closed"
        with _open_lock:
            _open -= 1
        _current.reset(self._token)

    def _clock(self) -> float:
        if self._sync:
            cupy_backend.synchronize()
        return _now()

    # -- timed calls (the engine's hooks) ------------------------------------------------------
    def _begin(self, name, pass_, received=(), caller=None) -> _Frame:
        stack = self._stack
        # NOTE: an op that raised never reached its _end (Function.apply has no try/finally, to
        # stay lean); drop such frames before they adopt this call. Only op frames can be left
        # over (nodes and regions end in a finally), so only they are looked up the Python stack.
        while stack and stack[-1].caller is not None and not _running(stack[-1].caller):
            stack.pop()
        if pass_ is None:
            pass_ = stack[-1].pass_ if stack else self._pass
        skip = {id(a) if a.base is None else id(_root(a)) for a in received}
        frame = _Frame(self, len(stack), name, pass_, skip, caller)
        stack.append(frame)
        return frame

    def _end(self, frame: _Frame, arrays=()) -> None:
        if self._sync:
            cupy_backend.synchronize()
        elif self._sync is None and arrays and type(arrays[0]) is not np.ndarray:
            if is_device_array(arrays[0]):  # CuPy arrays from now on: synchronise
                self._sync = True
                cupy_backend.synchronize(get_device(arrays[0]))
        elapsed = _now() - frame.start
        del self._stack[frame.depth :]  # also frames an exception left open
        nbytes, skip = 0, frame.skip
        roots = [id(a) if a.base is None else id(_root(a)) for a in arrays]
        for a, root in zip(arrays, roots):
            if root not in skip:
                skip.add(root)
                nbytes += a.nbytes
        if self._stack:
            parent = self._stack[-1]
            parent.child += elapsed
            parent.skip.update(roots)
        row = self._stats.get((frame.name, frame.pass_))
        if row is None:
            row = self._stats[(frame.name, frame.pass_)] = [0, 0.0, 0]
        row[0] += 1
        row[1] += elapsed - frame.child
        row[2] += nbytes

    # -- results -------------------------------------------------------------------------------
    @property
    def ops_s(self) -> float:
        """Seconds inside recorded calls (the sum of all rows but ``(other)``)."""
        return sum(r[1] for r in self._stats.values())

    def rows(self, sort: str = "total") -> list[dict]:
        """One dict per ``(name, pass)``, sorted by ``sort``: total, mean, calls, bytes or name."""
        keys = {"total": "total_s", "mean": "mean_s", "calls": "calls", "bytes": "bytes"}
        if sort not in (*keys, "name"):
            raise ValueError(f"Profile: sort must be one of {', '.join([*keys, 'name'])}")
        wall = self.wall_s or self.ops_s or 1.0
        rows = [
            {
                "name": name,
                "pass": pass_,
                "calls": calls,
                "total_s": total,
                "mean_s": total / calls,
                "bytes": nbytes,
                "share": total / wall,
            }
            for (name, pass_), (calls, total, nbytes) in self._stats.items()
        ]
        if sort == "name":
            return sorted(rows, key=lambda r: (r["name"], r["pass"]))
        return sorted(rows, key=lambda r: r[keys[sort]], reverse=True)

    def passes(self) -> dict:
        """Seconds per pass (forward, backward, optimizer, data), each row's time in its pass."""
        seconds = dict.fromkeys(PASSES, 0.0)
        for (_, pass_), row in self._stats.items():
            seconds[pass_] = seconds.get(pass_, 0.0) + row[1]
        return seconds

    def to_dict(self) -> dict:
        """``{"wall_s", "ops_s", "other_s", "passes", "synchronized", "rows": [...]}``: ``rows``
        as ``rows()`` gives them (by total time), ``passes`` as ``passes()``; ``other_s`` is the
        wall time outside every row."""
        return {
            "wall_s": self.wall_s,
            "ops_s": self.ops_s,
            "other_s": max(self.wall_s - self.ops_s, 0.0),
            "passes": self.passes(),
            "synchronized": bool(self._sync),
            "rows": self.rows(),
        }

    def table(self, top: int = 20, sort: str = "total") -> str:
        """The ``top`` rows by ``sort`` as aligned text, the rest folded into one line, then
        ``(other)`` and the total (the block's wall time: the shares add up to 100%)."""
        rows, wall = self.rows(sort), self.wall_s or self.ops_s
        shown, rest = rows[:top], rows[top:]
        lines = [_line(r["name"], r["pass"], r["calls"], r["total_s"], r["bytes"], wall)
                 for r in shown]  # fmt: skip
        if rest:
            lines.append(
                _line(f"({len(rest)} more rows)", "", sum(r["calls"] for r in rest),
                      sum(r["total_s"] for r in rest), sum(r["bytes"] for r in rest), wall)
            )  # fmt: skip
        lines.append(_line("(other)", "", None, max(wall - self.ops_s, 0.0), None, wall))
        head = ("name", "pass", "calls", "total ms", "mean us", "share", "MB")
        total = _line("total", "", sum(r["calls"] for r in rows), wall,
                      sum(r["bytes"] for r in rows), wall)  # fmt: skip
        total = (*total[:4], "", *total[5:])
        widths = [max(len(r[c]) for r in [head, *lines, total]) for c in range(len(head))]
        rule = tuple("-" * w for w in widths)
        out = [_fmt(r, widths) for r in (head, rule, *lines, rule, total)]
        out.append("by pass: " + ", ".join(
            f"{p} {s * 1e3:.2f} ms ({100 * s / wall:.1f}%)" if wall else f"{p} 0 ms"
            for p, s in self.passes().items()
        ))  # fmt: skip
        if self._sync:
            out.append("(GPU synchronised around every timed call)")
        return "\n".join(out)

    __str__ = table

    def __repr__(self) -> str:
        return f"<Profile {self._state}: {len(self._stats)} rows, {self.wall_s * 1e3:.1f} ms>"


def _running(pyframe) -> bool:
    """Whether ``pyframe`` is on the calling thread's Python stack (still executing)."""
    f = sys._getframe(2)
    while f is not None:
        if f is pyframe:
            return True
        f = f.f_back
    return False


def _root(array):
    """The array that owns the memory ``array`` views (``array`` itself when it owns it)."""
    while getattr(array, "base", None) is not None:
        array = array.base
    return array


def _line(name, pass_, calls, total, nbytes, wall) -> tuple:
    mean = "" if not calls else f"{total / calls * 1e6:.1f}"
    share = f"{100 * total / wall:.1f}%" if wall else "-"
    mb = "" if nbytes is None else f"{nbytes / 2**20:.2f}"
    return (name, pass_, "" if calls is None else str(calls), f"{total * 1e3:.2f}", mean, share,
            mb)  # fmt: skip


def _fmt(row, widths) -> str:
    cells = (v.ljust(w) if c < 2 else v.rjust(w) for c, (v, w) in enumerate(zip(row, widths)))
    return "  ".join(cells).rstrip()


def profile(sync: bool | None = None) -> Profile:
    """Record the time, calls and bytes of every op inside the block, per op and pass.

    ``sync``: synchronise the GPU around each timed call (None: once CuPy arrays show up).
    """
    return Profile(sync)


# ----------------------------------------------------------------------------- hooks


def op_begin(cls, args) -> _Frame | None:
    """Called by ``Function.apply`` while a profile is open somewhere."""
    prof = _current.get()
    if prof is None:
        return None
    received = [a.data for a in args if hasattr(a, "_node")]
    return prof._begin(cls.__name__, None, received, sys._getframe(1))


def op_end(frame: _Frame, arrays) -> None:
    frame.prof._end(frame, arrays)


def node_begin(node, grads) -> _Frame | None:
    """Around one node of the backward engine: ``grads`` are the gradients it receives."""
    prof = _current.get() if _open else None
    if prof is None:
        return None
    return prof._begin(f"{node.name}Backward", "backward", [g.data for g in grads if g is not None])


def region(obj, what: str, pass_: str):
    """A timed ``<type(obj).__name__>.<what>`` row in ``pass_`` (e.g. ``Adam.step``); off: a
    shared no-op context."""
    prof = _current.get() if _open else None
    return _OFF if prof is None else _Region(prof, f"{type(obj).__name__}.{what}", pass_)


def backward_pass():
    """Marks the engine's backward: ops outside its nodes (gradient sums) go to ``backward``."""
    prof = _current.get() if _open else None
    return _OFF if prof is None else _Pass(prof, "backward")


class _Region:
    __slots__ = ("prof", "name", "pass_", "frame")

    def __init__(self, prof, name, pass_):
        self.prof, self.name, self.pass_ = prof, name, pass_

    def __enter__(self):
        self.frame = self.prof._begin(self.name, self.pass_)

    def __exit__(self, *exc):
        self.prof._end(self.frame)


class _Pass:
    __slots__ = ("prof", "pass_", "saved")

    def __init__(self, prof, pass_):
        self.prof, self.pass_ = prof, pass_

    def __enter__(self):
        self.saved, self.prof._pass = self.prof._pass, self.pass_

    def __exit__(self, *exc):
        self.prof._pass = self.saved
