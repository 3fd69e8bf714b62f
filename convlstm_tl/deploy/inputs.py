"""The samples to predict on, from the files a user has, checked against what the run expects.

Three kinds of input, told apart by the file's suffix:

- a domain file (``.h5``, ``.hdf5``), labelled or written by
  ``data_prep csv --unlabelled``: one split of it;
- an ``.npz`` holding ``x``, samples ``(N, T, H, W, C)``, and optionally
  per-sample ``group``, ``recording`` and ``start`` arrays;
- a long-format CSV (``.csv``, as ``data_prep csv`` reads: a group column,
  optionally a label column, the channel columns), cut into windows exactly
  as the run's domain was, from the run's window recipe.

Whatever does not fit the run (the sample shape, the channels, a token
vocabulary, the dtype, NaN or inf) is refused with one line that names what
the run expects and what the file holds.
"""

import csv
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convlstm_tl.data.format import ID_KEYS, open_domain
from convlstm_tl.data.reader import iter_x, read_ids, read_labels
from convlstm_tl.data.stats import vocab_fingerprint
from convlstm_tl.errors import UserError, first_line

log = logging.getLogger(__name__)

DOMAIN_SUFFIXES = (".h5", ".hdf5")
# Long-format text tables, and their default field separator.
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
# Per-sample arrays that name a sample in the output (with the sample's index).
ID_COLUMNS = (*ID_KEYS, "start")
# A CSV's label column when none is named: read when the file has it.
DEFAULT_LABEL_COLUMN = "label"
# Samples read and checked at a time from an .npz (it is loaded whole; the check need not be).
CHECK_BATCH = 4096
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Samples:
    """Samples to predict on, read batch by batch, and what names each one.

    Attributes:
        description: where they come from, for messages (e.g. ``"split test of data/ms.h5"``).
        count: how many samples.
        ids: per-sample ``group``, ``recording`` and ``start`` arrays, those
            the input has.
        labels: the class name of each sample when the input is labelled, else None.
        read: ``read(batch_size)`` yields the samples in order, batch by
            batch, in the dtype the model takes.
    """

    description: str
    count: int
    read: object = field(repr=False)
    ids: dict = field(default_factory=dict)
    labels: np.ndarray | None = None

    def batches(self, batch_size):
        """Yield the samples in order, at most ``batch_size`` at a time."""
        return self.read(batch_size)


def open_samples(path, run, *, split=None, group_column=None, label_column=None, recording_column=None,
                 delimiter=None):
    """The samples of ``path`` for ``run``'s model, checked against what the run expects.

    Args:
        path: a domain file, an ``.npz`` or a long-format CSV (by suffix).
        run: the :class:`~convlstm_tl.runs.resolve.Run` that will predict.
        split: the split of a domain file (None: ``test``).
        group_column, label_column, recording_column, delimiter: a CSV's
            columns and field separator, as ``data_prep csv`` reads them
            (None: ``group``; ``label`` when the file has it, as a label
            change starts a new recording; none; a comma, a tab for
            ``.tsv``). A label column named here must exist.

    Options that do not apply to the kind of input (``split`` for a CSV,
    the CSV's for a domain file) are refused rather than ignored.

    Returns:
        :class:`Samples`.

    Raises:
        UserError: one line, for a missing or unreadable file, or samples
            that do not fit the run.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {path} not found")
    suffix = path.suffix.lower()
    csv_options = {"group_column": group_column, "label_column": label_column,
                   "recording_column": recording_column, "delimiter": delimiter}
    if suffix not in CSV_SUFFIXES:
        _refuse_options(path, {key: value for key, value in csv_options.items() if value is not None}, "CSV input")
    if suffix != ".npz" and suffix not in CSV_SUFFIXES and suffix not in DOMAIN_SUFFIXES:
        raise UserError(f"{path}: cannot tell what the file holds from its suffix {path.suffix!r}; give a domain file"
                        f" ({', '.join(DOMAIN_SUFFIXES)}), an .npz with x, or a long-format"
                        f" {' or '.join(CSV_SUFFIXES)}")
    if suffix in DOMAIN_SUFFIXES:
        return _domain_samples(path, run, split or "test")
    _refuse_options(path, {"split": split} if split is not None else {}, "domain files")
    if suffix == ".npz":
        return _npz_samples(path, run)
    return _csv_samples(path, run, group_column=group_column or "group", label_column=label_column,
                        recording_column=recording_column,
                        delimiter=delimiter or CSV_SUFFIXES[suffix])


def _refuse_options(path, given, applies_to):
    if given:
        names = ", ".join(given)
        raise UserError(f"{names.replace('_', ' ')} {'applies' if len(given) == 1 else 'apply'} to {applies_to}"
                        f" only, and {path} is not one; leave {'it' if len(given) == 1 else 'them'} out",
                        field=tuple(given))


# ------------------------------------------------------------------ domain files


def _domain_samples(path, run, split):
    info = open_domain(path, labelled=None)
    if split not in info.split_sizes:
        raise UserError(f"{path} has no split {split!r} (it has {', '.join(info.split_sizes)}); choose one with"
                        " --split")
    where = f"split {split} of {path}"
    if info.kind != run.input_kind:
        raise UserError(f"run {run.name} takes {_kind_phrase(run.input_kind)}, {path} holds"
                        f" {_kind_phrase(info.kind)}")
    _check_sample_shape(run, info.frame_shape, where)
    if info.kind == "tokens":
        fingerprint = vocab_fingerprint(info.vocab)
        if fingerprint != run.domain.get("vocab_fingerprint"):
            raise UserError(f"{path} encodes words with another vocabulary ({len(info.vocab)} tokens) than run"
                            f" {run.name} ({run.domain.get('vocab_size')} tokens); convert the text with the"
                            " run's domain vocabulary")
    _check_recipe(run, info.provenance, path)
    dtype = run.input_dtype
    ids = read_ids(path, split)
    labels = None
    if info.labelled:
        y, _ = read_labels(path, split)
        labels = np.asarray(info.class_names, dtype=object)[y]

    def read(batch_size):
        for x in iter_x(path, split, batch_size=batch_size):
            yield x.astype(dtype, copy=False)

    return Samples(description=where, count=info.split_sizes[split], read=read, ids=ids, labels=labels)


def _check_recipe(run, provenance, path):
    """Refuse a file cut from recordings with other channels (order, signs) than the run's domain."""
    from convlstm_tl.data.recipe import window_recipe

    ours, theirs = run.window_recipe, window_recipe(provenance)
    if ours is None or theirs is None:
        return
    if ours.channels and theirs.channels and list(ours.channels) != list(theirs.channels):
        raise UserError(f"run {run.name} takes the channels {', '.join(ours.channels)} in this order; {path} holds"
                        f" {', '.join(theirs.channels)}; convert it with --channels {','.join(ours.channels)}")
    if (ours.channel_signs or None) != (theirs.channel_signs or None):
        raise UserError(f"run {run.name}'s domain was stored {_signs(ours.channel_signs)}, {path}"
                        f" {_signs(theirs.channel_signs)}; convert it as the run's domain was ({ours.converter},"
                        " with the same channel options, e.g. --mirror-left)")


