"""Planning an evaluation: which runs, domains and (run, domain) pairs to score; loads no model.

:func:`plan_evaluation` checks the runs (their ``config.json``, read by
:func:`read_run`), the domain files and whether each run can read each
domain's inputs, so that a command line fails before paying for the Keras
backend. For every transfer run it also plans the measure of forgetting: its
recorded source run (``source_run`` in ``config.json``) is scored on the
source's own domain, and is added to the plan when it was not asked for.
:func:`convlstm_tl.evaluation.crossdomain.evaluate_plan` then predicts.
"""

from dataclasses import dataclass, field
from pathlib import Path

from convlstm_tl.data.format import SPLITS, DomainInfo, find_domain, open_domain
from convlstm_tl.errors import RunError, UserError
from convlstm_tl.evaluation.alignment import check_inputs, frame_shape_problem
from convlstm_tl.runs.resolve import Run, load_run


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


@dataclass
class EvaluationPlan:
    """What :func:`~convlstm_tl.evaluation.crossdomain.evaluate_plan` will compute; built by :func:`plan_evaluation`.

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


def read_run(path, *, label=None, listed=True):
    """Check a run directory and read its record into a :class:`RunEntry` (see :func:`convlstm_tl.runs.resolve.load_run`)."""
    run = load_run(path, with_model=False)
    if not run.class_names:
        raise RunError(f"run {run.path} has no classes (a {run.kind} run predicts none); evaluate classifier runs")
    return RunEntry(path=run.path.resolve(), record=run.record, metrics=run.metrics, label=label or run.name,
                    listed=listed)


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
            check_inputs(run, run.frame_shape, name, info)

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
    domain = _find_column(plan.domains, source.domain_name)
    entry.update(source_run=source.label, source_domain=source.domain_name)
    if domain is None:
        return {**entry, "reason": f"the source domain {source.domain_name} is not among the evaluated domains; add it"
                                   " to measure forgetting"}
    if frame_shape_problem(source.frame_shape, plan.domains[domain].frame_shape):
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
