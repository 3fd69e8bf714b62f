"""Baseline rows of an evaluation: the classical models of a baseline run, scored from what the run recorded.

A baseline run (``python -m convlstm_tl.baseline``, :mod:`convlstm_tl.baselines`)
holds, per fitted model, its predictions on each scored domain's test split.
Given among the runs of an evaluation, it becomes one row per model
(:func:`baseline_entries`), shown after the ConvLSTM rows, so every table
says whether the deep model beats the classical ones. Nothing is refitted:
a cell comes from the stored predictions, aligned with the domain's classes
by name as a model run's are (:mod:`convlstm_tl.evaluation.alignment`), and
only for the very test split they were made on (the same fingerprint,
:func:`convlstm_tl.baselines.features.split_fingerprint`). Any other pair is
an n/a cell with its reason (:func:`baseline_problem`). A baseline restores
no source body, so it has no forgetting figure.
"""

from dataclasses import dataclass

import h5py
import numpy as np

from convlstm_tl.baselines.record import BaselineRow, BaselineRun
from convlstm_tl.errors import RunError
from convlstm_tl.evaluation.notes import shared_part

KIND = "baseline"
# Reasons of n/a baseline cells; the same words for every such cell, so that the notes can group them.
TEST_ONLY = "baselines score the test split only"
NOT_SCORED = "not scored by the baseline run"
CHANGED = "domain file changed since the baselines were fitted (other test labels or shape); run the baseline again"


@dataclass
class BaselineEntry:
    """One fitted model of a baseline run, as a row of an evaluation.

    Attributes:
        run: the :class:`~convlstm_tl.baselines.record.BaselineRun` it belongs to.
        row: its :class:`~convlstm_tl.baselines.record.BaselineRow`.
        label: its row name: the row's own label (``minirocket (St train)``),
            prefixed with the run's name only where needed to stay unique.
        listed: always True (baselines are only evaluated when asked for).
    """

    run: BaselineRun
    row: BaselineRow
    label: str = ""
    listed: bool = True

    @property
    def kind(self):
        """Always ``"baseline"``."""
        return KIND

    @property
    def path(self):
        """The baseline run's folder."""
        return self.run.path

    @property
    def class_names(self):
        """The classes the model predicts, in the order of its predictions."""
        return list(self.row.class_names)

    def recorded_domain(self, column, info):
        """The name the baseline run recorded the domain of ``column`` under, or None if it did not score it."""
        for name in (column, info.domain):
            if name in self.run.domains and name in self.row.metrics:
                return name
        return None

    def info(self):
        """The row's entry of an evaluation's ``runs_info``."""
        return {"path": str(self.run.path), "kind": KIND, "baseline_run": self.run.name,
                "method": self.row.method, "trained_on": self.row.trained_on,
                "training_set": self.row.training_set, "class_names": self.class_names,
                "n_train": self.row.n_train, "fit_seconds": self.row.fit_seconds,
                "source": self.run.source, "target": self.run.target}


def baseline_entries(runs, taken):
    """One :class:`BaselineEntry` per fitted model of ``runs``, with row names unique among themselves and ``taken``.

    A row keeps its own label (``summary-logreg (St train)``) unless another
    row has it too (two baseline runs of the same source) or it names a model
    run; then it is prefixed with its run's name (``St-ms-baselines:
    summary-logreg (St train)``), or its parent folder and name, or its path.

    Args:
        runs: :class:`~convlstm_tl.baselines.record.BaselineRun` objects, in order.
        taken: the labels already in use (the model runs'); the new labels
            are added to it.

    Returns:
        The entries, run by run, in the order each run fitted them.
    """
    entries = [BaselineEntry(run=run, row=row) for run in runs for row in run.rows]
    levels = [0] * len(entries)
    while True:
        labels = [_label(entry, level) for entry, level in zip(entries, levels)]
        clashes = [i for i, label in enumerate(labels)
                   if label in taken or labels.count(label) > 1]
        if not clashes:
            break
        for i in clashes:
            if levels[i] == 3:
                raise RunError(f"baseline run {entries[i].run.path} given twice")
            levels[i] += 1
    for entry, label in zip(entries, labels):
        entry.label = label
        taken.add(label)
    return entries


def _label(entry, level):
    path = entry.run.path
    prefix = ("", f"{path.name}: ", f"{path.parent.name}/{path.name}: ", f"{path}: ")[level]
    return prefix + entry.row.label


