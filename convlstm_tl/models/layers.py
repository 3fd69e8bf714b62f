"""A fast ConvLSTM layer, with the math of ``keras.layers.ConvLSTM2D``.

The stock layer runs eight small convolutions per time step (input and
recurrent, for each of the four gates) inside Keras' generic RNN loop.
:class:`FastConvLSTM2D` splits the work the way cuDNN-style RNNs do:

1. the input-to-gates convolution runs **once** for all ``T`` frames: the
   ``B * T`` frames go through one convolution with ``4 * filters`` output
   channels (one cuDNN call on a GPU, one large oneDNN call on a CPU);
2. each step runs **one** fused recurrent convolution (all four gates) and the
   elementwise gate math.

The weights have exactly the stock layout (``kernel`` ``(kh, kw, C, 4F)``,
``recurrent_kernel`` ``(kh, kw, F, 4F)``, ``bias`` ``(4F,)``, gates in the
order input, forget, cell, output), so ``set_weights`` moves weights between
the two layers unchanged; :func:`from_keras_convlstm`,
:func:`to_keras_convlstm` and :func:`convert_model` do it for layers and whole
models. Only ``keras.ops`` is used, so the layer runs on every Keras backend.
"""

import keras
from keras import ops

# How the recurrence loops, chosen by measurement: one layer (32 filters,
# batch 32, T=10), forward + backward / forward only, sequences/s, the three
# variants alternated in one process on the shared 2-core CPU (TensorFlow 2.21):
#   watch 1x25x6:   stock ConvLSTM2D 556 / 1463, unrolled 654 / 1495, keras.ops.scan 618 / 1315
#   digits 40x40x1: stock ConvLSTM2D 3.5 / 13.3, unrolled 3.2 / 7.2,  keras.ops.scan 2.4 / 5.7
# (the digits row predates the time-major input, which brought the unrolled
# forward pass level with the stock layer's: 1.95 s vs 1.97 s a batch).
# Unrolling avoids the while loop's per-step bookkeeping (on TensorFlow,
# keras.ops.scan carries the state through TensorArrays); it grows the graph,
# and its tracing time, with T, so longer sequences use keras.ops.scan. Only
# T=10 was timed; the cut-off at 32 steps is a judgement of graph size.
UNROLL_MAX_STEPS = 32


