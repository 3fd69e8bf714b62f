"""Losses of the toolkit: frame prediction for unsupervised pretraining."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="convlstm_tl")
class FramePredictionLoss(keras.losses.Loss):
    """Mean squared error between predicted frames and the true frames ``shift`` steps later.

    The prediction at step ``t`` is compared with the target at ``t + shift``;
    the last ``shift`` predictions have nothing to predict and are left out.

    Args:
        shift: steps ahead (1: next frame, 0: the same frame).
        name: the loss's name.
        **kwargs: other ``keras.losses.Loss`` arguments.
    """

    def __init__(self, shift=1, name="frame_prediction_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.shift = int(shift)

    def call(self, y_true, y_pred):
        if self.shift:
            y_pred, y_true = y_pred[:, :-self.shift], y_true[:, self.shift:]
        return ops.mean(ops.square(ops.cast(y_pred, "float32") - ops.cast(y_true, "float32")), axis=(1, 2, 3, 4))

    def get_config(self):
        return {**super().get_config(), "shift": self.shift}
