"""Benchmark suites: real domain pairs, each prepared, transferred with the toolkit's defaults, set against baselines.

A suite file is JSON::

    {
      "name": "suite",                          # default: the file's stem; outputs go to <runs-dir>/<name>/
      "kind": "suite",                          # optional: a file with "pairs" is a suite
      "description": "free text",
      "seeds": [0, 1, 2],                       # default DEFAULT_SEEDS
      "target_fractions": [0.1, 1.0],           # default DEFAULT_FRACTIONS
      "strategies": ["freeze", "finetune", "scratch",   # a strategy, or {LABEL: {TransferConfig options}}
                     {"finetune+adabn": {"strategy": "finetune", "adapt": "adabn"}}],
      "baselines": ["summary-logreg", "minirocket"],
      "base": {},                               # TransferConfig options of every transfer run
      "pairs": {
        "watch-mirrored": {
          "description": "free text",
          "prepare": [["watch", "--mirror-left"]],      # python -m data_prep argument lists
          "source": {"domain": "St", "config": {"augment": {"rotate": 90}}},   # or just "St"
          "target": "ms",
          "seeds": [0, 1]                       # optional overrides of the four lists and of base
        }
      }
    }

Each entry of ``strategies`` is a transfer *method*: a strategy string ``S``
(short for ``{"S": {"strategy": S}}``) or a one-key object ``{LABEL:
{options}}``: ``TransferConfig`` options set together on top of ``base``,
``strategy`` among them (``{"freeze+adapter": {"strategy": "freeze",
"adapter": "channel"}}``, ``{"joint": {"strategy": "joint"}}``). A method may
not set what the suite sets (:data:`AXIS_OPTIONS`, the run's name and
folders) nor vary the source run (``source.*``). Its label is its model name
in the reports: labels are distinct and hold letters, digits and ``._-+=:``
only. Methods that resolve to the same config share one run; a strategy
string's runs are named by their config alone, as in any grid, so finished
runs of a suite written before labelled methods existed are still found.

Each pair has its own data folder, ``<data-dir>/<pair>/``: every ``prepare``
step runs as ``python -m data_prep ARGS --out <data-dir>/<pair>`` (in
process), unless the files it makes exist. A step that names ``--domain D``
makes ``D.h5``; any other step is taken to make the pair's source and target
files. So two pairs can hold domains of the same name prepared differently
(the watch's ``ms`` mirrored and unmirrored).

A pair's ConvLSTM work is an in-memory transfer grid (:mod:`experiments.grid`):
one source run per seed (``TrainConfig`` defaults plus the source's
``config``), and every method at every target fraction and seed
(``TransferConfig`` defaults plus ``base`` plus the method's options: a
bundle axis :data:`METHOD_AXIS` of the grid), run by
:func:`experiments.runner.run_grid` under ``<runs-dir>/<suite>/<pair>/``,
which also gets the grid's own ``results.csv``, ``summary.md`` and plots.
Next to it, per target fraction and seed, one baseline run
(:func:`convlstm_tl.baselines.run_baselines`: the methods trained on the
source, on the target's labelled subset, the very samples the transfer runs
get, and on both pooled) in ``<pair>/baselines/``, and, where source and
target have the same classes, the source run scored on the target with no
target label (zero-shot) in ``<pair>/zero-shot/``. Everything that exists
is skipped: running a suite again trains nothing finished, and an
interrupted suite resumes.

Every pair is checked before anything is prepared (the file's keys, the
configs of every run, the prepare steps' arguments), and every prepared pair
before anything trains (domain files, strategies against the source,
baseline methods): a bad method option or combination ends in one line
naming the pair and the method's label. ``<runs-dir>/<suite>/results.csv`` gets one row per pair,
model, target fraction, seed and domain scored, and ``summary.md`` the
tables per pair and the final comparison (see
:func:`experiments.suite_report.suite_markdown`).

This module reads and checks the suite file (:func:`load_suite`,
:func:`parse_suite`); :mod:`experiments.suite_plan` places its pairs on disk
and checks them, :mod:`experiments.suite_run` prepares and runs them, and
:mod:`experiments.suite_report` writes ``results.csv`` and ``summary.md``.
"""

