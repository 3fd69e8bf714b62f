"""Whether a run's model can be scored on a domain, and how its predictions meet the domain's labels.

A model can only be scored on classes it predicts, and label ids of two
domains mean different things, so predictions are aligned **by class name**
(:func:`align_predictions`):

- the same class names (maybe in another order): every sample is scored and
  each prediction is mapped to the domain's label id of its name;
- some shared names: only samples whose true class is shared are scored, and
  the prediction is the most probable of the shared classes;
- no shared name: the cell is n/a.

A model can also only read inputs like those it was trained on:
:func:`frame_shape_problem` and :func:`input_problem` say why it cannot
(frame shapes; frames vs token ids and the vocabulary), and
:func:`cell_problem` gathers them, with "no shared class", into the reason
one (run, domain) cell of an evaluation is n/a. A transfer asks the same of
a source body and a target (:func:`check_same_input`: kind, vocabulary and
channels; time and space may differ).
"""

import numpy as np

from convlstm_tl.data.stats import vocab_fingerprint
from convlstm_tl.errors import UserError

# The reason of an n/a cell whose run and domain share no class name; the
# same words for every such cell, so that the notes can group them.
NO_SHARED_CLASSES = "no shared classes (the run predicts none of the domain's classes)"


def name_list(names, limit=3):
    """``names`` as ``"a, b, c and 12 more"``: short enough for one line of notes, whatever the class count."""
    names = [str(name) for name in names]
    shown = ", ".join(names[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown


def class_alignment(model_classes, domain_classes):
    """How the classes a model predicts meet the classes of a domain, by name.

    Args:
        model_classes: class names of the model's outputs, in output order.
        domain_classes: class names of the domain, indexed by label id.

    Returns:
        A dict: ``classes`` (``"same"``, ``"reordered"``, ``"shared"`` or
        ``"none"``), ``class_names`` (the names scored, in the domain's
        order), ``model_only`` and ``domain_only`` (names on one side only)
        and ``note`` (one human-readable sentence; long lists of names are
        cut, the lists themselves are whole).
    """
    model_classes = [str(name) for name in model_classes]
    domain_classes = [str(name) for name in domain_classes]
    known = set(model_classes)
    shared = [name for name in domain_classes if name in known]
    model_only = [name for name in model_classes if name not in set(domain_classes)]
    domain_only = [name for name in domain_classes if name not in known]
    if not shared:
        kind = "none"
        note = (f"the model predicts none of the domain's classes (model: {name_list(model_classes)};"
                f" domain: {name_list(domain_classes)})")
    elif model_only or domain_only:
        kind = "shared"
        note = (f"scored on the {len(shared)} shared classes only ({name_list(shared)}), predictions restricted to"
                " them")
        if domain_only:
            note += f"; samples of {name_list(domain_only)} left out (the model does not know them)"
        if model_only:
            note += f"; the model's classes {name_list(model_only)} are not in the domain"
    elif model_classes == domain_classes:
        kind, note = "same", "same classes in the same order"
    else:
        kind, note = "reordered", "same classes in another order; predictions mapped to the domain's ids by name"
    return {"classes": kind, "class_names": shared, "model_only": model_only, "domain_only": domain_only,
            "note": note}


def align_predictions(probabilities, model_classes, domain_classes, y_true):
    """Turn a model's class probabilities into predictions on a domain's classes.

    Label ids are never compared across class lists: both the true labels and
    the predictions are re-indexed into ``names``, the class names the two
    lists share (in the domain's order).

    Args:
        probabilities: model outputs ``(N, len(model_classes))``.
        model_classes: class names of the model's outputs.
        domain_classes: class names of the domain, indexed by label id.
        y_true: the domain's label ids ``(N,)``.

    Returns:
        ``(y_true_sub, y_pred_sub, names, info)``: ids into ``names`` of the
        samples scored (those whose true class is shared) and of their
        predictions (argmax over the shared classes' probabilities), the
        names, and the :func:`class_alignment` dict plus ``n_left_out`` (the
        samples not scored). With no shared class the arrays are empty.

    Example:

    >>> probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    >>> align_predictions(probs, ["sit", "walk", "run"], ["walk", "run"], np.array([0, 1]))[:3]
    (array([0, 1]), array([0, 1]), ['walk', 'run'])
    """
    probabilities = np.asarray(probabilities)
    y_true = np.asarray(y_true)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(model_classes):
        raise ValueError(f"probabilities must have shape (N, {len(model_classes)}) for {len(model_classes)} model"
                         f" classes. Received: probabilities.shape={probabilities.shape}")
    info = class_alignment(model_classes, domain_classes)
    names = info["class_names"]
    domain_index = {str(name): i for i, name in enumerate(domain_classes)}
    model_index = {str(name): i for i, name in enumerate(model_classes)}
    to_scored = np.full(len(domain_classes), -1, dtype=np.int64)
    for i, name in enumerate(names):
        to_scored[domain_index[name]] = i
    keep = to_scored[y_true] >= 0
    columns = [model_index[name] for name in names]
    y_true_sub = to_scored[y_true[keep]]
    if columns:
        y_pred_sub = probabilities[keep][:, columns].argmax(axis=-1).astype(np.int64)
    else:
        y_pred_sub = np.zeros(0, dtype=np.int64)
    info["n_left_out"] = int((~keep).sum())
    return y_true_sub, y_pred_sub, names, info


def frame_shape_problem(model_shape, frame_shape):
    """Why a model taking ``model_shape`` cannot take frames ``frame_shape``, or None if it can.

    Channels must match; time and space must too, unless the model leaves
    that dimension open (``None``).
    """
    model_shape = tuple(None if d is None else int(d) for d in model_shape)
    frame_shape = tuple(int(d) for d in frame_shape)
    if len(model_shape) != len(frame_shape):
        return f"the model takes frames of rank {len(model_shape)}, the domain has rank {len(frame_shape)}"
    if model_shape[-1] != frame_shape[-1]:
        return f"the model takes {model_shape[-1]} channels, the domain's frames have {frame_shape[-1]}"
    fixed = [i for i, (m, f) in enumerate(zip(model_shape, frame_shape)) if m is not None and m != f]
    if fixed:
        names = "/".join("THWC"[i] for i in fixed)
        return f"the model's {names} are fixed and differ from the domain's"
    return None


def input_problem(record, info):
    """Why a run whose ``config.json`` domain record is ``record`` cannot read domain ``info``'s inputs, or None.

    Frames and token ids do not mix, and token ids only mean the same words
    under the same vocabulary: runs record its fingerprint (older runs its
    size only, which is then compared). The one rule of input compatibility:
    transfer and evaluation both ask it.
    """
    kind = record.get("kind", "frames")
    if kind != info.kind:
        return f"the run was trained on {kind} and the domain holds {info.kind}; they need the same kind of input"
    if kind != "tokens":
        return None
    if "vocab_fingerprint" in record:
        same = record["vocab_fingerprint"] == vocab_fingerprint(info.vocab)
    else:
        same = record.get("vocab_size", len(info.vocab)) == len(info.vocab)
    if not same:
        source = record.get("name") or "the run's domain"
        return (f"{info.domain} is encoded with another vocabulary ({len(info.vocab)} tokens) than the run's"
                f" ({record.get('vocab_size', '?')} tokens of {source}), so its token ids mean other words; rebuild"
                f" it with `python -m data_prep text --input FILE --domain {info.domain} --vocab-from {source}`")
    return None


def cell_problem(record, info, *, model_shape=None):
    """Why a run cannot be scored on domain ``info`` at all, or None if it can: the reason its cell is n/a.

    These are problems of one (run, domain) pair, not mistakes of the
    command: the other cells of the matrix are still scored.

    Args:
        record: the ``domain`` record of the run's ``config.json`` (the
            kind, vocabulary, class names and frame shape it was trained on).
        info: the domain's :class:`~convlstm_tl.data.format.DomainInfo`.
        model_shape: the loaded model's input shape, without the batch
            dimension; default the frame shape the record names.

    Returns:
        One line, or None: the input kind or vocabulary differs
        (:func:`input_problem`), the frames do not fit the model
        (:func:`frame_shape_problem`), or no class name is shared
        (:data:`NO_SHARED_CLASSES`).
    """
    problem = input_problem(record, info)
    if problem is not None:
        return problem
    shape = tuple(record["frame_shape"]) if model_shape is None else tuple(model_shape)
    problem = frame_shape_problem(shape, info.frame_shape)
    if problem is not None:
        return f"{problem} (model input {shape}, domain frames {tuple(info.frame_shape)})"
    if class_alignment(record.get("class_names", []), info.class_names)["classes"] == "none":
        return NO_SHARED_CLASSES
    return None


def check_same_input(source_name, source_domain, target_info, strategy):
    """Refuse a target whose input the source body cannot read.

    Frames and token ids do not mix, and a restored embedding maps the
    source's token ids, so a tokens target must also use the source's
    vocabulary (:func:`input_problem`);
    the body's first convolution takes the source's number of channels.

    Args:
        source_name: the source run's name, for the message.
        source_domain: the ``domain`` record of the source run (or of the
            domain a grid will train it on, :func:`~convlstm_tl.training.inputs.domain_record`).
        target_info: the target's :class:`~convlstm_tl.data.format.DomainInfo`.
        strategy: the :class:`~convlstm_tl.strategies.registry.Strategy`.

    Raises:
        UserError: saying what differs and how to rebuild the target.
    """
    record = dict(source_domain)
    if not strategy.restore:  # a body trained from scratch reads any ids of the same kind
        record.pop("vocab_fingerprint", None)
        record.pop("vocab_size", None)
    problem = input_problem(record, target_info)
    if problem is not None:
        raise UserError(f"the source run {source_name} cannot read the target {target_info.domain}: {problem}")
    channels, target_channels = record["frame_shape"][-1], target_info.frame_shape[-1]
    if channels != target_channels:
        raise UserError(f"the target {target_info.domain}'s frames {tuple(target_info.frame_shape)} have"
                        f" {target_channels} channels but the source body takes {channels} (source frames"
                        f" {tuple(record['frame_shape'])}); transfer needs the same channels")
