"""Fitting the baselines on the domain files and writing their run: plan (every check), then run.

The training sets are those of the ConvLSTM runs: the source's train split
(``source``; with ``with_val`` also train + val, ``source+val``), the
target's labelled subset (``target``: the very samples a transfer with the
same ``target_fraction`` / ``target_per_class`` and seed trains on, from
:func:`convlstm_tl.data.subsets.labelled_subset`), and both together
(``pooled``, ``pooled+val``; only when the two domains have the same class
names, labels matched by name). Every fitted model predicts the test split of
the source and of the target; predictions meet a domain's labels by class
name, as :mod:`convlstm_tl.evaluation.alignment` does for ConvLSTM runs.
"""

import logging
import platform
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from convlstm_tl.baselines.config import BaselineConfig
from convlstm_tl.baselines.features import read_arrays, split_fingerprint, to_series, token_documents
from convlstm_tl.baselines.methods import METHOD_NAMES, METHODS, MiniRocket, create_method, layout_of
from convlstm_tl.baselines.record import (
    KIND, PREDICTIONS_DIR, RECORD_VERSION, SCORES_DIR, format_table, prediction_file,
)
from convlstm_tl.data.format import DomainInfo, find_domain, open_domain, resolve_data_dir
from convlstm_tl.data.subsets import labelled_subset
from convlstm_tl.errors import ConfigError
from convlstm_tl.evaluation.alignment import align_predictions, class_alignment
from convlstm_tl.evaluation.metrics import classification_metrics
from convlstm_tl.jsonio import save_json, to_dict
from convlstm_tl.runs.directory import RunDirectory, check_run_target

log = logging.getLogger(__name__)


@dataclass
class Domain:
    """A domain of a baseline run: its file's description and how the methods see it."""

    name: str  # the name it was given (its file is <data_dir>/<name>.h5)
    role: str  # "source" or "target"
    info: DomainInfo
    layout: tuple  # see convlstm_tl.baselines.methods.layout_of
    test: dict  # the test split's fingerprint (convlstm_tl.baselines.features.split_fingerprint)


@dataclass
class BaselinePlan:
    """A baseline run checked in full before anything is fitted (:func:`plan_baselines`).

    Attributes:
        config: the validated config, ``data_dir`` resolved to the folder used
            and ``methods`` to the methods that run.
        methods: the names of the methods that run, in order.
        domains: ``{name: Domain}``, the source first.
        notes: methods left out, and why.
    """

    config: BaselineConfig
    methods: tuple
    domains: dict
    notes: list = field(default_factory=list)

    @property
    def source(self):
        return self.domains[self.config.source]

    @property
    def target(self):
        return self.domains.get(self.config.target) if self.config.target else None


@dataclass
class TrainingSet:
    """Samples a baseline learns from: parts ``(domain, split, indices or None)``, labels as ``class_names``."""

    key: str  # one of convlstm_tl.baselines.record.TRAINED_ON
    label: str  # in words, e.g. "St train + ms 10%"
    parts: list
    class_names: tuple


@dataclass
class BaselineResult:
    """What :func:`run_baselines` returns.

    Attributes:
        run_dir: the published run folder.
        rows: the rows of its ``metrics.json`` (label, method, trained_on,
            n_train, fit_seconds, scores per domain, ...).
        domains: ``{name: n_test}`` of the domains scored, the source first.
        notes: what was skipped, and why.
        warmup_seconds: ``{method: seconds}`` of one-off compilation before
            the first fit (numba, for minirocket), not counted in fit seconds.
    """

    run_dir: object
    rows: list
    domains: dict
    notes: list
    warmup_seconds: dict = field(default_factory=dict)

    def table(self):
        """The results as a text table (:func:`convlstm_tl.baselines.record.format_table`)."""
        return format_table(self.rows, self.domains)


def run_baselines(config):
    """Fit the baselines of ``config`` and write their run.

    Args:
        config: a :class:`~convlstm_tl.baselines.config.BaselineConfig`.

    Returns:
        A :class:`BaselineResult`.

    Raises:
        UserError: see :func:`plan_baselines`.
    """
    return carry_out(plan_baselines(config))


