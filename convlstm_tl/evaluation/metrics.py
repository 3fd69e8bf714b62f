"""Classification metrics as data (the keys of ``metrics.json``).

Precision of a class that is never predicted is undefined; we set
``zero_division=0`` explicitly so those cases count as 0 and warn no one.
"""

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

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
    # Rows are keyed by label id, not name, so that no class name can meet the
    # report's own keys ("accuracy", "macro avg", ...).
    keys = [str(label) for label in labels]
    report = classification_report(y_true, y_pred, labels=labels, target_names=keys, output_dict=True,
                                   zero_division=ZERO_DIVISION)
    macro, weighted = report["macro avg"], report["weighted avg"]
    return {
        "domain": domain,
        # The report holds "accuracy" only when ``labels`` cover every label
        # seen, so it is counted here, over all samples.
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(macro["precision"]),
        "macro_recall": float(macro["recall"]),
        "macro_f1": float(macro["f1-score"]),
        "weighted_f1": float(weighted["f1-score"]),
        "per_class": {
            str(name): {
                "precision": float(report[key]["precision"]),
                "recall": float(report[key]["recall"]),
                "f1": float(report[key]["f1-score"]),
                "support": int(report[key]["support"]),
            }
            for key, name in zip(keys, class_names)
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
