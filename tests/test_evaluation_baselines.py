"""Tests of baseline runs in an evaluation: ``evaluate --runs ... St-ms-baselines``.

A baseline run (``python -m convlstm_tl.baseline``) given among the runs adds
one row per classical model, after the model runs' rows, scored from the
predictions it recorded: only on the test split, only for a domain it
scored, and only while that domain's test split is the one it was fitted
against; every other cell is n/a with its reason. The model run here holds
a real but untrained classifier (built, not trained).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CLASS_NAMES, FRAMES_1D, make_splits
from convlstm_tl.baselines import BaselineConfig, load_baseline_run, run_baselines
from convlstm_tl.cli import run_main
from convlstm_tl.cli.evaluate import FLAGS, PROG, main
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import UserError
from convlstm_tl.evaluation.baselines import CHANGED, NOT_SCORED, TEST_ONLY
from convlstm_tl.evaluation.crossdomain import METRIC_KEYS, evaluate_runs
from convlstm_tl.evaluation.plan import plan_evaluation
from convlstm_tl.evaluation.report import file_stem, format_markdown, write_evaluation

REPO_ROOT = Path(__file__).resolve().parents[1]
REORDERED = ("sit", "walk", "run")
PARTIAL = ("walk", "run", "jump")
BASELINE = "Src-Tgt-baselines"
ROWS = ["summary-logreg (Src train)", "summary-logreg (Tgt 50%)", "summary-logreg (Src train + Tgt 50%)"]


def _write(data_dir, name, class_names=CLASS_NAMES, *, seed=0, roll=0):
    """A tiny domain whose signal follows the class *name* (so reordered names keep their meaning).

    A quarter of the test samples carry the label of another class than their
    signal, so no model is perfect and the accuracies compared below differ
    from 0 and 1; ``roll`` shifts the test labels further (another file).
    """
    splits = make_splits(FRAMES_1D, seed=seed)
    new_id = {CLASS_NAMES.index(name): i for i, name in enumerate(class_names) if name in CLASS_NAMES}
    for split, arrays in splits.items():
        # Samples of a class the domain does not name get its extra class.
        extra = [i for i, name in enumerate(class_names) if name not in CLASS_NAMES]
        arrays.y = np.array([new_id.get(int(y), extra[0] if extra else 0) for y in arrays.y], dtype=np.int64)
        if split == "test":
            arrays.y[::4] = (arrays.y[::4] + 1) % len(class_names)
            arrays.y = np.roll(arrays.y, roll)
    write_domain(Path(data_dir) / f"{name}.h5", splits, domain=name, class_names=class_names, provenance="test")


def _model_run(runs_dir, name, domain):
    """A source run holding an untrained classifier of the tiny frames, and the config.json describing it."""
    from convlstm_tl.config import ModelConfig
    from convlstm_tl.models.classifier import build_classifier

    config = {"filters": [4], "head_units": 8}
    model = build_classifier(ModelConfig(filters=(4,), head_units=8), frame_shape=FRAMES_1D,
                             n_classes=len(CLASS_NAMES), mean=np.zeros(FRAMES_1D[-1]),
                             variance=np.ones(FRAMES_1D[-1]))
    path = Path(runs_dir) / name
    path.mkdir(parents=True)
    model.save(path / "model.keras")
    record = {"name": domain, "kind": "frames", "class_names": list(CLASS_NAMES), "frame_shape": list(FRAMES_1D)}
    (path / "config.json").write_text(json.dumps({"kind": "source", "model": config, "domain": record}))
    return path


def _baselines(root, target, **options):
    config = BaselineConfig(source="Src", target=target, methods="summary-logreg", data_dir=str(root / "data"),
                            runs_dir=str(root / "runs"), **options)
    return run_baselines(config).run_dir


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Domains Src, Tgt (Src's classes reordered) and Part (two shared), the baseline run
    ``runs/Src-Tgt-baselines`` (Src and Tgt scored) and the model run ``models/Src``, and their evaluation."""
    root = tmp_path_factory.mktemp("evaluation-baselines")
    _write(root / "data", "Src")
    _write(root / "data", "Tgt", REORDERED, seed=1)
    _write(root / "data", "Part", PARTIAL, seed=2)
    baseline = _baselines(root, "Tgt", target_fraction=0.5)
    model = _model_run(root / "models", "Src", "Src")
    evaluation = evaluate_runs([model, baseline], ["Src", "Tgt", "Part"], data_dir=root / "data", progress=False)
    return root, load_baseline_run(baseline), evaluation