def baseline_problem(entry, column, info, split, fingerprint):
    """Why a baseline cannot be scored on a domain, or None if its recorded predictions apply.

    Args:
        entry: the :class:`BaselineEntry`.
        column: the domain's column name.
        info: the domain's :class:`~convlstm_tl.data.format.DomainInfo`.
        split: the split evaluated.
        fingerprint: the sha256 of the domain's test split now (see
            :func:`convlstm_tl.baselines.features.split_fingerprint`), or
            None when ``split`` is not ``"test"``.

    Returns:
        One line, or None: the split is not ``test``, the baseline run did
        not score the domain, the domain's test split changed since, or the
        model could not score it when it was fitted (the reason it recorded).
    """
    if split != "test":
        return TEST_ONLY
    name = entry.recorded_domain(column, info)
    if name is None:
        scored = ", ".join(entry.run.domains)
        return f"{NOT_SCORED} (it scored {scored})" if scored else NOT_SCORED
    if fingerprint != entry.run.fingerprint(name):
        return CHANGED
    recorded = entry.row.metrics[name]
    if recorded.get("accuracy") is None and not recorded.get("predictions"):
        reason = str(recorded.get("reason") or NOT_SCORED)
        prefix = f"cannot score {name}: "
        return reason[len(prefix):] if reason.startswith(prefix) else reason
    return None


def baseline_outputs(entry, column, info, split, fingerprint):
    """``(y_true, scores)`` of a baseline on a domain's split, for :func:`.alignment.align_predictions`.

    Where every class the model predicts is one of the domain's, its
    recorded predictions are used as they are (one-hot); otherwise its
    recorded class scores, so that its prediction can be restricted to the
    shared classes, as for a model run.

    Raises:
        RunError: when the recorded files are missing, malformed, or do not
            match the split's size.
    """
    name = entry.recorded_domain(column, info)
    row = entry.row
    if set(row.class_names) <= set(str(c) for c in info.class_names):
        predictions = row.predictions(name, fingerprint)
        scores = None if predictions is None else np.eye(len(row.class_names))[predictions]
    else:
        scores = row.scores(name, fingerprint)
    if scores is None:
        raise RunError(f"run {entry.run.path}: the record names no predictions of {row.label} on {name};"
                       " run the baseline again")
    with h5py.File(info.path, "r") as f:
        y_true = f[split]["y"][()]
    if len(y_true) != len(scores):
        raise RunError(f"run {entry.run.path}: {row.label} holds {len(scores)} predictions on {name}, whose"
                       f" {split} split has {len(y_true)} samples; run the baseline again")
    return np.asarray(y_true, dtype=np.int64), scores


def baseline_notes(entries, results):
    """Notes on the baseline cells that are n/a or scored on shared classes only, grouped per baseline run.

    A reason shared by every model of a run is said once for the run
    (``n/a: the baselines of St-ms-baselines on mnist: ...``); otherwise the
    models it applies to are named.

    Args:
        entries: the :class:`BaselineEntry` rows, in order.
        results: ``{row label: {domain: cell}}``.

    Returns:
        A list of one-line notes.
    """
    by_run = {}
    for entry in entries:
        by_run.setdefault(entry.run.path, []).append(entry)
    notes = []
    for members in by_run.values():
        labels = [entry.label for entry in members]
        na, shared = {}, {}
        for label in labels:
            by_reason = {}
            for domain, cell in results[label].items():
                if cell["accuracy"] is None:
                    by_reason.setdefault(cell["reason"], []).append(domain)
            for reason, domains in by_reason.items():
                na.setdefault((reason, tuple(domains)), []).append(label)
            parts = [shared_part(domain, cell["class_alignment"]) for domain, cell in results[label].items()
                     if cell["accuracy"] is not None and cell["class_alignment"]["classes"] == "shared"]
            if parts:
                shared.setdefault("; ".join(parts), []).append(label)
        who = _who(members[0].run.name, labels)
        notes += [f"n/a: {who(rows)} on {', '.join(domains)}: {reason}" for (reason, domains), rows in na.items()]
        notes += [f"{who(rows)}: `*` scored on the classes shared with the domain only, predictions restricted"
                  f" to them: {text}" for text, rows in shared.items()]
    return notes


def _who(run_name, labels):
    """How a note names the rows it applies to: all of a run's, or each."""
    def who(rows):
        if len(labels) > 1 and rows == labels:
            return f"the baselines of {run_name}"
        return ", ".join(rows)
    return who
