"""The domain file format: its constants, finding files, and validating one.

One HDF5 file per domain, written by ``data_prep``; the layout in short::

    <data-dir>/<Domain>.h5
      attrs: format_version=1, domain, class_names (JSON list), layout="THWC",
             kind ("frames" | "tokens"), provenance,
             labelled (optional bool; absent means true)
      vocab                       (tokens only) token strings
      train/ val/ test/
        x      (N, T, H, W, C) float32|float16 (int32 ids for tokens),
               chunked one sample per chunk
        y      (N,) int64 in [0, len(class_names))
        group  (N,) int64 or str, optional; no id in two splits
        recording (N,) int64 or str, optional; the unit that low-label
               sampling takes whole (e.g. one recording of one subject)
        start  (N,) int64 >= 0, optional; the index of the sample's first
               time step within its recording (a window's start), not an id

An *unlabelled* file (``labelled=false``, written by ``data_prep csv
--unlabelled`` for new recordings to predict on) has ``class_names`` ``[]``,
no ``y`` in any split, and only the splits it has (at least one; the
converters write ``test``). Training and evaluation refuse it; prediction
opens it with ``open_domain(path, labelled=None)``.

:func:`open_domain` checks a file before anything trains on it, reading ``x`` chunk
by chunk so a file larger than memory can be validated. Writing is
:mod:`convlstm_tl.data.writer` (with the same checks), reading :mod:`convlstm_tl.data.reader`.
"""

import errno
import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from convlstm_tl.errors import DomainFileError, first_line

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
LAYOUT = "THWC"
KINDS = ("frames", "tokens")
REQUIRED_ATTRS = ("format_version", "domain", "class_names", "layout", "kind", "provenance")
DATA_DIR_ENV = "CONVLSTM_TL_DATA"
DEFAULT_DATA_DIR = "data"
# Optional per-sample id datasets of a split, checked for leaks across splits.
ID_KEYS = ("group", "recording")
# Optional per-sample position of a split: the first time step of a window in its recording (not an id).
POSITION_KEYS = ("start",)
# How many samples validation and statistics read at a time, at most...
SCAN_BATCH = 512
# ...and at most this many bytes (but always at least one sample).
SCAN_BYTES = 64 * 2**20
# Words of h5py's error when another process holds the file's lock.
LOCK_WORDS = ("unable to lock file", "resource temporarily unavailable", "errno = 11")


@dataclass
class SplitArrays:
    """In-memory arrays of one split, as given to :func:`~convlstm_tl.data.writer.write_domain`.

    Args:
        x: frames ``(N, T, H, W, C)``.
        y: integer labels ``(N,)``; None in an unlabelled file.
        group: optional subject or recording ids ``(N,)``; no id may be in
            two splits.
        recording: optional ids ``(N,)`` of the recordings the samples were
            cut from, finer than ``group``; target subsampling takes whole
            recordings.
        start: optional non-negative integers ``(N,)``: the index of each
            sample's first time step within its recording.
    """

    x: np.ndarray
    y: np.ndarray | None
    group: np.ndarray | None = None
    recording: np.ndarray | None = None
    start: np.ndarray | None = None


@dataclass(frozen=True)
class DomainInfo:
    """What a validated domain file holds (no sample data).

    Attributes:
        path: the file.
        domain: the domain's name.
        class_names: names of the classes, indexed by label id; empty in an
            unlabelled file.
        kind: ``"frames"`` or ``"tokens"``.
        frame_shape: ``(T, H, W, C)`` of one sample.
        split_sizes: number of samples in each split the file has (all
            three in a labelled file).
        has_groups: whether the splits carry group ids.
        provenance: where the data came from and how it was cut.
        x_dtype: dtype name of ``x``.
        vocab: token strings of a ``tokens`` domain, else empty.
        labelled: False for a file of samples without labels.
    """

    path: Path
    domain: str
    class_names: tuple
    kind: str
    frame_shape: tuple
    split_sizes: dict
    has_groups: bool
    provenance: str
    x_dtype: str
    vocab: tuple = field(default=(), repr=False)
    labelled: bool = True

    @property
    def n_classes(self):
        return len(self.class_names)


