"""Running a grid's cells through the library, resumably, and writing its results.

Layout, for a grid named ``G``::

    <runs-dir>/G/runs/<cell run>      one run directory per cell (and per trained source run)
    <out>/results.csv                 one row per cell run so far (default <out> = <runs-dir>/G)
    <out>/summary.md                  mean ± std per setting over seeds, best settings
    <out>/plots/<study>-accuracy.png, <study>-seconds.png, <study>-curves.png

A cell's run is named after its strategy, seed and a hash of its settings
(see :mod:`experiments.grid`), so a cell is finished exactly when that run
directory exists (runs are published whole, see :mod:`convlstm_tl.runs.directory`):
running the grid again skips it, and a cell whose settings changed gets a
new run. Cells that resolve to the same config share one run. A cell that an
interrupted grid left half-done is resumed from its last saved epoch.

Every cell is checked before the first trains (:func:`check_grid`): its
config, its domain files, its strategy against the source's blocks, its
source run. A cell that still fails while running does not stop the grid: its
row in ``results.csv`` says ``failed`` with the one-line reason, the cells
that needed its source run say ``skipped``, and the others run on. Failed
cells are not finished, so running the grid again retries them.
"""

import csv
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from convlstm_tl.config import TransferConfig
from convlstm_tl.errors import Interrupted, UserError
from convlstm_tl.files import environment_problem, write_atomically
from convlstm_tl.jsonio import load_json
from convlstm_tl.runs.directory import partial_path
from convlstm_tl.runs.resolve import load_run, resolve_run
from convlstm_tl.strategies.registry import parse_strategy
from experiments import plots
from experiments.grid import expand_grid, slug
from experiments.summary import best_settings, summarize, summary_markdown

log = logging.getLogger(__name__)

RESULT_COLUMNS = ("seed", "run", "accuracy", "macro_f1", "source_accuracy", "train_seconds", "epochs_run", "n_train",
                  "feature_cache", "status", "reason")
# Values of the ``status`` column.
OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass
class PlannedCell:
    """A cell with the run directory it writes and whether that run is finished.

    ``status`` is ``"failed"`` or ``"skipped"`` (with the one-line
    ``reason``) when this call tried the cell and it did not finish, else None.
    """

    cell: object
    run_dir: Path
    done: bool
    status: str | None = None
    reason: str = ""


@dataclass
class GridResult:
    """What running (or re-reading) a grid gave.

    Attributes:
        out: the output folder.
        rows: one dict per finished cell (the rows of ``results.csv``).
        summary: per-setting aggregates (see :func:`experiments.summary.summarize`).
        best: the best settings (see :func:`experiments.summary.best_settings`).
        trained: cells trained by this call.
        skipped: cells found finished and not trained again.
        pending: cells still unfinished (a dry run's, or the failed and skipped ones).
        files: ``{what: path}`` of the files written.
        failed: ``{run name: (kind, reason)}`` of the runs (cells or source
            runs) that failed in this call; kind is ``"user"`` for a
            :class:`UserError`, ``"bug"`` for anything else.
        not_run: cells not tried because their source run failed.
    """

    out: Path
    rows: list
    summary: list
    best: list
    trained: int
    skipped: int
    pending: int
    files: dict
    failed: dict = field(default_factory=dict)
    not_run: int = 0

    @property
    def user_errors_only(self):
        """Whether every failure was a user error (fixable input), not a fault of the toolkit."""
        return all(kind == "user" for kind, _ in self.failed.values())


def grid_dirs(grid, *, runs_dir="runs", out=None):
    """``(out, cell_runs_dir)``: where results and the cells' runs of ``grid`` go."""
    root = Path(runs_dir) / grid.name
    return (Path(out) if out is not None else root), root / "runs"


def plan_grid(grid, *, runs_dir="runs", studies=None):
    """Expand ``grid`` and say, for each cell, where its run is and whether it is finished.

    Returns:
        A list of :class:`PlannedCell`.
    """
    _, cell_runs = grid_dirs(grid, runs_dir=runs_dir)
    return [PlannedCell(cell, cell_runs / cell.run_name, _finished(cell_runs / cell.run_name))
            for cell in expand_grid(grid, studies)]


