"""What a run needs to know of its domain's input: normalization statistics, class weights, its record, fitting
augmentation."""

import numpy as np

from convlstm_tl.data import augment
from convlstm_tl.data.recipe import window_recipe
from convlstm_tl.data.stats import channel_stats, vocab_fingerprint
from convlstm_tl.errors import ConfigError

# The augmentation settings that switch a transform on.
AUGMENT_FIELDS = ("scale", "jitter", "time_shift", "spatial_shift", "rotate")


def input_arguments(info, indices=None):
    """What :func:`build_classifier` needs to know of a domain's input.

    Frames are normalized with the per-channel statistics of the training
    samples (``indices``, default all); token ids have no statistics, they
    go through an embedding sized to the vocabulary.

    Returns:
        ``{"mean": ..., "variance": ...}`` for frames, ``{"vocab_size": n}``
        for tokens.
    """
    if info.kind == "tokens":
        return {"vocab_size": len(info.vocab)}
    mean, variance = channel_stats(info.path, "train", indices=indices)
    return {"mean": mean, "variance": variance}


def kind_record(info):
    """Entries of a run's ``domain`` record that say what its input is.

    A tokens domain also records its vocabulary's size and fingerprint, so
    that a transfer can refuse a target encoded with other ids.
    """
    if info.kind != "tokens":
        return {"kind": info.kind}
    return {"kind": info.kind, "vocab_size": len(info.vocab), "vocab_fingerprint": vocab_fingerprint(info.vocab)}


def check_augment_fits(config, info):
    """Refuse augmentation that does not fit the domain's samples (any, for token ids)."""
    if info.kind == "tokens" and config.active:
        raise ConfigError(f"augmentation transforms numeric frames, but {info.domain} holds token ids;"
                          " turn augmentation off",
                          field=tuple(name for name in AUGMENT_FIELDS if getattr(config, name)))
    augment.check_fits(config, info.frame_shape[-1])


def domain_record(info):
    """The ``domain`` entry of a run's record: what the run was trained on (see :mod:`convlstm_tl.runs.record`)."""
    record = {"name": info.domain, "path": str(info.path), "class_names": list(info.class_names),
              "frame_shape": list(info.frame_shape), "split_sizes": info.split_sizes, **kind_record(info)}
    recipe = window_recipe(info.provenance)
    if recipe is not None:  # how new recordings must be cut to fit the run (python -m convlstm_tl.predict)
        record["recipe"] = recipe.to_dict()
    return record


def class_weights(mode, labels, n_classes):
    """Per-class weights of the training loss: None for ``"none"``; for ``"balanced"``, ``n / (K * n_c)``.

    ``K`` counts the classes present in ``labels`` (as scikit-learn's
    ``compute_class_weight("balanced")``), so the weights average to 1 over
    the training samples; an absent class gets 0 (it has no sample to weigh).
    """
    if mode == "none":
        return None
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights
