"""Planning an evaluation: which runs, domains and (run, domain) pairs to score; loads no model.

:func:`plan_evaluation` checks the runs (their ``config.json``, read by
:func:`read_run`) and the domain files, so that a command line fails before
paying for the Keras backend. A run that cannot be scored on one domain
(another kind of input or vocabulary, frames that do not fit, no shared
class) is not a mistake of the command: that cell is planned as n/a with its
reason (:func:`~convlstm_tl.evaluation.alignment.cell_problem`) and the
other cells are scored. Only when every cell would be n/a is there nothing
to report, and that is an error.

For every transfer run that restored a source body (its recorded strategy
says so; ``scratch`` does not) the plan also measures forgetting: its
recorded source run (``source_run`` in ``config.json``) is scored on the
source's own domain, and is added to the plan when it was not asked for.
A baseline run (``python -m convlstm_tl.baseline``) among the runs becomes
one row per classical model it fitted, after the model runs' rows
(:mod:`convlstm_tl.evaluation.baselines`); its cells come from the
predictions it recorded, so the plan finds which of them apply (the test
split, the same test-split fingerprint). :func:`resolve_evaluated_run`
finds either kind of run by name or path.
:func:`convlstm_tl.evaluation.crossdomain.evaluate_plan` then predicts.
"""

from dataclasses import dataclass, field
from pathlib import Path

from convlstm_tl.baselines.features import split_fingerprint
from convlstm_tl.baselines.record import is_baseline_run, load_baseline_run, resolve_baseline_run
from convlstm_tl.data.format import SPLITS, DomainInfo, find_domain, open_domain
from convlstm_tl.errors import ConfigError, RunError, UserError
from convlstm_tl.evaluation.alignment import cell_problem
from convlstm_tl.evaluation.baselines import baseline_entries, baseline_problem
from convlstm_tl.runs.resolve import Run, load_run, resolve_run
from convlstm_tl.strategies.registry import check_spec, parse_strategy


@dataclass
class RunEntry(Run):
    """A run to evaluate: its record (no model loaded), its row name, and whether it was asked for.

    Attributes:
        label: the run's row name (its folder name, made unique).
        listed: whether the caller asked for it; source runs added for
            forgetting are not listed.
    """

    label: str = ""
    listed: bool = True

    @property
    def strategy(self):
        """A transfer's strategy spec as recorded (e.g. ``"freeze"``), or None when its record names none."""
        recorded = self.record.get("strategy")
        if isinstance(recorded, dict):
            recorded = recorded.get("spec")
        if not isinstance(recorded, str):
            config = self.record.get("config")
            recorded = config.get("strategy") if isinstance(config, dict) else None
        return recorded if isinstance(recorded, str) else None

    @property
    def adaptation(self):
        """What a transfer added to its strategy, e.g. ``"adapter (signs) + adabn, no target label"``; None if nothing.

        Read from the recorded config's ``adapter``, ``adapter_init``, ``adapt`` and ``target_fraction``.
        """
        config = self.record.get("config")
        if self.kind != "transfer" or not isinstance(config, dict):
            return None
        parts = []
        if config.get("adapter", "none") != "none":
            init = config.get("adapter_init", "identity")
            parts.append("adapter" + ("" if init == "identity" else f" ({init})"))
        if config.get("adapt", "none") != "none":
            parts.append(str(config["adapt"]))
        text = " + ".join(parts)
        if config.get("target_fraction") == 0:
            text = f"{text}, no target label" if text else "no target label"
        return text or None

    @property
    def restores_body(self):
        """Whether the run started from a restored source body; None when its record does not say.

        Only such a run can forget its source: ``scratch`` trains the same
        architecture from random weights. The record's ``strategy.restore``
        says it; older records name only the spec, which the strategy
        registry reads.
        """
        if self.kind != "transfer":
            return False
        recorded = self.record.get("strategy")
        if isinstance(recorded, dict) and isinstance(recorded.get("restore"), bool):
            return recorded["restore"]
        if self.strategy is None:
            return None
        try:
            _, number = check_spec(self.strategy)
            return parse_strategy(self.strategy, number or 1).restore
        except ConfigError:
            return None


