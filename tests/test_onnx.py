"""ONNX export checked the way a deployment uses it: the file, read by onnxruntime, gives the
outputs tinydl gives, for every zoo model and any batch size."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tinydl as td
from tinydl import layers as nn

onnx = pytest.importorskip("onnx", reason='needs the onnx extra: pip install "tinydl[onnx]"')
ort = pytest.importorskip("onnxruntime", reason='needs the onnx extra: pip install "tinydl[onnx]"')

ZOO = {
    "mlp": nn.MLP,
    "lenet": nn.LeNet5,
    "cnn": nn.MnistCNN,
    "resnet": nn.ResNetSmall,
    "vgg": nn.VGGSmall,
}


def _randomized(model, seed=0):
    """``model`` in eval mode with BatchNorm's statistics and affine terms away from 0 and 1,
    so an exporter that ignored any of them would be caught."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.data[...] = rng.normal(0, 0.5, n)
            m.running_var.data[...] = rng.uniform(0.3, 3.0, n)
            m.weight.data[...] = rng.normal(1, 0.5, n)
            m.bias.data[...] = rng.normal(0, 0.5, n)
    return model.eval()


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_same(model, path, shape, batches=(1, 37), seed=1):
    session, rng = _session(path), np.random.default_rng(seed)
    for b in batches:
        x = rng.normal(size=(b, *shape)).astype(np.float32)
        (got,) = session.run(["logits"], {"input": x})
        with td.no_grad():
            want = model(td.tensor(x)).numpy()
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_matches_onnxruntime(name, tmp_path):
    td.manual_seed(0)
    model = _randomized(ZOO[name]())
    path = tmp_path / f"{name}.onnx"
    td.onnx.export(model, np.zeros((1, 1, 28, 28), np.float32), path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.opset_import[0].version >= 17
    # nothing of tinydl in the graph: standard-domain operators only
    assert {n.domain for n in proto.graph.node} <= {""}
    _check_same(model, path, (1, 28, 28))


def test_every_layer_kind_matches(tmp_path):
    """The layers the zoo does not use: strided, dilated, grouped convolution, average pooling,
    the other activations, LayerNorm, Softmax, and a Linear on a 3-D input."""
    td.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=2, dilation=2, groups=2),
        nn.LeakyReLU(0.2),
        nn.AvgPool2d(2, stride=1, padding=1),
        nn.Conv2d(4, 6, (3, 1), padding=(1, 0)),
        nn.GELU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Tanh(),
        nn.Flatten(2),
        nn.Linear(16, 8),
        nn.GELU(approximate="tanh"),
        nn.LayerNorm(8),
        nn.Sigmoid(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(48, 5),
        nn.Softmax(dim=1),
    ).eval()
    path = tmp_path / "kinds.onnx"
    td.onnx.export(model, np.zeros((3, 2, 13, 13), np.float32), path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    _check_same(model, path, (2, 13, 13), batches=(1, 4))


def test_fixed_batch_when_asked(tmp_path):
    path = tmp_path / "fixed.onnx"
    td.onnx.export(
        nn.LeNet5().eval(), np.zeros((2, 1, 28, 28), np.float32), path, dynamic_batch=False
    )
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 1, 28, 28]


def test_export_leaves_the_training_flags_alone(tmp_path):
    model = nn.MnistCNN().train()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    td.onnx.export(model, np.zeros((1, 1, 28, 28), np.float32), tmp_path / "m.onnx")
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():  # the running statistics were not updated
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


class Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


@pytest.mark.parametrize(
    "model, where",
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(784, 10), Doubler()), "Doubler at '2'"),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(2))),
            "AdaptiveAvgPool2d at '1.1'",
        ),
        (nn.Sequential(nn.BatchNorm2d(1, track_running_stats=False)), "BatchNorm2d at '0'"),
        (Doubler(), "Doubler at 'the model itself'"),
    ],
)
def test_unsupported_layer_is_named_and_no_file_is_left(model, where, tmp_path):
    path = tmp_path / "model.onnx"
    with pytest.raises(td.onnx.UnsupportedLayerError, match=where):
        td.onnx.export(model.eval(), np.zeros((1, 1, 28, 28), np.float32), path)
    assert list(tmp_path.iterdir()) == []


def test_import_tinydl_does_not_import_onnx():
    code = (
        "import sys, tinydl; bad = {'onnx', 'onnxruntime'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_export_of_a_run(tmp_path):
    """``tinydl export RUN --onnx FILE`` on a checkpoint shaped as training writes it."""
    td.manual_seed(0)
    model = _randomized(nn.MnistCNN(width=4, hidden=16))
    meta = {
        "model": "cnn",
        "model_kwargs": {"num_classes": 10, "width": 4, "hidden": 16},
        "mean": 0.1307,
        "std": 0.3081,
        "classes": [str(i) for i in range(10)],
    }
    run = tmp_path / "run"
    run.mkdir()
    td.save_checkpoint(run / "best.safetensors", model.state_dict(), meta=meta)
    out = tmp_path / "model.onnx"
    r = subprocess.run(
        [sys.executable, "-m", "tinydl", "export", str(run), "--onnx", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert r.returncode == 0, r.stderr
    _check_same(model, out, (1, 28, 28))
    r = subprocess.run(
        [sys.executable, "-m", "tinydl", "export", str(tmp_path / "nothing"), "--onnx", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and "no checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_missing_onnx_names_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['onnx'] = None\n"
        "import numpy as np, tinydl as td\n"
        "try:\n"
        "    td.onnx.export(td.layers.LeNet5(), np.zeros((1, 1, 28, 28), np.float32), 'm.onnx')\n"
        "except ImportError as e:\n"
        "    assert 'pip install \"tinydl[onnx]\"' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []
