"""The record a run keeps of itself: its ``config.json``, read and checked in one place.

Every kind of run writes one (``kind`` is ``"source"``, ``"transfer"`` or
``"pretrain"``; runs written before ``kind`` existed are source runs):

- ``config``: the settings it was trained with (an object);
- ``model``: the architecture of the saved model (a
  :class:`~convlstm_tl.config.ModelConfig`); source runs written before
  :func:`make_run_record` keep it inside ``config`` only;
- ``domain``: the domain it was trained on: ``name``, ``frame_shape`` (the
  ``(T, H, W, C)`` of a sample), ``class_names`` (not for pretraining, which
  sees no labels), and optionally ``path``, ``kind``, ``vocab_size``,
  ``vocab_fingerprint``, ``split_sizes``, ``recipe`` (how samples were cut
  from long recordings, a :class:`~convlstm_tl.data.recipe.WindowRecipe`);
- ``normalization``: per-channel ``mean`` and ``variance`` of the training
  frames, one value per channel (null for token domains);
- transfers also record ``source_run`` (the source run's directory).

:func:`load_run_record` checks a record against this schema, so that a
record edited by hand or written by another tool fails with one line naming
the field, not deep inside whatever reads it.
"""

import math
from pathlib import Path

from convlstm_tl.config import ModelConfig
from convlstm_tl.data.recipe import WindowRecipe
from convlstm_tl.errors import ConfigError, RunError
from convlstm_tl.jsonio import from_dict, is_int, load_json, shown, to_dict

RUN_KINDS = ("source", "transfer", "pretrain")
DOMAIN_KINDS = ("frames", "tokens")


class _FieldError(Exception):
    """A field of the record is wrong: ``field`` and what it must be."""

    def __init__(self, field, problem):
        super().__init__(field, problem)
        self.field = field
        self.problem = problem