@keras.saving.register_keras_serializable(package="convlstm_tl")
class FastConvLSTM2D(keras.layers.Layer):
    """2-D convolutional LSTM whose input convolution is batched over time.

    Computes, for every step ``t`` (``*`` is a 2-D convolution with padding
    ``"same"``)::

        z_t = x_t * kernel + h_{t-1} * recurrent_kernel + bias
        i, f, g, o = split(z_t, 4)
        c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)
        h_t = sigmoid(o) tanh(c_t)

    which is ``keras.layers.ConvLSTM2D`` with ``padding="same"``, strides and
    dilation 1 and channels-last data: with the same weights both layers give
    the same outputs (to float32 rounding). The part ``x_t * kernel`` runs for
    all steps in one convolution before the loop.

    Dropout differs from the stock layer in one respect, which the batched
    convolution requires: the stock layer draws four masks (one per gate) for
    the inputs and four for the state, which would take four input and four
    recurrent convolutions. Here one input mask and one state mask are shared
    by the four gates ("tied" variational dropout). As in the stock layer,
    each mask is drawn once per sequence and applied at every step, and no
    dropout is applied at inference.

    Args:
        filters: number of output channels (the size of the state).
        kernel_size: int or tuple of 2 ints, the size of both convolutions.
        activation: activation of the cell candidate and the output
            (default ``"tanh"``).
        recurrent_activation: activation of the gates (default ``"sigmoid"``).
        use_bias: whether the gates have a bias.
        kernel_initializer: initializer of ``kernel``.
        recurrent_initializer: initializer of ``recurrent_kernel``.
        bias_initializer: initializer of ``bias``.
        unit_forget_bias: add 1 to the forget gate's bias at initialisation
            (Jozefowicz et al. 2015), as the stock layer does by default.
        kernel_regularizer: regularizer of ``kernel``.
        recurrent_regularizer: regularizer of ``recurrent_kernel``.
        bias_regularizer: regularizer of ``bias``.
        kernel_constraint: constraint of ``kernel``.
        recurrent_constraint: constraint of ``recurrent_kernel``.
        bias_constraint: constraint of ``bias``.
        dropout: fraction of the input units dropped (one mask per sequence,
            shared by the gates).
        recurrent_dropout: fraction of the state units dropped before the
            recurrent convolution (one mask per sequence, shared by the gates).
        seed: seed of the dropout masks.
        return_sequences: return the state of every step (default), or only
            the last one.
        unroll: ``True`` unrolls the recurrence in Python, ``False`` loops
            with ``keras.ops.scan``; ``None`` (default) unrolls up to
            ``UNROLL_MAX_STEPS`` steps, which measured fastest.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``...).

    Input shape:
        5-D tensor ``(batch, time, rows, cols, channels)``.

    Output shape:
        ``(batch, time, rows, cols, filters)`` with ``return_sequences``,
        else ``(batch, rows, cols, filters)``.

    Example:

    >>> x = np.random.rand(8, 10, 1, 25, 6).astype("float32")
    >>> layer = FastConvLSTM2D(32, (1, 3))
    >>> layer(x).shape
    (8, 10, 1, 25, 32)
    >>> stock = to_keras_convlstm(layer)   # a keras.layers.ConvLSTM2D, same weights
    """

    def __init__(
        self,
        filters,
        kernel_size,
        *,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=True,
        unroll=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be a positive int. Received: filters={filters}")
        self.filters = int(filters)
        kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(kernel_size) != 2 or any(int(k) < 1 for k in kernel_size):
            raise ValueError(f"kernel_size must be an int or 2 positive ints. Received: kernel_size={kernel_size}")
        self.kernel_size = tuple(int(k) for k in kernel_size)
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must lie in [0, 1). Received: {name}={rate}")
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if (dropout or recurrent_dropout) else None
        self.return_sequences = bool(return_sequences)
        self.unroll = unroll
        self.input_spec = keras.layers.InputSpec(ndim=5)

    def build(self, input_shape):
        _, _, rows, cols, channels = input_shape
        if channels is None:
            raise ValueError(f"FastConvLSTM2D needs a known channel axis. Received: input_shape={tuple(input_shape)}")
        # Kept for to_keras_convlstm: the stock layer needs the frame size to build.
        self._frame_shape = (rows, cols, channels)
        self.input_spec = keras.layers.InputSpec(ndim=5, axes={-1: channels})
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, channels, 4 * self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(*self.kernel_size, self.filters, 4 * self.filters),
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(4 * self.filters,),
                initializer=self._bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    def _bias_initializer(self, shape, dtype=None):
        if not self.unit_forget_bias:
            return self.bias_initializer(shape, dtype=dtype)
        # As the stock layer: forget-gate bias starts at 1 (gate order i, f, c, o).
        f = self.filters
        return ops.concatenate([
            self.bias_initializer((f,), dtype=dtype),
            ops.ones((f,), dtype=dtype),
            self.bias_initializer((2 * f,), dtype=dtype),
        ])

    def call(self, inputs, training=False):
        dynamic = ops.shape(inputs)
        # Static sizes where known, so that short sequences can be unrolled.
        _, steps, rows, cols, channels = (
            static if static is not None else dynamic[axis] for axis, static in enumerate(inputs.shape))
        kernel = ops.cast(self.kernel, self.compute_dtype)
        recurrent_kernel = ops.cast(self.recurrent_kernel, self.compute_dtype)

        if training and self.dropout:
            # One mask per sequence, broadcast over time (axis 1).
            mask_shape = (dynamic[0], 1, rows, cols, channels)
            inputs = inputs * self._dropout_mask(mask_shape, self.dropout, inputs.dtype)

        # All frames of all sequences through one input convolution, time-major
        # so that each step reads one contiguous block (transposing the inputs
        # moves C channels per pixel, transposing the gates would move 4F).
        frames = ops.reshape(ops.moveaxis(inputs, 1, 0), (-1, rows, cols, channels))
        gates_x = ops.conv(frames, kernel, padding="same")
        if self.use_bias:
            gates_x = gates_x + ops.cast(self.bias, self.compute_dtype)
        gates_x = ops.reshape(gates_x, (steps, -1, rows, cols, 4 * self.filters))

        state = ops.zeros_like(gates_x[0, :, :, :, : self.filters])
        recurrent_mask = None
        if training and self.recurrent_dropout:
            recurrent_mask = self._dropout_mask(ops.shape(state), self.recurrent_dropout, state.dtype)

        def step(carry, gates_t):
            h, c = carry
            if recurrent_mask is not None:
                h = h * recurrent_mask
            z = gates_t + ops.conv(h, recurrent_kernel, padding="same")
            i, f, g, o = ops.split(z, 4, axis=-1)
            c = self.recurrent_activation(f) * c + self.recurrent_activation(i) * self.activation(g)
            h = self.recurrent_activation(o) * self.activation(c)
            # keras.ops.scan on TensorFlow needs the per-step outputs to have
            # the carry's structure, so c is stacked too (and dropped).
            return (h, c), (h, c)

        unroll = self.unroll if self.unroll is not None else isinstance(steps, int) and steps <= UNROLL_MAX_STEPS
        if unroll:
            carry, outputs = (state, state), []
            # unstack, whose gradient is one stack: slicing gates_x[t] instead
            # measured 2.5x slower to train (one layer, watch shape), as each slice's
            # gradient is a zero-padded copy of the whole tensor, T of them.
            for gates_t in ops.unstack(gates_x, steps, axis=0):
                carry, (h, _) = step(carry, gates_t)
                outputs.append(h)
            if not self.return_sequences:
                return outputs[-1]
            return ops.stack(outputs, axis=1)
        (h, _), (outputs, _) = ops.scan(step, (state, state), gates_x)
        if not self.return_sequences:
            return h
        return ops.moveaxis(outputs, 0, 1)

    def _dropout_mask(self, shape, rate, dtype):
        keep = keras.random.uniform(shape, seed=self.seed_generator) >= rate
        return ops.cast(keep, dtype) / ops.cast(1.0 - rate, dtype)

    def compute_output_shape(self, input_shape):
        batch, steps, rows, cols, _ = input_shape
        if self.return_sequences:
            return (batch, steps, rows, cols, self.filters)
        return (batch, rows, cols, self.filters)

    def get_config(self):
        config = super().get_config()
        ser = keras.saving.serialize_keras_object
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            activation=keras.activations.serialize(self.activation),
            recurrent_activation=keras.activations.serialize(self.recurrent_activation),
            use_bias=self.use_bias,
            kernel_initializer=ser(self.kernel_initializer),
            recurrent_initializer=ser(self.recurrent_initializer),
            bias_initializer=ser(self.bias_initializer),
            unit_forget_bias=self.unit_forget_bias,
            kernel_regularizer=ser(self.kernel_regularizer),
            recurrent_regularizer=ser(self.recurrent_regularizer),
            bias_regularizer=ser(self.bias_regularizer),
            kernel_constraint=ser(self.kernel_constraint),
            recurrent_constraint=ser(self.recurrent_constraint),
            bias_constraint=ser(self.bias_constraint),
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            seed=self.seed,
            return_sequences=self.return_sequences,
            unroll=self.unroll,
        )
        return config


