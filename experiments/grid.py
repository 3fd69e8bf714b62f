"""Grid files: studies of training or transfer options, expanded into cells.

A grid file is JSON::

    {
      "name": "watch_st_ms",                      # default: the file's stem
      "description": "free text",
      "kind": "transfer",                         # or "source": cells train on a domain
      "source": {"config": {"source": "St"}},     # transfer grids: a TrainConfig trained once per
                                                  # seed, or {"run": "St"}: an existing run
      "base": {"target": "ms", "epochs": 40},     # keys of TransferConfig (TrainConfig for "source")
      "seeds": [0, 1, 2],
      "best_per": "target_fraction",              # axis held fixed when naming the best setting
      "studies": {
        "strategies": {"axes": {"strategy": ["freeze", "cut:1", "finetune", "scratch"],
                                "target_fraction": [0.05, 0.1, 0.3, 1.0]}},
        "learning_rate": {"base": {"patience": 0}, "axes": {"lr": [0.1, 0.001, 1e-05]}}
      }
    }

A grid with a single study may give ``"axes"`` at the top instead of
``"studies"``; the study is then named after the grid.

An **axis** maps a name to a list of values (each labelled by its JSON text)
or to an object ``{label: value}``. A name that is an option sets that
option: a key of the base config, dotted into the nested configs
(``"augment.scale"``, ``"model.block_dropout"``), or ``"source."`` followed by
a key of the source's ``TrainConfig`` (``"source.model.head_dropout"``: a
source run is then trained per value). Any other name is a *bundle* axis:
each value is an object of options set together, e.g.
``{"bottleneck": {"strategy": "freeze", "cache_features": true}}``. A nested
config given whole (``"augment": {...}``) replaces the base's.

:func:`expand_grid` turns the studies into :class:`Cell` s, one per setting
(a combination of axis values) and seed, and builds and validates the config
of every cell, so a bad grid fails before anything trains. A cell's run is
named after its strategy (or domain), seed and a hash of the settings that
differ from the config's defaults: cells that compute the same thing, in one
study or several, share one run.
"""

import dataclasses
import hashlib
import itertools
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path

from convlstm_tl.config import MAX_SEED, TrainConfig, TransferConfig, check_run_name
from convlstm_tl.errors import ConfigError
from convlstm_tl.jsonio import from_dict, load_json, shown, to_dict
from convlstm_tl.strategies.registry import slug as strategy_slug

KINDS = ("transfer", "source")
GRID_KEYS = ("name", "description", "kind", "source", "base", "seeds", "best_per", "studies", "axes")
STUDY_KEYS = ("base", "axes", "description")
SOURCE_PREFIX = "source."
# Options that say where and how a run is written: the grid runner sets them.
RUNNER_KEYS = ("name", "runs_dir", "data_dir", "overwrite", "resume", "seed")
TRANSFER_RUNNER_KEYS = (*RUNNER_KEYS, "source_run")
# Length of the config hash in run names: enough to tell cells apart.
HASH_CHARS = 8
# The most cells one grid (or one --study selection) may have: counted before
# any is built, so a grid of 10**9 cells is refused at once instead of
# expanding for ever.
MAX_CELLS = 10_000
# Seeds seed NumPy as well, which takes 0 .. 2**32 - 1.


@dataclass(frozen=True)
class Study:
    """One product of axes inside a grid.

    Attributes:
        name: the study's name.
        base: options on top of the grid's base.
        axes: ``{axis: {label: value}}``, in file order.
        description: free text.
    """

    name: str
    base: dict
    axes: dict
    description: str = ""


@dataclass(frozen=True)
class Grid:
    """A parsed grid file (see the module docstring).

    Attributes:
        name: the grid's name; its runs and results go under it.
        kind: ``"transfer"`` or ``"source"``.
        base: options shared by every cell.
        studies: ``{name: Study}``.
        seeds: the seeds every setting runs with.
        source: for transfer grids, ``{"run": NAME}`` or ``{"config": {...}}``.
        best_per: an axis held fixed when naming the best setting, or None.
        description: free text.
        path: the file it was read from, if any.
    """

    name: str
    kind: str
    base: dict
    studies: dict
    seeds: tuple
    source: dict | None = None
    best_per: str | None = None
    description: str = ""
    path: Path | None = None

    @property
    def config_class(self):
        return TransferConfig if self.kind == "transfer" else TrainConfig

    @property
    def axis_names(self):
        """Every axis of every study, in order of first appearance."""
        return list(dict.fromkeys(axis for study in self.studies.values() for axis in study.axes))


