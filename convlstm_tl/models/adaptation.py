"""Unsupervised domain alignment: terms that pull source and target features together.

A transfer with ``--adapt coral|mmd|dann`` trains on labelled source batches
and, alongside each, an unlabelled batch of the target domain. Both go through
the same body; each block's output is pooled over time and space into ``(B, D)``
features, and one of these terms, weighted, is added to the classification
loss:

- ``coral`` (:func:`coral_loss`, Deep CORAL, Sun & Saenko 2016): matches the
  second-order statistics (feature covariances). Cheap and stable; the first
  choice when the domains differ by scale or correlation of the channels.
- ``mmd`` (:func:`mmd_loss`, Gretton et al. 2012; Long et al. 2015): the
  squared maximum mean discrepancy under a sum of Gaussian kernels, which
  matches all moments; needs batches of a few dozen samples to be stable.
- ``dann`` (:class:`GradientReversal`, Ganin & Lempitsky 2015): a small
  discriminator learns to tell source from target features while the
  reversed gradient trains the body to make them indistinguishable. The most
  expressive and the least stable of the three.

:class:`DomainAlignment` wraps all three as one layer that passes the class
probabilities through and attaches the term with ``add_loss`` in training
only, so a functional training model keeps one output and ``val_loss`` stays
the plain classification loss.

Only ``keras.ops`` is used, so everything here runs on every Keras backend.
The terms are computed in float32 whatever the features' dtype.
"""

import keras
from keras import ops

METHODS = ("coral", "mmd", "dann")
_EPSILON = 1e-7
DEFAULT_BANDWIDTH_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _check_features(source, target):
    """Cast both batches to float32 after checking they are ``(B, D)`` with the same ``D``."""
    source_shape, target_shape = tuple(source.shape), tuple(target.shape)
    if len(source_shape) != 2 or len(target_shape) != 2 or (
            source_shape[1] is not None and target_shape[1] is not None and source_shape[1] != target_shape[1]):
        raise ValueError("source and target features must be (B, D) with the same D. "
                         f"Received: source.shape={source_shape}, target.shape={target_shape}")
    return ops.cast(source, "float32"), ops.cast(target, "float32")


def _covariance(x):
    """Unbiased covariance ``(D, D)`` of the rows of ``x``; a single row gives zeros."""
    rows = ops.cast(ops.shape(x)[0], "float32")
    centered = x - ops.mean(x, axis=0, keepdims=True)
    # B - 1 is 0 for one row, whose centred values are all 0 anyway.
    return ops.matmul(ops.transpose(centered), centered) / ops.maximum(rows - 1.0, 1.0)


def coral_loss(source, target):
    """Deep CORAL loss: the distance between the feature covariances of two batches.

    ``||C_s - C_t||_F^2 / (4 D^2)`` with ``C`` the unbiased covariance of a
    batch's rows (Sun & Saenko 2016). It is 0 for batches with equal
    covariance, whatever their means, and does not depend on the order of
    the rows.

    Args:
        source: features ``(Bs, D)`` of the source batch.
        target: features ``(Bt, D)`` of the target batch.

    Returns:
        A float32 scalar tensor.

    Example:

    >>> coral_loss(np.random.normal(size=(32, 8)), 3.0 * np.random.normal(size=(16, 8)))  # > 0
    """
    source, target = _check_features(source, target)
    dims = ops.cast(ops.shape(source)[1], "float32")
    difference = _covariance(source) - _covariance(target)
    return ops.sum(ops.square(difference)) / (4.0 * dims * dims)


