"""Domain files: one HDF5 file per domain, written by ``data_prep``.

The format (see DESIGN.md) in short::

    <data-dir>/<Domain>.h5
      attrs: format_version=1, domain, class_names (JSON list), layout="THWC",
             kind ("frames" | "tokens"), provenance
      vocab                       (tokens only) token strings
      train/ val/ test/
        x      (N, T, H, W, C) float32|float16 (int32 ids for tokens),
               chunked one sample per chunk
        y      (N,) int64 in [0, len(class_names))
        group  (N,) int64 or str, optional; no id in two splits
        recording (N,) int64 or str, optional; the unit that low-label
               sampling takes whole (e.g. one recording of one subject)

This module is the only one that knows the layout. :class:`DomainWriter` checks
samples chunk by chunk as they are written (to a temporary file, checked as a
whole and renamed at the end), so a converter need not hold its output in
memory; :func:`write_domain` writes whole arrays through it; and
:func:`open_domain` checks a file before anything trains on it, reading ``x``
chunk by chunk so a file larger than memory can be validated.
"""

import errno
import hashlib
import json
import os
import unicodedata
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from convlstm_tl.errors import DomainFileError, UserError
from convlstm_tl.files import give_usual_permissions

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
LAYOUT = "THWC"
KINDS = ("frames", "tokens")
REQUIRED_ATTRS = ("format_version", "domain", "class_names", "layout", "kind", "provenance")
DATA_DIR_ENV = "CONVLSTM_TL_DATA"
DEFAULT_DATA_DIR = "data"
# Optional per-sample id datasets of a split, checked for leaks across splits.
ID_KEYS = ("group", "recording")
# How many samples validation and statistics read at a time, at most...
SCAN_BATCH = 512
# ...and at most this many bytes (but always at least one sample).
SCAN_BYTES = 64 * 2**20
# Faults of the disk, not of the data: errno values and the words h5py's
# wrapped errors carry for them.
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "permission denied"}
STORAGE_WORDS = {"no space left on device": "no space left on device", "disk quota exceeded": "disk quota exceeded",
                 "read-only file system": "read-only file system", "permission denied": "permission denied"}
LOCK_WORDS = ("unable to lock file", "resource temporarily unavailable", "errno = 11")
# Samples per HDF5 chunk of the 1-D datasets (y, ids), which grow as chunks arrive.
ID_CHUNK = 1024


@dataclass
class SplitArrays:
    """In-memory arrays of one split, as given to :func:`write_domain`.

    Args:
        x: frames ``(N, T, H, W, C)``.
        y: integer labels ``(N,)``.
        group: optional subject or recording ids ``(N,)``; no id may be in
            two splits.
        recording: optional ids ``(N,)`` of the recordings the samples were
            cut from, finer than ``group``; target subsampling takes whole
            recordings.
    """

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray | None = None
    recording: np.ndarray | None = None