import contextlib
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

from convlstm_tl.baselines.config import BaselineConfig
from convlstm_tl.config import TransferConfig, check_run_name
from convlstm_tl.data.format import check_domain_name
from convlstm_tl.errors import ConfigError
from convlstm_tl.jsonio import from_dict, load_json, shown
from experiments.grid import (
    SOURCE_PREFIX, TRANSFER_RUNNER_KEYS, _is_option, _merge, check_keys, config_hash, expand_grid, json_object,
    parse_grid, slug,
)

SUITE_KIND = "suite"
SUITE_KEYS = ("name", "kind", "description", "seeds", "target_fractions", "strategies", "baselines", "base", "pairs")
PAIR_KEYS = ("description", "prepare", "source", "target", "seeds", "target_fractions", "strategies", "baselines",
             "base")
SOURCE_KEYS = ("domain", "config")
# The suite's axes: what every pair runs unless the suite or the pair says otherwise.
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_FRACTIONS = (0.1, 1.0)
DEFAULT_STRATEGIES = ("freeze", "finetune", "gradual", "scratch")
DEFAULT_BASELINES = ("summary-logreg", "minirocket")
# Options the suite's axes set: a base may not set them, nor a method (but for its strategy).
AXIS_OPTIONS = {"target": "target", "strategy": "strategies", "target_fraction": "target_fractions",
                "target_per_class": "target_fractions", "seed": "seeds"}
# The grid axis of a pair's methods: no option of TransferConfig, so a bundle axis (see experiments.grid).
METHOD_AXIS = "method"
# A method's label names a model in tables and plots: letters, digits and these.
LABEL_CHARS = "._-+=:"
# Converters that only read: no use as a prepare step.
READ_ONLY_CONVERTERS = ("info", "check")


@dataclass(frozen=True)
class Pair:
    """One domain pair of a suite (see the module docstring).

    Attributes:
        name: the pair's name: its data folder and its runs folder.
        source: the source domain.
        target: the target domain.
        grid: its ConvLSTM work, a transfer :class:`~experiments.grid.Grid`.
        prepare: ``python -m data_prep`` argument lists (without ``--out``).
        seeds: seeds of every run.
        fractions: ``{label: fraction}`` of the target's training split, labels as the grid's.
        methods: ``{label: TransferConfig options}`` of its transfer methods, in file order (a strategy
            string ``S`` of the file is ``{S: {"strategy": S}}``).
        baselines: baseline methods (may be empty).
        description: free text.
    """

    name: str
    source: str
    target: str
    grid: object
    prepare: tuple
    seeds: tuple
    fractions: dict
    methods: dict
    baselines: tuple
    description: str = ""

    @property
    def strategies(self):
        """The labels of its transfer methods, in file order: the ConvLSTM models of its reports."""
        return tuple(self.methods)


@dataclass(frozen=True)
class Suite:
    """A parsed suite file: its name (outputs in ``<runs-dir>/<name>``), pairs by name, and where it came from."""

    name: str
    pairs: dict
    description: str = ""
    path: Path | None = None


# ------------------------------------------------------------------ the file


def is_suite(data):
    """Whether a loaded JSON file is a suite (it has ``"pairs"`` or says ``"kind": "suite"``), not a grid."""
    return isinstance(data, dict) and ("pairs" in data or data.get("kind") == SUITE_KIND)


def load_suite(path):
    """Read and check a suite file.

    Raises:
        ConfigError: for a missing file, bad JSON, or a suite that does not
            follow the format (the message names the pair and key).
    """
    path = Path(path)
    return parse_suite(load_json(path), name=path.stem, where=str(path), path=path)


