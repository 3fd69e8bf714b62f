"""Training a classifier on a domain and writing its run directory."""

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from convlstm_tl import backend, distribute
from convlstm_tl.data import augment
from convlstm_tl.training.callbacks import EpochCheckpoint, ResumableEarlyStopping
from convlstm_tl.training.checkpoint import Checkpoint
from convlstm_tl.compute import dtype_policy, jit_compile
from convlstm_tl.config import save_json, to_dict
from convlstm_tl.data.sequence import DomainSequence
from convlstm_tl.data.format import channel_stats, find_domain, open_domain, vocab_fingerprint
from convlstm_tl.errors import ConfigError
from convlstm_tl.evaluation.predict import predict_split
from convlstm_tl.evaluation.metrics import classification_metrics, classification_report_text
from convlstm_tl.models.classifier import build_classifier
from convlstm_tl.evaluation.plots import save_confusion_matrix
from convlstm_tl.runs.directory import RunDirectory, check_run_target

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        run_dir: the finished run directory.
        metrics: test metrics (the contents of ``metrics.json``).
        history: per-epoch values, ``{name: [value per epoch]}``.
        model: the trained model (best weights).
    """

    run_dir: Path
    metrics: dict
    history: dict
    model: keras.Model


def train_source(config, *, info=None, verbose="auto"):
    """Train a ConvLSTM classifier on ``config.source`` and write its run.

    Args:
        config: a :class:`convlstm_tl.config.TrainConfig`.
        info: the source's :class:`DomainInfo` if the caller validated the
            file already (skips a second scan of a large file).
        verbose: Keras progress (``"auto"``, 0, 1 or 2).

    Returns:
        A :class:`TrainResult`.

    Raises:
        UserError: for a missing or invalid domain file, bad options, or a
            run directory that exists or cannot be written.
    """
    config.validate()
    if info is None:
        info = open_domain(find_domain(config.source, config.data_dir or None))
    path = info.path
    # Only the chief writes the run; other workers of a multi-worker run cannot see it.
    chief = distribute.is_chief(config.distribute)
    if chief:
        check_run_target(config.runs_dir, config.run_name, overwrite=config.overwrite, resume=config.resume)
    check_augment_fits(config.augment, info)
    # Before any other TensorFlow work: the multi-worker strategy sets up the runtime.
    strategy = distribute.make_strategy(config.distribute)
    backend.seed_everything(config.seed)

    inputs = input_arguments(info)
    with distribute.scope(strategy), dtype_policy(config.mixed_precision):
        model = build_classifier(config.model, frame_shape=info.frame_shape, n_classes=info.n_classes, **inputs)
    run_config = {
        "kind": "source",
        "config": to_dict(config),
        "domain": {"name": info.domain, "path": str(path), "class_names": list(info.class_names),
                   "frame_shape": list(info.frame_shape), "split_sizes": info.split_sizes, **kind_record(info)},
        "normalization": ({"mean": inputs["mean"].tolist(), "variance": inputs["variance"].tolist()}
                          if info.kind == "frames" else None),
        "n_params": int(model.count_params()),
        "replicas": distribute.replicas(strategy),
        "versions": backend.versions(),
    }
    with RunDirectory(config.runs_dir, config.run_name, overwrite=config.overwrite, resume=config.resume,
                      publish=chief) as run:
        run.watch(path)
        run.save_config(run_config)
        with distribute.scope(strategy):
            model.compile(
                optimizer=keras.optimizers.Adam(config.lr),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=jit_compile(config.jit),
            )
        train = DomainSequence(path, "train", batch_size=config.batch_size, shuffle=True, seed=config.seed,
                               augment=config.augment)
        val = DomainSequence(path, "val", batch_size=config.batch_size)
        history, train_seconds = fit(model, train, val, epochs=config.epochs, patience=config.patience,
                                     verbose=verbose, checkpoint=Checkpoint.open(run.path))
        metrics = evaluate_and_save(model, path, info, run.path, run_name=config.run_name, history=history,
                                    train_seconds=train_seconds, batch_size=config.batch_size)
    return TrainResult(run_dir=run.path, metrics=metrics, history=history, model=model)


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
                          " drop the --augment-* options")
    augment.check_fits(config, info.frame_shape[-1])


def fit(model, train, val, *, epochs, patience, verbose="auto", callbacks=(), checkpoint=None, phase=0,
        keep_start=False):
    """Fit, keeping the weights of the epoch with the lowest validation loss.

    ``patience`` epochs without improvement stop training early; 0 turns
    early stopping off but still restores the best epoch's weights, so a run
    always saves its best model.

    With ``keep_start``, the weights fit starts from are a candidate too
    (epoch 0): if no epoch improves on their validation loss, fit returns
    them. This is for a start that is already a whole model, such as a
    transfer that begins with the source's head.

    With a :class:`~convlstm_tl.training.checkpoint.Checkpoint`, the training state is
    saved after every epoch; if the checkpoint is already in phase ``phase``
    (a resumed run), training continues from it and ends as an uninterrupted
    fit would.

    Returns:
        ``(history, seconds)``: the phase's per-epoch history dict (resumed
        epochs included) and its training time.
    """
    checkpoint = checkpoint if checkpoint is not None else Checkpoint()
    record, resuming = checkpoint.begin_phase(phase)
    early_stopping = ResumableEarlyStopping(monitor="val_loss", patience=patience or epochs,
                                            restore_best_weights=True, verbose=0)
    if resuming:
        checkpoint.restore(model, early_stopping)
    elif keep_start:
        start_loss = model.evaluate(distribute.fit_input(model, val), verbose=0, return_dict=True)["loss"]
        early_stopping.set_state({"best": float(start_loss), "best_epoch": -1, "wait": 0, "stopped_epoch": 0},
                                 model.get_weights())
    # The sample order of an epoch is seeded by its number, counted over all phases.
    train.set_epoch(checkpoint.epochs_done)
    # After early stopping, so that the checkpoint holds its state of the epoch.
    callbacks = [*callbacks, early_stopping, EpochCheckpoint(checkpoint, record, early_stopping)]
    # Under the multi-worker strategy, a tf.data pipeline per worker (see distribute.fit_input); it
    # keeps the sequence's batch order, the same on every worker, so Keras must not shuffle it, and
    # it does not advance the sequence at the end of an epoch.
    train_input = distribute.fit_input(model, train)
    if train_input is not train:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: train.on_epoch_end()))
    # A phase that early stopping ended runs no more epochs, but fit still ends
    # by restoring the best weights.
    model.fit(train_input, validation_data=distribute.fit_input(model, val), shuffle=train_input is train,
              initial_epoch=record.epochs, epochs=record.epochs if record.stopped else epochs, callbacks=callbacks,
              verbose=verbose)
    if early_stopping.best_epoch < 0:
        log.info("no epoch improved on the starting weights' validation loss: keeping them")
    return record.history, record.seconds


def evaluate_and_save(model, path, info, run_path, *, run_name, history, train_seconds, batch_size, extra=None):
    """Score ``model`` on the test split and write the run's result files.

    Writes ``model.keras``, ``history.csv``, ``metrics.json``, ``report.txt``
    and ``confusion_matrix.png`` into ``run_path``. ``extra`` entries are
    added to the metrics.

    Returns:
        The metrics dict.
    """
    start = time.perf_counter()
    y_true, y_pred, _ = predict_split(model, path, "test", batch_size=max(batch_size, 128))
    eval_seconds = time.perf_counter() - start
    metrics = classification_metrics(y_true, y_pred, info.class_names, domain=info.domain)
    metrics["train_seconds"] = round(train_seconds, 3)
    metrics["eval_seconds"] = round(eval_seconds, 3)
    metrics["epochs_run"] = len(next(iter(history.values()), []))
    metrics.update(extra or {})

    run_path = Path(run_path)
    model.save(run_path / "model.keras")
    write_history(run_path / "history.csv", history)
    save_json(run_path / "metrics.json", metrics)
    (run_path / "report.txt").write_text(
        f"domain {info.domain}, test split, {len(y_true)} samples\n\n"
        + classification_report_text(y_true, y_pred, info.class_names)
    )
    save_confusion_matrix(metrics["confusion_matrix"], info.class_names, run_path / "confusion_matrix.png",
                          title=f"{run_name} on {info.domain} (test)")
    return metrics


def write_history(path, history):
    """Write ``{name: [per-epoch values]}`` as a CSV with an ``epoch`` column."""
    names = list(history)
    epochs = len(history[names[0]]) if names else 0
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *names])
        for epoch in range(epochs):
            writer.writerow([epoch + 1, *(f"{history[name][epoch]:.6g}" for name in names)])
