"""Writing domain files: :class:`DomainWriter` and :func:`write_domain`.

:class:`DomainWriter` checks samples chunk by chunk as they are written (to a
temporary file, checked as a whole and renamed at the end), so a converter need
not hold its output in memory; :func:`write_domain` writes whole arrays through
it. The layout and the checks are those of :mod:`convlstm_tl.data.format`.
Both write unlabelled files too (``class_names=[]`` and no ``y``): samples to
predict on, in the splits they are given.
"""

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from convlstm_tl.data.format import (
    FORMAT_VERSION, ID_KEYS, KINDS, LAYOUT, POSITION_KEYS, SPLITS, SplitArrays, _check_class_names,
    _check_same_frame_shape, _check_split_arrays, _check_values, _describe,
)
from convlstm_tl.errors import DomainFileError, UserError
from convlstm_tl.files import give_usual_permissions

# Faults of the disk, not of the data: errno values and the words h5py's
# wrapped errors carry for them.
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "permission denied"}
STORAGE_WORDS = {"no space left on device": "no space left on device", "disk quota exceeded": "disk quota exceeded",
                 "read-only file system": "read-only file system", "permission denied": "permission denied"}
# Samples per HDF5 chunk of the 1-D datasets (y, ids), which grow as chunks arrive.
ID_CHUNK = 1024


