"""Print a domain file's classes, counts per split and class, shapes, groups and provenance.

The counting is :func:`convlstm_tl.data.stats.summarize_domain`, which returns
the numbers; this module only formats them::

    python -m data_prep info data/mnist.h5
"""

import json
import os
import sys
from pathlib import Path

from convlstm_tl.data.format import SPLITS
from convlstm_tl.data.stats import summarize_domain


def format_summary(summary):
    """The text ``info`` prints for a :func:`summarize_domain` dict."""
    splits = summary["splits"]
    # An unlabelled file has only the splits it was given, and no classes.
    names = [name for name in SPLITS if name in splits]
    labelled = summary.get("labelled", True)
    n_total = sum(splits[name]["n"] for name in names)
    shape = ", ".join(str(d) for d in summary["frame_shape"])
    lines = [
        f"{summary['path']}",
        f"  domain   {summary['domain']}",
        f"  kind     {summary['kind']}" + (f" (vocab of {summary['vocab_size']} tokens)"
                                           if summary["kind"] == "tokens" else ""),
        f"  x        {summary['x_dtype']}, sample shape (T, H, W, C) = ({shape}), {n_total} samples",
        f"  classes  {len(summary['class_names'])}: {', '.join(summary['class_names'])}" if labelled else
        "  classes  none: unlabelled (samples to predict on; training and evaluation refuse this file)",
        "",
    ]
    width = max([8, *(len(name) for name in summary["class_names"])])
    lines.append(f"  {'class' if labelled else 'split':<{width}}" + "".join(f"{name:>9}" for name in names))
    for name in summary["class_names"]:
        lines.append(f"  {name:<{width}}" + "".join(f"{splits[s]['per_class'][name]:>9}" for s in names))
    lines.append(f"  {'total':<{width}}" + "".join(f"{splits[s]['n']:>9}" for s in names))
    groups = [splits[s]["n_groups"] for s in names]
    lines.append(f"  {'groups':<{width}}" + "".join(f"{'-' if g is None else g:>9}" for g in groups))
    lines.append("")
    lines.append("provenance:")
    try:
        provenance = json.loads(summary["provenance"])
    except ValueError:
        provenance = None
    if isinstance(provenance, dict):
        # One line per entry: the converters' provenance is a flat record.
        for key, value in provenance.items():
            lines.append(f"  {key}: {value if isinstance(value, str) else json.dumps(value)}")
    else:
        lines.append(f"  {summary['provenance']}")
    return "\n".join(lines)


def add_arguments(parser):
    """Add the ``info`` options to ``parser``."""
    parser.add_argument("path", type=Path, help="the domain file, e.g. data/mnist.h5")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead")


def run(args):
    """Print the summary of ``args.path``; return the exit code."""
    summary = summarize_domain(args.path)
    return print_quietly(json.dumps(summary, indent=2) if args.json else format_summary(summary))


def print_quietly(text):
    """Print ``text``; a reader that stops early (``| head``) ends the output silently, exit 0.

    As the Python docs advise for SIGPIPE, stdout is then pointed at devnull so
    that the interpreter's final flush does not fail again.
    """
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0
