"""Placing a suite's pairs on disk and checking them: folders, runs finished or not, steps still to prepare.

:func:`plan_suite` turns the pairs of a :class:`~experiments.suite.Suite` into
:class:`PairPlan` s, :func:`check_pair` checks a prepared pair before anything
of it trains, and :func:`format_plan` lists the plans for a dry run.
"""

from dataclasses import dataclass
from pathlib import Path

from convlstm_tl.baselines.config import BaselineConfig
from convlstm_tl.data.format import domain_path, resolve_data_dir
from convlstm_tl.errors import ConfigError, UserError
from experiments.runner import _finished, plan_grid
from experiments.suite import Pair, _baseline_config


@dataclass
class BaselineJob:
    """A pair's baseline run for one target fraction and seed."""

    label: str  # the fraction's label
    seed: int
    config: BaselineConfig
    run_dir: Path
    done: bool
    plan: object = None  # its checked plan (plan_baselines), once checked


@dataclass
class PairPlan:
    """A pair of a suite placed on disk: its folders, its runs and whether each is finished.

    Attributes:
        pair: the :class:`Pair`.
        data_dir: its data folder, ``<data-dir>/<pair>``.
        out: its runs folder, ``<runs-dir>/<suite>/<pair>``.
        cells: the grid's :class:`~experiments.runner.PlannedCell` s.
        source_runs: ``{seed: run directory}`` of the source runs.
        baselines: :class:`BaselineJob` s, by fraction then seed.
        steps: the prepare steps still to run: ``(argv, files they make)``.
    """

    pair: Pair
    data_dir: Path
    out: Path
    cells: list
    source_runs: dict
    baselines: list
    steps: list

    @property
    def transfer_runs(self):
        """``{run directory: finished}`` of the distinct transfer runs (cells with one config share one)."""
        return {planned.run_dir: planned.done for planned in self.cells}

    @property
    def zero_shot_dir(self):
        return self.out / "zero-shot"

    def counts(self):
        """``{what: (finished, total)}`` of the source, transfer and baseline runs."""
        transfers = self.transfer_runs
        return {"source runs": (sum(map(_finished, self.source_runs.values())), len(self.source_runs)),
                "transfer runs": (sum(transfers.values()), len(transfers)),
                "baseline runs": (sum(job.done for job in self.baselines), len(self.baselines))}


# ------------------------------------------------------------------ placing and checking


def plan_suite(suite, *, runs_dir="runs", data_dir=None, pairs=None):
    """Place the selected pairs on disk: their folders, runs, and what is finished or still to prepare.

    Args:
        suite: a :class:`Suite`.
        runs_dir: the runs folder; the suite's runs go in ``<runs_dir>/<suite>/<pair>``.
        data_dir: folder of the pairs' data folders (None: ``$CONVLSTM_TL_DATA`` or ``./data``).
        pairs: names of the pairs (default all), in suite order.

    Returns:
        A list of :class:`PairPlan`.

    Raises:
        ConfigError: for an unknown pair name.
    """
    names = list(suite.pairs) if not pairs else list(dict.fromkeys(pairs))
    unknown = [name for name in names if name not in suite.pairs]
    if unknown:
        raise ConfigError(f"suite {suite.name} has no pair {unknown[0]!r}; its pairs are {', '.join(suite.pairs)}")
    root = suite_root(suite, runs_dir)
    data_root = resolve_data_dir(data_dir)
    plans = []
    for name in (n for n in suite.pairs if n in names):
        pair = suite.pairs[name]
        out = root / name
        cells = plan_grid(pair.grid, runs_dir=root)
        source_runs = {}
        for planned in cells:
            source_runs.setdefault(planned.cell.seed, out / "runs" / planned.cell.source_config.name)
        jobs = []
        for label in pair.fractions if pair.baselines else ():
            for seed in pair.seeds:
                config = _baseline_config(pair, label, seed, runs_dir=out / "baselines", data_dir=data_root / name)
                run_dir = out / "baselines" / config.name
                jobs.append(BaselineJob(label=label, seed=seed, config=config, run_dir=run_dir,
                                        done=_finished(run_dir)))
        plan = PairPlan(pair=pair, data_dir=data_root / name, out=out, cells=cells, source_runs=source_runs,
                        baselines=jobs, steps=[])
        plan.steps = _steps_to_run(plan)
        plans.append(plan)
    return plans


def suite_root(suite, runs_dir="runs"):
    """``<runs_dir>/<suite name>``: the suite's output folder, with one folder of runs per pair."""
    return Path(runs_dir) / suite.name


