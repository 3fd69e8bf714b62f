"""Finding a finished run by name or path, and loading it whole.

Every command that reads a run (``--from``, ``evaluate --runs``, ``advise``,
a grid's source) names it the same way: a run name inside the runs folder,
or the path of a run folder anywhere. :func:`resolve_run` is that rule;
:func:`load_run` returns the run's model, record and metrics as one object,
which also answers what a consumer of the model needs to know (classes,
input shape and dtype, normalization, window recipe, versions: see
:meth:`Run.signature`).
"""

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from convlstm_tl.data.recipe import WindowRecipe, window_recipe
from convlstm_tl.errors import ConfigError, RunError
from convlstm_tl.jsonio import load_json
from convlstm_tl.runs.directory import find_run
from convlstm_tl.runs.record import load_run_record, model_config


def resolve_run(name, runs_dir="runs"):
    """The folder of a complete run: ``runs_dir/name``, else ``name`` itself when it is a folder.

    An interrupted publishing of the run is finished first (see
    :func:`convlstm_tl.runs.directory.recover_run`).

    Raises:
        RunError: when no complete run is found, saying what is missing.
    """
    name = Path(name)
    in_runs_dir = Path(runs_dir) / name
    path = name if not in_runs_dir.exists() and name.is_dir() else in_runs_dir
    return find_run(path.parent, path.name)


@dataclass
class Run:
    """A finished run, as a consumer of it needs it.

    Attributes:
        path: the run folder.
        record: its checked ``config.json`` (see :mod:`convlstm_tl.runs.record`).
        metrics: its ``metrics.json`` (empty if it has none).
        model: the trained ``keras.Model``, or None when loaded without it.
    """

    path: Path
    record: dict
    metrics: dict = field(default_factory=dict)
    model: object = None

    @property
    def name(self):
        """The run's folder name."""
        return self.path.name

    @property
    def kind(self):
        """``"source"``, ``"transfer"`` or ``"pretrain"``."""
        return self.record["kind"]

    @property
    def model_config(self):
        """The run's :class:`~convlstm_tl.config.ModelConfig`."""
        return model_config(self.record)

    @property
    def domain(self):
        """The record of the domain the run was trained on (name, class names, frame shape, ...)."""
        return self.record["domain"]

    @property
    def domain_name(self):
        """The name of the domain the run was trained on."""
        return self.domain.get("name", "")

    @property
    def source_run(self):
        """A transfer's recorded source run folder (None for other kinds)."""
        return self.record.get("source_run")

    @property
    def class_names(self):
        """The classes of the model's outputs, in order (empty for a pretraining run)."""
        return [str(name) for name in self.domain.get("class_names", [])]

    @property
    def frame_shape(self):
        """``(T, H, W, C)`` of the samples the run was trained on."""
        return tuple(self.domain["frame_shape"])

    @property
    def n_blocks(self):
        """How many blocks the run's body has (from its record: no model needed)."""
        return len(self.model_config.filters)

    @property
    def input_kind(self):
        """``"frames"`` or ``"tokens"``."""
        return self.domain.get("kind", "frames")

    @property
    def ensemble(self):
        """How many members the run's model averages (1: a single classifier)."""
        return int(self.record.get("config", {}).get("ensemble", 1) or 1)

    @property
    def input_dtype(self):
        """The dtype the model's input takes: ``"int32"`` token ids, else ``"float32"`` frames."""
        return "int32" if self.input_kind == "tokens" else "float32"

    @property
    def normalization(self):
        """Per-channel ``mean`` and ``variance`` the model's first layer applies (None for token ids)."""
        return self.record.get("normalization")

    @property
    def versions(self):
        """The package versions the run was trained with (empty for runs that predate the record)."""
        return dict(self.record.get("versions") or {})

    @cached_property
    def window_recipe(self):
        """How the run's samples were cut from long recordings (:class:`WindowRecipe`), or None.

        Recorded by runs since the recipe existed; for older runs it is read
        from the domain file at the recorded path, when that file is still
        the run's domain (read once per ``Run``).
        """
        if "recipe" in self.domain:
            return WindowRecipe.from_dict(self.domain["recipe"])
        return _recipe_of_file(self.domain.get("path"), self.domain_name)

    def domain_file_candidates(self, data_dir=None):
        """Where the run's domain file may be: its recorded path, then ``<data_dir>/<domain>.h5``."""
        from convlstm_tl.data.format import domain_path

        recorded = [Path(self.domain["path"])] if self.domain.get("path") else []
        return [*recorded, domain_path(self.domain_name, data_dir or None)]

    def find_domain_file(self, data_dir=None):
        """The run's domain file (see :meth:`domain_file_candidates`), or None when none of them exists."""
        return next((path for path in self.domain_file_candidates(data_dir) if path.is_file()), None)

    def signature(self):
        """What a consumer of the model needs, as a JSON-ready dict (``signature.json`` beside an export).

        The input (name, shape with a free batch axis, dtype), the output
        (class probabilities in ``class_names`` order), the normalization the
        model applies itself, a token domain's vocabulary, the window recipe
        of the domain, and the versions the run was trained with.
        """
        signature = {
            "run": self.name,
            "kind": self.kind,
            "domain": self.domain_name,
            "input": {"name": "frames", "shape": [None, *self.frame_shape], "dtype": self.input_dtype,
                      "layout": "(batch, time T, height H, width W, channels C)"},
            "output": {"shape": [None, len(self.class_names)], "dtype": "float32",
                       "meaning": "class probabilities (softmax), one column per class_names entry"},
            "class_names": self.class_names,
            "normalization": None,
            "window_recipe": None,
            "versions": self.versions,
        }
        if self.normalization is not None:
            signature["normalization"] = {
                "mean": self.normalization["mean"], "variance": self.normalization["variance"],
                "applied": "by the model's first layer: feed frames as the domain file holds them"}
        if self.input_kind == "tokens":
            signature["vocabulary"] = {"size": self.domain.get("vocab_size"),
                                       "fingerprint": self.domain.get("vocab_fingerprint")}
        recipe = self.window_recipe
        if recipe is not None:
            signature["window_recipe"] = {**recipe.to_dict(), "frame_width": recipe.frame_width,
                                          "overlap": recipe.overlap, "description": recipe.describe()}
        return signature

    def check_classifier(self, purpose):
        """Refuse a pretraining run (an autoencoder, no classes) where a classifier is needed (``purpose``)."""
        if self.kind == "pretrain":
            raise RunError(f"run {self.name} is a pretraining run (a frame autoencoder, no classes); {purpose} needs"
                           " a classifier: train one from it with python -m convlstm_tl.train --transfer")

    def check_single_model(self, purpose):
        """Refuse an ensemble run where one body is needed (``purpose``: what needs it, e.g. "a transfer")."""
        if self.ensemble > 1:
            raise RunError(f"run {self.name} is an ensemble of {self.ensemble} models; {purpose} needs one body:"
                           " give a run trained without ensemble")


