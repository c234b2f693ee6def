"""tinydl.metrics: hand-computed cases, then scikit-learn as the oracle on generated labels."""

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinydl as td
from tinydl import metrics as M

AVERAGES = [None, "macro", "micro", "weighted"]
ZERO_DIVISIONS = [0.0, 1.0, math.nan]


@pytest.fixture(scope="module")
def skm():
    pytest.importorskip("sklearn", reason="scikit-learn is the reference for the metrics")
    import sklearn.metrics

    return sklearn.metrics


@st.composite
def label_pairs(draw, max_classes=6, max_len=40):
    c = draw(st.integers(1, max_classes))
    n = draw(st.integers(1, max_len))
    labels = st.lists(st.integers(0, c - 1), min_size=n, max_size=n)
    return np.array(draw(labels)), np.array(draw(labels))


def _sklearn(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning for empty classes
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------- by hand


def test_accuracy_from_indices_logits_tensors_and_lists():
    assert M.accuracy([0, 1, 1, 2], [0, 1, 2, 2]) == 0.75
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 5.0]])  # the tie goes to class 0
    assert M.accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    t = td.tensor(logits, requires_grad=True)
    assert M.accuracy(t, td.tensor([0, 1, 0])) == 1.0
    assert M.accuracy(np.array([1.0, 2.0]), [1, 2]) == 1.0  # integral floats are labels


def test_confusion_matrix_by_hand():
    cm = M.confusion_matrix([0, 1, 2, 2, 1, 0], [0, 2, 2, 1, 1, 0])
    np.testing.assert_array_equal(cm, [[2, 0, 0], [0, 1, 1], [0, 1, 1]])
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(M.confusion_matrix([1], [1], num_classes=3)[1], [0, 1, 0])
    np.testing.assert_allclose(
        M.confusion_matrix([0, 0, 1], [0, 1, 1], normalize="true"), [[0.5, 0.5], [0, 1]]
    )
    np.testing.assert_array_equal(
        M.confusion_matrix([0, 0], [0, 0], num_classes=2, normalize="pred"), [[1, 0], [0, 0]]
    )


def test_precision_recall_f1_by_hand():
    # scikit-learn's documented example
    y, p = [0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 1]
    prf = M.precision_recall_f1(y, p)
    np.testing.assert_allclose(prf.precision, [2 / 3, 0, 0])
    np.testing.assert_allclose(prf.recall, [1, 0, 0])
    np.testing.assert_allclose(prf.f1, [0.8, 0, 0])
    np.testing.assert_array_equal(prf.support, [2, 2, 2])
    assert M.precision(y, p, "macro") == pytest.approx(2 / 9)
    assert M.recall(y, p, "macro") == pytest.approx(1 / 3)
    assert M.f1_score(y, p, "macro") == pytest.approx(4 / 15)
    assert M.f1_score(y, p, "micro") == pytest.approx(1 / 3)
    assert M.precision(y, p, "weighted") == pytest.approx(2 / 9)


def test_zero_division_by_hand():
    # class 1 is never predicted and never true; class 2 is never predicted
    y, p = [0, 2], [0, 0]
    for zd, want in [(0.0, 0.0), (1.0, 1.0)]:
        np.testing.assert_array_equal(M.precision(y, p, num_classes=3, zero_division=zd)[1:], want)
    f1 = M.f1_score(y, p, num_classes=3, zero_division=math.nan)
    assert f1[0] == pytest.approx(2 / 3) and math.isnan(f1[1]) and f1[2] == 0.0
    # nan values are left out of the macro average
    assert M.f1_score(y, p, "macro", 3, zero_division=math.nan) == pytest.approx(1 / 3)


def test_classification_report_layout():
    text = M.classification_report([0, 1, 1], [0, 1, 0], class_names=["cat", "dog"], digits=2)
    assert text == (
        "              precision    recall  f1-score   support\n"
        "\n"
        "         cat       0.50      1.00      0.67         1\n"
        "         dog       1.00      0.50      0.67         2\n"
        "\n"
        "    accuracy                           0.67         3\n"
        "   macro avg       0.75      0.75      0.67         3\n"
        "weighted avg       0.83      0.67      0.67         3\n"
    )
    d = M.classification_report([0, 1, 1], [0, 1, 0], output_dict=True)
    assert d["accuracy"] == pytest.approx(2 / 3)
    assert d["1"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1-score": pytest.approx(2 / 3),
        "support": 2.0,
    }


def test_top_k_by_hand_and_edges():
    logits = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [1.0, 1.0, 1.0]])
    y = np.array([2, 1, 2])
    assert M.top_k_accuracy(logits, y, k=1) == 0.0
    # ties rank the lower index first: row 1 ranks class 0 above class 1, row 2 puts class 2 last
    assert M.top_k_accuracy(logits, y, k=2) == pytest.approx(1 / 3)
    assert M.top_k_accuracy(logits, y, k=3) == 1.0  # k == C: every class is in the top k
    assert M.top_k_accuracy(logits, [0, 0, 0], k=1) == M.accuracy(logits, [0, 0, 0])
    for k in (0, 4, -1, True, 1.5):
        with pytest.raises(ValueError, match="k must be"):
            M.top_k_accuracy(logits, y, k=k)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        M.top_k_accuracy(logits[0], y, k=1)
    with pytest.raises(ValueError, match="label 3 is out of range"):
        M.top_k_accuracy(logits, [0, 1, 3], k=1)


