"""Running a grid's cells through the library, resumably, and writing its results.

Layout, for a grid named ``G``::

    <runs-dir>/G/runs/<cell run>      one run directory per cell (and per trained source run)
    <out>/results.csv                 one row per finished cell (default <out> = <runs-dir>/G)
    <out>/summary.md                  mean ± std per setting over seeds, best settings
    <out>/plots/<study>-accuracy.png, <study>-seconds.png, <study>-curves.png

A cell's run is named after its strategy, seed and a hash of its settings
(see :mod:`experiments.grid`), so a cell is finished exactly when that run
directory exists (runs are published whole, see :mod:`convlstm_tl.runs`):
running the grid again skips it, and a cell whose settings changed gets a
new run. Cells that resolve to the same config share one run. A cell that an
interrupted grid left half-done is resumed from its last saved epoch.
"""

import csv
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from convlstm_tl.config import TransferConfig, load_json
from convlstm_tl.runs import find_run, partial_path
from experiments import plots
from experiments.grid import expand_grid, slug
from experiments.summary import best_settings, summarize, summary_markdown

log = logging.getLogger(__name__)

RESULT_COLUMNS = ("seed", "run", "accuracy", "macro_f1", "source_accuracy", "train_seconds", "epochs_run", "n_train",
                  "feature_cache")


@dataclass
class PlannedCell:
    """A cell with the run directory it writes and whether that run is finished."""

    cell: object
    run_dir: Path
    done: bool


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
        pending: cells still unfinished (only a dry run leaves any).
        files: ``{what: path}`` of the files written.
    """

    out: Path
    rows: list
    summary: list
    best: list
    trained: int
    skipped: int
    pending: int
    files: dict


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

    Source runs the cells need are trained first (once per source config and
    seed). After each cell ``results.csv`` is rewritten, so an interrupted grid
    leaves the rows it finished; the next call skips them.

    Args:
        grid: a :class:`experiments.grid.Grid`.
        runs_dir: the runs folder; the grid's runs go in ``<runs_dir>/<grid>/runs``,
            and a grid's ``"source": {"run": NAME}`` is looked up here.
        data_dir: folder of domain files (None: ``$CONVLSTM_TL_DATA`` or ``./data``).
        out: output folder (default ``<runs_dir>/<grid>``).
        studies: names of the studies to run (default all).
        dry_run: plan only: train nothing, write nothing.
        progress: show a progress bar over the cells.
        verbose: Keras progress of each fit.

    Returns:
        A :class:`GridResult`.
    """
    out, cell_runs = grid_dirs(grid, runs_dir=runs_dir, out=out)
    plan = plan_grid(grid, runs_dir=runs_dir, studies=studies)
    skipped = sum(planned.done for planned in plan)
    if dry_run:
        return GridResult(out=out, rows=[], summary=[], best=[], trained=0, skipped=skipped,
                          pending=len(plan) - skipped, files={})
    source_run = _existing_source(grid, runs_dir)
    # Identical configs (the same cell in two studies) share one run: train it once.
    todo = list({planned.run_dir: planned for planned in plan if not planned.done}.values())
    trained = 0
    for planned in tqdm(todo, desc=f"grid {grid.name}", unit="run", disable=not progress):
        if _finished(planned.run_dir):
            continue
        _run_cell(planned.cell, cell_runs, data_dir, source_run, verbose)
        trained += 1
        planned.done = True
        write_results(_rows(grid, plan), out / "results.csv", grid.axis_names)
    for planned in plan:
        planned.done = _finished(planned.run_dir)
    rows = _rows(grid, plan)
    result = GridResult(out=out, rows=rows, summary=[], best=[], trained=trained, skipped=skipped,
                        pending=sum(not planned.done for planned in plan), files={})
    result.summary = summarize(rows, grid.axis_names)
    result.best = best_settings(result.summary, grid.best_per)
    result.files = write_grid_outputs(grid, result, plan)
    return result


def write_grid_outputs(grid, result, plan):
    """Write ``results.csv``, ``summary.md`` and the plots; return ``{what: path}``."""
    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    files = {"results": write_results(result.rows, out / "results.csv", grid.axis_names)}
    files["summary"] = out / "summary.md"
    files["summary"].write_text(summary_markdown(grid, result.summary, result.best))
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
    """Write ``rows`` as CSV: ``study``, one column per axis, then :data:`RESULT_COLUMNS`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["study", *axes, *RESULT_COLUMNS]
    partial = path.with_name(path.name + ".tmp")
    with open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in columns})
    partial.replace(path)
    return path


def collect_rows(grid, plan):
    """The result rows of the finished cells of ``plan``, in plan order."""
    return _rows(grid, plan)


# ------------------------------------------------------------------ internals


def _finished(run_dir):
    return (Path(run_dir) / "metrics.json").is_file() and (Path(run_dir) / "config.json").is_file()


def _existing_source(grid, runs_dir):
    """The path of the grid's existing source run, checked before anything trains."""
    if grid.kind != "transfer" or "run" not in grid.source:
        return None
    name = Path(grid.source["run"])
    in_runs_dir = Path(runs_dir) / name
    path = in_runs_dir if in_runs_dir.exists() or not name.is_dir() else name
    return find_run(path.parent, path.name).resolve()


def _run_cell(cell, cell_runs, data_dir, source_run, verbose):
    # Imported here so that planning and dry runs do not start the backend.
    from convlstm_tl.training import train_source
    from convlstm_tl.transfer import transfer

    if cell.source_config is not None and not _finished(cell_runs / cell.source_config.name):
        log.info("training source run %s", cell.source_config.name)
        train_source(replace(cell.source_config, **_placement(cell_runs, cell.source_config.name, data_dir)),
                     verbose=verbose)
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
    from convlstm_tl.checkpoint import Checkpoint

    resumable = Checkpoint(partial_path(cell_runs, name)).path.is_file()
    return {"runs_dir": str(cell_runs), "data_dir": data_dir or "", "overwrite": not resumable,
            "resume": resumable}


def _rows(grid, plan):
    rows, seen = [], set()
    for planned in plan:
        key = (planned.cell.study, planned.cell.setting, planned.cell.seed)
        if not planned.done or key in seen:
            continue
        seen.add(key)
        rows.append(_row(planned))
    return rows


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
        "feature_cache": metrics.get("feature_cache"),
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


def _csv_value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
