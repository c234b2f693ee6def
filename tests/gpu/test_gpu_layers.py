"""Layers, models, optimizers and checkpoints on the backend, against the same on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

import tinydl as td
import tinydl.functional as F
from tests.devices import CPU, Backend
from tinydl import layers as nn
from tinydl import optim
from tinydl.backend import is_device_array

MODELS = {
    "mlp": (lambda: nn.MLP(in_features=16, hidden=(12,), num_classes=3), (5, 16)),
    "lenet5": (lambda: nn.LeNet5(num_classes=4), (3, 1, 28, 28)),
    "mnist_cnn": (lambda: nn.MnistCNN(width=4, hidden=8, dropout=0.0), (4, 1, 28, 28)),
    "resnet_small": (lambda: nn.ResNetSmall(num_classes=3, width=4), (2, 1, 16, 16)),
    "vgg_small": (
        lambda: nn.VGGSmall(num_classes=3, widths=(4, 8), hidden=8, dropout=0.0, image_size=16),
        (2, 1, 16, 16),
    ),
}


def _model(name: str, backend: Backend, dtype=np.float32):
    td.manual_seed(0)  # the same initial weights everywhere (drawn on the host)
    make, shape = MODELS[name]
    model = make().to(backend.name, dtype=dtype)
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    return model, backend.tensor(x)


def _grads(model, backend: Backend) -> dict:
    return {k: backend.numpy(p.grad) for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_model_forward_backward_matches_the_cpu(backend, name, dtype):
    rtol = 1e-9 if dtype == np.float64 else 2e-4

    def run(b: Backend):
        model, x = _model(name, b, dtype)
        model.train()
        out = model(x)
        target = b.tensor(np.arange(out.shape[0]) % out.shape[1])
        F.cross_entropy(out, target).backward()
        model.eval()
        evaluated = b.numpy(model(x))
        buffers = {k: b.numpy(v) for k, v in model.named_buffers()}
        return b.numpy(out), evaluated, _grads(model, b), buffers

    want, want_eval, want_grads, want_buffers = run(CPU)
    got, got_eval, grads, buffers = run(backend)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg="train-mode logits")
    np.testing.assert_allclose(got_eval, want_eval, rtol=rtol, atol=rtol, err_msg="eval logits")
    assert grads.keys() == want_grads.keys()
    for k in grads:
        scale = max(1.0, float(np.abs(want_grads[k]).max()))
        np.testing.assert_allclose(grads[k], want_grads[k], rtol=rtol, atol=rtol * scale,
                                   err_msg=f"gradient of {k}")
    for k in buffers:
        np.testing.assert_allclose(buffers[k], want_buffers[k], rtol=rtol, atol=rtol, err_msg=k)


OPTIMIZERS = {
    "sgd": lambda p: optim.SGD(p, lr=0.1),
    "sgd_momentum_wd": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov_max": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True,
                                            maximize=True),
    "sgd_dampening": lambda p: optim.SGD(p, lr=0.05, momentum=0.5, dampening=0.3),
    "adam": lambda p: optim.Adam(p, lr=1e-2),
    "adam_l2_amsgrad": lambda p: optim.Adam(p, lr=1e-2, weight_decay=0.1, amsgrad=True),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2, betas=(0.3, 0.9)),
    "adam_eps0_max": lambda p: optim.Adam(p, lr=1e-2, eps=0.0, maximize=True),
    "rmsprop": lambda p: optim.RMSprop(p, lr=1e-2, momentum=0.5, centered=True),
    "adagrad": lambda p: optim.Adagrad(p, lr=1e-1),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_optimizer_steps_match_the_cpu(backend, name, dtype):
    """Five steps on a fixed gradient sequence (with some exact zeros) give the same weights
    and state on the device as on the CPU (the fused CUDA updates included)."""
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    rng = np.random.default_rng(0)
    init = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
    grads = [[rng.standard_normal(a.shape) for a in init] for _ in range(5)]
    for g in grads[1]:
        g.reshape(-1)[:2] = 0

    def run(b: Backend):
        params = [td.Parameter(b.tensor(a.astype(dtype))) for a in init]
        opt = OPTIMIZERS[name](params)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = b.tensor(g.astype(dtype))
            opt.step()
        state = opt.state_dict()["state"]
        return [b.numpy(p) for p in params], state

    want, want_state = run(CPU)
    got, state = run(backend)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol, err_msg=name)
    for i in want_state:
        for k, v in want_state[i].items():
            assert isinstance(state[i][k], (int, float, np.ndarray)), "state_dict must be NumPy"
            np.testing.assert_allclose(state[i][k], v, rtol=rtol, atol=rtol, err_msg=k)


def test_optimizer_state_moves_between_devices(cuda):
    td.manual_seed(0)
    gpu_params = [td.Parameter(td.randn(3, device="cuda"))]
    opt = optim.Adam(gpu_params, lr=0.1)
    gpu_params[0].grad = td.ones(3, device="cuda")
    opt.step()
    cpu_params = [td.Parameter(td.tensor(cuda.numpy(gpu_params[0])))]
    cpu_opt = optim.Adam(cpu_params, lr=0.1)
    cpu_opt.load_state_dict(opt.state_dict())
    opt.load_state_dict(cpu_opt.state_dict())
    assert is_device_array(opt.state[gpu_params[0]]["exp_avg"])


def test_checkpoint_of_a_gpu_model(cuda, tmp_path):
    model, x = _model("lenet5", cuda)
    path = tmp_path / "model.safetensors"
    td.save(model.state_dict(), path)
    cpu_model, cpu_x = _model("lenet5", CPU)
    for p in cpu_model.parameters():
        p.data[...] = 0
    cpu_model.load_state_dict(td.load(path))
    np.testing.assert_allclose(cuda.numpy(model(x)), cpu_model(cpu_x).detach().numpy(),
                               rtol=2e-4, atol=2e-5)
