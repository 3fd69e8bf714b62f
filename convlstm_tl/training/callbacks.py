"""Keras callbacks that make training resumable, one job each.

- :class:`ResumableEarlyStopping`: Keras early stopping whose state can be
  saved and put back, so a resumed fit stops where an uninterrupted one would.
- :class:`ResumableReduceLROnPlateau`: Keras' plateau schedule with the same
  ``get_state`` / ``set_state`` (the learning rate itself is an optimizer
  variable, saved with the optimizer).
- :class:`ReplayLearningRate`: sets each epoch's learning rate from a list
  (a refit replays the schedule validation chose).
- :class:`EpochCheckpoint`: records each epoch's logs and writes the
  :class:`convlstm_tl.training.checkpoint.Checkpoint` at the end of every epoch.
"""

import time

import keras
import numpy as np


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """``keras.callbacks.EarlyStopping`` with ``get_state`` / ``set_state``.

    Args:
        **kwargs: the arguments of ``keras.callbacks.EarlyStopping``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pending = None

    def get_state(self):
        """Return ``(state, best_weights)``: a JSON-ready dict and a list of arrays."""
        state = {"best": None if self.best is None else float(self.best), "best_epoch": int(self.best_epoch),
                 "wait": int(self.wait), "stopped_epoch": int(self.stopped_epoch)}
        return state, list(self.best_weights or [])

    def set_state(self, state, best_weights):
        """Take this state when the next fit begins (``on_train_begin`` resets it otherwise)."""
        self._pending = (dict(state), [np.asarray(w) for w in best_weights])

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._pending is not None:
            state, best_weights = self._pending
            self.best, self.best_epoch = state["best"], state["best_epoch"]
            self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
            self.best_weights = best_weights or None
            self._pending = None


class ResumableReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """``keras.callbacks.ReduceLROnPlateau`` with ``get_state`` / ``set_state``.

    Args:
        **kwargs: the arguments of ``keras.callbacks.ReduceLROnPlateau``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pending = None

    def get_state(self):
        """Return the JSON-ready state: best value, wait and cooldown counters."""
        return {"best": None if self.best is None else float(self.best), "wait": int(self.wait),
                "cooldown_counter": int(self.cooldown_counter)}

    def set_state(self, state):
        """Take this state when the next fit begins (``on_train_begin`` resets it otherwise)."""
        self._pending = dict(state)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._pending is not None:
            self.best, self.wait = self._pending["best"], self._pending["wait"]
            self.cooldown_counter = self._pending["cooldown_counter"]
            self._pending = None


class ReplayLearningRate(keras.callbacks.Callback):
    """Set the optimizer's learning rate at the start of epoch ``e`` to ``rates[e]`` (the last one after the list).

    Args:
        rates: a learning rate per epoch.
    """

    def __init__(self, rates):
        super().__init__()
        self.rates = [float(rate) for rate in rates]

    def on_epoch_begin(self, epoch, logs=None):
        if self.rates:
            self.model.optimizer.learning_rate = self.rates[min(epoch, len(self.rates) - 1)]


class EpochCheckpoint(keras.callbacks.Callback):
    """Save the training state at the end of every epoch.

    Place it after the callbacks whose state it saves, so that it saves
    their state for the epoch that just ended.

    Args:
        checkpoint: the :class:`convlstm_tl.training.checkpoint.Checkpoint` to write.
        record: the current phase's :class:`~convlstm_tl.training.checkpoint.PhaseRecord`,
            updated in place (epochs, history, seconds, stopped).
        early_stopping: the :class:`ResumableEarlyStopping` of the fit, or None (no validation).
        plateau: the :class:`ResumableReduceLROnPlateau` of the fit, or None.
    """

    def __init__(self, checkpoint, record, early_stopping, plateau=None):
        super().__init__()
        self.checkpoint = checkpoint
        self.record = record
        self.early_stopping = early_stopping
        self.plateau = plateau
        self._start = self._base_seconds = None

    def on_train_begin(self, logs=None):
        self._start, self._base_seconds = time.perf_counter(), self.record.seconds

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.record.history.setdefault(name, []).append(float(value))
        self.record.epochs = epoch + 1
        self.record.stopped = bool(self.model.stop_training)
        if self.early_stopping is not None:
            self.record.best_epoch = int(self.early_stopping.best_epoch) + 1
        self.record.seconds = self._base_seconds + time.perf_counter() - self._start
        self.checkpoint.save(self.model, self.early_stopping, self.plateau)
