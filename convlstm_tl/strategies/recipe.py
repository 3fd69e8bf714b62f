"""The transfer recipe: restore a source body into a new classifier, freeze by phase, compile with layer rates.

The steps follow the Keras transfer-learning guide: restored blocks run in
inference mode, frozen or fine-tuned (``base_model(x, training=False)``):
they are rebuilt without dropout, and their BatchNorm layers stay
non-trainable, which Keras runs in inference mode, so the source's
statistics never move; the model is recompiled after every change of
``trainable``, and restored layers that train do so at a lower learning rate
(:class:`LayerRateAdam`).
"""

from dataclasses import replace

import numpy as np

from convlstm_tl.compute import jit_compile
from convlstm_tl.errors import ConfigError, RunError
from convlstm_tl.models.backbone import ADAPTER, EMBEDDING, Backbone, block_name
from convlstm_tl.models.classifier import build_classifier
from convlstm_tl.models.metrics import SparseMacroF1
from convlstm_tl.models.optimizers import LayerRateAdam
from convlstm_tl.runs.resolve import same_classes
from convlstm_tl.training.inputs import input_arguments


def transfer_inputs(source, target_info, *, normalization="target", indices=None):
    """What :func:`build_transfer_model` needs of the target's input; the one rule of ``normalization``.

    Frames are normalized with the statistics of the target's training
    samples (``indices``, default all) or, with ``normalization="source"``,
    with the source run's recorded ones; token ids need the vocabulary size.

    Raises:
        RunError: ``"source"`` asked of a run that records no statistics.
    """
    if target_info.kind != "frames" or normalization != "source":
        return input_arguments(target_info, indices=indices)
    stats = source.record.get("normalization")
    if stats is None:
        raise RunError(f"run {source.path} records no normalization statistics (config.json field normalization"
                       " is null), so it cannot normalize the target as the source; normalize with the target's",
                       field="normalization")
    return {"mean": np.asarray(stats["mean"]), "variance": np.asarray(stats["variance"])}


def build_transfer_model(source, strategy, *, frame_shape, n_classes, mean=None, variance=None, vocab_size=None,
                         adapter=False):
    """Build the target model: kept (and maybe restored) source blocks plus a new head.

    With ``adapter``, a learned channel mixing that starts as the identity
    sits in front of the body (see :func:`~convlstm_tl.models.classifier.build_classifier`):
    until it trains, the model computes what it would without it.

    A token model's embedding belongs to the body: it is restored with the
    blocks. The target must be one the body can read (the same kind of
    input, channels and vocabulary), which
    :func:`convlstm_tl.evaluation.alignment.check_same_input` checks first.
    """
    backbone = Backbone(source.model)
    config = replace(source.model_config, filters=source.model_config.filters[:strategy.keep_blocks])
    if strategy.restore:
        # Restored blocks run in inference mode: without their dropout (which
        # holds no weights), and with BatchNorm frozen by set_phase.
        config = replace(config, block_dropout=0.0, recurrent_dropout=0.0)
    model = build_classifier(config, frame_shape=frame_shape, n_classes=n_classes, mean=mean, variance=variance,
                             vocab_size=vocab_size, kernel=backbone.kernel, adapter=adapter,
                             name="convlstm_transfer")
    if strategy.restore:
        backbone.copy_into(model, strategy.keep_blocks)
    return model


def init_head_from_source(model, source, strategy, class_names):
    """Start the new head from the source run's head instead of random weights.

    Only meaningful when the target predicts the source's classes in the
    source's order and the kept body gives the head the features it was
    trained on: with 10% of a similar target, a random head trained on a few
    dozen samples can lose much of what the source's head knew.

    Raises:
        ConfigError: for a strategy that restores nothing, other classes, or
            a cut body whose features the source's head does not take.
    """
    if not strategy.restore:
        raise ConfigError(f"head_init source needs a strategy that restores the body, not {strategy.spec!r}",
                          field="head_init")
    if not same_classes(source.class_names, class_names):
        raise ConfigError(f"head_init source needs the target's classes to be the source's, in the same order;"
                          f" source run {source.name} has {source.class_names}, the target {list(class_names)}",
                          field="head_init")
    for layer in Backbone(model).head_layers:
        weights = source.model.get_layer(layer.name).get_weights()
        if [w.shape for w in weights] != [w.shape for w in layer.get_weights()]:
            raise ConfigError(f"head_init source: the source's {layer.name} does not fit the features of"
                              f" {strategy.spec!r} (a cut body gives other features); start with a new head",
                              field="head_init")
        layer.set_weights(weights)


def set_phase(model, strategy, phase, *, train_head=True):
    """Make exactly the phase's blocks trainable (all blocks for an unrestored body).

    A token embedding sits below ``block_1`` and trains with it; an adapter
    is new and trains in every phase; the head trains unless ``train_head``
    is False (a transfer without target labels keeps the source's head).
    """
    backbone = Backbone(model)
    for layer in backbone.head_layers:
        layer.trainable = train_head
    if backbone.has_embedding:
        model.get_layer(EMBEDDING).trainable = not strategy.restore or 1 in phase.trainable_blocks
    for index, block in enumerate(backbone.blocks, start=1):
        block.trainable = not strategy.restore or index in phase.trainable_blocks
        if strategy.restore:
            block.get_layer("batch_norm").trainable = False


def compile_for_phase(model, strategy, phase, *, lr, body_lr, adapter_lr=None, jit="auto", n_classes=None,
                      steps_per_execution=1):
    """Compile with the head at ``lr``, trainable restored blocks at ``body_lr`` and an adapter at ``adapter_lr``
    (default ``lr``); ``jit`` as in the config. ``steps_per_execution`` batches run in one call (a head on
    cached features runs a whole epoch in one).

    The metrics are accuracy and, given ``n_classes``, macro-F1 (``val_macro_f1`` can then be monitored).
    """
    prefixes = [f"{block_name(i)}/" for i in phase.trainable_blocks] if strategy.restore else []
    if prefixes and Backbone(model).has_embedding and 1 in phase.trainable_blocks:
        prefixes.append(f"{EMBEDDING}/")
    model.compile(
        optimizer=LayerRateAdam(lr, scaled_prefixes=prefixes, scale=body_lr / lr,
                                prefix_scales={f"{ADAPTER}/": (adapter_lr or lr) / lr}),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"] + ([SparseMacroF1(n_classes)] if n_classes else []),
        jit_compile=jit_compile(jit),
        steps_per_execution=steps_per_execution,
    )
