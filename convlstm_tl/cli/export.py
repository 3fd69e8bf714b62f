"""``python -m convlstm_tl.export``: a run's model as stock Keras, SavedModel, TFLite or ONNX, checked on export.

    python -m convlstm_tl.export --run St --format keras --out exports/St.keras
    python -m convlstm_tl.export --run St --format savedmodel --out exports/St-savedmodel
    python -m convlstm_tl.export --run St --format tflite --quantize dynamic --out exports/St-int8.tflite
    python -m convlstm_tl.export --run St --format onnx --out exports/St.onnx

Each export is loaded back with its own runtime and compared with the run's
model on its domain's test split (a float32 export must agree to 1e-4 in
every class probability, or nothing is written); the size, the parity and
the latency of one sequence are printed, and ``<out>.signature.json`` beside
the export says what the model takes and gives.
"""

import json
import sys
from pathlib import Path

from convlstm_tl.cli import ArgumentParser, configure_logging, import_backend_quietly, run_main

PROG = "python -m convlstm_tl.export"


def parse_args(argv=None):
    """Parse the command line."""
    from convlstm_tl.deploy.export import CHECK_SAMPLES, FORMATS, QUANTIZATIONS

    parser = ArgumentParser(prog=PROG, description="Export a run's model for serving and devices, checked against"
                                                   " the run's own predictions.")
    parser.add_argument("--run", required=True, help="the run: a name in --runs-dir or a path to a run folder")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("--out", required=True, type=Path,
                        help="the file to write (a folder for savedmodel); <out>.signature.json goes beside it")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default="none",
                        help="tflite only: dynamic (int8 weights) or float16 weights (default none: float32)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export at --out")
    parser.add_argument("--check-samples", type=int, default=CHECK_SAMPLES,
                        help=f"test samples the export is compared on (default {CHECK_SAMPLES})")
    parser.add_argument("--data-dir", help="folder of domain files, where the run's domain file is looked for when"
                                           " it is not at its recorded path (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--runs-dir", default="runs", help="folder of run directories (default: ./runs)")
    parser.add_argument("--json", action="store_true", help="print the export report as JSON")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    if args.check_samples < 1:
        parser.error(f"--check-samples must be at least 1. Received: --check-samples {args.check_samples}")
    return args


def format_report(report):
    """The export report as a few human-readable lines."""
    size = report.size_bytes / 2**20
    allowed = f" (allowed {report.tolerance:g})" if report.tolerance is not None else " (quantized: reported only)"
    if report.quantize != "none" and report.max_abs_diff < 1e-6:
        # The converter quantizes only weight tensors of 1024 values or more.
        allowed += "; no weight was large enough to quantize, the model stays float32"
    return "\n".join([
        f"wrote {report.path} ({report.format}{'' if report.quantize == 'none' else ', ' + report.quantize},"
        f" {size:.2f} MiB) and {report.signature_path}",
        f"parity on {report.n_checked} test samples: max |probability difference| {report.max_abs_diff:.2e}{allowed},"
        f" same predicted class {100 * report.agreement:.1f}%",
        f"latency per sequence (batch 1): {report.latency_ms:.2f} ms in {report.runtime},"
        f" {report.reference_latency_ms:.2f} ms for the run's Keras model",
    ])


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    configure_logging(args.quiet)
    from convlstm_tl.deploy.export import check_destination, check_options, check_samples, export_run
    from convlstm_tl.errors import RunError
    from convlstm_tl.runs.resolve import load_run

    check_options(args.format, args.quantize)
    check_destination(args.out, args.format, overwrite=args.overwrite)
    record = load_run(args.run, args.runs_dir, with_model=False)
    record.check_classifier("an export")
    domain_file = record.find_domain_file(args.data_dir)
    if domain_file is None:
        raise RunError(f"the export is checked on run {record.name}'s test split, but its domain file is not at"
                       f" {' nor '.join(map(str, record.domain_file_candidates(args.data_dir)))}; point --data-dir"
                       f" at the folder that has {record.domain_name}.h5")
    import_backend_quietly()
    run = load_run(args.run, args.runs_dir)
    check_x = check_samples(domain_file, limit=args.check_samples, dtype=run.input_dtype)
    report = export_run(run, args.out, format=args.format, quantize=args.quantize, check_x=check_x,
                        overwrite=args.overwrite)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not args.quiet:
        print(format_report(report))
    return 0


def cli():
    """Console-script entry point."""
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    cli()