def write_domain(path, splits, *, domain, class_names, provenance, kind="frames", vocab=None, compression=None):
    """Validate arrays and write them as a domain file.

    The file is written to a temporary name next to ``path`` and renamed at the
    end, so ``path`` is either the complete new file or untouched. This is
    :class:`DomainWriter` with one chunk per split.

    Args:
        path: destination ``.h5`` file.
        splits: mapping of split name (``train``, ``val``, ``test``) to
            :class:`SplitArrays`: all three for a labelled file, one or more
            (with ``y=None``) for an unlabelled one.
        domain: the domain's name, stored in the file.
        class_names: list of class names; labels index into it. Empty or
            None writes an unlabelled file.
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
    unknown = [name for name in splits if name not in SPLITS]
    if unknown:
        raise DomainFileError(f"{path}: split must be one of {SPLITS}. Received: split={unknown[0]!r}")
    labelled = class_names is not None and len(class_names) > 0
    missing = [name for name in SPLITS if name not in splits]
    if labelled and missing:
        raise DomainFileError(f"splits {missing} are missing; a domain needs {list(SPLITS)}")
    if not labelled and len(missing) == len(SPLITS):
        raise DomainFileError(f"{path}: no split given; an unlabelled file needs at least one of {list(SPLITS)}")
    names = [name for name in SPLITS if name in splits]
    xs = {name: np.asarray(splits[name].x) for name in names}
    # float16 input stays float16 only if every split is float16; any other
    # numbers are stored as float32 (frames) or int32 ids (tokens).
    if kind == "tokens":
        x_dtype = "int32"
    else:
        x_dtype = "float16" if all(x.dtype == np.float16 for x in xs.values()) else "float32"
    with DomainWriter(path, domain=domain, class_names=class_names, provenance=provenance,
                      frame_shape=xs[names[0]].shape[1:], kind=kind, vocab=vocab, x_dtype=x_dtype,
                      compression=compression) as writer:
        for name in names:
            arrays = splits[name]
            writer.append(name, xs[name], arrays.y, group=arrays.group, recording=arrays.recording,
                          start=arrays.start)
    return writer.info


class DomainWriter:
    """Write a domain file chunk by chunk, so it can be larger than memory.

    Each :meth:`append` validates its chunk (shape, dtype, finite values,
    label range, id shapes) and appends it to resizable datasets, one sample
    per HDF5 chunk. On a clean exit the file as a whole is checked (no empty
    split, no id in two splits, every class in train) and renamed into place;
    on any error the temporary file is removed and ``path`` is untouched.

    A labelled file has all three splits. With ``class_names`` empty or None
    the file is unlabelled: chunks come without ``y``, and it holds only
    the splits that chunks were appended to.

    Args:
        path: destination ``.h5`` file.
        domain: the domain's name, stored in the file.
        class_names: list of class names; labels index into it. Empty or
            None writes an unlabelled file.
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
        self.class_names = [] if class_names is None else [str(name) for name in class_names]
        self.labelled = bool(self.class_names)
        if self.labelled:
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
        # Per split and id key (and start): "strings", "integers" or "" (none) as the first chunk set it.
        self._id_kinds = {name: dict.fromkeys(ID_KEYS + POSITION_KEYS) for name in SPLITS}

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, self._tmp_name = tempfile.mkstemp(prefix=f".{self.path.stem}-", suffix=".h5.tmp",
                                                      dir=self.path.parent)
            os.close(handle)
        except OSError as error:
            raise _storage_error(self.path, error) or error from None
        with self._abort_on_error():
            give_usual_permissions(self._tmp_name)
            self._file = f = h5py.File(self._tmp_name, "w")
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["domain"] = self.domain
            f.attrs["class_names"] = json.dumps(self.class_names)
            f.attrs["layout"] = LAYOUT
            f.attrs["kind"] = self.kind
            f.attrs["provenance"] = self.provenance
            if not self.labelled:
                # Written only when false, so labelled files stay as they were.
                f.attrs["labelled"] = False
            if self.vocab is not None:
                f.create_dataset("vocab", data=np.array(self.vocab, dtype=h5py.string_dtype()))
            if self.labelled:
                for name in SPLITS:
                    self._create_split(name)
        return self

    def _create_split(self, name):
        group = self._file.create_group(name)
        group.create_dataset("x", shape=(0, *self.frame_shape), maxshape=(None, *self.frame_shape),
                             dtype=self.x_dtype, chunks=(1, *self.frame_shape), compression=self.compression)
        if self.labelled:
            group.create_dataset("y", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(ID_CHUNK,))
        return group

    def append(self, split, x, y=None, group=None, recording=None, start=None):
        """Validate a chunk of samples and append it to ``split``.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            x: ``(n, T, H, W, C)`` numbers, cast to the file's ``x_dtype``.
            y: integer labels ``(n,)``; None (and only None) for an
                unlabelled file.
            group, recording: optional ids ``(n,)``; give them with every
                chunk of a split or with none.
            start: optional integers ``(n,)`` >= 0, each sample's first time
                step within its recording; with every chunk or none.

        Raises:
            DomainFileError: if the chunk does not follow the format; nothing
                of it is written then.
        """
        if self._file is None:
            raise RuntimeError("DomainWriter.append needs an open writer: use it in a `with` block")
        if split not in SPLITS:
            raise DomainFileError(f"{self.path}: split must be one of {SPLITS}. Received: split={split!r}")
        if self.labelled and y is None:
            raise DomainFileError(f"{self.path}: split {split!r} got no labels (y=None), but the file is labelled"
                                  f" ({len(self.class_names)} class names); give y, or class_names=[] to write"
                                  " an unlabelled file")
        if not self.labelled and y is not None:
            raise DomainFileError(f"{self.path}: split {split!r} got labels y, but the file is unlabelled"
                                  " (class_names=[]); give y=None, or the class names to write a labelled file")
        x = np.asarray(x)
        y = None if y is None else np.asarray(y)
        ids = {"group": group, "recording": recording}
        if x.ndim == 5 and x.shape[0] == 0 and (y is None or y.shape == (0,)):
            if split not in self._file and x.shape[1:] == self.frame_shape:
                # An unlabelled split exists once given, even empty: the whole-file check then refuses it.
                self._create_split(split)
            return
        _check_split_arrays(self.path, split, x, y, ids, n_classes=len(self.class_names), kind=self.kind,
                            start=start)
        if x.shape[1:] != self.frame_shape:
            _check_same_frame_shape(self.path, {"frame_shape": self.frame_shape, split: x.shape[1:]})
        kinds = {key: _id_kind(values) for key, values in {**ids, "start": start}.items()}
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
        offset = self._file[split]["x"].shape[0] if split in self._file else 0
        _check_values(self.path, split, stored, kind=self.kind, vocab_size=len(self.vocab or ()), offset=offset)
        try:
            target = self._file[split] if split in self._file else self._create_split(split)
            _write_split(target, stored, SplitArrays(x=stored, y=y, start=start, **ids),
                         compression=self.compression)
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
        with self._abort_on_error():
            if not self.labelled and not any(name in self._file for name in SPLITS):
                raise DomainFileError(f"{self.path}: no samples were given; an unlabelled file needs at least one"
                                      f" of the splits {list(SPLITS)}")
            # The checks that need all the data, named after the final path.
            self.info = _describe(self.path, self._file, check_values=False, labelled=self.labelled)
            self._file.close()
            os.replace(self._tmp_name, self.path)
        self._file = None
        return False

    @contextlib.contextmanager
    def _abort_on_error(self):
        """Any failure inside removes the temporary file; a storage fault becomes one line."""
        try:
            yield
        except BaseException as error:
            self._abort()
            mapped = _storage_error(self.path, error)
            if mapped is not None:
                raise mapped from None
            raise

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
    """Append ``x`` (already in the stored dtype) and the labels, ids and starts of ``arrays`` to a split's datasets."""
    start, stop = group["x"].shape[0], group["x"].shape[0] + len(x)
    for key in ("x", "y") + ID_KEYS + POSITION_KEYS:
        values = x if key == "x" else getattr(arrays, key)
        if values is None:
            continue
        values = np.asarray(values)
        if key in ID_KEYS + POSITION_KEYS:
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
