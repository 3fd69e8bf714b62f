"""``python -m convlstm_tl.predict``: a run's class probabilities for new samples.

    python -m convlstm_tl.predict --run St-ms-freeze --input new.csv --out predictions.csv
    python -m convlstm_tl.predict --run St --input data/new.h5 --aggregate recording
    python -m convlstm_tl.predict --run St --input samples.npz

The input is a domain file (``--split``, default test; a file of
``data_prep csv --unlabelled`` has only test), an ``.npz`` with ``x``, or a
long-format CSV as ``data_prep csv`` reads it, which is cut into windows as
the run's domain was. The output CSV (stdout without ``--out``) has one row
per sample: its index, the ids the input gives (group, recording, window
start), its label when known, the predicted class and one ``p_<class>``
probability column per class; ``--aggregate recording`` gives one row per
recording, the mean of its windows' probabilities.
"""

import os
import sys
from pathlib import Path

from convlstm_tl.cli import ArgumentParser, configure_logging, import_backend_quietly, run_main
from convlstm_tl.data.format import SPLITS
from convlstm_tl.deploy.predict import is_predictions_csv
from convlstm_tl.errors import UserError
from data_prep.delimited import check_delimiter

PROG = "python -m convlstm_tl.predict"
AGGREGATES = ("sample", "recording")
# config field -> flag, for error lines (see convlstm_tl.cli.run_main)
FLAGS = {"split": "--split", "group_column": "--group-column", "label_column": "--label-column",
         "recording_column": "--recording-column", "delimiter": "--delimiter"}


def parse_args(argv=None):
    """Parse the command line."""
    parser = ArgumentParser(prog=PROG, description="Predict the classes of new samples with a trained run: a domain"
                                                   " file, an .npz with x, or a long-format CSV cut into windows as"
                                                   " the run's domain was.")
    parser.add_argument("--run", required=True, help="the run: a name in --runs-dir or a path to a run folder")
    parser.add_argument("--input", required=True, type=Path, metavar="FILE",
                        help="a domain file (.h5), an .npz holding x (N, T, H, W, C) and optionally group,"
                             " recording, start, or a long-format .csv (group column, optional label column,"
                             " the run's channels)")
    parser.add_argument("--out", metavar="CSV", help="write the predictions here (default: stdout)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--aggregate", choices=AGGREGATES, default="sample",
                        help="one row per sample (default) or per recording (mean probability of its windows)")
    parser.add_argument("--split", choices=SPLITS, help="split of a domain file (default test)")
    parser.add_argument("--batch-size", type=int, default=128, help="samples per forward pass (default 128)")
    parser.add_argument("--group-column", help="CSV input: the group column (default group)")
    parser.add_argument("--label-column",
                        help="CSV input: the label column (default: label, when the file has it); a label change"
                             " starts a new recording, as in data_prep csv")
    parser.add_argument("--recording-column", help="CSV input: a column whose change also starts a new recording")
    parser.add_argument("--delimiter", help="CSV input: the field separator (default: a comma; a tab for .tsv)")
    parser.add_argument("--runs-dir", default="runs", help="folder of run directories (default: ./runs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1. Received: --batch-size {args.batch_size}")
    return args


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    configure_logging(args.quiet)
    from convlstm_tl.files import write_atomically
    from convlstm_tl.runs.resolve import load_run

    if args.out is not None:
        _check_out(args.out, args.overwrite)
        args.out = Path(args.out)
    if args.delimiter is not None:
        check_delimiter(args.delimiter, default="a comma")
    # The run's record first: a wrong name fails before the backend starts.
    load_run(args.run, args.runs_dir, with_model=False).check_classifier("prediction")
    import_backend_quietly()
    from convlstm_tl.deploy.inputs import open_samples
    from convlstm_tl.deploy.predict import predict_samples

    run = load_run(args.run, args.runs_dir)
    samples = open_samples(args.input, run, split=args.split, group_column=args.group_column,
                           label_column=args.label_column, recording_column=args.recording_column,
                           delimiter=args.delimiter)
    predictions = predict_samples(run, samples, batch_size=args.batch_size, progress=not args.quiet)
    if args.aggregate == "recording":
        predictions = predictions.by_recording()
    if args.out is None:
        predictions.write_csv(sys.stdout)
        sys.stdout.flush()
    else:
        write_atomically(args.out, predictions.write_csv, newline="", encoding="utf-8")
    if not args.quiet:
        rows = "recordings" if args.aggregate == "recording" else "samples"
        where = f" to {args.out}" if args.out is not None else ""
        print(f"predicted {len(predictions)} {rows} of {samples.description} with run {run.name}{where}",
              file=sys.stderr)
    return 0


def _check_out(out, overwrite):
    """Refuse an --out that is a folder, a link or a device, or not writable; or an existing file predict did not write.

    ``--overwrite`` replaces only a predictions CSV (recognised by its
    header), so that a mistyped ``--out`` never replaces a user's file.
    """
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        raise UserError(f"--out {out} is a folder; give a file name, e.g. {Path(out) / 'predictions.csv'}")
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise UserError(f"--out {out} is {'a symbolic link' if out.is_symlink() else 'not a regular file'}; give"
                        " the path of a plain file (leave --out out to write to stdout)")
    if out.exists():
        if not overwrite:
            raise UserError(f"--out {out} exists; choose another name or pass --overwrite to replace it")
        if not is_predictions_csv(out):
            raise UserError(f"--out {out} exists and is not a predictions file of python -m convlstm_tl.predict;"
                            " --overwrite replaces only those: choose another name")
    parent = next((folder for folder in (out.absolute().parent, *out.absolute().parents) if folder.exists()))
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write in {parent} (permission denied); choose another --out")


def cli():
    """Console-script entry point."""
    sys.exit(run_main(main, prog=PROG, flags=FLAGS))


if __name__ == "__main__":
    cli()