def _signs(signs):
    return f"with its channels multiplied by {list(signs)}" if signs else "with its channels as recorded"


# ------------------------------------------------------------------ .npz


def _npz_samples(path, run):
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path} is not a readable .npz file ({first_line(error)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"{path} holds one array, not an .npz archive; save the samples with np.savez(path, x=...)")
    with archive:
        if "x" not in archive.files:
            raise UserError(f"{path} has no array 'x' (it has {', '.join(archive.files) or 'none'}); save the"
                            " samples as x")
        try:
            x = archive["x"]
            ids = {key: archive[key] for key in ID_COLUMNS if key in archive.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise UserError(f"{path}: cannot read its arrays ({first_line(error)})") from None
    where = f"x of {path}"
    if x.ndim == 5 and not len(x):
        raise UserError(f"{where} holds no samples")
    if x.ndim != 5:
        raise UserError(f"{where} must have rank 5 (N, T, H, W, C), samples of shape {_shape(run.frame_shape)} for"
                        f" run {run.name}. Received: shape={x.shape}")
    _check_sample_shape(run, x.shape[1:], where)
    x = _checked_values(x, run, where)
    for key, values in ids.items():
        if values.shape != (len(x),):
            raise UserError(f"{path}: {key} must have shape ({len(x)},), one per sample of x. Received:"
                            f" shape={values.shape}")
        if values.dtype.kind not in "iuUS":
            raise UserError(f"{path}: {key} must hold ints or strings. Received: dtype={values.dtype}")

    def read(batch_size):
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size]

    return Samples(description=str(path), count=len(x), read=read, ids=ids)


def _checked_values(x, run, where):
    """``x`` in the model's dtype, after refusing what it cannot take (strings, NaN, ids outside the vocabulary)."""
    if run.input_kind == "tokens":
        if x.dtype.kind not in "iu":
            raise UserError(f"{where} must hold integer token ids for run {run.name}. Received: dtype={x.dtype}")
        size = run.domain.get("vocab_size")
        if x.size and (x.min() < 0 or (size is not None and x.max() >= size)):
            raise UserError(f"{where} holds token ids outside [0, {size}), run {run.name}'s vocabulary."
                            f" Received: min={x.min()}, max={x.max()}")
        return x.astype("int32", copy=False)
    if x.dtype.kind not in "iuf":
        raise UserError(f"{where} must hold numbers (float32 frames) for run {run.name}. Received: dtype={x.dtype}")
    for start in range(0, len(x), CHECK_BATCH):
        chunk = x[start:start + CHECK_BATCH].reshape(-1, int(np.prod(x.shape[1:])))
        finite = np.isfinite(chunk).all(axis=1)
        if not finite.all():
            raise UserError(f"{where} has NaN or inf (first at sample {start + int(np.argmin(finite))}); clean"
                            " the data first")
        beyond = (np.abs(chunk) > FLOAT32_MAX).any(axis=1)
        if beyond.any():
            raise UserError(f"{where} has values beyond the float32 range (±{FLOAT32_MAX:.3g}), first at sample"
                            f" {start + int(np.argmax(beyond))}; rescale them first")
    return x.astype("float32", copy=False)


# ------------------------------------------------------------------ long-format CSV


def _csv_samples(path, run, *, group_column, label_column, recording_column, delimiter):
    # The converter's own reading and windowing, so that a recording is cut
    # here exactly as data_prep csv cut the run's domain.
    from data_prep.csv_series import read_recordings
    from data_prep.windows import sliding_windows, to_frames

    recipe = run.window_recipe
    if run.input_kind == "tokens":
        raise UserError(f"run {run.name} takes token ids; a long-format CSV holds numeric channels: give a domain"
                        " file of the text (python -m data_prep text) instead")
    if recipe is None:
        raise UserError(f"run {run.name} does not record how its domain was cut from recordings (its samples were"
                        " given whole, or the run predates the record); give a domain file or an .npz of samples"
                        f" shaped {_shape(run.frame_shape)} instead of a CSV")
    frames, height, width, channels = run.frame_shape
    if (frames, height, width) != (recipe.frames, 1, recipe.frame_width):
        raise UserError(f"run {run.name}'s window recipe ({recipe.describe()}) does not give its samples of shape"
                        f" {_shape(run.frame_shape)}; give a domain file or an .npz instead of a CSV")
    header = _header(path, delimiter)
    if label_column is not None and label_column not in header:
        raise UserError(f"{path} has no label column {label_column!r} (columns: {', '.join(header)}); leave"
                        " --label-column out for a file without labels")
    label_column = label_column or DEFAULT_LABEL_COLUMN
    labelled = label_column in header
    names = list(recipe.channels) if recipe.channels else None
    if names:
        missing = [name for name in names if name not in header]
        if missing:
            raise UserError(f"{path} has no channel column {missing[0]!r}: run {run.name} takes the channels"
                            f" {', '.join(names)} (columns: {', '.join(header)})")
    recordings, names = read_recordings(path, group_column=group_column, label_column=label_column,
                                        channels=names, recording_column=recording_column, delimiter=delimiter,
                                        labelled=labelled)
    if len(names) != channels:
        raise UserError(f"run {run.name} takes {channels} channels; {path} has {len(names)} ({', '.join(names)});"
                        " name them with --channels")
    signs = np.asarray(recipe.channel_signs, dtype=np.float32) if recipe.channel_signs else None
    xs, groups, recording_ids, starts, labels = [], [], [], [], []
    for index, recording in enumerate(recordings):
        values = recording["values"] if signs is None else recording["values"] * signs
        windows = sliding_windows(values, recipe.window, recipe.step)
        xs.append(to_frames(windows, recipe.frames))
        groups.extend([recording["group"]] * len(windows))
        recording_ids.append(np.full(len(windows), index, dtype=np.int64))
        starts.append(np.arange(len(windows), dtype=np.int64) * recipe.step)
        labels.extend([recording.get("label")] * len(windows))
    x = np.concatenate(xs) if xs else np.empty((0, *run.frame_shape), np.float32)
    short = [recording["group"] for recording in recordings if len(recording["values"]) < recipe.window]
    if short and len(x):
        log.warning("%d recording%s shorter than a window (%d rows) give%s no prediction (group%s %s)", len(short),
                    "s" if len(short) > 1 else "", recipe.window, "" if len(short) > 1 else "s",
                    "s" if len(short) > 1 else "", ", ".join(dict.fromkeys(short)))
    if not len(x):
        longest = max((len(r["values"]) for r in recordings), default=0)
        raise UserError(f"{path} gives no window: run {run.name} takes windows of {recipe.window} rows and the"
                        f" longest recording has {longest}")
    ids = {"group": np.asarray(groups), "recording": np.concatenate(recording_ids), "start": np.concatenate(starts)}

    def read(batch_size):
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size]

    return Samples(description=f"{path} ({recipe.describe()})", count=len(x), read=read, ids=ids,
                   labels=np.asarray(labels, dtype=object) if labelled else None)


def _header(path, delimiter):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, delimiter=delimiter), None)
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise UserError(f"{path} is not a readable CSV file ({error})") from None
    if not header:
        raise UserError(f"{path} is empty; expected a header row, e.g. group,ax,ay,az")
    return [name.strip() for name in header]


# ------------------------------------------------------------------ shared checks


def _check_sample_shape(run, shape, where):
    shape = tuple(int(n) for n in shape)
    if shape == tuple(run.frame_shape):
        return
    hint = ""
    recipe = run.window_recipe
    if recipe is not None:
        hint = f"; cut recordings as its domain was: {recipe.describe()}"
    raise UserError(f"run {run.name} takes samples of shape (T, H, W, C) = {_shape(run.frame_shape)}; {where} holds"
                    f" {_shape(shape)}{hint}")


def _shape(shape):
    return "(" + ", ".join(str(int(n)) for n in shape) + ")"


def _kind_phrase(kind):
    return "token ids" if kind == "tokens" else "numeric frames"