@dataclass(frozen=True)
class Cell:
    """One run of a grid: a study's setting and a seed.

    Attributes:
        study: the study's name.
        setting: ``((axis, label), ...)`` in the study's axis order.
        seed: the seed.
        config: the run's config (a ``TransferConfig`` or ``TrainConfig``),
            validated, with ``name``, ``seed`` and, for transfers,
            ``source_run`` set; ``runs_dir`` and ``data_dir`` are the
            runner's to set.
        source_config: the ``TrainConfig`` of the source run this cell needs
            trained first, or None (an existing source run, or a source grid).
    """

    study: str
    setting: tuple
    seed: int
    config: object
    source_config: TrainConfig | None = None

    @property
    def run_name(self):
        """``<strategy or domain>-s<seed>-<hash of the settings that differ from the defaults>``."""
        return self.config.name

    @property
    def labels(self):
        """``{axis: label}`` of the setting."""
        return dict(self.setting)


def load_grid(path):
    """Read and check a grid file.

    Raises:
        ConfigError: for a missing file, bad JSON, or a grid that does not
            follow the format (the message names the key).
    """
    path = Path(path)
    return parse_grid(load_json(path), name=path.stem, where=str(path), path=path)


def parse_grid(data, *, name="grid", where="grid", path=None):
    """Build a :class:`Grid` from the JSON object ``data``.

    Args:
        data: the grid as loaded from JSON.
        name: the grid's name when ``data`` gives none.
        where: how error messages name the grid.
        path: the file it came from, if any.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object. Received: {type(data).__name__}")
    check_keys(data, GRID_KEYS, where)
    name = data.get("name", name)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string. Received: name={name!r}")
    check_run_name(name)
    kind = data.get("kind", "transfer")
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {KINDS}. Received: kind={kind!r}")
    base = json_object(data.get("base", {}), f"{where}.base")
    seeds = data.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds)):
        shown = repr(seeds) if len(repr(seeds)) <= 80 else repr(seeds)[:77] + "..."
        raise ConfigError(f"{where}: seeds must be a list of distinct ints in 0..{MAX_SEED}. Received: seeds={shown}")
    source = _parse_source(data.get("source"), kind, where)
    if ("studies" in data) == ("axes" in data):
        raise ConfigError(f"{where}: give either \"studies\" (named studies) or \"axes\" (one study), not both")
    raw_studies = data["studies"] if "studies" in data else {name: {"axes": data["axes"]}}
    raw_studies = json_object(raw_studies, f"{where}.studies")
    if not raw_studies:
        raise ConfigError(f"{where}: studies is empty; give at least one study with axes")
    cls = TransferConfig if kind == "transfer" else TrainConfig
    studies = {}
    for study_name, raw in raw_studies.items():
        study_where = f"{where}.studies.{study_name}"
        raw = json_object(raw, study_where)
        check_keys(raw, STUDY_KEYS, study_where)
        axes = json_object(raw.get("axes", {}), f"{study_where}.axes")
        studies[study_name] = Study(
            name=study_name, base=json_object(raw.get("base", {}), f"{study_where}.base"),
            axes={axis: _axis_values(axis, values, cls, kind, f"{study_where}.axes.{axis}")
                  for axis, values in axes.items()},
            description=raw.get("description", ""))
    grid = Grid(name=name, kind=kind, base=base, studies=studies, seeds=tuple(seeds), source=source,
                best_per=data.get("best_per"), description=data.get("description", ""), path=path)
    default_best_per = "target_fraction" if "target_fraction" in grid.axis_names else None
    best_per = data.get("best_per", default_best_per)
    if best_per is not None and best_per not in grid.axis_names:
        raise ConfigError(f"{where}: best_per must name an axis ({grid.axis_names}). Received: best_per={best_per!r}")
    return dataclasses.replace(grid, best_per=best_per)


def count_cells(grid, studies=None):
    """How many cells :func:`expand_grid` would build, computed without building them.

    The product of each study's axis lengths times the seeds, summed over
    the studies (all, or the names in ``studies``).

    Raises:
        ConfigError: for an unknown study.
    """
    return sum(math.prod(len(values) for values in grid.studies[name].axes.values()) * len(grid.seeds)
               for name in _study_names(grid, studies))


def expand_grid(grid, studies=None):
    """The grid's cells: for each study, every setting (axis product) times every seed.

    Each cell's config is built and validated here, so a typo or an
    out-of-range value fails before any training. The cells are counted
    first: more than :data:`MAX_CELLS` is refused before any is built.

    Args:
        grid: a :class:`Grid`.
        studies: names of the studies to expand (default all).

    Returns:
        A list of :class:`Cell`, in study, setting, seed order.

    Raises:
        ConfigError: for an unknown study, option or invalid value, or too
            many cells.
    """
    names = _study_names(grid, studies)
    n_cells = count_cells(grid, names)
    if n_cells > MAX_CELLS:
        raise ConfigError(f"grid {grid.name} has {n_cells:,} cells (axis values multiplied, times"
                          f" {len(grid.seeds)} seeds); at most {MAX_CELLS:,} run in one grid: drop axis values"
                          " or seeds, or split it into several grids")
    cells = []
    for study in (grid.studies[name] for name in names):
        axes = list(study.axes.items())
        for labels in itertools.product(*(list(values) for _, values in axes)):
            setting = tuple((axis, label) for (axis, _), label in zip(axes, labels))
            values = [(axis, study.axes[axis][label]) for axis, label in setting]
            for seed in grid.seeds:
                cells.append(_make_cell(grid, study, setting, values, seed))
    return cells


def slug(text):
    """``text`` as a piece of a folder name: letters, digits, ``.``, ``_``, ``-``, ``=``."""
    kept = "".join(ch if ch.isalnum() or ch in "._-=" else "-" for ch in str(text))
    return "-".join(part for part in kept.split("-") if part) or "x"


def config_hash(data):
    """A short stable hash of a JSON-ready dict (key order does not matter)."""
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:HASH_CHARS]


# ------------------------------------------------------------------ internals


def _study_names(grid, studies):
    names = list(grid.studies) if studies is None else list(dict.fromkeys(studies))
    unknown = [name for name in names if name not in grid.studies]
    if unknown:
        raise ConfigError(f"grid {grid.name} has no study {unknown[0]!r}; its studies are {list(grid.studies)}")
    return names


def _make_cell(grid, study, setting, values, seed):
    where = f"grid {grid.name}, study {study.name}, setting {dict(setting)}"
    options = _merge(grid.base, study.base)
    source_options = _merge(grid.source["config"], {}) if grid.source and "config" in grid.source else None
    for axis, value in values:
        assignments = value.items() if _is_bundle(axis, grid.config_class, grid.kind) else [(axis, value)]
        for key, item in assignments:
            if key.startswith(SOURCE_PREFIX):
                if source_options is None:
                    raise ConfigError(f"{where}: {key} varies the source, which needs \"source\": {{\"config\": ...}}"
                                      " in the grid (a source run trained per setting)")
                _set(source_options, key[len(SOURCE_PREFIX):], item)
            else:
                _set(options, key, item)
    source_config = None
    if source_options is not None:
        source_config = _build(TrainConfig, source_options, RUNNER_KEYS, f"{where}, source")
        source_config.seed = seed
        source_config.name = (f"source-{slug(source_config.source)}-s{seed}-"
                              f"{config_hash(_identity(source_config, RUNNER_KEYS))}")
        source_config.validate()
    runner_keys = TRANSFER_RUNNER_KEYS if grid.kind == "transfer" else RUNNER_KEYS
    config = _build(grid.config_class, options, runner_keys, where)
    domain_key = "target" if grid.kind == "transfer" else "source"
    if not getattr(config, domain_key):
        raise ConfigError(f"{where}: no domain to train on; set \"{domain_key}\" in the grid's base")
    config.seed = seed
    if grid.kind == "transfer":
        config.source_run = source_config.name if source_config is not None else grid.source["run"]
    # Named by what it computes, not by the setting's labels: cells of two
    # studies that resolve to the same config share one run.
    what = strategy_slug(config.strategy) if grid.kind == "transfer" else slug(config.source)
    config.name = f"{what}-s{seed}-{config_hash(_identity(config, RUNNER_KEYS))}"
    config.validate()
    return Cell(study=study.name, setting=setting, seed=seed, config=config, source_config=source_config)


def _identity(config, runner_keys):
    """What the run computes: the settings that differ from the config class's defaults.

    Where and how the run is written (the runner's keys, except the seed) is
    left out. Leaving the defaults out keeps run names, and so finished cells,
    valid when a later version adds an option with a default.
    """
    data = _differences(to_dict(config), to_dict(type(config)()))
    for key in runner_keys:
        if key != "seed":
            data.pop(key, None)
    data["seed"] = config.seed
    return data


def _differences(data, defaults):
    changed = {}
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            nested = _differences(value, defaults[key])
            if nested:
                changed[key] = nested
        elif key not in defaults or value != defaults[key]:
            changed[key] = value
    return changed


def _build(cls, options, runner_keys, where):
    taken = sorted(set(options) & set(runner_keys) - {"data_dir"})
    if taken:
        raise ConfigError(f"{where}: {taken[0]} is set by the grid runner (runs are named per cell and seeded"
                          " by \"seeds\"); drop it from the grid")
    if "data_dir" in options:
        raise ConfigError(f"{where}: data_dir comes from --data-dir of `python -m experiments run`; drop it")
    # Validated by the caller once the runner's fields (name, seed, source_run) are set.
    return from_dict(cls, options, where=where)


def _merge(base, override):
    merged = json.loads(json.dumps(base))
    for key, value in override.items():
        _set(merged, key, value)
    return merged


def _set(data, key, value):
    parts = key.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise ConfigError(f"option {key}: {part} is not a nested config")
    data[parts[-1]] = json.loads(json.dumps(value))


def _is_option(key, cls):
    """Whether ``key`` (dotted) names a field of ``cls`` or of its nested configs."""
    hints = typing.get_type_hints(cls)
    head, _, rest = key.partition(".")
    if head not in hints:
        return False
    if not rest:
        return True
    return dataclasses.is_dataclass(hints[head]) and _is_option(rest, hints[head])


def _is_source_option(key, kind):
    return kind == "transfer" and key.startswith(SOURCE_PREFIX) and _is_option(key[len(SOURCE_PREFIX):], TrainConfig)


def _is_bundle(axis, cls, kind):
    return not (_is_option(axis, cls) or _is_source_option(axis, kind))


def _axis_values(axis, values, cls, kind, where):
    """``{label: value}`` of an axis given as a list or as a labelled object."""
    if isinstance(values, list):
        labelled = {json.dumps(value) if not isinstance(value, str) else value: value for value in values}
        if len(labelled) != len(values):
            raise ConfigError(f"{where}: values must be distinct. Received: {values!r}")
    elif isinstance(values, dict):
        labelled = dict(values)
    else:
        raise ConfigError(f"{where} must be a list of values or an object {{label: value}}."
                          f" Received: {values!r}")
    if not labelled:
        raise ConfigError(f"{where} has no values")
    if _is_bundle(axis, cls, kind):
        for label, bundle in labelled.items():
            if not isinstance(bundle, dict):
                raise ConfigError(f"{where}: {axis!r} is not an option of {cls.__name__}, so each value must be an"
                                  f" object of options (a bundle). Received: {label}={bundle!r}")
            for key in bundle:
                if not (_is_option(key, cls) or _is_source_option(key, kind)):
                    raise ConfigError(f"{where}.{label}: unknown option {key!r} for {cls.__name__}")
    return labelled


def _parse_source(source, kind, where):
    if kind == "source":
        if source is not None:
            raise ConfigError(f"{where}: a source grid trains on its base's domain; drop \"source\"")
        return None
    source = json_object(source if source is not None else {}, f"{where}.source")
    if set(source) not in ({"run"}, {"config"}):
        raise ConfigError(f"{where}: a transfer grid needs \"source\": {{\"run\": NAME}} (an existing run) or"
                          f" {{\"config\": {{...TrainConfig...}}}} (trained per seed). Received: {source!r}")
    if "run" in source and (not isinstance(source["run"], str) or not source["run"]):
        raise ConfigError(f"{where}.source.run must be a run name or path. Received: {source['run']!r}")
    if "config" in source:
        json_object(source["config"], f"{where}.source.config")
    return source


def json_object(value, where):
    """``value`` if it is a JSON object (a dict); else ConfigError naming ``where`` and what was received."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a JSON object. Received: {shown(value)}")
    return value


def check_keys(data, known, where):
    """Raise ConfigError naming ``where`` if the object ``data`` has keys not in ``known``."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; known keys are {sorted(known)}")
