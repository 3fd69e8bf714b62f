"""Stratified train/val/test splits, group-aware when samples have group ids.

The converters that make their own splits (digits, text, npz, csv) share
:func:`split_indices`: every class is spread over the splits in proportion to
the ratios, and samples that share a group id (a subject, a recording, a
source image) always land in the same split, so nothing leaks from training
into evaluation.

The converters that take splits as the input gives them (text, npz) share
:func:`complete_given_splits`: one rule refuses a group in two given splits
(:func:`check_given_groups`), and ``--val-from-train F`` carves val out of a
given train split with the same dealing (:func:`carve_val`), for data that
ship with train and test only.
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
    assignment = _assign(labels, groups, np.array([train, val, test]), seed, class_names, lenient=False)
    if groups is not None:
        empty = [name for i, name in enumerate(SPLITS) if not (assignment == i).any()]
        if empty:
            raise UserError(f"the {len(np.unique(groups))} groups cannot fill every split ({', '.join(empty)} would"
                            " be empty); give more groups or larger val and test ratios")
    return {name: np.flatnonzero(assignment == i) for i, name in enumerate(SPLITS)}


def _assign(labels, groups, ratios, seed, class_names, *, lenient):
    """The split number (an index into ``ratios``) of every sample; see :func:`split_indices`.

    ``lenient`` keeps a class with too few samples (or groups) for every
    split whole in split 0 (train) instead of refusing it.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer ids of shape (N,). Received: shape={labels.shape}, "
                         f"dtype={labels.dtype}")
    names = list(class_names) if class_names is not None else [str(c) for c in range(labels.max() + 1)]
    rng = np.random.default_rng(seed)
    if groups is None:
        return _split_samples(labels, ratios, rng, names, lenient=lenient)
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise UserError(f"groups must have one id per sample. Received: groups.shape={groups.shape}, "
                        f"labels.shape={labels.shape}")
    return _split_groups(labels, groups, ratios, rng, names, lenient=lenient)


def _split_samples(labels, ratios, rng, names, *, lenient=False):
    assignment = np.empty(len(labels), dtype=np.int64)
    k = len(ratios)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n = len(members)
        if n < k:
            if lenient:
                assignment[members] = 0
                continue
            raise UserError(f"class {names[label]!r} has {n} sample(s), too few to split: every class needs at "
                            f"least {k} so that {_listed(k)} each hold one")
        sizes = [max(1, int(round(n * r))) for r in ratios[1:]]
        n_train = n - sum(sizes)
        if n_train < 1:
            # Rounding up the other splits took the last sample; give it back.
            sizes[0], n_train = sizes[0] - 1, 1
        assignment[members] = np.repeat(np.arange(k), [n_train, *sizes])
    return assignment


def _split_groups(labels, groups, ratios, rng, names, *, lenient=False):
    k = len(ratios)
    group_ids, group_of_sample = np.unique(groups, return_inverse=True)
    n_classes = labels.max() + 1
    # counts[g, c]: samples of class c in group g.
    counts = np.zeros((len(group_ids), n_classes), dtype=np.int64)
    np.add.at(counts, (group_of_sample, labels), 1)
    groups_per_class = (counts > 0).sum(axis=0)
    few = [label for label in np.unique(labels) if groups_per_class[label] < k]
    if few and not lenient:
        label = few[0]
        raise UserError(f"class {names[label]!r} occurs in {groups_per_class[label]} group(s), too few to "
                        f"split by group: every class needs at least {k} groups so that {_listed(k)} each hold one")

    target = ratios[:, None] * counts.sum(axis=0)[None, :]  # (split, class)
    filled = np.zeros_like(target)
    group_split = np.zeros(len(group_ids), dtype=np.int64)
    # Lenient: the groups of a class too rare to share stay in train, which must hold every class.
    pinned = counts[:, few].any(axis=1) if few else np.zeros(len(group_ids), dtype=bool)
    filled[0] += counts[pinned].sum(axis=0)
    order = rng.permutation(len(group_ids))
    order = order[np.argsort(-counts.sum(axis=1)[order], kind="stable")]
    with np.errstate(divide="ignore", invalid="ignore"):
        for g in order[~pinned[order]]:
            share = counts[g] / counts[g].sum()
            deficit = np.where(target > 0, (target - filled) / target, 0.0)
            split = int(np.argmax(deficit @ share))
            group_split[g] = split
            filled[split] += counts[g]
    return group_split[group_of_sample]


def _listed(k):
    return ", ".join(SPLITS[:k - 1]) + f" and {SPLITS[k - 1]}" if k > 2 else " and ".join(SPLITS[:k])


def check_val_from_train(fraction):
    """Check the ``--val-from-train`` fraction (None: not asked for); return it.

    Raises:
        UserError: unless None or a fraction in (0, 1).
    """
    if fraction is None:
        return None
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0.0 < fraction < 1.0:
        raise UserError(f"--val-from-train must be a fraction in (0, 1) of the given train split. "
                        f"Received: val_from_train={fraction!r}")
    return float(fraction)


def add_val_from_train_argument(parser):
    """Add ``--val-from-train F`` (see :func:`complete_given_splits`) to ``parser``."""
    parser.add_argument("--val-from-train", type=float, default=None, metavar="F",
                        help="when the given splits have train and test but no val (as most public sets ship):"
                             " carve val, a fraction F of the given train split, out of it, stratified by label"
                             " and keeping groups whole; seeded by --seed")


