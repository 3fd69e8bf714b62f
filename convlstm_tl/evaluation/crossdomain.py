"""Cross-domain evaluation: every run's model on every domain's split.

A model can only be scored on classes it predicts, and label ids of two
domains mean different things, so predictions are aligned **by class name**
(:func:`align_predictions`):

- the same class names (maybe in another order): every sample is scored and
  each prediction is mapped to the domain's label id of its name;
- some shared names: only samples whose true class is shared are scored, and
  the prediction is the most probable of the shared classes;
- no shared name: the cell is n/a.

For every transfer run the evaluation also measures forgetting: the accuracy
its recorded source run (``source_run`` in ``config.json``) has on the
source's own domain, minus the accuracy the transferred model keeps there.
The source run is evaluated for this even when it was not asked for.

The work is split so that a command line can fail fast:
:func:`plan_evaluation` checks runs, domains and frame shapes without loading
the Keras backend; :func:`evaluate_plan` predicts; :func:`evaluate_runs` does
both. :func:`format_markdown` and :func:`write_evaluation` turn the returned
:class:`Evaluation` into a table and files.
"""

import hashlib
import logging
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convlstm_tl.config import load_json, save_json
from convlstm_tl.data.format import SPLITS, DomainInfo, find_domain, open_domain, vocab_fingerprint
from convlstm_tl.errors import ConfigError, RunError, UserError
from convlstm_tl.files import give_usual_permissions, replace_folder
from convlstm_tl.evaluation.metrics import classification_metrics, classification_report_text
from convlstm_tl.runs.record import load_run_record
from convlstm_tl.runs.directory import find_run

log = logging.getLogger(__name__)

# Keys of a cell: those of metrics.json (DESIGN.md); an n/a cell holds None in each.
METRIC_KEYS = ("domain", "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "per_class",
               "confusion_matrix", "n_test", "train_seconds", "eval_seconds")


# ------------------------------------------------------------ class alignment


def class_alignment(model_classes, domain_classes):
    """How the classes a model predicts meet the classes of a domain, by name.

    Args:
        model_classes: class names of the model's outputs, in output order.
        domain_classes: class names of the domain, indexed by label id.

    Returns:
        A dict: ``classes`` (``"same"``, ``"reordered"``, ``"shared"`` or
        ``"none"``), ``class_names`` (the names scored, in the domain's
        order), ``model_only`` and ``domain_only`` (names on one side only)
        and ``note`` (one human-readable sentence).
    """
    model_classes = [str(name) for name in model_classes]
    domain_classes = [str(name) for name in domain_classes]
    known = set(model_classes)
    shared = [name for name in domain_classes if name in known]
    model_only = [name for name in model_classes if name not in set(domain_classes)]
    domain_only = [name for name in domain_classes if name not in known]
    if not shared:
        kind = "none"
        note = f"the model predicts none of the domain's classes (model: {model_classes}, domain: {domain_classes})"
    elif model_only or domain_only:
        kind = "shared"
        note = (f"scored on the {len(shared)} shared classes only ({', '.join(shared)}), predictions restricted to"
                " them")
        if domain_only:
            note += f"; samples of {domain_only} left out (the model does not know them)"
        if model_only:
            note += f"; the model's classes {model_only} are not in the domain"
    elif model_classes == domain_classes:
        kind, note = "same", "same classes in the same order"
    else:
        kind, note = "reordered", "same classes in another order; predictions mapped to the domain's ids by name"
    return {"classes": kind, "class_names": shared, "model_only": model_only, "domain_only": domain_only,
            "note": note}


