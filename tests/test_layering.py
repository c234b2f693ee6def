"""The direction of imports (DESIGN.md): each layer imports only from the layers below it.

Read from the source with ``ast``, so late imports inside functions count too; the one upward
import allowed is ``tensor_methods`` reaching ``functional`` (Tensor's operators need the ops)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "tinydl"

# bottom first; a module may import from its own layer and the layers before it
LAYERS = [
    {"errors", "dtypes", "grad_mode", "_version"},
    {"backend"},
    # NOTE: debug holds the anomaly/trace state that the engine consults on every op; it
    # imports nothing above the backend.
    {"autograd", "autograd_graph", "tensor_methods", "tensor", "debug", "profiler"},
    # NOTE: io (the checked safetensors/npz reader) needs only autograd and the backend; it sits
    # below layers so that LeNet5(pretrained=True) can read its shipped weights
    # NOTE: autograd_functional (jacobian, hvp, ...) needs autograd and functional's shape ops;
    # the package binds it as td.autograd.functional (autograd.py cannot import upward)
    {"functional", "io", "autograd_functional"},
    {"layers"},
    {"optim", "data", "metrics", "gradcheck", "testing", "viz", "cuda", "sysinfo",
     "digits", "plots", "progress"},
    {"training", "recipes", "distributed", "onnx", "serve", "export_numpy"},
    {"cli", "__main__", ""},  # "" is the package's __init__: the public surface
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
ALLOWED_UPWARD = {("tensor_methods", "functional")}


def _room(module: str) -> str:
    """``tinydl.functional.conv`` -> ``functional``; ``tinydl`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: pathlib.Path):
    """(importing module, imported tinydl module, line) for every import in ``path``."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
        package = parts
    else:
        package = parts[:-1]
    module = ".".join(parts)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            if t == "tinydl" or t.startswith("tinydl."):
                yield module, t, node.lineno


SOURCES = sorted(ROOT.rglob("*.py"))
EDGES = [edge for path in SOURCES for edge in _imports(path)]


def test_every_module_has_a_layer():
    rooms = {_room(m) for m, _, _ in EDGES} | {_room(t) for _, t, _ in EDGES}
    unknown = sorted(r for r in rooms if r not in LEVEL)
    assert not unknown, f"add {unknown} to LAYERS in tests/test_layering.py (and DESIGN.md)"


def test_imports_point_down():
    upward = [
        f"{m} (line {line}) imports {t}"
        for m, t, line in EDGES
        if LEVEL.get(_room(t), 0) > LEVEL.get(_room(m), 0)
        and (_room(m), _room(t)) not in ALLOWED_UPWARD
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_backend_imports_only_the_leaves():
    outside = [
        f"{m} (line {line}) imports {t}"
        for m, t, line in EDGES
        if _room(m) == "backend" and _room(t) not in ("backend", "errors", "dtypes")
    ]
    assert not outside, "\n".join(outside)


def test_the_one_upward_import_is_late():
    """tensor_methods reaches functional inside a function, never at import time."""
    path = ROOT / "tensor_methods.py"
    top = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ImportFrom)]
    assert all("functional" not in (n.module or "") for n in top)
    assert any(t.startswith("tinydl.functional") for _, t, _ in _imports(path))


@pytest.mark.parametrize("bad", ["tinydl.layers", "tinydl.functional.conv"])
def test_the_check_catches_an_upward_import(bad, tmp_path, monkeypatch):
    """A backend module importing from above would be reported (the check can fail)."""
    src = tmp_path / "tinydl" / "backend" / "oops.py"
    src.parent.mkdir(parents=True)
    src.write_text(f"def f():\n    import {bad}\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path / "tinydl")
    (edge,) = list(_imports(src))
    assert edge[0] == "tinydl.backend.oops" and LEVEL[_room(edge[1])] > LEVEL["backend"]
