"""Tests of cross-domain evaluation: ``convlstm_tl.evaluation`` and ``python -m convlstm_tl.evaluate``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from conftest import FRAMES_1D, FRAMES_2D, SPLIT_SIZES, make_splits
from convlstm_tl.config import ModelConfig, TrainConfig, TransferConfig
from convlstm_tl.data.reader import read_split
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import UserError
from convlstm_tl.evaluation.alignment import align_predictions, class_alignment, frame_shape_problem
from convlstm_tl.evaluation.crossdomain import METRIC_KEYS, evaluate_runs
from convlstm_tl.evaluation.metrics import classification_metrics
from convlstm_tl.evaluation.plan import plan_evaluation
from convlstm_tl.evaluation.report import file_stem, format_markdown, write_evaluation

REPO_ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m convlstm_tl.evaluate"
SOURCE_CLASSES = ("walk", "run", "sit")
# Domains of tiny synthetic frames; channel 0 of label id c has mean c, so the
# same signal means another class name where the names are reordered.
DOMAINS = {
    "Src": SOURCE_CLASSES,
    "Tgt": ("sit", "walk", "run"),  # the same names, reordered
    "Part": ("walk", "run", "jump"),  # two names shared with Src
    "Other": ("swim", "fly", "dance"),  # none shared
}
TINY_MODEL = ModelConfig(filters=(4, 4), head_units=8, head_dropout=0.25)


def _write_domain(data_dir, name, class_names, frame_shape=FRAMES_1D, seed=0):
    write_domain(Path(data_dir) / f"{name}.h5", make_splits(frame_shape, seed=seed), domain=name,
                 class_names=class_names, provenance="synthetic test data")


def _entries(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


# ------------------------------------------------------------ alignment, pure


def _probabilities(n, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, n_classes))
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_metrics_on_same_classes_equal_sklearn():
    probabilities = _probabilities(40, 3)
    y_true = np.random.default_rng(1).integers(0, 3, size=40)
    y_true_sub, y_pred, names, info = align_predictions(probabilities, SOURCE_CLASSES, SOURCE_CLASSES, y_true)
    assert info["classes"] == "same" and info["n_left_out"] == 0 and names == list(SOURCE_CLASSES)
    np.testing.assert_array_equal(y_true_sub, y_true)
    np.testing.assert_array_equal(y_pred, probabilities.argmax(axis=1))

    metrics = classification_metrics(y_true_sub, y_pred, names, domain="Src")
    expected_pred = probabilities.argmax(axis=1)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, expected_pred))
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, expected_pred, average="macro",
                                                               zero_division=0)
    assert (metrics["macro_precision"], metrics["macro_recall"], metrics["macro_f1"]) == pytest.approx(
        (precision, recall, f1))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(y_true, expected_pred, average="weighted"))
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, expected_pred).tolist()


def test_reordered_names_map_predictions_by_name():
    model_classes = ["run", "sit", "walk"]
    domain_classes = ["walk", "run", "sit"]
    # One-hot outputs: the model says run, sit, walk, walk.
    probabilities = np.eye(3)[[0, 1, 2, 2]]
    y_true = np.array([1, 2, 0, 1])  # run, sit, walk, run
    y_true_sub, y_pred, names, info = align_predictions(probabilities, model_classes, domain_classes, y_true)
    assert info["classes"] == "reordered"
    assert names == domain_classes
    np.testing.assert_array_equal(y_true_sub, y_true)
    np.testing.assert_array_equal(y_pred, [1, 2, 0, 0])  # ids of the domain: run, sit, walk, walk
    assert accuracy_score(y_true_sub, y_pred) == pytest.approx(0.75)
    # Comparing raw ids would have scored 0 of 4.
    assert accuracy_score(y_true, probabilities.argmax(axis=1)) == 0.0


def test_partial_overlap_scores_shared_classes_only():
    model_classes = ["walk", "run", "sit"]
    domain_classes = ["jump", "walk", "run"]
    probabilities = np.array([
        [0.1, 0.3, 0.6],  # sit is most probable; among walk/run: run
        [0.5, 0.4, 0.1],  # walk
        [0.2, 0.7, 0.1],  # run
        [0.9, 0.05, 0.05],  # true jump: left out
    ])
    y_true = np.array([2, 1, 1, 0])  # run, walk, walk, jump
    y_true_sub, y_pred, names, info = align_predictions(probabilities, model_classes, domain_classes, y_true)
    assert info["classes"] == "shared"
    assert names == ["walk", "run"]  # the domain's order
    assert info["domain_only"] == ["jump"] and info["model_only"] == ["sit"]
    assert info["n_left_out"] == 1
    np.testing.assert_array_equal(y_true_sub, [1, 0, 0])  # run, walk, walk as ids into names
    np.testing.assert_array_equal(y_pred, [1, 0, 1])  # run, walk, run
    assert "shared" in info["note"] and "jump" in info["note"]


def test_model_with_more_classes_predicts_among_the_domains():
    probabilities = np.array([[0.6, 0.3, 0.1], [0.5, 0.1, 0.4]])
    y_true_sub, y_pred, names, info = align_predictions(probabilities, ["sit", "walk", "run"], ["walk", "run"],
                                                        np.array([0, 1]))
    assert info["classes"] == "shared" and info["n_left_out"] == 0 and names == ["walk", "run"]
    np.testing.assert_array_equal(y_pred, [0, 1])


def test_no_overlap_scores_nothing():
    y_true_sub, y_pred, names, info = align_predictions(_probabilities(5, 3), SOURCE_CLASSES, DOMAINS["Other"],
                                                        np.arange(5) % 3)
    assert info["classes"] == "none" and names == []
    assert len(y_true_sub) == len(y_pred) == 0
    assert info["n_left_out"] == 5
    assert class_alignment(["a"], ["b"])["classes"] == "none"


def test_align_refuses_probabilities_of_another_width():
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        align_predictions(np.zeros((2, 4)), SOURCE_CLASSES, SOURCE_CLASSES, np.array([0, 1]))


@pytest.mark.parametrize("model_shape, frames, fragment", [
    ((4, 1, 8, 2), (4, 1, 8, 2), None),
    ((None, 1, None, 2), (9, 1, 30, 2), None),
    ((4, 1, 8, 2), (4, 1, 8, 3), "channels"),
    ((4, 1, 8, 2), (5, 1, 8, 2), "T are fixed"),
    ((4, 6, 6, 1), (4, 1, 8, 1), "H/W are fixed"),
])
def test_frame_shape_problem(model_shape, frames, fragment):
    problem = frame_shape_problem(model_shape, frames)
    if fragment is None:
        assert problem is None
    else:
        assert fragment in problem


# --------------------------------------------------- checks before the backend


def _fake_run(runs_dir, name, class_names=SOURCE_CLASSES, frame_shape=FRAMES_1D, **extra):
    """A run folder with a config.json and a placeholder model: enough for the checks that load no model."""
    path = Path(runs_dir) / name
    path.mkdir(parents=True)
    config = {"kind": "source", "model": {"filters": [4]}, "domain": {"name": "Src", "class_names": list(class_names),
                                           "frame_shape": list(frame_shape)}, **extra}
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.keras").write_bytes(b"")
    return path


@pytest.fixture
def fake_setup(tmp_path):
    data_dir = tmp_path / "data"
    _write_domain(data_dir, "Src", SOURCE_CLASSES)
    _write_domain(data_dir, "Flat", SOURCE_CLASSES, frame_shape=FRAMES_2D)
    _fake_run(tmp_path / "runs", "Src")
    return tmp_path


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(runs=["Src"], domains=["Src"], split="dev"), ["split must be one of", "'dev'"]),
    (dict(runs=["Nope"], domains=["Src"]), ["runs/Nope not found"]),
    (dict(runs=["Src"], domains=["Nope"]), ["data/Nope.h5 not found"]),
    # Every cell n/a: nothing to report.
    (dict(runs=["Src"], domains=["Flat"]), ["run Src cannot be scored on domain Flat", "channels",
                                            "(4, 1, 8, 2)", "(4, 6, 6, 1)"]),
])
def test_plan_rejects_user_mistakes(fake_setup, kwargs, fragments):
    runs = [fake_setup / "runs" / name for name in kwargs.pop("runs")]
    with pytest.raises(UserError) as raised:
        plan_evaluation(runs, kwargs.pop("domains"), data_dir=fake_setup / "data", **kwargs)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_plan_makes_a_cell_the_run_cannot_read_n_a(fake_setup):
    plan = plan_evaluation([fake_setup / "runs" / "Src"], ["Src", "Flat"], data_dir=fake_setup / "data")
    assert plan.pairs == [("Src", "Src"), ("Src", "Flat")]
    (reason,) = plan.unavailable.values()
    assert list(plan.unavailable) == [("Src", "Flat")]
    assert "channels" in reason and "(4, 1, 8, 2)" in reason and "(4, 6, 6, 1)" in reason


def test_plan_adds_the_recorded_source_run(fake_setup):
    source = _fake_run(fake_setup / "elsewhere", "Src")
    transfer = _fake_run(fake_setup / "runs", "Src-Src-freeze", kind="transfer", source_run=str(source),
                         strategy={"spec": "freeze", "restore": True})
    plan = plan_evaluation([fake_setup / "runs" / "Src", transfer], ["Src"], data_dir=fake_setup / "data")
    assert [run.label for run in plan.runs] == ["Src", "Src-Src-freeze"]
    # The listed run called Src is not the recorded source: the source is added under another label.
    assert [run.path for run in plan.extra_runs] == [source.resolve()]
    label = plan.extra_runs[0].label
    assert label != "Src" and (label, "Src") in plan.pairs
    assert plan.forgetting == [{"run": "Src-Src-freeze", "strategy": "freeze", "adaptation": None,
                                "restores_body": True, "source_run": label, "source_run_path": str(source),
                                "source_domain": "Src"}]


def _run_cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "convlstm_tl.evaluate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("args, fragments", [
    (["--runs", "Nope", "--domains", "Src"], [f"{PROG}: error:", "runs/Nope not found"]),
    (["--runs", "Src", "--domains", "Nope"], ["data/Nope.h5 not found", "data_prep"]),
    (["--runs", "Src", "--domains", "Flat"], ["run Src cannot be scored on domain Flat", "channels"]),
    (["--runs", "Src", "--domains", "Src", "--split", "dev"], ["--split", "invalid choice: 'dev'"]),
    (["--runs", "Src"], ["--domains"]),
    (["--runs", "Src", "--domains", "Src", "--out", "data"], ["holds files that are not an earlier evaluation's"]),
])
def test_cli_user_errors_are_one_line_exit_2_and_write_nothing(fake_setup, args, fragments):
    before = {name: _entries(fake_setup / name) for name in ("runs", "data")}
    result = _run_cli(*args, "--data-dir", "data", cwd=fake_setup)
    _assert_user_error(result, *fragments)
    assert result.stdout == ""
    # No evaluation folder, no temporary folder.
    assert {name: _entries(fake_setup / name) for name in ("runs", "data")} == before
    assert _entries(fake_setup) == ["data", "runs"]


# ------------------------------------------------------ with trained models


# Test labels of Src: 6 walk, 4 run, 2 sit, so that models that always answer
# one class score differently: walk 1/2, sit 1/6.
SRC_TEST_LABELS = np.array([0] * 6 + [1] * 4 + [2] * 2)


def _constant_answer(run_dir, class_id):
    """Make a run's model always answer ``class_id``."""
    import keras

    path = Path(run_dir) / "model.keras"
    model = keras.saving.load_model(path, compile=False)
    kernel, bias = model.get_layer("head_softmax").get_weights()
    bias = np.zeros_like(bias)
    bias[class_id] = 50.0
    model.get_layer("head_softmax").set_weights([np.zeros_like(kernel), bias])
    model.save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Domains and runs: ``runs/Src`` (listed), ``other/Src`` (not listed), and
    ``runs/Src-Tgt-freeze`` transferred from ``other/Src``.

    After the transfer, ``runs/Src`` is made to always answer walk and
    ``other/Src`` sit, so their accuracies on Src (1/2 and 1/6) tell which
    of them forgetting was measured against.
    """
    from convlstm_tl.training.source import train_source
    from convlstm_tl.training.transfer import transfer

    root = tmp_path_factory.mktemp("evaluation")
    data_dir = root / "data"
    for name, class_names in DOMAINS.items():
        splits = make_splits(FRAMES_1D)
        if name == "Src":
            test = splits["test"]
            test.x[..., 0] += (SRC_TEST_LABELS - test.y)[:, None, None, None]
            test.y = SRC_TEST_LABELS
        write_domain(data_dir / f"{name}.h5", splits, domain=name, class_names=class_names,
                     provenance="synthetic test data")
    common = dict(data_dir=str(data_dir), epochs=2, batch_size=16, lr=1e-2, seed=0)
    listed = train_source(TrainConfig(source="Src", runs_dir=str(root / "runs"), model=TINY_MODEL, **common),
                          verbose=0)
    recorded = train_source(TrainConfig(source="Src", runs_dir=str(root / "other"), model=TINY_MODEL, **common),
                            verbose=0)
    transferred = transfer(TransferConfig(target="Tgt", source_run=str(recorded.run_dir),
                                          runs_dir=str(root / "runs"), strategy="freeze", **common), verbose=0)
    _constant_answer(listed.run_dir, SOURCE_CLASSES.index("walk"))
    _constant_answer(recorded.run_dir, SOURCE_CLASSES.index("sit"))
    evaluation = evaluate_runs([listed.run_dir, transferred.run_dir], list(DOMAINS), data_dir=data_dir,
                               progress=False)
    return root, recorded, transferred, evaluation


def _by_name_accuracy(run_dir, domain_path, model_classes, domain_classes):
    """Accuracy computed here, independently: sklearn on the model's raw outputs mapped by name."""
    import keras

    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    x, y = read_split(domain_path, "test")
    predicted = [model_classes[i] for i in model.predict(x, verbose=0).argmax(axis=1)]
    return accuracy_score([domain_classes[i] for i in y], predicted)


