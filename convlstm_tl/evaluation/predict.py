"""Batched prediction over a split of a domain file."""

import numpy as np

from convlstm_tl.data.sequence import DomainSequence


def predict_split(model, path, split="test", *, batch_size=128, indices=None, verbose=0):
    """Predict every sample of a split, reading the file batch by batch.

    Returns:
        ``(y_true, y_pred, probabilities)``: label ids, predicted ids and the
        softmax outputs ``(N, n_classes)``, in the split's order.
    """
    sequence = DomainSequence(path, split, batch_size=batch_size, indices=indices, with_labels=False)
    probabilities = np.asarray(model.predict(sequence, verbose=verbose))
    return sequence.labels, probabilities.argmax(axis=-1), probabilities