def resolve_data_dir(data_dir=None):
    """Return the data directory: the argument, ``$CONVLSTM_TL_DATA``, or ``./data``."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


def domain_path(domain, data_dir=None):
    """Return the path of the file of ``domain`` in ``data_dir``."""
    return resolve_data_dir(data_dir) / f"{domain}.h5"


def check_domain_name(domain):
    """Refuse a domain name that is not a plain file stem (``<data-dir>/<domain>.h5``)."""
    if not isinstance(domain, str) or not domain or any(sep in domain for sep in ("/", "\\")) \
            or domain.startswith("."):
        raise DomainFileError(f"a domain name must be a plain name; its file is <data-dir>/<name>.h5."
                              f" Received: domain={domain!r}")


def find_domain(domain, data_dir=None):
    """Return the path of an existing domain file, or raise a helpful error."""
    path = domain_path(domain, data_dir)
    if not path.is_file():
        hint = {
            "St": "python -m data_prep watch",
            "ms": "python -m data_prep watch",
            "mnist": "python -m data_prep digits",
            "optdigits": "python -m data_prep digits",
        }.get(domain, "python -m data_prep <source> (see python -m data_prep --help)")
        raise DomainFileError(
            f"domain file {path} not found; create it with `{hint} --out {path.parent}`"
            " or point --data-dir (or $CONVLSTM_TL_DATA) at the folder that has it"
        )
    return path


def open_domain(path, *, check_values=True, labelled=True):
    """Open a domain file, check it, and describe it.

    Args:
        path: the ``.h5`` file.
        check_values: also scan ``x`` for NaN and inf (chunk by chunk).
        labelled: True (what training and evaluation need) refuses a file
            without labels; None accepts both kinds (prediction); False
            accepts unlabelled files only.

    Returns:
        A :class:`DomainInfo`.

    Raises:
        DomainFileError: with one line saying what is wrong, for a missing,
            corrupt or non-conforming file, or one of the wrong kind.
    """
    if labelled not in (True, False, None):
        raise ValueError(f"labelled must be True, False or None. Received: labelled={labelled!r}")
    path = Path(path)
    if not path.is_file():
        raise DomainFileError(f"domain file {path} not found")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        text = str(error).lower()
        if getattr(error, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK) or any(w in text for w in LOCK_WORDS):
            raise DomainFileError(
                f"{path} is being written by another process (it is locked); wait for that process to finish"
                " and run again"
            ) from None
        if getattr(error, "errno", None) in (errno.EACCES, errno.EPERM) or "permission denied" in text:
            raise DomainFileError(f"{path} cannot be read (permission denied); make it readable") from None
        raise DomainFileError(
            f"{path} is not a readable HDF5 file ({first_line(error)}); rebuild it with python -m data_prep"
        ) from None
    try:
        with f:
            return _describe(path, f, check_values, labelled=labelled)
    except DomainFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, RecursionError) as error:
        raise DomainFileError(f"{path} is corrupt ({first_line(error)}); rebuild it with python -m data_prep") from None


def _check_self_contained(path, f):
    """Refuse links and datasets whose data live outside the file, before any value is read.

    Soft and external links, HDF5 external storage (raw data in other files,
    which may be anything readable, even a FIFO that blocks the read) and
    virtual datasets: a domain file holds its own data.
    """
    def visit(group, prefix):
        for name in group:
            where = f"{prefix}{name}"
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
                raise DomainFileError(f"{path}: {where} is {kind}; a domain file must hold its own data"
                                      " (rebuild it with python -m data_prep)")
            item = group[name]
            if isinstance(item, h5py.Group):
                visit(item, f"{where}/")
            elif isinstance(item, h5py.Dataset):
                if item.is_virtual:
                    raise DomainFileError(f"{path}: {where} is a virtual dataset; a domain file must hold its own"
                                          " data (rebuild it with python -m data_prep)")
                if item.id.get_create_plist().get_external_count() > 0:
                    raise DomainFileError(f"{path}: {where} is stored in external files; a domain file must hold"
                                          " its own data (rebuild it with python -m data_prep)")

    visit(f, "")


def _dataset(path, split, name, key):
    item = split.get(key)
    if item is None:
        raise DomainFileError(f"{path}: split {name!r} has no {key!r} dataset")
    if not isinstance(item, h5py.Dataset):
        raise DomainFileError(f"{path}: {name}/{key} is a {type(item).__name__.lower()}, not a dataset;"
                              " rebuild the file with python -m data_prep")
    return item


def scan_batch(dataset, limit=SCAN_BATCH):
    """Samples per read of ``dataset``: at most ``limit`` and about :data:`SCAN_BYTES`, at least one."""
    sample_bytes = int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize
    return max(1, min(limit, SCAN_BYTES // max(1, sample_bytes)))


def _describe(path, f, check_values, *, labelled=None):
    _check_self_contained(path, f)
    missing = [name for name in REQUIRED_ATTRS if name not in f.attrs]
    if missing:
        raise DomainFileError(f"{path} lacks the attributes {missing}; it was not written by data_prep")
    version = int(f.attrs["format_version"])
    if version != FORMAT_VERSION:
        raise DomainFileError(
            f"{path} has format_version {version}, this toolkit reads {FORMAT_VERSION}; rebuild it with data_prep"
        )
    if _as_str(f.attrs["layout"]) != LAYOUT:
        raise DomainFileError(f"{path} has layout {_as_str(f.attrs['layout'])!r}; expected {LAYOUT!r}")
    kind = _as_str(f.attrs["kind"])
    if kind not in KINDS:
        raise DomainFileError(f"{path} has kind {kind!r}; expected one of {KINDS}")
    has_labels = _labelled_attr(path, f)
    # The kind of file first: a caller that needs labels learns at once what the file is for.
    if labelled and not has_labels:
        raise DomainFileError(f"{path} holds no labels (written by data_prep csv --unlabelled); predict on it with"
                              " python -m convlstm_tl.predict")
    if labelled is False and has_labels:
        raise DomainFileError(f"{path} is a labelled domain file; expected one without labels"
                              " (written by data_prep csv --unlabelled)")
    try:
        class_names = json.loads(_as_str(f.attrs["class_names"]))
    except (ValueError, RecursionError):
        raise DomainFileError(f"{path}: attribute class_names is not a JSON list") from None
    if has_labels:
        _check_class_names(path, class_names)
    elif class_names != []:
        raise DomainFileError(f"{path} is unlabelled (labelled=false) but has class_names {class_names!r}; an"
                              " unlabelled file has class_names [] (rebuild it with python -m data_prep)")
    vocab = ()
    if kind == "tokens":
        if not isinstance(f.get("vocab"), h5py.Dataset):
            raise DomainFileError(f"{path} is a tokens domain without a vocab dataset")
        vocab = tuple(_as_str(token) for token in f["vocab"][()])

    if has_labels:
        names = SPLITS
    else:
        names = tuple(name for name in SPLITS if name in f)
        if not names:
            raise DomainFileError(f"{path} has none of the splits {list(SPLITS)}; an unlabelled file needs at least"
                                  " one (rebuild it with python -m data_prep)")
    sizes, shapes, groups, positions = {}, {}, {}, {}
    x_dtype = None
    for name in names:
        if name not in f or not isinstance(f[name], h5py.Group):
            raise DomainFileError(f"{path} has no {name!r} split; a domain needs {list(SPLITS)}")
        split = f[name]
        x = _dataset(path, split, name, "x")
        if has_labels:
            y = _dataset(path, split, name, "y")[()]
        elif "y" in split:
            raise DomainFileError(f"{path}: split {name!r} has a 'y' dataset but the file is unlabelled"
                                  " (labelled=false); rebuild it with python -m data_prep")
        else:
            y = None
        ids = {key: _dataset(path, split, name, key)[()] if key in split else None for key in ID_KEYS}
        start = _dataset(path, split, name, "start")[()] if "start" in split else None
        _check_split_arrays(path, name, x, y, ids, n_classes=len(class_names), kind=kind, start=start)
        if check_values:
            step = scan_batch(x)
            for first in range(0, x.shape[0], step):
                _check_values(path, name, x[first:first + step], kind=kind, vocab_size=len(vocab),
                              offset=first)
        if name == "train" and has_labels:
            _check_classes_trained(path, class_names, y)
        sizes[name] = int(x.shape[0])
        shapes[name] = tuple(int(d) for d in x.shape[1:])
        groups[name] = ids
        positions[name] = start
        x_dtype = str(x.dtype)
    _check_same_frame_shape(path, shapes)
    for key in ID_KEYS:
        _check_groups(path, {name: groups[name][key] for name in names}, key=key)
    _check_every_split_or_none(path, positions, what="start")
    has_groups = all(groups[name]["group"] is not None for name in names)
    return DomainInfo(
        path=path,
        domain=_as_str(f.attrs["domain"]),
        class_names=tuple(class_names),
        kind=kind,
        frame_shape=shapes[names[0]],
        split_sizes=sizes,
        has_groups=has_groups,
        provenance=_as_str(f.attrs["provenance"]),
        x_dtype=x_dtype,
        vocab=vocab,
        labelled=has_labels,
    )


def _labelled_attr(path, f):
    """The root attribute ``labelled`` as a bool (True when absent); refuse any other value."""
    value = f.attrs.get("labelled", True)
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise DomainFileError(f"{path}: attribute labelled must be true or false. Received: labelled={_plain(value)!r}")


def _check_split_arrays(path, name, x, y, ids, *, n_classes, kind, start=None):
    """Shapes and dtypes of one split's arrays; ``y`` is None in an unlabelled file."""
    where = f"{path}: split {name!r}"
    if len(x.shape) != 5:
        raise DomainFileError(
            f"{where}: x must have rank 5 (N, T, H, W, C). Received: x.shape={tuple(x.shape)}"
        )
    # A file must hold the exact dtypes; arrays being written may be any
    # numbers, which the writer casts.
    allowed = ("float16", "float32") if kind == "frames" else ("int32",)
    if isinstance(x, h5py.Dataset):
        if str(x.dtype) not in allowed:
            raise DomainFileError(f"{where}: x must be {' or '.join(allowed)}. Received: dtype={x.dtype}")
    elif np.dtype(x.dtype).kind not in "iuf":
        raise DomainFileError(f"{where}: x must be numeric. Received: dtype={x.dtype}")
    if x.shape[0] == 0:
        raise DomainFileError(f"{where} is empty; every split needs at least one sample")
    n = (x.shape[0],)
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or y.shape != n:
            raise DomainFileError(
                f"{where}: y must have shape {n} to match x. Received: y.shape={y.shape}"
            )
        if y.dtype.kind not in "iu":
            raise DomainFileError(f"{where}: y must hold integer labels. Received: dtype={y.dtype}")
        if y.min() < 0 or y.max() >= n_classes:
            raise DomainFileError(
                f"{where}: labels must lie in [0, {n_classes}) for {n_classes} class names."
                f" Received: min={y.min()}, max={y.max()}"
            )
    for key, values in ids.items():
        if values is not None and np.shape(values) != n:
            raise DomainFileError(
                f"{where}: {key} must have shape {n} to match x. Received: {key}.shape={np.shape(values)}"
            )
    if start is not None:
        start = np.asarray(start)
        if start.shape != n:
            raise DomainFileError(
                f"{where}: start must have shape {n} to match x. Received: start.shape={start.shape}"
            )
        if start.dtype.kind not in "iu":
            raise DomainFileError(f"{where}: start must hold integer time steps. Received: dtype={start.dtype}")
        if start.min() < 0:
            raise DomainFileError(f"{where}: start must be >= 0 (a time step within the recording)."
                                  f" Received: min={start.min()}")