@pytest.mark.slow
def test_cells_hold_the_metrics_keys(world):
    _, _, _, evaluation = world
    assert evaluation.runs == ["Src", "Src-Tgt-freeze"]
    assert evaluation.domains == list(DOMAINS)
    for run in evaluation.runs:
        for domain in DOMAINS:
            cell = evaluation.cell(run, domain)
            assert set(METRIC_KEYS) | {"class_alignment", "run", "split"} <= set(cell)
            assert cell["domain"] == domain
    scored = evaluation.cell("Src-Tgt-freeze", "Tgt")
    assert scored["n_test"] == SPLIT_SIZES["test"] and scored["eval_seconds"] >= 0
    assert scored["train_seconds"] is not None


@pytest.mark.slow
def test_in_domain_cell_equals_the_runs_own_test_metrics(world):
    _, _, transferred, evaluation = world
    cell = evaluation.cell("Src-Tgt-freeze", "Tgt")
    own = json.loads((transferred.run_dir / "metrics.json").read_text())
    assert cell["class_alignment"]["classes"] == "same"
    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1"):
        assert cell[key] == pytest.approx(own[key]), key
    assert cell["confusion_matrix"] == own["confusion_matrix"]
    assert cell["per_class"] == own["per_class"]


@pytest.mark.slow
def test_reordered_classes_are_scored_by_name(world):
    root, _, transferred, evaluation = world
    cell = evaluation.cell("Src-Tgt-freeze", "Src")
    assert cell["class_alignment"]["classes"] == "reordered"
    assert cell["n_test"] == SPLIT_SIZES["test"]
    assert cell["accuracy"] == pytest.approx(
        _by_name_accuracy(transferred.run_dir, root / "data" / "Src.h5", DOMAINS["Tgt"], DOMAINS["Src"]))


