"""``python -m experiments``: run experiment grids and benchmark suites, and check the transfer advisor.

    python -m experiments run experiments/watch_st_ms.json [--study strategies] [--dry-run]
    python -m experiments run experiments/suite.json [--pair watch-mirrored] [--dry-run]
    python -m experiments advise-check experiments/watch_st_ms.json
    python -m experiments advise-check --suite experiments/suite.json [--pair watch-mirrored]

``run`` checks every cell (configs, domain files, strategies against the
source's blocks, source runs, seeds; at most ``MAX_CELLS`` cells), then
trains every unfinished one (source runs first) and writes ``results.csv``,
``summary.md`` and plots; running it again skips finished cells and retries
failed ones. ``--dry-run`` makes the same checks and lists the cells.
``advise-check`` compares the advisor's recommendation with the grid's best
strategy per target size; with ``--suite`` it compares the advised strategy
and options with each pair's best transfer method per seed and target
fraction (``--pair`` picks pairs), see :mod:`experiments.advise_check`. It
writes ``advice.md`` and ``advice.csv`` into ``<runs-dir>/<grid or suite>``.

``run`` given a suite file (one with ``"pairs"``, see :mod:`experiments.suite`)
prepares each pair's missing domain files, checks every pair, then runs each
pair's grid, baselines and zero-shot scores, skipping what is finished, and
writes ``<runs-dir>/<suite>/results.csv`` and ``summary.md``; ``--pair``
picks pairs, ``--dry-run`` lists the pairs, what will be prepared, and the
runs finished and to do. Its exit codes are those of a grid.

Exit codes of ``run``: 0 when every cell finished; 2 for a bad grid or cell
(found before anything trains), or when cells failed while running and every
failure was a user error (a bad or changed input: fix it and run again); 1
when a cell failed for any other reason (a fault of the toolkit: its
traceback is logged). With failed cells the other cells still run, and the
one stderr line names the failed runs. 130 on Ctrl-C, 143 on SIGTERM: the
running cell keeps its saved epochs and running the grid again resumes it.
"""

import sys
from pathlib import Path

from convlstm_tl.cli import ArgumentParser, configure_logging, import_backend_quietly, run_main
from convlstm_tl.errors import ConfigError, UserError
from convlstm_tl.jsonio import load_json

PROG = "python -m experiments"
# Failed runs named in full in the error line; more are counted.
NAMED_FAILURES = 10


class CellsFailed(UserError):
    """Cells of a grid failed while running, each for a user error (exit code 2)."""


def parse_args(argv=None):
    """Parse the command line."""
    parser = ArgumentParser(prog=PROG, description="Experiment grids over training and transfer options, and"
                                                   " benchmark suites of domain pairs.")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    run = commands.add_parser("run", help="run a grid or a suite (finished runs are skipped)",
                              description="Run every unfinished cell of a grid, or every unfinished run of a"
                                          " suite's pairs, and write the results.")
    check = commands.add_parser("advise-check", help="compare the transfer advisor with a grid's best strategy"
                                                     " or a suite's best transfer methods",
                                description="Ask the advisor for each seed and target size of a finished"
                                            " strategy study, and compare with the best strategy measured; with"
                                            " --suite, for each pair, seed and target fraction of a suite, and"
                                            " compare strategy and options with the pair's best method.")
    for sub in (run, check):
        if sub is run:
            sub.add_argument("grid", metavar="GRID.json", help="the grid file or suite file")
        else:
            sub.add_argument("grid", metavar="GRID.json", nargs="?", help="the grid file (or give --suite)")
        sub.add_argument("--out", help="output folder (default: <runs-dir>/<grid or suite name>)")
        sub.add_argument("--data-dir", help="folder of domain files; a suite's pair uses <data-dir>/<pair>"
                                            " (default: $CONVLSTM_TL_DATA or ./data)")
        sub.add_argument("--runs-dir", default="runs",
                         help="runs folder; the grid's runs go in <runs-dir>/<grid name>/runs, a suite's in"
                              " <runs-dir>/<suite name>/<pair> (default: ./runs)")
        sub.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--study", action="append", metavar="NAME", help="grids: run only this study (repeatable)")
    run.add_argument("--pair", action="append", metavar="NAME", help="suites: run only this pair (repeatable)")
    run.add_argument("--dry-run", action="store_true",
                     help="list the cells (a suite: pairs, data to prepare, runs) and whether they are finished")
    check.add_argument("--study", metavar="NAME",
                       help="the study to check (default: the first varying only strategy and target size)")
    check.add_argument("--suite", metavar="SUITE.json", help="check a suite's pairs instead of a grid")
    check.add_argument("--pair", action="append", metavar="NAME",
                       help="with --suite: check only this pair (repeatable)")
    return parser.parse_args(argv)


