"""The training model of a transfer that sees more than the target's labelled batch: joint training and alignment.

A classifier (:mod:`convlstm_tl.models.classifier`) maps one batch of frames
to class probabilities. Joint training (``--strategy joint``) and alignment
(``--adapt coral|mmd|dann``) add, at each step, a batch of the source's data
and/or of the target's unlabelled frames, and a loss on them.
:func:`paired_model` builds that training model around the classifier: its
one output stays the classifier's probabilities for the ``frames`` batch
(so the compiled loss, metrics, early stopping and checkpoints are those of
any run), and the extra terms are added by pass-through layers
(:class:`SourceClassification`,
:class:`~convlstm_tl.models.adaptation.DomainAlignment`) as Keras losses.
Every weight but a separate source head and a domain discriminator is the
classifier's own, so training the paired model trains the classifier, and
the classifier alone is what a run saves.

Inputs (by name):

=================  ==============================================================
``frames``         the labelled batch (the target's; or the source's, when no
                   target label is read)
``source_frames``  a batch of the source's training data (joint; alignment with
                   target labels)
``source_labels``  its labels, and ``source_weights`` its sample weights (joint)
``target_frames``  a batch of the target's unlabelled training frames (alignment)
=================  ==============================================================
"""

import keras

from convlstm_tl.models.adaptation import DomainAlignment, InformationMaximization
from convlstm_tl.models.backbone import Backbone


@keras.saving.register_keras_serializable(package="convlstm_tl")
class SourceClassification(keras.layers.Layer):
    """Pass-through that adds the weighted cross-entropy of the source batch's class probabilities as a loss.

    ``call([passthrough, probabilities, labels, weights])`` returns
    ``passthrough`` and, in training, adds
    ``sum(weights * crossentropy(labels, probabilities)) / batch`` (the
    reduction of the compiled loss).
    """

    def call(self, inputs, training=None):
        passthrough, probabilities, labels, weights = inputs
        if training:
            losses = keras.losses.sparse_categorical_crossentropy(labels, keras.ops.cast(probabilities, "float32"))
            self.add_loss(keras.ops.mean(losses * keras.ops.cast(weights, "float32")))
        return passthrough

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


class SourceHead:
    """A head for the source's classes, for joint training when they are not the target's.

    Its layers mirror the classifier's head (pool, dense, dropout, softmax)
    under names of their own (``source_head_*``); they live in the paired
    training model only, never in the saved classifier.

    Args:
        model: the classifier, whose head's sizes it copies.
        n_classes: the source's classes.
    """

    def __init__(self, model, n_classes):
        template = {layer.name: layer for layer in Backbone(model).head_layers}
        self.layers = [
            keras.layers.GlobalAveragePooling3D(name="source_head_pool"),
            keras.layers.Dense(template["head_dense"].units, activation="relu", name="source_head_dense"),
            keras.layers.Dropout(template["head_dropout"].rate, name="source_head_dropout"),
            keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="source_head_softmax"),
        ]

    def __call__(self, features):
        x = features
        for layer in self.layers:
            x = layer(x)
        return x

    def copy_from(self, source_model):
        """Take the weights of ``source_model``'s head (the layers must be built: call the head first)."""
        for layer in self.layers:
            if layer.weights:
                layer.set_weights(source_model.get_layer(layer.name.replace("source_", "", 1)).get_weights())


def paired_model(model, *, with_source=False, source_labels=False, source_classes=None, source_model=None,
                 align=None, align_weight=1.0, align_in_validation=False):
    """Wrap ``model`` in the training model of a joint or aligning transfer.

    Args:
        model: the classifier being trained (its weights are shared).
        with_source: take a ``source_frames`` batch.
        source_labels: also ``source_labels`` and ``source_weights``, and add
            the source batch's classification loss (joint training).
        source_classes: the source's number of classes when they are not the
            target's: the source batch is then classified by a head of its
            own (:class:`SourceHead`, from ``source_model``'s head); None
            shares the classifier's head.
        source_model: the source run's classifier (for the source head's start).
        align: ``"coral"``, ``"mmd"`` or ``"dann"``: add that alignment loss
            between the source's and the target's body features, pooled over
            time and space; the source's are the ``source_frames`` batch's
            (``with_source``), else the ``frames`` batch's; the target's are
            those of a ``target_frames`` batch. ``"im"``: add the information
            maximization loss of the classifier's predictions for the
            ``target_frames`` batch.
        align_weight: the alignment loss's weight.
        align_in_validation: add the alignment loss in validation too, so
            that the validation loss is the whole objective on held-out data
            (model selection without target labels).

    Returns:
        A ``keras.Model`` from a dict of the inputs above to ``model``'s
        probabilities for ``frames``.
    """
    backbone = Backbone(model)
    body = backbone.body()
    head = backbone.head(body.output.shape[1:])
    spec = model.inputs[0]

    def frames_input(name):
        return keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name=name)

    inputs = {"frames": frames_input("frames")}
    features = body(inputs["frames"])
    outputs = head(features)
    source_features = features
    if with_source:
        inputs["source_frames"] = frames_input("source_frames")
        source_features = body(inputs["source_frames"])
        if source_labels:
            inputs["source_labels"] = keras.Input(shape=(), dtype="int32", name="source_labels")
            inputs["source_weights"] = keras.Input(shape=(), dtype="float32", name="source_weights")
            if source_classes is None:
                source_probabilities = head(source_features)
            else:
                classify = SourceHead(model, source_classes)
                source_probabilities = classify(source_features)
                if source_model is not None:
                    classify.copy_from(source_model)
            outputs = SourceClassification(name="source_classification")(
                [outputs, source_probabilities, inputs["source_labels"], inputs["source_weights"]])
    if align == "im":
        inputs["target_frames"] = frames_input("target_frames")
        information = InformationMaximization(align_weight, in_validation=align_in_validation,
                                              name="information_maximization")
        outputs = information([outputs, head(body(inputs["target_frames"]))])
    elif align is not None:
        inputs["target_frames"] = frames_input("target_frames")
        pool = keras.layers.GlobalAveragePooling3D(name="alignment_pool")
        pooled = [pool(source_features), pool(body(inputs["target_frames"]))]
        alignment = DomainAlignment(align, align_weight, in_validation=align_in_validation, name="domain_alignment")
        outputs = alignment([outputs, *pooled])
    return keras.Model(inputs, outputs, name="paired_training")
