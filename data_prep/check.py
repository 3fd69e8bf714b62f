"""Validate a domain file against the format; exit 2 with the reason if it breaks it.

Everything :func:`convlstm_tl.data.format.open_domain` checks, with ``x`` scanned
chunk by chunk for NaN and inf (or token ids outside the vocab); labelled and
unlabelled files alike::

    python -m data_prep check data/mnist.h5
"""

from pathlib import Path

from convlstm_tl.data.format import open_domain
from data_prep.info import print_quietly


def add_arguments(parser):
    """Add the ``check`` options to ``parser``."""
    parser.add_argument("paths", type=Path, nargs="+", metavar="path", help="domain files, e.g. data/mnist.h5")
    parser.add_argument("--quiet", action="store_true", help="print nothing unless there is an error")


def run(args):
    """Check every file in ``args.paths``; the first bad one ends with its reason (exit 2)."""
    for path in args.paths:
        info = open_domain(path, check_values=True, labelled=None)
        if not args.quiet:
            sizes = ", ".join(f"{split} {n}" for split, n in info.split_sizes.items())
            kind = info.kind if info.labelled else f"{info.kind}, unlabelled"
            print_quietly(f"ok {info.path}: {kind}, {sizes} samples of shape {info.frame_shape}")
    return 0
