"""Fitting a model with early stopping and per-epoch checkpoints, so that any run can resume."""

import csv
import logging

import keras

from convlstm_tl import distribute
from convlstm_tl.training.callbacks import EpochCheckpoint, ResumableEarlyStopping
from convlstm_tl.training.checkpoint import Checkpoint

log = logging.getLogger(__name__)


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
    # keeps the sequence's batch order, the same on every worker, and does not advance the sequence
    # at the end of an epoch.
    train_input = distribute.fit_input(model, train)
    if train_input is not train:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: train.on_epoch_end()))
    # A phase that early stopping ended runs no more epochs, but fit still ends
    # by restoring the best weights.
    # The sequence orders its samples by (seed, epoch) itself; Keras shuffling its batches on top
    # would draw on the global random state, which a resumed run would then have to restore.
    model.fit(train_input, validation_data=distribute.fit_input(model, val), shuffle=False,
              initial_epoch=record.epochs, epochs=record.epochs if record.stopped else epochs, callbacks=callbacks,
              verbose=verbose)
    if early_stopping.best_epoch < 0:
        log.info("no epoch improved on the starting weights' validation loss: keeping them")
    return record.history, record.seconds


def write_history(path, history):
    """Write ``{name: [per-epoch values]}`` as a CSV with an ``epoch`` column."""
    names = list(history)
    epochs = len(history[names[0]]) if names else 0
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *names])
        for epoch in range(epochs):
            writer.writerow([epoch + 1, *(f"{history[name][epoch]:.6g}" for name in names)])