@pytest.mark.slow
def test_partial_overlap_cell(world):
    root, _, _, evaluation = world
    cell = evaluation.cell("Src", "Part")
    alignment = cell["class_alignment"]
    assert alignment["classes"] == "shared" and alignment["class_names"] == ["walk", "run"]
    assert alignment["n_left_out"] == SPLIT_SIZES["test"] // 3
    assert cell["n_test"] == SPLIT_SIZES["test"] - alignment["n_left_out"]
    assert set(cell["per_class"]) == {"walk", "run"}
    # The run always says walk: right on every walk sample, i.e. half the shared ones.
    assert cell["accuracy"] == pytest.approx(0.5)
    assert "0.500 / 0.333*" in format_markdown(evaluation)


@pytest.mark.slow
def test_no_overlap_cell_is_na(world):
    _, _, _, evaluation = world
    for run in evaluation.runs:
        cell = evaluation.cell(run, "Other")
        assert cell["accuracy"] is None and cell["macro_f1"] is None and cell["confusion_matrix"] is None
        assert cell["class_alignment"]["classes"] == "none" and "none of the domain's classes" in cell["reason"]
    row = [line for line in format_markdown(evaluation).splitlines() if line.startswith("| Src-Tgt-freeze |")][0]
    assert row.rstrip().endswith("| n/a |")


