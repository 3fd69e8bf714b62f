"""``python -m convlstm_tl.bench``: the fast ConvLSTM layer against the stock one, and the data path.

    python -m convlstm_tl.bench                  # full run, data path included
    python -m convlstm_tl.bench --quick          # 2 repetitions of fewer batches, no data path
    python -m convlstm_tl.bench --json bench.json

What is measured, and how, is in :mod:`convlstm_tl.bench.benchmark`.
"""

import argparse
import json
import sys
from pathlib import Path

from convlstm_tl.bench.benchmark import CELLS, SHAPES, run_benchmark
from convlstm_tl.cli import ArgumentParser, configure_logging, import_backend_quietly, run_main
from convlstm_tl.config import JIT, MIXED_PRECISION

PROG = "python -m convlstm_tl.bench"


def format_report(results):
    """The results as a human-readable table."""
    lines = [f"{'shape':<8} {'layer':<6} {'train seq/s':>12} {'predict seq/s':>14} {'peak RSS MiB':>13}"]
    for name, entry in results["layers"].items():
        for cell in CELLS:
            if cell in entry:
                figures = entry[cell]
                peak = max(figures["train_peak_rss_mib"], figures["predict_peak_rss_mib"])
                lines.append(f"{name:<8} {cell:<6} {figures['train_seq_per_s']:>12.1f}"
                             f" {figures['predict_seq_per_s']:>14.1f} {peak:>13.0f}")
        if "train_ratio" in entry:
            lines.append(f"{name:<8} {'ratio':<6} {entry['train_ratio']:>11.2f}x {entry['predict_ratio']:>13.2f}x"
                         "   (fast / keras)")
    data = results.get("data_path")
    if data:
        lines.append("")
        lines.append(f"data path: {data['file_gib']:.2f} GiB file, {data['n_samples']} samples of"
                     f" {tuple(data['frame_shape'])}, written in {data['write_seconds']:.0f} s;"
                     f" RSS before the epochs {data['baseline_rss_mib']:.0f} MiB")
        for epoch in data["epochs"]:
            lines.append(f"  one epoch, workers={epoch['workers']}: {epoch['seconds']:.0f} s,"
                         f" {epoch['samples_per_s']:.0f} samples/s, {epoch['read_mib_per_s']:.0f} MiB/s,"
                         f" peak RSS {epoch['peak_rss_mib']:.0f} MiB"
                         f" ({epoch['peak_rss_over_file']:.2f} x the file)")
    return "\n".join(lines)


def parse_args(argv=None):
    """Parse the command line."""
    parser = ArgumentParser(prog=PROG, description="Benchmark the fast ConvLSTM layer against "
                                                   "keras.layers.ConvLSTM2D, and the HDF5 data path.")
    parser.add_argument("--quick", action="store_true", help="2 repetitions of fewer batches, no data path")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, from {', '.join(SHAPES)}")
    parser.add_argument("--data-path", action=argparse.BooleanOptionalAction, default=None,
                        help="run the data-path benchmark (default: on, off with --quick)")
    parser.add_argument("--data-dir", help="folder for the temporary data-path file (default: system temp)")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION, default="off",
                        help="dtype policy of both models (default off)")
    parser.add_argument("--jit", choices=JIT, default="auto", help="XLA for both models")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser.parse_args(argv)


def main(argv=None):
    """Entry point; returns the exit code."""
    from convlstm_tl.errors import ConfigError

    args = parse_args(argv)
    shapes = tuple(part for part in args.shapes.split(",") if part)
    unknown = [name for name in shapes if name not in SHAPES]
    if unknown or not shapes:
        raise ConfigError(f"--shapes takes names from {', '.join(SHAPES)}. Received: --shapes {args.shapes}")
    configure_logging(args.quiet)
    import_backend_quietly()
    results = run_benchmark(quick=args.quick, shapes=shapes, data_path=args.data_path, data_dir=args.data_dir,
                            mixed_precision=args.mixed_precision, jit=args.jit)
    print(format_report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cli():
    """Console-script entry point."""
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    cli()
