"""``python -m convlstm_tl.evaluate``: score runs on domains, across domains.

    python -m convlstm_tl.evaluate --runs St St-ms-freeze --domains St ms
    python -m convlstm_tl.evaluate --runs St St-ms-freeze St-ms-baselines --domains St ms

Writes ``evaluation.json``, ``evaluation.md``, per-class reports and
confusion matrices into ``--out`` (default ``<runs-dir>/evaluation-<time>/``)
and prints the accuracy / macro-F1 matrix and the forgetting table. A run that
cannot be scored on a domain (other inputs, vocabulary or classes) gets an
n/a cell, its reason in the notes; when no cell can be scored at all, the
command fails (exit 2) and writes nothing. A baseline run
(``python -m convlstm_tl.baseline``) among ``--runs`` adds a row per
classical model it fitted, in a "Baselines" block under the runs' matrix,
scored from the predictions it recorded (no Keras backend is started for
baselines alone).
"""

import sys
from datetime import datetime
from pathlib import Path

from convlstm_tl.cli import ArgumentParser, configure_logging, import_backend_quietly, run_main
from convlstm_tl.data.format import SPLITS

PROG = "python -m convlstm_tl.evaluate"
# config field -> flag, for error lines (see convlstm_tl.cli.run_main)
FLAGS = {"out_dir": "--out", "batch_size": "--batch-size", "split": "--split"}


def parse_args(argv=None):
    """Parse the command line."""
    parser = ArgumentParser(prog=PROG, description="Evaluate the model of every run on every domain's split:"
                                                   " accuracy, macro-F1, per-class reports, confusion matrices"
                                                   " and the forgetting of transferred runs.")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                        help="runs to evaluate: names in --runs-dir or paths to run folders; a baseline run"
                             " (python -m convlstm_tl.baseline) adds a row per classical model")
    parser.add_argument("--domains", nargs="+", required=True, metavar="DOMAIN",
                        help="domains to score on: files <data-dir>/DOMAIN.h5")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to score (default test)")
    parser.add_argument("--data-dir", help="folder of domain files (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--runs-dir", default="runs", help="folder of run directories (default: ./runs)")
    parser.add_argument("--out", help="output folder (default: <runs-dir>/evaluation-<YYYYmmdd-HHMMSS>); an earlier"
                                      " evaluation there is replaced; a folder holding other files is refused")
    parser.add_argument("--batch-size", type=int, default=128, help="prediction batch size (default 128)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1. Received: --batch-size {args.batch_size}")
    return args


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    configure_logging(args.quiet)
    from convlstm_tl.evaluation.crossdomain import evaluate_plan
    from convlstm_tl.evaluation.plan import plan_evaluation, resolve_evaluated_run
    from convlstm_tl.evaluation.report import check_output_dir, format_markdown, write_evaluation

    out = Path(args.out) if args.out else Path(args.runs_dir) / f"evaluation-{datetime.now():%Y%m%d-%H%M%S}"
    # Check the cheap things before paying for the backend's start-up.
    check_output_dir(out)
    run_dirs = [resolve_evaluated_run(name, args.runs_dir) for name in args.runs]
    plan = plan_evaluation(run_dirs, args.domains, data_dir=args.data_dir, split=args.split)
    if plan.runs:  # baselines alone need no backend: their predictions are recorded
        import_backend_quietly()
    evaluation = evaluate_plan(plan, batch_size=args.batch_size, progress=not args.quiet)
    write_evaluation(evaluation, out)
    print(format_markdown(evaluation))
    print(f"evaluation written to {out}")
    return 0


def cli():
    """Console-script entry point."""
    sys.exit(run_main(main, prog=PROG, flags=FLAGS))


if __name__ == "__main__":
    cli()
