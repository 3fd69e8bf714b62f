"""The record of a baseline run, written and read in one place, and its table for humans.

A baseline run is a run folder like the ConvLSTM runs, published the same way
(complete or absent), but it holds classical models' predictions, not a
``model.keras``::

    <runs-dir>/<name>/
      config.json     kind "baseline", the settings, the domains scored (their
                      classes and test-split fingerprints), the target subset,
                      the training sets
      metrics.json    one row per (method, training set): samples, seconds and,
                      per domain scored, the test metrics and the files below
      predictions/<method>-<trained_on>-<domain>.npy
                      int64 (n_test,): predicted class ids into the row's class_names
      scores/<method>-<trained_on>-<domain>.npy
                      float32 (n_test, len(class_names)): the class scores the
                      predictions are the argmax of (-inf: a class not trained on)
      report.txt      the table the command line prints

``trained_on`` is ``source`` (the source's train split), ``source+val``
(train and val), ``target`` (the target's labelled subset), ``pooled``
(source train + target subset, labels matched by class name) or
``pooled+val``. :func:`load_baseline_run` reads a run back; a row's
:meth:`BaselineRow.predictions` returns its predictions on a domain only for
the very test split they were made on (same fingerprint).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convlstm_tl.errors import ConfigError, RunError
from convlstm_tl.jsonio import load_json

KIND = "baseline"
RECORD_VERSION = 1
TRAINED_ON = ("source", "source+val", "target", "pooled", "pooled+val")
PREDICTIONS_DIR = "predictions"
SCORES_DIR = "scores"


def prediction_file(method, trained_on, domain, folder=PREDICTIONS_DIR):
    """The path, inside a run, of a row's predictions (or scores: ``folder=SCORES_DIR``) on a domain."""
    return f"{folder}/{method}-{trained_on}-{domain}.npy"


@dataclass(frozen=True)
class DomainIdentity:
    """A domain as a baseline run scored it.

    Attributes:
        name: the domain's name (its file is ``<data-dir>/<name>.h5``).
        role: ``"source"`` or ``"target"``.
        class_names: its classes, indexed by label id.
        n_test: samples in its test split.
        fingerprint: SHA-256 of the test split's labels and ``x`` shape
            (:func:`convlstm_tl.baselines.features.split_fingerprint`).
        x_shape: the test split's ``x`` shape.
        path: the file that was read.
    """

    name: str
    role: str
    class_names: tuple
    n_test: int
    fingerprint: str
    x_shape: tuple
    path: str = ""