def _check_values(path, name, x, *, kind, vocab_size, offset=0):
    """NaN or inf in frames, or token ids outside the vocab."""
    if kind == "tokens":
        if x.size and (x.min() < 0 or x.max() >= vocab_size):
            raise DomainFileError(f"{path}: split {name!r} has token ids outside the vocab of {vocab_size}")
        return
    x = np.asarray(x)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = offset + int(np.argwhere(~np.isfinite(x).reshape(len(x), -1).all(axis=1))[0][0])
        raise DomainFileError(
            f"{path}: split {name!r} has NaN or inf in x (first at sample {bad}); clean the data and rewrite the file"
        )


def _check_class_names(path, class_names):
    if (
        not isinstance(class_names, list)
        or not class_names
        or not all(isinstance(n, str) and n for n in class_names)
    ):
        raise DomainFileError(f"{path}: class_names must be a non-empty JSON list of names. Received: {class_names!r}")
    padded = [name for name in class_names if name != name.strip()]
    if padded:
        raise DomainFileError(f"{path}: class names must not start or end with whitespace."
                              f" Received: {', '.join(repr(n) for n in padded)}")
    seen, duplicates = {}, []
    for name in class_names:
        key = unicodedata.normalize("NFC", name).strip()
        if key in seen:
            duplicates.append(f"{seen[key]!r} and {name!r}")
        seen.setdefault(key, name)
    if duplicates:
        raise DomainFileError(f"{path}: class_names has duplicates (equal after Unicode NFC normalisation):"
                              f" {'; '.join(duplicates)}; give every class a distinct name")