def align_predictions(probabilities, model_classes, domain_classes, y_true):
    """Turn a model's class probabilities into predictions on a domain's classes.

    Label ids are never compared across class lists: both the true labels and
    the predictions are re-indexed into ``names``, the class names the two
    lists share (in the domain's order).

    Args:
        probabilities: model outputs ``(N, len(model_classes))``.
        model_classes: class names of the model's outputs.
        domain_classes: class names of the domain, indexed by label id.
        y_true: the domain's label ids ``(N,)``.

    Returns:
        ``(y_true_sub, y_pred_sub, names, info)``: ids into ``names`` of the
        samples scored (those whose true class is shared) and of their
        predictions (argmax over the shared classes' probabilities), the
        names, and the :func:`class_alignment` dict plus ``n_left_out`` (the
        samples not scored). With no shared class the arrays are empty.

    Example:

    >>> probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    >>> align_predictions(probs, ["sit", "walk", "run"], ["walk", "run"], np.array([0, 1]))[:3]
    (array([0, 1]), array([0, 1]), ['walk', 'run'])
    """
    probabilities = np.asarray(probabilities)
    y_true = np.asarray(y_true)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(model_classes):
        raise ValueError(f"probabilities must have shape (N, {len(model_classes)}) for {len(model_classes)} model"
                         f" classes. Received: probabilities.shape={probabilities.shape}")
    info = class_alignment(model_classes, domain_classes)
    names = info["class_names"]
    domain_index = {str(name): i for i, name in enumerate(domain_classes)}
    model_index = {str(name): i for i, name in enumerate(model_classes)}
    to_scored = np.full(len(domain_classes), -1, dtype=np.int64)
    for i, name in enumerate(names):
        to_scored[domain_index[name]] = i
    keep = to_scored[y_true] >= 0
    columns = [model_index[name] for name in names]
    y_true_sub = to_scored[y_true[keep]]
    if columns:
        y_pred_sub = probabilities[keep][:, columns].argmax(axis=-1).astype(np.int64)
    else:
        y_pred_sub = np.zeros(0, dtype=np.int64)
    info["n_left_out"] = int((~keep).sum())
    return y_true_sub, y_pred_sub, names, info


# ------------------------------------------------------------------ planning


@dataclass
class RunEntry:
    """A run to evaluate, read from its ``config.json`` (no model loaded).

    Attributes:
        label: the run's row name (its folder name, made unique).
        path: the run directory, resolved.
        config: the run's ``config.json``.
        listed: whether the caller asked for it; source runs added for
            forgetting are not listed.
    """

    label: str
    path: Path
    config: dict
    listed: bool = True

    @property
    def kind(self):
        return self.config.get("kind", "source")

    @property
    def class_names(self):
        return [str(name) for name in self.config["domain"]["class_names"]]

    @property
    def domain(self):
        return self.config["domain"].get("name", "")

    @property
    def frame_shape(self):
        shape = self.config["domain"].get("frame_shape")
        return tuple(shape) if shape is not None else None

    @property
    def source_run(self):
        return self.config.get("source_run")


@dataclass
class EvaluationPlan:
    """What :func:`evaluate_plan` will compute; built by :func:`plan_evaluation`.

    Attributes:
        runs: the runs asked for, in order.
        domains: ``{column name: DomainInfo}``, in order.
        split: the split scored.
        pairs: ``(run label, domain name)`` to score, in order.
        extra_runs: source runs added to measure forgetting.
        forgetting: one entry per transfer run: its source run's label (or
            None) and source domain, or the reason it cannot be measured.
        notes: sentences for the report.
    """

    runs: list
    domains: dict
    split: str
    pairs: list = field(default_factory=list)
    extra_runs: list = field(default_factory=list)
    forgetting: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def entry(self, label):
        return next(run for run in (*self.runs, *self.extra_runs) if run.label == label)


def resolve_run(name, runs_dir="runs"):
    """The directory of run ``name`` in ``runs_dir``, or ``name`` itself if it is a run folder."""
    in_runs_dir = Path(runs_dir) / name
    path = Path(name) if not in_runs_dir.exists() and Path(name).is_dir() else in_runs_dir
    return find_run(path.parent, path.name)


def read_run(path, *, label=None, listed=True):
    """Check a run directory and read its ``config.json`` into a :class:`RunEntry`."""
    path = find_run(Path(path).parent, Path(path).name).resolve()
    try:
        config = load_run_record(path)
    except ConfigError as error:
        raise RunError(f"run {path}: {error}") from None
    domain = config.get("domain") if isinstance(config, dict) else None
    if not isinstance(domain, dict) or not isinstance(domain.get("class_names"), list):
        raise RunError(f"{path / 'config.json'} does not record the domain's class_names; train the run again")
    return RunEntry(label=label or path.name, path=path, config=config, listed=listed)


