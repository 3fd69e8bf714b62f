"""Benchmark suites: real domain pairs, each prepared, transferred with the toolkit's defaults, set against baselines.

A suite file is JSON::

    {
      "name": "suite",                          # default: the file's stem; outputs go to <runs-dir>/<name>/
      "kind": "suite",                          # optional: a file with "pairs" is a suite
      "description": "free text",
      "seeds": [0, 1, 2],                       # default DEFAULT_SEEDS
      "target_fractions": [0.1, 1.0],           # default DEFAULT_FRACTIONS
      "strategies": ["freeze", "finetune", "gradual", "scratch"],
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

Each pair has its own data folder, ``<data-dir>/<pair>/``: every ``prepare``
step runs as ``python -m data_prep ARGS --out <data-dir>/<pair>`` (in
process), unless the files it makes exist. A step that names ``--domain D``
makes ``D.h5``; any other step is taken to make the pair's source and target
files. So two pairs can hold domains of the same name prepared differently
(the watch's ``ms`` mirrored and unmirrored).

A pair's ConvLSTM work is an in-memory transfer grid (:mod:`experiments.grid`):
one source run per seed (``TrainConfig`` defaults plus the source's
``config``), and every strategy at every target fraction and seed
(``TransferConfig`` defaults plus ``base``), run by
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
baseline methods). ``<runs-dir>/<suite>/results.csv`` gets one row per pair,
model, target fraction, seed and domain scored, and ``summary.md`` the
tables per pair and the final comparison (see :func:`suite_markdown`).
"""

import contextlib
import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convlstm_tl.baselines.config import BaselineConfig
from convlstm_tl.config import TransferConfig, check_run_name
from convlstm_tl.data.format import check_domain_name, domain_path, resolve_data_dir
from convlstm_tl.errors import ConfigError, Interrupted, UserError
from convlstm_tl.files import write_atomically
from convlstm_tl.jsonio import load_json, shown
from experiments.grid import config_hash, expand_grid, parse_grid, slug
from experiments.runner import OK, _attempt, _finished, collect_rows, plan_grid, run_grid

log = logging.getLogger(__name__)

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
# Options the suite's axes set: a base may not set them.
AXIS_OPTIONS = {"target": "target", "strategy": "strategies", "target_fraction": "target_fractions",
                "target_per_class": "target_fractions"}
# Converters that only read: no use as a prepare step.
READ_ONLY_CONVERTERS = ("info", "check")
# Differences of mean accuracy within this many points are ties.
TIE_POINTS = 1.0
RESULT_COLUMNS = ("pair", "source", "target", "model", "kind", "trained_on", "domain", "target_fraction", "seed",
                  "accuracy", "macro_f1", "n_train", "seconds", "run", "status", "reason")
# Values of the ``kind`` column.
CONVLSTM, SOURCE_RUN, ZERO_SHOT, BASELINE = "convlstm", "source", "zero-shot", "baseline"
SOURCE_MODEL, ZERO_SHOT_MODEL = "ConvLSTM source run", "ConvLSTM zero-shot"


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
        strategies: transfer strategies.
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
    strategies: tuple
    baselines: tuple
    description: str = ""


@dataclass(frozen=True)
class Suite:
    """A parsed suite file: its name (outputs in ``<runs-dir>/<name>``), pairs by name, and where it came from."""

    name: str
    pairs: dict
    description: str = ""
    path: Path | None = None


@dataclass
class BaselineJob:
    """A pair's baseline run for one target fraction and seed."""

    label: str  # the fraction's label
    seed: int
    config: BaselineConfig
    run_dir: Path
    done: bool
    plan: object = None  # its checked plan (plan_baselines), once checked


@dataclass
class PairPlan:
    """A pair of a suite placed on disk: its folders, its runs and whether each is finished.

    Attributes:
        pair: the :class:`Pair`.
        data_dir: its data folder, ``<data-dir>/<pair>``.
        out: its runs folder, ``<runs-dir>/<suite>/<pair>``.
        cells: the grid's :class:`~experiments.runner.PlannedCell` s.
        source_runs: ``{seed: run directory}`` of the source runs.
        baselines: :class:`BaselineJob` s, by fraction then seed.
        steps: the prepare steps still to run: ``(argv, files they make)``.
    """

    pair: Pair
    data_dir: Path
    out: Path
    cells: list
    source_runs: dict
    baselines: list
    steps: list

    @property
    def transfer_runs(self):
        """``{run directory: finished}`` of the distinct transfer runs (cells with one config share one)."""
        return {planned.run_dir: planned.done for planned in self.cells}

    @property
    def zero_shot_dir(self):
        return self.out / "zero-shot"

    def counts(self):
        """``{what: (finished, total)}`` of the source, transfer and baseline runs."""
        transfers = self.transfer_runs
        return {"source runs": (sum(map(_finished, self.source_runs.values())), len(self.source_runs)),
                "transfer runs": (sum(transfers.values()), len(transfers)),
                "baseline runs": (sum(job.done for job in self.baselines), len(self.baselines))}


