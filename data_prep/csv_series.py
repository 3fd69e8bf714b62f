"""Long-format time series (a CSV file, one row per time step) -> a frames domain of windows.

The file has a header row and, per time step, a group id (subject or
recording), a label and the channel values::

    group,label,ax,ay,az
    s1,walk,0.12,-0.98,0.05
    s1,walk,0.10,-0.97,0.07
    ...

Consecutive rows with the same group and label (and recording, with
``--recording-column``) are one recording. Each recording is cut into
sliding windows that never cross into the next one, and a window of
``window`` rows becomes ``frames`` frames of ``window // frames`` rows, as
the watch converter does: one sample is ``(frames, 1, window // frames, C)``.
Recordings shorter than the window give no samples.

Splits are stratified by label and grouped by the group column, so no
subject is in two splits; ``group`` holds the group ids and ``recording``
the index of the recording (in file order), which low-label subsampling
keeps whole.

Library use::

    from data_prep.csv_series import prepare_csv
    info = prepare_csv("mine.csv", "mine", "data", window=100, frames=10)

Command line::

    python -m data_prep csv --input mine.csv --domain mine --window 100 --frames 10
"""

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np

from convlstm_tl.data.format import SPLITS, SplitArrays, check_domain_name, resolve_data_dir
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import UserError
from data_prep.delimited import check_delimiter
from data_prep.splits import DEFAULT_TEST, DEFAULT_VAL, add_split_arguments, check_ratios, split_indices
from data_prep.windows import check_window_options, sliding_windows, to_frames

logger = logging.getLogger(__name__)

# One place for each default; the CLI reads them from here.
DEFAULT_GROUP_COLUMN = "group"
DEFAULT_LABEL_COLUMN = "label"
DEFAULT_WINDOW = 100
DEFAULT_OVERLAP = 0.5
DEFAULT_FRAMES = 10  # -> frames of 10 rows