def parse_suite(data, *, name="suite", where="suite", path=None):
    """Build a :class:`Suite` from the JSON object ``data``, checking every run's config.

    Each pair's grid is expanded here, so a bad option or value fails before
    anything is prepared or trained.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object. Received: {type(data).__name__}")
    check_keys(data, SUITE_KEYS, where)
    if data.get("kind", SUITE_KIND) != SUITE_KIND:
        raise ConfigError(f"{where}: a file with \"pairs\" is a suite; its kind must be \"suite\" (or left out)."
                          f" Received: kind={shown(data['kind'])}")
    name = data.get("name", name)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string. Received: name={shown(name)}")
    check_run_name(name)
    defaults = {
        "seeds": data.get("seeds", list(DEFAULT_SEEDS)),
        "target_fractions": data.get("target_fractions", list(DEFAULT_FRACTIONS)),
        "strategies": data.get("strategies", list(DEFAULT_STRATEGIES)),
        "baselines": data.get("baselines", list(DEFAULT_BASELINES)),
        "base": json_object(data.get("base", {}), f"{where}.base"),
    }
    raw_pairs = json_object(data.get("pairs"), f"{where}.pairs") if "pairs" in data else {}
    if not raw_pairs:
        raise ConfigError(f"{where}: pairs is empty; give at least one pair {{\"name\": {{\"source\": ...,"
                          " \"target\": ...}}")
    pairs = {pair_name: _parse_pair(pair_name, raw, defaults, f"{where}.pairs.{pair_name}", path)
             for pair_name, raw in raw_pairs.items()}
    return Suite(name=name, pairs=pairs, description=_text(data.get("description", ""), f"{where}.description"),
                 path=path)


def _parse_pair(name, raw, defaults, where, path):
    raw = json_object(raw, where)
    check_keys(raw, PAIR_KEYS, where)
    try:
        check_run_name(name)
    except ConfigError as error:
        raise ConfigError(f"{where}: the pair's name names its data and runs folders: {error}") from None
    for key in ("source", "target"):
        if key not in raw:
            raise ConfigError(f"{where} has no {key}; give \"{key}\": a domain name"
                              + (" (or {\"domain\": NAME, \"config\": {...TrainConfig...}})" if key == "source"
                                 else ""))
    source, source_config = _parse_source(raw["source"], f"{where}.source")
    target = raw["target"]
    if not isinstance(target, str):
        raise ConfigError(f"{where}.target must be a domain name. Received: {shown(target)}")
    _domain_name(target, f"{where}.target")
    if target == source:
        raise ConfigError(f"{where}: the target must be another domain than the source. Received: {source!r}")
    seeds = raw.get("seeds", defaults["seeds"])
    fractions = _list(raw.get("target_fractions", defaults["target_fractions"]), f"{where}.target_fractions")
    if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 <= f <= 1 for f in fractions):
        raise ConfigError(f"{where}.target_fractions must be numbers in [0, 1]. Received: {shown(fractions)}")
    baselines = raw.get("baselines", defaults["baselines"])
    if not isinstance(baselines, list) or not all(isinstance(b, str) for b in baselines):
        raise ConfigError(f"{where}.baselines must be a list of method names (may be empty)."
                          f" Received: {shown(baselines)}")
    base = _deep_merge(defaults["base"], json_object(raw.get("base", {}), f"{where}.base"))
    for key, axis in AXIS_OPTIONS.items():
        if key in base:
            raise ConfigError(f"{where}: base sets {key}, which the suite sets (\"{axis}\"); drop it from base")
    methods = _parse_methods(_list(raw.get("strategies", defaults["strategies"]), f"{where}.strategies"),
                             f"{where}.strategies")
    _check_methods(methods, {**base, "target": target}, fractions, where)
    grid = parse_grid({
        "name": name, "description": _text(raw.get("description", ""), f"{where}.description"),
        "kind": "transfer", "source": {"config": {"source": source, **source_config}},
        "base": {"target": target, **base}, "seeds": seeds, "best_per": "target_fraction",
        "axes": {METHOD_AXIS: methods, "target_fraction": fractions},
    }, name=name, where=where, path=path)
    # Every transfer and source config built and validated now, before any work.
    try:
        expand_grid(grid)
    except ConfigError as error:
        message = str(error)
        raise ConfigError(message if message.startswith(f"grid {name},") else f"{where}: {message}") from None
    fraction_labels = grid.studies[name].axes["target_fraction"]
    pair = Pair(name=name, source=source, target=target, grid=grid,
                prepare=_parse_prepare(raw.get("prepare", []), f"{where}.prepare"), seeds=grid.seeds,
                fractions=dict(fraction_labels), methods=methods, baselines=tuple(baselines),
                description=grid.description)
    for label in fraction_labels if baselines else ():
        for seed in grid.seeds:
            try:
                _baseline_config(pair, label, seed, runs_dir=Path("runs"), data_dir=Path("data")).validate()
            except ConfigError as error:
                raise ConfigError(f"{where}: baselines: {error}") from None
    return pair


def _parse_methods(entries, where):
    """``{label: options}`` of a ``strategies`` list: strategy strings and one-key objects ``{LABEL: {options}}``."""
    methods = {}
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            label, options = entry, {"strategy": entry}
        elif isinstance(entry, dict) and len(entry) == 1:
            (label, options), = entry.items()
            _check_label(label, f"{where}[{i}]")  # a strategy string is checked as a strategy, later
        else:
            raise ConfigError(f"{where}[{i}] must be a strategy (\"finetune\") or a one-key object {{LABEL:"
                              " {TransferConfig options}}, e.g. {\"finetune+adabn\": {\"strategy\": \"finetune\","
                              f" \"adapt\": \"adabn\"}}}}. Received: {shown(entry)}")
        if label in methods:
            raise ConfigError(f"{where}: the label {label!r} is given twice; give each method its own label")
        options = json_object(options, f"{where}.{label}")
        for key in options:
            if key.startswith(SOURCE_PREFIX):
                raise ConfigError(f"{where}.{label} sets {key}; every method transfers from the same source runs,"
                                  " so set the source's options in the pair's source.config")
            if key.split(".")[0] in AXIS_OPTIONS and key != "strategy":
                raise ConfigError(f"{where}.{label} sets {key}, which the suite sets"
                                  f" (\"{AXIS_OPTIONS[key.split('.')[0]]}\"); drop it from the method")
            if key in TRANSFER_RUNNER_KEYS:
                raise ConfigError(f"{where}.{label} sets {key}, which the suite's runner sets; drop it")
            if not _is_option(key, TransferConfig):
                raise ConfigError(f"{where}.{label}: unknown option {key!r} of TransferConfig")
        if "strategy" not in options:
            raise ConfigError(f"{where}.{label} has no strategy; give \"strategy\": e.g. \"finetune\" among its"
                              f" options. Received: {shown(options)}")
        methods[label] = options
    return methods


def _check_label(label, where):
    """A method's label names a model in tables, plots and CSV files: a run name of letters, digits and LABEL_CHARS."""
    try:
        check_run_name(label)
        odd = "".join(sorted({ch for ch in label if not (ch.isalnum() or ch in LABEL_CHARS)}))
        if odd:
            raise ConfigError(f"it may hold letters, digits and {LABEL_CHARS} only, not {odd!r}."
                              f" Received: {shown(label)}")
    except ConfigError as error:
        raise ConfigError(f"{where}: bad label; it names the method in the reports: {error}") from None