def test_top_k_equals_accuracy_for_k1_with_ties(rng):
    logits = rng.integers(0, 3, size=(200, 4)).astype(np.float32)  # many ties
    y = rng.integers(0, 4, size=200)
    assert M.top_k_accuracy(logits, y, k=1) == M.accuracy(logits, y)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call",
    [
        lambda: M.accuracy([0, 1, 2], [0, 1]),
        lambda: M.top_k_accuracy(np.zeros((3, 2)), [0, 1], k=1),
        lambda: M.confusion_matrix([0, 1, 2], [0, 1]),
        lambda: M.precision_recall_f1([0, 1, 2], [0, 1], "macro"),
        lambda: M.classification_report([0, 1, 2], [0, 1]),
    ],
)
def test_length_mismatch_names_both_lengths(call):
    with pytest.raises(ValueError, match=r"has 3 samples but .* has 2"):
        call()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.confusion_matrix([[0, 1]], [[0, 1]]), r"1-D .* shape \(1, 2\)"),
        (lambda: M.accuracy(np.zeros((2, 2, 2)), [0, 1]), r"shape \(2, 2, 2\)"),
        (lambda: M.confusion_matrix([0, -1], [0, 0]), "negative label -1"),
        (lambda: M.confusion_matrix([0, 0.5], [0, 0]), "non-integer"),
        (lambda: M.confusion_matrix(["a"], ["b"]), "must hold numbers"),
        (lambda: M.confusion_matrix([0, 3], [0, 0], num_classes=3), "label 3 is out of range"),
        (lambda: M.confusion_matrix([0], [0], num_classes=0), "num_classes must be >= 1"),
        (lambda: M.confusion_matrix([0], [0], normalize="rows"), "normalize must be"),
        (lambda: M.confusion_matrix([], []), "cannot infer num_classes"),
        (lambda: M.accuracy([], []), "no samples"),
        (lambda: M.precision_recall_f1([], [], num_classes=2), "no samples"),
        (lambda: M.precision_recall_f1([0], [0], average="binary"), "average must be"),
        (lambda: M.precision_recall_f1([0], [0], zero_division="warn"), "zero_division"),
        (lambda: M.classification_report([0, 1], [0, 1], class_names=["a"]), "1 class_names"),
        (lambda: M.classification_report([0], [0], digits=-1), "digits must be"),
    ],
)
def test_bad_inputs_raise_valueerror(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- vs sklearn


@given(label_pairs())
def test_confusion_matrix_matches_sklearn(skm, pair):
    y, p = pair
    labels = np.arange(max(y.max(), p.max()) + 1)
    np.testing.assert_array_equal(
        M.confusion_matrix(y, p), skm.confusion_matrix(y, p, labels=labels)
    )
    for norm in ("true", "pred", "all"):
        want = _sklearn(skm.confusion_matrix, y, p, labels=labels, normalize=norm)
        np.testing.assert_allclose(M.confusion_matrix(y, p, normalize=norm), want, rtol=1e-15)


@given(label_pairs(), st.sampled_from(AVERAGES), st.sampled_from(ZERO_DIVISIONS), st.integers(0, 2))
def test_precision_recall_f1_match_sklearn(skm, pair, average, zero_division, extra_classes):
    y, p = pair
    c = int(max(y.max(), p.max())) + 1 + extra_classes  # classes never seen included
    got = M.precision_recall_f1(y, p, average, c, zero_division)
    want = _sklearn(
        skm.precision_recall_fscore_support,
        y,
        p,
        labels=np.arange(c),
        average=average,
        zero_division=zero_division,
    )
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_allclose(g, w, rtol=1e-15, atol=0, equal_nan=True)
    if average is None:
        np.testing.assert_array_equal(got.support, want[3])
    for fn, g in [(M.precision, got.precision), (M.recall, got.recall), (M.f1_score, got.f1)]:
        np.testing.assert_array_equal(fn(y, p, average, c, zero_division), g)


@given(label_pairs(), st.sampled_from(ZERO_DIVISIONS), st.integers(0, 5))
def test_classification_report_matches_sklearn(skm, pair, zero_division, digits):
    y, p = pair
    labels = np.arange(max(y.max(), p.max()) + 1)
    want = _sklearn(
        skm.classification_report, y, p, labels=labels, digits=digits, zero_division=zero_division
    )
    # NOTE: scikit-learn >= 1.8 prints the support as a float ("3.0") when labels are passed.
    want = re.sub(r" (\d+)\.0\n", lambda m: "   " + m.group(1) + "\n", want)
    assert M.classification_report(y, p, digits=digits, zero_division=zero_division) == want
    got_d = M.classification_report(y, p, zero_division=zero_division, output_dict=True)
    want_d = _sklearn(
        skm.classification_report,
        y,
        p,
        labels=labels,
        output_dict=True,
        zero_division=zero_division,
    )
    assert str(got_d) == str(want_d)  # str(): nan == nan


@given(st.integers(3, 8), st.integers(1, 30), st.integers(0, 2**32 - 1), st.data())
def test_top_k_matches_sklearn(skm, c, n, seed, data):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c))  # continuous: no ties, where tie rules differ
    y = rng.integers(0, c, size=n)
    k = data.draw(st.integers(1, c - 1)) if c > 2 else 1
    want = _sklearn(
        skm.top_k_accuracy_score, y, logits if c > 2 else logits[:, 1], k=k, labels=np.arange(c)
    )
    assert M.top_k_accuracy(logits, y, k) == pytest.approx(want, abs=1e-15)


def test_accuracy_matches_sklearn(skm, rng):
    y = rng.integers(0, 10, size=1000)
    logits = rng.normal(size=(1000, 10))
    assert M.accuracy(logits, y) == skm.accuracy_score(y, logits.argmax(1))