# Arguments whose meaning is the same in both layers, copied by the converters.
_SHARED_ARGS = (
    "filters", "kernel_size", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
    "recurrent_initializer", "bias_initializer", "unit_forget_bias", "kernel_regularizer",
    "recurrent_regularizer", "bias_regularizer", "kernel_constraint", "recurrent_constraint", "bias_constraint",
    "dropout", "recurrent_dropout", "seed", "return_sequences", "name", "trainable", "dtype",
)


def from_keras_convlstm(layer, **overrides):
    """A :class:`FastConvLSTM2D` with the configuration and weights of a stock layer.

    Args:
        layer: a ``keras.layers.ConvLSTM2D`` with ``padding="same"``, strides
            and dilation 1, channels-last data, no ``go_backwards`` and no
            ``return_state`` (the cases the fast layer computes).
        **overrides: arguments of :class:`FastConvLSTM2D` to set differently.

    Returns:
        The new layer, built and holding a copy of ``layer``'s weights if
        ``layer`` was built.

    Raises:
        ValueError: for a stock layer whose configuration the fast layer
            cannot compute.
    """
    config = layer.get_config()
    unsupported = {
        "padding": (config.get("padding"), "same"),
        "strides": (tuple(config.get("strides", (1, 1))), (1, 1)),
        "dilation_rate": (tuple(config.get("dilation_rate", (1, 1))), (1, 1)),
        "data_format": (config.get("data_format"), "channels_last"),
        "go_backwards": (config.get("go_backwards", False), False),
        "return_state": (config.get("return_state", False), False),
    }
    for key, (value, needed) in unsupported.items():
        if value != needed:
            raise ValueError(f"FastConvLSTM2D computes only {key}={needed!r}. Received: {key}={value!r}")
    fast = FastConvLSTM2D(**{**{key: config[key] for key in _SHARED_ARGS if key in config}, **overrides})
    _copy_weights(layer, fast)
    return fast


