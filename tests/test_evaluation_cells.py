"""Tests of evaluation cells that cannot be scored, of the notes, and of who has a forgetting figure.

A (run, domain) pair the run cannot read (another vocabulary, frames that do
not fit, no shared class) is an n/a cell with its reason, once in the
notes, while every other cell is scored; only an evaluation whose every
cell would be n/a is a user error. Forgetting is measured only for runs
that restored a source body. The runs here hold real but untrained models
(built, not trained), so the tests predict but never fit.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FRAMES_1D, make_splits
from convlstm_tl.data.format import SplitArrays
from convlstm_tl.data.stats import vocab_fingerprint
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import UserError
from convlstm_tl.evaluation.alignment import NO_SHARED_CLASSES, cell_problem, name_list
from convlstm_tl.evaluation.crossdomain import Evaluation, evaluate_runs
from convlstm_tl.evaluation.notes import cell_notes, forgetting_notes
from convlstm_tl.evaluation.plan import plan_evaluation, read_run
from convlstm_tl.evaluation.report import format_markdown, write_evaluation

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("walk", "run", "sit")
TOKEN_FRAMES = (2, 1, 6, 1)  # a sentence cut into 2 frames of 6 token ids
VOCAB = ("<pad>", "<oov>", "good", "bad", "screen", "battery", "is", "the")
OTHER_VOCAB = ("<pad>", "<oov>", "phone", "bad", "good", "battery", "is", "a", "it")
MODEL = {"filters": [4], "head_units": 8, "embedding_dim": 4}


# ------------------------------------------------------------------ builders


def _token_splits(vocab_size, seed=0):
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in {"train": 12, "val": 6, "test": 9}.items():
        x = rng.integers(0, vocab_size, size=(n, *TOKEN_FRAMES)).astype(np.int32)
        splits[name] = SplitArrays(x=x, y=(np.arange(n) % len(CLASSES)).astype(np.int64))
    return splits


def _write_tokens(data_dir, name, vocab):
    write_domain(Path(data_dir) / f"{name}.h5", _token_splits(len(vocab)), domain=name, class_names=CLASSES,
                 provenance="synthetic test data", kind="tokens", vocab=vocab)


def _write_frames(data_dir, name, class_names=CLASSES):
    write_domain(Path(data_dir) / f"{name}.h5", make_splits(FRAMES_1D, n_classes=len(class_names)), domain=name,
                 class_names=class_names, provenance="synthetic test data")


def _model_run(runs_dir, name, *, domain, class_names=CLASSES, frame_shape=FRAMES_1D, vocab=None, **extra):
    """A run folder holding an untrained classifier and the config.json that describes it."""
    from convlstm_tl.config import ModelConfig
    from convlstm_tl.models.classifier import build_classifier

    config = ModelConfig(filters=tuple(MODEL["filters"]), head_units=MODEL["head_units"],
                         embedding_dim=MODEL["embedding_dim"])
    record = {"name": domain, "class_names": list(class_names), "frame_shape": list(frame_shape)}
    if vocab is None:
        channels = frame_shape[-1]
        model = build_classifier(config, frame_shape=frame_shape, n_classes=len(class_names),
                                 mean=np.zeros(channels), variance=np.ones(channels))
        record["kind"] = "frames"
    else:
        model = build_classifier(config, frame_shape=frame_shape, n_classes=len(class_names), vocab_size=len(vocab))
        record.update(kind="tokens", vocab_size=len(vocab), vocab_fingerprint=vocab_fingerprint(vocab))
    path = Path(runs_dir) / name
    path.mkdir(parents=True)
    model.save(path / "model.keras")
    (path / "config.json").write_text(json.dumps({"kind": "source", "model": MODEL, "domain": record, **extra}))
    return path


def _run_cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "convlstm_tl.evaluate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _notes(markdown):
    """The note lines of a Markdown evaluation."""
    return [line for line in markdown.split("Notes:", 1)[-1].splitlines() if line.startswith("- ")] \
        if "Notes:" in markdown else []


# ------------------------------------------------------ vocabulary: per cell


@pytest.fixture(scope="module")
def text_world(tmp_path_factory):
    """Token domains ``text`` (the run's vocabulary) and ``news`` (another), a frames domain ``Src``,
    and a tokens run ``St-text`` and a frames run ``Src`` beside them."""
    root = tmp_path_factory.mktemp("cells-text")
    _write_tokens(root / "data", "text", VOCAB)
    _write_tokens(root / "data", "news", OTHER_VOCAB)
    _write_frames(root / "data", "Src")
    _model_run(root / "runs", "St-text", domain="text", frame_shape=TOKEN_FRAMES, vocab=VOCAB)
    _model_run(root / "runs", "Src", domain="Src")
    return root


def test_cell_problem_says_why_a_pair_is_na(text_world):
    from convlstm_tl.data.format import open_domain

    data = text_world / "data"
    text, news, frames = (open_domain(data / f"{name}.h5") for name in ("text", "news", "Src"))
    tokens_run = read_run(text_world / "runs" / "St-text").domain
    assert cell_problem(tokens_run, text) is None
    assert "another vocabulary" in cell_problem(tokens_run, news)
    assert "trained on tokens" in cell_problem(tokens_run, frames)
    assert cell_problem({**tokens_run, "class_names": ["swim", "fly"]}, text) == NO_SHARED_CLASSES
    # The loaded model's shape is checked too, when given.
    assert "channels" in cell_problem(read_run(text_world / "runs" / "Src").domain, frames, model_shape=(4, 1, 8, 3))


def test_vocabulary_mismatch_is_an_na_cell_and_the_rest_is_scored(text_world):
    evaluation = evaluate_runs([text_world / "runs" / "St-text", text_world / "runs" / "Src"], ["text", "news", "Src"],
                               data_dir=text_world / "data", progress=False)
    na = evaluation.cell("St-text", "news")
    assert na["accuracy"] is None and na["confusion_matrix"] is None and "another vocabulary" in na["reason"]
    assert "trained on tokens" in evaluation.cell("St-text", "Src")["reason"]
    assert "trained on frames" in evaluation.cell("Src", "text")["reason"]
    for run, domain in (("St-text", "text"), ("Src", "Src")):
        cell = evaluation.cell(run, domain)
        assert 0.0 <= cell["accuracy"] <= 1.0 and cell["n_test"] > 0 and cell["class_alignment"]["classes"] == "same"
    # Each reason once, naming the run and the domain.
    vocabulary = [note for note in evaluation.notes if "another vocabulary" in note]
    assert vocabulary == [f"n/a: St-text on news: {na['reason']}"]
    # Both frames domains of the tokens run share one reason: one line.
    assert sum(note.startswith("n/a: Src on text, news:") for note in evaluation.notes) == 1


@pytest.mark.slow
def test_cli_scores_what_it_can_and_notes_the_na_cell(text_world, tmp_path):
    out = tmp_path / "out"
    result = _run_cli("--runs", "St-text", "--domains", "text", "news", "--data-dir", "data", "--out", str(out),
                      "--quiet", cwd=text_world)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["results"]["St-text"]["news"]["accuracy"] is None
    assert "another vocabulary" in saved["results"]["St-text"]["news"]["reason"]
    assert saved["results"]["St-text"]["text"]["accuracy"] is not None
    row = next(line for line in result.stdout.splitlines() if line.startswith("| St-text |"))
    assert row.rstrip().endswith("| n/a |") and "/" in row.split("|")[2]
    notes = _notes(result.stdout)
    assert len(notes) == 1 and notes[0].startswith("- n/a: St-text on news:") and "--vocab-from" in notes[0]
    assert "n/a" in (out / "report-St-text-news.txt").read_text()
    assert not (out / "confusion-St-text-news.png").exists() and (out / "confusion-St-text-text.png").exists()


def test_cli_every_cell_na_is_one_line_exit_2_and_writes_nothing(text_world, tmp_path):
    out = tmp_path / "out"
    result = _run_cli("--runs", "St-text", "--domains", "news", "Src", "--data-dir", "data", "--out", str(out),
                      "--quiet", cwd=text_world)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "no run can be scored" in lines[0] and "all 2 cells would be n/a" in lines[0]
    assert "St-text" in lines[0] and "another vocabulary" in lines[0]
    assert result.stdout == "" and not out.exists()


def test_plan_with_every_cell_na_raises(text_world):
    with pytest.raises(UserError, match="run St-text cannot be scored on domain news: .*another vocabulary"):
        plan_evaluation([text_world / "runs" / "St-text"], ["news"], data_dir=text_world / "data")


def test_a_model_that_does_not_fit_its_record_is_na_after_loading(text_world, tmp_path):
    """The plan trusts config.json; the loaded model is checked again, and an all-n/a result is still an error."""
    run = _model_run(tmp_path / "runs", "Liar", domain="Src", frame_shape=(4, 1, 8, 3))
    record = json.loads((run / "config.json").read_text())
    record["domain"]["frame_shape"] = list(FRAMES_1D)
    (run / "config.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="run Liar cannot be scored on domain Src: .*channels"):
        evaluate_runs([run], ["Src"], data_dir=text_world / "data", progress=False)
    evaluation = evaluate_runs([run, text_world / "runs" / "Src"], ["Src"], data_dir=text_world / "data",
                               progress=False)
    assert "channels" in evaluation.cell("Liar", "Src")["reason"]
    assert evaluation.cell("Src", "Src")["accuracy"] is not None


# ------------------------------------------------------- forgetting: who has it


@pytest.fixture(scope="module")
def transfer_world(tmp_path_factory):
    """A source run ``Src`` and two transfers from it to ``Tgt``: ``freeze`` (body restored) and ``scratch``."""
    root = tmp_path_factory.mktemp("cells-forgetting")
    _write_frames(root / "data", "Src")
    _write_frames(root / "data", "Tgt", ("sit", "walk", "run"))
    source = _model_run(root / "sources", "Src", domain="Src")
    for strategy, restore in (("freeze", True), ("scratch", False)):
        _model_run(root / "runs", f"Src-Tgt-{strategy}", domain="Tgt", class_names=("sit", "walk", "run"),
                   kind="transfer", source_run=str(source), strategy={"spec": strategy, "restore": restore})
    return root


def test_scratch_has_no_forgetting_figure_and_freeze_has_one(transfer_world, tmp_path):
    runs = transfer_world / "runs"
    evaluation = evaluate_runs([runs / "Src-Tgt-freeze", runs / "Src-Tgt-scratch"], ["Src", "Tgt"],
                               data_dir=transfer_world / "data", progress=False)
    rows = {row["run"]: row for row in evaluation.forgetting}
    freeze, scratch = rows["Src-Tgt-freeze"], rows["Src-Tgt-scratch"]
    assert freeze["restores_body"] is True and freeze["source_domain"] == "Src"
    assert freeze["lost"] == pytest.approx(freeze["before"] - freeze["after"])
    assert scratch["restores_body"] is False and scratch["strategy"] == "scratch"
    assert all(scratch[key] is None for key in ("before", "after", "lost", "lost_points"))
    assert "restores no source body" in scratch["reason"]
    # The source run is scored once, for freeze only.
    assert evaluation.extra_runs == ["Src"]

    markdown = format_markdown(evaluation)
    freeze_line = next(line for line in markdown.splitlines() if line.startswith("| Src-Tgt-freeze | freeze |"))
    scratch_line = next(line for line in markdown.splitlines() if line.startswith("| Src-Tgt-scratch | scratch |"))
    assert f"{freeze['before']:.3f}" in freeze_line
    assert scratch_line.endswith("| — | — | — |") and not any(c.isdigit() for c in scratch_line.split("|", 5)[5])
    assert sum("forgetting of Src-Tgt-scratch" in note for note in evaluation.notes) == 1

    out = write_evaluation(evaluation, tmp_path / "out")
    saved = {row["run"]: row for row in json.loads((out / "evaluation.json").read_text())["forgetting"]}
    assert saved["Src-Tgt-scratch"]["lost_points"] is None and saved["Src-Tgt-freeze"]["lost_points"] is not None


def test_only_scratch_scores_no_source_run(transfer_world):
    plan = plan_evaluation([transfer_world / "runs" / "Src-Tgt-scratch"], ["Src", "Tgt"],
                           data_dir=transfer_world / "data")
    assert plan.extra_runs == [] and plan.pairs == [("Src-Tgt-scratch", "Src"), ("Src-Tgt-scratch", "Tgt")]
    (entry,) = plan.forgetting
    assert entry["restores_body"] is False and "restores no source body" in entry["reason"]


def test_forgetting_needs_the_source_domain(transfer_world):
    evaluation = evaluate_runs([transfer_world / "runs" / "Src-Tgt-freeze"], ["Tgt"],
                               data_dir=transfer_world / "data", progress=False)
    (row,) = evaluation.forgetting
    assert row["lost"] is None and "not among the evaluated domains" in row["reason"]
    assert "| Src-Tgt-freeze | freeze | Src | Src | — | — | — |" in format_markdown(evaluation)


@pytest.mark.parametrize("record, expected", [
    ({"strategy": {"spec": "cut:1", "restore": True}}, True),
    ({"strategy": {"spec": "scratch", "restore": False}}, False),
    ({"config": {"strategy": "scratch"}}, False),  # older records: only the spec
    ({"config": {"strategy": "unfreeze:1"}}, True),
    ({"strategy": "finetune"}, True),
    ({}, None),  # not recorded: not known, so no figure
])
def test_restores_body_reads_the_record(tmp_path, record, expected):
    path = tmp_path / "runs" / "T"
    path.mkdir(parents=True)
    config = {"kind": "transfer", "model": {"filters": [4]}, "source_run": "elsewhere",
              "domain": {"name": "Tgt", "class_names": list(CLASSES), "frame_shape": list(FRAMES_1D)}, **record}
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.keras").write_bytes(b"")
    assert read_run(path).restores_body is expected


# ------------------------------------------------------------ bounded notes


def _cell(run, domain, model_classes, domain_classes):
    """A cell as evaluate_plan makes it, with made-up figures."""
    from convlstm_tl.evaluation.alignment import class_alignment

    alignment = {**class_alignment(model_classes, domain_classes), "n_left_out": 0}
    if alignment["classes"] == "none":
        return {"run": run, "domain": domain, "accuracy": None, "reason": NO_SHARED_CLASSES,
                "class_alignment": alignment}
    return {"run": run, "domain": domain, "accuracy": 0.5, "macro_f1": 0.4, "class_alignment": alignment}


def test_notes_of_ten_runs_on_five_domains_stay_short():
    """Disjoint and partly shared classes, 40 classes a domain: at most two lines a run, each readable."""
    domains = {f"D{d}": [f"d{d}-class{i}" for i in range(40)] for d in range(5)}
    runs = {}
    for r in range(10):
        # Each run knows half the classes of D0 and D1, none of the rest.
        runs[f"St-run{r}-scratch"] = domains["D0"][:20] + domains["D1"][20:] + [f"own{i}" for i in range(30)]
    results = {run: {domain: _cell(run, domain, classes, names) for domain, names in domains.items()}
               for run, classes in runs.items()}
    forgetting = [{"run": run, "strategy": "scratch", "restores_body": False, "source_run": None,
                   "source_domain": None, "before": None, "after": None, "lost": None, "lost_points": None,
                   "classes": None, "reason": "the strategy scratch restores no source body, so there is nothing to"
                                            " forget"} for run in runs]
    notes = cell_notes(list(runs), results) + forgetting_notes(forgetting)
    evaluation = Evaluation(split="test", runs=list(runs), domains=list(domains), results=results,
                            forgetting=forgetting, notes=notes)
    lines = _notes(format_markdown(evaluation))
    assert len(lines) <= 2 * len(runs) + 1
    assert all(len(line) < 400 for line in lines), max(lines, key=len)
    run = "St-run0-scratch"
    assert [line for line in lines if line.startswith(f"- n/a: {run} ")] == \
        [f"- n/a: {run} on D2, D3, D4: {NO_SHARED_CLASSES}"]
    (partial,) = [line for line in lines if line.startswith(f"- {run}: ")]
    assert "D0 (20 of 40 classes; samples of d0-class20, d0-class21, d0-class22 and 17 more left out)" in partial
    # One line for the forgetting of all ten scratch runs.
    assert sum(line.startswith("- forgetting of") for line in lines) == 1


def test_name_list_cuts_long_lists():
    assert name_list(["a", "b"]) == "a, b"
    assert name_list([f"c{i}" for i in range(15)]) == "c0, c1, c2 and 12 more"
