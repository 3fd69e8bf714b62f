"""Tests of convlstm_tl.baselines and python -m convlstm_tl.baseline, on tiny domains."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from convlstm_tl.baselines import BaselineConfig, is_baseline_run, load_baseline_run
from convlstm_tl.baselines import methods as methods_module
from convlstm_tl.baselines import run_baselines, split_fingerprint
from convlstm_tl.baselines.features import summary_features, to_series, token_documents
from convlstm_tl.cli import run_main
from convlstm_tl.cli.baseline import FLAGS, PROG, cli, main
from convlstm_tl.data.format import SplitArrays
from convlstm_tl.data.subsets import labelled_subset
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import ConfigError, RunError
from tests.conftest import CLASS_NAMES, make_splits, write_tiny

FAST = "summary-logreg"


def _config(domain, tmp_path, **overrides):
    settings = {"methods": FAST, "data_dir": str(domain.data_dir), "runs_dir": str(tmp_path / "runs"), **overrides}
    return BaselineConfig(source=domain.name, **settings)


def _run_cli(argv, capsys):
    """``python -m convlstm_tl.baseline ARGV`` in-process: (exit code, stdout, stderr)."""
    code = run_main(main, argv, prog=PROG, flags=FLAGS)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _write_reordered(data_dir, name, order, seed=1):
    """A domain of the tiny kind whose class names come in ``order``; a sample's signal still follows its name."""
    splits = make_splits(seed=seed)
    new_id = {CLASS_NAMES.index(class_name): i for i, class_name in enumerate(order)}
    for arrays in splits.values():
        arrays.y = np.array([new_id[int(label)] for label in arrays.y], dtype=np.int64)
    write_domain(Path(data_dir) / f"{name}.h5", splits, domain=name, class_names=order, provenance="test")
    return Path(data_dir) / f"{name}.h5"


# ------------------------------------------------------------------ features


def test_series_of_1d_frames_is_the_window_they_were_cut_from():
    from data_prep.windows import to_frames

    windows = np.random.default_rng(0).normal(size=(3, 250, 6)).astype(np.float32)
    frames = to_frames(windows, 10)  # (3, 10, 1, 25, 6), as data_prep watch writes them
    np.testing.assert_array_equal(to_series(frames), windows.transpose(0, 2, 1))


def test_series_of_2d_frames_has_a_channel_per_pixel():
    x = np.random.default_rng(0).normal(size=(2, 4, 3, 5, 2)).astype(np.float32)
    series = to_series(x)
    assert series.shape == (2, 3 * 5 * 2, 4)
    np.testing.assert_array_equal(series[1, :, 2], x[1, 2].reshape(-1))


def test_summary_features_are_per_channel_statistics():
    series = np.array([[[1.0, 3.0, 2.0], [0.0, 0.0, 6.0]]])
    features = summary_features(series)
    np.testing.assert_allclose(features[0], [2, 2, np.std([1, 3, 2]), np.std([0, 0, 6]), 1, 0, 3, 6, 1.5, 3])


def test_token_documents_are_words_without_padding():
    ids = np.array([[[[[2], [3]]], [[[0], [0]]]]], dtype=np.int32)  # (1, T=2, 1, W=2, 1)
    assert token_documents(ids, ["<pad>", "<oov>", "good", "food"]) == [("good", "food")]


def test_split_fingerprint_follows_labels_and_shape(tiny_domain, tmp_path):
    first = split_fingerprint(tiny_domain.path)
    assert first["n"] == len(tiny_domain.splits["test"].y) and first["x_shape"][1:] == list(tiny_domain.frame_shape)
    assert split_fingerprint(tiny_domain.path) == first
    other = write_tiny(tmp_path / "other", sizes={"train": 48, "val": 12, "test": 15})
    assert split_fingerprint(other.path)["sha256"] != first["sha256"]


# ------------------------------------------------------------------ running


def test_summary_logreg_trains_and_scores(tiny_domain, tmp_path):
    result = run_baselines(_config(tiny_domain, tmp_path))
    assert result.run_dir == tmp_path / "runs" / "Tiny-baselines"
    [row] = result.rows
    assert (row["method"], row["trained_on"], row["n_train"]) == (FAST, "source", 48)
    cell = row["scores"]["Tiny"]
    assert cell["accuracy"] > 0.9 and cell["n_test"] == 12 and cell["macro_f1"] > 0.9
    predictions = np.load(result.run_dir / cell["predictions"])
    assert predictions.dtype == np.int64 and predictions.shape == (12,)
    assert np.load(result.run_dir / cell["scores"]).shape == (12, 3)
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["kind"] == "baseline" and record["methods"] == [FAST]
    assert record["config"]["data_dir"] == str(tiny_domain.data_dir)
    assert record["domains"]["Tiny"]["test"] == split_fingerprint(tiny_domain.path)
    assert "Tiny test" in (result.run_dir / "report.txt").read_text()
    assert not list((tmp_path / "runs").glob(".partial-*"))


