"""The training state of an unfinished run, saved after every epoch.

A :class:`Checkpoint` is one file, ``.checkpoint.npz``, in the run's
temporary folder. It is written to a temporary name and renamed, so a crash
(even SIGKILL) mid-save leaves the previous epoch's checkpoint intact. It
holds everything that decides how training continues:

- every variable of the model (weights, BatchNorm statistics, and the seed
  generators of dropout layers, which ``save_weights`` leaves out) and of
  its optimizer (step count, moments);
- per training phase (a transfer may have several): epochs finished, whether
  early stopping ended it, its history and its seconds;
- the early-stopping state (best validation measure, wait counter, best
  weights) and the plateau schedule's (its learning rate is an optimizer variable).

The sample order needs nothing stored: a ``DomainSequence`` orders epoch
``e`` by ``(seed, e)`` (and Keras does not shuffle on top, see
:func:`convlstm_tl.training.fit.fit`), so the epoch count is enough to put
it back; augmentation is seeded by ``(seed, epoch, batch)``. No global
random state is read or written.

Keras' ``BackupAndRestore`` saves the model, its optimizer and the epoch, but
not the early-stopping state, the phases of a transfer or their history;
this one file holds all of it, and its saving is atomic.
"""

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from convlstm_tl.errors import RunError
from convlstm_tl.files import write_atomically
from convlstm_tl.runs.directory import CHECKPOINT_FILE

FORMAT_VERSION = 1


@dataclass
class PhaseRecord:
    """Progress of one training phase.

    Attributes:
        epochs: epochs finished.
        stopped: early stopping ended the phase.
        history: per-epoch values, ``{name: [value per epoch]}``.
        seconds: training time spent in the phase.
        best_epoch: the epoch (1-based) whose weights the phase keeps; 0 for
            the weights it started from, and for a phase without validation.
    """

    epochs: int = 0
    stopped: bool = False
    history: dict = field(default_factory=dict)
    seconds: float = 0.0
    best_epoch: int = 0


class Checkpoint:
    """The saved training state of a run, read and written by epoch.

    Args:
        folder: the run's temporary folder; None keeps the progress in
            memory only and saves nothing (training without a run).

    Example:

    >>> checkpoint = Checkpoint.open("runs/.partial-St")  # empty if nothing was saved
    >>> fit(model, train, val, epochs=40, patience=8, checkpoint=checkpoint)
    """

    def __init__(self, folder=None):
        self.path = Path(folder) / CHECKPOINT_FILE if folder is not None else None
        self.phases = []
        self._state = {}
        self._arrays = {}

    @classmethod
    def open(cls, folder):
        """The checkpoint saved in ``folder``, or an empty one if there is none.

        Raises:
            RunError: if the file is there but unreadable.
        """
        checkpoint = cls(folder)
        if checkpoint.path.is_file():
            checkpoint._read()
        return checkpoint

    @property
    def epochs_done(self):
        """Epochs finished over all phases: the data order's epoch count."""
        return sum(record.epochs for record in self.phases)

    def finished_phase(self, index):
        """The record of phase ``index`` if a later phase has begun, else None."""
        return self.phases[index] if index < len(self.phases) - 1 else None

    def begin_phase(self, index):
        """Start phase ``index``, or continue it if the checkpoint is in it.

        Returns:
            ``(record, resuming)``: the phase's :class:`PhaseRecord` and
            whether saved state must be restored before training on.
        """
        if index == len(self.phases) - 1 and self._arrays:
            return self.phases[index], True
        if index != len(self.phases):
            raise ValueError(f"phase {index} cannot start after {len(self.phases)} phases")
        self.phases.append(PhaseRecord())
        self._state, self._arrays = {}, {}
        return self.phases[index], False

    def restore(self, model, early_stopping=None, plateau=None):
        """Put the model, its optimizer, early stopping and the plateau schedule in the saved state.

        ``model`` must be built and compiled as it was when the state was
        saved (same architecture, same trainable layers).
        """
        _assign(model.variables, self._arrays, "model", self.path)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        _assign(model.optimizer.variables, self._arrays, "optimizer", self.path)
        if early_stopping is not None and self._state.get("early_stopping"):
            early_stopping.set_state(self._state["early_stopping"], _array_list(self._arrays, "best"))
        if plateau is not None and self._state.get("plateau"):
            plateau.set_state(self._state["plateau"])

    def save(self, model, early_stopping=None, plateau=None):
        """Write the state at the end of an epoch (atomically: temporary file, then rename)."""
        if self.path is None:
            return
        es_state, best_weights = early_stopping.get_state() if early_stopping is not None else (None, [])
        state = {
            "format_version": FORMAT_VERSION,
            "phases": [asdict(record) for record in self.phases],
            "early_stopping": es_state,
            "plateau": plateau.get_state() if plateau is not None else None,
        }
        arrays = {"state": np.array(json.dumps(state))}
        arrays.update(_numbered("model", (keras.ops.convert_to_numpy(v.value) for v in model.variables)))
        arrays.update(_numbered("optimizer", (keras.ops.convert_to_numpy(v.value) for v in model.optimizer.variables)))
        arrays.update(_numbered("best", best_weights))
        write_atomically(self.path, lambda f: np.savez(f, **arrays), mode="wb")

    def _read(self):
        try:
            with np.load(self.path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            state = json.loads(str(arrays.pop("state")))
            if state.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {state.get('format_version')}")
            phases = [PhaseRecord(**record) for record in state["phases"]]
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise RunError(f"checkpoint {self.path} is unreadable ({reason}); start the run again with overwrite",
                           field="overwrite") from None
        self.phases, self._state, self._arrays = phases, state, arrays


def _numbered(prefix, values):
    return {f"{prefix}/{index}": np.asarray(value) for index, value in enumerate(values)}


def _array_list(arrays, prefix):
    count = sum(1 for key in arrays if key.startswith(f"{prefix}/"))
    return [arrays[f"{prefix}/{index}"] for index in range(count)]


def _assign(variables, arrays, prefix, path):
    values = _array_list(arrays, prefix)
    shapes = [tuple(v.shape) for v in variables]
    if [tuple(value.shape) for value in values] != shapes:
        raise RunError(f"checkpoint {path} does not fit the {prefix} being trained ({len(values)} saved variables,"
                       f" {len(shapes)} now); the settings changed, start again with overwrite", field="overwrite")
    for variable, value in zip(variables, values):
        variable.assign(value)
