"""Transfer a source run's body to a target domain, by any strategy.

A strategy is data (:class:`Strategy`): how many source blocks to keep,
whether to restore their weights, and one or more training phases, each
naming the restored blocks that train in it. :func:`transfer` is the one code
path that applies any of them:

=============  ==========================================================
``freeze``     all blocks restored and frozen; new head trained
``cut:K``      blocks 1..K restored and frozen, the rest dropped
``unfreeze:N`` restored; the top N blocks train at the body learning rate
``finetune``   restored; every block trains at the body learning rate
``gradual``    head alone for ``head_epochs``, then every block at the body rate
``scratch``    same architecture, random initialisation, one learning rate
=============  ==========================================================

Restored blocks run in inference mode, frozen or fine-tuned, as the Keras
transfer guide does with ``base_model(x, training=False)``: they are rebuilt
without dropout, and their BatchNorm layers stay non-trainable, which Keras
runs in inference mode, so the source's statistics never move.
"""

import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np

from convlstm_tl import backend, distribute
from convlstm_tl.training.checkpoint import Checkpoint
from convlstm_tl.compute import dtype_policy, jit_compile
from convlstm_tl.config import ModelConfig, check_run_name, to_dict
from convlstm_tl.data.sequence import ArraySequence, DomainSequence
from convlstm_tl.data.format import find_domain, open_domain, read_labels, read_sampling_units, vocab_fingerprint
from convlstm_tl.errors import ConfigError, RunError, UserError
from convlstm_tl.evaluation.predict import predict_split
from convlstm_tl.evaluation.metrics import classification_metrics
from convlstm_tl.models.classifier import (
    EMBEDDING, block_kernel, block_name, body_blocks, build_classifier, has_embedding, head_layers, load_model,
)
from convlstm_tl.runs.record import load_run_record, model_config
from convlstm_tl.runs.directory import RunDirectory, check_run_target, find_run
from convlstm_tl.data.subsets import subsample
from convlstm_tl.training.source import (
    TrainResult, check_augment_fits, evaluate_and_save, fit, input_arguments, kind_record,
)

log = logging.getLogger(__name__)

STRATEGY_NAMES = ("freeze", "cut:K", "unfreeze:N", "finetune", "gradual", "scratch")
_STRATEGY = re.compile(r"(?P<name>freeze|finetune|gradual|scratch)|(?P<name_k>cut|unfreeze):(?P<number>[0-9]+)",
                       re.ASCII)


@dataclass(frozen=True)
class Phase:
    """One stretch of training.

    Attributes:
        trainable_blocks: 1-based indices of restored blocks that train.
        epochs: epochs of this phase; None takes what the budget has left.
    """

    trainable_blocks: tuple
    epochs: int | None = None


@dataclass(frozen=True)
class Strategy:
    """A transfer strategy as data.

    Attributes:
        spec: the strategy as the user wrote it, e.g. ``"cut:1"``.
        keep_blocks: how many source blocks the new body keeps.
        restore: copy the source's weights into the kept blocks.
        phases: the training phases, in order.
    """

    spec: str
    keep_blocks: int
    restore: bool
    phases: tuple

    @property
    def slug(self):
        """The spec as it appears in run names: ``cut:1`` -> ``cut1``."""
        return self.spec.replace(":", "")

    @property
    def body_frozen_throughout(self):
        """True when restored blocks never train, so body outputs can be cached."""
        return self.restore and all(not phase.trainable_blocks for phase in self.phases)