def test_2d_frames_and_token_domains_train(tiny_domain_2d, tmp_path):
    result = run_baselines(_config(tiny_domain_2d, tmp_path))
    assert result.rows[0]["scores"]["Tiny2d"]["accuracy"] > 0.9
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 40), ("val", 10), ("test", 10)):
        y = np.arange(n) % 2
        ids = rng.integers(2, 6, size=(n, 2, 1, 4, 1))
        ids[:, 0, 0, 0, 0] = 6 + y  # the class's word
        ids[:, 1, 0, 2:, 0] = 0  # padding
        splits[split] = SplitArrays(x=ids.astype(np.int32), y=y.astype(np.int64))
    vocab = ["<pad>", "<oov>", "a", "b", "c", "d", "good", "bad"]
    write_domain(tmp_path / "text" / "Words.h5", splits, domain="Words", class_names=("pos", "neg"),
                 provenance="test", kind="tokens", vocab=vocab)
    result = run_baselines(BaselineConfig(source="Words", data_dir=str(tmp_path / "text"),
                                          runs_dir=str(tmp_path / "runs")))
    [row] = result.rows  # minirocket, only meant by default, is left out of token domains
    assert row["features"] == "TF-IDF bag of words" and row["scores"]["Words"]["accuracy"] == 1.0
    assert any("minirocket skipped" in note and "token" in note for note in result.notes)


def test_target_subset_is_the_transfers_labelled_subset(tiny_domain, tmp_path):
    target = write_tiny(tiny_domain.data_dir, name="Other", seed=5)
    for subset, options in (({"fraction": 0.5}, {"target_fraction": 0.5}),
                            ({"per_class": 4}, {"target_per_class": 4}),
                            ({}, {})):
        result = run_baselines(_config(tiny_domain, tmp_path, target="Other", seed=3, overwrite=True, **options))
        expected, n_total = labelled_subset(target.path, seed=3, **subset)
        record = json.loads((result.run_dir / "config.json").read_text())
        assert record["target_samples"] == {"n": len(expected), "of": n_total, "indices": expected.tolist()}
        rows = {row["trained_on"]: row for row in result.rows}
        assert rows["target"]["n_train"] == len(expected)
        assert rows["pooled"]["n_train"] == 48 + len(expected)
        assert set(rows["source"]["scores"]) == {"Tiny", "Other"}
    assert len(expected) == 48  # no fraction: the whole training split, as a transfer takes it


def test_pooled_maps_labels_by_class_name(tiny_domain, tmp_path):
    _write_reordered(tiny_domain.data_dir, "Reordered", ("sit", "walk", "run"))
    result = run_baselines(_config(tiny_domain, tmp_path, target="Reordered", target_fraction=0.5, with_val=True))
    rows = {row["trained_on"]: row for row in result.rows}
    assert list(rows) == ["source", "source+val", "target", "pooled", "pooled+val"]
    for row in rows.values():
        # Matched by id, the reordered domain's labels would contradict the source's.
        good = 0.6 if row["trained_on"] == "target" else 0.9  # 24 samples alone overfit a little
        assert row["scores"]["Tiny"]["accuracy"] > good and row["scores"]["Reordered"]["accuracy"] > good, row
        assert row["scores"]["Reordered"]["classes"] == ("same" if row["trained_on"] == "target" else "reordered")
    assert rows["pooled"]["class_names"] == list(CLASS_NAMES)
    assert rows["target"]["class_names"] == ["sit", "walk", "run"]


def test_pooled_is_skipped_when_the_classes_differ(tiny_domain, tmp_path):
    splits = make_splits(seed=2, n_classes=2)
    write_domain(tiny_domain.data_dir / "Two.h5", splits, domain="Two", class_names=("walk", "jump"),
                 provenance="test")
    result = run_baselines(_config(tiny_domain, tmp_path, target="Two"))
    assert [row["trained_on"] for row in result.rows] == ["source", "target"]
    assert any(note.startswith("pooled training sets skipped") for note in result.notes)
    # Shared class "walk" only: scored on it, the note says so.
    cell = result.rows[0]["scores"]["Two"]
    assert cell["classes"] == "shared" and cell["n_scored"] < cell["n_test"]