def frame_shape_problem(model_shape, frame_shape):
    """Why a model taking ``model_shape`` cannot take frames ``frame_shape``, or None if it can.

    Channels must match; time and space must too, unless the model leaves
    that dimension open (``None``).
    """
    model_shape = tuple(None if d is None else int(d) for d in model_shape)
    frame_shape = tuple(int(d) for d in frame_shape)
    if len(model_shape) != len(frame_shape):
        return f"the model takes frames of rank {len(model_shape)}, the domain has rank {len(frame_shape)}"
    if model_shape[-1] != frame_shape[-1]:
        return f"the model takes {model_shape[-1]} channels, the domain's frames have {frame_shape[-1]}"
    fixed = [i for i, (m, f) in enumerate(zip(model_shape, frame_shape)) if m is not None and m != f]
    if fixed:
        names = "/".join("THWC"[i] for i in fixed)
        return f"the model's {names} are fixed and differ from the domain's"
    return None


def input_problem(record, info):
    """Why a run whose ``config.json`` domain record is ``record`` cannot read domain ``info``'s inputs, or None.

    Frames and token ids do not mix, and token ids only mean the same words
    under the same vocabulary (runs record its fingerprint).
    """
    kind = record.get("kind", "frames")
    if kind != info.kind:
        return f"the run was trained on {kind} and the domain holds {info.kind}"
    if kind == "tokens" and "vocab_fingerprint" in record \
            and record["vocab_fingerprint"] != vocab_fingerprint(info.vocab):
        return ("the domain is encoded with another vocabulary than the run's, so its token ids mean other words;"
                " rebuild it with `python -m data_prep text ... --vocab-from` the run's domain")
    return None


def _check_frames(run, model_shape, name, info):
    problem = input_problem(run.config["domain"], info)
    if problem is not None:
        raise UserError(f"run {run.label} cannot read domain {name}: {problem}")
    problem = frame_shape_problem(model_shape, info.frame_shape)
    if problem is not None:
        raise UserError(
            f"run {run.label} cannot take the frames of domain {name}: {problem}; evaluate it on domains with"
            f" frames like those it was trained on. Received: model input {tuple(model_shape)},"
            f" domain frames {tuple(info.frame_shape)}"
        )


def plan_evaluation(run_dirs, domains, *, data_dir=None, split="test"):
    """Check runs, domains and frame shapes, and decide what to score; loads no model.

    Args:
        run_dirs: run directories (paths) to evaluate, the rows.
        domains: domain names (files ``<data_dir>/<name>.h5``) or
            :class:`DomainInfo` objects, the columns.
        data_dir: folder of the domain files (default ``$CONVLSTM_TL_DATA``
            or ``./data``).
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        An :class:`EvaluationPlan`.

    Raises:
        UserError: for an unknown split, a missing or incomplete run, a
            missing or invalid domain file, or a domain whose frames a
            listed run's model cannot take.
    """
    if split not in SPLITS:
        raise UserError(f"split must be one of {list(SPLITS)}. Received: split={split!r}")
    if not run_dirs:
        raise UserError("no runs to evaluate; pass one or more run names")
    if not domains:
        raise UserError("no domains to evaluate on; pass one or more domain names")

    infos = {}
    for domain in domains:
        info = domain if isinstance(domain, DomainInfo) else open_domain(find_domain(str(domain), data_dir))
        name = info.path.stem if isinstance(domain, DomainInfo) else str(domain)
        infos.setdefault(name, info)

    runs, labels = [], set()
    for path in run_dirs:
        run = read_run(path)
        if any(run.path == other.path for other in runs):
            continue
        run.label = _unique_label(run.path, labels)
        labels.add(run.label)
        runs.append(run)
    for run in runs:
        for name, info in infos.items():
            # config.json records the frames the model was built for; the
            # loaded model is checked again before predicting.
            if run.frame_shape is not None:
                _check_frames(run, run.frame_shape, name, info)

    plan = EvaluationPlan(runs=runs, domains=infos, split=split)
    plan.pairs = [(run.label, name) for run in runs for name in infos]
    for run in runs:
        if run.kind == "transfer":
            plan.forgetting.append(_plan_forgetting(plan, run, labels))
    return plan