def run_grid(grid, *, runs_dir="runs", data_dir=None, out=None, studies=None, dry_run=False, progress=True,
             verbose=0):
    """Run every unfinished cell of ``grid`` and write its results.

    Every cell is checked first (:func:`check_grid`), so a bad cell fails
    before anything trains. Source runs the cells need are trained first
    (once per source config and seed). A cell (or source run) that fails while
    running is recorded and the others go on; after each cell ``results.csv``
    is rewritten (atomically), so an interrupted grid leaves the rows it
    finished and the next call skips them.

    Args:
        grid: a :class:`experiments.grid.Grid`.
        runs_dir: the runs folder; the grid's runs go in ``<runs_dir>/<grid>/runs``,
            and a grid's ``"source": {"run": NAME}`` is looked up here.
        data_dir: folder of domain files (None: ``$CONVLSTM_TL_DATA`` or ``./data``).
        out: output folder (default ``<runs_dir>/<grid>``).
        studies: names of the studies to run (default all).
        dry_run: plan and check only: train nothing, write nothing.
        progress: show a progress bar over the cells.
        verbose: Keras progress of each fit.

    Returns:
        A :class:`GridResult`; its ``failed`` names the runs that failed.

    Raises:
        UserError: for a grid or cell that fails the checks (nothing trained).
        Interrupted: on Ctrl-C (or SIGTERM); the message says how to resume.
    """
    out, cell_runs = grid_dirs(grid, runs_dir=runs_dir, out=out)
    plan = plan_grid(grid, runs_dir=runs_dir, studies=studies)
    source_run = check_grid(grid, plan, runs_dir=runs_dir, data_dir=data_dir)
    skipped = sum(planned.done for planned in plan)
    if dry_run:
        return GridResult(out=out, rows=[], summary=[], best=[], trained=0, skipped=skipped,
                          pending=len(plan) - skipped, files={})
    # Identical configs (the same cell in two studies) share one run: train it once.
    todo = list({planned.run_dir: planned for planned in plan if not planned.done}.values())
    trained, failed, current = 0, {}, None
    try:
        for planned in tqdm(todo, desc=f"grid {grid.name}", unit="run", disable=not progress):
            if _finished(planned.run_dir):
                continue
            current = planned
            trained += _try_cell(planned, cell_runs, data_dir, source_run, verbose, failed) == OK
            _share_outcome(plan, planned)
            # After every cell, so an interrupted grid keeps the rows it finished.
            _write_progress(grid, plan, out)
            current = None
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: the running cell keeps its partial run (and saved
        # epochs); results.csv is whole (written atomically) as of the last cell.
        raise _interrupted(grid, current, out) from None
    for planned in plan:
        planned.done = _finished(planned.run_dir)
    rows = _rows(grid, plan, attempted=True)
    result = GridResult(out=out, rows=rows, summary=[], best=[], trained=trained, skipped=skipped,
                        pending=sum(not planned.done for planned in plan), files={}, failed=failed,
                        not_run=sum(planned.status == SKIPPED for planned in plan))
    ok_rows = [row for row in rows if row["status"] == OK]
    result.summary = summarize(ok_rows, grid.axis_names)
    result.best = best_settings(result.summary, grid.best_per)
    try:
        result.files = write_grid_outputs(grid, result, plan)
    except KeyboardInterrupt:
        raise Interrupted(f"grid {grid.name} interrupted while writing its results; every cell is kept: run"
                          f" `{resume_command(grid)}` to write them again") from None
    return result


def check_grid(grid, plan, *, runs_dir="runs", data_dir=None):
    """Check every unfinished cell of ``plan`` fully, before any trains.

    Each config validates as the runner will run it; each domain file exists
    and opens as a valid domain; a transfer's source run exists (or is
    trained by the grid), its strategy parses for the source's blocks, and
    the target has the source's kind of input and channels.

    Returns:
        The resolved path of the grid's existing source run, or None.

    Raises:
        UserError: one line naming the cell and what is wrong.
    """
    from convlstm_tl.data.format import find_domain, open_domain
    from convlstm_tl.evaluation.alignment import check_same_input
    from convlstm_tl.training.inputs import check_augment_fits, domain_record

    _, cell_runs = grid_dirs(grid, runs_dir=runs_dir)
    infos = {}

    def domain(name):
        if name not in infos:
            infos[name] = open_domain(find_domain(name, data_dir or None))
        return infos[name]

    source_run = _existing_source(grid, runs_dir)
    existing = load_run(source_run, with_model=False) if source_run is not None else None
    for planned in plan:
        if planned.done:
            continue
        cell = planned.cell
        try:
            sources = []  # (name, blocks, domain record) of the cell's source
            if cell.source_config is not None:
                config = replace(cell.source_config, **_placement(cell_runs, cell.source_config.name, data_dir))
                config.validate()
                info = domain(config.source)
                check_augment_fits(config.augment, info)
                sources.append((config.name, config.model.n_blocks, domain_record(info)))
            elif existing is not None:
                sources.append((existing.name, existing.n_blocks, existing.domain))
            config = replace(cell.config, **_placement(cell_runs, cell.run_name, data_dir))
            if isinstance(config, TransferConfig):
                if source_run is not None:
                    config = replace(config, source_run=str(source_run))
                config.validate()
                info = domain(config.target)
                for name, n_blocks, source_domain in sources:
                    strategy = parse_strategy(config.strategy, n_blocks, head_epochs=config.head_epochs)
                    check_same_input(name, source_domain, info, strategy)
            else:
                config.validate()
                info = domain(config.source)
            if getattr(config, "augment", None) is not None:
                check_augment_fits(config.augment, info)
        except UserError as error:
            setting = ", ".join(f"{axis}={label}" for axis, label in cell.setting)
            raise UserError(f"grid {grid.name}, study {cell.study} ({setting}), seed {cell.seed}: {error};"
                            " nothing was trained") from None
    return source_run


def resume_command(grid):
    """The command that runs ``grid`` again: it resumes where it stopped (add the same options)."""
    return f"python -m experiments run {grid.path if grid.path is not None else grid.name + '.json'}"


def write_grid_outputs(grid, result, plan):
    """Write ``results.csv``, ``summary.md`` and the plots; return ``{what: path}``."""
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    files = {"results": write_results(result.rows, out / "results.csv", grid.axis_names)}
    text = summary_markdown(grid, result.summary, result.best)
    files["summary"] = write_atomically(out / "summary.md", lambda f: f.write(text))
    plot_dir = out / "plots"
    plot_dir.mkdir(exist_ok=True)
    for study in grid.studies:
        entries = [entry for entry in result.summary if entry["study"] == study]
        if not entries:
            continue
        axes = list(grid.studies[study].axes)
        x_axis = grid.best_per if grid.best_per in axes else None
        files[f"{study}-accuracy"] = plots.plot_accuracy(entries, plot_dir / f"{slug(study)}-accuracy.png",
                                                         axes=axes, x_axis=x_axis, title=f"{grid.name}: {study}")
        files[f"{study}-seconds"] = plots.plot_seconds(entries, plot_dir / f"{slug(study)}-seconds.png",
                                                       axes=axes, title=f"{grid.name}: {study}")
        curves = [_curve(planned) for planned in plan if planned.done and planned.cell.study == study]
        files[f"{study}-curves"] = plots.plot_learning_curves(curves, plot_dir / f"{slug(study)}-curves.png",
                                                              title=f"{grid.name}: {study}")
    return files


def write_results(rows, path, axes):
    """Write ``rows`` as CSV: ``study``, one column per axis, then :data:`RESULT_COLUMNS`.

    Written to a temporary file and renamed over ``path``, so ``path`` is the
    old or the new table, never half of one (a kill or Ctrl-C mid-write).
    """
    columns = ["study", *axes, *RESULT_COLUMNS]

    def write(f):
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: csv_value(row.get(key)) for key in columns})

    return write_atomically(path, write, newline="")