@dataclass
class SuiteResult:
    """What running (or re-reading) a suite gave.

    Attributes:
        out: the suite's output folder.
        rows: the rows of ``results.csv``.
        files: ``{"results": path, "summary": path}``.
        trained: runs (source, transfer, baseline) finished by this call.
        skipped: runs found finished and not run again.
        failed: ``{run name: (kind, reason)}`` of the runs that failed in this
            call; kind is ``"user"`` or ``"bug"`` (see :class:`experiments.runner.GridResult`).
        not_run: transfer runs not tried because their source run failed.
    """

    out: Path
    rows: list
    files: dict
    trained: int = 0
    skipped: int = 0
    failed: dict = field(default_factory=dict)
    not_run: int = 0

    @property
    def user_errors_only(self):
        """Whether every failure was a user error (fixable input), not a fault of the toolkit."""
        return all(kind == "user" for kind, _ in self.failed.values())


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
    _check_keys(data, SUITE_KEYS, where)
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
        "base": _object(data.get("base", {}), f"{where}.base"),
    }
    raw_pairs = _object(data.get("pairs"), f"{where}.pairs") if "pairs" in data else {}
    if not raw_pairs:
        raise ConfigError(f"{where}: pairs is empty; give at least one pair {{\"name\": {{\"source\": ...,"
                          " \"target\": ...}}")
    pairs = {pair_name: _parse_pair(pair_name, raw, defaults, f"{where}.pairs.{pair_name}", path)
             for pair_name, raw in raw_pairs.items()}
    return Suite(name=name, pairs=pairs, description=_text(data.get("description", ""), f"{where}.description"),
                 path=path)