@dataclass(frozen=True)
class BaselineRow:
    """One fitted baseline: a method trained on one training set, and what it predicted.

    Attributes:
        label: how tables name it, e.g. ``"minirocket (St train + ms 10% pooled)"``.
        method: the method's name, e.g. ``"minirocket"``.
        trained_on: ``"source"``, ``"source+val"``, ``"target"``, ``"pooled"`` or ``"pooled+val"``.
        training_set: the training set in words, e.g. ``"St train + ms 10%"``.
        class_names: the classes the model predicts; predictions are ids into it.
        n_train: training samples.
        fit_seconds: seconds spent fitting.
        metrics: ``{domain: metrics}`` of each domain scored (``accuracy``,
            ``macro_f1``, ... as in ``metrics.json``), or ``{"accuracy": None,
            "reason": ...}`` where the model could not score it.
        run_path: the run folder.
    """

    label: str
    method: str
    trained_on: str
    training_set: str
    class_names: tuple
    n_train: int
    fit_seconds: float
    metrics: dict
    run_path: Path
    fingerprints: dict = field(default_factory=dict, repr=False)

    def predictions(self, domain_name, fingerprint):
        """Predicted class ids (into :attr:`class_names`) on ``domain_name``'s test split, or None.

        Args:
            domain_name: the domain.
            fingerprint: the caller's fingerprint of that test split (the
                ``sha256`` string, or the dict of
                :func:`~convlstm_tl.baselines.features.split_fingerprint`).

        Returns:
            int64 ``(n_test,)``, or None when the row has no predictions on
            that domain or they were made on another split (other fingerprint).

        Raises:
            RunError: when the recorded file is missing or malformed.
        """
        return self._array(domain_name, fingerprint, "predictions")

    def scores(self, domain_name, fingerprint):
        """The class scores ``(n_test, len(class_names))`` behind :meth:`predictions`, or None (same rules)."""
        return self._array(domain_name, fingerprint, "scores")

    def _array(self, domain_name, fingerprint, key):
        cell = self.metrics.get(domain_name)
        if not cell or not cell.get(key):
            return None
        if isinstance(fingerprint, dict):
            fingerprint = fingerprint.get("sha256")
        if fingerprint != self.fingerprints.get(domain_name):
            return None
        path = self.run_path / cell[key]
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise RunError(f"run {self.run_path}: {cell[key]} cannot be read ({' '.join(str(error).split())[:120]});"
                           " run the baseline again") from None
        n_test, n_classes = cell.get("n_test"), len(self.class_names)
        if key == "predictions":
            good = (values.shape == (n_test,) and values.dtype.kind in "iu"
                    and (not values.size or (values.min() >= 0 and values.max() < n_classes)))
            expected = f"ints in [0, {n_classes}) of shape ({n_test},)"
        else:
            good = values.shape == (n_test, n_classes) and values.dtype.kind == "f"
            expected = f"floats of shape ({n_test}, {n_classes})"
        if not good:
            raise RunError(f"run {self.run_path}: {cell[key]} must hold {expected}. Received: dtype={values.dtype},"
                           f" shape={values.shape}; run the baseline again")
        return values.astype(np.int64) if key == "predictions" else values


@dataclass
class BaselineRun:
    """A finished baseline run, read back (:func:`load_baseline_run`).

    Attributes:
        path: the run folder.
        record: its ``config.json``.
        rows: one :class:`BaselineRow` per fitted model, in the order run.
        domains: ``{name: DomainIdentity}`` of the domains scored.
        notes: what was skipped, and why.
    """

    path: Path
    record: dict
    rows: list
    domains: dict
    notes: list = field(default_factory=list)

    @property
    def name(self):
        """The run's folder name."""
        return self.path.name

    @property
    def kind(self):
        """Always ``"baseline"``."""
        return KIND

    @property
    def source(self):
        """The source domain's name."""
        return self.record["source"]

    @property
    def target(self):
        """The target domain's name, or None."""
        return self.record.get("target")

    def fingerprint(self, domain_name):
        """The recorded test-split fingerprint (sha256) of ``domain_name``, or None if it was not scored."""
        identity = self.domains.get(domain_name)
        return identity.fingerprint if identity else None


def is_baseline_run(name, runs_dir=None):
    """Whether a run folder holds a baseline run (its ``config.json`` says ``"kind": "baseline"``).

    Args:
        name: a folder, or with ``runs_dir`` a run name in it (looked up as
            :func:`resolve_baseline_run` and the model commands do: the name
            in ``runs_dir`` first, else the folder itself).
        runs_dir: the runs folder, or None.
    """
    path = Path(name)
    if runs_dir is not None and (Path(runs_dir) / path).exists():
        path = Path(runs_dir) / path
    try:
        record = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(record, dict) and record.get("kind") == KIND


def resolve_baseline_run(name, runs_dir="runs"):
    """The folder of a finished baseline run: ``runs_dir/name``, else ``name`` itself when it is a folder.

    Raises:
        RunError: when there is no finished run there, or it is not a baseline run.
    """
    from convlstm_tl.runs.directory import recover_run

    name = Path(name)
    in_runs_dir = Path(runs_dir) / name
    path = name if not in_runs_dir.exists() and name.is_dir() else in_runs_dir
    recover_run(path.parent, path.name)
    if not path.is_dir():
        raise RunError(f"run {path} not found; run the baseline first or give the runs folder that has it",
                       field="runs_dir")
    for required in ("config.json", "metrics.json"):
        if not (path / required).is_file():
            raise RunError(f"run {path} has no {required}; it is not a finished baseline run")
    if not is_baseline_run(path):
        raise RunError(f"run {path} is not a baseline run (its config.json has no \"kind\": \"baseline\");"
                       " give a run written by python -m convlstm_tl.baseline")
    return path