def load_run_record(run_dir):
    """Read ``run_dir/config.json`` and check it against the run-record schema.

    Returns:
        The record as a dict, with ``kind`` filled in for runs written before
        it was recorded.

    Raises:
        RunError: one line naming the run and the field that is wrong.
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    try:
        record = load_json(path, what="run record")
    except ConfigError as error:
        raise RunError(f"run {run_dir}: {error}; train it again") from None
    try:
        return check_run_record(record)
    except _FieldError as error:
        raise RunError(f"run {run_dir}: config.json field {error.field} {error.problem}; train it again") from None


def check_run_record(record):
    """Check a parsed run record; return it (with ``kind`` filled in) or raise :class:`_FieldError`."""
    if not isinstance(record, dict):
        raise _FieldError("(top level)", f"must be a JSON object, not {_json_type(record)}")
    kind = record.get("kind", "source")
    if kind not in RUN_KINDS:
        raise _FieldError("kind", f"must be one of {', '.join(RUN_KINDS)}. Received: {shown(kind)}")
    config = record.get("config", {})
    if not isinstance(config, dict):
        raise _FieldError("config", f"must be an object, not {_json_type(config)}")
    _check_model(record, config)
    domain = _require(record, "domain", dict, "domain")
    for key in ("name", "path", "vocab_fingerprint"):
        if key in domain and not isinstance(domain[key], str):
            raise _FieldError(f"domain.{key}", f"must be a string, not {_json_type(domain[key])}")
    domain_kind = domain.get("kind", "frames")
    if domain_kind not in DOMAIN_KINDS:
        raise _FieldError("domain.kind", f"must be one of {', '.join(DOMAIN_KINDS)}. Received: {shown(domain_kind)}")
    frame_shape = _require(domain, "frame_shape", list, "domain.frame_shape")
    if len(frame_shape) != 4 or not all(is_int(n) and n >= 1 for n in frame_shape):
        raise _FieldError("domain.frame_shape", f"must be 4 positive ints (T, H, W, C). Received: {shown(frame_shape)}")
    if kind != "pretrain" or "class_names" in domain:
        names = _require(domain, "class_names", list, "domain.class_names")
        if not names or not all(isinstance(name, str) for name in names):
            raise _FieldError("domain.class_names", f"must be a non-empty list of strings. Received: {shown(names)}")
    if "vocab_size" in domain and not (is_int(domain["vocab_size"]) and domain["vocab_size"] >= 1):
        raise _FieldError("domain.vocab_size", f"must be a positive int. Received: {shown(domain['vocab_size'])}")
    if "recipe" in domain and WindowRecipe.from_dict(domain["recipe"]) is None:
        raise _FieldError("domain.recipe", f"must be a window recipe (window, step, frames). Received:"
                                           f" {shown(domain['recipe'])}")
    if "split_sizes" in domain and not isinstance(domain["split_sizes"], dict):
        raise _FieldError("domain.split_sizes", f"must be an object, not {_json_type(domain['split_sizes'])}")
    _check_normalization(record.get("normalization"), channels=frame_shape[-1])
    if kind == "transfer" or "source_run" in record:
        source_run = _require(record, "source_run", str, "source_run")
        if not source_run:
            raise _FieldError("source_run", "must name the source run's directory. Received: ''")
    return {**record, "kind": kind}


def make_run_record(kind, *, config, model, domain, model_inputs, n_params, **extra):
    """A new run's ``config.json``: the one schema every kind writes (see the module docstring).

    Args:
        kind: ``"source"``, ``"transfer"`` or ``"pretrain"``.
        config: the run's validated config dataclass.
        model: the :class:`~convlstm_tl.config.ModelConfig` of the saved model.
        domain: the ``domain`` record (:func:`convlstm_tl.training.inputs.domain_record`).
        model_inputs: what the model was built with: ``{"mean", "variance"}``
            of its normalization (recorded), or ``{"vocab_size"}`` (tokens:
            ``normalization`` is null).
        n_params: the model's parameter count.
        **extra: the kind's own entries (a transfer's ``source_run``,
            ``strategy`` and ``target_samples``; a source's ``replicas``;
            ``normalization_from``, recorded in ``normalization.from``).
    """
    from convlstm_tl import backend

    normalization_from = extra.pop("normalization_from", None)
    normalization = None
    if "mean" in model_inputs:
        normalization = {"mean": [float(v) for v in model_inputs["mean"]],
                         "variance": [float(v) for v in model_inputs["variance"]]}
        if normalization_from is not None:
            normalization = {"from": normalization_from, **normalization}
    return {"kind": kind, "config": to_dict(config), "model": to_dict(model), "domain": domain,
            "normalization": normalization, "n_params": int(n_params), **extra, "versions": backend.versions()}


def model_config(record):
    """The :class:`ModelConfig` of a checked record."""
    data = record["model"] if "model" in record else record["config"]["model"]
    return from_dict(ModelConfig, data, where="model")


def _check_model(record, config):
    """Check the architecture wherever the record holds one (source runs: also inside ``config``)."""
    found = [(data, field) for data, field in ((record.get("model"), "model"), (config.get("model"), "config.model"))
             if data is not None]
    if not found:
        raise _FieldError("model", "is missing (the architecture of the run)")
    for data, field in found:
        try:
            from_dict(ModelConfig, data, where=field).validate()
        except ConfigError as error:
            # from_dict names the nested key itself; say it once, as this field.
            raise _FieldError(field, f"is not a model config ({error})") from None


def _check_normalization(stats, *, channels):
    if stats is None:  # token domains have none; a transfer with --normalization source asks for it
        return
    if not isinstance(stats, dict):
        raise _FieldError("normalization", f"must be an object or null, not {_json_type(stats)}")
    for key in ("mean", "variance"):
        values = _require(stats, key, list, f"normalization.{key}")
        if len(values) != channels:
            raise _FieldError(f"normalization.{key}", f"must hold one value per channel ({channels}), not"
                                                      f" {len(values)}")
        if not all(_is_number(v) and math.isfinite(v) for v in values):
            raise _FieldError(f"normalization.{key}", f"must hold finite numbers. Received: {shown(values)}")
        if key == "variance" and any(v < 0 for v in values):
            raise _FieldError("normalization.variance", f"must not be negative. Received: {shown(values)}")


def _require(data, key, kind, field):
    if key not in data:
        raise _FieldError(field, "is missing")
    value = data[key]
    if not isinstance(value, kind):
        raise _FieldError(field, f"must be {_KIND_NAMES[kind]}, not {_json_type(value)}. Received: {shown(value)}")
    return value


_KIND_NAMES = {dict: "an object", list: "a list", str: "a string"}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)