def _plan_forgetting(plan, run, labels):
    """Find the recorded source run of ``run`` and what to score to measure its forgetting."""
    entry = {"run": run.label, "source_run": None, "source_run_path": run.source_run, "source_domain": None}
    if not run.source_run:
        return {**entry, "reason": "config.json records no source_run"}
    source_path = Path(run.source_run)
    source = next((other for other in (*plan.runs, *plan.extra_runs) if other.path == source_path.resolve()), None)
    if source is None:
        try:
            source = read_run(source_path, listed=False)
        except RunError as error:
            return {**entry, "reason": f"source run unavailable: {error}"}
        source.label = _unique_label(source.path, labels)
    domain = _find_column(plan.domains, source.domain)
    entry.update(source_run=source.label, source_domain=source.domain)
    if domain is None:
        return {**entry, "reason": f"the source domain {source.domain} is not among the evaluated domains; add it"
                                   " to measure forgetting"}
    if source.frame_shape is not None and frame_shape_problem(source.frame_shape,
                                                              plan.domains[domain].frame_shape):
        return {**entry, "reason": f"source run {source.label} cannot take the frames of {domain}"}
    if not source.listed and source not in plan.extra_runs:
        labels.add(source.label)
        plan.extra_runs.append(source)
        plan.notes.append(f"source run {source.label} ({source.path}) was not among the runs asked for; it was"
                          f" evaluated on {domain} only, to measure the forgetting of {run.label}")
    entry["source_domain"] = domain
    if (source.label, domain) not in plan.pairs:
        plan.pairs.append((source.label, domain))
    return entry


def _find_column(domains, name):
    """The column of the domain called ``name`` (by requested name, else by the file's own name)."""
    if name in domains:
        return name
    return next((column for column, info in domains.items() if info.domain == name), None)


def _unique_label(path, taken):
    """A row name for a run: its folder name, with the parent folder when that name is taken."""
    for label in (path.name, f"{path.parent.name}/{path.name}", str(path)):
        if label not in taken:
            return label
    raise RunError(f"run {path} given twice")


# ---------------------------------------------------------------- evaluating


@dataclass
class Evaluation:
    """Every run's scores on every domain, and the forgetting of transfer runs.

    Attributes:
        split: the split scored.
        runs: row labels, the runs asked for, in order.
        domains: column names, in order.
        results: ``{run: {domain: cell}}``; a cell has the ``metrics.json``
            keys (``None`` in each for an n/a cell, with a ``reason``) plus
            ``run``, ``split`` and ``class_alignment``. Source runs added for
            forgetting have their one cell here too.
        forgetting: one dict per transfer run: ``run``, ``source_run``,
            ``source_run_path``, ``source_domain``, ``before`` (the source
            run's accuracy there), ``after`` (the transfer run's), ``lost``
            (``before - after``), ``lost_points`` (in percentage points),
            ``classes`` and a ``note``, or ``None`` values and a ``reason``.
        extra_runs: labels of the source runs evaluated only for forgetting.
        runs_info: ``{run: {path, kind, domain, class_names, source_run}}``.
        domains_info: ``{domain: {path, domain, class_names, frame_shape, n}}``.
        notes: sentences for the report.
        reports: ``{(run, domain): text}``, the per-class reports (not in JSON).
    """

    split: str
    runs: list
    domains: list
    results: dict
    forgetting: list
    extra_runs: list = field(default_factory=list)
    runs_info: dict = field(default_factory=dict)
    domains_info: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    reports: dict = field(default_factory=dict, repr=False, compare=False)

    def cell(self, run, domain):
        """The cell of ``run`` on ``domain``."""
        return self.results[run][domain]

    def to_dict(self):
        """Everything but the report texts, as JSON-ready data."""
        return {"split": self.split, "runs": self.runs, "domains": self.domains, "results": self.results,
                "forgetting": self.forgetting, "extra_runs": self.extra_runs, "runs_info": self.runs_info,
                "domains_info": self.domains_info, "notes": self.notes}


def evaluate_runs(run_dirs, domains, *, data_dir=None, split="test", batch_size=128, progress=True):
    """Score every run's model on every domain's split, and measure forgetting.

    Args:
        run_dirs: run directories to evaluate (the rows).
        domains: domain names or :class:`DomainInfo` objects (the columns).
        data_dir: folder of the domain files.
        split: the split to score.
        batch_size: samples per prediction batch (read from the file batch by batch).
        progress: show a tqdm bar over the (run, domain) pairs.

    Returns:
        An :class:`Evaluation`; nothing is printed or written.

    Raises:
        UserError: see :func:`plan_evaluation`; also a model that cannot be
            loaded or does not output one probability per recorded class.
    """
    plan = plan_evaluation(run_dirs, domains, data_dir=data_dir, split=split)
    return evaluate_plan(plan, batch_size=batch_size, progress=progress)


