"""Train a digit classifier with its forward and backward passes written out by hand in NumPy.

A 784-128-10 MLP (ReLU, softmax cross-entropy) learns MNIST with nothing but matrix products:
the chain rule is spelled out layer by layer below, and every ``--check-every`` steps tinydl's
autograd recomputes the same gradients from the same weights and batch, and
``td.testing.assert_grads_match`` checks that the two agree.

    TINYDL_DATA=/path/to/data python examples/mnist_explicit_backprop.py --epochs 5
"""

import argparse
import time

import numpy as np

import tinydl as td
import tinydl.functional as F
from tinydl.recipes.images import MNIST_MEAN, MNIST_STD, load_digits
from tinydl.testing import assert_close, assert_grads_match


def init_params(hidden: int, rng: np.random.Generator) -> dict:
    """He-normal weights for the ReLU layer, Xavier-normal for the output layer, zero biases."""
    return {
        "W1": rng.normal(0.0, np.sqrt(2 / 784), (784, hidden)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "W2": rng.normal(0.0, np.sqrt(2 / (hidden + 10)), (hidden, 10)).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }


def forward(p: dict, x: np.ndarray):
    """x (N, 784) -> logits (N, 10), keeping what the backward pass needs."""
    z1 = x @ p["W1"] + p["b1"]  # (N, H)  pre-activation
    h = np.maximum(z1, 0)  # (N, H)  ReLU
    logits = h @ p["W2"] + p["b2"]  # (N, 10)
    return logits, (z1, h)


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray):
    """Mean loss L = -1/N sum_i log softmax(logits_i)[y_i], and the softmax probabilities."""
    shifted = logits - logits.max(axis=1, keepdims=True)  # same softmax, no overflow in exp
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(y)), y].mean(), np.exp(log_probs)


def backward(p: dict, x: np.ndarray, y: np.ndarray, probs: np.ndarray, cache) -> dict:
    """dL/d(every parameter), by the chain rule from the loss back to the input layer."""
    z1, h = cache
    n = len(y)
    # Loss -> logits: d/dlogits of -log softmax(logits)[y] is softmax - onehot(y); the mean
    # over the batch divides by N.
    g_logits = probs.copy()
    g_logits[np.arange(n), y] -= 1
    g_logits /= n  # (N, 10)
    # Output layer, logits = h W2 + b2:  dW2 = h^T g,  db2 = sum over the batch of g,
    # and the gradient flows on to h through W2:  dh = g W2^T.
    g_W2 = h.T @ g_logits  # (H, 10)
    g_b2 = g_logits.sum(axis=0)  # (10,)
    g_h = g_logits @ p["W2"].T  # (N, H)
    # ReLU, h = max(z1, 0): passes the gradient where z1 > 0 and blocks it elsewhere.
    g_z1 = g_h * (z1 > 0)  # (N, H)
    # Hidden layer, z1 = x W1 + b1:  dW1 = x^T dz1,  db1 = sum over the batch of dz1.
    g_W1 = x.T @ g_z1  # (784, H)
    g_b1 = g_z1.sum(axis=0)  # (H,)
    return {"W1": g_W1, "b1": g_b1, "W2": g_W2, "b2": g_b2}


def check_with_autograd(p: dict, x: np.ndarray, y: np.ndarray) -> float:
    """Hand-written vs autograd gradients on the same weights and batch, both in float64."""
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    x64 = x.astype(np.float64)
    logits, cache = forward(p64, x64)
    loss, probs = softmax_cross_entropy(logits, y)
    manual = backward(p64, x64, y, probs, cache)
    # The same network written with tinydl ops; autograd derives its backward pass.
    t = {k: td.tensor(v, requires_grad=True) for k, v in p64.items()}
    auto_loss = F.cross_entropy(F.relu(td.tensor(x64) @ t["W1"] + t["b1"]) @ t["W2"] + t["b2"],
                                td.tensor(y))  # fmt: skip
    assert_close(auto_loss, np.asarray(loss), rtol=1e-10)
    return max(assert_grads_match(manual, t, auto_loss, rtol=1e-7, atol=1e-10).values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--check-every", type=int, default=200, help="steps between checks")
    parser.add_argument("--limit", type=int, help="train on the first N images only")
    parser.add_argument("--data", help="folder holding mnist/ (default: $TINYDL_DATA, cache)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.check_every < 1:
        parser.error(f"--check-every must be at least 1, got {args.check_every}")

    rng = np.random.default_rng(args.seed)
    (images, labels), (test_images, test_labels), source = load_digits(args.data)
    images, labels = images[: args.limit], labels[: args.limit]

    def prepare(imgs):  # uint8 (N, 28, 28) -> normalized float32 rows (N, 784)
        return ((imgs.reshape(len(imgs), -1) / 255.0 - MNIST_MEAN) / MNIST_STD).astype(np.float32)

    x_train, x_test = prepare(images), prepare(test_images)
    p = init_params(args.hidden, rng)
    print(f"{source}: {len(labels)} training images, {len(test_labels)} test images")

    step, checks, worst, start = 0, 0, 0.0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(labels))
        loss_sum, correct = 0.0, 0
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            x, y = x_train[idx], labels[idx]
            if step % args.check_every == 0:
                worst = max(worst, check_with_autograd(p, x, y))
                checks += 1
            logits, cache = forward(p, x)
            loss, probs = softmax_cross_entropy(logits, y)
            grads = backward(p, x, y, probs, cache)
            for name, g in grads.items():  # plain SGD, in place: w <- w - lr * dL/dw
                p[name] -= args.lr * g
            loss_sum += float(loss) * len(y)
            correct += int((logits.argmax(axis=1) == y).sum())
            step += 1
        print(f"epoch {epoch}: loss {loss_sum / len(labels):.4f}, "
              f"train accuracy {correct / len(labels):.4f}, "
              f"{time.perf_counter() - start:.1f} s")  # fmt: skip

    print(f"gradient checks: {checks} passed (hand-written vs autograd, "
          f"largest difference {worst:.2e})")  # fmt: skip
    test_accuracy = float((forward(p, x_test)[0].argmax(axis=1) == test_labels).mean())
    print(f"test accuracy ({source}, {len(test_labels)} images): {test_accuracy:.4f}")


if __name__ == "__main__":
    main()