def collect_rows(grid, plan):
    """The result rows of the finished cells of ``plan``, in plan order."""
    return _rows(grid, plan)


# ------------------------------------------------------------------ internals


def _try_cell(planned, cell_runs, data_dir, source_run, verbose, failed):
    """Run one cell (its source run first, if needed); record a failure instead of raising it.

    Returns:
        ``"ok"``, ``"failed"`` or ``"skipped"`` (its source run failed); the
        same is set on ``planned``, with the reason. ``failed`` gains the
        runs that failed.
    """
    from convlstm_tl.training.source import train_source

    cell = planned.cell
    if cell.source_config is not None and not _finished(cell_runs / cell.source_config.name):
        name = cell.source_config.name
        if name not in failed:
            log.info("training source run %s", name)
            _attempt(name, lambda: train_source(
                replace(cell.source_config, **_placement(cell_runs, name, data_dir)), verbose=verbose), failed)
        if name in failed:
            planned.status, planned.reason = SKIPPED, f"source run {name} failed: {failed[name][1]}"
            return SKIPPED
    if _attempt(cell.run_name, lambda: _run_cell(cell, cell_runs, data_dir, source_run, verbose), failed):
        planned.done, planned.status, planned.reason = True, OK, ""
        return OK
    planned.status, planned.reason = FAILED, failed[cell.run_name][1]
    return FAILED


def _attempt(name, work, failed):
    """``work()``; True if it returned, False (and ``failed[name]`` set) if it raised an error."""
    try:
        work()
        return True
    except (UserError, OSError) as error:
        # An environment error (space, quota, permissions) fails the cell as a user error, not a bug.
        reason = str(error) if isinstance(error, UserError) else environment_problem(error)
        if reason is None:
            return _bug(name, error, failed)
        failed[name] = ("user", " ".join(reason.split()))
        log.info("%s failed: %s; going on with the other cells", name, failed[name][1])
    except Exception as error:  # noqa: BLE001 - one broken cell must not stop the grid
        return _bug(name, error, failed)
    return False


