"""The ConvLSTM sequence classifier: a named body plus a named head.

Layer names are the contract that transfer code relies on::

    input                (T, H, W, C) frames
    normalize            per-channel z-score with the training split's statistics
    adapter              (optional, transfers) a learned C x C channel mixing plus bias,
                         identity at the start
                         (token domains instead: token_ids -> embedding, word ids
                         (T, 1, W, 1) to vectors (T, 1, W, embedding_dim))
    block_1 ... block_K  the body: ConvLSTM -> BatchNorm [-> pool] [-> dropout]
    head_pool            global average over time and space
    head_dense           dense + ReLU
    head_dropout
    head_softmax         class probabilities (float32 even under mixed precision)

Every block returns the whole sequence, so the body can be cut after any block
and the head still fits. The ConvLSTM is :class:`convlstm_tl.models.layers.FastConvLSTM2D`
(or the stock ``keras.layers.ConvLSTM2D`` with ``ModelConfig(cell="keras")``);
every other layer is stock Keras. The fast layer is registered as
``convlstm_tl>FastConvLSTM2D``, so ``model.keras`` reloads with plain
``keras.saving.load_model`` in any process that has imported ``convlstm_tl``
(see :mod:`convlstm_tl.models.registry`).
"""

import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np

from convlstm_tl.errors import RunError, first_line
from convlstm_tl.models.backbone import ADAPTER, EMBEDDING, HEAD_PREFIX, NORMALIZE, block_name
from convlstm_tl.models.layers import FastConvLSTM2D


def kernel_for(frame_shape, kernel_size):
    """``(1, k)`` kernels for 1-D frames (``H == 1``), ``(k, k)`` otherwise."""
    _, height, _, _ = frame_shape
    return (1, kernel_size) if height == 1 else (kernel_size, kernel_size)


def build_block(index, filters, config, frame_shape, kernel=None):
    """One body block: ConvLSTM -> BatchNorm, then optional pooling and dropout."""
    kernel = kernel or kernel_for(frame_shape, config.kernel_size)
    regularizer = keras.regularizers.L2(config.l2) if config.l2 else None
    # Both kinds compute the same function with the same weight layout, so
    # weights move between them with set_weights (see convlstm_tl.models.layers).
    convlstm = FastConvLSTM2D if config.cell == "fast" else keras.layers.ConvLSTM2D
    extra = {} if config.cell == "fast" else {"padding": "same"}
    layers = [
        convlstm(
            filters,
            kernel,
            return_sequences=True,
            recurrent_dropout=config.recurrent_dropout,
            kernel_regularizer=regularizer,
            name="convlstm",
            **extra,
        ),
        keras.layers.BatchNormalization(name="batch_norm"),
    ]
    if config.pool_size > 1:
        pool_h = 1 if frame_shape[1] == 1 else config.pool_size
        layers.append(keras.layers.MaxPooling3D((1, pool_h, config.pool_size), padding="same", name="pool"))
    if config.block_dropout:
        layers.append(keras.layers.Dropout(config.block_dropout, name="dropout"))
    return keras.Sequential(layers, name=block_name(index))


def build_head(x, n_classes, config):
    """Attach the classification head to the body's output ``x``."""
    x = keras.layers.GlobalAveragePooling3D(name=f"{HEAD_PREFIX}pool")(x)
    x = keras.layers.Dense(
        config.head_units,
        activation="relu",
        kernel_regularizer=keras.regularizers.L2(config.l2) if config.l2 else None,
        name=f"{HEAD_PREFIX}dense",
    )(x)
    x = keras.layers.Dropout(config.head_dropout, name=f"{HEAD_PREFIX}dropout")(x)
    return keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name=f"{HEAD_PREFIX}softmax")(x)