@dataclass(frozen=True)
class DomainInfo:
    """What a validated domain file holds (no sample data).

    Attributes:
        path: the file.
        domain: the domain's name.
        class_names: names of the classes, indexed by label id.
        kind: ``"frames"`` or ``"tokens"``.
        frame_shape: ``(T, H, W, C)`` of one sample.
        split_sizes: number of samples in each split.
        has_groups: whether the splits carry group ids.
        provenance: where the data came from and how it was cut.
        x_dtype: dtype name of ``x``.
        vocab: token strings of a ``tokens`` domain, else empty.
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


def write_domain(path, splits, *, domain, class_names, provenance, kind="frames", vocab=None, compression=None):
    """Validate arrays and write them as a domain file.

    The file is written to a temporary name next to ``path`` and renamed at the
    end, so ``path`` is either the complete new file or untouched. This is
    :class:`DomainWriter` with one chunk per split.

    Args:
        path: destination ``.h5`` file.
        splits: mapping of split name (``train``, ``val``, ``test``) to
            :class:`SplitArrays`.
        domain: the domain's name, stored in the file.
        class_names: list of class names; labels index into it.
        provenance: where the data came from and how it was cut.
        kind: ``"frames"`` or ``"tokens"``.
        vocab: token strings, required for ``kind="tokens"``.
        compression: HDF5 filter of ``x`` (e.g. ``"gzip"``), applied per
            sample chunk; None stores it raw. Readers need no option.

    Returns:
        The :class:`DomainInfo` of the written file.

    Raises:
        DomainFileError: if the arrays do not follow the format.
    """
    missing = [name for name in SPLITS if name not in splits]
    if missing:
        raise DomainFileError(f"splits {missing} are missing; a domain needs {list(SPLITS)}")
    xs = {name: np.asarray(splits[name].x) for name in SPLITS}
    # float16 input stays float16 only if every split is float16; any other
    # numbers are stored as float32 (frames) or int32 ids (tokens).
    if kind == "tokens":
        x_dtype = "int32"
    else:
        x_dtype = "float16" if all(x.dtype == np.float16 for x in xs.values()) else "float32"
    with DomainWriter(path, domain=domain, class_names=class_names, provenance=provenance,
                      frame_shape=xs["train"].shape[1:], kind=kind, vocab=vocab, x_dtype=x_dtype,
                      compression=compression) as writer:
        for name in SPLITS:
            arrays = splits[name]
            writer.append(name, xs[name], arrays.y, group=arrays.group, recording=arrays.recording)
    return writer.info


class DomainWriter:
    """Write a domain file chunk by chunk, so it can be larger than memory.

    Each :meth:`append` validates its chunk (shape, dtype, finite values,
    label range, id shapes) and appends it to resizable datasets, one sample
    per HDF5 chunk. On a clean exit the file as a whole is checked (no empty
    split, no id in two splits, every class in train) and renamed into place;
    on any error the temporary file is removed and ``path`` is untouched.

    Args:
        path: destination ``.h5`` file.
        domain: the domain's name, stored in the file.
        class_names: list of class names; labels index into it.
        provenance: where the data came from and how it was cut.
        frame_shape: ``(T, H, W, C)`` of every sample.
        kind: ``"frames"`` or ``"tokens"``.
        vocab: token strings, required for ``kind="tokens"``.
        x_dtype: stored dtype of ``x``: ``"float32"`` or ``"float16"`` for
            frames, ``"int32"`` for tokens (the default then).
        compression: HDF5 filter of ``x`` (e.g. ``"gzip"``), per sample chunk.

    Attributes:
        info: the :class:`DomainInfo` of the written file, after a clean exit.

    Example:

    >>> with DomainWriter(path, domain="d", class_names=["a", "b"], provenance="...",
    ...                   frame_shape=(10, 1, 25, 3)) as writer:  # doctest: +SKIP
    ...     for split, x, y, group in chunks:
    ...         writer.append(split, x, y, group=group)
    >>> writer.info.split_sizes  # doctest: +SKIP
    """

    def __init__(self, path, *, domain, class_names, provenance, frame_shape, kind="frames", vocab=None,
                 x_dtype="float32", compression=None):
        self.path = Path(path)
        if kind not in KINDS:
            raise DomainFileError(f"kind must be one of {KINDS}. Received: kind={kind!r}")
        if kind == "tokens" and not vocab:
            raise DomainFileError("a tokens domain needs its vocab")
        self.class_names = [str(name) for name in class_names]
        _check_class_names(self.path, self.class_names)
        frame_shape = tuple(frame_shape)
        if len(frame_shape) != 4 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in frame_shape):
            raise DomainFileError(f"{self.path}: frame_shape must be 4 positive sizes (T, H, W, C), as x has rank 5"
                                  f" (N, T, H, W, C). Received: frame_shape={frame_shape}")
        if kind == "tokens" and x_dtype == "float32":
            x_dtype = "int32"
        allowed = ("float16", "float32") if kind == "frames" else ("int32",)
        if str(np.dtype(x_dtype)) not in allowed:
            raise DomainFileError(f"x_dtype of a {kind} domain must be {' or '.join(allowed)}."
                                  f" Received: x_dtype={x_dtype!r}")
        self.domain, self.provenance, self.kind = domain, provenance, kind
        self.vocab = None if vocab is None else list(vocab)
        self.frame_shape = tuple(int(d) for d in frame_shape)
        self.x_dtype = np.dtype(x_dtype)
        self.compression = compression
        self.info = None
        self._file = self._tmp_name = None
        # Per split and id key: "strings", "integers" or "" (no ids) as the first chunk set it.
        self._id_kinds = {name: dict.fromkeys(ID_KEYS) for name in SPLITS}

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, self._tmp_name = tempfile.mkstemp(prefix=f".{self.path.stem}-", suffix=".h5.tmp",
                                                      dir=self.path.parent)
            os.close(handle)
        except OSError as error:
            raise _storage_error(self.path, error) or error from None
        try:
            give_usual_permissions(self._tmp_name)
            self._file = f = h5py.File(self._tmp_name, "w")
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["domain"] = self.domain
            f.attrs["class_names"] = json.dumps(self.class_names)
            f.attrs["layout"] = LAYOUT
            f.attrs["kind"] = self.kind
            f.attrs["provenance"] = self.provenance
            if self.vocab is not None:
                f.create_dataset("vocab", data=np.array(self.vocab, dtype=h5py.string_dtype()))
            for name in SPLITS:
                group = f.create_group(name)
                group.create_dataset("x", shape=(0, *self.frame_shape), maxshape=(None, *self.frame_shape),
                                     dtype=self.x_dtype, chunks=(1, *self.frame_shape),
                                     compression=self.compression)
                group.create_dataset("y", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(ID_CHUNK,))
        except BaseException as error:
            self._abort()
            mapped = _storage_error(self.path, error)
            if mapped is not None:
                raise mapped from None
            raise
        return self

    def append(self, split, x, y, group=None, recording=None):
        """Validate a chunk of samples and append it to ``split``.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            x: ``(n, T, H, W, C)`` numbers, cast to the file's ``x_dtype``.
            y: integer labels ``(n,)``.
            group, recording: optional ids ``(n,)``; give them with every
                chunk of a split or with none.

        Raises:
            DomainFileError: if the chunk does not follow the format; nothing
                of it is written then.
        """
        if self._file is None:
            raise RuntimeError("DomainWriter.append needs an open writer: use it in a `with` block")
        if split not in SPLITS:
            raise DomainFileError(f"{self.path}: split must be one of {SPLITS}. Received: split={split!r}")
        x, y = np.asarray(x), np.asarray(y)
        ids = {"group": group, "recording": recording}
        if x.ndim == 5 and x.shape[0] == 0 and y.shape == (0,):
            return
        _check_split_arrays(self.path, split, x, y, ids, n_classes=len(self.class_names), kind=self.kind)
        if x.shape[1:] != self.frame_shape:
            _check_same_frame_shape(self.path, {"frame_shape": self.frame_shape, split: x.shape[1:]})
        kinds = {key: _id_kind(values) for key, values in ids.items()}
        for key, id_kind in kinds.items():
            if self._id_kinds[split][key] not in (None, id_kind):
                raise DomainFileError(
                    f"{self.path}: split {split!r} got {self._id_kinds[split][key] or 'no'} {key} ids in an earlier"
                    f" chunk; give the same kind of ids (strings or integers) with every chunk, or none."
                    f" Received: {key} {id_kind or 'None'}"
                )
        # Check what will be stored: a float64 value beyond float32's range
        # only becomes inf in the cast.
        with np.errstate(over="ignore", invalid="ignore"):
            stored = x.astype(self.x_dtype, copy=False)
        offset = self._file[split]["x"].shape[0]
        _check_values(self.path, split, stored, kind=self.kind, vocab_size=len(self.vocab or ()), offset=offset)
        try:
            _write_split(self._file[split], stored, SplitArrays(x=stored, y=y, **ids), compression=self.compression)
        except (OSError, RuntimeError) as error:
            mapped = _storage_error(self.path, error)
            if mapped is None:
                raise
            # The writer is spent: remove its temporary now, whatever the caller does next.
            self._abort()
            raise mapped from None
        self._id_kinds[split].update(kinds)

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None:
            self._abort()
            mapped = _storage_error(self.path, exc) if isinstance(exc, (OSError, RuntimeError)) else None
            if mapped is not None:
                raise mapped from None
            return False
        if self._file is None:
            return False
        try:
            # The checks that need all the data, named after the final path.
            self.info = _describe(self.path, self._file, check_values=False)
            self._file.close()
            os.replace(self._tmp_name, self.path)
        except BaseException as error:
            self._abort()
            mapped = _storage_error(self.path, error)
            if mapped is not None:
                raise mapped from None
            raise
        self._file = None
        return False

    def _abort(self):
        """Remove the temporary file, whatever state the HDF5 file is in.

        The name goes first (POSIX keeps an open file's data until it is
        closed), so a close that fails, as it does on a full disk when HDF5
        flushes its cache, cannot leave the temporary behind; close errors
        are swallowed, as the file is being thrown away.
        """
        tmp_name, self._tmp_name = self._tmp_name, None
        if tmp_name is not None:
            try:
                Path(tmp_name).unlink(missing_ok=True)
            except OSError:
                pass
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except BaseException:
                # Close the low-level handle so that nothing retries the flush at exit.
                try:
                    file.id.close()
                except BaseException:
                    pass
        if tmp_name is not None:
            # Windows refuses to unlink an open file: try again once it is closed.
            try:
                Path(tmp_name).unlink(missing_ok=True)
            except OSError:
                pass


def _storage_error(path, error):
    """A :class:`DomainFileError` for a disk fault (full, quota, read-only, no permission)
    behind ``error``, else None."""
    if not isinstance(error, (OSError, RuntimeError)) or isinstance(error, UserError):
        return None
    reason = STORAGE_ERRNOS.get(getattr(error, "errno", None))
    if reason is None:
        text = str(error).lower()
        reason = next((why for words, why in STORAGE_WORDS.items() if words in text), None)
    if reason is None:
        return None
    advice = {"no space left on device": "free space and run again",
              "disk quota exceeded": "free space (or raise the quota) and run again",
              "read-only file system": "write to a writable folder (--out)",
              "permission denied": "write to a folder you may write to (--out)"}[reason]
    return DomainFileError(f"{reason} writing {path}; {advice}")


def _write_split(group, x, arrays, *, compression=None):
    """Append ``x`` (already in the stored dtype) and the labels and ids of ``arrays`` to a split's datasets."""
    start, stop = group["x"].shape[0], group["x"].shape[0] + len(x)
    for key in ("x", "y") + ID_KEYS:
        values = x if key == "x" else getattr(arrays, key)
        if values is None:
            continue
        values = np.asarray(values)
        if key in ID_KEYS:
            strings = _id_kind(values) == "strings"
            values = values.astype(str).astype(object) if strings else values.astype(np.int64)
            if key not in group:
                group.create_dataset(key, shape=(0,), maxshape=(None,), chunks=(ID_CHUNK,),
                                     dtype=h5py.string_dtype() if strings else np.int64)
        elif key == "y":
            values = values.astype(np.int64)
        dataset = group[key]
        dataset.resize(stop, axis=0)
        dataset[start:stop] = values


