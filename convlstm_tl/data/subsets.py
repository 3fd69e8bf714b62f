"""Low-label subsets of a training split that keep whole recordings or groups."""

import numpy as np

from convlstm_tl.data.reader import read_labels, read_sampling_units
from convlstm_tl.errors import ConfigError


def subsample(labels, units=None, *, fraction=None, per_class=None, seed=0):
    """Choose a class-stratified subset of samples, taking whole units.

    A unit is a recording or group (``units[i]`` is sample ``i``'s id); with
    no units each sample is its own. For each class, units of that class
    (by their majority label) are taken in a seeded random order until the
    class has as many samples as asked, choosing at the last unit whichever of
    stopping or taking it lands closer; every class keeps at least one unit.

    Args:
        labels: label ids ``(N,)``.
        units: optional unit ids ``(N,)``.
        fraction: keep about this fraction of each class's samples.
        per_class: or keep about this many samples per class.
        seed: the same seed gives the same subset.

    Returns:
        Sorted sample indices.
    """
    if (fraction is None) == (per_class is None):
        raise ConfigError("give exactly one of fraction and per_class")
    labels = np.asarray(labels)
    units = np.arange(len(labels)) if units is None else np.asarray(units)
    unit_ids, unit_of_sample = np.unique(units, return_inverse=True)
    sizes = np.bincount(unit_of_sample, minlength=len(unit_ids))
    # A unit's class is its most frequent label (recordings have one label).
    counts = np.zeros((len(unit_ids), labels.max() + 1), dtype=np.int64)
    np.add.at(counts, (unit_of_sample, labels), 1)
    unit_class = counts.argmax(axis=1)

    rng = np.random.default_rng(seed)
    chosen_units = []
    for label in np.unique(unit_class):
        candidates = rng.permutation(np.flatnonzero(unit_class == label))
        wanted = fraction * sizes[candidates].sum() if fraction is not None else per_class
        total = 0
        for unit in candidates:
            if total and abs(total + sizes[unit] - wanted) >= abs(total - wanted):
                break
            chosen_units.append(unit)
            total += sizes[unit]
            if total >= wanted:
                break
    return np.sort(np.flatnonzero(np.isin(unit_of_sample, chosen_units)))


def labelled_subset(path, *, fraction=None, per_class=None, seed=0):
    """The labelled samples of a domain file's training split that a transfer trains on.

    All of them when neither ``fraction`` nor ``per_class`` is given, else the
    :func:`subsample` of the split that keeps the file's sampling units whole
    (recordings, else groups; see
    :func:`~convlstm_tl.data.reader.read_sampling_units`).

    Args:
        path: the domain's ``.h5`` file.
        fraction: keep about this fraction of each class's samples.
        per_class: or keep about this many samples per class (not both).
        seed: the same seed gives the same subset.

    Returns:
        ``(indices, n_total)``: the sorted indices of the chosen samples and
        the number of samples in the training split.
    """
    labels, _ = read_labels(path, "train")
    if fraction is None and per_class is None:
        return np.arange(len(labels)), len(labels)
    indices = subsample(labels, read_sampling_units(path, "train"), fraction=fraction, per_class=per_class, seed=seed)
    return indices, len(labels)