def carve_val(labels, groups=None, *, fraction, seed=0, class_names=None):
    """Cut a val split out of the samples of a given train split.

    The same dealing as :func:`split_indices`, with two splits of ratios
    ``1 - fraction`` and ``fraction``: stratified by label, and by group when
    there are groups (no group in both train and val). A class with a single
    sample (or group) cannot be shared, so it stays whole in train, which
    must hold every class; val holds every other class.

    Args:
        labels: integer labels ``(N,)`` of the given train samples.
        groups: optional ids ``(N,)``.
        fraction: the share of the samples for val, in (0, 1).
        seed: the same seed gives the same split.
        class_names: names used in error messages (default: the label ids).

    Returns:
        ``{"train": indices, "val": indices}`` into ``labels``, sorted.

    Raises:
        UserError: for a bad fraction, or when no class can spare a sample
            (or group) for val.
    """
    fraction = check_val_from_train(fraction)
    if fraction is None:
        raise UserError("carve_val needs a fraction in (0, 1). Received: fraction=None")
    labels = np.asarray(labels)
    assignment = _assign(labels, groups, np.array([1.0 - fraction, fraction]), seed, class_names, lenient=True)
    parts = {name: np.flatnonzero(assignment == i) for i, name in enumerate(SPLITS[:2])}
    unit = "group" if groups is not None else "sample"
    if not len(parts["val"]):
        raise UserError(f"--val-from-train {fraction} leaves val empty: no class has two {unit}s in the given train"
                        f" split to share with val; give a larger train split, or give val in the file")
    names = list(class_names) if class_names is not None else [str(c) for c in range(labels.max() + 1)]
    lost = sorted(set(labels.tolist()) - set(labels[parts["train"]].tolist()))
    if lost:
        raise UserError(f"--val-from-train {fraction} leaves class {names[lost[0]]!r} with no training sample (its"
                        f" {unit}s all went to val); give a smaller fraction")
    return parts


def check_given_groups(groups, parts, *, what="group", show=None, locate=None):
    """Refuse given splits that put one group in two splits.

    Splits that the input gives (a split column, per-split arrays) are taken
    as they are, so a group in two of them is a leak from training into
    evaluation that no converter may paper over: the first such group is
    named, with where it occurs.

    Args:
        groups: ids ``(N,)`` (ints or strings).
        parts: ``{split: indices into groups}`` of the given splits.
        what: what a group is, for the message: ``"group"``, ``"sentence"``.
        show: ``show(index)`` names the group of a sample (default: its id).
        locate: optional ``locate(index)`` says where a sample is in the
            input, e.g. ``"line 12"``.

    Raises:
        UserError: naming the first group found in two given splits.
    """
    groups = np.asarray(groups)
    seen = {}
    for name in SPLITS:
        for index in np.sort(np.asarray(parts.get(name, ()), dtype=np.int64)):
            gid = groups[index].item()
            first = seen.setdefault(gid, (name, int(index)))
            if first[0] != name:
                shown = show(first[1]) if show is not None else repr(gid)
                where = f" ({locate(first[1])} and {locate(int(index))})" if locate is not None else ""
                raise UserError(f"{what} {shown} is in both the given {first[0]} and {name} splits{where}; a {what}"
                                f" must be in one split only, or it leaks from training into evaluation: move all"
                                f" its samples into one split")


def complete_given_splits(parts, labels, groups=None, *, val_from_train=None, seed=0, class_names=None,
                          no_val="the given splits have no val", what="group", show=None, locate=None):
    """Check the splits an input gives, and carve val out of train when asked to.

    Args:
        parts: ``{split: indices}`` as given; ``val`` may be missing or empty.
        labels: integer labels ``(N,)`` of all samples.
        groups: optional ids ``(N,)``; no group may be in two given splits.
        val_from_train: None, or the fraction of the given train split to
            carve out as val (see :func:`carve_val`) when val is missing.
        seed: seed of the carving.
        class_names: names used in error messages.
        no_val: how the input lacks val, for the message, e.g. ``"the file
            has no x_val"``.
        what, show, locate: how :func:`check_given_groups` names a group
            found in two given splits.

    Returns:
        ``(parts, carved)``: the three splits, and None or, when val was
        carved, ``{"fraction": F, "seed": seed}`` for the provenance.

    Raises:
        UserError: for an empty train or test, a group in two given splits,
            a missing val without ``val_from_train``, ``val_from_train``
            with a given val, or a train split too small to carve.
    """
    val_from_train = check_val_from_train(val_from_train)
    parts = {name: np.asarray(parts.get(name, ()), dtype=np.int64) for name in SPLITS}
    empty = [name for name in ("train", "test") if not len(parts[name])]
    if empty:
        raise UserError(f"the given splits leave {' and '.join(empty)} empty; every split needs samples")
    if groups is not None:
        check_given_groups(groups, parts, what=what, show=show, locate=locate)
    if len(parts["val"]):
        if val_from_train is not None:
            raise UserError(f"--val-from-train carves val out of train when the given splits lack val, but these"
                            f" give {len(parts['val'])} val samples; drop --val-from-train")
        return parts, None
    if val_from_train is None:
        raise UserError(f"{no_val}; pass --val-from-train F to carve val, a fraction F of the given train split"
                        f" (e.g. --val-from-train 0.15), out of it, or give val in the input")
    train = parts["train"]
    labels = np.asarray(labels)
    carved = carve_val(labels[train], None if groups is None else np.asarray(groups)[train],
                       fraction=val_from_train, seed=seed, class_names=class_names)
    parts = {"train": train[carved["train"]], "val": train[carved["val"]], "test": parts["test"]}
    return parts, {"fraction": val_from_train, "seed": int(seed)}


def describe_carved(carved, *, grouped=False):
    """One phrase for the provenance: how val was carved out of the given train split (None: it was not)."""
    if carved is None:
        return ""
    return (f"; val carved out of the given train split: fraction {carved['fraction']}, stratified by label"
            f"{', by group' if grouped else ''}, seed {carved['seed']}")
