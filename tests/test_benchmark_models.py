"""The PyTorch twins in benchmarks/torch_models.py are the same networks as tinydl's zoo:
same parameter count, same state-dict keys and shapes, same logits for the same weights."""

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is the reference the benchmark twins are checked against"
)

import tinydl as td  # noqa: E402
from benchmarks.epoch import MODEL_NAMES  # noqa: E402
from benchmarks.torch_models import TORCH_MODELS, load_tinydl_state  # noqa: E402
from tinydl.layers import MODELS  # noqa: E402

NAMES = sorted(MODELS)


def _randomize_buffers(model, rng):
    # Fresh running statistics (mean 0, var 1) would hide a twin that ignores them in eval mode.
    for name, value in model.state_dict().items():
        if name.endswith("running_mean"):
            value.data[...] = rng.normal(0, 0.5, value.shape)
        elif name.endswith("running_var"):
            value.data[...] = rng.uniform(0.5, 2.0, value.shape)


def test_twins_cover_the_zoo():
    assert sorted(TORCH_MODELS) == NAMES
    assert sorted(MODEL_NAMES) == NAMES  # the epoch and data-pipeline benchmarks step them all


@pytest.mark.parametrize("name", NAMES)
def test_same_parameter_count_and_keys(name):
    ours, twin = MODELS[name](), TORCH_MODELS[name]()
    assert ours.num_parameters() == sum(p.numel() for p in twin.parameters())
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    twin_shapes = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    assert ours_shapes == twin_shapes


@pytest.mark.parametrize("name", NAMES)
def test_same_logits_with_loaded_weights(name):
    rng = np.random.default_rng(0)
    td.manual_seed(0)
    ours = MODELS[name]()
    _randomize_buffers(ours, rng)
    twin = load_tinydl_state(TORCH_MODELS[name](), ours.state_dict())
    x = rng.normal(size=(8, 1, 28, 28)).astype(np.float32)
    ours.eval(), twin.eval()
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    got = ours(td.tensor(x)).data
    assert got.shape == (8, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet"])  # no dropout: train mode comparable
def test_same_logits_in_train_mode(name):
    rng = np.random.default_rng(1)
    td.manual_seed(1)
    ours = MODELS[name]()
    twin = load_tinydl_state(TORCH_MODELS[name](), ours.state_dict())
    x = rng.normal(size=(16, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = twin.train()(torch.from_numpy(x)).numpy()
    got = ours.train()(td.tensor(x)).data
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