def _entries(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


def _cli(argv, capsys):
    """``python -m convlstm_tl.evaluate ARGV`` in-process: (exit code, stdout, stderr)."""
    code = run_main(main, argv, prog=PROG, flags=FLAGS)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------ rows and cells


def test_baseline_rows_follow_the_runs_with_the_recorded_metrics(world):
    _, run, evaluation = world
    assert evaluation.runs == ["Src"] and evaluation.baselines == ROWS == [row.label for row in run.rows]
    assert list(evaluation.results) == ["Src", *ROWS]
    for row in run.rows:
        info = evaluation.runs_info[row.label]
        assert info["kind"] == "baseline" and info["baseline_run"] == BASELINE and info["method"] == row.method
        for domain in ("Src", "Tgt"):
            cell, recorded = evaluation.cell(row.label, domain), row.metrics[domain]
            assert set(METRIC_KEYS) | {"class_alignment", "run", "split", "kind"} <= set(cell)
            assert cell["kind"] == "baseline" and cell["run"] == row.label and cell["domain"] == domain
            assert cell["class_alignment"]["classes"] == recorded["classes"]
            for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1"):
                assert cell[key] == pytest.approx(recorded[key]), (row.label, domain, key)
            for key in ("per_class", "confusion_matrix", "n_test"):
                assert cell[key] == recorded[key], (row.label, domain, key)
            assert 0 < cell["accuracy"] < 1
            assert cell["train_seconds"] == row.fit_seconds
    # Trained on Tgt's reordered names, scored on Src: mapped by name.
    assert evaluation.cell("summary-logreg (Tgt 50%)", "Src")["class_alignment"]["classes"] == "reordered"
    assert evaluation.cell("Src", "Src")["kind"] == "source"


def test_a_domain_the_baseline_run_did_not_score_is_na(world):
    _, _, evaluation = world
    for label in ROWS:
        cell = evaluation.cell(label, "Part")
        assert cell["accuracy"] is None and cell["confusion_matrix"] is None
        assert cell["reason"] == f"{NOT_SCORED} (it scored Src, Tgt)"
    assert evaluation.cell("Src", "Part")["accuracy"] is not None  # the model run still is
    assert evaluation.forgetting == []


def test_markdown_has_a_baselines_block_under_the_matrix(world):
    _, _, evaluation = world
    markdown = format_markdown(evaluation)
    lines = markdown.splitlines()
    block = lines.index("### Baselines")
    model_row = next(i for i, line in enumerate(lines) if line.startswith("| Src | "))
    assert lines.index("| run | Src | Tgt | Part |") < model_row < block
    assert lines[block + 2] == "| baseline (trained on) | Src | Tgt | Part |"
    for label, line in zip(ROWS, lines[block + 4:block + 7]):
        src, tgt = evaluation.cell(label, "Src"), evaluation.cell(label, "Tgt")
        assert line == (f"| {label} | {src['accuracy']:.3f} / {src['macro_f1']:.3f} |"
                        f" {tgt['accuracy']:.3f} / {tgt['macro_f1']:.3f} | n/a |")
    assert f"- n/a: the baselines of {BASELINE} on Part: {NOT_SCORED} (it scored Src, Tgt)" in lines


def test_written_files_hold_the_baselines(world, tmp_path):
    _, _, evaluation = world
    out = write_evaluation(evaluation, tmp_path / "out")
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["baselines"] == ROWS and saved["runs"] == ["Src"]
    assert saved["results"][ROWS[0]]["Src"]["kind"] == "baseline"
    assert saved["runs_info"][ROWS[0]]["kind"] == "baseline"
    stem = f"{file_stem(ROWS[0])}-Src"
    report = (out / f"report-{stem}.txt").read_text()
    assert report.startswith(f"summary-logreg trained on Src train (48 samples), a classical baseline of run"
                             f" {BASELINE}")
    assert f"baseline {ROWS[0]} on domain Src (test split), 12 samples scored" in report
    assert all(name in report for name in CLASS_NAMES)
    assert (out / f"confusion-{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    na = (out / f"report-{file_stem(ROWS[0])}-Part.txt").read_text()
    assert na.startswith(f"baseline {ROWS[0]} on domain Part (test split): n/a, not scored: {NOT_SCORED}")
    assert not (out / f"confusion-{file_stem(ROWS[0])}-Part.png").exists()


# ------------------------------------------------------------------ cells that do not apply


def test_a_changed_domain_file_is_na(world, tmp_path):
    root, run, _ = world
    shutil.copytree(root / "data", tmp_path / "data")
    _write(tmp_path / "data", "Tgt", REORDERED, seed=1, roll=1)  # other test labels
    evaluation = evaluate_runs([run.path], ["Src", "Tgt"], data_dir=tmp_path / "data", progress=False)
    assert evaluation.runs == [] and evaluation.baselines == ROWS
    for row in run.rows:
        assert evaluation.cell(row.label, "Src")["accuracy"] == pytest.approx(row.metrics["Src"]["accuracy"])
        assert evaluation.cell(row.label, "Tgt")["reason"] == CHANGED
    assert f"- n/a: the baselines of {BASELINE} on Tgt: {CHANGED}" in format_markdown(evaluation).splitlines()


def test_baselines_score_the_test_split_only(world):
    root, run, _ = world
    plan = plan_evaluation([root / "models" / "Src", run.path], ["Src"], data_dir=root / "data", split="val")
    assert {label: reason for (label, _), reason in plan.unavailable.items()} == dict.fromkeys(ROWS, TEST_ONLY)
    with pytest.raises(UserError) as raised:
        plan_evaluation([run.path], ["Src", "Tgt"], data_dir=root / "data", split="val")
    assert str(raised.value) == ("no run or baseline can be scored on any of the domains given (all 6 cells would be"
                                 f" n/a), e.g. baseline {ROWS[0]} cannot be scored on domain Src: {TEST_ONLY}")


def test_partial_overlap_and_row_names_made_unique(world, tmp_path):
    root, run, _ = world
    shutil.copytree(root / "data", tmp_path / "data")
    part = _baselines(tmp_path, "Part")
    evaluation = evaluate_runs([run.path, part], ["Src", "Part"], data_dir=tmp_path / "data", progress=False)
    # Both runs fitted "summary-logreg (Src train)": those rows take their run's name; the others keep theirs.
    assert evaluation.baselines == [f"{BASELINE}: {ROWS[0]}", *ROWS[1:], "Src-Part-baselines: " + ROWS[0],
                                    "summary-logreg (Part train)"]
    cell = evaluation.cell("Src-Part-baselines: " + ROWS[0], "Part")
    recorded = load_baseline_run(part).rows[0].metrics["Part"]
    assert cell["class_alignment"]["classes"] == recorded["classes"] == "shared"
    assert cell["class_alignment"]["class_names"] == ["walk", "run"]
    assert cell["accuracy"] == pytest.approx(recorded["accuracy"]) and cell["n_test"] == recorded["n_scored"]
    markdown = format_markdown(evaluation)
    assert f"| Src-Part-baselines: {ROWS[0]} | " in markdown and f"{cell['macro_f1']:.3f}*" in markdown
    assert any(line.startswith(f"- Src-Part-baselines: {ROWS[0]}: `*` scored on the classes shared")
               for line in markdown.splitlines())
    # The baseline run's own notes (pooling skipped) are passed on.
    assert any(note.startswith("baseline run Src-Part-baselines: pooled training sets skipped")
               for note in evaluation.notes)


# ------------------------------------------------------------------ the command line


def test_cli_baselines_alone(world, tmp_path, capsys):
    root, run, _ = world
    out = tmp_path / "out"
    argv = ["--runs", BASELINE, "--domains", "Src", "Tgt", "--data-dir", str(root / "data"),
            "--runs-dir", str(root / "runs"), "--out", str(out), "--quiet"]
    code, stdout, err = _cli(argv, capsys)
    assert code == 0 and err == "", err
    assert stdout.startswith((out / "evaluation.md").read_text()) and "### Baselines" in stdout
    assert f"| {ROWS[0]} | " in stdout and "## Forgetting" not in stdout
    assert {"evaluation.json", "evaluation.md", f"report-{file_stem(ROWS[1])}-Tgt.txt",
            f"confusion-{file_stem(ROWS[1])}-Tgt.png"} <= set(_entries(out))
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["results"][ROWS[1]]["Tgt"]["accuracy"] == pytest.approx(run.rows[1].metrics["Tgt"]["accuracy"])


def test_cli_broken_baseline_record_is_one_line_and_writes_nothing(world, tmp_path, capsys):
    root, run, _ = world
    shutil.copytree(run.path, tmp_path / "runs" / BASELINE)
    np.save(tmp_path / "runs" / BASELINE / run.rows[0].metrics["Src"]["predictions"], np.zeros(3, dtype=np.int64))
    out = tmp_path / "out"
    argv = ["--runs", BASELINE, "--domains", "Src", "--data-dir", str(root / "data"),
            "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--quiet"]
    code, stdout, err = _cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and stdout == "" and len(lines) == 1 and "must hold ints" in lines[0], err
    assert _entries(tmp_path) == ["runs"]


@pytest.mark.slow
def test_cli_model_run_by_path_and_baseline_run_by_name(world):
    root, _, _ = world
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-m", "convlstm_tl.evaluate", "--runs", "models/Src", BASELINE,
                             "--domains", "Src", "Tgt", "--data-dir", "data", "--out", "mixed", "--quiet"],
                            cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines.index("| run | Src | Tgt |") < lines.index("### Baselines")
    assert any(line.startswith("| Src | ") for line in lines) and f"| {ROWS[2]} | " in result.stdout
    saved = json.loads((root / "mixed" / "evaluation.json").read_text())
    assert saved["runs"] == ["Src"] and saved["baselines"] == ROWS


def test_cli_baselines_alone_import_no_backend(world, tmp_path):
    root, _, _ = world
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "convlstm_tl.evaluate", "--runs",
                             str(root / "runs" / BASELINE), "--domains", "Src", "--data-dir", str(root / "data"),
                             "--out", str(tmp_path / "out"), "--quiet"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import")]
    assert not [name for name in imported if name.split(".")[0] in ("tensorflow", "keras", "jax", "torch")]
    assert (tmp_path / "out" / "evaluation.md").is_file()
