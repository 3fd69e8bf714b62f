"""Fitting a model with early stopping and per-epoch checkpoints, so that any run can resume."""

import csv
import logging
from dataclasses import dataclass

import keras

from convlstm_tl import distribute
from convlstm_tl.training.callbacks import (
    EpochCheckpoint, ReplayLearningRate, ResumableEarlyStopping, ResumableReduceLROnPlateau,
)
from convlstm_tl.training.checkpoint import Checkpoint

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What one training phase did.

    Attributes:
        history: per-epoch values, resumed epochs included.
        seconds: its training time.
        epochs: epochs run.
        best_epoch: the epoch (1-based) whose weights it kept; 0 for the
            starting weights, and for a fit without validation (it keeps the last).
        stopped_early: early stopping ended it before its budget.
        still_improving: the budget ran out while validation was still
            improving (early stopping had not fired: the best epoch is among
            the last ``patience``, or the last one with patience 0), so more
            epochs would likely have helped. False without validation.
    """

    history: dict
    seconds: float
    epochs: int
    best_epoch: int
    stopped_early: bool
    still_improving: bool = False


# The plateau schedule halves the learning rate after a third of the early-stopping patience without
# improvement, so that a run lowers its rate (at most 5 times) before it stops.
PLATEAU_FACTOR = 0.5
PLATEAU_MIN_FACTOR = 1 / 32


def fit(model, train, val, *, epochs, patience, monitor="val_loss", lr_schedule="constant", verbose="auto",
        callbacks=(), checkpoint=None, phase=0, keep_start=False, lr_rates=None):
    """Fit, keeping the weights of the epoch with the best ``monitor`` on the validation data.

    ``patience`` epochs without improvement stop training early; 0 turns
    early stopping off but still restores the best epoch's weights, so a run
    always saves its best model. ``lr_schedule="plateau"`` halves the
    learning rate when ``monitor`` has not improved for a third of the
    patience (at least 2 epochs).

    With ``keep_start``, the weights fit starts from are a candidate too
    (epoch 0): if no epoch improves on their validation measure, fit returns
    them. This is for a start that is already a whole model, such as a
    transfer that begins with the source's head.

    With ``val=None`` (a refit on all labelled data), fit trains exactly
    ``epochs`` epochs and keeps the last weights; ``lr_rates`` (one learning
    rate per epoch, e.g. the schedule a validated fit followed) sets each
    epoch's rate.

    With a :class:`~convlstm_tl.training.checkpoint.Checkpoint`, the training state is
    saved after every epoch; if the checkpoint is already in phase ``phase``
    (a resumed run), training continues from it and ends as an uninterrupted
    fit would.

    Returns:
        A :class:`FitResult`.
    """
    checkpoint = checkpoint if checkpoint is not None else Checkpoint()
    record, resuming = checkpoint.begin_phase(phase)
    early_stopping = plateau = None
    callbacks = list(callbacks)
    if val is not None:
        mode = "min" if monitor == "val_loss" else "max"
        early_stopping = ResumableEarlyStopping(monitor=monitor, mode=mode, patience=patience or epochs,
                                                restore_best_weights=True, verbose=0)
        if lr_schedule == "plateau":
            rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
            plateau = ResumableReduceLROnPlateau(monitor=monitor, mode=mode, factor=PLATEAU_FACTOR,
                                                 patience=max(2, (patience or epochs) // 3),
                                                 min_lr=rate * PLATEAU_MIN_FACTOR, verbose=0)
            callbacks.append(plateau)
        callbacks.append(early_stopping)
    elif lr_rates:
        callbacks.append(ReplayLearningRate(lr_rates))
    if resuming:
        checkpoint.restore(model, early_stopping, plateau)
    elif keep_start and val is not None:
        scores = model.evaluate(distribute.fit_input(model, val), verbose=0, return_dict=True)
        early_stopping.set_state({"best": float(scores[monitor.removeprefix("val_")]), "best_epoch": -1, "wait": 0,
                                  "stopped_epoch": 0}, model.get_weights())
    # The sample order of an epoch is seeded by its number, counted over all phases.
    train.set_epoch(checkpoint.epochs_done)
    # After early stopping and the schedule, so that the checkpoint holds their state of the epoch.
    callbacks.append(EpochCheckpoint(checkpoint, record, early_stopping, plateau))
    # Under the multi-worker strategy a tf.data pipeline per worker, and for in-memory features on one
    # device a tf.data pipeline over the arrays (see distribute.fit_input); both keep the sequence's
    # batch order and do not advance the sequence themselves.
    train_input = distribute.fit_input(model, train)
    if train_input is not train:
        # Keras advances a PyDataset once when fit starts (its epoch iterator's reset calls on_epoch_end)
        # and after every epoch; a pipeline built from the sequence is advanced the same way here, so
        # that it reads the orders the sequence itself would have given (cached and uncached transfers
        # train alike).
        train.on_epoch_end()
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: train.on_epoch_end()))
    # A phase that early stopping ended runs no more epochs, but fit still ends
    # by restoring the best weights.
    # The sequence orders its samples by (seed, epoch) itself; Keras shuffling its batches on top
    # would draw on the global random state, which a resumed run would then have to restore.
    model.fit(train_input, validation_data=None if val is None else distribute.fit_input(model, val),
              shuffle=False, initial_epoch=record.epochs, epochs=record.epochs if record.stopped else epochs,
              callbacks=callbacks, verbose=verbose)
    if early_stopping is not None and early_stopping.best_epoch < 0:
        log.info("no epoch improved on the starting weights' validation measure: keeping them")
    return phase_result(record, patience=patience if val is not None else None)


def phase_result(record, *, patience):
    """The :class:`FitResult` of a phase's :class:`~convlstm_tl.training.checkpoint.PhaseRecord`.

    ``patience`` is the early-stopping patience of a validated phase, None
    for a phase trained without validation.
    """
    still_improving = (patience is not None and not record.stopped
                       and record.best_epoch > record.epochs - max(patience, 1))
    return FitResult(history=record.history, seconds=record.seconds, epochs=record.epochs,
                     best_epoch=record.best_epoch, stopped_early=record.stopped, still_improving=still_improving)


def fit_again(model, train, selected, **kwargs):
    """Train ``model`` afresh on ``train`` (all labelled data) for the epochs a validated fit chose.

    ``selected`` is that fit's :class:`FitResult`: ``best_epoch`` epochs at
    the learning rates its schedule set in them (its history's
    ``learning_rate``, when the schedule logged one). ``kwargs`` are
    :func:`fit`'s (``checkpoint``, ``phase``, ``verbose``, ``callbacks``).
    """
    rates = selected.history.get("learning_rate", [])[:selected.best_epoch]
    return fit(model, train, None, epochs=selected.best_epoch, patience=0, lr_rates=rates, **kwargs)


def write_history(path, history):
    """Write ``{name: [per-epoch values]}`` as a CSV with an ``epoch`` column."""
    names = list(history)
    epochs = len(history[names[0]]) if names else 0
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *names])
        for epoch in range(epochs):
            writer.writerow([epoch + 1, *(f"{history[name][epoch]:.6g}" for name in names)])
