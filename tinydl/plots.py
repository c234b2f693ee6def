"""Training curves and confusion matrices as PNG files (matplotlib: the only module importing it)."""

from __future__ import annotations

import importlib.util

import numpy as np

__all__ = ["HAVE_MATPLOTLIB", "plot_history", "plot_confusion"]

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _pyplot():
    if not HAVE_MATPLOTLIB:
        raise ImportError("plots need matplotlib: pip install 'tinydl[plot]'")
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: list[dict], path) -> None:
    """Loss and accuracy per epoch, training beside validation."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in ((ax1, "loss"), (ax2, "accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_xticks(epochs)  # whole epochs only
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, path, class_names=None) -> None:
    """Counts with true classes as rows and predictions as columns, as scikit-learn draws it."""
    plt = _pyplot()
    n = matrix.shape[0]
    names = class_names or [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(matrix, cmap="Blues")
    for i in range(n):
        for j in range(n):
            color = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set(
        xticks=range(n),
        yticks=range(n),
        xticklabels=names,
        yticklabels=names,
        xlabel="predicted",
        ylabel="true",
        title="confusion matrix",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