def _id_kind(ids):
    """How ids are stored: ``"strings"``, ``"integers"``, or ``""`` for no ids."""
    if ids is None:
        return ""
    return "strings" if np.asarray(ids).dtype.kind in "USO" else "integers"


def open_domain(path, *, check_values=True):
    """Open a domain file, check it, and describe it.

    Args:
        path: the ``.h5`` file.
        check_values: also scan ``x`` for NaN and inf (chunk by chunk).

    Returns:
        A :class:`DomainInfo`.

    Raises:
        DomainFileError: with one line saying what is wrong, for a missing,
            corrupt or non-conforming file.
    """
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
            f"{path} is not a readable HDF5 file ({_first_line(error)}); rebuild it with python -m data_prep"
        ) from None
    try:
        with f:
            return _describe(path, f, check_values)
    except DomainFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, RecursionError) as error:
        raise DomainFileError(f"{path} is corrupt ({_first_line(error)}); rebuild it with python -m data_prep") from None


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


def _describe(path, f, check_values):
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
    try:
        class_names = json.loads(_as_str(f.attrs["class_names"]))
    except (ValueError, RecursionError):
        raise DomainFileError(f"{path}: attribute class_names is not a JSON list") from None
    _check_class_names(path, class_names)
    vocab = ()
    if kind == "tokens":
        if not isinstance(f.get("vocab"), h5py.Dataset):
            raise DomainFileError(f"{path} is a tokens domain without a vocab dataset")
        vocab = tuple(_as_str(token) for token in f["vocab"][()])

    sizes, shapes, groups = {}, {}, {}
    x_dtype = None
    for name in SPLITS:
        if name not in f or not isinstance(f[name], h5py.Group):
            raise DomainFileError(f"{path} has no {name!r} split; a domain needs {list(SPLITS)}")
        split = f[name]
        x, y = _dataset(path, split, name, "x"), _dataset(path, split, name, "y")[()]
        ids = {key: _dataset(path, split, name, key)[()] if key in split else None for key in ID_KEYS}
        _check_split_arrays(path, name, x, y, ids, n_classes=len(class_names), kind=kind)
        if check_values:
            step = scan_batch(x)
            for start in range(0, x.shape[0], step):
                _check_values(path, name, x[start:start + step], kind=kind, vocab_size=len(vocab),
                              offset=start)
        if name == "train":
            _check_classes_trained(path, class_names, y)
        sizes[name] = int(x.shape[0])
        shapes[name] = tuple(int(d) for d in x.shape[1:])
        groups[name] = ids
        x_dtype = str(x.dtype)
    _check_same_frame_shape(path, shapes)
    for key in ID_KEYS:
        _check_groups(path, {name: groups[name][key] for name in SPLITS}, key=key)
    has_groups = all(groups[name]["group"] is not None for name in SPLITS)
    return DomainInfo(
        path=path,
        domain=_as_str(f.attrs["domain"]),
        class_names=tuple(class_names),
        kind=kind,
        frame_shape=shapes["train"],
        split_sizes=sizes,
        has_groups=has_groups,
        provenance=_as_str(f.attrs["provenance"]),
        x_dtype=x_dtype,
        vocab=vocab,
    )