def mmd_loss(source, target, *, bandwidth_multipliers=DEFAULT_BANDWIDTH_MULTIPLIERS):
    """Squared maximum mean discrepancy between two batches under a sum of Gaussian kernels.

    The biased estimate (V-statistic) ``mean K_ss + mean K_tt - 2 mean K_st``
    with ``K(a, b) = sum_m exp(-||a - b||^2 / (m * h))``, ``m`` over
    ``bandwidth_multipliers`` and ``h`` the mean squared distance between
    distinct rows of the joint batch (Long et al. 2015). ``h`` adapts the
    kernels to the features' scale; it is treated as a constant, so the
    gradient does not shrink the term by spreading the features out. The
    estimate is exactly 0 for identical batches.

    Args:
        source: features ``(Bs, D)`` of the source batch.
        target: features ``(Bt, D)`` of the target batch.
        bandwidth_multipliers: the multipliers ``m`` of the kernels' bandwidths.

    Returns:
        A float32 scalar tensor (never negative).

    Example:

    >>> mmd_loss(np.random.normal(size=(32, 8)), 1.0 + np.random.normal(size=(32, 8)))  # > 0
    """
    multipliers = tuple(float(m) for m in bandwidth_multipliers)
    if not multipliers or min(multipliers) <= 0:
        raise ValueError(f"bandwidth_multipliers must be positive numbers. "
                         f"Received: bandwidth_multipliers={bandwidth_multipliers}")
    source, target = _check_features(source, target)
    n_source = ops.shape(source)[0]
    joint = ops.concatenate([source, target], axis=0)
    squared_norms = ops.sum(ops.square(joint), axis=1, keepdims=True)
    products = ops.matmul(joint, ops.transpose(joint))
    distances = ops.maximum(squared_norms + ops.transpose(squared_norms) - 2.0 * products, 0.0)
    rows = ops.cast(ops.shape(joint)[0], "float32")
    # The diagonal is 0 (up to rounding): the mean is over the n^2 - n distinct pairs.
    bandwidth = ops.sum(distances) / ops.maximum(rows * rows - rows, 1.0)
    # All rows equal: any bandwidth gives K = const, so any positive value does.
    bandwidth = ops.stop_gradient(ops.maximum(bandwidth, 1e-12))
    kernel = ops.zeros_like(distances)
    for multiplier in multipliers:
        kernel = kernel + ops.exp(-distances / (multiplier * bandwidth))
    k_ss = ops.mean(kernel[:n_source, :n_source])
    k_tt = ops.mean(kernel[n_source:, n_source:])
    k_st = ops.mean(kernel[:n_source, n_source:])
    # The V-statistic is a squared norm: only rounding can make it negative.
    return ops.maximum(k_ss + k_tt - 2.0 * k_st, 0.0)


@keras.saving.register_keras_serializable(package="convlstm_tl")
class GradientReversal(keras.layers.Layer):
    """Identity in the forward pass; multiplies the gradient by ``-scale`` in the backward pass.

    The gradient reversal layer of DANN (Ganin & Lempitsky 2015): placed
    between the features and a domain discriminator, it lets the
    discriminator minimise its loss while the layers below maximise it.

    Computed as ``stop_gradient(x) - scale * (x - stop_gradient(x))``: the
    second term is exactly 0 forward (so the output is bit-identical to the
    input, which ``(1 + s) * sg(x) - s * x`` is not after rounding), and its
    derivative is ``-scale``. No custom gradient, so every backend runs it.

    Args:
        scale: the factor ``lambda`` of the reversed gradient (``>= 0``).
        **kwargs: other ``keras.layers.Layer`` arguments.

    Input shape:
        Any.

    Output shape:
        Same as the input.

    Example:

    >>> reversed_features = GradientReversal(1.0)(features)
    """

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        scale = float(scale)
        if scale < 0:
            raise ValueError(f"scale must be >= 0. Received: scale={scale}")
        self.scale = scale

    def call(self, inputs):
        frozen = ops.stop_gradient(inputs)
        return frozen - ops.cast(self.scale, inputs.dtype) * (inputs - frozen)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="convlstm_tl")