def evaluate_plan(plan, *, batch_size=128, progress=True):
    """Predict the pairs of an :class:`EvaluationPlan`, one model load per run.

    Returns:
        An :class:`Evaluation` (see :func:`evaluate_runs`).
    """
    # Imported here so that planning, and a CLI's checks, need no backend.
    from tqdm.auto import tqdm

    from convlstm_tl.evaluation.predict import predict_split

    by_run = {}
    for label, name in plan.pairs:
        by_run.setdefault(label, []).append(name)
    results = {label: {} for label in by_run}
    reports, outputs = {}, {}
    with tqdm(total=len(plan.pairs), desc="evaluating", unit="pair", disable=not progress) as bar:
        for label, names in by_run.items():
            run = plan.entry(label)
            model = None
            for name in names:
                info = plan.domains[name]
                bar.set_postfix_str(f"{label} on {name}", refresh=False)
                alignment = class_alignment(run.class_names, info.class_names)
                if alignment["classes"] == "none":
                    results[label][name] = _na_cell(run, name, plan.split, {**alignment, "n_left_out": None},
                                                    alignment["note"])
                    reports[label, name] = _report_header(label, name, plan.split, results[label][name])
                    bar.update()
                    continue
                if model is None:
                    model = _load_model(run)
                _check_frames(run, model.input_shape[1:], name, info)
                start = time.perf_counter()
                y_true, _, probabilities = predict_split(model, info.path, plan.split, batch_size=batch_size)
                seconds = time.perf_counter() - start
                if probabilities.shape[-1] != len(run.class_names):
                    raise RunError(f"run {label}: the model outputs {probabilities.shape[-1]} classes but its"
                                   f" config.json names {len(run.class_names)}; train the run again")
                outputs[label, name] = (y_true, probabilities)
                results[label][name], reports[label, name] = _score(run, name, info, plan.split, y_true,
                                                                    probabilities, seconds)
                bar.update()
            del model
    forgetting = [_forgetting(plan, entry, results, outputs) for entry in plan.forgetting]
    notes = list(plan.notes)
    for label in by_run:
        for name, cell in results[label].items():
            if cell["class_alignment"]["classes"] == "shared" or cell["accuracy"] is None:
                notes.append(f"{label} on {name}: {cell.get('reason') or cell['class_alignment']['note']}")
    return Evaluation(
        split=plan.split,
        runs=[run.label for run in plan.runs],
        domains=list(plan.domains),
        results=results,
        forgetting=forgetting,
        extra_runs=[run.label for run in plan.extra_runs],
        runs_info={run.label: {"path": str(run.path), "kind": run.kind, "domain": run.domain,
                               "class_names": run.class_names, "source_run": run.source_run}
                   for run in (*plan.runs, *plan.extra_runs)},
        domains_info={name: {"path": str(info.path), "domain": info.domain, "class_names": list(info.class_names),
                             "frame_shape": list(info.frame_shape), "n": info.split_sizes[plan.split]}
                      for name, info in plan.domains.items()},
        notes=notes,
        reports=reports,
    )


def _load_model(run):
    from convlstm_tl.models.classifier import load_model

    return load_model(run.path / "model.keras")


def _score(run, name, info, split, y_true, probabilities, seconds):
    """The cell and the report text of one run on one domain."""
    y_true_sub, y_pred_sub, names, alignment = align_predictions(probabilities, run.class_names,
                                                                 info.class_names, y_true)
    if len(y_true_sub) == 0:
        cell = _na_cell(run, name, split, alignment, f"the {split} split has no sample of the shared classes"
                                                     f" {names}")
        return cell, _report_header(run.label, name, split, cell)
    metrics = classification_metrics(y_true_sub, y_pred_sub, names, domain=name)
    cell = {"run": run.label, "split": split, **metrics, "train_seconds": _train_seconds(run),
            "eval_seconds": round(seconds, 3), "class_alignment": alignment}
    report = _report_header(run.label, name, split, cell) + classification_report_text(y_true_sub, y_pred_sub, names)
    return cell, report


def _na_cell(run, name, split, alignment, reason):
    cell = {"run": run.label, "split": split, **{key: None for key in METRIC_KEYS}}
    cell.update(domain=name, reason=reason, class_alignment=alignment)
    return cell


