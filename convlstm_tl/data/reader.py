"""Reading a domain file's data back: samples, labels, ids and starts, sampling units, ``x`` in chunks.

The file is taken as valid (see :func:`convlstm_tl.data.format.open_domain`).
Training streams batches through :class:`convlstm_tl.data.sequence.DomainSequence`.
"""

import h5py
import numpy as np

from convlstm_tl.data.format import ID_KEYS, POSITION_KEYS, SCAN_BATCH, _normalise_ids, scan_batch


def read_split(path, split, indices=None):
    """Read ``x`` and ``y`` of a split (all of it, or the sorted ``indices``); ``y`` is None in an unlabelled file.

    Meant for small domains, converters and tests; training streams batches
    through :class:`convlstm_tl.data.sequence.DomainSequence` instead.
    """
    with h5py.File(path, "r") as f:
        g = f[split]
        if indices is None:
            return g["x"][()], g["y"][()] if "y" in g else None
        indices = np.sort(np.asarray(indices))
        return g["x"][indices], g["y"][indices] if "y" in g else None


def read_ids(path, split):
    """The per-sample ids and positions a split holds, to name its samples (e.g. rows of predictions).

    Returns:
        A dict with those of ``group``, ``recording`` (ids: int64, or str
        for string ids) and ``start`` (int64: each sample's first time step
        within its recording) that the split has, each of shape ``(N,)``;
        empty when it has none.
    """
    with h5py.File(path, "r") as f:
        g = f[split]
        return {key: _normalise_ids(g[key][()]) for key in ID_KEYS + POSITION_KEYS if key in g}


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