def parse_strategy(spec, n_blocks, *, head_epochs=10):
    """Turn ``"freeze"``, ``"cut:K"``, ... into a :class:`Strategy` for a body of ``n_blocks``.

    Raises:
        ConfigError: for an unknown strategy or K/N out of range.
    """
    # ASCII only: str.isdigit and int() also take full-width and other digits, and int() spaces.
    match = _STRATEGY.fullmatch(spec) if isinstance(spec, str) else None
    if match is None:
        name, colon, _ = spec.partition(":") if isinstance(spec, str) else ("", "", "")
        if name in ("cut", "unfreeze") and colon:
            raise ConfigError(f"strategy {spec!r} needs a whole number after the colon, e.g. {name}:1")
        raise ConfigError(f"unknown strategy {spec!r}; choose one of {', '.join(STRATEGY_NAMES)}")
    name, argument = match["name"] or match["name_k"], match["number"]
    all_blocks = tuple(range(1, n_blocks + 1))
    if argument is None:
        return {
            "freeze": Strategy(spec, n_blocks, True, (Phase(()),)),
            "finetune": Strategy(spec, n_blocks, True, (Phase(all_blocks),)),
            "gradual": Strategy(spec, n_blocks, True, (Phase((), head_epochs), Phase(all_blocks))),
            "scratch": Strategy(spec, n_blocks, False, (Phase(all_blocks),)),
        }[name]
    # Leading zeros (cut:01) would make two names for one run; a long number cannot fit any body.
    number = 0 if argument.startswith("0") else int(argument) if len(argument) <= 6 else n_blocks + 1
    if not 1 <= number <= n_blocks:
        raise ConfigError(
            f"strategy {spec!r} is out of range: the source body has {n_blocks} blocks, so use {name}:1..{n_blocks}"
        )
    if name == "cut":
        return Strategy(spec, number, True, (Phase(()),))
    return Strategy(spec, n_blocks, True, (Phase(all_blocks[n_blocks - number:]),))


