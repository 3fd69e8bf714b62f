"""Metrics of the toolkit: macro-F1 over integer labels, computed during Keras' own validation pass."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="convlstm_tl")
class SparseMacroF1(keras.metrics.Metric):
    """Macro-averaged F1 score of integer labels against predicted class probabilities.

    Accumulates a confusion matrix over the batches of an epoch; the result
    averages the per-class F1 over the classes that occur among the labels or
    the predictions (as ``sklearn.metrics.f1_score(average="macro")`` without
    ``labels``). Sample weights are ignored: F1 counts samples, and class
    weights given to the loss must not change what it measures.

    Args:
        n_classes: number of classes (the width of the predictions).
        name: the metric's name (``val_`` is prefixed on validation data).
        **kwargs: other ``keras.metrics.Metric`` arguments.
    """

    def __init__(self, n_classes, name="macro_f1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes = int(n_classes)
        self.confusion = self.add_variable(shape=(self.n_classes, self.n_classes), initializer="zeros",
                                           name="confusion", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        true = ops.one_hot(ops.reshape(ops.cast(y_true, "int32"), (-1,)), self.n_classes, dtype="float32")
        predicted = ops.one_hot(ops.argmax(ops.reshape(y_pred, (-1, self.n_classes)), axis=-1), self.n_classes,
                                dtype="float32")
        self.confusion.assign_add(ops.matmul(ops.transpose(true), predicted))

    def result(self):
        true_positives = ops.diagonal(self.confusion)
        actual = ops.sum(self.confusion, axis=1)
        predicted = ops.sum(self.confusion, axis=0)
        # 2 tp / (actual + predicted) is F1; a class never seen nor predicted is left out.
        present = ops.cast(actual + predicted > 0, "float32")
        f1 = 2.0 * true_positives / ops.maximum(actual + predicted, 1.0)
        return ops.sum(f1 * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        self.confusion.assign(ops.zeros((self.n_classes, self.n_classes), dtype="float32"))

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}
