"""Batches streamed from a domain file for Keras training and prediction.

:class:`DomainSequence` is a backend-neutral ``keras.utils.PyDataset``: it
opens the HDF5 file lazily (once per worker process), reads only the samples
of the batch it is asked for, and shuffles reproducibly from a seed.
:class:`ArraySequence` batches in-memory arrays (cached body features) the
same way, and :class:`FrameSequence` yields frames with their normalized
selves, the targets of the pretraining autoencoder.
"""

import math

import h5py
import keras
import numpy as np

from convlstm_tl.data.augment import augment_batch


def epoch_order(n, *, shuffle, seed, epoch):
    """Positions ``0..n-1`` in the order of ``epoch``: a permutation seeded by
    ``(seed, epoch)`` when shuffling, else the identity."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def read_rows(dataset, rows):
    """Read ``dataset[rows]`` for sorted, distinct ``rows``, one slice per run of consecutive rows.

    h5py's point selection (``dataset[rows]``) is slow on chunked, compressed
    data: on the digits domains (gzip, one 40x40x10 sample per chunk) reading
    shuffled batches of 32 that way took 20 s an epoch against 1-2 s for one
    read per sample. Runs of consecutive rows (an unshuffled batch is one run)
    are read as a single slice.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), *dataset.shape[1:]), dtype=dataset.dtype)
    starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)
    ends = np.append(starts[1:], len(rows))
    for start, end in zip(starts, ends):
        dataset.read_direct(out, np.s_[rows[start]:rows[end - 1] + 1], np.s_[start:end])
    return out


class _SeededEpochs(keras.utils.PyDataset):
    """A dataset whose sample order is a function of ``(seed, epoch)``, so a resumed run reads as the first did.

    Subclasses define ``_order_for_epoch(epoch)``.
    """

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch):
        """Put the sequence in the state it has at the start of ``epoch``."""
        self.epoch = int(epoch)
        self._order = self._order_for_epoch(self.epoch)
        self._order_changed()

    def _order_changed(self):
        """Called whenever the order changes (a new epoch)."""


