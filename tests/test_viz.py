"""td.viz.graph: the DOT text of an autograd graph, and its rendering when Graphviz is present."""

import re
import shutil

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl import viz

NODE = re.compile(r'^  (n\d+) \[label="((?:[^"\\]|\\.)*)", (.*)\];$')
EDGE = re.compile(r"^  (n\d+) -> (n\d+);$")

HAVE_DOT = viz.HAVE_GRAPHVIZ and shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(
    not HAVE_DOT, reason="rendering needs `pip install graphviz` and the `dot` program (graphviz)"
)


def parse(g):
    """``{id: (label, attributes)}`` and ``[(from, to)]``; every line must be a node or an edge."""
    lines = str(g).splitlines()
    assert lines[0] == "digraph autograd {" and lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[3:-1]:
        if m := NODE.match(line):
            nodes[m[1]] = (m[2].replace("\\n", "\n"), m[3])
        else:
            m = EDGE.match(line)
            assert m, f"not a node or an edge: {line!r}"
            edges.append((m[1], m[2]))
    assert (len(nodes), len(edges)) == (g.num_nodes, g.num_edges)
    assert all(a in nodes and b in nodes for a, b in edges)
    return nodes, edges


def by_label(nodes, text):
    found = [n for n, (label, _) in nodes.items() if text in label]
    assert len(found) == 1, (text, found)
    return found[0]


def small_graph():
    """out = sum(a * w + x): a leaf, a parameter, an input without grad."""
    a = td.tensor(np.ones((2, 3)), requires_grad=True)
    w = td.Parameter(td.ones(3, dtype="float64"))
    x = td.zeros(2, 3, dtype="float64")
    return (a * w + x).sum(), a, w


def test_small_graph_nodes_edges_and_direction():
    out, a, w = small_graph()
    nodes, edges = parse(viz.graph(out))
    assert len(nodes) == 9  # 6 tensors (a, w, x, a*w, +x, out) and 3 functions
    assert len(edges) == 8
    mul, add, total = (by_label(nodes, f"{n}Backward") for n in ("Mul", "Add", "Sum"))
    param, leaf = by_label(nodes, "param"), by_label(nodes, "leaf")
    const, output = by_label(nodes, "input"), by_label(nodes, "output")
    assert {(param, mul), (leaf, mul), (const, add), (total, output)} <= set(edges)
    (prod,) = [b for a_, b in edges if a_ == mul]  # Mul -> a*w -> Add: data-flow direction
    assert (prod, add) in edges
    assert nodes[prod][0] == "(2, 3) float64"
    assert nodes[param][0] == "param\n(3,) float64" and "lightblue" in nodes[param][1]
    assert nodes[output][0] == "output\n() float64" and "penwidth" in nodes[output][1]
    assert "box" in nodes[mul][1] and "ellipse" in nodes[prod][1]


def test_constants_can_be_hidden_and_names_label_nodes():
    out, a, w = small_graph()
    nodes, edges = parse(viz.graph(out, show_constants=False, names={"weight": w, "loss": out}))
    assert (len(nodes), len(edges)) == (8, 7)
    assert nodes[by_label(nodes, "weight")][0] == "param weight\n(3,) float64"
    assert nodes[by_label(nodes, "output")][0] == "output loss\n() float64"


def test_shared_tensors_and_multi_output_functions_appear_once():
    a = td.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    top, bottom = td.split(a, 1, dim=0)
    out = (top * bottom * a).sum()
    nodes, edges = parse(viz.graph(out))
    split, leaf = by_label(nodes, "SplitBackward"), by_label(nodes, "leaf")
    assert len([e for e in edges if e[0] == split]) == 2  # its two outputs
    assert len([e for e in edges if e[0] == leaf]) == 2  # into Split and into the second Mul
    y = a * a  # one tensor used twice: two edges, one node
    nodes, edges = parse(viz.graph(y))
    assert edges.count((by_label(nodes, "leaf"), by_label(nodes, "MulBackward"))) == 2


def test_leaf_root_multiple_roots_and_type_error():
    w = td.Parameter(td.ones(2))
    nodes, edges = parse(viz.graph(w))
    assert list(nodes.values())[0][0] == "output\n(2,) float32" and edges == []
    y1, y2 = w * 2, w.exp()
    nodes, _ = parse(viz.graph([y1, y2]))
    assert sum("output" in label for label, _ in nodes.values()) == 2
    with pytest.raises(TypeError, match="expected a Tensor, got ndarray"):
        viz.graph(np.ones(2))


def test_show_saved_lists_saved_arrays_and_freed_after_backward():
    x = td.tensor(np.ones((2, 3)), requires_grad=True)
    out = F.softmax(x, dim=1).sum()

    def softmax_label():
        nodes, _ = parse(viz.graph(out, show_saved=True))
        return nodes[by_label(nodes, "SoftmaxBackward")][0]

    assert "saved output (2, 3) float64" in softmax_label() and "dim=1" in softmax_label()
    out.backward()
    assert "saved: freed by backward" in softmax_label()


def test_labels_are_escaped():
    w = td.Parameter(td.ones(2))
    g = viz.graph(w * 2, names={'w"1\\x\nnew line': w})
    assert '"param w\\"1\\\\x\\nnew line\\n(2,) float32"' in g.source
    nodes, _ = parse(g)
    assert by_label(nodes, "new line")


def test_deep_graph_does_not_recurse():
    n = 100_000
    x = td.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(n):
        y = -y
    g = viz.graph(y)
    assert (g.num_nodes, g.num_edges) == (2 * n + 1, 2 * n)
    assert repr(g) == f"<Graph: {2 * n + 1} nodes, {2 * n} edges; str() gives DOT text>"


def test_without_graphviz_rendering_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(viz, "HAVE_GRAPHVIZ", False)
    g = viz.graph(small_graph()[0])
    with pytest.raises(ImportError, match="pip install graphviz.*apt-get install graphviz"):
        g.render(tmp_path / "g.svg")
    assert g._repr_svg_() is None  # Jupyter falls back to the text repr
    assert str(g).startswith("digraph")  # the DOT text needs nothing


@needs_dot
def test_render_svg_png_and_jupyter(tmp_path):
    w = td.Parameter(td.ones(2))
    g = viz.graph((w * 2).sum(), names={'odd "name" \\': w}, show_saved=True)
    svg = g.render(tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "MulBackward" in svg and "odd &quot;name&quot; \\" in svg
    assert g.render(tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")
    assert g.render(tmp_path / "g.out", format="svg").read_text().count("<svg") == 1
    assert "<svg" in g._repr_svg_()
    with pytest.raises(ValueError, match="format must be"):
        g.render(tmp_path / "g.gif")