def _parse_pair(name, raw, defaults, where, path):
    raw = _object(raw, where)
    _check_keys(raw, PAIR_KEYS, where)
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
    if not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in fractions):
        raise ConfigError(f"{where}.target_fractions must be numbers in (0, 1]. Received: {shown(fractions)}")
    strategies = _list(raw.get("strategies", defaults["strategies"]), f"{where}.strategies")
    baselines = raw.get("baselines", defaults["baselines"])
    if not isinstance(baselines, list) or not all(isinstance(b, str) for b in baselines):
        raise ConfigError(f"{where}.baselines must be a list of method names (may be empty)."
                          f" Received: {shown(baselines)}")
    base = _deep_merge(defaults["base"], _object(raw.get("base", {}), f"{where}.base"))
    for key, axis in AXIS_OPTIONS.items():
        if key in base:
            raise ConfigError(f"{where}: base sets {key}, which the suite sets (\"{axis}\"); drop it from base")
    grid = parse_grid({
        "name": name, "description": _text(raw.get("description", ""), f"{where}.description"),
        "kind": "transfer", "source": {"config": {"source": source, **source_config}},
        "base": {"target": target, **base}, "seeds": seeds, "best_per": "target_fraction",
        "axes": {"strategy": strategies, "target_fraction": fractions},
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
                fractions=dict(fraction_labels), strategies=tuple(strategies), baselines=tuple(baselines),
                description=grid.description)
    for label in fraction_labels if baselines else ():
        for seed in grid.seeds:
            try:
                _baseline_config(pair, label, seed, runs_dir=Path("runs"), data_dir=Path("data")).validate()
            except ConfigError as error:
                raise ConfigError(f"{where}: baselines: {error}") from None
    return pair


def _parse_source(value, where):
    if isinstance(value, str):
        _domain_name(value, where)
        return value, {}
    value = _object(value, where)
    _check_keys(value, SOURCE_KEYS, where)
    if not isinstance(value.get("domain"), str):
        raise ConfigError(f"{where} needs \"domain\": the source domain's name. Received: {shown(value)}")
    _domain_name(value["domain"], f"{where}.domain")
    config = _object(value.get("config", {}), f"{where}.config")
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


# ------------------------------------------------------------------ placing and checking


def plan_suite(suite, *, runs_dir="runs", data_dir=None, pairs=None):
    """Place the selected pairs on disk: their folders, runs, and what is finished or still to prepare.

    Args:
        suite: a :class:`Suite`.
        runs_dir: the runs folder; the suite's runs go in ``<runs_dir>/<suite>/<pair>``.
        data_dir: folder of the pairs' data folders (None: ``$CONVLSTM_TL_DATA`` or ``./data``).
        pairs: names of the pairs (default all), in suite order.

    Returns:
        A list of :class:`PairPlan`.

    Raises:
        ConfigError: for an unknown pair name.
    """
    names = list(suite.pairs) if not pairs else list(dict.fromkeys(pairs))
    unknown = [name for name in names if name not in suite.pairs]
    if unknown:
        raise ConfigError(f"suite {suite.name} has no pair {unknown[0]!r}; its pairs are {', '.join(suite.pairs)}")
    root = suite_root(suite, runs_dir)
    data_root = resolve_data_dir(data_dir)
    plans = []
    for name in (n for n in suite.pairs if n in names):
        pair = suite.pairs[name]
        out = root / name
        cells = plan_grid(pair.grid, runs_dir=root)
        source_runs = {}
        for planned in cells:
            source_runs.setdefault(planned.cell.seed, out / "runs" / planned.cell.source_config.name)
        jobs = []
        for label in pair.fractions if pair.baselines else ():
            for seed in pair.seeds:
                config = _baseline_config(pair, label, seed, runs_dir=out / "baselines", data_dir=data_root / name)
                run_dir = out / "baselines" / config.name
                jobs.append(BaselineJob(label=label, seed=seed, config=config, run_dir=run_dir,
                                        done=_finished(run_dir)))
        plan = PairPlan(pair=pair, data_dir=data_root / name, out=out, cells=cells, source_runs=source_runs,
                        baselines=jobs, steps=[])
        plan.steps = _steps_to_run(plan)
        plans.append(plan)
    return plans


def suite_root(suite, runs_dir="runs"):
    """``<runs_dir>/<suite name>``: the suite's output folder, with one folder of runs per pair."""
    return Path(runs_dir) / suite.name


def check_pair(plan):
    """Check a prepared pair fully before anything of it trains.

    Its domain files exist and are valid, every unfinished transfer cell
    passes :func:`experiments.runner.check_grid`, and every unfinished
    baseline run is planned (:func:`convlstm_tl.baselines.plan_baselines`:
    methods available, the domains suit them).

    Raises:
        UserError: one line naming the pair and what is wrong.
    """
    from convlstm_tl.baselines.runner import plan_baselines
    from convlstm_tl.data.format import find_domain, open_domain
    from experiments.runner import check_grid

    pair = plan.pair
    for domain in (pair.source, pair.target):
        if not domain_path(domain, plan.data_dir).is_file():
            raise UserError(f"pair {pair.name}: domain file {domain_path(domain, plan.data_dir)} not found, and no"
                            " prepare step of the pair makes it; add one to its \"prepare\" (a step with --domain"
                            f" {domain}, or one that writes {pair.source}.h5 and {pair.target}.h5) or put the file"
                            " there; nothing was trained")
    try:
        for domain in (pair.source, pair.target):
            open_domain(find_domain(domain, plan.data_dir))
    except UserError as error:
        raise UserError(f"pair {pair.name}: {error}; nothing was trained") from None
    check_grid(pair.grid, plan.cells, runs_dir=plan.out.parent, data_dir=str(plan.data_dir))
    for job in plan.baselines:
        if job.done:
            continue
        try:
            job.plan = plan_baselines(job.config)
        except UserError as error:
            raise UserError(f"pair {pair.name}, baselines at target fraction {job.label}, seed {job.seed}: {error};"
                            " nothing was trained") from None


def classes_match(plan):
    """Whether the pair's source and target domain files hold the same class names (zero-shot is then scored)."""
    from convlstm_tl.data.format import open_domain

    pair = plan.pair
    source = open_domain(domain_path(pair.source, plan.data_dir), check_values=False)
    target = open_domain(domain_path(pair.target, plan.data_dir), check_values=False)
    return set(source.class_names) == set(target.class_names)


# ------------------------------------------------------------------ preparing


def prepare_pair(plan, *, quiet=False):
    """Run the pair's prepare steps whose files are missing, in order; return the steps run.

    Raises:
        UserError: one line naming the pair and step, for a converter that
            fails or that did not write the files it was expected to.
    """
    pair = plan.pair
    done = []
    for step, makes in _steps_to_run(plan):
        extra = ["--quiet"] if quiet and "--quiet" not in step else []
        command = f"python -m data_prep {' '.join(step)} --out {plan.data_dir}"
        log.info("pair %s: %s", pair.name, command)
        args = _parse_step(step, plan.data_dir, f"pair {pair.name}, prepare", extra)
        try:
            code = args._run(args)
        except UserError as error:
            raise UserError(f"pair {pair.name}: `{command}` failed: {error}") from None
        if code:
            raise UserError(f"pair {pair.name}: `{command}` ended with exit code {code}")
        missing = [name for name in makes if not domain_path(name, plan.data_dir).is_file()]
        if missing:
            raise UserError(f"pair {pair.name}: `{command}` did not write {missing[0]}.h5; make the pair's"
                            f" prepare steps write {pair.source}.h5 and {pair.target}.h5 (a step naming --domain D"
                            " writes D.h5)")
        done.append(command)
    plan.steps = []
    return done


def _steps_to_run(plan):
    """``[(step, files it makes)]`` of the steps whose files are not all in the pair's data folder."""
    pair = plan.pair
    todo = []
    for step in pair.prepare:
        makes = _step_makes(step, pair)
        if not all(domain_path(name, plan.data_dir).is_file() for name in makes):
            todo.append((step, makes))
    return todo


def _step_makes(step, pair):
    for i, arg in enumerate(step):
        if arg == "--domain" and i + 1 < len(step):
            return (step[i + 1],)
        if arg.startswith("--domain="):
            return (arg.split("=", 1)[1],)
    return (pair.source, pair.target)


# ------------------------------------------------------------------ running


def run_suite(suite, *, runs_dir="runs", data_dir=None, out=None, pairs=None, progress=True, quiet=False):
    """Prepare, check and run the selected pairs of ``suite``, then write its results.

    Everything finished is skipped. The order: every selected pair's missing
    domain files are prepared; every pair is checked (:func:`check_pair`);
    then per pair its grid (source runs, transfer runs), its baseline runs
    and its zero-shot scores run, and ``results.csv`` and ``summary.md`` are
    rewritten (atomically) after each pair. A run that fails is recorded and
    the others go on, as in a grid.

    Args:
        suite: a :class:`Suite`.
        runs_dir: the runs folder (see :func:`plan_suite`).
        data_dir: folder of the pairs' data folders.
        out: folder of ``results.csv`` and ``summary.md`` (default ``<runs_dir>/<suite>``).
        pairs: names of the pairs to run (default all); the results cover
            every pair with finished runs.
        progress: show progress bars.
        quiet: tell the converters to print nothing.

    Returns:
        A :class:`SuiteResult`.

    Raises:
        UserError: for a pair that cannot be prepared or fails its checks
            (nothing trained).
        Interrupted: on Ctrl-C (or SIGTERM); finished runs are kept.
    """
    plans = plan_suite(suite, runs_dir=runs_dir, data_dir=data_dir, pairs=pairs)
    for plan in plans:
        prepare_pair(plan, quiet=quiet)
    for plan in plans:
        check_pair(plan)
    everything = plan_suite(suite, runs_dir=runs_dir, data_dir=data_dir)
    before = _finished_runs(everything)
    out = Path(out) if out is not None else suite_root(suite, runs_dir)
    result = SuiteResult(out=out, rows=[], files={})
    grid_rows = {}
    current = None
    try:
        for plan in plans:
            current = f"pair {plan.pair.name}"
            grid_result = run_grid(plan.pair.grid, runs_dir=plan.out.parent, data_dir=str(plan.data_dir),
                                   progress=progress)
            grid_rows[plan.pair.name] = grid_result.rows
            result.failed.update({f"{plan.pair.name}/runs/{name}": failure
                                  for name, failure in grid_result.failed.items()})
            result.not_run += grid_result.not_run
            current = f"the baselines of pair {plan.pair.name}"
            _run_baselines(plan, result.failed)
            current = f"the zero-shot scores of pair {plan.pair.name}"
            _score_zero_shot(plan, result.failed)
            current = None
            result.rows = _suite_rows(everything, grid_rows, result.failed)
            result.files = write_suite_outputs(suite, everything, result.rows, out)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        running = f" while running {current}" if current else ""
        raise Interrupted(f"suite {suite.name} interrupted{running}; finished runs are kept: run"
                          f" `{resume_command(suite)}` (same options) to resume") from None
    after = _finished_runs(plan_suite(suite, runs_dir=runs_dir, data_dir=data_dir))
    result.trained, result.skipped = len(after - before), len(before)
    return result


def resume_command(suite):
    """The command that runs ``suite`` again: it resumes where it stopped (add the same options)."""
    return f"python -m experiments run {suite.path if suite.path is not None else suite.name + '.json'}"


def _run_baselines(plan, failed):
    from convlstm_tl.baselines.runner import carry_out, plan_baselines

    for job in plan.baselines:
        if _finished(job.run_dir):
            job.done = True
            continue
        log.info("pair %s: baselines at target fraction %s, seed %d", plan.pair.name, job.label, job.seed)
        job_plan = job.plan
        job.done = _attempt(f"{plan.pair.name}/baselines/{job.run_dir.name}",
                            lambda: carry_out(job_plan if job_plan is not None else plan_baselines(job.config)),
                            failed)


def _score_zero_shot(plan, failed):
    """Score each finished source run on the target's test split (classes matched), once; cached as JSON."""
    if not classes_match(plan):
        return
    from convlstm_tl.evaluation.crossdomain import evaluate_runs

    pair = plan.pair
    for run_dir in dict.fromkeys(plan.source_runs.values()):
        path = plan.zero_shot_dir / f"{run_dir.name}.json"
        if path.is_file() or not _finished(run_dir):
            continue

        def score(run_dir=run_dir, path=path):
            evaluation = evaluate_runs([run_dir], [pair.target], data_dir=str(plan.data_dir), progress=False)
            cell = evaluation.cell(evaluation.runs[0], pair.target)
            if cell.get("accuracy") is None:
                raise UserError(f"source run {run_dir.name} cannot be scored on {pair.target}: {cell.get('reason')}")
            record = {"source_run": run_dir.name, "target": pair.target, "accuracy": cell["accuracy"],
                      "macro_f1": cell["macro_f1"], "n_test": cell["n_test"], "eval_seconds": cell["eval_seconds"]}
            write_atomically(path, lambda f: json.dump(record, f, indent=2))

        _attempt(f"{pair.name}/zero-shot/{run_dir.name}", score, failed)


def _finished_runs(plans):
    runs = set()
    for plan in plans:
        runs |= {run for run in plan.source_runs.values() if _finished(run)}
        runs |= {run for run, done in plan.transfer_runs.items() if done}
        runs |= {job.run_dir for job in plan.baselines if _finished(job.run_dir)}
    return runs


def _baseline_config(pair, label, seed, *, runs_dir, data_dir):
    methods = ",".join(pair.baselines)
    identity = {"source": pair.source, "target": pair.target, "methods": methods,
                "target_fraction": pair.fractions[label], "seed": seed}
    return BaselineConfig(source=pair.source, target=pair.target, methods=methods,
                          target_fraction=float(pair.fractions[label]), seed=seed,
                          name=f"baselines-{slug(label)}-s{seed}-{config_hash(identity)}", runs_dir=str(runs_dir),
                          data_dir=str(data_dir))


# ------------------------------------------------------------------ results


def collect_suite(suite, *, runs_dir="runs", data_dir=None):
    """The rows of ``results.csv`` from the finished runs on disk (nothing is run)."""
    return _suite_rows(plan_suite(suite, runs_dir=runs_dir, data_dir=data_dir), {}, {})


def _suite_rows(plans, grid_rows, failed):
    rows = []
    for plan in plans:
        rows += _pair_rows(plan, grid_rows.get(plan.pair.name), failed)
    return rows


def _pair_rows(plan, grid_rows, failed):
    pair = plan.pair
    common = {"pair": pair.name, "source": pair.source, "target": pair.target}
    rows = []
    for seed, run_dir in plan.source_runs.items():
        key = f"{pair.name}/runs/{run_dir.name}"
        if _finished(run_dir):
            metrics, record = load_json(run_dir / "metrics.json"), load_json(run_dir / "config.json")
            n_train = ((record.get("domain") or {}).get("split_sizes") or {}).get("train")
            rows.append({**common, "model": SOURCE_MODEL, "kind": SOURCE_RUN, "trained_on": "source",
                         "domain": pair.source, "target_fraction": "", "seed": seed,
                         "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "n_train": n_train,
                         "seconds": metrics.get("train_seconds"), "run": run_dir.name, "status": OK, "reason": ""})
            zero_shot = plan.zero_shot_dir / f"{run_dir.name}.json"
            if zero_shot.is_file():
                scores = load_json(zero_shot)
                rows.append({**common, "model": ZERO_SHOT_MODEL, "kind": ZERO_SHOT, "trained_on": "source",
                             "domain": pair.target, "target_fraction": "", "seed": seed,
                             "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "n_train": n_train,
                             "seconds": scores.get("eval_seconds"), "run": run_dir.name, "status": OK, "reason": ""})
        elif key in failed:
            rows.append({**common, "model": SOURCE_MODEL, "kind": SOURCE_RUN, "trained_on": "source",
                         "domain": pair.source, "target_fraction": "", "seed": seed, "run": run_dir.name,
                         "status": "failed", "reason": failed[key][1]})
    if grid_rows is None:
        grid_rows = collect_rows(pair.grid, plan.cells)
    for row in grid_rows:
        status = row.get("status", OK)
        rows.append({**common, "model": row["strategy"], "kind": CONVLSTM, "trained_on": "target",
                     "domain": pair.target, "target_fraction": row["target_fraction"], "seed": row["seed"],
                     "accuracy": row.get("accuracy"), "macro_f1": row.get("macro_f1"), "n_train": row.get("n_train"),
                     "seconds": row.get("train_seconds"), "run": row["run"], "status": status,
                     "reason": row.get("reason", "")})
    first_label = next(iter(pair.fractions), None)
    for job in plan.baselines:
        name = f"{pair.name}/baselines/{job.run_dir.name}"
        if not _finished(job.run_dir):
            if name in failed:
                rows.append({**common, "model": "baselines", "kind": BASELINE, "trained_on": "",
                             "domain": pair.target, "target_fraction": job.label, "seed": job.seed,
                             "run": job.run_dir.name, "status": "failed", "reason": failed[name][1]})
            continue
        from convlstm_tl.baselines.record import load_baseline_run

        run = load_baseline_run(job.run_dir.name, runs_dir=job.run_dir.parent)
        for row in run.rows:
            scored = [(pair.target, job.label)]
            if row.trained_on == "source" and job.label == first_label:
                # Trained on the source alone: the same model at every fraction; its source score once.
                scored.insert(0, (pair.source, ""))
            for domain, label in scored:
                cell = row.metrics.get(domain) or {}
                if cell.get("accuracy") is None:
                    continue
                rows.append({**common, "model": f"{row.method} ({row.trained_on})", "kind": BASELINE,
                             "trained_on": row.trained_on, "domain": domain, "target_fraction": label,
                             "seed": job.seed, "accuracy": cell["accuracy"], "macro_f1": cell["macro_f1"],
                             "n_train": row.n_train, "seconds": row.fit_seconds, "run": job.run_dir.name,
                             "status": OK, "reason": ""})
    return rows


def write_suite_outputs(suite, plans, rows, out):
    """Write ``results.csv`` and ``summary.md`` (each atomically) into ``out``; return ``{what: path}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in RESULT_COLUMNS})

    text = suite_markdown(suite, plans, rows)
    return {"results": write_atomically(out / "results.csv", write_csv, newline=""),
            "summary": write_atomically(out / "summary.md", lambda f: f.write(text))}


# ------------------------------------------------------------------ summary


def aggregate(rows):
    """Mean ± std of accuracy, macro-F1, n_train and seconds per (pair, model, domain, fraction), over seeds.

    Returns:
        ``{(pair, model, domain, fraction label): entry}``, entries with
        ``n`` (seeds), ``kind``, ``trained_on`` and ``<metric>_mean`` /
        ``<metric>_std`` (sample std; NaN with one seed).
    """
    groups = {}
    for row in rows:
        if row.get("status", OK) != OK:
            continue
        key = (row["pair"], row["model"], row["domain"], str(row["target_fraction"]))
        groups.setdefault(key, []).append(row)
    summary = {}
    for key, members in groups.items():
        entry = {"n": len(members), "kind": members[0]["kind"], "trained_on": members[0]["trained_on"],
                 "model": key[1]}
        for metric in ("accuracy", "macro_f1", "n_train", "seconds"):
            values = np.array([float(m[metric]) for m in members if m.get(metric) not in (None, "")])
            entry[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        summary[key] = entry
    return summary


def compare(a, b, tie=TIE_POINTS):
    """``"win (+d)"``, ``"loss (-d)"`` or ``"tie (±d)"``: mean accuracy of entry ``a`` against ``b``, in points."""
    if a is None or b is None:
        return "–"
    diff = 100 * (a["accuracy_mean"] - b["accuracy_mean"])
    word = "tie" if abs(diff) <= tie else ("win" if diff > 0 else "loss")
    return f"{word} ({diff:+.1f})"


def comparison_rows(plans, summary):
    """One dict per pair and target fraction: the best ConvLSTM option, the best baseline, and the two verdicts.

    ConvLSTM options are the strategies at that fraction and the source run
    scored zero-shot; baselines are every method and training set at that
    fraction (trained on the source alone included). "default transfer vs
    scratch" compares ``TransferConfig().strategy`` with ``scratch``.
    """
    default = TransferConfig().strategy
    rows = []
    for plan in plans:
        pair = plan.pair
        for label in pair.fractions:
            # Strategies first, so that a tie goes to the transfer rather than to zero-shot.
            convlstm = [summary.get((pair.name, strategy, pair.target, label)) for strategy in pair.strategies]
            convlstm = [e for e in [*convlstm, summary.get((pair.name, ZERO_SHOT_MODEL, pair.target, ""))] if e]
            baselines = [e for (p, _, d, f), e in summary.items()
                         if p == pair.name and d == pair.target and e["kind"] == BASELINE and f == label]
            best_convlstm = max(convlstm, key=lambda e: e["accuracy_mean"], default=None)
            best_baseline = max(baselines, key=lambda e: e["accuracy_mean"], default=None)
            rows.append({
                "pair": pair.name, "fraction": label, "best_convlstm": best_convlstm, "best_baseline": best_baseline,
                "convlstm_vs_baseline": compare(best_convlstm, best_baseline),
                "default_vs_scratch": compare(summary.get((pair.name, default, pair.target, label)),
                                              summary.get((pair.name, "scratch", pair.target, label))),
            })
    return rows


def suite_markdown(suite, plans, rows):
    """``summary.md``: per pair the source and target tables, then one comparison row per pair and fraction."""
    summary = aggregate(rows)
    default = TransferConfig().strategy
    lines = [f"# Suite {suite.name}", ""]
    if suite.description:
        lines += [suite.description, ""]
    lines += ["Test accuracy and macro-F1 in %, mean ± std over the seeds finished (n). ConvLSTM runs use the"
              " toolkit's defaults but for the options a pair sets. Baselines are trained on the source's train"
              " split (source), on the target's labelled subset, the very samples the transfer runs train on"
              " (target), or on both (pooled, when the classes match). Zero-shot: the source run scored on the"
              " target with no target label (when the classes match). Labelled: target training samples.", ""]
    for plan in plans:
        lines += _pair_markdown(plan, summary)
    lines += ["## All pairs", "",
              f"Best by mean target accuracy: ConvLSTM options are the strategies and the source run zero-shot,"
              f" baselines every method and training set; a difference within {TIE_POINTS:g} point is a tie. The"
              f" default transfer strategy is `{default}` (`TransferConfig().strategy`).", "",
              "| pair | target labels | best ConvLSTM | best baseline | ConvLSTM best vs best baseline |"
              f" default transfer ({default}) vs scratch |",
              "|---|---|---|---|---|---|"]
    for row in comparison_rows(plans, summary):
        lines.append(f"| {row['pair']} | {_percent(row['fraction'])} | {_named(row['best_convlstm'])} |"
                     f" {_named(row['best_baseline'])} | {row['convlstm_vs_baseline']} | {row['default_vs_scratch']} |")
    return "\n".join(lines) + "\n"


def _pair_markdown(plan, summary):
    pair = plan.pair
    mine = {key[1:]: entry for key, entry in summary.items() if key[0] == pair.name}
    lines = [f"## {pair.name}: {pair.source} → {pair.target}", ""]
    if pair.description:
        lines += [pair.description, ""]
    prepare = "; ".join(f"`python -m data_prep {' '.join(step)} --out {plan.data_dir}`" for step in pair.prepare)
    lines += [f"Seeds {', '.join(map(str, pair.seeds))}." + (f" Data: {prepare}." if prepare else ""), ""]
    if not mine:
        return lines + ["No finished run yet.", ""]
    source_model = mine.get((SOURCE_MODEL, pair.source, ""))
    source_baselines = [e for (model, domain, label), e in mine.items()
                        if domain == pair.source and e["kind"] == BASELINE]
    best_source_baseline = max(source_baselines, key=lambda e: e["accuracy_mean"], default=None)
    lines += [f"Source {pair.source} (its test split):", "",
              "| model | n | accuracy | macro-F1 | training samples | seconds |", "|---|---|---|---|---|---|"]
    for title, entry in (("ConvLSTM source run", source_model),
                         (f"best source-only baseline: {best_source_baseline['model']}" if best_source_baseline
                          else "best source-only baseline", best_source_baseline)):
        lines.append(f"| {title} | {_n(entry)} | {_pm(entry, 'accuracy')} | {_pm(entry, 'macro_f1')} |"
                     f" {_pm(entry, 'n_train', 1, 0)} | {_pm(entry, 'seconds', 1, 1)} |")
    lines.append("")
    labels = list(pair.fractions)
    models = list(pair.strategies)
    zero_shot = mine.get((ZERO_SHOT_MODEL, pair.target, ""))
    if zero_shot is not None:
        models.append(ZERO_SHOT_MODEL)
    models += sorted({model for (model, domain, _), e in mine.items()
                      if domain == pair.target and e["kind"] == BASELINE},
                     key=lambda m: (m.split(" (")[0], _trained_on_order(m)))
    header = [f"{_percent(label)} {what}" for label in labels for what in ("accuracy", "macro-F1")]
    lines += [f"Target {pair.target} (its test split), by fraction of its training split labelled:", "",
              "| model | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    labelled = [_pm(mine.get((pair.strategies[0], pair.target, label)) if pair.strategies else None, "n_train", 1, 0)
                for label in labels]
    lines.append("| labelled | " + " | ".join(cell for n in labelled for cell in (n, "")) + " |")
    for model in models:
        cells = []
        for label in labels:
            entry = zero_shot if model == ZERO_SHOT_MODEL else mine.get((model, pair.target, label))
            cells += [_pm(entry, "accuracy"), _pm(entry, "macro_f1")]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _trained_on_order(model):
    order = ("source", "source+val", "target", "pooled", "pooled+val")
    trained_on = model.rsplit("(", 1)[-1].rstrip(")")
    return order.index(trained_on) if trained_on in order else len(order)


def _named(entry):
    return "–" if entry is None else f"{entry['model']} {_pm(entry, 'accuracy')}"


def _n(entry):
    return "0" if entry is None else str(entry["n"])


def _percent(label):
    return f"{100 * float(label):g}%"


def _pm(entry, metric, scale=100, digits=1):
    if entry is None or math.isnan(entry[f"{metric}_mean"]):
        return "–"
    mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
    if math.isnan(std):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def _csv_value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


# ------------------------------------------------------------------ dry run


def format_plan(suite, plans, *, checked=()):
    """What a dry run prints: per pair, its data folder, the steps to prepare, runs done / total; then totals.

    Args:
        suite: the :class:`Suite`.
        plans: its :class:`PairPlan` s.
        checked: names of the pairs fully checked (their data was there).
    """
    lines = [f"suite {suite.name}" + (f" ({suite.path})" if suite.path else "") + f": {len(plans)} pair(s)"]
    done_total, runs_total = 0, 0
    for plan in plans:
        pair = plan.pair
        lines.append(f"{pair.name}: {pair.source} -> {pair.target}, data {plan.data_dir}, runs {plan.out}")
        if plan.steps:
            for step, makes in plan.steps:
                lines.append(f"  prepare: python -m data_prep {' '.join(step)} --out {plan.data_dir}"
                             f" (makes {', '.join(name + '.h5' for name in makes)})")
        elif all(domain_path(name, plan.data_dir).is_file() for name in (pair.source, pair.target)):
            lines.append("  data: ready" + (", checked" if pair.name in checked else ""))
        else:
            lines.append(f"  data: {pair.source}.h5 or {pair.target}.h5 missing and no prepare step makes it")
        counts = plan.counts()
        lines.append("  " + "; ".join(f"{what}: {done} of {total} done" for what, (done, total) in counts.items())
                     + f" (seeds {', '.join(map(str, pair.seeds))}; {', '.join(pair.strategies)};"
                     f" target fractions {', '.join(pair.fractions)};"
                     f" baselines {', '.join(pair.baselines) or 'none'})")
        done_total += sum(done for done, _ in counts.values())
        runs_total += sum(total for _, total in counts.values())
    lines.append(f"{runs_total} runs, {done_total} finished, {runs_total - done_total} to run")
    return "\n".join(lines)


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


def _object(value, where):
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a JSON object. Received: {shown(value)}")
    return value


def _check_keys(data, known, where):
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; known keys are {sorted(known)}")
