"""``python -m convlstm_tl.advise``: which transfer strategy (and adapter and adaptation) to try, and why.

    python -m convlstm_tl.advise --source St --target ms --target-fraction 0.1
    python -m convlstm_tl.advise --source St --target ms --target-fraction 0    # no target label

Measures the distance between the source run's domain and the target on the
source body's features (proxy A-distance and MMD), sizes the target by its
labelled training samples, and applies the four-case rule and the options
rule of :mod:`convlstm_tl.strategies.advisor`. The last line printed is the
``python -m convlstm_tl.train`` command of the advice.
"""

import json
import shlex
import sys

from convlstm_tl.cli import ArgumentParser, configure_logging, import_backend_quietly, run_main
from convlstm_tl.config import NORMALIZATIONS

PROG = "python -m convlstm_tl.advise"
# config field -> flag, for error lines (see convlstm_tl.cli.run_main)
FLAGS = {"target": "--target", "source_run": "--source", "target_fraction": "--target-fraction",
         "target_per_class": "--target-per-class", "normalization": "--normalization", "seed": "--seed"}


def parse_args(argv=None):
    """Parse the command line."""
    parser = ArgumentParser(prog=PROG, description="Recommend a transfer strategy from a source run to a target"
                                                   " domain, from the measured domain distance and target size.")
    parser.add_argument("--source", required=True, metavar="RUN",
                        help="source run (or pretraining run): a name in --runs-dir or a path")
    parser.add_argument("--target", required=True, metavar="DOMAIN", help="target domain: <data-dir>/DOMAIN.h5")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--target-fraction", type=float,
                      help="the fraction of the target's labels you will use; 0: none (the target must have the"
                           " source's classes in the same order)")
    size.add_argument("--target-per-class", type=int, help="or the labelled samples per class you will use")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default="target",
                        help="statistics the target frames are normalized with, as in the transfer (default target)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    parser.add_argument("--data-dir", help="folder of domain files (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--runs-dir", default="runs", help="folder of run directories (default: ./runs)")
    parser.add_argument("--json", action="store_true", help="print the advice as JSON")
    parser.add_argument("--quiet", action="store_true", help="no log lines")
    args = parser.parse_args(argv)
    return args


def format_advice(advice):
    """The advice as a few human-readable lines; the last is the full ``python -m convlstm_tl.train`` command."""
    d = advice.distance
    alternatives = f" (or {', '.join(advice.alternatives)})" if advice.alternatives else ""
    options = ", ".join(f"{key} {value}" for key, value in advice.options.items()) or "none"
    lines = [f"recommended strategy: {advice.strategy}{alternatives}",
             f"options: {options}",
             f"case: {advice.case}",
             f"why: {advice.reason}",
             f"why these options: {advice.options_reason}"]
    if d is not None:
        lines += [f"proxy A-distance: {d.pad:.3f} (domain classifier error {d.domain_error:.3f},"
                  f" {d.n_source} source vs {d.n_target} target samples, {d.n_features} features)",
                  f"MMD^2 (RBF, bandwidth {d.bandwidth:.3g}): {d.mmd2:.4f}"]
    # Each advised TransferConfig field is the train command's flag of the same name.
    flags = " ".join(f"--{key.replace('_', '-')} {value:g}" if isinstance(value, float)
                     else f"--{key.replace('_', '-')} {shlex.quote(str(value))}"
                     for key, value in advice.transfer_options().items())
    lines.append(f"try: python -m convlstm_tl.train --transfer {shlex.quote(advice.target)}"
                 f" --from {shlex.quote(advice.source_run)} {flags}")
    return "\n".join(lines)


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    configure_logging(args.quiet)
    from convlstm_tl.data.format import find_domain, open_domain
    from convlstm_tl.runs.resolve import resolve_run
    from convlstm_tl.strategies.advisor import advise_transfer, check_advice_options  # no backend at import

    # Check the cheap things before paying for the backend's start-up.
    check_advice_options(args.source, args.target, target_fraction=args.target_fraction,
                         target_per_class=args.target_per_class, normalization=args.normalization, seed=args.seed)
    open_domain(find_domain(args.target, args.data_dir))
    resolve_run(args.source, args.runs_dir)
    import_backend_quietly()

    advice = advise_transfer(args.source, args.target, data_dir=args.data_dir, runs_dir=args.runs_dir,
                             target_fraction=args.target_fraction, target_per_class=args.target_per_class,
                             normalization=args.normalization, seed=args.seed)
    print(json.dumps(advice.to_dict(), indent=2) if args.json else format_advice(advice))
    return 0


def cli():
    """Console-script entry point."""
    sys.exit(run_main(main, prog=PROG, flags=FLAGS))


if __name__ == "__main__":
    cli()