def _check_classes_trained(path, class_names, y):
    """Every class name must label some training sample: a name with none
    means class_names and the labels do not match."""
    missing = [name for label, name in enumerate(class_names) if not np.any(y == label)]
    if missing:
        raise DomainFileError(
            f"{path}: class_names has {len(class_names)} names but the train split has no sample of {missing};"
            " class_names must match the labels (fix the names or the labels and rewrite the file)"
        )


def _check_same_frame_shape(path, shapes):
    if len(set(shapes.values())) > 1:
        raise DomainFileError(f"{path}: splits differ in frame shape (T, H, W, C). Received: {shapes}")


def _check_every_split_or_none(path, values, *, what, plural=False):
    """Refuse a per-sample dataset (``values``: split -> array or None) that some splits have and others lack.

    Returns:
        Whether the splits have it.
    """
    present = {name for name, array in values.items() if array is not None}
    if present and present != set(values):
        raise DomainFileError(f"{path}: {what} {'are' if plural else 'is'} in {sorted(present)} only;"
                              f" give {'them' if plural else 'it'} for every split or none")
    return bool(present)


def _check_groups(path, groups, *, key="group"):
    """Ids in every split present or none, and no id in two splits."""
    if not _check_every_split_or_none(path, groups, what=f"{key} ids", plural=True):
        return
    seen = {}
    for name in groups:
        for gid in np.unique(_normalise_ids(groups[name])):
            if gid in seen and seen[gid] != name:
                raise DomainFileError(
                    f"{path}: {key} {_plain(gid)!r} is in both {seen[gid]!r} and {name!r}; "
                    "split by group so that no subject or recording leaks across splits"
                )
            seen.setdefault(gid, name)


def _normalise_ids(ids):
    ids = np.asarray(ids)
    if ids.dtype.kind in "SO":
        return np.array([_as_str(i) for i in ids])
    return ids


def _plain(value):
    """A NumPy scalar as the Python value it holds (for messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _as_str(value):
    return value.decode() if isinstance(value, bytes) else str(value)
