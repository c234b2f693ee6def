"""Pictures of the autograd graph behind a tensor.

``td.viz.graph(loss)`` returns a ``Graph`` whose ``.source`` is Graphviz DOT text: tensors are
ellipses labelled with shape and dtype, functions are boxes named like ``grad_fn``
(``MulBackward``), and edges follow the data from the inputs (top) to the output (bottom).
Parameters are blue and say ``param``, other leaves that require grad yellow, inputs that do not
require grad grey, the output green. Rendering (``Graph.render``, inline SVG in Jupyter) needs the
``graphviz`` Python package and the Graphviz ``dot`` program; this is the only module that
imports ``graphviz``. The DOT text needs neither.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import numpy as np

from .autograd import _FREED, Tensor
from .tensor import Parameter

__all__ = ["HAVE_GRAPHVIZ", "Graph", "graph"]

HAVE_GRAPHVIZ = importlib.util.find_spec("graphviz") is not None

_INSTALL = (
    "rendering a graph needs the graphviz Python package and the Graphviz `dot` program: "
    "pip install graphviz, and apt-get install graphviz (or brew install graphviz, or "
    "conda install python-graphviz); the DOT text (str(graph)) needs neither"
)

_STYLE = {  # node kind -> DOT attributes
    "param": 'shape=ellipse, style=filled, fillcolor="lightblue"',
    "leaf": 'shape=ellipse, style=filled, fillcolor="lightyellow"',
    "const": 'shape=ellipse, style="filled,dashed", fillcolor="gray90"',
    "tensor": "shape=ellipse",
    "output": 'shape=ellipse, style=filled, fillcolor="darkolivegreen1", penwidth=2',
    "function": 'shape=box, style="rounded,filled", fillcolor="white"',
}


def _graphviz():
    if not HAVE_GRAPHVIZ:
        raise ImportError(_INSTALL)
    import graphviz

    return graphviz


def _quote(text: str) -> str:
    """A DOT double-quoted string; ``\\n`` in the text becomes a line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


@functools.lru_cache(maxsize=4096)  # NOTE: dtype.name is slow, and graphs repeat shapes
def _describe(shape, dtype) -> str:
    return f"{tuple(shape)} {np.dtype(dtype).name}"


class Graph:
    """Graphviz DOT text of an autograd graph (``str(g)`` or ``g.source``), renderable."""

    def __init__(self, source: str, num_nodes: int, num_edges: int):
        self.source = source
        self.num_nodes = num_nodes
        self.num_edges = num_edges

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return f"<Graph: {self.num_nodes} nodes, {self.num_edges} edges; str() gives DOT text>"

    def pipe(self, format: str = "svg") -> bytes:
        """The rendered picture as bytes (``format``: ``"svg"``, ``"png"``, ``"pdf"``)."""
        if format not in ("svg", "png", "pdf"):
            raise ValueError(f"Graph.render: format must be 'svg', 'png' or 'pdf', got {format!r}")
        graphviz = _graphviz()
        try:
            return graphviz.Source(self.source).pipe(format=format)
        except graphviz.ExecutableNotFound:
            raise ImportError(_INSTALL) from None

    def render(self, path, format: str | None = None) -> pathlib.Path:
        """Write the picture to ``path``; the format comes from its suffix unless given."""
        path = pathlib.Path(path)
        fmt = format or (path.suffix[1:].lower() if path.suffix else "svg")
        path.write_bytes(self.pipe(fmt))
        return path

    def _repr_svg_(self) -> str | None:
        # Jupyter shows the SVG; without graphviz it falls back to repr() rather than failing
        try:
            return self.pipe("svg").decode("utf-8")
        except ImportError:
            return None


