"""Tests of the experiment grids: expansion, bad grid files, running and resuming a tiny grid."""

import csv
import json
import shutil

import pytest

from conftest import write_tiny
from convlstm_tl.cli import run_main
from convlstm_tl.config import TransferConfig
from convlstm_tl.errors import ConfigError, Interrupted
from convlstm_tl.training.checkpoint import Checkpoint
from experiments.__main__ import PROG, main
from experiments.advise_check import check_advice
from experiments.grid import expand_grid, load_grid, parse_grid
from experiments.runner import plan_grid, run_grid

TINY_SOURCE = {"source": "Tiny", "epochs": 1, "model": {"filters": [4, 4], "head_units": 8}}


def _grid(**overrides):
    data = {
        "name": "g",
        "source": {"config": TINY_SOURCE},
        "base": {"target": "Target", "epochs": 1},
        "seeds": [0, 1],
        "axes": {"strategy": ["freeze", "cut:1", "scratch"], "target_fraction": [0.5, 1.0]},
    }
    data.update(overrides)
    # None removes a key, e.g. axes=None with studies=...
    return parse_grid({key: value for key, value in data.items() if value is not None})


# ------------------------------------------------------------------ expansion


def test_expansion_is_the_product_of_axes_times_seeds():
    cells = expand_grid(_grid())
    assert len(cells) == 3 * 2 * 2
    assert cells[0].labels == {"strategy": "freeze", "target_fraction": "0.5"} and cells[0].seed == 0
    assert cells[1].labels == cells[0].labels and cells[1].seed == 1
    assert {cell.config.strategy for cell in cells} == {"freeze", "cut:1", "scratch"}
    assert all(isinstance(cell.config, TransferConfig) and cell.config.epochs == 1 for cell in cells)
    assert len({cell.run_name for cell in cells}) == len(cells)
    # One source run per seed, shared by the cells of that seed.
    assert {cell.seed: cell.config.source_run for cell in cells} == {
        cell.seed: cell.source_config.name for cell in cells}
    assert len({cell.source_config.name for cell in cells}) == 2
    assert all(cell.source_config.seed == cell.seed for cell in cells)


def test_dotted_bundle_and_source_axes():
    grid = _grid(studies={
        "aug": {"axes": {"augment": {"off": {}, "on": {"scale": 0.1}}, "augment.jitter": [0.0, 0.2]}},
        "mode": {"base": {"lr": 0.01}, "axes": {"mode": {"bottleneck": {"strategy": "freeze", "cache_features": True},
                                                         "tuned": {"strategy": "finetune", "body_lr": 0.001}}}},
        "dropout": {"axes": {"source.model.head_dropout": [0.0, 0.5]}},
    }, axes=None)
    by_study = {}
    for cell in expand_grid(grid):
        by_study.setdefault(cell.study, []).append(cell)
    on = [c for c in by_study["aug"] if c.labels["augment"] == "on" and c.labels["augment.jitter"] == "0.2"][0]
    assert (on.config.augment.scale, on.config.augment.jitter) == (0.1, 0.2)
    tuned = [c for c in by_study["mode"] if c.labels["mode"] == "tuned"][0]
    assert (tuned.config.strategy, tuned.config.body_lr, tuned.config.lr) == ("finetune", 0.001, 0.01)
    # A source option varied: one source run per value and seed.
    sources = {(c.labels["source.model.head_dropout"], c.seed): c.source_config for c in by_study["dropout"]}
    assert sources[("0.5", 0)].model.head_dropout == 0.5
    assert len({s.name for s in sources.values()}) == 4
    # The study's own base applies to its cells only.
    assert {c.config.lr for c in by_study["mode"]} == {0.01} and {c.config.lr for c in by_study["aug"]} == {1e-3}


def test_same_config_in_two_studies_shares_a_run():
    default = TransferConfig().strategy
    grid = _grid(axes=None, seeds=[0], studies={"a": {"axes": {"strategy": [default, "scratch"]}},
                                                "b": {"axes": {"lr": [0.001, 0.1]}}})
    names = {(c.study, tuple(c.labels.values())): c.run_name for c in expand_grid(grid)}
    # Study b at lr 1e-3 is study a's cell of the default strategy (the defaults).
    assert names[("b", ("0.001",))] == names[("a", (default,))]
    assert names[("b", ("0.1",))] != names[("a", (default,))]


