"""What a transfer adds to the target's labelled batches: the source's data, the target's unlabelled frames.

``--strategy joint`` trains on the source's training data and the target's
labelled subset together; ``--adapt coral|mmd|dann`` aligns the body's
features of source and target batches; ``--adapt im`` makes the predictions
on the target's batches confident and diverse; ``--adapt adabn`` re-estimates the
restored BatchNorm statistics on the target (:mod:`convlstm_tl.training.adabn`).
With ``target_fraction 0`` no target label is read at all: the labelled
batches are the source's, the source's head is kept (frozen), and model
selection uses held-out data that needs no target label (see
:func:`paired_sequences`).

This module decides, from a :class:`~convlstm_tl.training.plans.TransferPlan`,
which batches a transfer trains on (:func:`paired_sequences`) and through
which training model (:func:`paired_options`, for
:func:`convlstm_tl.models.paired.paired_model`).
"""

import itertools
import logging

import numpy as np

from convlstm_tl.config import ALIGNMENT_ADAPTS
from convlstm_tl.data.paired import FrameRescaling, PairedSequence, ValidationInputs
from convlstm_tl.data.sequence import DomainSequence
from convlstm_tl.models.adaptation import information_loss
from convlstm_tl.models.backbone import Backbone
from convlstm_tl.runs.resolve import same_classes
from convlstm_tl.training.inputs import class_weights

log = logging.getLogger(__name__)

# Sign search: every pattern up to this many channels (2^C starts), a greedy search of single flips beyond.
EXHAUSTIVE_SIGN_CHANNELS = 8
# Target frames the sign search scores on (a seeded subset of the training split).
SIGN_SEARCH_SAMPLES = 1024


def uses_paired_model(plan):
    """Whether the transfer trains through a paired model (source batches, target frames or both beside its own)."""
    return plan.strategy.with_source_data or plan.config.adapt in ALIGNMENT_ADAPTS


def paired_options(plan):
    """Keyword arguments of :func:`~convlstm_tl.models.paired.paired_model` for the plan, or None for a plain model.

    Joint training feeds labelled source batches (their own head when the
    classes differ); alignment with target labels feeds source batches
    for their features only; without target labels, the labelled batches
    are the source's, aligned with the target's frames. Without target
    labels, coral and mmd also add their term in validation, so that model
    selection watches the whole objective on held-out data.
    """
    config, strategy = plan.config, plan.strategy
    if not uses_paired_model(plan):
        return None
    align = config.adapt if config.adapt in ALIGNMENT_ADAPTS else None
    return {"with_source": not config.unlabelled and (strategy.with_source_data or align != "im"),
            "source_labels": strategy.with_source_data,
            "source_classes": (None if same_classes(plan.source.class_names, plan.target_info.class_names)
                               else len(plan.source.class_names)),
            "align": align, "align_weight": config.adapt_weight,
            "align_in_validation": config.unlabelled and align in ("coral", "mmd", "im")}


def source_rescaling(source, inputs):
    """The map from the source's frames to the scale the target model's normalization expects (None for tokens)."""
    stats = source.record.get("normalization")
    if "mean" not in inputs or stats is None:
        return None
    return FrameRescaling(from_mean=stats["mean"], from_variance=stats["variance"], to_mean=inputs["mean"],
                          to_variance=inputs["variance"])


def target_frames(plan, split="train", *, shuffle=True):
    """The target's unlabelled frames of ``split`` (every sample, labels never used), seeded like the run."""
    config = plan.config
    return DomainSequence(plan.target_info.path, split, batch_size=config.batch_size, shuffle=shuffle,
                          seed=config.seed, with_labels=False)


def paired_sequences(plan, train, val, pooled, *, rescaling, input_names):
    """Wrap a transfer's ``(train, val, pooled)`` sequences for its paired model.

    With target labels, the target's labelled batches get a source batch
    and/or a target frames batch beside them, and validation is the
    target's validation split. Without target labels (``target_fraction``
    0) the labelled batches are the source's training split (its
    validation split for validation, both for a refit), rescaled to the
    target model's normalization; validation then pairs the source's
    validation frames with the target's validation frames, whose labels are
    never read.
    """
    config, strategy = plan.config, plan.strategy
    align = config.adapt in ALIGNMENT_ADAPTS
    batch = config.batch_size
    source_path = plan.source_info.path if plan.source_info is not None else None
    n_source = plan.source_info.n_classes if plan.source_info is not None else None

    def source_split(split, *, shuffle=True):
        sequence = DomainSequence(source_path, split, batch_size=batch, shuffle=shuffle, seed=config.seed)
        sequence.class_weight = class_weights(config.class_weight, sequence.labels, n_source) if shuffle else None
        return sequence

    if config.unlabelled:
        def paired(labelled):
            return PairedSequence(labelled, target=target_frames(plan), labelled_transform=rescaling)

        train = paired(source_split("train"))
        val = ValidationInputs(source_split("val", shuffle=False), input_names,
                               target=target_frames(plan, "val", shuffle=False), transform=rescaling)
        if config.refit:
            pooled = paired(source_split(("train", "val")))
        return train, val, pooled

    with_source = strategy.with_source_data or (align and config.adapt != "im")

    def paired(labelled):
        return PairedSequence(labelled, source=source_split("train") if with_source else None,
                              source_labels=strategy.with_source_data,
                              target=target_frames(plan) if align else None, source_transform=rescaling,
                              labelled_weight=config.target_weight if strategy.with_source_data else 1.0)

    return paired(train), ValidationInputs(val, input_names), None if pooled is None else paired(pooled)


