"""Class probabilities of a run's model for new samples, per sample or per recording.

    from convlstm_tl import load_run
    from convlstm_tl.deploy.inputs import open_samples
    from convlstm_tl.deploy.predict import predict_samples

    run = load_run("St-ms-freeze")
    predictions = predict_samples(run, open_samples("new.csv", run))
    predictions.by_recording().write_csv(open("predictions.csv", "w"))

The model holds its own normalization, so samples go in as the domain file
(or the converter) gives them.
"""

import csv
from dataclasses import dataclass, field

import numpy as np

from convlstm_tl.errors import UserError

PROBABILITY_PREFIX = "p_"
# Significant digits of a probability in the CSV: enough to give the float32 back exactly.
PROBABILITY_DIGITS = 9


@dataclass
class Predictions:
    """Predicted class probabilities, one row per sample (or per recording), with what names each row.

    Attributes:
        class_names: the model's classes, in the order of the probability columns.
        probabilities: ``(N, n_classes)`` float32.
        columns: per-row values that name the row, in output order (e.g.
            ``sample``, ``group``, ``recording``, ``start``, ``label``; per
            recording: ``recording``, ``group``, ``label``, ``windows``).
    """

    class_names: list
    probabilities: np.ndarray
    columns: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.probabilities)

    @property
    def predicted(self):
        """The predicted class id of each row."""
        return self.probabilities.argmax(axis=-1)

    @property
    def predicted_names(self):
        """The predicted class name of each row."""
        return np.asarray(self.class_names, dtype=object)[self.predicted]

    def by_recording(self):
        """One row per recording (recording ids, else group ids), the mean of its rows' probabilities.

        Recordings come in the order of their first row; ``windows`` counts
        each one's rows, and ``group`` and ``label`` are kept where they are
        one value per recording.

        Raises:
            UserError: when the rows carry neither recording nor group ids.
        """
        key = next((name for name in ("recording", "group") if name in self.columns), None)
        if key is None:
            raise UserError("--aggregate recording needs recording (or group) ids, and the input has none; an"
                            " .npz can give them as an array 'recording'")
        ids = np.asarray(self.columns[key])
        _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        order = np.argsort(first)  # recordings in order of appearance
        inverse = np.argsort(order)[inverse.reshape(-1)]
        counts = np.bincount(inverse, minlength=len(order))
        sums = np.zeros((len(order), self.probabilities.shape[1]), dtype=np.float64)
        np.add.at(sums, inverse, self.probabilities)
        columns = {key: ids[first[order]]}
        for name in ("group", "label"):
            if name != key and name in self.columns:
                values = np.asarray(self.columns[name], dtype=object)
                kept = values[first[order]]
                if all(values == kept[inverse]):  # one value per recording
                    columns[name] = kept
        columns["windows"] = counts
        return Predictions(self.class_names, (sums / counts[:, None]).astype(np.float32), columns)

    def header(self):
        """The CSV header: the naming columns, ``predicted``, then one ``p_<class>`` per class."""
        return [*self.columns, "predicted", *(f"{PROBABILITY_PREFIX}{name}" for name in self.class_names)]

    def write_csv(self, file):
        """Write the rows as CSV to the open text ``file`` (header first)."""
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(self.header())
        names = self.predicted_names
        columns = [np.asarray(values, dtype=object) for values in self.columns.values()]
        for row, probabilities in enumerate(self.probabilities):
            writer.writerow([*(_cell(values[row]) for values in columns), names[row],
                             *(f"{p:.{PROBABILITY_DIGITS}g}" for p in probabilities.tolist())])


def is_predictions_csv(path):
    """Whether ``path`` starts with the header of a :meth:`Predictions.write_csv` file (``predicted``, ``p_*``)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader([f.readline(1 << 16)]), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return "predicted" in header and any(name.startswith(PROBABILITY_PREFIX) for name in header)


def predict_samples(run, samples, *, batch_size=128, progress=False):
    """Predict every sample of ``samples`` with ``run``'s model, batch by batch.

    Args:
        run: a :class:`~convlstm_tl.runs.resolve.Run` loaded with its model.
        samples: :class:`~convlstm_tl.deploy.inputs.Samples` checked for this run.
        batch_size: samples per forward pass.
        progress: show a progress bar.

    Returns:
        :class:`Predictions`, one row per sample, in the input's order, named
        by ``sample`` (its index) and the ids and labels the input has.
    """
    from tqdm.auto import tqdm

    run.check_classifier("prediction")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1. Received: {batch_size}")
    n_classes = len(run.class_names)
    probabilities = np.empty((samples.count, n_classes), dtype=np.float32)
    done = 0
    with tqdm(total=samples.count, unit="seq", disable=not progress, desc=f"predict {run.name}") as bar:
        for x in samples.batches(batch_size):
            # One compiled predict step per batch shape, as model.predict runs it.
            out = np.asarray(run.model.predict_on_batch(x), dtype=np.float32)
            probabilities[done:done + len(x)] = out
            done += len(x)
            bar.update(len(x))
    if done != samples.count:  # a file that changed while it was read
        raise UserError(f"{samples.description} gave {done} samples, not the {samples.count} it announced; is it"
                        " being rewritten?")
    columns = {"sample": np.arange(samples.count)}
    columns.update(samples.ids)
    if samples.labels is not None:
        columns["label"] = samples.labels
    return Predictions(list(run.class_names), probabilities, columns)


def _cell(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