@pytest.mark.slow
def test_forgetting_uses_the_recorded_source_run(world):
    _, recorded, _, evaluation = world
    (row,) = evaluation.forgetting
    assert row["run"] == "Src-Tgt-freeze"
    assert Path(row["source_run_path"]).resolve() == recorded.run_dir.resolve()
    assert row["source_run"] == "other/Src" and evaluation.extra_runs == ["other/Src"]
    assert row["source_domain"] == "Src" and row["classes"] == "all"
    # "before" is the recorded source's accuracy (always sit: 2 of 12) ...
    assert row["before"] == pytest.approx(2 / 12)
    assert evaluation.cell("other/Src", "Src")["accuracy"] == pytest.approx(2 / 12)
    # ... not that of the listed run that is also called Src (always walk: 6 of 12).
    assert evaluation.cell("Src", "Src")["accuracy"] == pytest.approx(6 / 12)
    assert row["after"] == evaluation.cell("Src-Tgt-freeze", "Src")["accuracy"]
    assert row["lost"] == pytest.approx(row["before"] - row["after"])
    assert row["lost_points"] == pytest.approx(100 * row["lost"], abs=0.01)
    assert any("other/Src" in note and "was not among the runs asked for" in note for note in evaluation.notes)
    table = format_markdown(evaluation)
    assert row["strategy"] == "freeze" and row["restores_body"] is True
    assert f"| Src-Tgt-freeze | freeze | other/Src | Src | {row['before']:.3f} | {row['after']:.3f} |" in table
    # The added source run gets no row in the matrix.
    assert not any(line.startswith("| other/Src |") for line in table.splitlines())


