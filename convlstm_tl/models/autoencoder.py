"""The autoencoder of unsupervised pretraining: the classifier's body with a frame decoder on top.

The body (``normalize``, ``block_1 .. block_K``) is built by the classifier's
own code (:func:`convlstm_tl.models.classifier.build_body`), so a pretrained
run's blocks restore into a classifier like a source run's. The decoder's
layers are named ``decoder_*``.
"""

import math

import keras
from keras import ops

from convlstm_tl.config import OBJECTIVE_SHIFTS
from convlstm_tl.models.classifier import build_body

DECODER_PREFIX = "decoder_"
SHIFTS = OBJECTIVE_SHIFTS  # steps ahead each objective predicts


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


def build_autoencoder(config, *, frame_shape, mean, variance, name="convlstm_autoencoder"):
    """The classifier's body (``normalize``, ``block_1..K``) with a frame decoder on top.

    The decoder undoes the blocks' spatial pooling (upsampling, then cropping
    to the frame size) and maps the last block's features to the frame's
    channels with a convolution over space, one frame at a time.

    Args:
        config: a :class:`convlstm_tl.config.ModelConfig` (head settings unused).
        frame_shape: ``(T, H, W, C)``.
        mean: per-channel mean of the training frames.
        variance: per-channel variance of the training frames.
        name: the model's name.

    Returns:
        An uncompiled model from frames ``(B, T, H, W, C)`` to predicted
        normalized frames of the same shape.
    """
    steps, height, width, channels = (int(d) for d in frame_shape)
    inputs, x = build_body(config, frame_shape=frame_shape, mean=mean, variance=variance)
    _, _, rows, cols, _ = x.shape
    if (rows, cols) != (height, width):
        x = keras.layers.UpSampling3D((1, math.ceil(height / rows), math.ceil(width / cols)),
                                      name=f"{DECODER_PREFIX}upsample")(x)
        x = keras.layers.Cropping3D(((0, 0), (0, x.shape[2] - height), (0, x.shape[3] - width)),
                                    name=f"{DECODER_PREFIX}crop")(x)
    kernel = (1, 1 if height == 1 else config.kernel_size, config.kernel_size)
    outputs = keras.layers.Conv3D(channels, kernel, padding="same", dtype="float32",
                                  name=f"{DECODER_PREFIX}frames")(x)
    return keras.Model(inputs, outputs, name=name)