def _train_seconds(run):
    path = run.path / "metrics.json"
    try:
        return load_json(path).get("train_seconds") if path.is_file() else None
    except ConfigError:
        return None


def _report_header(label, name, split, cell):
    alignment = cell["class_alignment"]
    if cell["accuracy"] is None:
        return f"run {label} on domain {name} ({split} split): n/a, not scored: {cell['reason']}\n"
    header = f"run {label} on domain {name} ({split} split), {cell['n_test']} samples scored\n"
    if alignment["classes"] == "shared":
        header += (f"SHARED CLASSES ONLY: {alignment['note']}; {alignment['n_left_out']} samples left out\n")
    elif alignment["classes"] == "reordered":
        header += f"{alignment['note']}\n"
    return header + "\n"


def _forgetting(plan, entry, results, outputs):
    """Accuracy lost on the source domain: the recorded source run's, minus the transfer run's."""
    row = {"run": entry["run"], "source_run": entry["source_run"], "source_run_path": entry["source_run_path"],
           "source_domain": entry["source_domain"], "before": None, "after": None, "lost": None,
           "lost_points": None, "classes": None}
    if "reason" in entry:
        return {**row, "reason": entry["reason"]}
    run, source, domain = entry["run"], entry["source_run"], entry["source_domain"]
    after, before = results[run][domain], results[source][domain]
    for label, cell in ((run, after), (source, before)):
        if cell["accuracy"] is None:
            return {**row, "reason": f"{label} is n/a on {domain}: {cell['reason']}"}
    domain_classes = list(plan.domains[domain].class_names)
    run_classes, source_classes = plan.entry(run).class_names, plan.entry(source).class_names
    common = [name for name in domain_classes if name in run_classes and name in source_classes]
    if common == domain_classes:
        row.update(before=before["accuracy"], after=after["accuracy"], classes="all",
                   note=f"accuracy on all classes of {domain}")
    else:
        # Compare like with like: both models on the same samples, each
        # choosing among the same classes.
        row.update(before=_accuracy_on(outputs[source, domain], source_classes, common, domain_classes),
                   after=_accuracy_on(outputs[run, domain], run_classes, common, domain_classes),
                   classes="shared",
                   note=f"both runs scored on the samples of the classes they share with {domain}: {common}")
        if row["before"] is None or row["after"] is None:
            return {**row, "before": None, "after": None, "reason": f"no {plan.split} sample of {common}"}
    row["lost"] = row["before"] - row["after"]
    row["lost_points"] = round(100.0 * row["lost"], 2)
    return row


def _accuracy_on(output, model_classes, names, domain_classes):
    """Accuracy of a model on the samples of ``names``, choosing among ``names`` only."""
    y_true, probabilities = output
    columns = [model_classes.index(name) for name in names]
    y_true_sub, y_pred_sub, _, _ = align_predictions(probabilities[:, columns], names, domain_classes, y_true)
    return float(np.mean(y_true_sub == y_pred_sub)) if len(y_true_sub) else None


# ---------------------------------------------------------------- reporting


def format_markdown(evaluation):
    """The evaluation as Markdown: the accuracy / macro-F1 matrix and the forgetting table."""
    lines = [f"## Accuracy / macro-F1 on the {evaluation.split} split", ""]
    lines.append("| run | " + " | ".join(evaluation.domains) + " |")
    lines.append("| --- |" + " ---: |" * len(evaluation.domains))
    for run in evaluation.runs:
        cells = [_matrix_cell(evaluation.results[run][domain]) for domain in evaluation.domains]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    lines += ["", "Rows: runs; columns: domains. `*` scored on the classes the run shares with the domain only;"
                  " n/a: no class in common."]
    if evaluation.forgetting:
        lines += ["", f"## Forgetting: accuracy on the source domain ({evaluation.split} split)", "",
                  "| run | source run | source domain | source accuracy before | after | lost (points) |",
                  "| --- | --- | --- | ---: | ---: | ---: |"]
        for row in evaluation.forgetting:
            shared = "*" if row["classes"] == "shared" else ""
            lines.append(f"| {row['run']} | {row['source_run'] or 'n/a'} | {row['source_domain'] or 'n/a'} | "
                         f"{_number(row['before'])}{shared} | {_number(row['after'])}{shared} | "
                         f"{_number(row['lost_points'], '.1f')} |")
    notes = list(evaluation.notes)
    notes += [f"forgetting of {row['run']}: {row['reason']}" for row in evaluation.forgetting if "reason" in row]
    notes += [f"forgetting of {row['run']}: {row['note']}" for row in evaluation.forgetting
              if row.get("classes") == "shared"]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _matrix_cell(cell):
    if cell["accuracy"] is None:
        return "n/a"
    shared = "*" if cell["class_alignment"]["classes"] == "shared" else ""
    return f"{cell['accuracy']:.3f} / {cell['macro_f1']:.3f}{shared}"


