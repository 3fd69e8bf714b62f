"""The backbone of a classifier: its named body, cut where transfer needs it, and its head.

Every model the toolkit builds is one functional ``keras.Model`` whose layers
carry the names of :mod:`convlstm_tl.models.classifier` (``normalize`` or
``embedding``, an optional ``adapter``, ``block_1 .. block_K``, ``head_*``). :class:`Backbone` is the
one place that takes such a model apart: the body up to any block (feature
cache, pretraining), the body's pooled features (the advisor), the head on
its own (training a head on cached features), and copying restored blocks
into a new model (transfer).

It is a view over the model's layers, not a second saved model: a run's
``model.keras`` stays one plain classifier, so runs written by earlier
versions load and transfer unchanged.
"""

import keras

BLOCK_PREFIX = "block_"
HEAD_PREFIX = "head_"
NORMALIZE = "normalize"
EMBEDDING = "embedding"
ADAPTER = "adapter"
HEAD_POOL = f"{HEAD_PREFIX}pool"


def block_name(index):
    """Name of the ``index``-th block of the body (1-based)."""
    return f"{BLOCK_PREFIX}{index}"


class Backbone:
    """The body and head of a classifier (or autoencoder) built by this toolkit.

    Args:
        model: a ``keras.Model`` with the toolkit's layer names.

    Example:

    >>> backbone = Backbone(model)
    >>> features = backbone.body(keep_blocks=1).predict(x)      # block_1's output sequence
    >>> probabilities = backbone.head(features.shape[1:]).predict(features)
    """

    def __init__(self, model):
        self.model = model

    @property
    def blocks(self):
        """The body blocks in order (``block_1``, ``block_2``, ...)."""
        blocks = [layer for layer in self.model.layers if layer.name.startswith(BLOCK_PREFIX)]
        return sorted(blocks, key=lambda layer: int(layer.name[len(BLOCK_PREFIX):]))

    @property
    def n_blocks(self):
        return len(self.blocks)

    @property
    def head_layers(self):
        """The head's layers (names starting with ``head_``), in order."""
        return [layer for layer in self.model.layers if layer.name.startswith(HEAD_PREFIX)]

    @property
    def has_embedding(self):
        """Whether the model reads token ids through an ``embedding`` (a ``tokens`` domain's model)."""
        return any(layer.name == EMBEDDING for layer in self.model.layers)

    @property
    def adapter(self):
        """The learned channel mixing in front of the body (``adapter``), or None."""
        return next((layer for layer in self.model.layers if layer.name == ADAPTER), None)

    @property
    def input_kind(self):
        """``"tokens"`` or ``"frames"``: what the model reads."""
        return "tokens" if self.has_embedding else "frames"

    @property
    def kernel(self):
        """The ConvLSTM kernel ``(kh, kw)`` of the body."""
        return tuple(self.model.get_layer(block_name(1)).get_layer("convlstm").kernel_size)

    @property
    def frame_shape(self):
        """``(T, H, W, C)`` of the samples the model takes."""
        return tuple(self.model.input_shape[1:])

    def body(self, keep_blocks=None):
        """A model from the input to the output sequence of block ``keep_blocks`` (default the last)."""
        keep_blocks = keep_blocks or self.n_blocks
        return keras.Model(self.model.inputs, self.model.get_layer(block_name(keep_blocks)).output, name="body")

    def pooled(self):
        """A model from the input to every block's output averaged over time and space, concatenated."""
        pooled = [keras.layers.GlobalAveragePooling3D()(block.output) for block in self.blocks]
        outputs = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate()(pooled)
        return keras.Model(self.model.inputs, outputs, name="pooled_body")

    def body_pooled(self, keep_blocks=None):
        """A model from the input to the body's output (block ``keep_blocks``) through the head's own pooling.

        Its outputs are what :meth:`head` with ``pooled=True`` takes: one
        vector per sample, the output sequence averaged over time and space.
        """
        body = self.body(keep_blocks)
        pool = self.model.get_layer(HEAD_POOL)
        return keras.Model(body.inputs, pool(body.output), name="body_pooled")

    def head(self, feature_shape, *, pooled=False):
        """A model from body features of ``feature_shape`` to class probabilities, sharing the head's layers.

        With ``pooled``, the features are already pooled (:meth:`body_pooled`)
        and the head starts after its pooling layer.
        """
        features = keras.Input(shape=feature_shape, name="features")
        x = features
        for layer in self.head_layers:
            if not (pooled and layer.name == HEAD_POOL):
                x = layer(x)
        return keras.Model(features, x, name="head")

    def copy_into(self, model, keep_blocks):
        """Copy the embedding (if any) and blocks ``1..keep_blocks`` into ``model``, a body of the same layout."""
        if self.has_embedding:
            model.get_layer(EMBEDDING).set_weights(self.model.get_layer(EMBEDDING).get_weights())
        for index in range(1, keep_blocks + 1):
            model.get_layer(block_name(index)).set_weights(self.model.get_layer(block_name(index)).get_weights())
