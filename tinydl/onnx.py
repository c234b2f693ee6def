"""Export a model to ONNX: ``td.onnx.export(model, example_input, "model.onnx")``.

The exporter walks the module tree (no tracing): each supported layer becomes the equivalent
ONNX operators with its weights as initializers, so the file runs in any ONNX runtime with no
tinydl code. The eval-mode computation is exported (BatchNorm with its running statistics,
Dropout as nothing). A layer it does not know, or a module whose ``forward`` it cannot read,
is refused by its type and its path in the model, and no file is written.

Needs the ``onnx`` package (``pip install "tinydl[onnx]"``); it is imported only on export.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import to_numpy
from .backend.kernels.geometry import pair
from .grad_mode import no_grad
from .io.atomic import atomic_write
from .layers import (
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BasicBlock,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    ResNetSmall,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from .layers.normalization import _BatchNorm
from .tensor import Tensor

__all__ = ["export", "UnsupportedLayerError"]

INPUT, OUTPUT = "input", "logits"


class UnsupportedLayerError(ValueError):
    """A layer the exporter cannot write as ONNX operators (its type and path are in the message)."""


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            'ONNX export needs the onnx package: pip install "tinydl[onnx]"'
        ) from None
    return onnx


class _Graph:
    """The nodes and initializers being built; each value is ``(name, rank)``."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.inits, self._n = [], [], 0

    def _name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, hint: str, array, dtype=None) -> str:
        name = self._name(hint)
        arr = np.ascontiguousarray(to_numpy(array), dtype=dtype or self.dtype)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs, hint: str, **attrs) -> str:
        out = self._name(hint)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _refuse(module, path: str, why: str = ""):
    where = path or "the model itself"
    raise UnsupportedLayerError(
        f"onnx.export: cannot export the layer {type(module).__name__} at '{where}'"
        + (f": {why}" if why else " (no ONNX conversion for it)")
    )


def _sequential(g, m, x, path):
    for name, child in m.named_children():
        x = _convert(g, child, x, f"{path}.{name}" if path else name)
    return x


def _linear(g, m, x, path):
    name, rank = x
    w = to_numpy(m.weight.data)
    if rank == 2:  # Gemm: y = x @ W.T + b
        inputs = [name, g.const(f"{path}.weight", w)]
        if m.bias is not None:
            inputs.append(g.const(f"{path}.bias", m.bias.data))
        return g.op("Gemm", inputs, path, transB=1), 2
    y = g.op("MatMul", [name, g.const(f"{path}.weight_t", w.T)], path)
    if m.bias is not None:
        y = g.op("Add", [y, g.const(f"{path}.bias", m.bias.data)], path)
    return y, rank


def _conv(g, m, x, path):
    ph, pw = m.padding
    inputs = [x[0], g.const(f"{path}.weight", m.weight.data)]
    if m.bias is not None:
        inputs.append(g.const(f"{path}.bias", m.bias.data))
    attrs = dict(
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        pads=[ph, pw, ph, pw],
        dilations=list(m.dilation),
        group=m.groups,
    )
    return g.op("Conv", inputs, path, **attrs), 4


def _batch_norm(g, m, x, path):
    if m.running_mean is None:
        _refuse(m, path, "without running statistics it normalizes by the batch, also in eval")
    c = m.num_features
    scale = m.weight.data if m.weight is not None else np.ones(c)
    bias = m.bias.data if m.bias is not None else np.zeros(c)
    inputs = [x[0]] + [
        g.const(f"{path}.{k}", v)
        for k, v in (
            ("weight", scale),
            ("bias", bias),
            ("running_mean", m.running_mean.data),
            ("running_var", m.running_var.data),
        )
    ]
    return g.op("BatchNormalization", inputs, path, epsilon=float(m.eps)), x[1]


def _layer_norm(g, m, x, path):
    shape = m.normalized_shape
    scale = m.weight.data if m.weight is not None else np.ones(shape)
    bias = m.bias.data if m.bias is not None else np.zeros(shape)
    inputs = [x[0], g.const(f"{path}.weight", scale), g.const(f"{path}.bias", bias)]
    y = g.op("LayerNormalization", inputs, path, axis=-len(shape), epsilon=float(m.eps))
    return y, x[1]


def _pool(op_type):
    def convert(g, m, x, path):
        (kh, kw), (sh, sw) = pair(m.kernel_size, op_type), pair(m.stride, op_type)
        ph, pw = pair(m.padding, op_type)
        attrs = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw])
        if op_type == "AveragePool":  # tinydl counts the zero padding, as PyTorch's default
            attrs["count_include_pad"] = 1
        return g.op(op_type, [x[0]], path, **attrs), 4

    return convert


def _adaptive_avg_pool(g, m, x, path):
    size = m.output_size
    if size not in (1, (1, 1), [1, 1]):
        _refuse(m, path, f"only output_size=1 (GlobalAveragePool) is exported, got {size!r}")
    return g.op("GlobalAveragePool", [x[0]], path), 4


def _flatten(g, m, x, path):
    name, rank = x
    start = m.start_dim % rank
    if m.end_dim % rank != rank - 1:
        _refuse(
            m, path, f"only flattening to the last dimension is exported, got end_dim={m.end_dim}"
        )
    # NOTE: Reshape with 0 ("keep this dimension") so the batch size stays free
    shape = g.const(f"{path}.shape", [0] * start + [-1], dtype=np.int64)
    return g.op("Reshape", [name, shape], path), start + 1


def _unary(op_type, **attrs):
    return lambda g, m, x, path: (g.op(op_type, [x[0]], path, **attrs), x[1])


