"""Batches of a labelled sequence with batches of other data beside them: the inputs of a paired training model.

:class:`PairedSequence` feeds :func:`convlstm_tl.models.paired.paired_model`:
each batch of the labelled sequence comes with a batch of the source's
training data and/or of the target's unlabelled frames, drawn from their own
seeded orders, so that a resumed run reads the same batches.
:class:`ValidationInputs` feeds the same model in validation, where the
extra inputs are the validation frames themselves (the extra losses are then
zero or not computed) unless it is given its own.
"""

import keras
import numpy as np


class FrameRescaling:
    """Map frames normalized by one set of statistics onto another's raw scale.

    A model normalizes its input with the target's per-channel statistics;
    a source batch fed to it must come out of that normalization as the
    source's own normalization would make it: ``(x - m_s) / s_s * s_t + m_t``.
    A channel of zero variance is left unscaled, as in the classifier.
    """

    def __init__(self, *, from_mean, from_variance, to_mean, to_variance):
        def std(variance):
            variance = np.asarray(variance, dtype=np.float64)
            return np.sqrt(np.where(variance > 0, variance, 1.0))

        self.scale = (std(to_variance) / std(from_variance)).astype(np.float32)
        self.shift = (np.asarray(to_mean) - np.asarray(from_mean) * self.scale).astype(np.float32)

    def __call__(self, x):
        return np.asarray(x, dtype=np.float32) * self.scale + self.shift


def _split(item):
    """``(x, y, weights or None)`` of a sequence's batch."""
    return (*item, None) if len(item) == 2 else item


def _cycled(sequence, step):
    """Batch ``step`` of ``sequence`` read as an endless stream of its epochs (each in its own seeded order)."""
    epoch, index = divmod(int(step), len(sequence))
    if sequence.epoch != epoch:
        sequence.set_epoch(epoch)
    return sequence[index]


class PairedSequence(keras.utils.PyDataset):
    """The labelled sequence's batches, each with a source batch and/or an unlabelled target batch.

    Args:
        labelled: the sequence of labelled batches (``(x, y)`` or ``(x, y, w)``);
            an epoch is one pass over it.
        source: optional sequence of the source's labelled training batches.
        source_labels: feed the source batch's labels and weights too (joint).
        target: optional sequence of the target's unlabelled frames.
        source_transform: applied to source frames (a :class:`FrameRescaling`).
        labelled_transform: applied to the labelled frames (the source's, when
            no target label is read).
        labelled_weight: multiply the labelled batch's sample weights by this.

    Step ``s`` of the whole run (``epoch * len(labelled) + batch``) reads
    batch ``s`` of the source and target streams, each an endless repetition
    of its sequence's seeded epochs.
    """

    def __init__(self, labelled, *, source=None, source_labels=False, target=None, source_transform=None,
                 labelled_transform=None, labelled_weight=1.0):
        super().__init__()
        self.labelled, self.source, self.target = labelled, source, target
        self.source_labels = source_labels
        self.source_transform, self.labelled_transform = source_transform, labelled_transform
        self.labelled_weight = float(labelled_weight)

    def __len__(self):
        return len(self.labelled)

    @property
    def epoch(self):
        return self.labelled.epoch

    @property
    def labels(self):
        return self.labelled.labels

    @property
    def seed(self):
        return self.labelled.seed

    @seed.setter
    def seed(self, value):
        for sequence in (self.labelled, self.source, self.target):
            if sequence is not None:
                sequence.seed = int(value)

    def __getitem__(self, index):
        x, y, weights = _split(self.labelled[index])
        if self.labelled_transform is not None:
            x = self.labelled_transform(x)
        inputs = {"frames": x}
        step = self.labelled.epoch * len(self.labelled) + index
        if self.source is not None:
            source_x, source_y, source_weights = _split(_cycled(self.source, step))
            if self.source_transform is not None:
                source_x = self.source_transform(source_x)
            inputs["source_frames"] = source_x
            if self.source_labels:
                inputs["source_labels"] = source_y.astype(np.int32)
                inputs["source_weights"] = (np.ones(len(source_y), np.float32) if source_weights is None
                                            else source_weights.astype(np.float32))
        if self.target is not None:
            inputs["target_frames"] = _cycled(self.target, step)
        if weights is None and self.labelled_weight == 1.0:
            return inputs, y
        weights = np.ones(len(y), np.float32) if weights is None else weights
        return inputs, y, (weights * self.labelled_weight).astype(np.float32)

    def on_epoch_end(self):
        self.labelled.on_epoch_end()

    def set_epoch(self, epoch):
        """Put the sequence in the state it has at the start of ``epoch``."""
        self.labelled.set_epoch(epoch)


class ValidationInputs(keras.utils.PyDataset):
    """Validation batches for a paired training model.

    Each batch of ``val`` fills the model's ``frames`` input; the other frame
    inputs get the same frames (so an alignment between them is zero) or, for
    ``target_frames``, the batches of ``target`` when given (cycled); source
    labels are zeros and source weights zero (their loss is not computed in
    validation).
    """

    def __init__(self, val, input_names, *, target=None, transform=None):
        super().__init__()
        self.val, self.input_names, self.target, self.transform = val, tuple(input_names), target, transform

    def __len__(self):
        return len(self.val)

    def __getitem__(self, index):
        x, y, weights = _split(self.val[index])
        if self.transform is not None:
            x = self.transform(x)
        inputs = {"frames": x}
        for name in self.input_names:
            if name == "target_frames" and self.target is not None:
                inputs[name] = self.target[index % len(self.target)]
            elif name.endswith("_frames"):
                inputs[name] = x
            elif name == "source_labels":
                inputs[name] = np.zeros(len(x), np.int32)
            elif name == "source_weights":
                inputs[name] = np.zeros(len(x), np.float32)
        return (inputs, y) if weights is None else (inputs, y, weights)
