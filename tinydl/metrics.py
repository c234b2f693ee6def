"""Classification metrics: accuracy, top-k accuracy, confusion matrix, precision/recall/F1.

Inputs may be Tensors, NumPy arrays or lists. Labels are class indices ``0 .. C-1``; ``C`` is
``num_classes`` or, when that is None, the largest label seen plus one. Every per-class metric
covers all ``C`` classes, so the results equal scikit-learn's with ``labels=range(C)``.

>>> from tinydl import metrics
>>> metrics.accuracy([0, 1, 1, 2], [0, 1, 2, 2])
0.75
>>> metrics.confusion_matrix([0, 1, 2, 2], [0, 1, 1, 2])
array([[1, 0, 0],
       [0, 1, 0],
       [0, 1, 1]])
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .backend import to_numpy

__all__ = [
    "accuracy",
    "top_k_accuracy",
    "confusion_matrix",
    "precision_recall_f1",
    "precision",
    "recall",
    "f1_score",
    "classification_report",
    "PRF",
]

_AVERAGES = (None, "macro", "micro", "weighted")


class PRF(NamedTuple):
    """Result of :func:`precision_recall_f1`: per-class arrays of shape ``(C,)`` when
    ``average`` is None, floats otherwise; ``support`` is always the per-class count of
    true samples."""

    precision: np.ndarray | float
    recall: np.ndarray | float
    f1: np.ndarray | float
    support: np.ndarray


# ----------------------------------------------------------------------------- inputs


def _as_numpy(x, fn: str, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "data"):  # a tinydl Tensor (maybe on a GPU)
        x = x.detach().numpy()
    a = to_numpy(x)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise ValueError(f"{fn}: {name} must hold numbers, got dtype {a.dtype}")
    return a


def _labels(x, fn: str, name: str) -> np.ndarray:
    """A 1-D int64 array of non-negative class indices."""
    a = _as_numpy(x, fn, name)
    if a.ndim != 1:
        raise ValueError(f"{fn}: {name} must be a 1-D vector of class indices, got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{fn}: {name} holds non-integer values; pass class indices")
    out = a.astype(np.int64)
    if out.size and out.min() < 0:
        raise ValueError(f"{fn}: {name} holds the negative label {out.min()}; labels are 0..C-1")
    return out


def _same_length(fn: str, a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"{fn}: {a_name} has {len(a)} samples but {b_name} has {len(b)}; "
            "they must have the same length"
        )


def _not_empty(fn: str, a: np.ndarray) -> None:
    if len(a) == 0:
        raise ValueError(f"{fn}: got no samples; the metric is undefined for empty inputs")


def _num_classes(fn: str, num_classes, *label_arrays) -> int:
    seen = max((int(a.max()) + 1 for a in label_arrays if a.size), default=0)
    if num_classes is None:
        if seen == 0:
            raise ValueError(f"{fn}: cannot infer num_classes from empty labels; pass it")
        return seen
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"{fn}: num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"{fn}: num_classes must be >= 1, got {num_classes}")
    if seen > num_classes:
        raise ValueError(
            f"{fn}: label {seen - 1} is out of range for num_classes={num_classes}; "
            "labels must be in 0..num_classes-1"
        )
    return int(num_classes)


# ----------------------------------------------------------------------------- accuracy


def accuracy(pred_or_logits, target) -> float:
    """Fraction of samples whose predicted class equals the target.

    Parameters
    ----------
    pred_or_logits : array-like, shape (N,) of class indices or (N, C) of scores
        Scores are reduced with ``argmax`` over the last axis (ties go to the lower index).
    target : array-like, shape (N,)
    """
    fn = "accuracy"
    p = _as_numpy(pred_or_logits, fn, "pred_or_logits")
    if p.ndim == 2:
        p = p.argmax(axis=1)
    elif p.ndim != 1:
        raise ValueError(
            f"accuracy: pred_or_logits must be class indices (N,) or logits (N, C), "
            f"got shape {p.shape}"
        )
    p = _labels(p, fn, "pred_or_logits")
    t = _labels(target, fn, "target")
    _same_length(fn, p, "pred_or_logits", t, "target")
    _not_empty(fn, t)
    return float(np.mean(p == t))


def top_k_accuracy(logits, target, k: int = 5) -> float:
    """Fraction of samples whose target is among the ``k`` highest scores.

    Parameters
    ----------
    logits : array-like, shape (N, C)
    target : array-like, shape (N,), class indices in ``0..C-1``
    k : int, 1 <= k <= C
    """
    fn = "top_k_accuracy"
    s = _as_numpy(logits, fn, "logits")
    if s.ndim != 2:
        raise ValueError(f"top_k_accuracy: logits must have shape (N, C), got {s.shape}")
    t = _labels(target, fn, "target")
    _same_length(fn, s, "logits", t, "target")
    _not_empty(fn, t)
    n, c = s.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= c:
        raise ValueError(f"top_k_accuracy: k must be an int in 1..{c} (the classes), got {k!r}")
    if t.max() >= c:
        raise ValueError(f"top_k_accuracy: target label {t.max()} is out of range for C={c}")
    # NOTE: ties rank like argmax (the lower index first), so k=1 equals accuracy(logits).
    # The rank of the target is the number of classes that beat it; no sort needed.
    st = s[np.arange(n), t][:, None]
    lower = np.arange(c)[None, :] < t[:, None]
    rank = np.sum((s > st) | ((s == st) & lower), axis=1)
    return float(np.mean(rank < k))


# ----------------------------------------------------------------------------- counts


def confusion_matrix(target, pred, num_classes: int | None = None, normalize=None) -> np.ndarray:
    """Counts ``cm[i, j]`` of samples of true class ``i`` predicted as class ``j``
    (rows true, columns predicted, as scikit-learn).

    Parameters
    ----------
    target, pred : array-like, shape (N,), class indices
    num_classes : int, optional
        ``C``; the largest label plus one when None.
    normalize : {None, 'true', 'pred', 'all'}
        Divide by the row sums, column sums or total (0 where a sum is 0); int64 counts
        when None.
    """
    fn = "confusion_matrix"
    t = _labels(target, fn, "target")
    p = _labels(pred, fn, "pred")
    _same_length(fn, t, "target", p, "pred")
    c = _num_classes(fn, num_classes, t, p)
    cm = np.bincount(t * c + p, minlength=c * c).reshape(c, c)
    if normalize is None:
        return cm
    axes = {"true": 1, "pred": 0, "all": None}
    if normalize not in axes:
        raise ValueError(
            f"confusion_matrix: normalize must be None, 'true', 'pred' or 'all', got {normalize!r}"
        )
    total = cm.sum(axis=axes[normalize], keepdims=True)
    return cm / np.where(total == 0, 1, total)


def _zero_division_value(fn: str, zero_division) -> float:
    if isinstance(zero_division, (int, float)) and not isinstance(zero_division, bool):
        if zero_division in (0, 1) or math.isnan(zero_division):
            return float(zero_division)
    raise ValueError(f"{fn}: zero_division must be 0.0, 1.0 or nan, got {zero_division!r}")


def _divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    out = num / np.where(den == 0, 1, den)
    return np.where(den == 0, zero_division, out)


def _nanaverage(values: np.ndarray, weights=None) -> float:
    keep = ~np.isnan(values)
    if not keep.any():
        return math.nan
    values = values[keep]
    if weights is not None:
        weights = weights[keep]
        if weights.sum() > 0:
            return float(np.average(values, weights=weights))
    return float(np.mean(values))


def precision_recall_f1(
    target,
    pred,
    average: str | None = None,
    num_classes: int | None = None,
    zero_division: float = 0.0,
) -> PRF:
    """Precision ``tp / (tp + fp)``, recall ``tp / (tp + fn)`` and F1
    ``2 tp / (2 tp + fp + fn)`` per class or averaged.

    Parameters
    ----------
    target, pred : array-like, shape (N,), class indices
    average : {None, 'macro', 'micro', 'weighted'}
        None: arrays of shape ``(C,)``; 'macro': the unweighted mean over classes; 'micro':
        from the summed counts (equals accuracy for single-label data); 'weighted': the mean
        weighted by each class's support.
    num_classes : int, optional
    zero_division : {0.0, 1.0, nan}
        The value of a ratio whose denominator is 0; nan values are left out of averages.

    Returns
    -------
    PRF
        ``(precision, recall, f1, support)``, as scikit-learn's
        ``precision_recall_fscore_support(..., labels=range(C))``.
    """
    fn = "precision_recall_f1"
    if average not in _AVERAGES:
        raise ValueError(f"{fn}: average must be one of {_AVERAGES}, got {average!r}")
    zd = _zero_division_value(fn, zero_division)
    cm = confusion_matrix(target, pred, num_classes)
    if cm.sum() == 0:
        raise ValueError(f"{fn}: got no samples; the metric is undefined for empty inputs")
    tp = np.diag(cm).astype(np.float64)
    true_sum = cm.sum(axis=1).astype(np.float64)
    pred_sum = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    if average == "micro":
        tp, true_sum, pred_sum = (np.array([a.sum()]) for a in (tp, true_sum, pred_sum))
    p = _divide(tp, pred_sum, zd)
    r = _divide(tp, true_sum, zd)
    f = _divide(2 * tp, true_sum + pred_sum, zd)
    if average is None:
        return PRF(p, r, f, support)
    weights = true_sum if average == "weighted" else None
    return PRF(*(_nanaverage(v, weights) for v in (p, r, f)), support)


def precision(target, pred, average=None, num_classes=None, zero_division=0.0):
    """Precision ``tp / (tp + fp)``; arguments as :func:`precision_recall_f1`."""
    return precision_recall_f1(target, pred, average, num_classes, zero_division).precision


def recall(target, pred, average=None, num_classes=None, zero_division=0.0):
    """Recall ``tp / (tp + fn)``; arguments as :func:`precision_recall_f1`."""
    return precision_recall_f1(target, pred, average, num_classes, zero_division).recall


def f1_score(target, pred, average=None, num_classes=None, zero_division=0.0):
    """F1 ``2 tp / (2 tp + fp + fn)``; arguments as :func:`precision_recall_f1`."""
    return precision_recall_f1(target, pred, average, num_classes, zero_division).f1


# ----------------------------------------------------------------------------- report


def classification_report(
    target,
    pred,
    class_names=None,
    digits: int = 4,
    num_classes: int | None = None,
    zero_division: float = 0.0,
    output_dict: bool = False,
) -> str | dict:
    """Per-class precision, recall, F1 and support, then accuracy and the macro and weighted
    averages, in scikit-learn's layout.

    Parameters
    ----------
    class_names : sequence of str, optional
        One name per class (``C`` of them); the class indices when None.
    digits : int
        Digits after the point in the text form.
    output_dict : bool
        Return ``{name: {'precision', 'recall', 'f1-score', 'support'}, 'accuracy': float,
        'macro avg': {...}, 'weighted avg': {...}}`` instead of text.
    """
    fn = "classification_report"
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or digits < 0:
        raise ValueError(f"{fn}: digits must be an int >= 0, got {digits!r}")
    p, r, f, s = precision_recall_f1(target, pred, None, num_classes, zero_division)
    c = len(s)
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise ValueError(f"{fn}: got {len(names)} class_names for {c} classes")
    total = int(s.sum())
    rows = {n: (p[i], r[i], f[i], int(s[i])) for i, n in enumerate(names)}
    acc = float(np.trace(confusion_matrix(target, pred, c)) / total)
    avgs = {
        f"{a} avg": precision_recall_f1(target, pred, a, c, zero_division)[:3] + (total,)
        for a in ("macro", "weighted")
    }
    headers = ("precision", "recall", "f1-score", "support")
    if output_dict:
        out = {n: dict(zip(headers, map(float, v))) for n, v in rows.items()}
        out["accuracy"] = acc
        out.update({n: dict(zip(headers, map(float, v))) for n, v in avgs.items()})
        return out
    width = max(max(len(n) for n in names), len("weighted avg"), digits)
    row_fmt = "{:>{w}s} " + " {:>9.{d}f}" * 3 + " {:>9}\n"
    text = "{:>{w}s} ".format("", w=width) + "".join(f" {h:>9}" for h in headers) + "\n\n"
    text += "".join(row_fmt.format(n, *v, w=width, d=digits) for n, v in rows.items()) + "\n"
    text += "{:>{w}s} ".format("accuracy", w=width) + " " * 20
    text += f" {acc:>9.{digits}f} {total:>9}\n"
    text += "".join(row_fmt.format(n, *v, w=width, d=digits) for n, v in avgs.items())
    return text