class DomainSequence(_SeededEpochs):
    """Batches ``(x, y)`` of one split of a domain file, or of several pooled.

    Args:
        path: the domain ``.h5`` file.
        split: ``"train"``, ``"val"`` or ``"test"``; or a tuple of them,
            pooled into one set (a refit trains on ``("train", "val")``).
        batch_size: samples per batch.
        indices: optional subset of the split's sample indices to use; with
            several splits, a tuple of them (None for a whole split).
        shuffle: reshuffle the order at the start of every epoch.
        seed: seed of the shuffling; epoch ``e`` uses ``(seed, e)``, so the
            order is the same in every run with the same seed.
        with_labels: yield ``(x, y)``; otherwise only ``x`` (for prediction).
        augment: an active :class:`convlstm_tl.config.AugmentConfig` to
            augment every batch (training only); its randomness is seeded
            by ``(seed, epoch, batch)``.
        class_weight: optional weight per class; batches are then
            ``(x, y, sample_weight)`` with each sample weighted by its class.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` of
            ``keras.utils.PyDataset``.

    Example:

    >>> train = DomainSequence("data/St.h5", "train", batch_size=32, shuffle=True, seed=0)
    >>> x, y = train[0]
    """

    def __init__(self, path, split, *, batch_size=32, indices=None, shuffle=False, seed=0,
                 with_labels=True, augment=None, class_weight=None, **kwargs):
        super().__init__(**kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
        self.path = str(path)
        self.splits = (split,) if isinstance(split, str) else tuple(split)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.with_labels = with_labels
        self.augment = augment if augment is not None and augment.active else None
        self.class_weight = None if class_weight is None else np.asarray(class_weight, dtype=np.float32)
        self.epoch = 0
        if isinstance(split, str):
            indices = (indices,)
        elif indices is None:
            indices = (None,) * len(self.splits)
        # Positions 0..n-1 over the pooled splits: position p is row _row[p] of split _part[p].
        # Labels are 8 bytes a sample: kept in memory, unlike the frames.
        parts, rows, labels = [], [], []
        with h5py.File(self.path, "r") as f:
            for part, (name, chosen) in enumerate(zip(self.splits, indices)):
                split_labels = f[name]["y"][()]
                chosen = np.arange(len(split_labels)) if chosen is None else np.asarray(chosen, dtype=np.int64)
                parts.append(np.full(len(chosen), part))
                rows.append(chosen)
                labels.append(split_labels[chosen])
        self._part, self._row = np.concatenate(parts), np.concatenate(rows).astype(np.int64)
        self._labels = np.concatenate(labels)
        self._order = self._order_for_epoch(0)
        self._file = None

    def __len__(self):
        return math.ceil(len(self._row) / self.batch_size)

    def __getitem__(self, batch_index):
        if not 0 <= batch_index < len(self):
            raise IndexError(f"batch {batch_index} out of range for {len(self)} batches")
        chosen = self._order[batch_index * self.batch_size:(batch_index + 1) * self.batch_size]
        x, y = self.read(chosen)
        if self.augment is not None:
            x = augment_batch(x, self.augment, np.random.default_rng([self.seed, self.epoch, batch_index]))
        if not self.with_labels:
            return x
        if self.class_weight is not None:
            return x, y, self.class_weight[y]
        return x, y

    def read(self, positions):
        """Read the samples at ``positions`` (of the pooled set; a split's indices for one split) in that order."""
        positions = np.asarray(positions, dtype=np.int64)
        x = None
        for part, split in enumerate(self.splits):
            where = np.flatnonzero(self._part[positions] == part)
            if not len(where):
                continue
            unique, inverse = np.unique(self._row[positions[where]], return_inverse=True)
            rows = read_rows(self._split_group(split)["x"], unique)[inverse]
            if x is None:
                x = np.empty((len(positions), *rows.shape[1:]), dtype=rows.dtype)
            x[where] = rows
        return x, self._labels[positions]

    @property
    def labels(self):
        """Labels in the current order (unshuffled sequences: the split's order)."""
        return self._labels[self._order]

    def _order_for_epoch(self, epoch):
        return epoch_order(len(self._row), shuffle=self.shuffle, seed=self.seed, epoch=epoch)

    def _split_group(self, split):
        # Opened on first use so that each worker process has its own handle.
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file[split]

    def close(self):
        """Close the file handle (reopened on the next read)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        return state


class ArraySequence(_SeededEpochs):
    """Batches of in-memory arrays, shuffled per epoch like :class:`DomainSequence`.

    Used for cached body features, which are small enough to keep in memory.
    ``class_weight`` (optional, one weight per class) adds sample weights, as
    in :class:`DomainSequence`.
    """

    def __init__(self, x, y, *, batch_size=32, shuffle=False, seed=0, class_weight=None, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y
        self.class_weight = None if class_weight is None else np.asarray(class_weight, dtype=np.float32)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0
        # Called with the new order at every change (a tf.data pipeline over the arrays follows it).
        self.order_listeners = []
        self._order = self._order_for_epoch(0)

    def __len__(self):
        return math.ceil(len(self.y) / self.batch_size)

    @property
    def order(self):
        """The positions of the samples in the current epoch's order."""
        return self._order

    def _order_changed(self):
        for listener in self.order_listeners:
            listener(self._order)

    def __getitem__(self, batch_index):
        chosen = self._order[batch_index * self.batch_size:(batch_index + 1) * self.batch_size]
        if self.class_weight is not None:
            return self.x[chosen], self.y[chosen], self.class_weight[self.y[chosen]]
        return self.x[chosen], self.y[chosen]

    @property
    def labels(self):
        """Labels in the current order, as :attr:`DomainSequence.labels`."""
        return self.y[self._order]

    def _order_for_epoch(self, epoch):
        return epoch_order(len(self.y), shuffle=self.shuffle, seed=self.seed, epoch=epoch)


class FrameSequence(keras.utils.PyDataset):
    """Batches ``(frames, normalized frames)`` of a split: the autoencoder's inputs and targets.

    Wraps a :class:`~convlstm_tl.data.sequence.DomainSequence` (labels unused) and
    keeps its seeded per-epoch order.

    Args:
        path: the domain file.
        split: the split.
        mean: per-channel mean ``(C,)`` the targets are normalized with.
        variance: per-channel variance ``(C,)``.
        **kwargs: ``batch_size``, ``shuffle``, ``seed`` of ``DomainSequence``.
    """

    def __init__(self, path, split, *, mean, variance, **kwargs):
        super().__init__()
        self.frames = DomainSequence(path, split, with_labels=False, **kwargs)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.sqrt(np.where(np.asarray(variance) > 0, variance, 1.0)).astype(np.float32)

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        x = np.asarray(self.frames[index], dtype=np.float32)
        return x, (x - self.mean) / self.std

    def on_epoch_end(self):
        self.frames.on_epoch_end()

    def set_epoch(self, epoch):
        """Put the sequence in the state it has at the start of ``epoch``."""
        self.frames.set_epoch(epoch)
