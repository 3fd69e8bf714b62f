"""``python -m data_prep <subcommand>``: write domain files.

A subcommand is a module listed in :data:`SUBCOMMANDS` that defines
``add_arguments(parser)`` and ``run(args) -> int``; its docstring's first line
is the subcommand's help. Subcommand modules keep heavy imports inside their
functions, because all of them are imported to build the parser.
"""

import importlib
import sys

from convlstm_tl.cli import ArgumentParser, run_main

PROG = "python -m data_prep"

# The one place a converter is registered: name -> module.
SUBCOMMANDS = {
    "watch": "data_prep.watch",
    "digits": "data_prep.digits",
    "text": "data_prep.text",
    "npz": "data_prep.npz",
    "csv": "data_prep.csv_series",
    "ts": "data_prep.ts",
    "info": "data_prep.info",
    "check": "data_prep.check",
}


def build_parser():
    """Return the parser with one subparser per entry of :data:`SUBCOMMANDS`."""
    parser = ArgumentParser(prog=PROG, description="Write domain files (HDF5) for convlstm_tl.")
    subparsers = parser.add_subparsers(dest="command", metavar="<subcommand>", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
        sub = subparsers.add_parser(name, help=summary, description=summary)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def parse_args(argv=None):
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    return build_parser().parse_args(argv)


def main(argv=None):
    """Run one subcommand and return its exit code (2 for a user error)."""
    def _main(argv):
        try:
            args = parse_args(argv)
        except SystemExit as exit_:
            # argparse has printed its one line (or --help); return its code
            # so that main() returns on every path, as callers from Python expect.
            return exit_.code
        return args._run(args)

    return run_main(_main, argv, prog=PROG)


def cli():
    """Console-script entry point (``convlstm-tl-data``): exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