def load_baseline_run(name, runs_dir="runs"):
    """Read a baseline run (a name in ``runs_dir`` or a folder): its record, rows and domains.

    Returns:
        A :class:`BaselineRun`.

    Raises:
        RunError: one line, for a missing or incomplete run, another kind of
            run, or a record that does not follow the format.
    """
    path = resolve_baseline_run(name, runs_dir)
    try:
        record = load_json(path / "config.json", what="run record")
        metrics = load_json(path / "metrics.json", what="run metrics")
    except ConfigError as error:
        raise RunError(f"run {path}: {error}; run the baseline again") from None
    try:
        domains = {name: DomainIdentity(name=name, role=str(entry["role"]),
                                        class_names=tuple(str(c) for c in entry["class_names"]),
                                        n_test=int(entry["test"]["n"]), fingerprint=str(entry["test"]["sha256"]),
                                        x_shape=tuple(int(d) for d in entry["test"]["x_shape"]),
                                        path=str(entry.get("path", "")))
                   for name, entry in record["domains"].items()}
        fingerprints = {name: identity.fingerprint for name, identity in domains.items()}
        rows = [BaselineRow(label=str(row["label"]), method=str(row["method"]), trained_on=str(row["trained_on"]),
                            training_set=str(row["training_set"]),
                            class_names=tuple(str(c) for c in row["class_names"]), n_train=int(row["n_train"]),
                            fit_seconds=float(row["fit_seconds"]), metrics=dict(row["scores"]), run_path=path,
                            fingerprints=fingerprints)
                for row in metrics["rows"]]
        notes = [str(note) for note in metrics.get("notes", [])]
        if not isinstance(record["source"], str):
            raise TypeError("source must be a string")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise RunError(f"run {path}: its config.json or metrics.json does not follow the baseline record"
                       f" ({type(error).__name__}: {' '.join(str(error).split())[:80]}); run the baseline again"
                       ) from None
    return BaselineRun(path=path, record=record, rows=rows, domains=domains, notes=notes)


def format_table(rows, domains):
    """The table of a baseline run: a line per row, accuracy and macro-F1 (in %) per domain scored.

    Args:
        rows: the row dicts of ``metrics.json`` (or of a :class:`BaselineResult`).
        domains: the names of the domains scored, in column order, or
            ``{name: n_test}`` to show the test sizes.

    Returns:
        The table as text, one line per row after a two-line header; ``-``
        where a model could not score a domain.
    """
    sizes = domains if isinstance(domains, dict) else {}
    titles = {name: f"{name} test" + (f" (n={sizes[name]})" if name in sizes else "") for name in domains}
    widths = {name: max(len(_CELL_HEADER), len(title)) for name, title in titles.items()}
    first = max([len("method (trained on)")] + [len(row["label"]) for row in rows])
    top = " " * first + "".join(f"  {titles[name]:>{widths[name]}}" for name in domains)
    header = f"{'method (trained on)':<{first}}" + "".join(f"  {_CELL_HEADER:>{widths[name]}}" for name in domains)
    lines = [top.rstrip(), header + "  n_train   fit s"]
    for row in rows:
        cells = []
        for name in domains:
            cell = row["scores"].get(name) or {}
            text = (f"{'-':>5}  {'-':>8}" if cell.get("accuracy") is None
                    else f"{100 * cell['accuracy']:5.1f}  {100 * cell['macro_f1']:8.1f}")
            cells.append(f"  {text:>{widths[name]}}")
        lines.append(f"{row['label']:<{first}}{''.join(cells)}  {row['n_train']:>7}  {row['fit_seconds']:6.1f}")
    return "\n".join(lines)


_CELL_HEADER = "acc %  macro-F1"