def _check_split_arrays(path, name, x, y, ids, *, n_classes, kind):
    where = f"{path}: split {name!r}"
    if len(x.shape) != 5:
        raise DomainFileError(
            f"{where}: x must have rank 5 (N, T, H, W, C). Received: x.shape={tuple(x.shape)}"
        )
    # A file must hold the exact dtypes; arrays being written may be any
    # numbers, which _write_split casts.
    allowed = ("float16", "float32") if kind == "frames" else ("int32",)
    if isinstance(x, h5py.Dataset):
        if str(x.dtype) not in allowed:
            raise DomainFileError(f"{where}: x must be {' or '.join(allowed)}. Received: dtype={x.dtype}")
    elif np.dtype(x.dtype).kind not in "iuf":
        raise DomainFileError(f"{where}: x must be numeric. Received: dtype={x.dtype}")
    if x.shape[0] == 0:
        raise DomainFileError(f"{where} is empty; every split needs at least one sample")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DomainFileError(
            f"{where}: y must have shape ({x.shape[0]},) to match x. Received: y.shape={y.shape}"
        )
    if y.dtype.kind not in "iu":
        raise DomainFileError(f"{where}: y must hold integer labels. Received: dtype={y.dtype}")
    if y.min() < 0 or y.max() >= n_classes:
        raise DomainFileError(
            f"{where}: labels must lie in [0, {n_classes}) for {n_classes} class names."
            f" Received: min={y.min()}, max={y.max()}"
        )
    for key, values in ids.items():
        if values is not None and np.shape(values) != y.shape:
            raise DomainFileError(
                f"{where}: {key} must have shape {y.shape} to match y. Received: {key}.shape={np.shape(values)}"
            )


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