def adapter_record(model):
    """What a run's channel adapter learned (``adapter.json``), or None for a model without one.

    The adapter computes ``y = x @ kernel + bias`` over the channel axis of
    the normalized frames: ``kernel[i, j]`` is how much target channel ``i``
    feeds body input channel ``j``. ``nearest_signed_permutation`` reads
    the matrix as a re-placement of the sensor: for each body input ``j``,
    the target channel that feeds it most and with which sign (a mirror of
    channels 0, 4 and 5 reads ``[[0, -1], [1, 1], [2, 1], [3, 1], [4, -1], [5, -1]]``).
    """
    layer = Backbone(model).adapter
    if layer is None:
        return None
    kernel, bias = (np.asarray(weight, dtype=np.float64) for weight in layer.get_weights())
    strongest = np.abs(kernel).argmax(axis=0)
    signs = np.sign(kernel[strongest, np.arange(kernel.shape[1])])
    identity = np.eye(len(kernel))
    return {"channels": int(kernel.shape[0]), "kernel": np.round(kernel, 6).tolist(),
            "bias": np.round(bias, 6).tolist(), "diagonal": np.round(np.diag(kernel), 6).tolist(),
            "nearest_signed_permutation": [[int(i), int(sign)] for i, sign in zip(strongest, signs)],
            "distance_from_identity": round(float(np.linalg.norm(kernel - identity)), 6)}


def choose_adapter_signs(model, source_head, frames):
    """Start ``model``'s adapter from the channel sign flips the source's head finds most informative on ``frames``.

    A sensor worn mirrored, or mounted the other way round, flips the sign
    of some channels; a gradient step from the identity would have to cross
    zero to undo it, which a few labels rarely pay for. Instead each pattern
    of signs ``s`` (every one up to :data:`EXHAUSTIVE_SIGN_CHANNELS`
    channels, else a greedy search of single flips) is scored by the
    information maximization loss (:func:`convlstm_tl.models.adaptation.information_loss`)
    of the source's head's predictions on the target's unlabelled frames
    with the adapter set to ``diag(s)``: low when the predictions are
    confident and spread over the classes. No label is read. The adapter
    then starts from the best pattern (the identity on a tie).

    Args:
        model: the transfer model, with an ``adapter``.
        source_head: the source run's head weights, one list per head layer
            (used for scoring only; the model's own head is left as it was).
        frames: the target's unlabelled training frames, ``(N, T, H, W, C)``
            (the driver reads at most :data:`SIGN_SEARCH_SAMPLES`, a seeded subset).

    Returns:
        The search's record for ``adapter.json``: the chosen signs, its
        score and the identity's, and how many patterns were scored.
    """
    frames = np.asarray(frames)
    backbone = Backbone(model)
    adapter, head_layers = backbone.adapter, backbone.head_layers
    kept = [layer.get_weights() for layer in head_layers]
    for layer, weights in zip(head_layers, source_head):
        layer.set_weights(weights)
    channels = adapter.get_weights()[0].shape[0]
    scores = {}

    def score(signs):
        if signs not in scores:
            adapter.set_weights([np.diag(signs).astype(np.float32), np.zeros(channels, np.float32)])
            probabilities = model.predict(frames, batch_size=256, verbose=0)
            scores[signs] = float(information_loss(probabilities))
        return scores[signs]

    identity = (1,) * channels
    if channels <= EXHAUSTIVE_SIGN_CHANNELS:
        best = min(itertools.product((1, -1), repeat=channels), key=lambda signs: (score(signs), signs != identity))
    else:
        best = identity
        while True:
            flips = [tuple(-s if i == j else s for j, s in enumerate(best)) for i in range(channels)]
            candidate = min(flips, key=score)
            if score(candidate) >= score(best):
                break
            best = candidate
    adapter.set_weights([np.diag(best).astype(np.float32), np.zeros(channels, np.float32)])
    for layer, weights in zip(head_layers, kept):
        layer.set_weights(weights)
    log.info("adapter starts from signs %s (information loss %.4f; identity %.4f; %d patterns scored)",
             best, score(best), score(identity), len(scores))
    return {"objective": "information maximization of the source head's predictions on the target's unlabelled"
                         " training frames (lower is better)",
            "signs": list(best), "score": round(score(best), 6), "identity_score": round(score(identity), 6),
            "patterns_scored": len(scores), "samples": int(len(frames))}