def check_pair(plan):
    """Check a prepared pair fully before anything of it trains.

    Its domain files exist and are valid, every unfinished transfer cell
    passes :func:`experiments.runner.check_grid`, and every unfinished
    baseline run is planned (:func:`convlstm_tl.baselines.plan_baselines`:
    methods available, the domains suit them).

    Raises:
        UserError: one line naming the pair and what is wrong.
    """
    from convlstm_tl.baselines.runner import plan_baselines
    from convlstm_tl.data.format import find_domain, open_domain
    from experiments.runner import check_grid

    pair = plan.pair
    for domain in (pair.source, pair.target):
        if not domain_path(domain, plan.data_dir).is_file():
            raise UserError(f"pair {pair.name}: domain file {domain_path(domain, plan.data_dir)} not found, and no"
                            " prepare step of the pair makes it; add one to its \"prepare\" (a step with --domain"
                            f" {domain}, or one that writes {pair.source}.h5 and {pair.target}.h5) or put the file"
                            " there; nothing was trained")
    try:
        for domain in (pair.source, pair.target):
            open_domain(find_domain(domain, plan.data_dir))
    except UserError as error:
        raise UserError(f"pair {pair.name}: {error}; nothing was trained") from None
    check_grid(pair.grid, plan.cells, runs_dir=plan.out.parent, data_dir=str(plan.data_dir))
    for job in plan.baselines:
        if job.done:
            continue
        try:
            job.plan = plan_baselines(job.config)
        except UserError as error:
            raise UserError(f"pair {pair.name}, baselines at target fraction {job.label}, seed {job.seed}: {error};"
                            " nothing was trained") from None


def classes_match(plan):
    """Whether the pair's source and target domain files hold the same class names (zero-shot is then scored)."""
    from convlstm_tl.data.format import open_domain

    pair = plan.pair
    source = open_domain(domain_path(pair.source, plan.data_dir), check_values=False)
    target = open_domain(domain_path(pair.target, plan.data_dir), check_values=False)
    return set(source.class_names) == set(target.class_names)


def _steps_to_run(plan):
    """``[(step, files it makes)]`` of the steps whose files are not all in the pair's data folder."""
    pair = plan.pair
    todo = []
    for step in pair.prepare:
        makes = _step_makes(step, pair)
        if not all(domain_path(name, plan.data_dir).is_file() for name in makes):
            todo.append((step, makes))
    return todo


def _step_makes(step, pair):
    for i, arg in enumerate(step):
        if arg == "--domain" and i + 1 < len(step):
            return (step[i + 1],)
        if arg.startswith("--domain="):
            return (arg.split("=", 1)[1],)
    return (pair.source, pair.target)


# ------------------------------------------------------------------ dry run


def format_plan(suite, plans, *, checked=()):
    """What a dry run prints: per pair, its data folder, the steps to prepare, runs done / total; then totals.

    Args:
        suite: the :class:`Suite`.
        plans: its :class:`PairPlan` s.
        checked: names of the pairs fully checked (their data was there).
    """
    lines = [f"suite {suite.name}" + (f" ({suite.path})" if suite.path else "") + f": {len(plans)} pair(s)"]
    done_total, runs_total = 0, 0
    for plan in plans:
        pair = plan.pair
        lines.append(f"{pair.name}: {pair.source} -> {pair.target}, data {plan.data_dir}, runs {plan.out}")
        if plan.steps:
            for step, makes in plan.steps:
                lines.append(f"  prepare: python -m data_prep {' '.join(step)} --out {plan.data_dir}"
                             f" (makes {', '.join(name + '.h5' for name in makes)})")
        elif all(domain_path(name, plan.data_dir).is_file() for name in (pair.source, pair.target)):
            lines.append("  data: ready" + (", checked" if pair.name in checked else ""))
        else:
            lines.append(f"  data: {pair.source}.h5 or {pair.target}.h5 missing and no prepare step makes it")
        counts = plan.counts()
        lines.append("  " + "; ".join(f"{what}: {done} of {total} done" for what, (done, total) in counts.items())
                     + f" (seeds {', '.join(map(str, pair.seeds))}; {', '.join(pair.strategies)};"
                     f" target fractions {', '.join(pair.fractions)};"
                     f" baselines {', '.join(pair.baselines) or 'none'})")
        done_total += sum(done for done, _ in counts.values())
        runs_total += sum(total for _, total in counts.values())
    lines.append(f"{runs_total} runs, {done_total} finished, {runs_total - done_total} to run")
    return "\n".join(lines)