@keras.saving.register_keras_serializable(package="convlstm_tl")
class LayerRateAdam(keras.optimizers.Adam):
    """Adam that scales the learning rate of variables under given layers.

    Args:
        learning_rate: the base (head) learning rate.
        scaled_prefixes: variable path prefixes, e.g. ``["block_1/"]``.
        scale: factor applied to their learning rate (body_lr / lr).
        **kwargs: other ``keras.optimizers.Adam`` arguments.
    """

    def __init__(self, learning_rate=1e-3, *, scaled_prefixes=(), scale=1.0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.scaled_prefixes = tuple(scaled_prefixes)
        self.scale = float(scale)
        self._rate_scales = []

    def build(self, variables):
        super().build(variables)
        self._rate_scales = [
            self.scale if variable.path.startswith(self.scaled_prefixes) else 1.0 for variable in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        # The backend may hand us its own variable type; the index maps it
        # back to the Keras variable whose path we matched in build().
        factor = self._rate_scales[self._get_variable_index(variable)]
        if factor != 1.0:
            learning_rate = learning_rate * factor
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(scaled_prefixes=list(self.scaled_prefixes), scale=self.scale)
        return config


@dataclass
class SourceRun:
    """A finished source run, loaded for transfer."""

    path: Path
    config: dict
    model_config: ModelConfig
    model: keras.Model

    @property
    def frame_shape(self):
        return tuple(self.model.input_shape[1:])

    @property
    def n_blocks(self):
        return len(body_blocks(self.model))

    def normalization_inputs(self):
        """The source's normalization statistics, as :func:`build_transfer_model` takes them."""
        stats = self.config.get("normalization")
        if stats is None:
            raise RunError(f"run {self.path} records no normalization statistics (config.json field normalization"
                           " is null), so it cannot normalize the target as the source; use --normalization target")
        return {"mean": np.asarray(stats["mean"]), "variance": np.asarray(stats["variance"])}


def load_source_run(source_run, runs_dir):
    """Load a run (a name in ``runs_dir`` or a path) with its model and config."""
    in_runs_dir = Path(runs_dir) / source_run
    path = Path(source_run) if not in_runs_dir.exists() and Path(source_run).is_dir() else in_runs_dir
    path = find_run(path.parent, path.name)
    config = load_run_record(path)
    model = load_model(path / "model.keras")
    return SourceRun(path=path, config=config, model_config=model_config(config), model=model)


def check_same_input(source, target_info, strategy):
    """Refuse a target whose input the source body cannot read.

    Frames and token ids do not mix; and a restored embedding maps the
    source's token ids, so a tokens target must use the source's vocabulary
    (the run records its fingerprint).

    Raises:
        UserError: saying how to rebuild the target.
    """
    source_kind = "tokens" if has_embedding(source.model) else "frames"
    if target_info.kind != source_kind:
        raise UserError(f"the source run {source.path.name} was trained on {source_kind} but the target"
                        f" {target_info.domain} holds {target_info.kind}; transfer needs the same kind of input")
    if source_kind != "tokens" or not strategy.restore:
        return
    record = source.config.get("domain", {})
    same = (record.get("vocab_fingerprint") == vocab_fingerprint(target_info.vocab) if "vocab_fingerprint" in record
            else source.model.get_layer(EMBEDDING).input_dim == len(target_info.vocab))
    if not same:
        source_domain = record.get("name", "SOURCE")
        raise UserError(
            f"the target {target_info.domain} is encoded with another vocabulary ({len(target_info.vocab)} tokens)"
            f" than the source run {source.path.name} ({record.get('vocab_size', '?')} tokens of"
            f" {source_domain}), so the restored embedding would read the wrong words; rebuild it with"
            f" `python -m data_prep text --input FILE --domain {target_info.domain} --vocab-from {source_domain}`"
        )


def build_transfer_model(source, strategy, *, frame_shape, n_classes, mean=None, variance=None, vocab_size=None):
    """Build the target model: kept (and maybe restored) source blocks plus a new head.

    A token model's embedding belongs to the body: it is restored with the
    blocks (the target must share the source's vocabulary, see
    :func:`check_same_input`).
    """
    if frame_shape[-1] != source.frame_shape[-1]:
        raise UserError(
            f"the target's frames {tuple(frame_shape)} have {frame_shape[-1]} channels but the source body takes"
            f" {source.frame_shape[-1]} (source frames {source.frame_shape}); transfer needs the same channels"
        )
    config = replace(source.model_config, filters=source.model_config.filters[:strategy.keep_blocks])
    if strategy.restore:
        # Restored blocks run in inference mode: without their dropout (which
        # holds no weights), and with BatchNorm frozen by set_phase.
        config = replace(config, block_dropout=0.0, recurrent_dropout=0.0)
    model = build_classifier(config, frame_shape=frame_shape, n_classes=n_classes, mean=mean, variance=variance,
                             vocab_size=vocab_size, kernel=block_kernel(source.model), name="convlstm_transfer")
    if strategy.restore:
        if vocab_size is not None:
            model.get_layer(EMBEDDING).set_weights(source.model.get_layer(EMBEDDING).get_weights())
        for index in range(1, strategy.keep_blocks + 1):
            model.get_layer(block_name(index)).set_weights(source.model.get_layer(block_name(index)).get_weights())
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
        raise ConfigError(f"--head-init source needs a strategy that restores the body, not {strategy.spec!r}")
    source_classes = (source.config.get("domain") or {}).get("class_names")
    if source_classes != [str(name) for name in class_names]:
        raise ConfigError(f"--head-init source needs the target's classes to be the source's, in the same order;"
                          f" source run {source.path.name} has {source_classes}, the target {list(class_names)}")
    for layer in head_layers(model):
        weights = source.model.get_layer(layer.name).get_weights()
        if [w.shape for w in weights] != [w.shape for w in layer.get_weights()]:
            raise ConfigError(f"--head-init source: the source's {layer.name} does not fit the features of"
                              f" {strategy.spec!r} (a cut body gives other features); drop --head-init source")
        layer.set_weights(weights)


def set_phase(model, strategy, phase):
    """Make exactly the phase's blocks trainable (all blocks for an unrestored body).

    A token embedding sits below ``block_1`` and trains with it.
    """
    if has_embedding(model):
        model.get_layer(EMBEDDING).trainable = not strategy.restore or 1 in phase.trainable_blocks
    for index, block in enumerate(body_blocks(model), start=1):
        block.trainable = not strategy.restore or index in phase.trainable_blocks
        if strategy.restore:
            block.get_layer("batch_norm").trainable = False


def compile_for_phase(model, strategy, phase, *, lr, body_lr, jit="auto"):
    """Compile with the head at ``lr`` and trainable restored blocks at ``body_lr``; ``jit`` as ``--jit``."""
    prefixes = [f"{block_name(i)}/" for i in phase.trainable_blocks] if strategy.restore else []
    if prefixes and has_embedding(model) and 1 in phase.trainable_blocks:
        prefixes.append(f"{EMBEDDING}/")
    model.compile(
        optimizer=LayerRateAdam(lr, scaled_prefixes=prefixes, scale=body_lr / lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile(jit),
    )


def feature_extractor(model, keep_blocks):
    """The model from frames to the last kept block's output."""
    return keras.Model(model.inputs, model.get_layer(block_name(keep_blocks)).output, name="body")


def head_model(model, feature_shape):
    """A model from body features to class probabilities that shares the head's layers."""
    features = keras.Input(shape=feature_shape, name="features")
    x = features
    for layer in head_layers(model):
        x = layer(x)
    return keras.Model(features, x, name="head")


def default_run_name(source_path, target, strategy_spec):
    """``<source run>-<target>-<strategy without colon>``, e.g. ``St-ms-cut1``."""
    return f"{Path(source_path).name}-{target}-{strategy_spec.replace(':', '')}"


def transfer(config, *, target_info=None, verbose="auto"):
    """Transfer a source run to ``config.target`` and write the transfer run.

    Args:
        config: a :class:`convlstm_tl.config.TransferConfig`.
        target_info: the target's :class:`DomainInfo` if already validated.
        verbose: Keras progress (``"auto"``, 0, 1 or 2).

    Returns:
        A :class:`convlstm_tl.training.source.TrainResult`; its metrics also hold
        ``source_test`` (accuracy kept on the source's test split, when the
        classes match), ``seconds_per_epoch`` and ``feature_cache``.

    Raises:
        UserError: for an unknown strategy, a missing source run, a target
            the source body cannot take, or the errors of :func:`train_source`.
    """
    config.validate()
    # Before any other TensorFlow work (loading the source): the multi-worker strategy sets up the runtime.
    distribution = distribute.make_strategy(config.distribute)
    source = load_source_run(config.source_run, config.runs_dir)
    strategy = parse_strategy(config.strategy, source.n_blocks, head_epochs=config.head_epochs)
    if len(strategy.phases) > 1 and config.epochs <= config.head_epochs:
        raise ConfigError(f"gradual needs more --epochs than --head-epochs. Received: epochs={config.epochs},"
                          f" head_epochs={config.head_epochs}")
    if target_info is None:
        target_info = open_domain(find_domain(config.target, config.data_dir or None))
    path = target_info.path
    name = config.name or default_run_name(source.path, config.target, config.strategy)
    check_run_name(name)
    # Only the chief writes the run; other workers of a multi-worker run cannot see it.
    chief = distribute.is_chief(config.distribute)
    if chief:
        check_run_target(config.runs_dir, name, overwrite=config.overwrite, resume=config.resume)
    check_augment_fits(config.augment, target_info)
    check_same_input(source, target_info, strategy)
    backend.seed_everything(config.seed)

    labels, _ = read_labels(path, "train")
    train_indices = np.arange(len(labels))
    if config.target_fraction is not None or config.target_per_class is not None:
        train_indices = subsample(labels, read_sampling_units(path, "train"), fraction=config.target_fraction,
                                  per_class=config.target_per_class, seed=config.seed)
    if config.normalization == "source" and target_info.kind == "frames":
        inputs = source.normalization_inputs()
    else:
        inputs = input_arguments(target_info, indices=train_indices)
    with distribute.scope(distribution), dtype_policy(config.mixed_precision):
        model = build_transfer_model(source, strategy, frame_shape=target_info.frame_shape,
                                     n_classes=target_info.n_classes, **inputs)
    if config.head_init == "source":
        init_head_from_source(model, source, strategy, target_info.class_names)
    use_cache = config.cache_features and strategy.body_frozen_throughout and not config.augment.active

    run_config = {
        "kind": "transfer",
        "config": to_dict(config),
        "source_run": str(source.path.resolve()),
        "strategy": {"spec": strategy.spec, "keep_blocks": strategy.keep_blocks, "restore": strategy.restore,
                     "phases": [{"trainable_blocks": list(p.trainable_blocks), "epochs": p.epochs}
                                for p in strategy.phases],
                     "body_lr": config.effective_body_lr, "feature_cache": use_cache},
        "model": to_dict(replace(source.model_config, filters=source.model_config.filters[:strategy.keep_blocks])),
        "domain": {"name": target_info.domain, "path": str(path), "class_names": list(target_info.class_names),
                   "frame_shape": list(target_info.frame_shape), "split_sizes": target_info.split_sizes,
                   **kind_record(target_info)},
        "target_samples": {"n": int(len(train_indices)), "of": int(len(labels)),
                           "indices": train_indices.tolist()},
        "normalization": ({"from": config.normalization, "mean": np.asarray(inputs["mean"]).tolist(),
                           "variance": np.asarray(inputs["variance"]).tolist()}
                          if target_info.kind == "frames" else None),
        "n_params": int(model.count_params()),
        "versions": backend.versions(),
    }
    run_directory = RunDirectory(config.runs_dir, name, overwrite=config.overwrite, resume=config.resume,
                                 publish=chief)
    with run_directory as run, distribute.scope(distribution):
        run.watch(target_info.path)
        run.save_config(run_config)
        history, seconds = _train_phases(model, strategy, config, path, train_indices, use_cache, verbose,
                                         checkpoint=Checkpoint.open(run.path))
        # The saved model is a plain classifier: every layer trainable (as a
        # source run's), with a stock optimizer so that plain
        # keras.saving.load_model reads it; building the optimizer now makes
        # the saved one match the one a load builds, so loading does not warn.
        for layer in model.layers:
            layer.trainable = True
        model.compile(optimizer=keras.optimizers.Adam(config.lr), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=jit_compile(config.jit))
        model.optimizer.build(model.trainable_variables)
        metrics = evaluate_and_save(model, path, target_info, run.path, run_name=name, history=history,
                                    train_seconds=seconds, batch_size=config.batch_size,
                                    extra=_transfer_extras(model, source, target_info, config, history, seconds,
                                                           use_cache))
    return TrainResult(run_dir=run.path, metrics=metrics, history=history, model=model)


def _train_phases(model, strategy, config, path, train_indices, use_cache, verbose, *, checkpoint):
    """Run the strategy's phases; return the joined history and the seconds spent.

    A resumed run skips the phases its checkpoint has finished (the
    checkpoint holds their history) and continues the one it is in.
    """
    history, total_seconds, epochs_left = {}, 0.0, config.epochs
    if use_cache:
        start = time.perf_counter()
        train, val = _cached_sequences(model, strategy, config, path, train_indices)
        total_seconds += time.perf_counter() - start
    else:
        train = DomainSequence(path, "train", batch_size=config.batch_size, indices=train_indices,
                               shuffle=True, seed=config.seed, augment=config.augment)
        val = DomainSequence(path, "val", batch_size=config.batch_size)
    for index, phase in enumerate(strategy.phases):
        finished = checkpoint.finished_phase(index)
        if finished is not None:
            phase_history, seconds = finished.history, finished.seconds
        else:
            epochs = phase.epochs if phase.epochs is not None else epochs_left
            set_phase(model, strategy, phase)
            trained = head_model(model, train.x.shape[1:]) if use_cache else model
            compile_for_phase(trained, strategy, phase, lr=config.lr, body_lr=config.effective_body_lr,
                              jit=config.jit)
            # Started from the source's head, the untrained model is a candidate: a few target
            # labels must not make it worse than the source model already is.
            phase_history, seconds = fit(trained, train, val, epochs=epochs, patience=config.patience,
                                         verbose=verbose, checkpoint=checkpoint, phase=index,
                                         keep_start=config.head_init == "source" and index == 0)
        for key, values in phase_history.items():
            history.setdefault(key, []).extend(values)
        total_seconds += seconds
        epochs_left -= len(next(iter(phase_history.values())))
    return history, total_seconds


def _cached_sequences(model, strategy, config, path, train_indices):
    """Run the frozen body once over train and val; return sequences of its outputs."""
    set_phase(model, strategy, strategy.phases[0])
    body = feature_extractor(model, strategy.keep_blocks)
    sequences = []
    for split, indices, shuffle in (("train", train_indices, True), ("val", None, False)):
        frames = DomainSequence(path, split, batch_size=max(config.batch_size, 128), indices=indices,
                                with_labels=False)
        features = np.asarray(body.predict(frames, verbose=0))
        sequences.append(ArraySequence(features, frames.labels, batch_size=config.batch_size,
                                       shuffle=shuffle, seed=config.seed))
    return sequences


def _transfer_extras(model, source, target_info, config, history, seconds, use_cache):
    """Metrics a transfer run adds: speed, cache use, and accuracy kept on the source."""
    extras = {"feature_cache": use_cache,
              "seconds_per_epoch": round(seconds / max(1, len(next(iter(history.values()), []))), 4)}
    source_domain = source.config.get("domain", {})
    source_path = Path(source_domain.get("path", ""))
    if source_domain.get("class_names") == list(target_info.class_names) and source_path.is_file():
        y_true, y_pred, _ = predict_split(model, source_path, "test")
        kept = classification_metrics(y_true, y_pred, target_info.class_names, domain=source_domain["name"])
        extras["source_test"] = {"domain": kept["domain"], "accuracy": kept["accuracy"],
                                 "macro_f1": kept["macro_f1"]}
    return extras