def test_domains_of_other_inputs_are_not_pooled_or_cross_scored(tiny_domain, tmp_path):
    write_tiny(tiny_domain.data_dir, name="Wide", frame_shape=(4, 1, 8, 3), seed=3)
    write_tiny(tiny_domain.data_dir, name="Short", frame_shape=(2, 1, 8, 2), seed=3)
    result = run_baselines(_config(tiny_domain, tmp_path, target="Wide"))
    assert [row["trained_on"] for row in result.rows] == ["source", "target"]
    assert result.notes == ["summary-logreg on Tiny train + Wide train skipped: the two domains' inputs differ"
                            " (series of 2 vs 3 channels)"]
    assert result.rows[0]["scores"]["Wide"] == {
        "accuracy": None, "macro_f1": None,
        "reason": "cannot score Wide: the model was trained on other inputs (series of 2 vs 3 channels)"}
    assert "-" in result.table().splitlines()[2].split()
    # Summary statistics do not depend on the series' length: those domains pool.
    result = run_baselines(_config(tiny_domain, tmp_path, target="Short", name="short"))
    assert [row["trained_on"] for row in result.rows] == ["source", "target", "pooled"]
    assert result.rows[2]["scores"]["Short"]["accuracy"] > 0.9


def test_an_interrupted_run_leaves_nothing(tiny_domain, tmp_path, monkeypatch):
    def interrupt(self, inputs, y):
        raise KeyboardInterrupt

    monkeypatch.setattr(methods_module.SummaryLogReg, "fit", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_baselines(_config(tiny_domain, tmp_path))
    assert list((tmp_path / "runs").iterdir()) == []


def test_same_seed_same_predictions(tiny_domain, tmp_path):
    first = run_baselines(_config(tiny_domain, tmp_path, name="a"))
    second = run_baselines(_config(tiny_domain, tmp_path, name="b"))
    file = first.rows[0]["scores"]["Tiny"]["predictions"]
    np.testing.assert_array_equal(np.load(first.run_dir / file), np.load(second.run_dir / file))
    np.testing.assert_array_equal(np.load(first.run_dir / file.replace("predictions/", "scores/")),
                                  np.load(second.run_dir / file.replace("predictions/", "scores/")))


# ------------------------------------------------------------------ the record


def test_run_reloads_and_its_predictions_reproduce_the_accuracy(tiny_domain, tmp_path):
    target = write_tiny(tiny_domain.data_dir, name="Other", seed=5)
    result = run_baselines(_config(tiny_domain, tmp_path, target="Other", target_fraction=0.5))
    assert is_baseline_run(result.run_dir) and not is_baseline_run(tmp_path)
    assert is_baseline_run(result.run_dir.name, tmp_path / "runs") and not is_baseline_run(result.run_dir.name)
    run = load_baseline_run(result.run_dir.name, tmp_path / "runs")
    assert run.path == result.run_dir and run.kind == "baseline" and (run.source, run.target) == ("Tiny", "Other")
    assert [row.label for row in run.rows] == [row["label"] for row in result.rows]
    assert run.rows[2].label == "summary-logreg (Tiny train + Other 50%)"
    for domain in (tiny_domain, target):
        fingerprint = split_fingerprint(domain.path)
        assert run.fingerprint(domain.name) == fingerprint["sha256"]
        assert run.domains[domain.name].class_names == CLASS_NAMES
        y_true = domain.splits["test"].y
        for row in run.rows:
            predictions = row.predictions(domain.name, fingerprint)
            names = [row.class_names[i] for i in predictions]
            accuracy = np.mean([name == CLASS_NAMES[label] for name, label in zip(names, y_true)])
            assert accuracy == pytest.approx(row.metrics[domain.name]["accuracy"])
            assert row.scores(domain.name, fingerprint["sha256"]).argmax(axis=1).tolist() == predictions.tolist()
            assert row.predictions(domain.name, "0" * 64) is None  # another split: not these predictions
    assert run.rows[0].predictions("Elsewhere", "x") is None
    # By path too, from anywhere.
    assert load_baseline_run(result.run_dir, tmp_path / "nowhere").path == result.run_dir


def test_loader_refuses_what_is_not_a_baseline_run(tiny_domain, tmp_path):
    with pytest.raises(RunError, match="not found"):
        load_baseline_run("missing", tmp_path)
    model_run = tmp_path / "St"
    model_run.mkdir()
    (model_run / "config.json").write_text(json.dumps({"kind": "source"}))
    (model_run / "metrics.json").write_text("{}")
    with pytest.raises(RunError, match="not a baseline run"):
        load_baseline_run(model_run)
    result = run_baselines(_config(tiny_domain, tmp_path))
    cell = result.rows[0]["scores"]["Tiny"]
    np.save(result.run_dir / cell["predictions"], np.zeros(3, dtype=np.int64))
    row = load_baseline_run(result.run_dir).rows[0]
    with pytest.raises(RunError, match="must hold ints"):
        row.predictions("Tiny", split_fingerprint(tiny_domain.path))
    (result.run_dir / "metrics.json").write_text(json.dumps({"rows": [{"label": "x"}]}))
    with pytest.raises(RunError, match="does not follow the baseline record"):
        load_baseline_run(result.run_dir)


def test_model_commands_refuse_a_baseline_run_in_one_line(tiny_domain, tmp_path, capsys):
    from convlstm_tl.cli.train import FLAGS as TRAIN_FLAGS
    from convlstm_tl.cli.train import PROG as TRAIN_PROG
    from convlstm_tl.cli.train import main as train_main

    run_baselines(_config(tiny_domain, tmp_path))
    argv = ["--transfer", "Tiny", "--from", "Tiny-baselines", "--data-dir", str(tiny_domain.data_dir),
            "--runs-dir", str(tmp_path / "runs"), "--name", "t"]
    assert run_main(train_main, argv, prog=TRAIN_PROG, flags=TRAIN_FLAGS) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Tiny-baselines" in lines[0], lines


# ------------------------------------------------------------------ the command line


def test_cli_prints_the_table_and_the_run(tiny_domain, tmp_path, capsys):
    argv = ["--source", "Tiny", "--methods", FAST, "--data-dir", str(tiny_domain.data_dir),
            "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    code, out, err = _run_cli(argv, capsys)
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[0].split() == ["Tiny", "test", "(n=12)"]
    assert lines[2].startswith("summary-logreg (Tiny train)")
    assert lines[-1] == f"run {tmp_path / 'runs' / 'Tiny-baselines'}"


def test_cli_reads_a_config_file_and_flags_override_it(tiny_domain, tmp_path, capsys):
    settings = tmp_path / "baseline.json"
    settings.write_text(json.dumps({"source": "Tiny", "methods": FAST, "seed": 4, "name": "from-file"}))
    argv = ["--config", str(settings), "--seed", "5", "--data-dir", str(tiny_domain.data_dir),
            "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    assert _run_cli(argv, capsys)[0] == 0
    record = json.loads((tmp_path / "runs" / "from-file" / "config.json").read_text())
    assert (record["config"]["seed"], record["config"]["methods"]) == (5, FAST)
    settings.write_text(json.dumps({"source": "Tiny", "epochs": 3}))
    code, _, err = _run_cli(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown keys ['epochs']" in err


def test_existing_run_is_refused_without_overwrite(tiny_domain, tmp_path, capsys):
    argv = ["--source", "Tiny", "--methods", FAST, "--data-dir", str(tiny_domain.data_dir),
            "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    assert _run_cli(argv, capsys)[0] == 0
    run = tmp_path / "runs" / "Tiny-baselines"
    before = (run / "config.json").stat().st_mtime_ns
    code, out, err = _run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and out == ""
    assert lines[0].startswith(f"{PROG}: error: run {run} already exists") and "--overwrite" in lines[0]
    assert (run / "config.json").stat().st_mtime_ns == before
    assert _run_cli([*argv, "--overwrite"], capsys)[0] == 0


@pytest.mark.parametrize("argv, words", [
    ([], "no source domain given"),
    (["--source", "Missing"], "Missing.h5 not found"),
    (["--source", "Tiny", "--methods", "forest"], "unknown method 'forest'"),
    (["--source", "Tiny", "--methods", "summary-logreg,summary-logreg"], "named twice"),
    (["--source", "Tiny", "--target-fraction", "0.5"], "give a target domain too"),
    (["--source", "Tiny", "--target", "Tiny"], "another domain than the source"),
    (["--source", "Tiny", "--target", "Other", "--target-fraction", "1.5"], "target_fraction must lie in (0.0, 1.0]"),
    (["--source", "Tiny", "--target", "Other", "--target-fraction", "0.5", "--target-per-class", "3"], "not both"),
    (["--source", "Tiny", "--target", "Other", "--target-per-class", "0"], "target_per_class must lie in"),
    (["--source", "Tiny", "--seed", "-1"], "seed must lie in"),
    (["--source", "Tiny", "--name", "a/b"], "plain folder name"),
    (["--source", "Tiny", "--seed", "x"], "invalid int value"),
    (["--source", "Tiny2d", "--methods", "minirocket"], "at least 9 steps"),
    (["--source", "Tiny", "--target", "Words"], "holds frames and Words holds tokens"),
])
def test_bad_arguments_exit_2_with_one_line(argv, words, tiny_domain, capsys, monkeypatch):
    write_tiny(tiny_domain.data_dir, name="Other", seed=5)
    write_tiny(tiny_domain.data_dir, name="Tiny2d", frame_shape=(4, 6, 6, 1))
    splits = {split: SplitArrays(x=np.ones((n, 2, 1, 2, 1), dtype=np.int32), y=np.arange(n) % 3)
              for split, n in (("train", 6), ("val", 3), ("test", 3))}
    write_domain(tiny_domain.data_dir / "Words.h5", splits, domain="Words", class_names=CLASS_NAMES,
                 provenance="test", kind="tokens", vocab=["<pad>", "<oov>"])
    monkeypatch.setattr(methods_module.MiniRocket, "unavailable", staticmethod(lambda: None))
    argv = [*argv, "--data-dir", str(tiny_domain.data_dir), "--runs-dir", str(tiny_domain.data_dir.parent / "runs")]
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{PROG}: error: ") and words in lines[0], lines[0]
    assert not (tiny_domain.data_dir.parent / "runs").exists() or not any((tiny_domain.data_dir.parent / "runs")
                                                                          .iterdir())


def test_minirocket_without_aeon(tiny_domain, tmp_path, capsys, monkeypatch):
    missing = "minirocket needs the aeon package, which is not installed; install it with " \
              "pip install 'convlstm_tl[baselines]'"
    monkeypatch.setattr(methods_module.MiniRocket, "unavailable", staticmethod(lambda: missing))
    # Only meant by default: left out with a note.
    result = run_baselines(BaselineConfig(source="Tiny", data_dir=str(tiny_domain.data_dir),
                                          runs_dir=str(tmp_path / "runs")))
    assert [row["method"] for row in result.rows] == [FAST]
    assert result.notes == [f"minirocket skipped: {missing}"]
    # Asked for: refused.
    with pytest.raises(ConfigError, match=r"pip install 'convlstm_tl\[baselines\]'"):
        run_baselines(BaselineConfig(source="Tiny", methods="minirocket", data_dir=str(tiny_domain.data_dir),
                                     runs_dir=str(tmp_path / "runs"), name="mr"))


def test_short_series_leave_minirocket_out_by_default(tiny_domain_2d, tmp_path):
    result = run_baselines(BaselineConfig(source="Tiny2d", data_dir=str(tiny_domain_2d.data_dir),
                                          runs_dir=str(tmp_path / "runs")))
    assert [row["method"] for row in result.rows] == [FAST]
    if methods_module.MiniRocket.unavailable() is None:
        assert result.notes == ["minirocket skipped: minirocket needs series of at least 9 steps (its kernels are 9"
                                " long); these samples are series of 4"]


def test_the_command_does_not_import_keras(tiny_domain, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "convlstm_tl.baseline", "--source", "Tiny", "--methods", FAST,
         "--data-dir", str(tiny_domain.data_dir), "--runs-dir", str(tmp_path / "runs"), "--quiet"],
        capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    imported = [line.split("|")[-1].strip() for line in completed.stderr.splitlines() if line.startswith("import")]
    assert not [name for name in imported if name.split(".")[0] in ("tensorflow", "keras", "jax", "torch")]


@pytest.mark.slow
def test_minirocket_trains_scores_and_repeats(tiny_domain, tmp_path):
    pytest.importorskip("aeon", reason="minirocket needs aeon: pip install 'convlstm_tl[baselines]'")
    target = write_tiny(tiny_domain.data_dir, name="Other", seed=5)
    config = _config(tiny_domain, tmp_path, methods="minirocket", target="Other", target_per_class=8)
    first = run_baselines(config)
    rows = {row["trained_on"]: row for row in first.rows}
    assert list(rows) == ["source", "target", "pooled"]
    assert rows["source"]["scores"]["Tiny"]["accuracy"] > 0.8
    assert rows["pooled"]["scores"]["Other"]["accuracy"] > 0.8
    metrics = json.loads((first.run_dir / "metrics.json").read_text())
    assert metrics["warmup_seconds"]["minirocket"] > 0
    second = run_baselines(replace(config, name="again"))
    run = load_baseline_run(second.run_dir)
    fingerprint = split_fingerprint(target.path)
    for row, again in zip(first.rows, run.rows):
        file = first.run_dir / row["scores"]["Other"]["predictions"]
        np.testing.assert_array_equal(np.load(file), again.predictions("Other", fingerprint))