def _check_groups(path, groups, *, key="group"):
    present = {name for name, ids in groups.items() if ids is not None}
    if present and present != set(SPLITS):
        raise DomainFileError(f"{path}: {key} ids are in {sorted(present)} only; give them for every split or none")
    if not present:
        return
    seen = {}
    for name in SPLITS:
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


def _first_line(error):
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def read_split(path, split, indices=None):
    """Read ``x`` and ``y`` of a split (all of it, or the sorted ``indices``).

    Meant for small domains, converters and tests; training streams batches
    through :class:`convlstm_tl.data.sequence.DomainSequence` instead.
    """
    with h5py.File(path, "r") as f:
        g = f[split]
        if indices is None:
            return g["x"][()], g["y"][()]
        indices = np.sort(np.asarray(indices))
        return g["x"][indices], g["y"][indices]


def read_labels(path, split):
    """Return the labels of a split and its group ids (None without groups)."""
    with h5py.File(path, "r") as f:
        g = f[split]
        group = _normalise_ids(g["group"][()]) if "group" in g else None
        return g["y"][()], group


def read_sampling_units(path, split):
    """Ids of the units that subsampling must keep whole, one per sample.

    The finest unit the file records: ``recording`` if present, else
    ``group``, else None (each sample is its own unit).
    """
    with h5py.File(path, "r") as f:
        g = f[split]
        for key in ("recording", "group"):
            if key in g:
                return _normalise_ids(g[key][()])
    return None


