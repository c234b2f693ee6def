"""``summary(model, input_shape)``: a table of a model's layers, made with forward hooks.

One dummy forward (zeros, under ``no_grad``, in eval mode) records each sub-module's output shape.
The parameter counts come from the model; multiply-adds are counted for ``Linear``, ``Conv2d``
and attention (exactly, formulas at ``mult_adds``) and are 0 for layers without parameters.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Tensor, no_grad
from ..backend import get_device
from ..tensor import zeros
from .attention import MultiheadAttention
from .conv import Conv2d
from .embedding import Embedding
from .linear import Linear

__all__ = ["summary", "Summary"]


def summary(model, input_shape, dtype=np.float32, device=None) -> Summary:
    """Run ``model`` once on zeros of ``input_shape`` and tabulate its layers.

    ``input_shape`` includes the batch dimension, e.g. ``(1, 1, 28, 28)``; a list of shapes
    passes several inputs. ``device`` defaults to the device of the model's parameters. The
    model's train/eval mode (of every sub-module) is restored afterwards, and the hooks removed.

    Multiply-adds per call (bias additions not counted): ``Linear``
    ``prod(output_shape[:-1]) * in_features * out_features``; ``Conv2d``
    ``prod(output_shape) * in_channels / groups * kH * kW``; 0 for a module without parameters
    of its own (element-wise work is not counted); not counted (``--``, ``None``) for other
    modules with parameters, such as BatchNorm. See ``Summary`` for the rows and totals.

    >>> print(td.summary(td.layers.LeNet5(), (1, 1, 28, 28)))   # doctest: +SKIP
    """
    shapes = _input_shapes(input_shape)
    if device is None:
        first = next(iter(model.parameters()), None)
        device = get_device(first.data) if first is not None else "cpu"
    inputs = [zeros(*s, dtype=dtype, device=device) for s in shapes]
    rows, open_rows, handles = [], {}, []

    def before(module, args):
        open_rows.setdefault(id(module), []).append(len(rows))
        shapes = [tuple(a.shape) for a in args if isinstance(a, Tensor)]
        rows.append({"name": names[id(module)], "type": type(module).__name__, "module": module})
        rows[-1]["input_shapes"] = shapes

    def after(module, args, output):
        row = rows[open_rows[id(module)].pop()]
        row["output_shape"] = _shape_of(output)
        row["output_bytes"] = sum(t.data.nbytes for t in _tensors(output))

    names = {}
    for name, module in model.named_modules():
        names[id(module)] = name
        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with no_grad():
            output = model(*inputs)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    layers = []
    for row in rows:
        module = row.pop("module")
        leaf = next(module.children(), None) is None
        if module is model and not leaf:
            continue  # the model itself: its numbers are the totals
        own = sum(p.numel() for p in module.parameters(recurse=False))
        count = mult_adds(module, row["output_shape"], row.pop("input_shapes"))
        row.update(params=own, mult_adds=count, leaf=leaf)
        layers.append(row)
    return Summary(
        model=type(model).__name__,
        input_shapes=shapes,
        dtype=np.dtype(dtype).name,
        output_shape=_shape_of(output),
        layers=layers,
        total_params=model.num_parameters(),
        trainable_params=model.num_parameters(trainable_only=True),
        param_bytes=sum(p.data.nbytes for p in model.parameters()),
        input_bytes=sum(t.data.nbytes for t in inputs),
    )


def mult_adds(module, output_shape, input_shapes=()) -> int | None:
    """Multiply-adds of one call of ``module`` on tensors of ``input_shapes`` (positional
    arguments) that produced ``output_shape``.

    - ``Linear``: ``prod(output_shape[:-1]) * in_features * out_features`` (one per weight per
      row of the input);
    - ``Conv2d``: ``prod(output_shape) * (in_channels / groups) * kH * kW`` (one per weight tap
      per output element);
    - ``MultiheadAttention`` (query ``N*L`` rows, key/value ``N*S``, width ``E``): the input
      projections ``N*L*E*E + 2*N*S*E*E`` and the two attention products ``2*N*L*S*E`` (its
      ``out_proj`` is a ``Linear`` row of its own);
    - ``Embedding``: 0 (a lookup);
    - a module with no parameters of its own: 0 (activations, pooling, reshapes and containers:
      element-wise work is not counted, a container's layers are counted on their own rows);
    - any other module with parameters (BatchNorm, user layers): ``None``, not counted.

    Bias additions are not counted, as in the usual MAC figures."""
    if isinstance(module, Linear) and isinstance(output_shape, tuple):
        return math.prod(output_shape[:-1]) * module.in_features * module.out_features
    if isinstance(module, Conv2d) and isinstance(output_shape, tuple):
        kh, kw = module.kernel_size
        return math.prod(output_shape) * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, MultiheadAttention) and len(input_shapes) >= 2:
        return _attention_mult_adds(module, *input_shapes[:2])
    if isinstance(module, Embedding) or next(iter(module.parameters(recurse=False)), None) is None:
        return 0
    return None


def _attention_mult_adds(module, query: tuple, key: tuple) -> int:
    e = module.embed_dim
    rows_q, rows_k = math.prod(query[:-1]), math.prod(key[:-1])
    s = key[-2] if module.batch_first and len(key) == 3 else key[0]
    return rows_q * e * e + 2 * rows_k * e * e + 2 * rows_q * s * e


class Summary:
    """What ``summary`` found: ``print`` it for the table, ``to_dict()`` for the numbers.

    ``layers`` lists one row per call of a sub-module, in the order the calls began (a module
    called twice has two rows; the model itself has a row only if it has no sub-modules). A
    row's ``params`` are the module's own parameters, so the column adds up to the total."""

    def __init__(
        self,
        *,
        model,
        input_shapes,
        dtype,
        output_shape,
        layers,
        total_params,
        trainable_params,
        param_bytes,
        input_bytes,
    ):
        self.model, self.input_shapes, self.dtype = model, input_shapes, dtype
        self.output_shape, self.layers = output_shape, layers
        self.total_params, self.trainable_params = total_params, trainable_params
        self.param_bytes, self.input_bytes = param_bytes, input_bytes

    @property
    def total_mult_adds(self) -> int:
        """Sum over the rows (Linear, Conv2d, attention; the rest count 0 or are not counted)."""
        return sum(r["mult_adds"] or 0 for r in self.layers)

    @property
    def activation_bytes(self) -> int:
        """Approximate activation memory: the bytes of the outputs of the leaf layers (the
        layers without sub-modules) in one forward, about what training keeps for backward."""
        return sum(r["output_bytes"] for r in self.layers if r["leaf"])

    def to_dict(self) -> dict:
        keep = ("name", "type", "output_shape", "params", "mult_adds", "output_bytes")
        return {
            "model": self.model,
            "input_shapes": [list(s) for s in self.input_shapes],
            "dtype": self.dtype,
            "output_shape": self.output_shape,
            "layers": [{k: r[k] for k in keep} for r in self.layers],
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.total_params - self.trainable_params,
            "total_mult_adds": self.total_mult_adds,
            "input_bytes": self.input_bytes,
            "activation_bytes": self.activation_bytes,
            "param_bytes": self.param_bytes,
        }

    def __str__(self) -> str:
        head = ("Layer", "Type", "Output shape", "Params", "Mult-adds")
        cells = [
            (
                r["name"] or self.model,
                r["type"],
                _fmt_shape(r["output_shape"]),
                f"{r['params']:,}",
                "--" if r["mult_adds"] is None else f"{r['mult_adds']:,}",
            )
            for r in self.layers
        ]
        widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
        right = (False, False, False, True, True)

        def line(c):
            return "  ".join(
                s.rjust(w) if r else s.ljust(w) for s, w, r in zip(c, widths, right)
            ).rstrip()

        rule = "-" * len(line(head))
        shapes = ", ".join(_fmt_shape(s) for s in self.input_shapes)
        out = [f"{self.model}: input {shapes} {self.dtype}", rule, line(head), rule]
        out += [line(c) for c in cells]
        uncounted = (
            " (-- : not counted)" if any(r["mult_adds"] is None for r in self.layers) else ""
        )
        out += [
            rule,
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.total_params - self.trainable_params:,}",
            f"Total mult-adds: {self.total_mult_adds:,} (Linear, Conv2d, attention){uncounted}",
            f"Output shape: {_fmt_shape(self.output_shape)}",
            f"Input size: {_fmt_bytes(self.input_bytes)}",
            f"Activation memory (leaf layer outputs, approx.): {_fmt_bytes(self.activation_bytes)}",
            f"Params size: {_fmt_bytes(self.param_bytes)}",
            rule,
        ]
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)


def _input_shapes(input_shape) -> list[tuple]:
    shape = tuple(input_shape)
    if all(isinstance(s, (int, np.integer)) for s in shape):
        return [tuple(int(s) for s in shape)]
    return [tuple(int(d) for d in s) for s in shape]


def _tensors(output):
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [o for o in output if isinstance(o, Tensor)]
    return []


def _shape_of(output):
    """A tensor's shape as a tuple; a list of them for a tuple/list output; None otherwise."""
    if isinstance(output, Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)):
        return [tuple(o.shape) if isinstance(o, Tensor) else None for o in output]
    return None


def _fmt_shape(shape) -> str:
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return "[" + ", ".join(_fmt_shape(s) for s in shape) + "]"
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"
