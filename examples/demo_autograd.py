"""Train a two-layer network on synthetic spirals with tinydl's autograd core alone.

Everything a training loop needs is here in plain sight: parameters as leaf tensors, a forward
pass built from functional ops, ``loss.backward()``, and a hand-written SGD update.

    python examples/demo_autograd.py --epochs 300
"""

import argparse

import numpy as np

import tinydl as td
import tinydl.functional as F


def spirals(n_per_class: int, classes: int, rng: np.random.Generator):
    """Points on ``classes`` interleaved noisy spiral arms in the plane."""
    r = np.tile(np.linspace(0.05, 1.0, n_per_class), classes)
    label = np.repeat(np.arange(classes), n_per_class)
    theta = label * 2 * np.pi / classes + r * 4 + rng.normal(0, 0.2, r.size)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).astype(np.float32)
    return x, label


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = td.manual_seed(args.seed)
    x_np, y_np = spirals(200, 3, rng)
    x, y = td.tensor(x_np), td.tensor(y_np)

    def param(*shape, fan_in):
        return td.Parameter(td.randn(*shape) * (2.0 / fan_in) ** 0.5)

    w1, b1 = param(args.hidden, 2, fan_in=2), td.Parameter(td.zeros(args.hidden))
    w2, b2 = param(3, args.hidden, fan_in=args.hidden), td.Parameter(td.zeros(3))
    params = [w1, b1, w2, b2]

    for epoch in range(1, args.epochs + 1):
        logits = F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)
        loss = F.cross_entropy(logits, y)
        for p in params:
            p.grad = None
        loss.backward()
        with td.no_grad():
            for p in params:
                p.data -= args.lr * p.grad.data  # SGD, in place on the parameter arrays
        if epoch % 50 == 0 or epoch == 1:
            acc = (logits.argmax(dim=1) == y).numpy().mean()
            print(f"epoch {epoch:4d}  loss {loss.item():.4f}  accuracy {acc:.3f}")
    print(f"final training accuracy: {acc:.3f}")


if __name__ == "__main__":
    main()
