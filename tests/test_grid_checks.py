"""Grids check every cell before the first trains: bad grids end with exit 2, one line, nothing trained."""

import json
import time

import pytest

from conftest import write_tiny
from convlstm_tl.cli import run_main
from convlstm_tl.errors import ConfigError
from experiments.__main__ import PROG, main
from experiments.grid import MAX_CELLS, MAX_SEED, count_cells, expand_grid, parse_grid
from experiments.runner import write_results

TINY_SOURCE = {"source": "Tiny", "epochs": 1, "model": {"filters": [4, 4], "head_units": 8}}


def _grid_data(**overrides):
    data = {"name": "bad", "source": {"config": TINY_SOURCE}, "base": {"target": "Target", "epochs": 1},
            "seeds": [0], "axes": {"strategy": ["freeze", "scratch"]}}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def _huge_axes(n_axes=9, n_values=10):
    """``n_values ** n_axes`` settings: bundle axes of distinct labels."""
    return {f"b{i}": {f"v{j}": {"lr": 0.001} for j in range(n_values)} for i in range(n_axes)}


def _write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def _corrupt_target(data_dir):
    (data_dir / "Target.h5").write_bytes(b"not an HDF5 file at all")


def _three_channel_target(data_dir):
    write_tiny(data_dir, name="Target", frame_shape=(4, 1, 8, 3), seed=1)


# (grid file contents, extra argv, a change to the data folder, what the line says)
BAD_GRIDS = {
    "bad JSON": ("{not json", [], None, "not valid JSON"),
    "not an object": ("[1, 2]", [], None, "JSON object"),
    "unknown grid key": (_grid_data(colour="red"), [], None, "unknown keys"),
    "unknown axis": (_grid_data(axes={"colour": ["red", "blue"]}), [], None, "not an option"),
    "typo'd strategy": (_grid_data(axes={"strategy": ["freeze", "frezee"]}), [], None, "frezee"),
    "cut:9 for 2 blocks": (_grid_data(axes={"strategy": ["freeze", "cut:9"]}), [], None, "2 blocks"),
    "10^9 cells": (_grid_data(axes=_huge_axes()), [], None, "1,000,000,000 cells"),
    "10^9 cells, dry run": (_grid_data(axes=_huge_axes()), ["--dry-run"], None, "1,000,000,000 cells"),
    "negative seed": (_grid_data(seeds=[0, -1]), [], None, "seeds"),
    "seed too large": (_grid_data(seeds=[0, 99999999999]), [], None, "seeds"),
    "seeds not a list": (_grid_data(seeds=3), [], None, "seeds"),
    "missing target domain": (_grid_data(base={"target": "Nowhere", "epochs": 1}), [], None, "Nowhere.h5 not found"),
    "missing source domain": (_grid_data(source={"config": {**TINY_SOURCE, "source": "Nowhere"}}), [], None,
                              "Nowhere.h5 not found"),
    "missing domain in a later study": (
        _grid_data(axes=None, studies={"ok": {"axes": {"strategy": ["freeze"]}},
                                       "later": {"base": {"target": "Nowhere"}, "axes": {"strategy": ["freeze"]}}}),
        [], None, "study later"),
    "corrupt target domain": (_grid_data(), [], _corrupt_target, "rebuild it"),
    "target with other channels": (_grid_data(), [], _three_channel_target, "channels"),
    "non-object study": (_grid_data(axes=None, studies={"a": [1, 2]}), [], None, "must be a JSON object"),
    "missing source run": (_grid_data(source={"run": "NoSuchRun"}), [], None, "not found"),
    "gradual without enough epochs": (_grid_data(axes={"strategy": ["freeze", "gradual"]}), [], None,
                                      "head_epochs"),
    "bad value in a later cell": (_grid_data(axes={"strategy": ["freeze"], "lr": [0.001, -1.0]}), [], None,
                                  "lr must lie in"),
    "unknown study": (_grid_data(), ["--study", "nope"], None, "no study 'nope'"),
    "runner's key in base": (_grid_data(base={"target": "Target", "seed": 3}), [], None, "set by the grid runner"),
}


@pytest.mark.parametrize("case", list(BAD_GRIDS))
def test_a_bad_grid_is_one_line_exit_2_and_trains_nothing(case, tmp_path, capsys):
    contents, extra, change, expected = BAD_GRIDS[case]
    data = tmp_path / "data"
    write_tiny(data)
    write_tiny(data, name="Target", seed=1)
    if change is not None:
        change(data)
    grid_file = tmp_path / "bad.json"
    _write(grid_file, contents)
    runs = tmp_path / "runs"
    started = time.monotonic()
    code = run_main(main, ["run", str(grid_file), "--runs-dir", str(runs), "--data-dir", str(data), "--quiet",
                           *extra], prog=PROG)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: "), captured.err
    assert "Traceback" not in captured.err and expected in lines[0], lines[0]
    # Found before anything trained: nothing at all was written under the runs folder.
    assert not runs.exists() or not any(runs.rglob("*"))
    assert time.monotonic() - started < 30


def test_cells_are_counted_arithmetically_before_any_is_built():
    grid = parse_grid(_grid_data(axes=_huge_axes(), seeds=[0, 1]))
    started = time.monotonic()
    assert count_cells(grid) == 2 * 10**9
    with pytest.raises(ConfigError, match=f"at most {MAX_CELLS:,}"):
        expand_grid(grid)
    assert time.monotonic() - started < 5
    two = parse_grid(_grid_data(axes=None, studies={"a": {"axes": {"strategy": ["freeze", "scratch"],
                                                                   "lr": [0.1, 0.01, 0.001]}},
                                                    "b": {"axes": {}}}, seeds=[0, 1]))
    assert count_cells(two) == 2 * 3 * 2 + 1 * 2 == len(expand_grid(two))
    assert count_cells(two, ["b", "b"]) == 2 == len(expand_grid(two, ["b", "b"]))


def test_seeds_up_to_the_numpy_limit_are_accepted():
    assert parse_grid(_grid_data(seeds=[0, MAX_SEED])).seeds == (0, MAX_SEED)
    with pytest.raises(ConfigError, match="seeds"):
        parse_grid(_grid_data(seeds=[MAX_SEED + 1]))
    with pytest.raises(ConfigError, match="seeds"):
        parse_grid(_grid_data(seeds=[True]))


class _Explodes:
    def __str__(self):
        raise KeyboardInterrupt


def test_results_csv_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "results.csv"
    write_results([{"study": "s", "seed": 0, "run": "r", "accuracy": 0.5, "status": "ok"}], path, [])
    before = path.read_text()
    assert before.splitlines()[0].endswith(",feature_cache,status,reason")
    with pytest.raises(KeyboardInterrupt):
        write_results([{"study": "s", "seed": 0, "run": "r"}, {"study": _Explodes()}], path, [])
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
