"""Statistics of a domain file: channel moments, vocabulary digest, per-split counts."""

import hashlib

import numpy as np

from convlstm_tl.data.format import SPLITS, open_domain
from convlstm_tl.data.reader import iter_x, read_ids, read_labels


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
        path: the ``.h5`` file, labelled or not; it is validated first (see
            :func:`open_domain`).
        check_values: also scan ``x`` for NaN and inf.

    Returns:
        A dict with ``domain``, ``kind``, ``labelled``, ``class_names``,
        ``frame_shape``, ``x_dtype``, ``vocab_size`` (0 for frames),
        ``provenance`` and ``splits``: ``{split: {"n": int, "per_class":
        {name: int}, "n_groups": int or None}}``, for the splits the file
        has (an unlabelled file: no classes, ``per_class`` empty).
    """
    info = open_domain(path, check_values=check_values, labelled=None)
    splits = {}
    for name in SPLITS:
        if name not in info.split_sizes:
            continue
        if info.labelled:
            y, group = read_labels(info.path, name)
            counts = np.bincount(y, minlength=info.n_classes)
        else:
            group, counts = read_ids(info.path, name).get("group"), []
        splits[name] = {
            "n": info.split_sizes[name],
            "per_class": {cls: int(n) for cls, n in zip(info.class_names, counts)},
            "n_groups": None if group is None else int(len(np.unique(group))),
        }
    return {
        "path": str(info.path),
        "domain": info.domain,
        "kind": info.kind,
        "labelled": info.labelled,
        "class_names": list(info.class_names),
        "frame_shape": list(info.frame_shape),
        "x_dtype": info.x_dtype,
        "vocab_size": len(info.vocab),
        "provenance": info.provenance,
        "splits": splits,
    }
