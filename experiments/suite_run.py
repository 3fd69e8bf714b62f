"""Running a suite: preparing each pair's data, then its grid, baselines and zero-shot scores, resumably.

:func:`run_suite` prepares, checks and runs the selected pairs (planned by
:mod:`experiments.suite_plan`), skipping everything finished, and rewrites the
suite's results (:mod:`experiments.suite_report`) after each pair.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from convlstm_tl.data.format import domain_path
from convlstm_tl.errors import Interrupted, UserError
from convlstm_tl.files import write_atomically
from experiments.runner import _attempt, _finished, run_grid
from experiments.suite import _parse_step
from experiments.suite_plan import _steps_to_run, check_pair, classes_match, plan_suite, suite_root
from experiments.suite_report import _suite_rows, write_suite_outputs

log = logging.getLogger(__name__)


@dataclass
class SuiteResult:
    """What running (or re-reading) a suite gave.

    Attributes:
        out: the suite's output folder.
        rows: the rows of ``results.csv``.
        files: ``{"results": path, "summary": path}``.
        trained: runs (source, transfer, baseline) finished by this call.
        skipped: runs found finished and not run again.
        failed: ``{run name: (kind, reason)}`` of the runs that failed in this
            call; kind is ``"user"`` or ``"bug"`` (see :class:`experiments.runner.GridResult`).
        not_run: transfer runs not tried because their source run failed.
    """

    out: Path
    rows: list
    files: dict
    trained: int = 0
    skipped: int = 0
    failed: dict = field(default_factory=dict)
    not_run: int = 0

    @property
    def user_errors_only(self):
        """Whether every failure was a user error (fixable input), not a fault of the toolkit."""
        return all(kind == "user" for kind, _ in self.failed.values())


# ------------------------------------------------------------------ preparing


def prepare_pair(plan, *, quiet=False):
    """Run the pair's prepare steps whose files are missing, in order; return the steps run.

    Raises:
        UserError: one line naming the pair and step, for a converter that
            fails or that did not write the files it was expected to.
    """
    pair = plan.pair
    done = []
    for step, makes in _steps_to_run(plan):
        extra = ["--quiet"] if quiet and "--quiet" not in step else []
        command = f"python -m data_prep {' '.join(step)} --out {plan.data_dir}"
        log.info("pair %s: %s", pair.name, command)
        args = _parse_step(step, plan.data_dir, f"pair {pair.name}, prepare", extra)
        try:
            code = args._run(args)
        except UserError as error:
            raise UserError(f"pair {pair.name}: `{command}` failed: {error}") from None
        if code:
            raise UserError(f"pair {pair.name}: `{command}` ended with exit code {code}")
        missing = [name for name in makes if not domain_path(name, plan.data_dir).is_file()]
        if missing:
            raise UserError(f"pair {pair.name}: `{command}` did not write {missing[0]}.h5; make the pair's"
                            f" prepare steps write {pair.source}.h5 and {pair.target}.h5 (a step naming --domain D"
                            " writes D.h5)")
        done.append(command)
    plan.steps = []
    return done


# ------------------------------------------------------------------ running


def run_suite(suite, *, runs_dir="runs", data_dir=None, out=None, pairs=None, progress=True, quiet=False):
    """Prepare, check and run the selected pairs of ``suite``, then write its results.

    Everything finished is skipped. The order: every selected pair's missing
    domain files are prepared; every pair is checked (:func:`check_pair`);
    then per pair its grid (source runs, transfer runs), its baseline runs
    and its zero-shot scores run, and ``results.csv`` and ``summary.md`` are
    rewritten (atomically) after each pair. A run that fails is recorded and
    the others go on, as in a grid.

    Args:
        suite: a :class:`Suite`.
        runs_dir: the runs folder (see :func:`plan_suite`).
        data_dir: folder of the pairs' data folders.
        out: folder of ``results.csv`` and ``summary.md`` (default ``<runs_dir>/<suite>``).
        pairs: names of the pairs to run (default all); the results cover
            every pair with finished runs.
        progress: show progress bars.
        quiet: tell the converters to print nothing.

    Returns:
        A :class:`SuiteResult`.

    Raises:
        UserError: for a pair that cannot be prepared or fails its checks
            (nothing trained).
        Interrupted: on Ctrl-C (or SIGTERM); finished runs are kept.
    """
    plans = plan_suite(suite, runs_dir=runs_dir, data_dir=data_dir, pairs=pairs)
    for plan in plans:
        prepare_pair(plan, quiet=quiet)
    for plan in plans:
        check_pair(plan)
    everything = plan_suite(suite, runs_dir=runs_dir, data_dir=data_dir)
    before = _finished_runs(everything)
    out = Path(out) if out is not None else suite_root(suite, runs_dir)
    result = SuiteResult(out=out, rows=[], files={})
    grid_rows = {}
    current = None
    try:
        for plan in plans:
            current = f"pair {plan.pair.name}"
            grid_result = run_grid(plan.pair.grid, runs_dir=plan.out.parent, data_dir=str(plan.data_dir),
                                   progress=progress)
            grid_rows[plan.pair.name] = grid_result.rows
            result.failed.update({f"{plan.pair.name}/runs/{name}": failure
                                  for name, failure in grid_result.failed.items()})
            result.not_run += grid_result.not_run
            current = f"the baselines of pair {plan.pair.name}"
            _run_baselines(plan, result.failed)
            current = f"the zero-shot scores of pair {plan.pair.name}"
            _score_zero_shot(plan, result.failed)
            current = None
            result.rows = _suite_rows(everything, grid_rows, result.failed)
            result.files = write_suite_outputs(suite, everything, result.rows, out)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        running = f" while running {current}" if current else ""
        raise Interrupted(f"suite {suite.name} interrupted{running}; finished runs are kept: run"
                          f" `{resume_command(suite)}` (same options) to resume") from None
    after = _finished_runs(plan_suite(suite, runs_dir=runs_dir, data_dir=data_dir))
    result.trained, result.skipped = len(after - before), len(before)
    return result


def resume_command(suite):
    """The command that runs ``suite`` again: it resumes where it stopped (add the same options)."""
    return f"python -m experiments run {suite.path if suite.path is not None else suite.name + '.json'}"


def _run_baselines(plan, failed):
    from convlstm_tl.baselines.runner import carry_out, plan_baselines

    for job in plan.baselines:
        if _finished(job.run_dir):
            job.done = True
            continue
        log.info("pair %s: baselines at target fraction %s, seed %d", plan.pair.name, job.label, job.seed)
        job_plan = job.plan
        job.done = _attempt(f"{plan.pair.name}/baselines/{job.run_dir.name}",
                            lambda: carry_out(job_plan if job_plan is not None else plan_baselines(job.config)),
                            failed)


def _score_zero_shot(plan, failed):
    """Score each finished source run on the target's test split (classes matched), once; cached as JSON."""
    if not classes_match(plan):
        return
    from convlstm_tl.evaluation.crossdomain import evaluate_runs

    pair = plan.pair
    for run_dir in dict.fromkeys(plan.source_runs.values()):
        path = plan.zero_shot_dir / f"{run_dir.name}.json"
        if path.is_file() or not _finished(run_dir):
            continue

        def score(run_dir=run_dir, path=path):
            evaluation = evaluate_runs([run_dir], [pair.target], data_dir=str(plan.data_dir), progress=False)
            cell = evaluation.cell(evaluation.runs[0], pair.target)
            if cell.get("accuracy") is None:
                raise UserError(f"source run {run_dir.name} cannot be scored on {pair.target}: {cell.get('reason')}")
            record = {"source_run": run_dir.name, "target": pair.target, "accuracy": cell["accuracy"],
                      "macro_f1": cell["macro_f1"], "n_test": cell["n_test"], "eval_seconds": cell["eval_seconds"]}
            write_atomically(path, lambda f: json.dump(record, f, indent=2))

        _attempt(f"{pair.name}/zero-shot/{run_dir.name}", score, failed)


def _finished_runs(plans):
    runs = set()
    for plan in plans:
        runs |= {run for run in plan.source_runs.values() if _finished(run)}
        runs |= {run for run, done in plan.transfer_runs.items() if done}
        runs |= {job.run_dir for job in plan.baselines if _finished(job.run_dir)}
    return runs