@dataclass
class EvaluationPlan:
    """What :func:`~convlstm_tl.evaluation.crossdomain.evaluate_plan` will compute; built by :func:`plan_evaluation`.

    Attributes:
        runs: the model runs asked for, in order.
        domains: ``{column name: DomainInfo}``, in order.
        split: the split scored.
        pairs: ``(run label, domain name)`` of every cell, in order.
        unavailable: ``{(run label, domain name): reason}``, the cells
            known to be n/a before any model is loaded (see
            :func:`~convlstm_tl.evaluation.alignment.cell_problem`).
        extra_runs: source runs added to measure forgetting.
        baselines: one :class:`~convlstm_tl.evaluation.baselines.BaselineEntry`
            per model of the baseline runs asked for, in order (rows after
            the model runs').
        fingerprints: ``{column name: sha256}`` of each domain's test split,
            when there are baselines and the split is ``test``.
        forgetting: one entry per transfer run: its source run's label (or
            None), source domain and strategy, or the reason forgetting is
            not measured.
        notes: sentences for the report.
    """

    runs: list
    domains: dict
    split: str
    pairs: list = field(default_factory=list)
    unavailable: dict = field(default_factory=dict)
    extra_runs: list = field(default_factory=list)
    baselines: list = field(default_factory=list)
    fingerprints: dict = field(default_factory=dict)
    forgetting: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def entry(self, label):
        """The :class:`RunEntry`, or :class:`~convlstm_tl.evaluation.baselines.BaselineEntry`, of a row."""
        return next(run for run in (*self.runs, *self.extra_runs, *self.baselines) if run.label == label)


def resolve_evaluated_run(name, runs_dir="runs"):
    """The folder of a finished model run or baseline run: a name in ``runs_dir``, else a path.

    The model runs' rule (:func:`convlstm_tl.runs.resolve.resolve_run`),
    which refuses a baseline run, and the baseline runs' own
    (:func:`convlstm_tl.baselines.record.resolve_baseline_run`) for those.

    Raises:
        RunError: when no finished run of either kind is found.
    """
    try:
        return resolve_run(name, runs_dir)
    except RunError:
        if is_baseline_run(name, runs_dir):
            return resolve_baseline_run(name, runs_dir)
        raise


def read_run(path, *, label=None, listed=True):
    """Check a run directory and read its record into a :class:`RunEntry`.

    See :func:`convlstm_tl.runs.resolve.load_run`.
    """
    run = load_run(path, with_model=False)
    if not run.class_names:
        raise RunError(f"run {run.path} has no classes (a {run.kind} run predicts none); evaluate classifier runs")
    return RunEntry(path=run.path.resolve(), record=run.record, metrics=run.metrics, label=label or run.name,
                    listed=listed)