def test_existing_source_run():
    grid = _grid(source={"run": "St"})
    cells = expand_grid(grid)
    assert {cell.config.source_run for cell in cells} == {"St"}
    assert all(cell.source_config is None for cell in cells)


@pytest.mark.parametrize("overrides, message", [
    ({"colour": 1}, "unknown keys"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"kind": "other"}, "kind"),
    ({"source": {"run": "St", "config": {}}}, "source"),
    ({"base": {"target": "Target", "seed": 3}}, "set by the grid runner"),
    ({"base": {"target": "Target", "runs_dir": "x"}}, "set by the grid runner"),
    ({"axes": {"strategy": "freeze"}}, "must be a list"),
    ({"axes": {"mode": {"a": {"stratgy": "freeze"}}}}, "unknown option 'stratgy'"),
    ({"axes": {"mode": ["freeze"]}}, "not an option"),
    ({"axes": {"lr": [-1.0]}}, "lr must lie in"),
    ({"axes": {"epochs": ["many"]}}, "epochs must be int"),
    ({"best_per": "lr"}, "best_per"),
    ({"base": {"epochs": 1}}, "no domain"),
])
def test_bad_grids_fail_before_training(overrides, message):
    with pytest.raises(ConfigError, match=message):
        expand_grid(_grid(**overrides))


def test_bad_grid_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"source": {"run": "St"}, "axes": {"strategy": ["freeze"]}, "studies": {}}')
    assert run_main(main, ["run", str(path), "--dry-run"], prog=PROG) == 2
    assert run_main(main, ["run", str(tmp_path / "missing.json")], prog=PROG) == 2
    path.write_text("{not json")
    assert run_main(main, ["run", str(path)], prog=PROG) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith(f"{PROG}: error: ") for line in err)
    assert "not both" in err[0] and "not found" in err[1] and "not valid JSON" in err[2]


# ------------------------------------------------------------- run and resume


def _tiny_grid(tmp_path, base, axes):
    """Domains Tiny and Target, and a one-seed grid ``tiny`` over ``axes``: ``(data, grid_file, grid, runs)``."""
    data = tmp_path / "data"
    write_tiny(data)
    write_tiny(data, name="Target", seed=1)
    grid_file = tmp_path / "tiny.json"
    grid_file.write_text(json.dumps({
        "name": "tiny", "source": {"config": TINY_SOURCE}, "base": {"target": "Target", **base}, "seeds": [0],
        "axes": axes,
    }))
    return data, grid_file, load_grid(grid_file), tmp_path / "runs"