def _bug(name, error, failed):
    """Record a failure that is no user error; its traceback is logged (it is a bug to report)."""
    failed[name] = ("bug", f"{type(error).__name__}: {' '.join(str(error).split())}")
    log.error("%s failed; going on with the other cells", name, exc_info=error)
    return False


def _share_outcome(plan, planned):
    """Give the cells that share ``planned``'s run (same config, other study) its outcome."""
    for other in plan:
        if other.run_dir == planned.run_dir and other is not planned:
            other.done, other.status, other.reason = planned.done, planned.status, planned.reason


def _interrupted(grid, planned, out):
    running = f" while running {planned.run_dir.name}" if planned is not None else ""
    return Interrupted(f"grid {grid.name} interrupted{running}; finished cells, {out / 'results.csv'} and the"
                       f" epochs saved so far are kept: run `{resume_command(grid)}` (same options) to resume")


def _finished(run_dir):
    return (Path(run_dir) / "metrics.json").is_file() and (Path(run_dir) / "config.json").is_file()


def _existing_source(grid, runs_dir):
    """The path of the grid's existing source run, checked before anything trains."""
    if grid.kind != "transfer" or "run" not in grid.source:
        return None
    return resolve_run(grid.source["run"], runs_dir).resolve()


def _run_cell(cell, cell_runs, data_dir, source_run, verbose):
    # Imported here so that planning and dry runs do not start the backend.
    from convlstm_tl.training.source import train_source
    from convlstm_tl.training.transfer import transfer

    config = replace(cell.config, **_placement(cell_runs, cell.run_name, data_dir))
    log.info("running %s (study %s, seed %d)", cell.run_name, cell.study, cell.seed)
    if isinstance(config, TransferConfig):
        if source_run is not None:
            config = replace(config, source_run=str(source_run))
        return transfer(config, verbose=verbose)
    return train_source(config, verbose=verbose)


def _placement(cell_runs, name, data_dir):
    """Run options for run ``name`` of a grid: where it goes, and whether to resume it.

    A run an interrupted grid left with saved epochs is continued from its
    last one (``--resume``); one that saved none starts again.
    """
    from convlstm_tl.training.checkpoint import Checkpoint

    resumable = Checkpoint(partial_path(cell_runs, name)).path.is_file()
    return {"runs_dir": str(cell_runs), "data_dir": data_dir or "", "overwrite": not resumable,
            "resume": resumable}


def _rows(grid, plan, attempted=False):
    """Rows of the finished cells and, with ``attempted``, of those that failed or were skipped."""
    rows, seen = [], set()
    for planned in plan:
        key = (planned.cell.study, planned.cell.setting, planned.cell.seed)
        if key in seen:
            continue
        if planned.done:
            rows.append(_row(planned))
        elif attempted and planned.status in (FAILED, SKIPPED):
            cell = planned.cell
            rows.append({"study": cell.study, **cell.labels, "seed": cell.seed, "run": planned.run_dir.name,
                         "status": planned.status, "reason": planned.reason})
        else:
            continue
        seen.add(key)
    return rows


def _write_progress(grid, plan, out):
    write_results(_rows(grid, plan, attempted=True), out / "results.csv", grid.axis_names)


def _row(planned):
    cell = planned.cell
    metrics = load_json(planned.run_dir / "metrics.json")
    run_config = load_json(planned.run_dir / "config.json")
    kept = metrics.get("source_test") or {}
    return {
        "study": cell.study, **cell.labels, "seed": cell.seed, "run": planned.run_dir.name,
        "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
        "source_accuracy": kept.get("accuracy"), "train_seconds": metrics.get("train_seconds"),
        "epochs_run": metrics.get("epochs_run"),
        "n_train": (run_config.get("target_samples") or {}).get("n", (run_config.get("domain") or {})
                                                                .get("split_sizes", {}).get("train")),
        "feature_cache": metrics.get("feature_cache"), "status": OK, "reason": "",
    }


def _curve(planned):
    """One run's learning curve: its label, patience and per-epoch history."""
    run_config = load_json(planned.run_dir / "config.json")
    history = {}
    with open(planned.run_dir / "history.csv", newline="") as f:
        for record in csv.DictReader(f):
            for key, value in record.items():
                if key != "epoch":
                    history.setdefault(key, []).append(float(value))
    label = ", ".join(f"{axis}={label}" for axis, label in planned.cell.setting) + f", seed {planned.cell.seed}"
    return {"label": label, "patience": run_config["config"].get("patience", 0), "history": history}


def csv_value(value):
    """A value as a CSV cell: None and NaN empty, floats to 6 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