def iter_x(path, split, *, batch_size=SCAN_BATCH, indices=None):
    """Yield ``x`` of a split in consecutive chunks, never all at once."""
    with h5py.File(path, "r") as f:
        x = f[split]["x"]
        batch_size = scan_batch(x, batch_size)
        if indices is None:
            for start in range(0, x.shape[0], batch_size):
                yield x[start:start + batch_size]
        else:
            indices = np.sort(np.asarray(indices))
            for start in range(0, len(indices), batch_size):
                yield x[indices[start:start + batch_size]]


def channel_stats(path, split="train", *, indices=None):
    """Per-channel mean and variance of ``x``, streamed in chunks (float64 sums).

    Returns:
        ``(mean, variance)``, each a float32 array of shape ``(C,)``.
    """
    total = total_sq = None
    count = 0
    for chunk in iter_x(path, split, indices=indices):
        flat = chunk.reshape(-1, chunk.shape[-1]).astype(np.float64)
        if total is None:
            total = np.zeros(flat.shape[1])
            total_sq = np.zeros(flat.shape[1])
        total += flat.sum(axis=0)
        total_sq += np.square(flat).sum(axis=0)
        count += flat.shape[0]
    mean = total / count
    variance = np.maximum(total_sq / count - np.square(mean), 0.0)
    return mean.astype(np.float32), variance.astype(np.float32)


def vocab_fingerprint(vocab):
    """A short digest of a vocabulary, in order: equal digests mean equal token ids.

    Runs record it so that a transfer can tell, without the source's file,
    whether a target was encoded with the same vocabulary.
    """
    digest = hashlib.sha256("\n".join(str(token) for token in vocab).encode()).hexdigest()
    return digest[:16]


def summarize_domain(path, *, check_values=False):
    """Counts of a domain file: samples per split and class, and groups per split.

    Args:
        path: the ``.h5`` file; it is validated first (see :func:`open_domain`).
        check_values: also scan ``x`` for NaN and inf.

    Returns:
        A dict with ``domain``, ``kind``, ``class_names``, ``frame_shape``,
        ``x_dtype``, ``vocab_size`` (0 for frames), ``provenance`` and
        ``splits``: ``{split: {"n": int, "per_class": {name: int},
        "n_groups": int or None}}``.
    """
    info = open_domain(path, check_values=check_values)
    splits = {}
    for name in SPLITS:
        y, group = read_labels(info.path, name)
        counts = np.bincount(y, minlength=info.n_classes)
        splits[name] = {
            "n": int(len(y)),
            "per_class": {cls: int(n) for cls, n in zip(info.class_names, counts)},
            "n_groups": None if group is None else int(len(np.unique(group))),
        }
    return {
        "path": str(info.path),
        "domain": info.domain,
        "kind": info.kind,
        "class_names": list(info.class_names),
        "frame_shape": list(info.frame_shape),
        "x_dtype": info.x_dtype,
        "vocab_size": len(info.vocab),
        "provenance": info.provenance,
        "splits": splits,
    }