def build_classifier(config, *, frame_shape, n_classes, mean=None, variance=None, vocab_size=None, kernel=None,
                     adapter=False, name="convlstm_classifier"):
    """Build the classifier for frames of ``frame_shape``, or for token ids.

    Args:
        config: a :class:`convlstm_tl.config.ModelConfig`.
        frame_shape: ``(T, H, W, C)`` of one sample.
        n_classes: number of classes of the softmax.
        mean: per-channel mean ``(C,)`` of the training split (frames).
        variance: per-channel variance ``(C,)`` of the training split (frames).
        vocab_size: for a ``tokens`` domain (int32 ids ``(T, 1, W, 1)``), the
            vocabulary's size: the model then starts with an ``embedding``
            of ``config.embedding_dim`` instead of ``normalize``.
        kernel: ConvLSTM kernel ``(kh, kw)``; default from ``frame_shape``
            and ``config.kernel_size``. Transfer passes the source's kernel.
        adapter: put a learned channel mixing (``adapter``, a ``Dense(C)``
            over the channel axis starting as the identity) between
            ``normalize`` and ``block_1``: a transfer learns with it how the
            target's channels map to the source's (a sensor worn mirrored
            or rotated).
        name: the model's name.

    Returns:
        An uncompiled ``keras.Model`` mapping ``(B, T, H, W, C)`` to ``(B, n_classes)``.

    Example:

    >>> model = build_classifier(ModelConfig(), frame_shape=(10, 1, 25, 6), n_classes=7,
    ...                          mean=np.zeros(6), variance=np.ones(6))
    """
    inputs, x = build_body(config, frame_shape=frame_shape, mean=mean, variance=variance, vocab_size=vocab_size,
                           kernel=kernel, adapter=adapter)
    return keras.Model(inputs, build_head(x, n_classes, config), name=name)


def build_body(config, *, frame_shape, mean=None, variance=None, vocab_size=None, kernel=None, adapter=False):
    """The input and the body's output: ``normalize`` (or ``embedding``) then ``block_1 .. block_K``.

    Arguments as :func:`build_classifier`'s. Returns ``(inputs, x)``, the
    input tensor and the last block's output sequence, for a head or a
    decoder to go on top.
    """
    frame_shape = tuple(int(d) for d in frame_shape)
    if len(frame_shape) != 4:
        raise ValueError(f"frame_shape must be (T, H, W, C). Received: frame_shape={frame_shape}")
    if vocab_size is not None:
        if adapter:
            raise ValueError("an adapter mixes the channels of frames; token ids have none")
        inputs, x = _token_front_end(config, frame_shape, vocab_size)
        frame_shape = tuple(x.shape[1:])
    else:
        if mean is None or variance is None:
            raise ValueError("frames need the training split's per-channel mean and variance")
        channels = frame_shape[-1]
        mean = np.asarray(mean, dtype=np.float32).reshape(channels)
        # A constant channel would divide by zero; keep it unscaled instead.
        variance = np.where(np.asarray(variance, dtype=np.float32) > 0, variance, 1.0).reshape(channels)
        inputs = keras.Input(shape=frame_shape, name="frames")
        x = keras.layers.Normalization(axis=-1, mean=mean, variance=variance, name=NORMALIZE)(inputs)
        if adapter:
            x = keras.layers.Dense(channels, kernel_initializer="identity", bias_initializer="zeros",
                                   name=ADAPTER)(x)
    for index, filters in enumerate(config.filters, start=1):
        x = build_block(index, filters, config, frame_shape, kernel)(x)
    return inputs, x


def _token_front_end(config, frame_shape, vocab_size):
    """Input of int ids ``(T, 1, W, 1)`` and their embeddings ``(T, 1, W, embedding_dim)``."""
    steps, height, width, channels = frame_shape
    if height != 1 or channels != 1:
        raise ValueError(f"token ids must have frames of shape (T, 1, W, 1). Received: frame_shape={frame_shape}")
    inputs = keras.Input(shape=frame_shape, dtype="int32", name="frames")
    # Embedding appends its axis; drop the size-1 channel axis first so the
    # vectors take the channel's place.
    ids = keras.layers.Reshape((steps, height, width), name="token_ids")(inputs)
    x = keras.layers.Embedding(vocab_size, config.embedding_dim, name=EMBEDDING)(ids)
    return inputs, x


def load_model(path):
    """Load a saved classifier (``model.keras``) without its optimizer.

    ``import convlstm_tl`` registers the toolkit's layers, which is what
    ``keras.saving.load_model`` needs to rebuild them; every loader of runs
    goes through here.

    Raises:
        RunError: for a missing, truncated or foreign file, one line.
    """
    # Keras warns (e.g. "Skipping nested container") before it fails on a file
    # it cannot read; the failure is one line of its own, so those warnings
    # are held back and issued only if the load succeeds.
    if Path(path).is_file() and not zipfile.is_zipfile(path):
        raise RunError(f"{path} is not a complete .keras file (a truncated or foreign file); train the run again")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = keras.saving.load_model(path, compile=False)
        for warning in caught:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return model
    except Exception as error:  # a truncated or foreign file fails in many ways
        raise RunError(f"cannot load {path} ({type(error).__name__}: {first_line(error)}); train the run again"
                       ) from None
