"""``python -m experiments``: run experiment grids and check the transfer advisor.

    python -m experiments run experiments/watch_st_ms.json [--study strategies] [--dry-run]
    python -m experiments advise-check experiments/watch_st_ms.json

``run`` trains every unfinished cell of the grid (source runs first) and
writes ``results.csv``, ``summary.md`` and plots; running it again skips
finished cells. ``advise-check`` compares the advisor's recommendation with
the grid's best strategy per target size.
"""

import sys
from pathlib import Path

from convlstm_tl.cli import ArgumentParser, configure_logging, import_backend_quietly, run_main

PROG = "python -m experiments"


def parse_args(argv=None):
    """Parse the command line."""
    parser = ArgumentParser(prog=PROG, description="Experiment grids over training and transfer options.")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    run = commands.add_parser("run", help="run a grid (finished cells are skipped)",
                              description="Run every unfinished cell of a grid and write its results.")
    check = commands.add_parser("advise-check", help="compare the transfer advisor with a grid's best strategy",
                                description="Ask the advisor for each seed and target size of a finished"
                                            " strategy study, and compare with the best strategy measured.")
    for sub in (run, check):
        sub.add_argument("grid", metavar="GRID.json", help="the grid file")
        sub.add_argument("--out", help="output folder (default: <runs-dir>/<grid name>)")
        sub.add_argument("--data-dir", help="folder of domain files (default: $CONVLSTM_TL_DATA or ./data)")
        sub.add_argument("--runs-dir", default="runs",
                         help="runs folder; the grid's runs go in <runs-dir>/<grid name>/runs (default: ./runs)")
        sub.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--study", action="append", metavar="NAME", help="run only this study (repeatable)")
    run.add_argument("--dry-run", action="store_true", help="list the cells and whether they are finished")
    check.add_argument("--study", metavar="NAME",
                       help="the study to check (default: the first varying only strategy and target size)")
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
    from experiments.grid import load_grid

    grid = load_grid(args.grid)
    if args.command == "advise-check":
        return _advise_check(args, grid)
    from experiments.runner import plan_grid, run_grid

    if args.dry_run:
        plan = plan_grid(grid, runs_dir=args.runs_dir, studies=args.study)
        print(format_cells(plan))
        done = sum(planned.done for planned in plan)
        print(f"{len(plan)} cells, {done} finished, {len(plan) - done} to run")
        return 0
    import_backend_quietly()
    result = run_grid(grid, runs_dir=args.runs_dir, data_dir=args.data_dir, out=args.out, studies=args.study,
                      progress=not args.quiet)
    print(result.files["summary"].read_text())
    print(f"{result.trained} runs trained, {result.skipped} finished before; results in {result.out}")
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
