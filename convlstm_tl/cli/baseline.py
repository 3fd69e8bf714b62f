"""``python -m convlstm_tl.baseline``: classical baselines on the same domain files, splits and target subsets.

    python -m convlstm_tl.baseline --source St
    python -m convlstm_tl.baseline --source St --target ms --target-fraction 0.1 --seed 0

Settings come from the defaults of
:class:`convlstm_tl.baselines.config.BaselineConfig`, then ``--config FILE``
(JSON, the keys of the ``"config"`` entry of a baseline run's ``config.json``),
then the flags given. Prints the accuracy / macro-F1 table and the run folder.
"""

import sys

from convlstm_tl.cli import ArgumentParser, configure_logging, run_main

PROG = "python -m convlstm_tl.baseline"
# Flags copied onto the config when given.
_KEYS = ("source", "target", "methods", "target_fraction", "target_per_class", "with_val", "seed", "name",
         "data_dir", "runs_dir", "overwrite")


def parse_args(argv=None):
    """Parse the command line; every option defaults to None (= not given), the config holds the defaults."""
    from convlstm_tl.baselines.config import BaselineConfig
    from convlstm_tl.baselines.methods import METHOD_NAMES

    defaults = BaselineConfig()
    parser = ArgumentParser(prog=PROG, description="Fit classical baselines (summary statistics + logistic"
                                                   " regression, MiniRocket) on the domain files, splits and labelled"
                                                   " target subsets the ConvLSTM runs use, and score them on the"
                                                   " test splits.")
    parser.add_argument("--source", metavar="DOMAIN", help="train on <data-dir>/DOMAIN.h5's train split")
    parser.add_argument("--target", metavar="DOMAIN",
                        help="also train on this domain's labelled subset, alone and pooled with the source"
                             " (same class names), and score every model on its test split")
    parser.add_argument("--target-fraction", type=float, metavar="F",
                        help="keep this fraction of the target's training split, as a transfer does (default: all)")
    parser.add_argument("--target-per-class", type=int, metavar="N",
                        help="keep about this many target samples per class")
    parser.add_argument("--methods", metavar="LIST",
                        help=f"comma-separated, of {', '.join(METHOD_NAMES)} (default: all; minirocket only if aeon"
                             " is installed)")
    parser.add_argument("--with-val", action="store_true", default=None,
                        help="also train on the source's train + val splits (alone and pooled)")
    parser.add_argument("--seed", type=int, metavar="S",
                        help=f"seed of the target subset and the methods (default {defaults.seed})")
    parser.add_argument("--name", help="run name (default: <source>-<target>-baselines or <source>-baselines)")
    parser.add_argument("--config", metavar="FILE", help="JSON file of settings; flags override it")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder of domain files (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--runs-dir", metavar="DIR",
                        help=f"folder of run directories (default: ./{defaults.runs_dir})")
    parser.add_argument("--overwrite", action="store_true", default=None, help="replace an existing run")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser.parse_args(argv)


def build_config(args):
    """Turn parsed arguments into a :class:`BaselineConfig` (validated by the library, once)."""
    from convlstm_tl.baselines.config import BaselineConfig
    from convlstm_tl.jsonio import from_dict, load_json

    config = from_dict(BaselineConfig, load_json(args.config), where=args.config) if args.config \
        else BaselineConfig()
    for key in _KEYS:
        value = getattr(args, key)
        if value is not None:
            setattr(config, key, value)
    return config


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    configure_logging(args.quiet)
    from convlstm_tl.baselines.runner import run_baselines

    result = run_baselines(build_config(args))
    print(result.table())
    for name, seconds in result.warmup_seconds.items():
        print(f"note: {name} first spent {seconds:.1f} s compiling (once per process), not counted in fit s")
    for note in result.notes:
        print(f"note: {note}")
    print(f"run {result.run_dir}")
    return 0


# config field -> the flag that sets it, for error lines (see convlstm_tl.cli.run_main)
FLAGS = {key: f"--{key.replace('_', '-')}" for key in _KEYS}
FLAGS.update(source="--source DOMAIN", target="--target DOMAIN")


def cli(argv=None):
    """Console-script entry point."""
    sys.exit(run_main(main, argv, prog=PROG, flags=FLAGS))


if __name__ == "__main__":
    cli()