def to_keras_convlstm(layer, **overrides):
    """A ``keras.layers.ConvLSTM2D`` with the configuration and weights of a :class:`FastConvLSTM2D`.

    Args:
        layer: a :class:`FastConvLSTM2D`.
        **overrides: arguments of ``keras.layers.ConvLSTM2D`` to set differently.

    Returns:
        The stock layer (``padding="same"``), built and holding a copy of
        ``layer``'s weights if ``layer`` was built.
    """
    config = layer.get_config()
    args = {key: config[key] for key in _SHARED_ARGS if key in config}
    stock = keras.layers.ConvLSTM2D(padding="same", **{**args, **overrides})
    _copy_weights(layer, stock)
    return stock


def _copy_weights(source, target):
    # Both layers hold kernel, recurrent_kernel[, bias] in this order and
    # layout, so the weight lists carry over as they are.
    if not source.built:
        return
    if isinstance(source, FastConvLSTM2D):
        frame_shape = source._frame_shape
    else:
        frame_shape = (*source.cell.spatial_dims, source.cell.input_dim)
    target.build((None, None, *frame_shape))
    target.set_weights(source.get_weights())


def convert_model(model, *, to="fast"):
    """Rebuild ``model`` with every ConvLSTM layer of the other kind, weights included.

    Brings a model trained with ``keras.layers.ConvLSTM2D`` (e.g. a checkpoint
    from before this layer existed) to :class:`FastConvLSTM2D`, or back.
    Layer names, the rest of the architecture and every weight are kept.

    Args:
        model: a Keras model (functional or sequential, blocks may be nested).
        to: ``"fast"`` for :class:`FastConvLSTM2D`, ``"keras"`` for the stock layer.

    Returns:
        A new model; ``model`` is unchanged.
    """
    if to not in ("fast", "keras"):
        raise ValueError(f"to must be 'fast' or 'keras'. Received: to={to!r}")
    source, convert = (keras.layers.ConvLSTM2D, from_keras_convlstm) if to == "fast" else (
        FastConvLSTM2D, to_keras_convlstm)

    def clone(layer):
        if isinstance(layer, source):
            return convert(layer)
        return layer.__class__.from_config(layer.get_config())

    converted = keras.models.clone_model(model, clone_function=clone, recursive=True)
    converted.set_weights(model.get_weights())
    return converted
