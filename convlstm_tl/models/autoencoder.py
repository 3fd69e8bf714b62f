"""The autoencoder of unsupervised pretraining: the classifier's body with a frame decoder on top.

The body (``normalize``, ``block_1 .. block_K``) is built by the classifier's
own code (:func:`convlstm_tl.models.classifier.build_body`), so a pretrained
run's blocks restore into a classifier like a source run's. The decoder's
layers are named ``decoder_*``.
"""

import math

import keras

from convlstm_tl.models.classifier import build_body

DECODER_PREFIX = "decoder_"


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
