"""AdaBN: re-estimate a classifier's BatchNorm statistics on unlabelled target data.

Adaptive Batch Normalization (Li et al. 2016, "Revisiting Batch Normalization
For Practical Domain Adaptation") keeps every learned weight and replaces only
the moving mean and variance of each BatchNorm with the statistics of the
target domain, so each block normalizes target activations as it normalized
source activations in training. It needs no labels and no gradient step.

The blocks are adapted in order: block ``k``'s statistics are measured with
blocks ``1..k-1`` already adapted, because their outputs, and so block ``k``'s
input, change with them.
"""

import logging

import keras
import numpy as np

from convlstm_tl.models.backbone import Backbone

logger = logging.getLogger(__name__)


def adapt_batch_norm(model, frames):
    """Set every block's BatchNorm moving mean and variance to their values on ``frames`` (AdaBN).

    For each block ``k = 1..K`` in turn, the exact per-channel mean and
    population variance of the BatchNorm's input (the block's ConvLSTM
    output) over every sample, step and position of ``frames`` are computed
    in float64, with blocks ``< k`` already adapted, and assigned to the
    BatchNorm's ``moving_mean`` and ``moving_variance``. Nothing else
    changes: no gradient step, ``gamma`` and ``beta`` untouched, the model
    stays in inference mode (dropout off). Labels are never read.

    Args:
        model: a classifier built by :func:`convlstm_tl.models.classifier.build_classifier`
            (blocks ``block_1 .. block_K``, each ``convlstm -> batch_norm [-> pool] [-> dropout]``).
        frames: unlabelled input batches: a sequence of arrays ``(B, T, H, W, C)``
            indexable by batch (``len`` and ``[i]``, e.g. a
            :class:`convlstm_tl.data.sequence.DomainSequence` with
            ``with_labels=False``) or a list of arrays. Batches that are tuples
            ``(x, y[, w])`` contribute ``x`` only.

    Returns:
        A dict ``{block_name: {"mean_shift": float, "variance_ratio": float}}``:
        the mean over channels of ``|new - old|`` moving mean and of
        ``new / old`` moving variance, how far each block's statistics moved.

    Raises:
        ValueError: when ``model`` has no blocks or ``frames`` no samples.

    Example:

    >>> target = DomainSequence("data/Target.h5", "train", batch_size=64, with_labels=False)
    >>> shifts = adapt_batch_norm(model, target)
    >>> shifts["block_1"]["variance_ratio"]
    """
    blocks = Backbone(model).blocks
    if not blocks:
        raise ValueError(f"model has no blocks (block_1, block_2, ...). Received: model={model.name}")
    if isinstance(frames, np.ndarray):
        frames = [frames]
    if len(frames) == 0:
        raise ValueError(f"frames must hold at least one batch. Received: len(frames)={len(frames)}")
    summary = {}
    for block in blocks:
        # The prefix shares the model's layers, so it sees blocks adapted before this one.
        prefix = keras.Model(model.input, block.input, name=f"adabn_{block.name}_input")
        convlstm = block.get_layer("convlstm")
        batch_norm = block.get_layer("batch_norm")
        mean, variance = _moments(lambda x: convlstm(prefix(x, training=False), training=False), frames)
        old_mean = keras.ops.convert_to_numpy(batch_norm.moving_mean).astype(np.float64)
        old_variance = keras.ops.convert_to_numpy(batch_norm.moving_variance).astype(np.float64)
        batch_norm.moving_mean.assign(mean.astype(batch_norm.moving_mean.dtype))
        batch_norm.moving_variance.assign(variance.astype(batch_norm.moving_variance.dtype))
        summary[block.name] = {
            "mean_shift": float(np.mean(np.abs(mean - old_mean))),
            "variance_ratio": float(np.mean(variance / np.maximum(old_variance, np.finfo(np.float64).tiny))),
        }
        logger.info("AdaBN %s: mean shift %.4g, variance ratio %.4g", block.name,
                    summary[block.name]["mean_shift"], summary[block.name]["variance_ratio"])
    return summary


def _moments(features_of, frames):
    """Per-channel mean and population variance (float64) of ``features_of(x)`` over every batch of ``frames``."""
    count, mean, squares = 0, 0.0, 0.0
    for index in range(len(frames)):
        x = frames[index]
        if isinstance(x, (tuple, list)):
            x = x[0]
        features = keras.ops.convert_to_numpy(features_of(x)).astype(np.float64)
        features = features.reshape(-1, features.shape[-1])
        if not len(features):
            continue
        # Chan et al.'s pairwise merge of (count, mean, sum of squared deviations):
        # exact and free of the cancellation of E[x^2] - E[x]^2.
        batch_count = len(features)
        batch_mean = features.mean(axis=0)
        batch_squares = np.square(features - batch_mean).sum(axis=0)
        delta = batch_mean - mean
        total = count + batch_count
        mean = mean + delta * (batch_count / total)
        squares = squares + batch_squares + np.square(delta) * (count * batch_count / total)
        count = total
    if not count:
        raise ValueError("frames must hold at least one sample. Received: only empty batches")
    return np.asarray(mean), np.asarray(squares / count)
