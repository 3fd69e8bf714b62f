"""Tests of benchmark suites: the file format, preparing pairs, dry runs, running and resuming a tiny suite."""

import csv
import json

import numpy as np
import pytest

from conftest import write_tiny
from convlstm_tl.cli import run_main
from convlstm_tl.config import TransferConfig
from convlstm_tl.errors import ConfigError
from experiments.__main__ import PROG, main
from experiments.grid import expand_grid, parse_grid
from experiments.suite import (
    DEFAULT_FRACTIONS, DEFAULT_SEEDS, DEFAULT_STRATEGIES, METHOD_AXIS, is_suite, load_suite, parse_suite,
)
from experiments.suite_plan import format_plan, plan_suite
from experiments.suite_report import (
    aggregate, collect_suite, compare, comparison_rows, suite_markdown, write_suite_outputs,
)
from experiments.suite_run import prepare_pair

TINY_SOURCE = {"domain": "Tiny", "config": {"epochs": 1, "model": {"filters": [4], "head_units": 8}}}


def _suite(**overrides):
    """A one-pair suite over the tiny domains Tiny -> Target, with tiny settings."""
    pair = {"source": TINY_SOURCE, "target": "Target"}
    pair.update(overrides.pop("pair", {}))
    data = {"name": "tiny", "seeds": [0], "target_fractions": [1.0], "strategies": ["freeze", "scratch"],
            "baselines": ["summary-logreg"], "base": {"epochs": 1}, "pairs": {"p": pair}}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def _write(tmp_path, data, name="tiny.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _error_line(argv, capsys):
    """Run ``python -m experiments ARGV``; assert exit 2 with exactly one stderr line, and return it."""
    assert run_main(main, argv, prog=PROG) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{PROG}: error: "), err
    return err[0]


# ------------------------------------------------------------------ the file


def test_a_pair_becomes_a_transfer_grid_with_the_suite_axes():
    suite = parse_suite({"pairs": {"w": {"source": {"domain": "St", "config": {"augment": {"rotate": 90}}},
                                         "target": "ms", "base": {"lr": 0.01}},
                                   "d": {"source": "mnist", "target": "optdigits", "seeds": [0, 1],
                                         "prepare": [["digits"]]}}}, name="s")
    assert suite.name == "s" and list(suite.pairs) == ["w", "d"]
    w = suite.pairs["w"]
    assert (w.source, w.target, w.seeds, w.strategies) == ("St", "ms", DEFAULT_SEEDS, DEFAULT_STRATEGIES)
    assert list(w.fractions.values()) == list(DEFAULT_FRACTIONS)
    assert w.grid.name == "w" and w.grid.source == {"config": {"source": "St", "augment": {"rotate": 90}}}
    assert w.grid.base == {"target": "ms", "lr": 0.01}
    assert suite.pairs["d"].seeds == (0, 1) and suite.pairs["d"].prepare == (("digits",),)
    assert is_suite({"pairs": {}}) and is_suite({"kind": "suite"}) and not is_suite({"axes": {}})


def test_a_labelled_entry_is_a_method_of_options_set_together():
    suite = parse_suite(_suite(strategies=[
        "freeze", {"finetune+adabn": {"strategy": "finetune", "adapt": "adabn", "lr": 0.01}},
        {"freeze+adapter": {"strategy": "freeze", "adapter": "channel"}},
        {"joint": {"strategy": "joint", "target_weight": 0.5}}], target_fractions=[0.1, 1.0], seeds=[0, 1]))
    pair = suite.pairs["p"]
    assert pair.strategies == ("freeze", "finetune+adabn", "freeze+adapter", "joint")
    assert pair.methods["freeze"] == {"strategy": "freeze"}
    assert pair.methods["finetune+adabn"] == {"strategy": "finetune", "adapt": "adabn", "lr": 0.01}
    cells = expand_grid(pair.grid)
    assert len(cells) == 4 * 2 * 2
    by_label = {}
    for cell in cells:
        by_label.setdefault(cell.labels[METHOD_AXIS], []).append(cell.config)
    # Each method's options on top of the pair's base (epochs 1); the rest the defaults.
    defaults = TransferConfig()
    assert [(c.strategy, c.adapt, c.adapter, c.lr, c.epochs) for c in by_label["finetune+adabn"]] == \
        [("finetune", "adabn", "none", 0.01, 1)] * 4
    assert {(c.strategy, c.adapter, c.adapt, c.lr) for c in by_label["freeze+adapter"]} == \
        {("freeze", "channel", "none", defaults.lr)}
    assert {(c.strategy, c.target_weight) for c in by_label["joint"]} == {("joint", 0.5)}
    assert {(c.strategy, c.adapt, c.adapter) for c in by_label["freeze"]} == {("freeze", "none", "none")}
    assert sorted({c.target_fraction for c in by_label["joint"]}) == [0.1, 1.0]
    assert all(c.config.target == "Target" and c.config.source_run.startswith("source-Tiny-s") for c in cells)
    # Each setting is its own run, and the source runs are shared: one per seed.
    assert len({c.name for c in by_label["freeze"] + by_label["freeze+adapter"]}) == 8
    assert len({cell.source_config.name for cell in cells}) == 2


def test_strategy_strings_keep_their_run_names(tmp_path):
    strategies = ["freeze", "finetune", "gradual", "cut:1", "scratch"]
    suite = parse_suite(_suite(strategies=strategies, target_fractions=[0.1, 1.0], seeds=[0, 2],
                               base={"epochs": 12}))
    pair = suite.pairs["p"]
    assert pair.methods == {s: {"strategy": s} for s in strategies}
    # The grid a suite built when strategies were a plain "strategy" axis: its cells are the runs on disk.
    before = parse_grid({"name": "p", "kind": "transfer", "source": {"config": {"source": "Tiny",
                                                                                **TINY_SOURCE["config"]}},
                         "base": {"target": "Target", "epochs": 12}, "seeds": [0, 2], "best_per": "target_fraction",
                         "axes": {"strategy": strategies, "target_fraction": [0.1, 1.0]}}, name="p")
    now = expand_grid(pair.grid)
    assert [(c.run_name, c.source_config.name) for c in now] == \
        [(c.run_name, c.source_config.name) for c in expand_grid(before)]
    assert [c.labels[METHOD_AXIS] for c in now] == [c.labels["strategy"] for c in expand_grid(before)]
    # A labelled entry that is only a strategy computes the same thing: it shares the string's runs.
    shared = parse_suite(_suite(strategies=["freeze", {"frozen": {"strategy": "freeze"}}])).pairs["p"]
    names = {}
    for cell in expand_grid(shared.grid):
        names.setdefault(cell.labels[METHOD_AXIS], set()).add(cell.run_name)
    assert names["frozen"] == names["freeze"]
    plan, = plan_suite(parse_suite(_suite(strategies=["freeze", {"frozen": {"strategy": "freeze"}}])),
                       runs_dir=tmp_path)
    assert plan.counts()["transfer runs"] == (0, 1)


def _fake_runs(plan, accuracy):
    """Write ``metrics.json`` and ``config.json`` of each transfer cell of ``plan`` as if it had run."""
    for planned in plan.cells:
        planned.run_dir.mkdir(parents=True, exist_ok=True)
        score = accuracy[planned.cell.labels[METHOD_AXIS]]
        (planned.run_dir / "metrics.json").write_text(json.dumps({"accuracy": score, "macro_f1": score}))
        (planned.run_dir / "config.json").write_text(json.dumps({"target_samples": {"n": 12}}))


def test_the_report_names_methods_by_label_and_compares_them_all(tmp_path):
    default = TransferConfig().strategy
    strategies = list(dict.fromkeys([default, "scratch"])) + [
        {"finetune+adabn": {"strategy": "finetune", "adapt": "adabn"}},
        {"freeze+adapter": {"strategy": "freeze", "adapter": "channel", "adapt_weight": 0.5}}]
    suite = parse_suite(_suite(strategies=strategies, baselines=[]))
    plan, = plan_suite(suite, runs_dir=tmp_path / "runs")
    _fake_runs(plan, {default: 0.70, "scratch": 0.50, "finetune+adabn": 0.90, "freeze+adapter": 0.60})
    plan, = plan_suite(suite, runs_dir=tmp_path / "runs")
    rows = collect_suite(suite, runs_dir=tmp_path / "runs")
    assert {row["model"]: row["accuracy"] for row in rows} == {
        default: 0.70, "scratch": 0.50, "finetune+adabn": 0.90, "freeze+adapter": 0.60}
    files = write_suite_outputs(suite, [plan], rows, tmp_path / "out")
    with open(files["results"], newline="") as f:
        assert [row["model"] for row in csv.DictReader(f)] == [default, "scratch", "finetune+adabn", "freeze+adapter"]
    # Every method competes for the best ConvLSTM; default vs scratch compares the plain strategies.
    comparison, = comparison_rows([plan], aggregate(rows))
    assert comparison["best_convlstm"]["model"] == "finetune+adabn"
    assert comparison["default_vs_scratch"] == "win (+20.0)"
    text = suite_markdown(suite, [plan], rows)
    assert "| finetune+adabn | 90.0 | 90.0 |" in text and "| freeze+adapter | 60.0 | 60.0 |" in text
    assert "Transfer methods: `finetune+adabn`: strategy finetune, adapt adabn; `freeze+adapter`: strategy" \
        " freeze, adapter channel, adapt_weight 0.5." in text
    assert "| p | 100% | finetune+adabn 90.0 | – |" in text
    assert f"{default}, scratch, finetune+adabn, freeze+adapter;" in format_plan(suite, [plan])
    # A method labelled like the default strategy but with other options is not "the default".
    relabelled = parse_suite(_suite(strategies=[{default: {"strategy": default, "lr": 0.5}}, "scratch"],
                                    baselines=[]))
    plan, = plan_suite(relabelled, runs_dir=tmp_path / "other")
    _fake_runs(plan, {default: 0.70, "scratch": 0.50})
    plan, = plan_suite(relabelled, runs_dir=tmp_path / "other")
    comparison, = comparison_rows([plan], aggregate(collect_suite(relabelled, runs_dir=tmp_path / "other")))
    assert comparison["best_convlstm"]["model"] == default and comparison["default_vs_scratch"] == "–"


def test_runs_and_data_are_placed_per_pair(tmp_path):
    suite = parse_suite(_suite(pairs={"a": {"source": "Tiny", "target": "Target"},
                                      "b": {"source": "Tiny", "target": "Target", "target_fractions": [0.5, 1.0]}}))
    plans = plan_suite(suite, runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    assert [plan.data_dir for plan in plans] == [tmp_path / "data" / "a", tmp_path / "data" / "b"]
    assert plans[0].out == tmp_path / "runs" / "tiny" / "a"
    assert plans[1].counts() == {"source runs": (0, 1), "transfer runs": (0, 4), "baseline runs": (0, 2)}
    assert all(job.config.data_dir == str(tmp_path / "data" / "b") for job in plans[1].baselines)
    assert [plan.pair.name for plan in plan_suite(suite, pairs=["b"])] == ["b"]
    with pytest.raises(ConfigError, match="has no pair 'c'; its pairs are a, b"):
        plan_suite(suite, pairs=["c"])


@pytest.mark.parametrize("overrides, message", [
    ({"pair": {"sorce": "Tiny"}}, r"tiny.json.pairs.p has unknown keys \['sorce'\]"),
    ({"pairs": {"p": {"target": "Target"}}}, "tiny.json.pairs.p has no source"),
    ({"pairs": {"p": {"source": "Tiny"}}}, "has no target"),
    ({"pairs": {}}, "pairs is empty"),
    ({"seed": [0]}, "unknown keys"),
    ({"kind": "transfer"}, "its kind must be \"suite\""),
    ({"strategies": ["freez"]}, "freez"),
    ({"target_fractions": [0.0]}, "target_fraction"),
    ({"baselines": ["rocket"]}, "unknown method 'rocket'"),
    ({"base": {"strategy": "freeze"}}, "base sets strategy, which the suite sets"),
    ({"pair": {"source": {"domain": "Tiny", "config": {"source": "X"}}}}, "config sets source"),
    ({"pair": {"source": {"domain": "Tiny", "config": {"epochz": 1}}}}, "epochz"),
    ({"pair": {"target": "Tiny"}}, "another domain than the source"),
    ({"pair": {"prepare": [["watch", "--mirror-lft"]]}}, "python -m data_prep watch --mirror-lft: unrecognized"),
    ({"pair": {"prepare": [["wach"]]}}, "unknown converter 'wach'"),
    ({"pair": {"prepare": [["watch", "--out", "x"]]}}, "sets --out"),
    ({"pair": {"prepare": ["watch"]}}, "must be a non-empty list of strings"),
    # Transfer methods: each fails naming the pair and the method's label, before anything runs.
    ({"strategies": [{"x": {"strategy": "scratch", "adapt": "adabn"}}]},
     "tiny.json.pairs.p.strategies.x: adapt 'adabn' adapts a restored body, but scratch restores none"),
    ({"strategies": ["freeze", {"x": {"strategy": "freeze", "target_weight": 2}}]},
     "tiny.json.pairs.p.strategies.x: target_weight weighs"),
    ({"strategies": [{"x": {"strategy": "joint"}}], "target_fractions": [0.0], "baselines": []},
     "tiny.json.pairs.p.strategies.x at target fraction 0.0: target_fraction 0 reads no target label"),
    ({"strategies": [{"x": {"strategy": "freeze", "adaptt": "adabn"}}]},
     "tiny.json.pairs.p.strategies.x: unknown option 'adaptt'"),
    ({"strategies": [{"x": {"strategy": "freeze", "adapt": 1}}]}, "tiny.json.pairs.p.strategies.x.adapt must be"),
    ({"strategies": [{"x": {"adapt": "adabn"}}]}, "tiny.json.pairs.p.strategies.x has no strategy"),
    ({"strategies": [{"x": {"strategy": "freeze", "seed": 1}}]}, "strategies.x sets seed, which the suite sets"),
    ({"strategies": [{"x": {"strategy": "freeze", "target_fraction": 0.5}}]},
     "strategies.x sets target_fraction, which the suite sets"),
    ({"strategies": [{"x": {"strategy": "freeze", "target": "Tiny"}}]}, "strategies.x sets target, which the suite"),
    ({"strategies": [{"x": {"strategy": "freeze", "name": "n"}}]}, "strategies.x sets name, which the suite's runner"),
    ({"strategies": [{"x": {"strategy": "freeze", "source.epochs": 2}}]}, "strategies.x sets source.epochs"),
    ({"strategies": ["freeze", {"freeze": {"strategy": "freeze", "lr": 0.01}}]}, "the label 'freeze' is given twice"),
    ({"strategies": ["scratch", "scratch"]}, "the label 'scratch' is given twice"),
    ({"strategies": [{"a|b": {"strategy": "freeze"}}]}, "strategies[0]: bad label"),
    ({"strategies": [{"a": {"strategy": "freeze"}, "b": {"strategy": "scratch"}}]},
     "strategies[0] must be a strategy (\"finetune\") or a one-key object"),
    ({"strategies": [{"a": "freeze"}]}, "strategies.a must be a JSON object"),
])
def test_a_bad_suite_file_is_one_line_and_exit_2_before_anything_runs(overrides, message, tmp_path, capsys,
                                                                      monkeypatch):
    import experiments.suite_run

    monkeypatch.setattr(experiments.suite_run, "run_grid", lambda *a, **k: pytest.fail("trained"))
    path = _write(tmp_path, _suite(**overrides))
    line = _error_line(["run", str(path), "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path)], capsys)
    assert message.replace("\\", "") in line or pytest.fail(line)
    assert not (tmp_path / "runs").exists()


def test_options_of_the_other_file_kind_are_refused(tmp_path, capsys):
    suite = _write(tmp_path, _suite())
    grid = _write(tmp_path, {"source": {"run": "St"}, "base": {"target": "ms"}, "axes": {"strategy": ["freeze"]}},
                  "grid.json")
    assert "choose pairs with --pair" in _error_line(["run", str(suite), "--study", "x", "--dry-run"], capsys)
    assert "advise-check takes a grid file" in _error_line(["advise-check", str(suite)], capsys)
    assert "--pair chooses pairs of a suite" in _error_line(["run", str(grid), "--pair", "p", "--dry-run"], capsys)
    assert "has no pair 'q'" in _error_line(["run", str(suite), "--pair", "q", "--dry-run"], capsys)


def test_the_shipped_suite_parses():
    suite = load_suite("experiments/suite.json")
    assert list(suite.pairs) == ["watch-mirrored", "watch-raw", "digits", "basicmotions-sensors", "vowels-speakers"]
    assert suite.pairs["digits"].seeds == (0, 1)
    assert suite.pairs["watch-mirrored"].grid.source["config"]["augment"] == {"rotate": 90}
    # The suite measures the defaults: no epochs or patience set anywhere.
    for pair in suite.pairs.values():
        assert "epochs" not in pair.grid.base and "patience" not in pair.grid.base
        assert not {"epochs", "patience"} & set(pair.grid.source["config"])


# ------------------------------------------------------------------ preparing


def _npz(path, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(60) % 3
    x = rng.normal(size=(60, 4, 1, 8, 2)).astype(np.float32)
    x[..., 0] += y[:, None, None, None]
    np.savez(path, x=x, y=y)
    return str(path)


def test_prepare_runs_missing_steps_into_the_pair_folder_once(tmp_path, capsys):
    a, b = _npz(tmp_path / "a.npz", 0), _npz(tmp_path / "b.npz", 1)
    suite_file = _write(tmp_path, _suite(pair={"source": "A", "target": "B", "prepare": [
        ["npz", "--input", a, "--domain", "A"], ["npz", "--input", b, "--domain=B"]]}))
    argv = ["run", str(suite_file), "--dry-run", "--runs-dir", str(tmp_path / "runs"), "--data-dir",
            str(tmp_path / "data")]
    assert main(argv) == 0
    listing = capsys.readouterr().out
    assert f"prepare: python -m data_prep npz --input {a} --domain A --out {tmp_path / 'data' / 'p'} (makes A.h5)" \
        in listing
    assert "source runs: 0 of 1 done; transfer runs: 0 of 2 done; baseline runs: 0 of 1 done" in listing
    assert "4 runs, 0 finished, 4 to run" in listing and not (tmp_path / "data").exists()

    plan, = plan_suite(load_suite(suite_file), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    (tmp_path / "data" / "p").mkdir(parents=True)
    (tmp_path / "data" / "p" / "A.h5").write_bytes(b"")  # as if made: A's step is skipped
    plan, = plan_suite(load_suite(suite_file), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    assert [step[-1] for step, _ in plan.steps] == ["--domain=B"]
    (tmp_path / "data" / "p" / "A.h5").unlink()
    plan, = plan_suite(load_suite(suite_file), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    assert len(prepare_pair(plan, quiet=True)) == 2
    assert sorted(p.name for p in (tmp_path / "data" / "p").iterdir()) == ["A.h5", "B.h5"]
    plan, = plan_suite(load_suite(suite_file), runs_dir=tmp_path / "runs", data_dir=tmp_path / "data")
    assert plan.steps == [] and prepare_pair(plan) == []


def test_a_step_that_fails_or_writes_the_wrong_file_is_one_line(tmp_path, capsys):
    a = _npz(tmp_path / "a.npz", 0)
    data = ["--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    missing = _write(tmp_path, _suite(pair={"source": "A", "target": "B", "prepare": [
        ["npz", "--input", str(tmp_path / "none.npz"), "--domain", "A"]]}))
    line = _error_line(["run", str(missing), *data, "--quiet"], capsys)
    assert line.startswith(f"{PROG}: error: pair p: `python -m data_prep npz --input") and "failed" in line
    wrong = _write(tmp_path, _suite(pair={"source": "A", "target": "B", "prepare": [
        ["npz", "--input", a, "--domain", "A"]]}))
    line = _error_line(["run", str(wrong), *data, "--quiet"], capsys)
    assert "B.h5 not found" in line and "nothing was trained" in line and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ summary


def _row(model, kind, accuracy, seed, fraction="0.1", domain="T"):
    return {"pair": "p", "model": model, "kind": kind, "trained_on": "target", "domain": domain,
            "target_fraction": fraction, "seed": seed, "accuracy": accuracy, "macro_f1": accuracy, "n_train": 10,
            "seconds": 1.0, "status": "ok"}


def test_comparisons_are_win_loss_or_tie_within_a_point():
    rows = [_row("freeze", "convlstm", 0.80, 0), _row("freeze", "convlstm", 0.82, 1),
            _row("scratch", "convlstm", 0.80, 0), _row("scratch", "convlstm", 0.806, 1),
            _row("minirocket (pooled)", "baseline", 0.90, 0), _row("minirocket (pooled)", "baseline", 0.92, 1),
            {**_row("finetune", "convlstm", 0.1, 0), "status": "failed"}]
    summary = aggregate(rows)
    freeze, scratch = summary[("p", "freeze", "T", "0.1")], summary[("p", "scratch", "T", "0.1")]
    assert freeze["n"] == 2 and freeze["accuracy_mean"] == pytest.approx(0.81)
    assert freeze["accuracy_std"] == pytest.approx(np.std([0.80, 0.82], ddof=1))
    assert ("p", "finetune", "T", "0.1") not in summary
    assert compare(freeze, scratch) == "tie (+0.7)"
    assert compare(freeze, summary[("p", "minirocket (pooled)", "T", "0.1")]) == "loss (-10.0)"
    assert compare(summary[("p", "minirocket (pooled)", "T", "0.1")], scratch) == "win (+10.7)"
    assert compare(None, scratch) == "–"


# ------------------------------------------------------------------ run and resume


@pytest.mark.slow
def test_a_tiny_suite_runs_end_to_end_and_a_second_call_trains_nothing(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    write_tiny(data / "p", name="Tiny")
    write_tiny(data / "p", name="Target", seed=1)
    # freeze, the default strategy (for the default-vs-scratch column) and scratch.
    default = TransferConfig().strategy
    strategies = list(dict.fromkeys(["freeze", default, "scratch"]))
    suite_file = _write(tmp_path, _suite(strategies=strategies))
    runs = tmp_path / "runs"
    argv = ["run", str(suite_file), "--runs-dir", str(runs), "--data-dir", str(data), "--quiet"]

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{1 + len(strategies) + 1} runs trained, 0 finished before" in out  # source, transfers, baselines
    suite_dir = runs / "tiny"
    with open(suite_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_model = {(row["model"], row["domain"]): row for row in rows}
    assert set(by_model) == {
        ("ConvLSTM source run", "Tiny"), ("ConvLSTM zero-shot", "Target"), *((s, "Target") for s in strategies),
        ("summary-logreg (source)", "Tiny"), ("summary-logreg (source)", "Target"),
        ("summary-logreg (target)", "Target"), ("summary-logreg (pooled)", "Target")}
    assert all(row["status"] == "ok" and 0 <= float(row["accuracy"]) <= 1 and row["seed"] == "0" for row in rows)
    assert by_model[("freeze", "Target")]["target_fraction"] == "1.0" and by_model[("freeze", "Target")]["n_train"] \
        == "48"
    assert by_model[("ConvLSTM source run", "Tiny")]["target_fraction"] == ""
    # The figures are those of the runs themselves.
    freeze = by_model[("freeze", "Target")]
    metrics = json.loads((suite_dir / "p" / "runs" / freeze["run"] / "metrics.json").read_text())
    assert float(freeze["accuracy"]) == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert (suite_dir / "p" / "summary.md").is_file()  # the pair's own grid summary
    summary = (suite_dir / "summary.md").read_text()
    assert "## p: Tiny → Target" in summary and "| ConvLSTM source run | 1 |" in summary
    assert "best source-only baseline: summary-logreg (source)" in summary
    assert f"| ConvLSTM best vs best baseline | default transfer ({default}) vs scratch |" in summary
    final = [line for line in summary.splitlines() if line.startswith("| p | 100% |")]
    assert len(final) == 1 and all(word in final[0] for word in ("summary-logreg", " ("))
    assert any(verdict in final[0].split("|")[5] for verdict in ("win", "loss", "tie"))
    assert any(verdict in final[0].split("|")[6] for verdict in ("win", "loss", "tie"))
    before = {path: path.stat().st_mtime_ns for path in (suite_dir / "p").rglob("metrics.json")}

    # Again: everything is finished, nothing trains, the same results are written.
    import convlstm_tl.baselines.runner
    import convlstm_tl.training.source
    import convlstm_tl.training.transfer

    for module, name in ((convlstm_tl.training.source, "train_source"), (convlstm_tl.training.transfer, "transfer"),
                         (convlstm_tl.baselines.runner, "carry_out")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("trained again"))
    assert main(argv) == 0
    assert f"0 runs trained, {1 + len(strategies) + 1} finished before" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in (suite_dir / "p").rglob("metrics.json")} == before
    with open(suite_dir / "results.csv", newline="") as f:
        assert list(csv.DictReader(f)) == rows

    assert main(["run", str(suite_file), "--dry-run", "--runs-dir", str(runs), "--data-dir", str(data)]) == 0
    listing = capsys.readouterr().out
    n_runs = 1 + len(strategies) + 1
    assert "data: ready, checked" in listing and f"{n_runs} runs, {n_runs} finished, 0 to run" in listing


def test_ctrl_c_keeps_finished_runs_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import convlstm_tl.baselines.runner
    import experiments.suite_run
    from experiments.runner import GridResult

    data = tmp_path / "data"
    write_tiny(data / "p", name="Tiny")
    write_tiny(data / "p", name="Target", seed=1)
    suite_file = _write(tmp_path, _suite())
    monkeypatch.setattr(experiments.suite_run, "run_grid", lambda grid, **k: GridResult(
        out=tmp_path, rows=[], summary=[], best=[], trained=0, skipped=0, pending=0, files={}))

    def interrupt(plan):
        raise KeyboardInterrupt

    monkeypatch.setattr(convlstm_tl.baselines.runner, "carry_out", interrupt)
    code = run_main(main, ["run", str(suite_file), "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(data),
                           "--quiet"], prog=PROG)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and len(err) == 1
    assert "suite tiny interrupted while running the baselines of pair p" in err[0]
    assert f"`python -m experiments run {suite_file}` (same options) to resume" in err[0]