@pytest.mark.slow
def test_run_writes_results_and_resume_skips_finished_cells(tmp_path, capsys):
    data, grid_file, grid, runs = _tiny_grid(tmp_path, {"epochs": 1}, {"strategy": ["freeze", "scratch"],
                                                                       "target_fraction": [0.5, 1.0]})

    result = run_grid(grid, runs_dir=runs, data_dir=str(data), progress=False)
    assert (result.trained, result.skipped, result.pending) == (4, 0, 0)
    out = runs / "tiny"
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(row["strategy"], row["target_fraction"]) for row in rows] == [
        ("freeze", "0.5"), ("freeze", "1.0"), ("scratch", "0.5"), ("scratch", "1.0")]
    assert [int(row["n_train"]) for row in rows] == [24, 48, 24, 48]
    for row in rows:
        metrics = json.loads((out / "runs" / row["run"] / "metrics.json").read_text())
        assert float(row["accuracy"]) == pytest.approx(metrics["accuracy"], abs=1e-6)
        assert row["epochs_run"] == "1" and float(row["train_seconds"]) > 0
        # Same class names in source and target: the accuracy kept on the source is recorded.
        assert 0 <= float(row["source_accuracy"]) <= 1
    assert [row["feature_cache"] for row in rows] == ["True", "True", "False", "False"]
    summary = (out / "summary.md").read_text()
    assert "| strategy | target_fraction | n | accuracy |" in summary and "- target_fraction=0.5: **strategy=" in summary
    # The labelled samples each setting trained on: what a fraction resolved to.
    assert "| labelled | seconds |" in summary and "| freeze | 0.5 | 1 |" in summary
    assert [line.split(" | ")[6] for line in summary.splitlines() if line.startswith("| freeze |")] == ["24", "48"]
    for plot in ("accuracy", "seconds", "curves"):
        assert (out / "plots" / f"tiny-{plot}.png").stat().st_size > 0
    assert (out / "runs" / expand_grid(grid)[0].source_config.name / "model.keras").is_file()

    # Resume: one cell's run removed, as if the grid had been interrupted before it.
    removed = out / "runs" / rows[3]["run"]
    kept = out / "runs" / rows[0]["run"] / "metrics.json"
    mtime = kept.stat().st_mtime
    shutil.rmtree(removed)
    assert [planned.done for planned in plan_grid(grid, runs_dir=runs)] == [True, True, True, False]
    again = run_grid(grid, runs_dir=runs, data_dir=str(data), progress=False)
    assert (again.trained, again.skipped) == (1, 3)
    assert kept.stat().st_mtime == mtime and removed.is_dir() and len(again.rows) == 4

    # The advisor asked once per seed and fraction, against the best strategy measured.
    check = check_advice(grid, runs_dir=runs, data_dir=str(data))
    assert [(row["size"], row["n_labelled"]) for row in check.rows] == [("0.5", 24), ("1.0", 48)]
    best = {b["fixed"]["target_fraction"]: b["setting"]["strategy"] for b in again.best}
    for row in check.rows:
        assert row["best"] == best[row["size"]] and row["hit"] == (row["advised"] == row["best"])
        assert row["advised"] in ("freeze", "cut:1")  # 8 or 16 samples per class: small
    assert check.hit_rate == sum(row["hit"] for row in check.rows) / 2
    assert main(["advise-check", str(grid_file), "--runs-dir", str(runs), "--data-dir", str(data), "--quiet"]) == 0
    assert "Hit rate:" in (out / "advice.md").read_text() and (out / "advice.csv").is_file()

    # A dry run lists every cell as finished and trains nothing.
    assert main(["run", str(grid_file), "--dry-run", "--runs-dir", str(runs), "--data-dir", str(data)]) == 0
    listing = capsys.readouterr().out
    assert listing.count("done  tiny:") == 4 and "4 cells, 4 finished, 0 to run" in listing


@pytest.mark.slow
def test_an_interrupted_cell_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    """Ctrl-C after a cell's first epoch: the next run of the grid continues that run, not a new one."""
    data, _, grid, runs = _tiny_grid(tmp_path, {"epochs": 2, "patience": 0}, {"strategy": ["finetune"]})
    real_save, real_restore = Checkpoint.save, Checkpoint.restore
    saves, restores = [], []

    def save_then_interrupt(self, *args):
        real_save(self, *args)
        saves.append(self.path)
        if len(saves) == 2:  # the source run's only epoch, then the cell's first
            raise KeyboardInterrupt

    def counted_restore(self, *args):
        restores.append(self.path)
        return real_restore(self, *args)

    monkeypatch.setattr(Checkpoint, "save", save_then_interrupt)
    with pytest.raises(Interrupted):
        run_grid(grid, runs_dir=runs, data_dir=str(data), progress=False)
    cell = expand_grid(grid)[0]
    assert saves[-1].parent.name == f".partial-{cell.run_name}" and saves[-1].is_file()

    monkeypatch.setattr(Checkpoint, "save", real_save)
    monkeypatch.setattr(Checkpoint, "restore", counted_restore)
    again = run_grid(grid, runs_dir=runs, data_dir=str(data), progress=False)
    assert again.trained == 1 and restores == [saves[-1]]
    assert [int(row["epochs_run"]) for row in again.rows] == [2]