def plan_baselines(config):
    """Validate ``config`` (once), open the domain files, choose the methods and check the run's folder.

    A method named in ``config.methods`` that cannot run (aeon missing,
    token domains, series too short) is refused; one that was only meant
    by default is left out with a note.

    Raises:
        UserError: one line, for bad settings, a missing or invalid domain
            file, a source and target of different kinds, a method that
            cannot run, or a run folder that exists (without ``overwrite``)
            or cannot be written.
    """
    config.validate()
    data_dir = resolve_data_dir(config.data_dir or None)
    domains = {}
    for role, name in (("source", config.source), ("target", config.target)):
        if name:
            info = open_domain(find_domain(name, data_dir))
            domains[name] = Domain(name=name, role=role, info=info, layout=layout_of(info.kind, info.frame_shape),
                                   test=split_fingerprint(info.path, "test"))
    source = domains[config.source]
    if config.target and domains[config.target].info.kind != source.info.kind:
        raise ConfigError(f"{config.source} holds {source.info.kind} and {config.target} holds"
                          f" {domains[config.target].info.kind}; baselines compare domains of one kind",
                          field="target")
    methods, notes = _choose_methods(config, source)
    config = replace(config, data_dir=str(source.info.path.parent), methods=",".join(methods))
    check_run_target(config.runs_dir, config.run_name, overwrite=config.overwrite)
    return BaselinePlan(config=config, methods=tuple(methods), domains=domains, notes=notes)


def _choose_methods(config, source):
    asked = config.method_list()
    chosen, notes = [], []
    for name in asked or METHOD_NAMES:
        method = METHODS[name]
        reason = method.unavailable() or method.problem(source.layout)
        if reason is None:
            chosen.append(name)
        elif asked:
            raise ConfigError(reason if method.unavailable() else f"{reason}; leave {name} out of methods",
                              field="methods")
        else:
            notes.append(f"{name} skipped: {reason}")
    return chosen, notes


def carry_out(plan):
    """Carry out a :class:`BaselinePlan`: fit every method on every training set, score, write the run."""
    config = plan.config
    start = time.perf_counter()
    notes = list(plan.notes)
    target_samples = None
    subset = None
    if plan.target is not None:
        subset, n_total = labelled_subset(plan.target.info.path, fraction=config.target_fraction,
                                          per_class=config.target_per_class, seed=config.seed)
        target_samples = {"n": int(len(subset)), "of": int(n_total), "indices": subset.tolist()}
    training_sets = _training_sets(plan, subset, notes)
    views = _Views(plan.domains)
    record = {
        "kind": KIND, "record_version": RECORD_VERSION, "config": to_dict(config), "methods": list(plan.methods),
        "source": config.source, "target": config.target or None,
        "domains": {name: _domain_record(domain) for name, domain in plan.domains.items()},
        "target_samples": target_samples,
        "training_sets": {ts.key: {"label": ts.label, "class_names": list(ts.class_names),
                                   "n": sum(views.size(part) for part in ts.parts),
                                   "parts": [f"{d} {s}" + (" subset" if i is not None else "")
                                             for d, s, i in ts.parts]}
                          for ts in training_sets},
        "versions": _versions(plan.methods),
    }
    rows, warmup = [], {}
    with RunDirectory(config.runs_dir, config.run_name, overwrite=config.overwrite) as run:
        run.watch(*(domain.info.path for domain in plan.domains.values()))
        run.save_config(record)
        (run.path / PREDICTIONS_DIR).mkdir()
        (run.path / SCORES_DIR).mkdir()
        for name in plan.methods:
            for training_set in training_sets:
                row = _fit_and_score(name, training_set, plan, views, run.path, notes, warmup)
                if row is not None:
                    rows.append(row)
        metrics = {"rows": rows, "notes": notes, "warmup_seconds": warmup,
                   "seconds": round(time.perf_counter() - start, 3)}
        save_json(run.path / "metrics.json", metrics)
        domains = {name: domain.test["n"] for name, domain in plan.domains.items()}
        report = format_table(rows, domains)
        if notes:
            report += "\n\n" + "\n".join(f"note: {note}" for note in notes)
        (run.path / "report.txt").write_text(report + "\n")
    return BaselineResult(run_dir=run.path, rows=rows, domains=domains, notes=notes, warmup_seconds=warmup)