def _number(value, spec=".3f"):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def file_stem(text):
    """``text`` made safe as part of a file name, distinct for distinct texts.

    Text that is already safe is kept; other text keeps its safe characters
    and gains a short hash of the whole, so ``日本`` and ``中国`` do not
    both become ``_``.
    """
    text = str(text)
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_.")[:60]
    if safe == text:
        return safe
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else digest


# Names of the files an evaluation writes; a folder holding anything else is not ours to replace.
_OUTPUT_FILE = re.compile(r"(evaluation\.(json|md)|report-.+\.txt|confusion-.+\.png)")


def check_output_dir(out_dir):
    """Fail early unless ``out_dir`` is absent, empty or holds only an earlier evaluation's files.

    The earlier evaluation is replaced; a folder that also holds anything
    else (the user's own files) is refused, so no file that evaluate did
    not write is ever deleted.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise UserError(f"{out_dir} exists and is not a folder; pass another --out")
    if out_dir.exists():
        try:
            foreign = sorted(entry.name for entry in out_dir.iterdir()
                             if not (_OUTPUT_FILE.fullmatch(entry.name) and entry.is_file()
                                     and not entry.is_symlink()))
        except OSError as error:
            raise UserError(f"cannot read {out_dir}: {error.strerror}; pass another --out") from None
        if foreign:
            raise UserError(f"{out_dir} holds files that are not an earlier evaluation's (e.g. {foreign[0]});"
                            " pass --out with a new or empty folder")
    parent = out_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write in {parent}; pass --out with a folder you can write")
    return out_dir


def write_evaluation(evaluation, out_dir):
    """Write the evaluation's files into ``out_dir``, all or nothing.

    Files: ``evaluation.json`` (every cell and the forgetting),
    ``evaluation.md`` (:func:`format_markdown`), ``report-<run>-<domain>.txt``
    (per-class reports) and ``confusion-<run>-<domain>.png`` (scored cells).
    They are written to a temporary folder next to ``out_dir`` that is
    renamed at the end; an earlier evaluation in ``out_dir`` is replaced
    (:func:`check_output_dir` refuses a folder holding anything else).

    Returns:
        ``out_dir`` as a ``Path``.
    """
    from convlstm_tl.evaluation.plots import save_confusion_matrix

    out_dir = check_output_dir(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    except OSError as error:
        raise UserError(f"cannot write {out_dir}: {error.strerror}; pass --out with a folder you can write") from None
    try:
        give_usual_permissions(tmp)
        save_json(tmp / "evaluation.json", evaluation.to_dict())
        (tmp / "evaluation.md").write_text(format_markdown(evaluation))
        stems = _cell_stems(evaluation.results)
        for run, cells in evaluation.results.items():
            for domain, cell in cells.items():
                stem = stems[run, domain]
                report = evaluation.reports.get((run, domain)) or _report_header(run, domain, evaluation.split, cell)
                (tmp / f"report-{stem}.txt").write_text(report)
                if cell["accuracy"] is not None:
                    names = cell["class_alignment"]["class_names"]
                    title = f"{run} on {domain} ({evaluation.split})"
                    if cell["class_alignment"]["classes"] == "shared":
                        title += ", shared classes"
                    save_confusion_matrix(cell["confusion_matrix"], names, tmp / f"confusion-{stem}.png", title=title)
        check_output_dir(out_dir)  # again: the user may have added files while it ran
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.debug("wrote evaluation %s", out_dir)
    return out_dir


def _cell_stems(results):
    """``{(run, domain): file stem}``, unique even where ``<run>-<domain>`` strings coincide."""
    stems = {(run, domain): f"{file_stem(run)}-{file_stem(domain)}" for run, cells in results.items()
             for domain in cells}
    counts = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    return {key: stem if counts[stem] == 1 else file_stem(f"{stem}\0{key[0]}\0{key[1]}")
            for key, stem in stems.items()}
