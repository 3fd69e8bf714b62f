"""Stratified train/val/test splits, group-aware when samples have group ids.

The converters that make their own splits (digits, text, npz, csv) share
:func:`split_indices`: every class is spread over the splits in proportion to
the ratios, and samples that share a group id (a subject, a recording, a
source image) always land in the same split, so nothing leaks from training
into evaluation.
"""

import numpy as np

from convlstm_tl.data.format import SPLITS
from convlstm_tl.errors import UserError

# One place for the default ratios; train gets the rest.
DEFAULT_VAL = 0.15
DEFAULT_TEST = 0.15


def check_ratios(val, test):
    """Check the val and test fractions; return the train fraction.

    Raises:
        UserError: unless ``0 < val``, ``0 < test`` and ``val + test < 1``
            (every split of a domain needs samples).
    """
    for name, value in (("val", val), ("test", test)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 < value < 1.0:
            raise UserError(f"the {name} ratio must be a fraction in (0, 1). Received: {name}={value!r}")
    if val + test >= 1.0:
        raise UserError(f"val and test ratios must leave samples for train (val + test < 1). "
                        f"Received: val={val}, test={test}")
    return 1.0 - val - test


def add_split_arguments(parser, *, of="samples", seed_help="seed of the split"):
    """Add ``--val``, ``--test`` and ``--seed`` (the options of :func:`split_indices`) to ``parser``.

    Args:
        parser: an ``argparse`` parser.
        of: what the fractions are of, for the help text, e.g. ``"the images"``.
        seed_help: help text of ``--seed``.
    """
    parser.add_argument("--val", type=float, default=DEFAULT_VAL,
                        help=f"fraction of {of} for val (default: {DEFAULT_VAL})")
    parser.add_argument("--test", type=float, default=DEFAULT_TEST,
                        help=f"fraction of {of} for test (default: {DEFAULT_TEST})")
    parser.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default: 0)")


def split_indices(labels, groups=None, *, val=DEFAULT_VAL, test=DEFAULT_TEST, seed=0, class_names=None):
    """Assign every sample to train, val or test, stratified by label.

    Without groups, each class is shuffled (seeded) and cut exactly by the
    ratios, with at least one sample of every class in every split. With
    groups, whole groups are dealt out: largest first (ties in seeded random
    order), each to the split whose share of the group's classes is furthest
    behind its target, relative to the target. Dealing by relative deficit
    gives every split some of every class as soon as a class has three groups.

    Args:
        labels: integer labels ``(N,)``.
        groups: optional ids ``(N,)`` (ints or strings); a group is never
            split across train, val and test.
        val, test: fractions of the samples for val and test; train gets the
            rest.
        seed: the same seed gives the same split.
        class_names: names used in error messages (default: the label ids).

    Returns:
        ``{"train": indices, "val": indices, "test": indices}``, each a
        sorted int64 array; together they hold every sample once.

    Raises:
        UserError: for bad ratios, or a class with too few samples (or
            groups) to appear in all three splits.

    Example:

    >>> parts = split_indices(np.repeat([0, 1], 10), val=0.2, test=0.2, seed=0)
    >>> [len(parts[s]) for s in ("train", "val", "test")]
    [12, 4, 4]
    """
    train = check_ratios(val, test)
    ratios = np.array([train, val, test])
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer ids of shape (N,). Received: shape={labels.shape}, "
                         f"dtype={labels.dtype}")
    names = list(class_names) if class_names is not None else [str(c) for c in range(labels.max() + 1)]
    rng = np.random.default_rng(seed)
    if groups is None:
        assignment = _split_samples(labels, ratios, rng, names)
    else:
        groups = np.asarray(groups)
        if groups.shape != labels.shape:
            raise UserError(f"groups must have one id per sample. Received: groups.shape={groups.shape}, "
                            f"labels.shape={labels.shape}")
        assignment = _split_groups(labels, groups, ratios, rng, names)
    return {name: np.flatnonzero(assignment == i) for i, name in enumerate(SPLITS)}


def _split_samples(labels, ratios, rng, names):
    assignment = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n = len(members)
        if n < len(SPLITS):
            raise UserError(f"class {names[label]!r} has {n} sample(s), too few to split: every class needs at "
                            f"least {len(SPLITS)} so that train, val and test each hold one")
        n_val, n_test = (max(1, int(round(n * r))) for r in ratios[1:])
        n_train = n - n_val - n_test
        if n_train < 1:
            # Rounding up val and test took the last sample; give it back.
            n_val, n_train = n_val - 1, 1
        assignment[members[:n_train]] = 0
        assignment[members[n_train:n_train + n_val]] = 1
        assignment[members[n_train + n_val:]] = 2
    return assignment


def _split_groups(labels, groups, ratios, rng, names):
    group_ids, group_of_sample = np.unique(groups, return_inverse=True)
    n_classes = labels.max() + 1
    # counts[g, c]: samples of class c in group g.
    counts = np.zeros((len(group_ids), n_classes), dtype=np.int64)
    np.add.at(counts, (group_of_sample, labels), 1)
    groups_per_class = (counts > 0).sum(axis=0)
    for label in np.unique(labels):
        if groups_per_class[label] < len(SPLITS):
            raise UserError(f"class {names[label]!r} occurs in {groups_per_class[label]} group(s), too few to "
                            f"split by group: every class needs at least {len(SPLITS)} groups so that train, val "
                            "and test each hold one")

    target = ratios[:, None] * counts.sum(axis=0)[None, :]  # (split, class)
    filled = np.zeros_like(target)
    order = rng.permutation(len(group_ids))
    order = order[np.argsort(-counts.sum(axis=1)[order], kind="stable")]
    group_split = np.empty(len(group_ids), dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for g in order:
            share = counts[g] / counts[g].sum()
            deficit = np.where(target > 0, (target - filled) / target, 0.0)
            split = int(np.argmax(deficit @ share))
            group_split[g] = split
            filled[split] += counts[g]
    empty = [SPLITS[i] for i in range(len(SPLITS)) if not (group_split == i).any()]
    if empty:
        raise UserError(f"the {len(group_ids)} groups cannot fill every split ({', '.join(empty)} would be "
                        "empty); give more groups or larger val and test ratios")
    return group_split[group_of_sample]
