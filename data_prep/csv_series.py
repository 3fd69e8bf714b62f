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
subject is in two splits; ``group`` holds the group ids, ``recording``
the index of the recording (in file order), which low-label subsampling
keeps whole, and ``start`` the row of each window's first time step
within its recording (window ``k`` starts at ``k * step``).

With ``--unlabelled`` (new recordings to predict on) the label column is
not read and need not exist (if present, it is no default channel): a
recording is consecutive rows with the same group (and recording column),
cut into the same windows, and every window goes to the ``test`` split of
an unlabelled file, with the same ``group``, ``recording`` and ``start``.

Library use::

    from data_prep.csv_series import prepare_csv
    info = prepare_csv("mine.csv", "mine", "data", window=100, frames=10)
    new = prepare_csv("new.csv", "new", "data", window=100, frames=10, labelled=False)

Command line::

    python -m data_prep csv --input mine.csv --domain mine --window 100 --frames 10
    python -m data_prep csv --input new.csv --domain new --window 100 --frames 10 --unlabelled
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
FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_recordings(path, *, group_column=DEFAULT_GROUP_COLUMN, label_column=DEFAULT_LABEL_COLUMN,
                    channels=None, recording_column=None, delimiter=",", labelled=True):
    """Read a long-format CSV file into recordings.

    Args:
        path: the CSV file, with a header row.
        group_column, label_column: names of the group and label columns.
        channels: names of the channel columns; None means every other
            column.
        recording_column: optional column that also starts a new recording
            when it changes.
        delimiter: the field separator.
        labelled: False reads no labels: the label column need not exist,
            is no default channel, and does not start recordings.

    Returns:
        ``(recordings, channels)``: a list of dicts with ``group`` and
        ``label`` (strings; ``label`` None when not ``labelled``),
        ``values`` ``(n_rows, C)`` float32 and ``first_line``, in file
        order; and the channel names.

    Raises:
        UserError: for a missing file, unknown columns, a row of the wrong
            length, or a channel value that is empty, not a number, NaN or
            inf (with its line number).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {path} not found")
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=check_delimiter(delimiter, default="a comma"))
            header = next(reader, None)
            if not header:
                raise UserError(f"{path} is empty; expected a header row, e.g. group,label,ax,ay,az")
            header = [name.strip() for name in header]
            roles = {"group": group_column}
            if labelled:
                roles["label"] = label_column
            if recording_column:
                roles["recording"] = recording_column
            channels = _resolve_columns(header, roles, channels, path,
                                        not_channels=() if labelled else (label_column,))
            key_index = [header.index(k) for k in roles.values()]
            channel_index = [header.index(c) for c in channels]
            return _read_rows(reader, len(header), key_index, channel_index, channels, roles=tuple(roles)), channels
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise UserError(f"{path} is not a readable CSV file ({error})") from None


def _resolve_columns(header, roles, channels, path, *, not_channels=()):
    """The channel names; ``roles`` maps role (group, label, recording) to column, ``not_channels`` are
    further columns that are no default channel."""
    keys = list(roles.values())
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise UserError(f"{path}: the header names columns {duplicated} twice")
    missing = [role for role, column in roles.items() if column not in header]
    if missing:
        hint = {"group": "name the group column with --group-column",
                "label": "name the label column with --label-column, or convert recordings without labels"
                         " with --unlabelled",
                "recording": "name the recording column with --recording-column"}[missing[0]]
        raise UserError(f"{path} has no column {roles[missing[0]]!r} (columns: {', '.join(header)}); {hint}")
    if channels is None:
        channels = [name for name in header if name not in keys and name not in not_channels]
    else:
        unknown = [c for c in channels if c not in header]
        if unknown:
            raise UserError(f"{path} has no channel column {unknown[0]!r} (columns: {', '.join(header)})")
        clash = [c for c in channels if c in keys]
        if clash:
            raise UserError(f"column {clash[0]!r} cannot be both a channel and the {' or '.join(roles)}")
    if not channels:
        raise UserError(f"{path} has no channel columns besides {', '.join([*keys, *not_channels])}")
    return list(channels)


def _read_rows(reader, width, key_index, channel_index, channels, *, roles=("group", "label")):
    recordings, current, rows = [], None, []

    def close():
        if rows:
            key = dict(zip(roles, current))
            recordings.append({"group": key["group"], "label": key.get("label"),
                               "values": np.array(rows, dtype=np.float32), "first_line": first_line})

    first_line = 2
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != width:
            raise UserError(f"line {line}: expected {width} fields as in the header. Received: {len(row)}")
        key = tuple(row[i].strip() for i in key_index)
        empty = next((role for role, value in zip(roles, key) if not value and role != "recording"), None)
        if empty:
            raise UserError(f"line {line}: the {empty} is empty")
        values = []
        for name, i in zip(channels, channel_index):
            try:
                value = float(row[i])
            except ValueError:
                raise UserError(f"line {line}: column {name!r} must be a number. Received: {row[i]!r}") from None
            if not math.isfinite(value):
                raise UserError(f"line {line}: column {name!r} is {row[i].strip()}; clean the data first")
            if abs(value) > FLOAT32_MAX:
                raise UserError(f"line {line}: column {name!r} is {row[i].strip()}, beyond the float32 range"
                                f" (±{FLOAT32_MAX:.3g}) the frames are stored in; rescale the channel first")
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
    x, group, recording, start = _cut_windows(recordings, window, step, frames)
    y = np.array([class_names.index(r["label"]) for r in recordings], dtype=np.int64)[recording]
    empty = [name for i, name in enumerate(class_names) if not (y == i).any()]
    if empty:
        longest = max(len(r["values"]) for r in recordings)
        raise UserError(f"label {empty[0]!r} gets no windows: its recordings are shorter than the window; use a"
                        f" smaller --window (the longest recording has {longest} rows). Received: window={window}")
    if len(class_names) < 2:
        raise UserError(f"the file has {len(class_names)} label ({class_names[0]}); a classifier needs at least 2")
    parts = split_indices(y, group, val=val, test=test, seed=seed, class_names=class_names)
    splits = {name: SplitArrays(x=x[parts[name]], y=y[parts[name]], group=group[parts[name]],
                                recording=recording[parts[name]], start=start[parts[name]]) for name in SPLITS}
    return splits, class_names, _stats(recordings, window, step)


def build_unlabelled_csv_domain(recordings, *, window=DEFAULT_WINDOW, overlap=DEFAULT_OVERLAP,
                                frames=DEFAULT_FRAMES):
    """Cut recordings into windows of frames, as :func:`build_csv_domain` does, without labels or splits.

    Returns:
        ``(splits, stats)``: ``{"test": SplitArrays}`` holding every window
        in file order (``y`` None, with ``group``, ``recording`` and
        ``start``), and counts for the provenance.

    Raises:
        UserError: for bad options, no rows, or no recording as long as the
            window.
    """
    step = check_window_options(window, overlap, frames)
    if not recordings:
        raise UserError("the file has no data rows")
    x, group, recording, start = _cut_windows(recordings, window, step, frames)
    if not len(x):
        longest = max(len(r["values"]) for r in recordings)
        raise UserError(f"no recording is as long as the window, so there are no windows; use a smaller --window"
                        f" (the longest recording has {longest} rows). Received: window={window}")
    splits = {"test": SplitArrays(x=x, y=None, group=group, recording=recording, start=start)}
    return splits, _stats(recordings, window, step)


def _cut_windows(recordings, window, step, frames):
    """Every recording's windows, in file order, as frames.

    Returns:
        ``(x, group, recording, start)``: samples ``(N, frames, 1, window //
        frames, C)``, the group id of each (see :func:`_ids`), the index of
        its recording in ``recordings``, and the row its window starts at
        within the recording.
    """
    xs, groups, recording_ids, starts = [], [], [], []
    for index, recording in enumerate(recordings):
        windows = sliding_windows(recording["values"], window, step)
        xs.append(to_frames(windows, frames))
        groups.extend([recording["group"]] * len(windows))
        recording_ids.append(np.full(len(windows), index, dtype=np.int64))
        starts.append(np.arange(len(windows), dtype=np.int64) * step)
    return np.concatenate(xs), _ids(np.array(groups)), np.concatenate(recording_ids), np.concatenate(starts)


def _stats(recordings, window, step):
    return {"recordings": len(recordings),
            "recordings_shorter_than_window": sum(len(r["values"]) < window for r in recordings),
            "step": step}


def _ids(values):
    """Group ids as int64 when every id is a whole number, else as strings."""
    try:
        return values.astype(np.int64)
    except ValueError:
        return values


def prepare_csv(input_path, domain, out_dir=None, *, group_column=DEFAULT_GROUP_COLUMN,
                label_column=DEFAULT_LABEL_COLUMN, channels=None, recording_column=None, delimiter=",",
                window=DEFAULT_WINDOW, overlap=DEFAULT_OVERLAP, frames=DEFAULT_FRAMES, val=None,
                test=None, seed=None, labelled=True):
    """Convert a long-format CSV file into ``<out_dir>/<domain>.h5``.

    Args:
        input_path, group_column, label_column, channels, recording_column,
        delimiter, labelled: see :func:`read_recordings`.
        domain: the domain's name (the file's stem).
        out_dir: folder of the domain files; None means ``$CONVLSTM_TL_DATA``
            or ``./data``.
        window, overlap, frames, val, test, seed: see :func:`build_csv_domain`;
            None for ``val``, ``test`` or ``seed`` means its default.
        labelled: False writes an unlabelled file of every window in
            ``test`` (:func:`build_unlabelled_csv_domain`); ``val``, ``test``
            and ``seed`` must then be None.

    Returns:
        The :class:`DomainInfo` of the written file.
    """
    check_domain_name(domain)
    # Options first: a typo should not wait for a large file to be read.
    check_window_options(window, overlap, frames)
    if labelled:
        val = DEFAULT_VAL if val is None else val
        test = DEFAULT_TEST if test is None else test
        seed = 0 if seed is None else seed
        check_ratios(val, test)
    else:
        given = [f"{name}={value}" for name, value in (("val", val), ("test", test), ("seed", seed))
                 if value is not None]
        if given:
            raise UserError(f"--val, --test and --seed split labelled data; an unlabelled file is not split (every"
                            f" window goes to test), so leave them out. Received: {', '.join(given)}")
    recordings, channels = read_recordings(input_path, group_column=group_column, label_column=label_column,
                                           channels=channels, recording_column=recording_column,
                                           delimiter=delimiter, labelled=labelled)
    if labelled:
        splits, class_names, stats = build_csv_domain(recordings, window=window, overlap=overlap, frames=frames,
                                                      val=val, test=test, seed=seed)
    else:
        splits, stats = build_unlabelled_csv_domain(recordings, window=window, overlap=overlap, frames=frames)
        class_names = []
    keys = "group" + (" and label" if labelled else "") + (f" and {recording_column}" if recording_column else "")
    provenance = {
        "source": str(Path(input_path).resolve()),
        "converter": "python -m data_prep csv (data_prep.csv_series.prepare_csv)",
        "domain": domain,
        "columns": {"group": group_column, "label": label_column if labelled else None,
                    "recording": recording_column, "channels": channels},
        "recording": f"consecutive rows with the same {keys}",
        "window": int(window),
        "overlap": float(overlap),
        "step": stats["step"],
        "frames": int(frames),
        "frame_width": int(window // frames),
        "sample_shape": "(frames, 1, frame_width, channels): frame t holds window rows t*W..(t+1)*W-1",
        "windows_cross_recordings": False,
        "ids": "group: the group column; recording: the recording's index in file order; start: the row of the"
               " window's first time step within its recording (window k starts at k * step)",
        "recordings": stats["recordings"],
        "recordings_shorter_than_window": stats["recordings_shorter_than_window"],
    }
    if labelled:
        provenance["split"] = (f"stratified by label, by group, seed {seed}, ratios train {round(1 - val - test, 6)}"
                               f" / val {val} / test {test}")
    else:
        provenance["labelled"] = False
        provenance["split"] = "none: every window is in test (unlabelled)"
    provenance["counts"] = {name: int(len(arrays.x)) for name, arrays in splits.items()}
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
    parser.add_argument("--unlabelled", action="store_true",
                        help="recordings without labels, to predict on: the label column is not read (nor a default"
                             " channel), and every window goes to the test split of an unlabelled file")
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
    # None until given, so that --unlabelled can refuse them; prepare_csv fills in the defaults the help names.
    parser.set_defaults(val=None, test=None, seed=None)
    parser.add_argument("--quiet", action="store_true", help="print nothing unless there is an error")


def run(args):
    """Run ``csv`` with parsed ``args``, print a summary, return the exit code."""
    channels = [c.strip() for c in args.channels.split(",") if c.strip()] if args.channels else None
    info = prepare_csv(args.input, args.domain, args.out, group_column=args.group_column,
                       label_column=args.label_column, channels=channels, recording_column=args.recording_column,
                       delimiter=args.delimiter, window=args.window, overlap=args.overlap, frames=args.frames,
                       val=args.val, test=args.test, seed=args.seed, labelled=not args.unlabelled)
    if not args.quiet:
        sizes = ", ".join(f"{split} {n}" for split, n in info.split_sizes.items())
        print(f"wrote {info.path}: {sizes} samples of shape {info.frame_shape}"
              + ("" if info.labelled else " (unlabelled)"))
    return 0