def _recipe_of_file(path, domain):
    """The window recipe in the provenance of the domain file at ``path``, if it is still ``domain``'s; else None."""
    if not path or not Path(path).is_file():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if str(f.attrs.get("domain", "")) != domain:
                return None
            provenance = f.attrs.get("provenance", "")
    except (OSError, KeyError, ValueError):
        return None
    return window_recipe(provenance.decode() if isinstance(provenance, bytes) else str(provenance))


def same_classes(ours, theirs):
    """Whether two class lists name the same classes in the same order (names compared as strings).

    A run records its classes as strings; a domain file's may be numbers
    (``ts`` class labels): ``[1, 2]`` and ``["1", "2"]`` are the same classes.
    """
    return [str(name) for name in ours] == [str(name) for name in theirs]


def load_run(name, runs_dir="runs", *, with_model=True):
    """Load run ``name`` (a name in ``runs_dir`` or a path): its record, metrics and model.

    Args:
        name: run name or folder.
        runs_dir: the runs folder names are looked up in.
        with_model: also load ``model.keras`` (imports Keras).

    Returns:
        A :class:`Run`.

    Raises:
        RunError: for a missing or incomplete run, a record that breaks the
            schema, or a model file that cannot be read.
    """
    path = resolve_run(name, runs_dir)
    record = load_run_record(path)
    metrics = {}
    if (path / "metrics.json").is_file():
        try:
            metrics = load_json(path / "metrics.json", what="run metrics")
        except ConfigError as error:
            raise RunError(f"run {path}: {error}; train it again") from None
    model = None
    if with_model:
        from convlstm_tl.models.classifier import load_model

        model = load_model(path / "model.keras")
    return Run(path=path, record=record, metrics=metrics, model=model)
