"""Tests of ``convlstm_tl.evaluation.metrics``: values agree with scikit-learn, no warnings."""

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from convlstm_tl.evaluation.metrics import classification_metrics, classification_report_text

DESIGN_KEYS = {"domain", "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "per_class",
               "confusion_matrix", "n_test"}
NAMES = ("walk", "run", "sit", "jump")
# Class 2 ("sit") is never predicted; class 3 ("jump") never occurs.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 1, 0])
Y_PRED = np.array([0, 1, 0, 1, 1, 0, 1, 3, 1, 0])


@pytest.fixture
def metrics():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return classification_metrics(Y_TRUE, Y_PRED, NAMES, domain="St")


def test_keys(metrics):
    # train_seconds and eval_seconds are added by the trainer (see test_train).
    assert DESIGN_KEYS <= set(metrics)
    assert metrics["domain"] == "St"
    assert metrics["n_test"] == 10
    assert list(metrics["per_class"]) == list(NAMES)
    for row in metrics["per_class"].values():
        assert set(row) == {"precision", "recall", "f1", "support"}


def test_values_equal_sklearn(metrics):
    labels = [0, 1, 2, 3]
    kw = dict(labels=labels, zero_division=0)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(Y_TRUE, Y_PRED)) == pytest.approx(0.6)
    assert metrics["macro_precision"] == pytest.approx(precision_score(Y_TRUE, Y_PRED, average="macro", **kw))
    assert metrics["macro_recall"] == pytest.approx(recall_score(Y_TRUE, Y_PRED, average="macro", **kw))
    assert metrics["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro", **kw))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="weighted", **kw))
    precision = precision_score(Y_TRUE, Y_PRED, average=None, **kw)
    recall = recall_score(Y_TRUE, Y_PRED, average=None, **kw)
    f1 = f1_score(Y_TRUE, Y_PRED, average=None, **kw)
    for i, name in enumerate(NAMES):
        row = metrics["per_class"][name]
        assert row["precision"] == pytest.approx(precision[i])
        assert row["recall"] == pytest.approx(recall[i])
        assert row["f1"] == pytest.approx(f1[i])
        assert row["support"] == int((Y_TRUE == i).sum())


def test_known_values_by_hand(metrics):
    walk = metrics["per_class"]["walk"]
    # walk: predicted 4 times (3 right), 4 true.
    assert walk["precision"] == pytest.approx(0.75)
    assert walk["recall"] == pytest.approx(0.75)
    sit = metrics["per_class"]["sit"]
    # Never predicted: precision is 0 by choice (zero_division=0), not NaN.
    assert sit == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}
    jump = metrics["per_class"]["jump"]
    assert jump["support"] == 0 and jump["recall"] == 0.0
    # Macro averages over all four classes, also the absent one.
    assert metrics["macro_recall"] == pytest.approx((0.75 + 1.0 + 0.0 + 0.0) / 4)


def test_confusion_matrix_rows_are_true_classes(metrics):
    assert metrics["confusion_matrix"] == confusion_matrix(Y_TRUE, Y_PRED, labels=[0, 1, 2, 3]).tolist()
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (4, 4)
    np.testing.assert_array_equal(matrix.sum(axis=1), [4, 3, 3, 0])  # true counts per row
    np.testing.assert_array_equal(matrix.sum(axis=0), [4, 5, 0, 1])  # predicted counts per column
    # The three "sit" samples, predicted "walk", "run" and "jump", fill row 2.
    assert matrix[2, 0] == 1 and matrix[2, 1] == 1 and matrix[2, 3] == 1
    one_way = classification_metrics([0, 0], [1, 1], ("a", "b"), domain="x")["confusion_matrix"]
    assert one_way == [[0, 2], [0, 0]]


def test_metrics_are_plain_python(metrics):
    assert json.loads(json.dumps(metrics)) == metrics
    assert type(metrics["accuracy"]) is float
    assert type(metrics["per_class"]["walk"]["support"]) is int


def test_report_text_names_every_class_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = classification_report_text(Y_TRUE, Y_PRED, NAMES)
    for name in NAMES:
        assert name in text
    assert "0.7500" in text  # four digits


@pytest.mark.parametrize("y_true, y_pred, names", [
    ([0], [0], ("a", "b", "c")),  # a single sample; most classes absent
    ([2, 2, 2], [2, 0, 2], ("a", "b", "c")),  # classes absent from y_true
    ([0, 1, 1], [0, 1, 0], ("accuracy", "macro avg")),  # names that are keys of sklearn's report dict
])
def test_edge_cases_equal_sklearn(y_true, y_pred, names):
    labels = list(range(len(names)))
    kw = dict(labels=labels, zero_division=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = classification_metrics(y_true, y_pred, names, domain="x")
    assert list(metrics["per_class"]) == list(names)
    assert metrics["accuracy"] == accuracy_score(y_true, y_pred)
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", **kw))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted", **kw))
    recall = recall_score(y_true, y_pred, average=None, **kw)
    for i, name in enumerate(names):
        assert metrics["per_class"][name]["recall"] == pytest.approx(recall[i])
        assert metrics["per_class"][name]["support"] == y_true.count(i)
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert metrics["n_test"] == len(y_true)