def _gelu(g, m, x, path):
    # NOTE: ONNX's Gelu operator is opset 20; opset 17 spells it out with Erf or Tanh
    name = x[0]
    if m.approximate == "tanh":
        cube = g.op("Mul", [name, g.op("Mul", [name, name], path)], path)
        inner = g.op("Add", [name, g.op("Mul", [cube, g.const("c", 0.044715)], path)], path)
        t = g.op("Tanh", [g.op("Mul", [inner, g.const("k", math.sqrt(2 / math.pi))], path)], path)
    else:
        t = g.op("Erf", [g.op("Mul", [name, g.const("k", 1 / math.sqrt(2))], path)], path)
    half_x = g.op("Mul", [name, g.const("half", 0.5)], path)
    return g.op("Mul", [half_x, g.op("Add", [t, g.const("one", 1.0)], path)], path), x[1]


def _softmax(op_type):
    return lambda g, m, x, path: (g.op(op_type, [x[0]], path, axis=int(m.dim)), x[1])


def _skip(g, m, x, path):
    return x


def _basic_block(g, m, x, path):
    out = _convert(g, m.conv1, x, f"{path}.conv1")
    out = g.op("Relu", [_convert(g, m.bn1, out, f"{path}.bn1")[0]], path), 4
    out = _convert(g, m.bn2, _convert(g, m.conv2, out, f"{path}.conv2"), f"{path}.bn2")
    short = _convert(g, m.shortcut, x, f"{path}.shortcut")
    return g.op("Relu", [g.op("Add", [out[0], short[0]], f"{path}.add")], path), 4


def _resnet_small(g, m, x, path):
    for name in ("stem", "stages", "pool"):
        x = _convert(g, getattr(m, name), x, f"{path}.{name}" if path else name)
    shape = g.const("flatten.shape", [0, -1], dtype=np.int64)
    x = g.op("Reshape", [x[0], shape], "flatten"), 2
    return _convert(g, m.fc, x, f"{path}.fc" if path else "fc")


# NOTE: a converter applies only when the layer's forward is the one it was written for, so a
# subclass with its own forward (AvgPool2d of MaxPool2d, a user's model) is never misread
CONVERTERS = {
    Sequential: _sequential,
    Linear: _linear,
    Conv2d: _conv,
    _BatchNorm: _batch_norm,
    LayerNorm: _layer_norm,
    MaxPool2d: _pool("MaxPool"),
    AvgPool2d: _pool("AveragePool"),
    AdaptiveAvgPool2d: _adaptive_avg_pool,
    Flatten: _flatten,
    ReLU: _unary("Relu"),
    Sigmoid: _unary("Sigmoid"),
    Tanh: _unary("Tanh"),
    LeakyReLU: lambda g, m, x, p: (
        g.op("LeakyRelu", [x[0]], p, alpha=float(m.negative_slope)),
        x[1],
    ),
    GELU: _gelu,
    Softmax: _softmax("Softmax"),
    LogSoftmax: _softmax("LogSoftmax"),
    Dropout: _skip,
    Identity: _skip,
    BasicBlock: _basic_block,
    ResNetSmall: _resnet_small,
}


def _convert(g, module, x, path):
    for cls in type(module).__mro__:
        if cls in CONVERTERS and type(module).forward is cls.forward:
            return CONVERTERS[cls](g, module, x, path)
    _refuse(module, path)


def _eval_output(model, example):
    """The eval-mode output for ``example``, leaving every module's train/eval flag as it was."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_grad():
            return model(example)
    finally:
        for m, training in flags:
            m.training = training


def export(model, example_input, path, dynamic_batch: bool = True, opset: int = 17) -> None:
    """Write ``model`` (its eval-mode computation) as an ONNX file at ``path``.

    ``example_input`` (a Tensor or array, e.g. ``(1, 1, 28, 28)``) fixes the input's shape and
    dtype; with ``dynamic_batch`` its first dimension is free, so one file serves any batch size.
    The graph's input is named ``input`` and its output ``logits``. An unsupported layer raises
    :class:`UnsupportedLayerError` naming it, before anything is written."""
    onnx = _import_onnx()
    if opset < 17:
        raise ValueError(f"onnx.export: opset must be >= 17, got {opset}")
    x = example_input if isinstance(example_input, Tensor) else Tensor.from_array(example_input)
    dtype = np.dtype(x.dtype)
    if dtype.kind != "f":
        raise ValueError(f"onnx.export: the example input must be floating point, got {dtype}")
    out_shape = tuple(_eval_output(model, x).shape)
    g = _Graph(onnx, dtype)
    last, _ = _convert(g, model, (INPUT, x.ndim), "")
    if g.nodes and g.nodes[-1].output[0] == last:
        g.nodes[-1].output[0] = OUTPUT
    else:  # the model is an identity: still name its output
        g.nodes.append(onnx.helper.make_node("Identity", [last], [OUTPUT]))
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    batch = ["batch"] if dynamic_batch else []

    def value(name, shape):
        dims = batch + list(shape[1:]) if dynamic_batch else list(shape)
        return onnx.helper.make_tensor_value_info(name, elem, dims)

    graph = onnx.helper.make_graph(
        g.nodes,
        type(model).__name__,
        [value(INPUT, tuple(x.shape))],
        [value(OUTPUT, out_shape)],
        initializer=g.inits,
    )
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", opset)], producer_name="tinydl"
    )
    # NOTE: the lowest IR version for the opset, so older onnxruntime releases read the file too
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    onnx.checker.check_model(proto)
    atomic_write(path, proto.SerializeToString(), fn="onnx.export")
