"""``tinydl export RUN --numpy DIR``: the trained classifier as one readable NumPy program.

``export_numpy`` writes ``DIR/predict.py`` and ``DIR/weights.npz``. The program is a template
(argument parsing, the image preparation of ``tinydl predict``, softmax and top-3) plus the
network's forward pass written out one layer a line, and only the layer functions it calls.
It needs NumPy and Pillow, never tinydl: a learner reads the whole trained network in one file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .io.atomic import atomic_write
from .layers import (
    AdaptiveAvgPool2d,
    BasicBlock,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    ReLU,
    ResNetSmall,
    Sequential,
)
from .recipes.classifier import _classes, load_run

__all__ = ["export_numpy"]

_HEAD = '''#!/usr/bin/env python3
"""A trained tinydl classifier (__MODEL__) as a plain NumPy program, written by
`tinydl export RUN --numpy DIR`. It needs only NumPy and Pillow:

    python predict.py digit.png [more.png ...] [--json]

prints the top-3 classes of each image, as `tinydl predict RUN ...` does. The trained weights
are the plain arrays in weights.npz next to this file (loaded without pickle).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = __CLASSES__
# the training pixels' mean and standard deviation: every input is normalised with them
MEAN, STD = __MEAN__, __STD__
'''

# the layer functions, emitted only when the forward pass calls them (patches: conv and pool)
_LAYERS = {
    "patches": '''
def patches(x, kh, kw, stride, padding, dilation, fill=0.0):
    """(N, C, H, W) -> (N, C, kh, kw, OH, OW): what each kernel tap sees at each output
    position (im2col). The input is padded with `fill` first."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    n, c, h, w = x.shape
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((n, c, kh, kw, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i, j] = x[:, :, i * dh :: sh, j * dw :: sw][:, :, :oh, :ow]
    return out
''',
    "conv2d": '''
def conv2d(x, weight, bias, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Convolution: every output pixel is a dot product of the weight (O, C, kh, kw) with the
    input patch under it; one matrix product does them all."""
    o, c, kh, kw = weight.shape
    cols = patches(x, kh, kw, stride, padding, dilation)
    n, oh, ow = len(x), cols.shape[4], cols.shape[5]
    out = weight.reshape(o, -1) @ cols.reshape(n, c * kh * kw, oh * ow)
    if bias is not None:
        out += bias[:, None]
    return out.reshape(n, o, oh, ow)
''',
    "max_pool2d": '''
def max_pool2d(x, kernel, stride, padding):
    """The largest value in each window (padding never wins: it is -inf)."""
    cols = patches(x, *kernel, stride, padding, (1, 1), fill=-np.inf)
    return cols.max(axis=(2, 3))
''',
    "global_avg_pool": '''
def global_avg_pool(x):
    """(N, C, H, W) -> (N, C, 1, 1): the mean of each channel."""
    return x.mean(axis=(2, 3), keepdims=True)
''',
    "batch_norm": '''
def batch_norm(x, w, name, eps):
    """Batch norm at inference: normalise each channel with the mean and variance gathered
    during training, then scale and shift it."""
    shape = (1, -1) + (1,) * (x.ndim - 2)  # broadcast over channels (dim 1)
    mean, var = w[name + ".running_mean"], w[name + ".running_var"]
    x = (x - mean.reshape(shape)) * (1 / np.sqrt(var + eps)).reshape(shape)
    if name + ".weight" in w:
        x = x * w[name + ".weight"].reshape(shape) + w[name + ".bias"].reshape(shape)
    return x
''',
    "linear": '''
def linear(x, weight, bias):
    """x @ weight.T + bias; weight (out_features, in_features)."""
    return x @ weight.T if bias is None else x @ weight.T + bias
''',
    "relu": """
def relu(x):
    return np.maximum(x, 0)
""",
}

_PREPARE = {
    "digit": '''
