"""What the classical baselines see of a domain file's samples: a multichannel series, or a bag of tokens.

A sample is a sequence of frames ``(T, H, W, C)``. The baselines read it as
a series ``(channels, length)`` (:func:`to_series`):

- ``H == 1`` frames are consecutive pieces of one recording (every converter
  of the toolkit cuts a ``(window, C)`` window into ``T`` frames of ``W``
  steps), so the frames are joined back: ``C`` channels of ``T * W`` steps.
  A watch sample ``(10, 1, 25, 6)`` is again its ``(6, 250)`` window.
- ``H > 1`` frames are images: every pixel and channel is a channel of a
  series over the ``T`` frames: ``H * W * C`` channels of ``T`` steps.

Token domains (word ids) are read as bags of words, by the words' strings
(:func:`token_documents`), so two domains encoded with different
vocabularies still meet on the same words.
"""

import hashlib

import h5py
import numpy as np

# The padding token of the toolkit's text converter: it fills short sentences, so it says nothing of the class.
PAD_TOKEN = "<pad>"
# The statistics of each series channel that summary features are made of, in order.
SUMMARY_STATISTICS = ("mean", "std", "min", "max", "mean_abs_diff")


def series_shape(frame_shape):
    """``(channels, length)`` of the series of samples with frames ``frame_shape`` (see :func:`to_series`)."""
    t, h, w, c = (int(d) for d in frame_shape)
    return (c, t * w) if h == 1 else (h * w * c, t)


def to_series(x):
    """Samples ``(N, T, H, W, C)`` as series ``(N, channels, length)``, float32 (see the module docstring)."""
    x = np.asarray(x, dtype=np.float32)
    n, t, h, w, c = x.shape
    if h == 1:
        # (N, T, 1, W, C) -> (N, T * W, C): step t * W + w is frame t's step w, as the frames were cut.
        return np.ascontiguousarray(x.reshape(n, t * w, c).transpose(0, 2, 1))
    return np.ascontiguousarray(x.reshape(n, t, h * w * c).transpose(0, 2, 1))


def summary_features(series):
    """Per-channel statistics of series ``(N, channels, length)``: ``(N, 5 * channels)`` float64.

    For each channel, in the order of :data:`SUMMARY_STATISTICS`: mean,
    standard deviation, minimum, maximum, and mean absolute difference of
    consecutive steps (how fast the signal moves; 0 for series of one step).
    Features are grouped by statistic: all channels' means first.
    """
    series = np.asarray(series, dtype=np.float64)
    moves = (np.abs(np.diff(series, axis=2)).mean(axis=2) if series.shape[2] > 1
             else np.zeros(series.shape[:2]))
    return np.concatenate([series.mean(axis=2), series.std(axis=2), series.min(axis=2), series.max(axis=2), moves],
                          axis=1)


def token_documents(ids, vocab):
    """Token-id samples ``(N, T, 1, W, 1)`` as documents: tuples of word strings, padding left out."""
    vocab = np.asarray([str(token) for token in vocab], dtype=object)
    flat = np.asarray(ids).reshape(len(ids), -1)
    return [tuple(word for word in vocab[row] if word != PAD_TOKEN) for row in flat]


def read_arrays(path, split, indices=None):
    """``x`` (float32 for frames, int32 ids for tokens) and ``y`` of a split, all of it or the sorted ``indices``."""
    with h5py.File(path, "r") as f:
        group = f[split]
        if indices is None:
            x, y = group["x"][()], group["y"][()]
        else:
            indices = np.sort(np.asarray(indices))
            x, y = group["x"][indices], group["y"][indices]
    if x.dtype.kind == "f":
        x = x.astype(np.float32, copy=False)
    return x, y.astype(np.int64, copy=False)


def split_fingerprint(path, split="test"):
    """The identity of a split of a domain file: ``{"sha256", "x_shape", "n"}``.

    ``sha256`` is the hex SHA-256 of the split's labels as little-endian
    int64 bytes followed by its ``x`` shape written as ``"|N,T,H,W,C"``: the
    same file cut the same way gives the same digest, a re-cut or re-labelled
    one (almost surely) another. Predictions recorded for a split are only
    valid for a split of the same fingerprint.
    """
    with h5py.File(path, "r") as f:
        y = f[split]["y"][()]
        shape = tuple(int(d) for d in f[split]["x"].shape)
    return {"sha256": fingerprint_digest(y, shape), "x_shape": list(shape), "n": int(len(y))}


def fingerprint_digest(labels, x_shape):
    """The ``sha256`` of :func:`split_fingerprint` from the labels and the ``x`` shape."""
    digest = hashlib.sha256(np.asarray(labels).astype("<i8").tobytes())
    digest.update(("|" + ",".join(str(int(d)) for d in x_shape)).encode())
    return digest.hexdigest()