@pytest.mark.slow
def test_written_files(world, tmp_path):
    _, _, _, evaluation = world
    out = write_evaluation(evaluation, tmp_path / "out")
    files = set(_entries(out))
    assert {"evaluation.json", "evaluation.md"} <= files
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["results"]["Src"]["Part"]["accuracy"] == evaluation.cell("Src", "Part")["accuracy"]
    assert saved["forgetting"] == evaluation.forgetting
    assert (out / "evaluation.md").read_text() == format_markdown(evaluation)
    for run, cells in evaluation.results.items():
        for domain, cell in cells.items():
            stem = f"{file_stem(run)}-{file_stem(domain)}"
            report = out / f"report-{stem}.txt"
            assert report.stat().st_size > 0, report
            if cell["accuracy"] is not None:
                assert (out / f"confusion-{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            else:
                assert "n/a" in report.read_text()
    assert "SHARED CLASSES ONLY" in (out / "report-Src-Part.txt").read_text()
    assert "jump" not in (out / "report-Src-Part.txt").read_text().split("\n\n", 1)[1]
    for name in DOMAINS["Src"]:
        assert name in (out / "report-Src-Src.txt").read_text()
    # Written again: the earlier evaluation is replaced, nothing left beside it.
    write_evaluation(evaluation, out)
    assert set(_entries(out)) == files
    assert _entries(tmp_path) == ["out"]


@pytest.mark.slow
def test_cli_writes_and_prints_the_evaluation(world):
    root, _, _, evaluation = world
    result = _run_cli("--runs", "Src", "Src-Tgt-freeze", "--domains", "Src", "Tgt", "--data-dir", "data",
                      "--quiet", cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (out,) = [name for name in _entries(root / "runs") if name.startswith("evaluation-")]
    out = root / "runs" / out
    assert result.stdout.startswith((out / "evaluation.md").read_text())
    assert f"evaluation written to runs/{out.name}" in result.stdout
    assert "| Src-Tgt-freeze |" in result.stdout and "## Forgetting" in result.stdout
    expected = evaluation.cell("Src-Tgt-freeze", "Tgt")["accuracy"]
    assert json.loads((out / "evaluation.json").read_text())["results"]["Src-Tgt-freeze"]["Tgt"]["accuracy"] \
        == pytest.approx(expected)


def test_input_problem_refuses_mixed_kinds_and_other_vocabularies():
    from types import SimpleNamespace

    from convlstm_tl.data.stats import vocab_fingerprint
    from convlstm_tl.evaluation.alignment import input_problem

    frames = SimpleNamespace(domain="F", kind="frames", vocab=())
    tokens = SimpleNamespace(domain="T", kind="tokens", vocab=("<pad>", "<oov>", "good"))
    assert input_problem({}, frames) is None  # runs from before kinds were recorded hold frames
    assert "trained on frames" in input_problem({"kind": "frames"}, tokens)
    assert "trained on tokens" in input_problem({"kind": "tokens"}, frames)
    same = {"kind": "tokens", "vocab_fingerprint": vocab_fingerprint(tokens.vocab)}
    assert input_problem(same, tokens) is None
    other = {"kind": "tokens", "name": "Src", "vocab_fingerprint": vocab_fingerprint(("<pad>", "<oov>", "bad"))}
    assert "another vocabulary" in input_problem(other, tokens) and "--vocab-from Src" in input_problem(other, tokens)
    # Runs recorded before fingerprints: the vocabulary's size is compared.
    assert input_problem({"kind": "tokens", "vocab_size": 3}, tokens) is None
    assert "another vocabulary" in input_problem({"kind": "tokens", "vocab_size": 4}, tokens)