class _Builder:
    def __init__(self, names: dict, show_saved: bool, show_constants: bool):
        self.names = names
        self.show_saved = show_saved
        self.show_constants = show_constants
        self.ids: dict = {}  # key -> node id
        self.lines: list[str] = []
        self.num_edges = 0

    def node(self, key, label: str, kind: str) -> tuple[str, bool]:
        """The id of the node for ``key``; ``True`` when it was created now."""
        if key in self.ids:
            return self.ids[key], False
        nid = f"n{len(self.ids)}"
        self.ids[key] = nid
        self.lines.append(f"  {nid} [label={_quote(label)}, {_STYLE[kind]}];")
        return nid, True

    def edge(self, a: str, b: str) -> None:
        self.lines.append(f"  {a} -> {b};")
        self.num_edges += 1

    def leaf(self, t: Tensor, output: bool = False) -> str:
        name = self.names.get(t._key())
        if output:
            kind, tag = "output", "output"
        elif not t.requires_grad:
            kind, tag = "const", "input"
        else:
            kind = tag = "param" if isinstance(t, Parameter) else "leaf"
        title = f"{tag} {name}" if name else tag
        return self.node(t._key(), f"{title}\n{_describe(t.shape, t.dtype)}", kind)[0]

    def tensor(self, ctx, idx: int, output: bool = False) -> tuple[str, bool]:
        """The node of output ``idx`` of ``ctx``, joined to the function that made it."""
        shape, dtype = ctx.output_meta[idx]
        name = self.names.get((id(ctx), idx))
        label = _describe(shape, dtype)
        if output or name:
            label = f"{'output ' if output else ''}{name or ''}".strip() + "\n" + label
        nid, new = self.node((id(ctx), idx), label, "output" if output else "tensor")
        if new:
            self.edge(self.function(ctx), nid)
        return nid, new

    def function(self, ctx) -> str:
        label = f"{ctx.name}Backward"
        if self.show_saved:
            label += "".join(f"\n{line}" for line in _saved_lines(ctx))
        return self.node(("fn", id(ctx)), label, "function")[0]


def _saved_lines(ctx) -> list[str]:
    """What ``ctx`` keeps for backward: saved arrays and plain attributes (``dim=1``)."""
    if ctx._saved is _FREED:
        return ["saved: freed by backward"]
    lines = []
    for kind, value in ctx._saved:
        if kind == "tensor":
            lines.append(f"saved input {_describe(value.shape, value.dtype)}")
        elif kind == "output":
            lines.append(f"saved output {_describe(value[0].shape, value[0].dtype)}")
        elif kind == "array":
            lines.append(f"saved array {_describe(value.shape, value.dtype)}")
        else:
            lines.append(f"saved {value!r}"[:40])
    for key, value in vars(ctx).items():
        text = repr(value)
        lines.append(f"{key}={text}" if len(text) <= 30 else f"{key}=...")
    return lines


def graph(
    tensor, show_saved: bool = False, names: dict | None = None, show_constants: bool = True
) -> Graph:
    """The autograd graph behind ``tensor`` (or a list of tensors) as a ``Graph``.

    ``names`` maps labels to tensors, e.g. ``dict(model.named_parameters())``, to name those
    nodes; ``show_saved`` lists in each function what it keeps for backward; ``show_constants``
    draws inputs that do not require grad (grey). The walk is iterative, so graphs of any depth
    work.

    >>> w = td.Parameter(td.ones(3)); x = td.tensor([1.0, 2.0, 3.0])
    >>> print(td.viz.graph((w * x).sum(), names={"w": w}))   # DOT text; .render("g.svg")
    """
    roots = list(tensor) if isinstance(tensor, (list, tuple)) else [tensor]
    for i, t in enumerate(roots):
        if not isinstance(t, Tensor):
            raise TypeError(f"viz.graph: expected a Tensor, got {type(t).__name__} (root {i})")
    b = _Builder({t._key(): str(k) for k, t in (names or {}).items()}, show_saved, show_constants)
    for t in roots:  # outputs first, so that they are marked even where another root uses them
        if t._node is None:
            b.leaf(t, output=True)
        else:
            b.tensor(t._node, t._idx, output=True)
    stack = list(dict.fromkeys(t._node for t in roots if t._node is not None))
    seen = set(stack)
    while stack:
        ctx = stack.pop()
        fid = b.function(ctx)
        for i, (edge, meta) in enumerate(zip(ctx.edges, ctx.input_meta)):
            if isinstance(edge, tuple):
                child, idx = edge
                b.edge(b.tensor(child, idx)[0], fid)
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
            elif edge is not None:
                b.edge(b.leaf(edge), fid)
            elif meta is not None and b.show_constants:
                label = f"input\n{_describe(*meta)}"
                b.edge(b.node(("const", id(ctx), i), label, "const")[0], fid)
    header = [
        "digraph autograd {",
        "  graph [rankdir=TB];",
        '  node [fontname="Helvetica", fontsize=11];',
    ]
    source = "\n".join([*header, *b.lines, "}"]) + "\n"
    return Graph(source, len(b.ids), b.num_edges)