class DomainAlignment(keras.layers.Layer):
    """Pass ``inputs[0]`` through; in training, add ``weight`` times an alignment term as a loss.

    Called on ``[passthrough, source_features, target_features]``, with
    features ``(B, D)`` pooled from the body, it returns ``passthrough``
    unchanged and, only when ``training`` is true, calls ``add_loss`` with
    ``weight * term``, the term chosen by ``method``:

    - ``"coral"``: :func:`coral_loss`;
    - ``"mmd"``: :func:`mmd_loss`;
    - ``"dann"``: the binary cross-entropy of a discriminator
      (``Dense(discriminator_units, relu) -> Dense(1)`` logits, weights of
      this layer) telling source rows (label 0) from target rows (label 1),
      applied through :class:`GradientReversal` so the body learns to fool it.

    Inputs are not autocast under mixed precision: the passthrough keeps its
    dtype (the head's float32 probabilities) and the term is float32.

    Args:
        method: ``"coral"``, ``"mmd"`` or ``"dann"``.
        weight: the factor of the term in the loss (``> 0``).
        discriminator_units: width of the discriminator's hidden layer (dann only).
        in_validation: add the term in validation too (``training`` false),
            so that ``val_loss`` is the whole objective on held-out data: how
            a transfer without target labels selects its epoch (coral, mmd).
        **kwargs: other ``keras.layers.Layer`` arguments.

    Input shape:
        A list ``[passthrough, source_features, target_features]``: any
        shape, ``(Bs, D)`` and ``(Bt, D)``.

    Output shape:
        The shape of ``passthrough``.

    Example:

    >>> probabilities = DomainAlignment("coral", weight=1.0)([probabilities, source_features, target_features])
    >>> model = keras.Model([source_frames, target_frames], probabilities)  # term attached with add_loss
    """

    def __init__(self, method, weight=1.0, discriminator_units=64, in_validation=False, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}. Received: method={method!r}")
        weight = float(weight)
        if not weight > 0:
            raise ValueError(f"weight must be > 0. Received: weight={weight}")
        discriminator_units = int(discriminator_units)
        if discriminator_units < 1:
            raise ValueError(f"discriminator_units must be positive. "
                             f"Received: discriminator_units={discriminator_units}")
        self.method = method
        self.weight = weight
        self.discriminator_units = discriminator_units
        self.in_validation = bool(in_validation)
        if method == "dann":
            self.reversal = GradientReversal(1.0, name="gradient_reversal")
            self.discriminator_hidden = keras.layers.Dense(discriminator_units, activation="relu",
                                                           name="discriminator_hidden")
            self.discriminator_logit = keras.layers.Dense(1, dtype="float32", name="discriminator_logit")

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError("DomainAlignment takes [passthrough, source_features, target_features]. "
                             f"Received: input_shape={input_shape}")
        if self.method == "dann":
            features = tuple(input_shape[1])
            self.discriminator_hidden.build(features)
            self.discriminator_logit.build((features[0], self.discriminator_units))

    def term(self, source_features, target_features):
        """The unweighted alignment term of two feature batches, a float32 scalar."""
        if self.method == "coral":
            return coral_loss(source_features, target_features)
        if self.method == "mmd":
            return mmd_loss(source_features, target_features)
        source, target = _check_features(source_features, target_features)
        features = self.reversal(ops.concatenate([source, target], axis=0))
        logits = ops.cast(self.discriminator_logit(self.discriminator_hidden(features)), "float32")
        labels = ops.concatenate([ops.zeros_like(source[:, :1]), ops.ones_like(target[:, :1])], axis=0)
        return ops.mean(keras.losses.binary_crossentropy(labels, logits, from_logits=True))

    def call(self, inputs, training=None):
        passthrough, source_features, target_features = inputs
        if training or self.in_validation:
            self.add_loss(self.weight * self.term(source_features, target_features))
        return passthrough

    def compute_output_spec(self, inputs, training=None):
        # The passthrough keeps its dtype (not this layer's compute dtype).
        return keras.KerasTensor(inputs[0].shape, dtype=inputs[0].dtype)

    def get_config(self):
        return {**super().get_config(), "method": self.method, "weight": self.weight,
                "discriminator_units": self.discriminator_units, "in_validation": self.in_validation}


def information_loss(probabilities):
    """Information maximization (SHOT-IM, Liang et al. 2020): mean prediction entropy minus the mean's entropy.

    Low when each prediction is confident (low entropy) and the batch's
    predictions are diverse (their mean spreads over the classes), which
    keeps the predictions from collapsing onto one class. Its minimum is
    ``-log(K)``, at one-hot predictions spread evenly over ``K`` classes.

    Args:
        probabilities: ``(B, K)`` class probabilities of unlabelled samples.

    Returns:
        A float32 scalar tensor.
    """
    p = ops.clip(ops.cast(probabilities, "float32"), _EPSILON, 1.0)
    entropy = -ops.mean(ops.sum(p * ops.log(p), axis=-1))
    mean = ops.mean(p, axis=0)
    return entropy + ops.sum(mean * ops.log(mean))


@keras.saving.register_keras_serializable(package="convlstm_tl")
class InformationMaximization(keras.layers.Layer):
    """Pass ``inputs[0]`` through; in training, add ``weight`` times :func:`information_loss` of ``inputs[1]``.

    ``inputs[1]`` are the classifier's probabilities for a batch of the
    target's unlabelled frames (``--adapt im``). With the source's head
    fixed, minimizing it moves the body or an adapter so that target
    samples fall confidently, and in every class, on the source's decision
    regions.

    Args:
        weight: the factor of the term in the loss (``> 0``).
        in_validation: add the term in validation too (see :class:`DomainAlignment`).
        **kwargs: other ``keras.layers.Layer`` arguments.
    """

    def __init__(self, weight=1.0, in_validation=False, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        weight = float(weight)
        if not weight > 0:
            raise ValueError(f"weight must be > 0. Received: weight={weight}")
        self.weight = weight
        self.in_validation = bool(in_validation)

    def call(self, inputs, training=None):
        passthrough, probabilities = inputs
        if training or self.in_validation:
            self.add_loss(self.weight * information_loss(probabilities))
        return passthrough

    def compute_output_spec(self, inputs, training=None):
        return keras.KerasTensor(inputs[0].shape, dtype=inputs[0].dtype)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "in_validation": self.in_validation}