def _check_methods(methods, base, fractions, where):
    """Build and validate each method's config at every fraction, so a bad option or combination names its label.

    The grid checks every cell again (:func:`expand_grid`); here the message
    names the method instead of a grid setting.
    """
    from_dict(TransferConfig, base, where=f"{where}.base")  # its keys and types, before any method's
    for label, options in methods.items():
        method_where = f"{where}.strategies.{label}"
        try:
            merged = _merge(base, options)  # as the grid sets a bundle: dotted keys, a nested config replaced
        except ConfigError as error:
            raise ConfigError(f"{method_where}: {error}") from None
        config = from_dict(TransferConfig, {**merged, "source_run": "source"}, where=method_where)
        # None first: what fails without a fraction is the method's fault at any fraction.
        for fraction in (None, *fractions):
            try:
                dataclasses.replace(config, target_fraction=fraction).validate()
            except ConfigError as error:
                at = "" if fraction is None else f" at target fraction {fraction}"
                raise ConfigError(f"{method_where}{at}: {error}") from None


def _parse_source(value, where):
    if isinstance(value, str):
        _domain_name(value, where)
        return value, {}
    value = json_object(value, where)
    check_keys(value, SOURCE_KEYS, where)
    if not isinstance(value.get("domain"), str):
        raise ConfigError(f"{where} needs \"domain\": the source domain's name. Received: {shown(value)}")
    _domain_name(value["domain"], f"{where}.domain")
    config = json_object(value.get("config", {}), f"{where}.config")
    if "source" in config:
        raise ConfigError(f"{where}.config sets source; the domain is {where}.domain, drop it from config")
    return value["domain"], config