def _training_sets(plan, subset, notes):
    config, source, target = plan.config, plan.source, plan.target
    classes = source.info.class_names
    sets = [TrainingSet("source", f"{config.source} train", [(config.source, "train", None)], classes)]
    if config.with_val:
        sets.append(TrainingSet("source+val", f"{config.source} train+val",
                                [(config.source, "train", None), (config.source, "val", None)], classes))
    if target is None:
        return sets
    target_part = (config.target, "train", subset)
    sets.append(TrainingSet("target", config.target_label, [target_part], target.info.class_names))
    if set(classes) != set(target.info.class_names):
        notes.append(f"pooled training sets skipped: {config.source} and {config.target} have different classes"
                     f" ({', '.join(classes)} vs {', '.join(target.info.class_names)}); pooling needs the same"
                     " class names")
        return sets
    sets.append(TrainingSet("pooled", f"{config.source} train + {config.target_label}",
                            [(config.source, "train", None), target_part], classes))
    if config.with_val:
        sets.append(TrainingSet("pooled+val", f"{config.source} train+val + {config.target_label}",
                                [(config.source, "train", None), (config.source, "val", None), target_part],
                                classes))
    return sets


class _Views:
    """Each split's samples as the methods see them (series or documents) and its labels, read once."""

    def __init__(self, domains):
        self.domains = domains
        self._cache = {}

    def get(self, part):
        """``(view, labels)`` of a part ``(domain, split, indices or None)``."""
        name, split, indices = part
        key = (name, split, indices is not None)
        if key not in self._cache:
            info = self.domains[name].info
            x, y = read_arrays(info.path, split, indices)
            view = token_documents(x, info.vocab) if info.kind == "tokens" else to_series(x)
            self._cache[key] = (view, y)
        return self._cache[key]

    def size(self, part):
        name, split, indices = part
        return len(indices) if indices is not None else self.domains[name].info.split_sizes[split]


def _fit_and_score(name, training_set, plan, views, run_path, notes, warmup):
    """Fit method ``name`` on a training set, score it on every domain; the row of ``metrics.json``, or None."""
    method = METHODS[name]
    layouts = [plan.domains[domain].layout for domain, _, _ in training_set.parts]
    reason = next((problem for problem in (method.problem(layout) for layout in layouts) if problem), None)
    if reason is None and len(set(layouts)) > 1:
        differ = method.mismatch(layouts[0], layouts[1])
        reason = differ and f"the two domains' inputs differ ({differ})"
    if reason is None:
        y = _labels(training_set, views, plan.domains)
        if len(np.unique(y)) < 2:
            reason = "its training set has a single class"
    if reason:
        notes.append(f"{name} on {training_set.label} skipped: {reason}")
        return None
    label = f"{name} ({training_set.label})"
    if method is MiniRocket and name not in warmup:
        warmup[name] = _warm_up(name, _inputs(method, training_set, views), y, plan.config.seed)
    log.info("%s: fitting on %d samples", label, len(y))
    # Fit time counts the method's own features (summary statistics; MiniRocket's transform is inside fit).
    start = time.perf_counter()
    x = _inputs(method, training_set, views)
    model = create_method(name, n_classes=len(training_set.class_names), seed=plan.config.seed).fit(x, y)
    fit_seconds = time.perf_counter() - start
    cells = {}
    for domain in plan.domains.values():
        cells[domain.name] = _score(model, method, training_set, layouts[0], domain, views, run_path)
    return {"label": label, "method": name, "trained_on": training_set.key, "training_set": training_set.label,
            "features": method.features(layouts[0]), "class_names": list(training_set.class_names),
            "n_train": int(len(y)), "fit_seconds": round(fit_seconds, 3), "scores": cells}