def read_recordings(path, *, group_column=DEFAULT_GROUP_COLUMN, label_column=DEFAULT_LABEL_COLUMN,
                    channels=None, recording_column=None, delimiter=","):
    """Read a long-format CSV file into recordings.

    Args:
        path: the CSV file, with a header row.
        group_column, label_column: names of the group and label columns.
        channels: names of the channel columns; None means every other
            column.
        recording_column: optional column that also starts a new recording
            when it changes.
        delimiter: the field separator.

    Returns:
        ``(recordings, channels)``: a list of dicts with ``group`` and
        ``label`` (strings), ``values`` ``(n_rows, C)`` float32 and
        ``first_line``, in file order; and the channel names.

    Raises:
        UserError: for a missing file, unknown columns, a row of the wrong
            length, or a channel value that is empty, not a number, NaN or
            inf (with its line number).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {path} not found")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=check_delimiter(delimiter, default="a comma"))
            header = next(reader, None)
            if not header:
                raise UserError(f"{path} is empty; expected a header row, e.g. group,label,ax,ay,az")
            header = [name.strip() for name in header]
            keys = [group_column, label_column] + ([recording_column] if recording_column else [])
            channels = _resolve_columns(header, keys, channels, path)
            key_index = [header.index(k) for k in keys]
            channel_index = [header.index(c) for c in channels]
            return _read_rows(reader, len(header), key_index, channel_index, channels), channels
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise UserError(f"{path} is not a readable CSV file ({error})") from None


def _resolve_columns(header, keys, channels, path):
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise UserError(f"{path}: the header names columns {duplicated} twice")
    missing = [k for k in keys if k not in header]
    if missing:
        raise UserError(f"{path} has no column {missing[0]!r} (columns: {', '.join(header)}); name the group and"
                        " label columns with --group-column and --label-column")
    if channels is None:
        channels = [name for name in header if name not in keys]
    else:
        unknown = [c for c in channels if c not in header]
        if unknown:
            raise UserError(f"{path} has no channel column {unknown[0]!r} (columns: {', '.join(header)})")
        clash = [c for c in channels if c in keys]
        if clash:
            raise UserError(f"column {clash[0]!r} cannot be both a channel and the group, label or recording")
    if not channels:
        raise UserError(f"{path} has no channel columns besides {', '.join(keys)}")
    return list(channels)


def _read_rows(reader, width, key_index, channel_index, channels):
    recordings, current, rows = [], None, []

    def close():
        if rows:
            recordings.append({"group": current[0], "label": current[1],
                               "values": np.array(rows, dtype=np.float32), "first_line": first_line})

    first_line = 2
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != width:
            raise UserError(f"line {line}: expected {width} fields as in the header. Received: {len(row)}")
        key = tuple(row[i].strip() for i in key_index)
        if not key[0] or not key[1]:
            raise UserError(f"line {line}: the {'group' if not key[0] else 'label'} is empty")
        values = []
        for name, i in zip(channels, channel_index):
            try:
                value = float(row[i])
            except ValueError:
                raise UserError(f"line {line}: column {name!r} must be a number. Received: {row[i]!r}") from None
            if not math.isfinite(value):
                raise UserError(f"line {line}: column {name!r} is {row[i].strip()}; clean the data first")
            values.append(value)
        if key != current:
            close()
            current, rows, first_line = key, [], line
        rows.append(values)
    close()
    return recordings


def build_csv_domain(recordings, *, window=DEFAULT_WINDOW, overlap=DEFAULT_OVERLAP, frames=DEFAULT_FRAMES,
                     val=DEFAULT_VAL, test=DEFAULT_TEST, seed=0):
    """Cut recordings into windows of frames and split them by group, in memory.

    Returns:
        ``(splits, class_names, stats)``: ``{split: SplitArrays}`` with
        ``group`` and ``recording`` ids, the sorted labels, and counts for
        the provenance.

    Raises:
        UserError: for bad options, no windows at all, a label none of whose
            recordings is as long as the window, or too few groups to split.
    """
    step = check_window_options(window, overlap, frames)
    check_ratios(val, test)
    if not recordings:
        raise UserError("the file has no data rows")
    class_names = sorted({r["label"] for r in recordings})
    xs, ys, groups, recording_ids = [], [], [], []
    for index, recording in enumerate(recordings):
        windows = sliding_windows(recording["values"], window, step)
        xs.append(to_frames(windows, frames))
        ys.append(np.full(len(windows), class_names.index(recording["label"]), dtype=np.int64))
        groups.extend([recording["group"]] * len(windows))
        recording_ids.append(np.full(len(windows), index, dtype=np.int64))
    y = np.concatenate(ys)
    empty = [name for i, name in enumerate(class_names) if not (y == i).any()]
    if empty:
        longest = max(len(r["values"]) for r in recordings)
        raise UserError(f"label {empty[0]!r} gets no windows: its recordings are shorter than the window; use a"
                        f" smaller --window (the longest recording has {longest} rows). Received: window={window}")
    if len(class_names) < 2:
        raise UserError(f"the file has {len(class_names)} label ({class_names[0]}); a classifier needs at least 2")
    x = np.concatenate(xs)
    group = _ids(np.array(groups))
    recording = np.concatenate(recording_ids)
    parts = split_indices(y, group, val=val, test=test, seed=seed, class_names=class_names)
    splits = {name: SplitArrays(x=x[parts[name]], y=y[parts[name]], group=group[parts[name]],
                                recording=recording[parts[name]]) for name in SPLITS}
    stats = {"recordings": len(recordings),
             "recordings_shorter_than_window": sum(len(r["values"]) < window for r in recordings),
             "step": step}
    return splits, class_names, stats


def _ids(values):
    """Group ids as int64 when every id is a whole number, else as strings."""
    try:
        return values.astype(np.int64)
    except ValueError:
        return values


def prepare_csv(input_path, domain, out_dir=None, *, group_column=DEFAULT_GROUP_COLUMN,
                label_column=DEFAULT_LABEL_COLUMN, channels=None, recording_column=None, delimiter=",",
                window=DEFAULT_WINDOW, overlap=DEFAULT_OVERLAP, frames=DEFAULT_FRAMES, val=DEFAULT_VAL,
                test=DEFAULT_TEST, seed=0):
    """Convert a long-format CSV file into ``<out_dir>/<domain>.h5``.

    Args:
        input_path, group_column, label_column, channels, recording_column,
        delimiter: see :func:`read_recordings`.
        domain: the domain's name (the file's stem).
        out_dir: folder of the domain files; None means ``$CONVLSTM_TL_DATA``
            or ``./data``.
        window, overlap, frames, val, test, seed: see :func:`build_csv_domain`.

    Returns:
        The :class:`DomainInfo` of the written file.
    """
    check_domain_name(domain)
    # Options first: a typo should not wait for a large file to be read.
    check_window_options(window, overlap, frames)
    check_ratios(val, test)
    recordings, channels = read_recordings(input_path, group_column=group_column, label_column=label_column,
                                           channels=channels, recording_column=recording_column,
                                           delimiter=delimiter)
    splits, class_names, stats = build_csv_domain(recordings, window=window, overlap=overlap, frames=frames,
                                                  val=val, test=test, seed=seed)
    provenance = {
        "source": str(Path(input_path).resolve()),
        "converter": "python -m data_prep csv (data_prep.csv_series.prepare_csv)",
        "domain": domain,
        "columns": {"group": group_column, "label": label_column, "recording": recording_column,
                    "channels": channels},
        "recording": "consecutive rows with the same group and label" + (
            f" and {recording_column}" if recording_column else ""),
        "window": int(window),
        "overlap": float(overlap),
        "step": stats["step"],
        "frames": int(frames),
        "frame_width": int(window // frames),
        "sample_shape": "(frames, 1, frame_width, channels): frame t holds window rows t*W..(t+1)*W-1",
        "windows_cross_recordings": False,
        "recordings": stats["recordings"],
        "recordings_shorter_than_window": stats["recordings_shorter_than_window"],
        "split": f"stratified by label, by group, seed {seed}, ratios train {round(1 - val - test, 6)} / val {val}"
                 f" / test {test}",
        "counts": {name: int(len(splits[name].y)) for name in SPLITS},
    }
    info = write_domain(resolve_data_dir(out_dir) / f"{domain}.h5", splits, domain=domain,
                        class_names=class_names, provenance=json.dumps(provenance))
    logger.info("wrote %s", info.path)
    return info


def add_arguments(parser):
    """Add the ``csv`` options to ``parser``."""
    parser.add_argument("--input", type=Path, required=True, help="CSV file with a header, one row per time step")
    parser.add_argument("--domain", required=True, help="name of the domain; writes <out>/<domain>.h5")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of domain files (default: $CONVLSTM_TL_DATA or ./data)")
    parser.add_argument("--group-column", default=DEFAULT_GROUP_COLUMN,
                        help=f"column of subject/recording ids, kept in one split (default: {DEFAULT_GROUP_COLUMN})")
    parser.add_argument("--label-column", default=DEFAULT_LABEL_COLUMN,
                        help=f"column of the labels (default: {DEFAULT_LABEL_COLUMN})")
    parser.add_argument("--channels", default=None,
                        help="channel columns, comma separated, in order (default: every other column)")
    parser.add_argument("--recording-column", default=None,
                        help="optional column whose change also starts a new recording")
    parser.add_argument("--delimiter", default=",", help="field separator (default: ,)")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help=f"rows per window (default: {DEFAULT_WINDOW})")
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                        help=f"fraction of a window shared with the next, in [0, 1) (default: {DEFAULT_OVERLAP})")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help=f"frames per window; the frame width is window / frames (default: {DEFAULT_FRAMES})")
    add_split_arguments(parser, of="the recordings")
    parser.add_argument("--quiet", action="store_true", help="print nothing unless there is an error")


def run(args):
    """Run ``csv`` with parsed ``args``, print a summary, return the exit code."""
    channels = [c.strip() for c in args.channels.split(",") if c.strip()] if args.channels else None
    info = prepare_csv(args.input, args.domain, args.out, group_column=args.group_column,
                       label_column=args.label_column, channels=channels, recording_column=args.recording_column,
                       delimiter=args.delimiter, window=args.window, overlap=args.overlap, frames=args.frames,
                       val=args.val, test=args.test, seed=args.seed)
    if not args.quiet:
        sizes = ", ".join(f"{split} {info.split_sizes[split]}" for split in SPLITS)
        print(f"wrote {info.path}: {sizes} samples of shape {info.frame_shape}")
    return 0
