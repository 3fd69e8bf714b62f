"""Cross-domain evaluation: score every run's model on every domain's split, and measure forgetting.

Predictions are aligned with each domain's classes by name
(:mod:`convlstm_tl.evaluation.alignment`) and scored into cells with the
keys of ``metrics.json``. A run that cannot be scored on a domain (another
input kind or vocabulary, frames that do not fit, no shared class) gets an
n/a cell with the reason, and every other cell is still scored. For every
transfer run that restored a source body the evaluation also measures
forgetting: the accuracy its recorded source run (``source_run`` in
``config.json``) has on the source's own domain, minus the accuracy the
transferred model keeps there. The source run is evaluated for this even
when it was not asked for. A ``scratch`` run restored nothing, so it has no
forgetting figure.

Baseline runs (``python -m convlstm_tl.baseline``) among the runs add one
row per classical model, after the model runs' rows; their cells are scored
from the predictions the baseline run recorded on the test split
(:mod:`convlstm_tl.evaluation.baselines`), aligned by class name in the same
way, and they have no forgetting figure.

The work is split so that a command line can fail fast:
:func:`convlstm_tl.evaluation.plan.plan_evaluation` checks runs and domains
and finds the n/a cells without loading the Keras backend;
:func:`evaluate_plan` predicts; :func:`evaluate_runs` does both. The
returned :class:`Evaluation` is turned into a table and files by
:mod:`convlstm_tl.evaluation.report`; its notes come from
:mod:`convlstm_tl.evaluation.notes`.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from convlstm_tl.errors import RunError
from convlstm_tl.evaluation.alignment import align_predictions, cell_problem, class_alignment, name_list
from convlstm_tl.evaluation.baselines import baseline_notes, baseline_outputs
from convlstm_tl.evaluation.metrics import classification_metrics, classification_report_text
from convlstm_tl.evaluation.notes import cell_notes, forgetting_notes
from convlstm_tl.evaluation.plan import nothing_to_score, plan_evaluation
from convlstm_tl.evaluation.report import report_header

# Keys of a cell: those of metrics.json; an n/a cell holds None in each.
METRIC_KEYS = ("domain", "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "per_class",
               "confusion_matrix", "n_test", "train_seconds", "eval_seconds")


@dataclass
class Evaluation:
    """Every run's scores on every domain, and the forgetting of transfer runs.

    Attributes:
        split: the split scored.
        runs: row labels, the model runs asked for, in order.
        domains: column names, in order.
        results: ``{row: {domain: cell}}``; a cell has the ``metrics.json``
            keys (``None`` in each for an n/a cell, with a ``reason``) plus
            ``run`` (its row), ``kind`` (the run's kind, ``"baseline"`` for a
            baseline's), ``split`` and ``class_alignment``. Source runs added
            for forgetting have their one cell here too.
        forgetting: one dict per transfer run: ``run``, ``strategy`` (its
            spec), ``restores_body``, ``source_run``, ``source_run_path``,
            ``source_domain``, ``before`` (the source run's accuracy there),
            ``after`` (the transfer run's), ``lost`` (``before - after``),
            ``lost_points`` (in percentage points), ``classes`` and a
            ``note``; or, where forgetting is not measured (a run that
            restored no source body, such as ``scratch``; a source domain
            not evaluated), ``None`` in each figure and a ``reason``.
        extra_runs: labels of the source runs evaluated only for forgetting.
        baselines: row labels of the baselines (the models of the baseline
            runs asked for), in order, shown after the runs.
        runs_info: ``{run: {path, kind, domain, class_names, source_run, strategy}}``;
            for a baseline ``{path, kind: "baseline", baseline_run, method,
            trained_on, training_set, class_names, n_train, fit_seconds,
            source, target}``.
        domains_info: ``{domain: {path, domain, class_names, frame_shape, n}}``.
        notes: one-line sentences for the report (see
            :mod:`convlstm_tl.evaluation.notes`): each n/a reason once.
        reports: ``{(run, domain): text}``, the per-class reports (not in JSON).
    """

    split: str
    runs: list
    domains: list
    results: dict
    forgetting: list
    extra_runs: list = field(default_factory=list)
    baselines: list = field(default_factory=list)
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
                "baselines": self.baselines, "forgetting": self.forgetting, "extra_runs": self.extra_runs,
                "runs_info": self.runs_info,
                "domains_info": self.domains_info, "notes": self.notes}


def evaluate_runs(run_dirs, domains, *, data_dir=None, split="test", batch_size=128, progress=True):
    """Score every run's model on every domain's split, and measure forgetting.

    Args:
        run_dirs: run directories to evaluate (the rows): model runs, and
            baseline runs, whose models become rows after the runs'.
        domains: domain names or :class:`~convlstm_tl.data.format.DomainInfo` objects (the columns).
        data_dir: folder of the domain files.
        split: the split to score.
        batch_size: samples per prediction batch (read from the file batch by batch).
        progress: show a tqdm bar over the (run, domain) pairs.

    Returns:
        An :class:`Evaluation`; nothing is printed or written.

    Raises:
        UserError: see :func:`plan_evaluation`; also a model that cannot be
            loaded or does not output one probability per recorded class,
            a domain file that cannot be read, and an evaluation in which
            every cell of the listed runs turned out n/a.
    """
    plan = plan_evaluation(run_dirs, domains, data_dir=data_dir, split=split)
    return evaluate_plan(plan, batch_size=batch_size, progress=progress)


def evaluate_plan(plan, *, batch_size=128, progress=True):
    """Predict the pairs of an :class:`~convlstm_tl.evaluation.plan.EvaluationPlan`, one model load per run.

    Returns:
        An :class:`Evaluation` (see :func:`evaluate_runs`).
    """
    # Imported here so that planning, and a CLI's checks, need no backend.
    from tqdm.auto import tqdm

    by_run = {}
    for label, name in plan.pairs:
        by_run.setdefault(label, []).append(name)
    results = {label: {} for label in by_run}
    reports, outputs = {}, {}
    baselines = {entry.label for entry in plan.baselines}
    # Baselines first: reading their recorded predictions is quick, and a broken record fails before any model runs.
    order = sorted(by_run, key=lambda label: label not in baselines)
    with tqdm(total=len(plan.pairs), desc="evaluating", unit="pair", disable=not progress) as bar:
        for label in order:
            names, run = by_run[label], plan.entry(label)
            model = None
            for name in names:
                bar.set_postfix_str(f"{label} on {name}", refresh=False)
                problem = plan.unavailable.get((label, name))
                if problem is None and label not in baselines:
                    if model is None:
                        model = _load_model(run)
                    problem = cell_problem(run.domain, plan.domains[name], model_shape=model.input_shape[1:])
                if problem is not None:
                    results[label][name] = _na_cell(run, name, plan.split, plan.domains[name], problem)
                    reports[label, name] = report_header(label, name, plan.split, results[label][name],
                                                         noun="baseline" if label in baselines else "run")
                elif label in baselines:
                    results[label][name], reports[label, name] = _score_baseline(run, name, plan)
                else:
                    results[label][name], reports[label, name], outputs[label, name] = _predict_and_score(
                        model, run, name, plan, batch_size)
                bar.update()
            del model
    listed = [run.label for run in plan.runs]
    rows = [*listed, *(entry.label for entry in plan.baselines)]
    na = [(label, name, cell["reason"]) for label in rows for name, cell in results[label].items()
          if cell["accuracy"] is None]
    if len(na) == len(rows) * len(plan.domains):
        raise nothing_to_score(na, baselines=baselines)
    forgetting = [_forgetting(plan, entry, results, outputs) for entry in plan.forgetting]
    runs_info = {run.label: {"path": str(run.path), "kind": run.kind, "domain": run.domain_name,
                             "class_names": run.class_names, "source_run": run.source_run, "strategy": run.strategy}
                 for run in (*plan.runs, *plan.extra_runs)}
    runs_info.update((entry.label, entry.info()) for entry in plan.baselines)
    return Evaluation(
        split=plan.split,
        runs=listed,
        domains=list(plan.domains),
        results=results,
        forgetting=forgetting,
        extra_runs=[run.label for run in plan.extra_runs],
        baselines=[entry.label for entry in plan.baselines],
        runs_info=runs_info,
        domains_info={name: {"path": str(info.path), "domain": info.domain, "class_names": list(info.class_names),
                             "frame_shape": list(info.frame_shape), "n": info.split_sizes[plan.split]}
                      for name, info in plan.domains.items()},
        notes=[*plan.notes, *cell_notes(listed, results), *baseline_notes(plan.baselines, results),
               *forgetting_notes(forgetting)],
        reports=reports,
    )


def _predict_and_score(model, run, name, plan, batch_size):
    """Predict domain ``name``'s split with ``model``; return the cell, its report and ``(y_true, probabilities)``."""
    from convlstm_tl.evaluation.predict import predict_split

    info = plan.domains[name]
    start = time.perf_counter()
    y_true, _, probabilities = predict_split(model, info.path, plan.split, batch_size=batch_size)
    seconds = time.perf_counter() - start
    if probabilities.shape[-1] != len(run.class_names):
        raise RunError(f"run {run.label}: the model outputs {probabilities.shape[-1]} classes but its"
                       f" config.json names {len(run.class_names)}; train the run again")
    cell, report = _score(run, name, info, plan.split, y_true, probabilities, seconds)
    return cell, report, (y_true, probabilities)


def _score_baseline(entry, name, plan):
    """The cell and the report text of a baseline on a domain, from the predictions its run recorded."""
    info = plan.domains[name]
    y_true, scores = baseline_outputs(entry, name, info, plan.split, plan.fingerprints.get(name))
    recorded = entry.row.metrics[entry.recorded_domain(name, info)]
    cell, report = _score(entry, name, info, plan.split, y_true, scores, recorded.get("predict_seconds"),
                          train_seconds=entry.row.fit_seconds)
    header = (f"{entry.row.method} trained on {entry.row.training_set} ({entry.row.n_train} samples), a classical"
              f" baseline of run {entry.run.name} ({entry.run.path}), scored from its recorded predictions\n")
    return cell, header + report


def _load_model(run):
    from convlstm_tl.models.classifier import load_model

    return load_model(run.path / "model.keras")


def _score(run, name, info, split, y_true, probabilities, seconds, *, train_seconds=None):
    """The cell and the report text of one run (or baseline) on one domain."""
    noun = "baseline" if run.kind == "baseline" else "run"
    y_true_sub, y_pred_sub, names, alignment = align_predictions(probabilities, run.class_names,
                                                                 info.class_names, y_true)
    if len(y_true_sub) == 0:
        cell = _na_cell(run, name, split, info, f"the {split} split has no sample of the shared classes"
                                                f" {name_list(names)}", alignment=alignment)
        return cell, report_header(run.label, name, split, cell, noun=noun)
    metrics = classification_metrics(y_true_sub, y_pred_sub, names, domain=name)
    if train_seconds is None:
        train_seconds = run.metrics.get("train_seconds")
    cell = {"run": run.label, "kind": run.kind, "split": split, **metrics, "train_seconds": train_seconds,
            "eval_seconds": None if seconds is None else round(seconds, 3), "class_alignment": alignment}
    report = (report_header(run.label, name, split, cell, noun=noun)
              + classification_report_text(y_true_sub, y_pred_sub, names))
    return cell, report


def _na_cell(run, name, split, info, reason, *, alignment=None):
    """The cell of a run not scored on domain ``name``: ``None`` in each metric, and the ``reason``."""
    if alignment is None:
        alignment = {**class_alignment(run.class_names, info.class_names), "n_left_out": None}
    cell = {"run": run.label, "kind": run.kind, "split": split, **{key: None for key in METRIC_KEYS}}
    cell.update(domain=name, reason=reason, class_alignment=alignment)
    return cell


def _forgetting(plan, entry, results, outputs):
    """Accuracy lost on the source domain: the recorded source run's, minus the transfer run's."""
    row = {"run": entry["run"], "strategy": entry["strategy"], "adaptation": entry.get("adaptation"),
           "restores_body": entry["restores_body"],
           "source_run": entry["source_run"], "source_run_path": entry["source_run_path"],
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
                   note=f"measured on the samples of the classes of {domain} that the run and its source run both"
                        f" predict ({name_list(common)}), each choosing among those")
        if row["before"] is None or row["after"] is None:
            return {**row, "before": None, "after": None, "reason": f"no {plan.split} sample of {name_list(common)}"}
    row["lost"] = row["before"] - row["after"]
    row["lost_points"] = round(100.0 * row["lost"], 2)
    return row


def _accuracy_on(output, model_classes, names, domain_classes):
    """Accuracy of a model on the samples of ``names``, choosing among ``names`` only."""
    y_true, probabilities = output
    columns = [model_classes.index(name) for name in names]
    y_true_sub, y_pred_sub, _, _ = align_predictions(probabilities[:, columns], names, domain_classes, y_true)
    return float(np.mean(y_true_sub == y_pred_sub)) if len(y_true_sub) else None