def _labels(training_set, views, domains):
    """The labels of a training set's samples (parts joined), as ids into its class names."""
    index = {class_name: i for i, class_name in enumerate(training_set.class_names)}
    ys = []
    for part in training_set.parts:
        _, y = views.get(part)
        # Labels move between domains by class name, never by id.
        to_set = np.array([index[class_name] for class_name in domains[part[0]].info.class_names], dtype=np.int64)
        ys.append(to_set[y])
    return np.concatenate(ys)


def _inputs(method, training_set, views):
    """The method's inputs of a training set's samples, parts joined in the order of :func:`_labels`."""
    xs = [method.inputs(views.get(part)[0]) for part in training_set.parts]
    if isinstance(xs[0], np.ndarray):
        return np.concatenate(xs) if len(xs) > 1 else xs[0]
    return [document for documents in xs for document in documents]


def _warm_up(name, x, y, seed):
    """Fit once on a few samples, so that numba's one-off compilation is not counted as fit time; its seconds."""
    first = [np.flatnonzero(y == label)[:2] for label in np.unique(y)[:2]]
    indices = np.sort(np.concatenate(first))
    log.info("%s: compiling (numba, once per process)", name)
    start = time.perf_counter()
    create_method(name, n_classes=int(y.max()) + 1, seed=seed).fit(x[indices], y[indices])
    return round(time.perf_counter() - start, 3)


def _score(model, method, training_set, trained_layout, domain, views, run_path):
    """The ``scores`` cell of one domain: metrics and files, or why the model cannot score it."""
    differ = method.mismatch(trained_layout, domain.layout)
    problem = differ and f"the model was trained on other inputs ({differ})"
    alignment = class_alignment(training_set.class_names, domain.info.class_names)
    if problem is None and alignment["classes"] == "none":
        problem = alignment["note"]
    if problem:
        return {"accuracy": None, "macro_f1": None, "reason": f"cannot score {domain.name}: {problem}"}
    view, y_true = views.get((domain.name, "test", None))
    start = time.perf_counter()
    scores = model.scores(method.inputs(view))
    seconds = time.perf_counter() - start
    predictions = scores.argmax(axis=1).astype(np.int64)
    files = {"predictions": prediction_file(method.name, training_set.key, domain.name),
             "scores": prediction_file(method.name, training_set.key, domain.name, SCORES_DIR)}
    np.save(run_path / files["predictions"], predictions)
    np.save(run_path / files["scores"], scores.astype(np.float32))
    y_sub, pred_sub, names, aligned = align_predictions(scores, training_set.class_names, domain.info.class_names,
                                                        y_true)
    if len(y_sub) == 0:
        return {"accuracy": None, "macro_f1": None, **files,
                "reason": f"the test split of {domain.name} has no sample of the shared classes"}
    with warnings.catch_warnings():
        # Domains that share a single class are scored on that class alone: sklearn's note that it found
        # one label is expected then.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        metrics = classification_metrics(y_sub, pred_sub, names, domain=domain.name)
    return {**metrics, "n_scored": metrics["n_test"], "n_test": int(len(y_true)), "classes": aligned["classes"],
            "class_note": aligned["note"], "predict_seconds": round(seconds, 3), **files}


def _domain_record(domain):
    info = domain.info
    entry = {"role": domain.role, "name": info.domain, "path": str(info.path), "kind": info.kind,
             "class_names": list(info.class_names), "frame_shape": list(info.frame_shape),
             "split_sizes": info.split_sizes, "test": domain.test}
    if info.kind == "tokens":
        entry["vocab_size"] = len(info.vocab)
    else:
        entry["series"] = list(domain.layout[1:])
    return entry


def _versions(methods):
    """Versions of what shapes the results (no Keras: baselines never import it)."""
    import h5py
    import sklearn

    import convlstm_tl

    found = {"python": platform.python_version(), "convlstm_tl": convlstm_tl.__version__, "numpy": np.__version__,
             "h5py": h5py.__version__, "scikit-learn": sklearn.__version__}
    if "minirocket" in methods:
        import aeon

        found["aeon"] = aeon.__version__
    return found