def area_resize(img, height, width):
    """Shrink or grow a 2-D image by area averaging: each output pixel is the mean of the exact
    span of input it covers (via cumulative sums), so shrinking never aliases."""
    for axis, n in ((0, height), (1, width)):
        a = np.moveaxis(img, axis, 0)
        m = a.shape[0]
        csum = np.concatenate([np.zeros((1,) + a.shape[1:]), np.cumsum(a, axis=0)])
        edges = np.linspace(0.0, m, n + 1)
        lo = np.minimum(np.floor(edges).astype(int), m - 1)
        frac = (edges - lo).reshape((-1,) + (1,) * (a.ndim - 1))
        at_edges = csum[lo] + frac * (csum[lo + 1] - csum[lo])
        img = np.moveaxis(np.diff(at_edges, axis=0) / (m / n), 0, axis)
    return img


def prepare(path, box=20, size=28):
    """An image file of one digit -> float32 (28, 28) in [0, 1] as MNIST: white on black,
    the digit fitted into a 20x20 box and centred by its mass."""
    with Image.open(path) as im:
        img = np.asarray(im.convert("L"), dtype=np.float64)
    if img.max() > 1.0:  # 0..255 (an image of only 0s and 1s is taken as already in [0, 1])
        img = img / 255.0
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    if np.median(border) > 0.5:  # dark digit on a light background: invert
        img, border = 1.0 - img, 1.0 - border
    background = np.median(border)
    span = img.max() - background
    if span <= 1e-6:  # a blank image
        return np.zeros((size, size), np.float32)
    img = np.clip((img - background) / span, 0.0, 1.0)
    rows, cols = np.nonzero(img > 0.2)  # crop to the digit's bounding box
    img = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = box / max(img.shape)
    h, w = (max(1, round(n * scale)) for n in img.shape)
    img = area_resize(img, h, w)
    mass = img.sum()
    cy = (img.sum(axis=1) * np.arange(h)).sum() / mass
    cx = (img.sum(axis=0) * np.arange(w)).sum() / mass
    top = int(np.clip(round((size - 1) / 2 - cy), 0, size - h))
    left = int(np.clip(round((size - 1) / 2 - cx), 0, size - w))
    out = np.zeros((size, size), np.float32)
    out[top : top + h, left : left + w] = img
    return out
''',
    "resize": '''
def prepare(path):
    """An image file -> (28, 28) grayscale in [0, 1], resized as the training images were."""
    with Image.open(path) as im:
        img = im.convert("L").resize((28, 28), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8) / 255.0