def plan_evaluation(run_dirs, domains, *, data_dir=None, split="test"):
    """Check runs and domains, find the cells that cannot be scored, and decide what to score; loads no model.

    Args:
        run_dirs: run directories (paths) to evaluate, the rows: model runs,
            and baseline runs (a row per model they fitted, after the model
            runs' rows).
        domains: domain names (files ``<data_dir>/<name>.h5``) or
            :class:`DomainInfo` objects, the columns.
        data_dir: folder of the domain files (default ``$CONVLSTM_TL_DATA``
            or ``./data``).
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        An :class:`EvaluationPlan`.

    Raises:
        UserError: for an unknown split, a missing or incomplete run, a
            missing or invalid domain file, or when no listed run can be
            scored on any domain (every cell would be n/a).
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

    runs, baseline_runs, labels = [], [], set()
    for path in run_dirs:
        if is_baseline_run(path):
            baseline_run = load_baseline_run(Path(path).resolve())
            if not any(baseline_run.path == other.path for other in baseline_runs):
                baseline_runs.append(baseline_run)
            continue
        run = read_run(path)
        if any(run.path == other.path for other in runs):
            continue
        run.label = _unique_label(run.path, labels)
        labels.add(run.label)
        runs.append(run)
    baselines = baseline_entries(baseline_runs, labels)

    plan = EvaluationPlan(runs=runs, domains=infos, split=split, baselines=baselines)
    plan.pairs = [(run.label, name) for run in (*runs, *baselines) for name in infos]
    for run in runs:
        for name, info in infos.items():
            # config.json records the frames the model was built for; the
            # loaded model is checked again before predicting.
            problem = cell_problem(run.domain, info)
            if problem is not None:
                plan.unavailable[run.label, name] = problem
    if baselines and split == "test":
        plan.fingerprints = {name: split_fingerprint(info.path, "test")["sha256"] for name, info in infos.items()}
    for entry in baselines:
        for name, info in infos.items():
            problem = baseline_problem(entry, name, info, split, plan.fingerprints.get(name))
            if problem is not None:
                plan.unavailable[entry.label, name] = problem
    for baseline_run in baseline_runs:
        plan.notes += [f"baseline run {baseline_run.name}: {note}" for note in baseline_run.notes]
    if len(plan.unavailable) == len(plan.pairs):
        raise nothing_to_score([(*pair, plan.unavailable[pair]) for pair in plan.pairs],
                               baselines={entry.label for entry in baselines})
    for run in runs:
        if run.kind == "transfer":
            plan.forgetting.append(_plan_forgetting(plan, run, labels))
    return plan


def nothing_to_score(problems, *, baselines=()):
    """The error of an evaluation whose every cell is n/a: its output would be empty.

    Args:
        problems: ``(row label, domain name, reason)`` of every cell.
        baselines: the labels of the rows that are baselines, not runs.

    Returns:
        A :class:`UserError` (one line) naming the first cell's reason.
    """
    label, name, reason = problems[0]
    noun = "baseline" if label in baselines else "run"
    message = f"{noun} {label} cannot be scored on domain {name}: {reason}"
    if len(problems) > 1:
        rows = "run or baseline" if baselines else "run"
        message = (f"no {rows} can be scored on any of the domains given (all {len(problems)} cells would be n/a),"
                   f" e.g. {message}")
    return UserError(message)


def _plan_forgetting(plan, run, labels):
    """Find the recorded source run of ``run`` and what to score to measure its forgetting."""
    entry = {"run": run.label, "strategy": run.strategy, "adaptation": run.adaptation,
             "restores_body": run.restores_body, "source_run": None, "source_run_path": run.source_run,
             "source_domain": None}
    if run.restores_body is None:
        return {**entry, "reason": "config.json records no strategy, so whether the run restored a source body"
                                   " is unknown"}
    if not run.restores_body:
        return {**entry, "reason": f"the strategy {run.strategy or '(unnamed)'} restores no source body, so there"
                                   " is nothing to forget"}
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
    domain = _find_column(plan.domains, source.domain_name)
    entry.update(source_run=source.label, source_domain=source.domain_name)
    if domain is None:
        return {**entry, "reason": f"the source domain {source.domain_name} is not among the evaluated domains; add it"
                                   " to measure forgetting"}
    problem = cell_problem(source.domain, plan.domains[domain])
    if problem is not None:
        return {**entry, "reason": f"source run {source.label} cannot be scored on {domain}: {problem}"}
    if not source.listed and source not in plan.extra_runs:
        labels.add(source.label)
        plan.extra_runs.append(source)
        plan.notes.append(f"source run {source.label} ({source.path}) was not among the runs asked for; it was"
                          f" evaluated on {domain} only, to measure the forgetting of the runs transferred from it")
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