def format_cells(plan):
    """One line per cell: status, study, setting, seed and run name."""
    lines = []
    for planned in plan:
        cell = planned.cell
        setting = ", ".join(f"{axis}={label}" for axis, label in cell.setting)
        source = f" (after source {cell.source_config.name})" if cell.source_config is not None else ""
        lines.append(f"{'done' if planned.done else 'todo'}  {cell.study}: {setting}, seed {cell.seed}"
                     f" -> {cell.run_name}{source}")
    return "\n".join(lines)


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    configure_logging(args.quiet)
    from experiments.grid import parse_grid
    from experiments.suite import is_suite, parse_suite

    if args.command == "advise-check":
        _check_advise_args(args)
        if args.suite:
            path = Path(args.suite)
            data = load_json(path)
            if not is_suite(data):
                raise ConfigError(f"{path} is a grid, not a suite; give it without --suite")
            return _advise_check_suite(args, parse_suite(data, name=path.stem, where=str(path), path=path))
    path = Path(args.grid)
    data = load_json(path)
    if is_suite(data):
        if args.command != "run":
            raise ConfigError(f"{path} is a suite; advise-check takes a grid file, or a suite with --suite {path}")
        if args.study:
            raise ConfigError(f"{path} is a suite, which has pairs, not studies; choose pairs with --pair")
        return _run_suite(args, parse_suite(data, name=path.stem, where=str(path), path=path))
    grid = parse_grid(data, name=path.stem, where=str(path), path=path)
    if args.command == "run" and args.pair:
        raise ConfigError(f"--pair chooses pairs of a suite; {path} is a grid (choose its studies with --study)")
    if args.command == "advise-check":
        return _advise_check(args, grid)
    from experiments.runner import check_grid, plan_grid, resume_command, run_grid

    if args.dry_run:
        plan = plan_grid(grid, runs_dir=args.runs_dir, studies=args.study)
        check_grid(grid, plan, runs_dir=args.runs_dir, data_dir=args.data_dir)
        print(format_cells(plan))
        done = sum(planned.done for planned in plan)
        print(f"{len(plan)} cells, {done} finished, {len(plan) - done} to run")
        return 0
    import_backend_quietly()
    result = run_grid(grid, runs_dir=args.runs_dir, data_dir=args.data_dir, out=args.out, studies=args.study,
                      progress=not args.quiet)
    print(result.files["summary"].read_text())
    print(f"{result.trained} runs trained, {result.skipped} finished before; results in {result.out}")
    if not result.failed:
        return 0
    message = failure_line(result, resume_command(grid))
    if result.user_errors_only:
        raise CellsFailed(message)
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def failure_line(result, command, what="grid"):
    """One line naming the runs that failed (the first reason in full) and how to retry them."""
    names = list(result.failed)
    shown = ", ".join(names[:NAMED_FAILURES]) + (f" and {len(names) - NAMED_FAILURES} more"
                                                 if len(names) > NAMED_FAILURES else "")
    skipped = f", {result.not_run} cells skipped for a failed source run" if result.not_run else ""
    first = result.failed[names[0]][1]
    return (f"{len(names)} run(s) of the {what} failed ({shown}){skipped}; the first: {first};"
            f" each reason is in {result.out / 'results.csv'}; fix them and run `{command}` again"
            " to retry them")


def _run_suite(args, suite):
    from experiments.suite_plan import check_pair, format_plan, plan_suite
    from experiments.suite_run import resume_command, run_suite

    if args.dry_run:
        plans = plan_suite(suite, runs_dir=args.runs_dir, data_dir=args.data_dir, pairs=args.pair)
        # Pairs whose data is there are checked in full; the others once prepared, before anything trains.
        ready = [plan for plan in plans if not plan.steps and all(
            (plan.data_dir / f"{name}.h5").is_file() for name in (plan.pair.source, plan.pair.target))]
        if ready:
            import_backend_quietly()  # the checks of resumable runs read Keras checkpoints
        for plan in ready:
            check_pair(plan)
        print(format_plan(suite, plans, checked=[plan.pair.name for plan in ready]))
        return 0
    import_backend_quietly()
    result = run_suite(suite, runs_dir=args.runs_dir, data_dir=args.data_dir, out=args.out, pairs=args.pair,
                       progress=not args.quiet, quiet=args.quiet)
    print(result.files["summary"].read_text())
    print(f"{result.trained} runs trained, {result.skipped} finished before; results in {result.out}")
    if not result.failed:
        return 0
    message = failure_line(result, resume_command(suite), what="suite")
    if result.user_errors_only:
        raise CellsFailed(message)
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def _check_advise_args(args):
    """advise-check takes a grid file, or a suite with --suite (and --pair), not both."""
    if args.suite and args.grid:
        raise ConfigError(f"give a grid file or --suite, not both. Received: {args.grid} and --suite {args.suite}")
    if not args.suite and not args.grid:
        raise ConfigError("give a grid file (GRID.json), or a suite with --suite SUITE.json")
    if args.suite and args.study:
        raise ConfigError(f"{args.suite} is a suite, which has pairs, not studies; choose pairs with --pair")
    if args.pair and not args.suite:
        raise ConfigError(f"--pair chooses pairs of a suite; give the suite with --suite (not {args.grid})")


def _advise_check_suite(args, suite):
    from experiments.advise_check import advice_markdown, check_suite_advice, write_advice_check
    from experiments.suite_plan import suite_root

    import_backend_quietly()
    check = check_suite_advice(suite, runs_dir=args.runs_dir, data_dir=args.data_dir, pairs=args.pair)
    out = Path(args.out) if args.out else suite_root(suite, args.runs_dir)
    paths = write_advice_check(suite, check, out)
    print(advice_markdown(suite, check))
    print(f"written to {paths[1]}")
    return 0


def _advise_check(args, grid):
    from experiments.advise_check import advice_markdown, check_advice, write_advice_check
    from experiments.runner import grid_dirs

    import_backend_quietly()
    check = check_advice(grid, runs_dir=args.runs_dir, data_dir=args.data_dir, study=args.study)
    out = Path(args.out) if args.out else grid_dirs(grid, runs_dir=args.runs_dir)[0]
    paths = write_advice_check(grid, check, out)
    print(advice_markdown(grid, check))
    print(f"written to {paths[1]}")
    return 0


def cli():
    """Console-script entry point."""
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    cli()