''',
}

_TAIL = """

def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main(argv=None):
    p = argparse.ArgumentParser(description="Classify images with the exported network.")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        for path in args.images:
            if not Path(path).is_file():
                raise FileNotFoundError(f"no image file at {path}")
        images = np.stack([prepare(path) for path in args.images])
    except (OSError, ValueError) as exc:
        print(f"predict.py: error: {exc}", file=sys.stderr)
        return 1
    w = dict(np.load(Path(__file__).with_name("weights.npz"), allow_pickle=False))
    x = ((images[:, None] - MEAN) / STD).astype(np.float32)  # (N, 1, 28, 28)
    probs = softmax(forward(x, w))
    top3 = np.argsort(-probs, axis=1)[:, :3]
    results = [[(int(c), CLASSES[c], float(p[c])) for c in row] for row, p in zip(top3, probs)]
    if args.json:
        print(json.dumps([
            {"image": path, "top3": [{"class": c, "name": n, "probability": q} for c, n, q in r]}
            for path, r in zip(args.images, results)
        ]))
        return 0
    for path, top in zip(args.images, results):
        print(f"{path}: " + ", ".join(f"{name} ({q:.1%})" for _, name, q in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
"""


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class _Forward:
    """The forward pass as lines of Python, and the layer functions those lines call."""

    def __init__(self):
        self.lines: list[str] = []
        self.used: set[str] = set()

    def call(self, dst: str, fn: str, args: str) -> None:
        self.used.add(fn)
        self.lines.append(f"{dst} = {fn}({args})")

    def emit(self, m, name: str, src: str = "x", dst: str = "x") -> None:
        """Lines computing ``dst`` from ``src`` through module ``m`` (named ``name``)."""
        w = f'w["{name}.weight"]'
        if isinstance(m, (Identity, Dropout)):  # dropout is the identity at inference
            if src != dst:
                self.lines.append(f"{dst} = {src}")
        elif isinstance(m, Sequential):
            for child, sub in m.named_children():
                self.emit(sub, f"{name}.{child}" if name else child, src, dst)
                src = dst
        elif isinstance(m, Conv2d):
            if m.groups != 1:
                raise ValueError(f"export --numpy: {name} is a grouped Conv2d (not supported)")
            bias = f'w["{name}.bias"]' if m.bias is not None else "None"
            args = f"stride={m.stride}, padding={m.padding}"
            args += f", dilation={m.dilation}" if m.dilation != (1, 1) else ""
            self.call(dst, "conv2d", f"{src}, {w}, {bias}, {args}")
            self.used.add("patches")
        elif isinstance(m, MaxPool2d) and type(m) is MaxPool2d:
            kernel, stride, padding = map(_pair, (m.kernel_size, m.stride, m.padding))
            self.call(dst, "max_pool2d", f"{src}, {kernel}, stride={stride}, padding={padding}")
            self.used.add("patches")
        elif isinstance(m, AdaptiveAvgPool2d) and _pair(m.output_size) == (1, 1):
            self.call(dst, "global_avg_pool", src)
        elif isinstance(m, (BatchNorm1d, BatchNorm2d)) and m.track_running_stats:
            self.call(dst, "batch_norm", f'{src}, w, "{name}", eps={m.eps}')
        elif isinstance(m, Linear):
            bias = f'w["{name}.bias"]' if m.bias is not None else "None"
            self.call(dst, "linear", f"{src}, {w}, {bias}")
        elif isinstance(m, ReLU):
            self.call(dst, "relu", src)
        elif isinstance(m, Flatten) and (m.start_dim, m.end_dim) == (1, -1):
            self.lines.append(f"{dst} = {src}.reshape(len({src}), -1)  # flatten")
        elif isinstance(m, BasicBlock):
            self.lines.append(
                f"# {name}: residual block, relu(bn2(conv2(relu(bn1(conv1(x))))) + skip)"
            )
            self.emit(m.shortcut, f"{name}.shortcut", src, "skip")
            for layer in ("conv1", "bn1", "relu", "conv2", "bn2"):
                sub = ReLU() if layer == "relu" else getattr(m, layer)
                self.emit(sub, f"{name}.{layer}", src, dst)
                src = dst
            self.call(dst, "relu", f"{dst} + skip")
        elif isinstance(m, ResNetSmall):
            for child in ("stem", "stages", "pool"):
                self.emit(getattr(m, child), child, src, dst)
                src = dst
            self.emit(Flatten(), "", dst, dst)
            self.emit(m.fc, "fc", dst, dst)
        else:
            raise ValueError(
                f"export --numpy: the layer {name or 'model'} ({type(m).__name__}) has no NumPy "
                "version; the standalone file covers the zoo's layers"
            )

    def source(self) -> str:
        body = "\n".join(f"    {line}" for line in self.lines)
        doc = '"""(N, 1, 28, 28) normalised images -> (N, classes) logits, layer by layer."""'
        return f"\n\ndef forward(x, w):\n    {doc}\n{body}\n    return x\n"


def export_numpy(run, out_dir) -> Path:
    """Write ``out_dir/predict.py`` and ``out_dir/weights.npz`` for the run folder (or
    checkpoint, or the ``(model, meta)`` of ``load_run``/``load_pretrained``) ``run``; returns
    the path of ``predict.py``. A model with a layer that has no NumPy version is refused before
    anything is written."""
    model, meta = run if isinstance(run, tuple) else load_run(run)
    forward = _Forward()
    forward.emit(model, "")
    layers = "".join(f"\n{code}" for fn, code in _LAYERS.items() if fn in forward.used)
    prepare = _PREPARE["digit" if meta.get("preprocess", "digit") == "digit" else "resize"]
    head = (
        _HEAD.replace("__MODEL__", str(meta["model"]))
        .replace("__CLASSES__", repr(list(_classes(meta))))
        .replace("__MEAN__", repr(float(meta["mean"])))
        .replace("__STD__", repr(float(meta["std"])))
    )
    source = head + "\n# -- the layers" + layers + forward.source()
    source += "\n\n# -- the image preparation of `tinydl predict`\n" + prepare + _TAIL
    weights = {
        key: to_numpy(value)
        for key, value in model.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "weights.npz", buffer.getvalue(), fn="export_numpy")
    atomic_write(out / "predict.py", source, fn="export_numpy")
    return out / "predict.py"
