"""Classification metrics as data (the keys of ``metrics.json``).

Precision of a class that is never predicted is undefined; we set
``zero_division=0`` explicitly so those cases count as 0 and warn no one.
"""

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
)

ZERO_DIVISION = 0


def classification_metrics(y_true, y_pred, class_names, *, domain):
    """Score predictions against labels.

    Args:
        y_true: true label ids ``(N,)``.
        y_pred: predicted label ids ``(N,)``.
        class_names: names indexed by label id; every id is reported, also
            classes absent from ``y_true``.
        domain: name of the domain scored, stored under ``"domain"``.

    Returns:
        A dict with ``domain``, ``accuracy``, ``macro_precision``,
        ``macro_recall``, ``macro_f1``, ``weighted_f1``, ``per_class``
        (``{name: {precision, recall, f1, support}}``), ``confusion_matrix``
        (rows true, columns predicted) and ``n_test``.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=ZERO_DIVISION
    )
    macro = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=ZERO_DIVISION
    )
    weighted = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="weighted", zero_division=ZERO_DIVISION
    )
    return {
        "domain": domain,
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
        "weighted_f1": float(weighted[2]),
        "per_class": {
            str(name): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n_test": int(len(y_true)),
    }


def classification_report_text(y_true, y_pred, class_names):
    """The sklearn per-class classification report, as text."""
    return classification_report(
        y_true,
        y_pred,
        labels=list(range(len(class_names))),
        target_names=[str(name) for name in class_names],
        digits=4,
        zero_division=ZERO_DIVISION,
    )