def _parse_prepare(steps, where):
    from data_prep.__main__ import SUBCOMMANDS

    if not isinstance(steps, list):
        raise ConfigError(f"{where} must be a list of python -m data_prep argument lists. Received: {shown(steps)}")
    parsed = []
    for i, step in enumerate(steps):
        step_where = f"{where}[{i}]"
        if not isinstance(step, list) or not step or not all(isinstance(arg, str) for arg in step):
            raise ConfigError(f"{step_where} must be a non-empty list of strings, the arguments of python -m"
                              f" data_prep, e.g. [\"watch\", \"--mirror-left\"]. Received: {shown(step)}")
        if step[0] not in SUBCOMMANDS or step[0] in READ_ONLY_CONVERTERS:
            writers = [name for name in SUBCOMMANDS if name not in READ_ONLY_CONVERTERS]
            raise ConfigError(f"{step_where}: unknown converter {shown(step[0])}; converters are"
                              f" {', '.join(writers)}")
        if any(arg == "--out" or arg.startswith("--out=") for arg in step):
            raise ConfigError(f"{step_where} sets --out; the suite writes each pair's files to <data-dir>/<pair>,"
                              " drop it")
        # Parsed now (with a stand-in folder), so a misspelt flag fails before anything runs.
        _parse_step(step, ".", step_where)
        parsed.append(tuple(step))
    return tuple(parsed)


def _parse_step(step, out, where, extra=()):
    """Parse ``python -m data_prep STEP --out OUT [EXTRA]`` without printing; ConfigError with argparse's message."""
    from data_prep.__main__ import PROG, build_parser

    argv = [*step, "--out", str(out), *extra]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(argv)
    except SystemExit:
        message = " ".join(errors.getvalue().split()) or "asks for help; drop -h/--help"
        message = message.split(f"{PROG} {step[0]}: error: ")[-1].split(f"{PROG}: error: ")[-1]
        raise ConfigError(f"{where}: python -m data_prep {' '.join(step)}: {message}") from None


def _baseline_config(pair, label, seed, *, runs_dir, data_dir):
    methods = ",".join(pair.baselines)
    identity = {"source": pair.source, "target": pair.target, "methods": methods,
                "target_fraction": pair.fractions[label], "seed": seed}
    return BaselineConfig(source=pair.source, target=pair.target, methods=methods,
                          target_fraction=float(pair.fractions[label]), seed=seed,
                          name=f"baselines-{slug(label)}-s{seed}-{config_hash(identity)}", runs_dir=str(runs_dir),
                          data_dir=str(data_dir))


# ------------------------------------------------------------------ internals


def _deep_merge(base, override):
    merged = json.loads(json.dumps(base))
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = json.loads(json.dumps(value))
    return merged


def _domain_name(name, where):
    try:
        check_domain_name(name)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def _list(value, where):
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list. Received: {shown(value)}")
    return value


def _text(value, where):
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string. Received: {shown(value)}")
    return value
