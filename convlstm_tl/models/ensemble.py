"""An ensemble of classifiers saved as one model: the average of its members' class probabilities."""

import keras

MEMBER_PREFIX = "member_"


def build_ensemble(members, name="ensemble"):
    """One functional model whose output is the mean of ``members``' outputs.

    Each member becomes a nested model named ``member_1 .. member_K``, so the
    saved file holds every member whole, and plain
    ``keras.saving.load_model`` reloads it (with ``import convlstm_tl`` for
    the toolkit's layers).

    Args:
        members: classifiers with the same input and output shapes.
        name: the ensemble model's name.
    """
    source = members[0].inputs[0]
    inputs = keras.Input(source.shape[1:], dtype=source.dtype, name="input")
    outputs = [keras.Model(member.inputs[0], member.outputs[0], name=f"{MEMBER_PREFIX}{index}")(inputs)
               for index, member in enumerate(members, start=1)]
    return keras.Model(inputs, keras.layers.Average(name="average")(outputs), name=name)
