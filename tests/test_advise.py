"""Tests of the transfer advisor: the four-case rule, the options rule, the distances, the command line, and
its check against a suite's results."""

import csv
import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from conftest import CLASS_NAMES, make_splits, write_tiny
from convlstm_tl.cli import run_main
from convlstm_tl.cli.advise import PROG, format_advice, main
from convlstm_tl.config import ModelConfig, TrainConfig, TransferConfig
from convlstm_tl.data.format import open_domain
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import ConfigError
from convlstm_tl.strategies import advisor
from convlstm_tl.strategies.advisor import (
    LARGE_MIN_PER_CLASS, NO_OPTIONS_WHY, SIMILAR_MAX_PAD, UNLABELLED_ADAPT, DomainDistance, advise_transfer,
    check_advice_options, labelled_count, mmd2_rbf, proxy_a_distance, recommend,
)
from convlstm_tl.training.source import train_source

N_CLASSES = 7
SMALL = (LARGE_MIN_PER_CLASS // 2) * N_CLASSES
LARGE = LARGE_MIN_PER_CLASS * 2 * N_CLASSES
NEAR, FAR = SIMILAR_MAX_PAD / 4, (SIMILAR_MAX_PAD + 2.0) / 2


@pytest.mark.parametrize("pad, n_labelled, strategy, alternatives, case", [
    (NEAR, SMALL, "freeze", (), "small/similar"),
    (FAR, SMALL, "cut:1", ("freeze",), "small/different"),
    (NEAR, LARGE, "finetune", ("gradual",), "large/similar"),
    (FAR, LARGE, "finetune", ("scratch",), "large/different"),
])
def test_four_cases(pad, n_labelled, strategy, alternatives, case):
    advice = recommend(pad, n_labelled, N_CLASSES)
    assert (advice.strategy, advice.alternatives, advice.case) == (strategy, alternatives, case)
    assert f"PAD {pad:.2f}" in advice.reason and str(n_labelled) in advice.reason


def test_thresholds_are_inclusive_and_per_class():
    assert recommend(SIMILAR_MAX_PAD, SMALL, N_CLASSES).similar
    assert not recommend(SIMILAR_MAX_PAD + 1e-6, SMALL, N_CLASSES).similar
    assert recommend(NEAR, LARGE_MIN_PER_CLASS * N_CLASSES, N_CLASSES).large
    assert not recommend(NEAR, LARGE_MIN_PER_CLASS * N_CLASSES - 1, N_CLASSES).large
    # The same count is large for 2 classes and small for 20.
    assert recommend(NEAR, 4 * LARGE_MIN_PER_CLASS, 2).large and not recommend(NEAR, 4 * LARGE_MIN_PER_CLASS, 20).large


def test_one_block_body_has_nothing_to_cut():
    assert recommend(FAR, SMALL, N_CLASSES, n_blocks=1).strategy == "freeze"


# ------------------------------------------------------------------ the options rule


UNLABELLED_FRAMES = {"adapter": "channel", "adapter_init": "signs", "adapt": UNLABELLED_ADAPT}
SMALL_SAME_CLASSES = {"adapter": "channel", "adapter_init": "signs", "head_init": "source", "adapt": "adabn"}


@pytest.mark.parametrize("pad, n_labelled, same_classes, kind, strategy, options, case", [
    # No target label: the source's head is kept; frames get a channel adapter trained on the unlabelled frames.
    (NEAR, 0, True, "frames", "freeze", UNLABELLED_FRAMES, "unlabelled/similar"),
    (FAR, 0, True, "frames", "freeze", UNLABELLED_FRAMES, "unlabelled/different"),
    (FAR, 0, True, "tokens", "finetune", {"adapt": "adabn"}, "unlabelled/different"),
    # Different: BatchNorm statistics re-estimated on the target.
    (FAR, LARGE, True, "frames", "finetune", {"adapt": "adabn"}, "large/different"),
    (FAR, SMALL, False, "frames", "cut:1", {"adapt": "adabn"}, "small/different"),
    (FAR, SMALL, True, "tokens", "cut:1", {"adapt": "adabn"}, "small/different"),
    # Small, frames, the source's classes: a channel adapter (and with a different target adabn too).
    (NEAR, SMALL, True, "frames", "freeze", SMALL_SAME_CLASSES, "small/similar"),
    (FAR, SMALL, True, "frames", "freeze", SMALL_SAME_CLASSES, "small/different"),
    # None: similar and large; small but other classes, or tokens.
    (NEAR, LARGE, True, "frames", "finetune", {}, "large/similar"),
    (NEAR, SMALL, False, "frames", "freeze", {}, "small/similar"),
    (NEAR, SMALL, True, "tokens", "freeze", {}, "small/similar"),
])
def test_options_rule(pad, n_labelled, same_classes, kind, strategy, options, case):
    advice = recommend(pad, n_labelled, N_CLASSES, same_classes=same_classes, input_kind=kind)
    assert (advice.strategy, advice.options, advice.case) == (strategy, options, case)
    assert advice.options_reason
    if not options:
        assert advice.options_reason == NO_OPTIONS_WHY
    if n_labelled == 0:
        assert advice.alternatives == () and advice.n_labelled == 0 and not advice.large
        assert "no target label: the source's head is kept and only the" in advice.reason
        assert ("adapter adapts to unlabelled target frames" if kind == "frames" else "body adapts") in advice.reason
    if "adapt" in options and n_labelled and "adapter" not in options:
        assert "BatchNorm statistics are re-estimated on the target" in advice.options_reason
    if "adapter" in options and n_labelled:
        assert "sensors re-placed or mirrored" in advice.options_reason


def test_no_label_needs_the_source_classes():
    with pytest.raises(ConfigError, match="source's classes in the same order") as error:
        recommend(NEAR, 0, N_CLASSES, same_classes=False)
    assert error.value.field == "target_fraction"


@pytest.mark.parametrize("pad, n_labelled, same_classes, kind, n_blocks", [
    case for case in itertools.product((NEAR, FAR), (0, SMALL, LARGE), (True, False), ("frames", "tokens"), (1, 2))
    if case[1] or case[2]
])
def test_every_recommended_config_validates(pad, n_labelled, same_classes, kind, n_blocks):
    advice = recommend(pad, n_labelled, N_CLASSES, n_blocks=n_blocks, same_classes=same_classes, input_kind=kind)
    assert "adapter" not in advice.options or kind == "frames"
    sizes = [{"target_fraction": 0.0}] if n_labelled == 0 else [{}, {"target_fraction": 0.1}, {"target_per_class": 5}]
    for size in sizes:
        advice.target_fraction = size.get("target_fraction")
        advice.target_per_class = size.get("target_per_class")
        TransferConfig(target="T", source_run="S", **advice.transfer_options()).validate()
        # The rule's alternatives, with the options the rule gives them (none for scratch), validate too.
        for strategy, options in advice.settings()[1:]:
            assert "scratch" not in strategy or not options
            TransferConfig(target="T", source_run="S", strategy=strategy, **options, **size).validate()


def test_an_edit_of_the_tables_that_breaks_validation_fails_loudly(monkeypatch):
    monkeypatch.setitem(advisor.UNLABELLED, "frames", ("freeze", {"adapter": "channel"}, "why", "why"))
    with pytest.raises(RuntimeError, match="fix the tables"):
        recommend(NEAR, 0, N_CLASSES, same_classes=True)
    monkeypatch.setattr(advisor, "SMALL_SAME_CLASSES_OPTIONS", {"adapt_weight": 0.5})
    with pytest.raises(RuntimeError, match="OPTION_FIELDS"):
        recommend(NEAR, SMALL, N_CLASSES, same_classes=True)


def test_no_label_is_a_fair_question():
    check_advice_options("St", "ms", target_fraction=0)
    with pytest.raises(ConfigError, match="target_fraction"):
        check_advice_options("St", "ms", target_fraction=1.5)
    # Counted without reading a label: the file need not exist.
    assert labelled_count(SimpleNamespace(path=Path("no/such.h5")), target_fraction=0) == 0


def _advice(**size):
    advice = recommend(NEAR, 0 if size.get("target_fraction") == 0 else SMALL, N_CLASSES, same_classes=True)
    advice.target, advice.source_run = "ms", "runs/St"
    advice.target_fraction, advice.target_per_class = size.get("target_fraction"), size.get("target_per_class")
    return advice


def test_format_advice_prints_the_options_and_the_full_command():
    text = format_advice(_advice(target_fraction=0))
    assert f"options: adapter channel, adapter_init signs, adapt {UNLABELLED_ADAPT}" in text.splitlines()
    assert "why: no labelled target sample (target_fraction 0)" in text and "the source's head is kept" in text
    assert "why these options: adapter channel started from the channel signs" in text
    assert text.splitlines()[-1] == ("try: python -m convlstm_tl.train --transfer ms --from runs/St --strategy freeze"
                                     f" --adapter channel --adapter-init signs --adapt {UNLABELLED_ADAPT}"
                                     " --target-fraction 0")
    assert format_advice(_advice(target_per_class=10)).splitlines()[-1].endswith(
        "--strategy freeze --adapter channel --adapter-init signs --head-init source --adapt adabn"
        " --target-per-class 10")
    plain = _advice(target_fraction=0.25)
    plain.options = {}
    assert format_advice(plain).splitlines()[-1].endswith("--from runs/St --strategy freeze --target-fraction 0.25")
    assert "options: none" in format_advice(plain)


def test_to_dict_has_the_options():
    data = json.loads(json.dumps(_advice(target_fraction=0).to_dict()))
    assert data["options"] == UNLABELLED_FRAMES
    assert data["options_reason"].startswith("adapter channel started from") and data["target_fraction"] == 0
    assert data["same_classes"] is True and data["input_kind"] == "frames"


def test_the_command_line_takes_no_label(tmp_path, capsys):
    """--target-fraction 0 passes the option checks: what fails is the missing run, before the backend starts."""
    data = write_tiny(tmp_path / "data").data_dir
    argv = ["--source", "Nope", "--target", "Tiny", "--target-fraction", "0", "--data-dir", str(data),
            "--runs-dir", str(tmp_path / "runs")]
    assert run_main(main, argv, prog=PROG) == 2
    err = capsys.readouterr().err
    assert "Nope" in err and "target_fraction" not in err and "adapt" not in err
    assert run_main(main, [*argv[:4], "--target-fraction", "-1", *argv[6:]], prog=PROG) == 2
    assert "target_fraction must lie in [0.0, 1.0]" in capsys.readouterr().err


def test_distances_are_near_zero_for_identical_features_and_large_for_shifted():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 16))
    same_pad, same_error = proxy_a_distance(features, features.copy())
    same_mmd, _ = mmd2_rbf(features, features.copy())
    assert same_pad < 0.2 and same_error > 0.45 and abs(same_mmd) < 0.01
    # Another sample of the same distribution is near too.
    assert proxy_a_distance(features, rng.normal(size=(300, 16)))[0] < 0.4
    shifted = rng.normal(size=(300, 16)) + 3.0
    far_pad, far_error = proxy_a_distance(features, shifted)
    far_mmd, _ = mmd2_rbf(features, shifted)
    assert far_pad > 1.9 and far_error < 0.03 and far_mmd > 0.5
    # A small shift lies in between.
    assert same_pad < proxy_a_distance(features, rng.normal(size=(300, 16)) + 0.5)[0] < far_pad


@pytest.mark.slow
def test_advise_on_tiny_domains(tmp_path, capsys):
    data = tmp_path / "data"
    write_tiny(data)
    write_tiny(data, name="Shifted", seed=1)
    # The target's channel 1 is moved far away: a different domain for the body.
    with h5py.File(data / "Shifted.h5", "r+") as f:
        for split in ("train", "val", "test"):
            f[split]["x"][..., 1] = f[split]["x"][..., 1] * 4.0 + 25.0
    runs = tmp_path / "runs"
    train_source(TrainConfig(source="Tiny", runs_dir=str(runs), data_dir=str(data), epochs=1,
                             model=ModelConfig(filters=(4, 4), head_units=8)), verbose=0)

    near = advise_transfer("Tiny", "Tiny", data_dir=str(data), runs_dir=str(runs), target_fraction=0.25)
    assert near.n_labelled == labelled_count(open_domain(data / "Tiny.h5"), target_fraction=0.25) < 48
    assert near.distance.pad < 0.5 and near.distance.n_features == 8 and near.strategy in ("freeze", "cut:1")

    # Source normalization: the shifted channel reaches the body unscaled and the classifier tells them apart.
    far = advise_transfer("Tiny", "Shifted", data_dir=str(data), runs_dir=str(runs), normalization="source")
    assert far.distance.pad > near.distance.pad and far.distance.mmd2 > near.distance.mmd2

    assert main(["--source", "Tiny", "--target", "Tiny", "--data-dir", str(data), "--runs-dir", str(runs),
                 "--json", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_labelled"] == 48 and set(printed["distance"]) >= {"pad", "mmd2", "domain_error"}
    assert printed["thresholds"] == {"similar_max_pad": SIMILAR_MAX_PAD, "large_min_per_class": LARGE_MIN_PER_CLASS}

    # No target label: the source's classes are the target's, so the head is kept and an adapter adapts.
    assert main(["--source", "Tiny", "--target", "Tiny", "--target-fraction", "0", "--data-dir", str(data),
                 "--runs-dir", str(runs), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == f"options: adapter channel, adapter_init signs, adapt {UNLABELLED_ADAPT}"
    assert printed[-1].endswith(f"--strategy freeze --adapter channel --adapter-init signs --adapt {UNLABELLED_ADAPT}"
                                " --target-fraction 0")
    unlabelled = advise_transfer("Tiny", "Tiny", data_dir=str(data), runs_dir=str(runs), target_fraction=0,
                                 distance=near.distance)
    assert unlabelled.n_labelled == 0 and unlabelled.same_classes and unlabelled.case.startswith("unlabelled/")
    write_domain(data / "Other.h5", make_splits(seed=2), domain="Other", class_names=("a", "b", "c"),
                 provenance="synthetic test data")
    with pytest.raises(ConfigError, match="must have the source's classes in the same order"):
        advise_transfer("Tiny", "Other", data_dir=str(data), runs_dir=str(runs), target_fraction=0)

    assert run_main(main, ["--source", "Nope", "--target", "Tiny", "--data-dir", str(data), "--runs-dir",
                           str(runs)], prog=PROG) == 2
    assert "run" in capsys.readouterr().err


# ------------------------------------------------------------------ advise-check on a suite

ADVISED = "adapter channel, adapter_init signs, head_init source, adapt adabn"

SUITE_SOURCE = {"domain": "Tiny", "config": {"epochs": 1, "model": {"filters": [4, 4], "head_units": 8}}}
# A variant with an option the advisor does not set comes first: the plain method stands for the advice.
SUITE_METHODS = ["freeze", {"freeze+adapter+lr": {"strategy": "freeze", "adapter": "channel", "lr": 0.01}},
                 {"freeze+adapter": {"strategy": "freeze", **SMALL_SAME_CLASSES}},
                 {"cut+adabn": {"strategy": "cut:1", "adapt": "adabn"}}, "finetune"]
# Mean accuracy per (method, fraction): freeze+adapter best at 50%, finetune at 100%.
SUITE_ACCURACY = {"freeze": (0.6, 0.7), "freeze+adapter+lr": (0.5, 0.6), "freeze+adapter": (0.9, 0.75),
                  "cut+adabn": (0.7, 0.65), "finetune": (0.8, 0.95)}


def _tiny_suite(tmp_path):
    """A suite of pair p (Tiny -> Target, written) and pair q (nothing run): ``(data, suite file, runs)``."""
    data = tmp_path / "data"
    write_tiny(data / "p", name="Tiny")
    write_tiny(data / "p", name="Target", seed=1)
    path = tmp_path / "tiny.json"
    pair = {"source": SUITE_SOURCE, "target": "Target"}
    path.write_text(json.dumps({"name": "tiny", "seeds": [0], "target_fractions": [0.5, 1.0],
                                "strategies": SUITE_METHODS, "baselines": [], "base": {"epochs": 1},
                                "pairs": {"p": pair, "q": pair}}))
    return data, path, tmp_path / "runs"


def _fake_transfers(plan):
    """Write each transfer cell's ``metrics.json`` and ``config.json`` as if it had run, at SUITE_ACCURACY."""
    from experiments.suite import METHOD_AXIS

    fractions = list(plan.pair.fractions)
    for planned in plan.cells:
        labels = planned.cell.labels
        score = SUITE_ACCURACY[labels[METHOD_AXIS]][fractions.index(labels["target_fraction"])]
        planned.run_dir.mkdir(parents=True, exist_ok=True)
        (planned.run_dir / "metrics.json").write_text(json.dumps({"accuracy": score, "macro_f1": score}))
        (planned.run_dir / "config.json").write_text(json.dumps({"target_samples": {"n": 12}}))


def _fake_source_and_distance(monkeypatch, pad):
    """No source run trained: load_run gives the source's classes and blocks, the distance is ``pad``."""
    measured = []

    def load_run(name, runs_dir="runs", **kwargs):
        return SimpleNamespace(path=Path(name), class_names=list(CLASS_NAMES), n_blocks=2)

    def domain_distance(source, target_info, **kwargs):
        measured.append((source.path, target_info.domain, Path(kwargs["data_dir"])))
        return DomainDistance(pad=pad, domain_error=0.4, mmd2=0.01, bandwidth=1.0, n_source=48, n_target=48,
                              n_features=8)

    monkeypatch.setattr("convlstm_tl.runs.resolve.load_run", load_run)
    monkeypatch.setattr(advisor, "domain_distance", domain_distance)
    return measured


def test_advise_check_on_a_suite_compares_strategy_and_options(tmp_path, monkeypatch, capsys):
    from experiments.__main__ import PROG as EXPERIMENTS
    from experiments.__main__ import main as experiments_main
    from experiments.advise_check import advice_markdown, check_suite_advice
    from experiments.suite import load_suite
    from experiments.suite_plan import plan_suite

    data, path, runs = _tiny_suite(tmp_path)
    suite = load_suite(path)
    plan, _ = plan_suite(suite, runs_dir=runs, data_dir=data)
    _fake_transfers(plan)
    measured = _fake_source_and_distance(monkeypatch, NEAR)

    # Small (8 and 16 labels per class), similar, the source's classes: freeze + adapter channel.
    check = check_suite_advice(suite, runs_dir=runs, data_dir=data)
    assert measured == [(plan.source_runs[0], "Target", data / "p")]  # once per source run, from the pair's data
    assert check.mode == "suite" and check.unfinished == ("q",)
    assert [(r["pair"], r["size"], r["n_labelled"], r["advised"], r["options"], r["advised_setting"], r["best"],
             r["hit"]) for r in check.rows] == [
        ("p", "0.5", 24, "freeze", ADVISED, "freeze+adapter", "freeze+adapter", True),
        ("p", "1.0", 48, "freeze", ADVISED, "freeze+adapter", "finetune", False)]
    assert check.rows[1]["regret"] == pytest.approx(0.2) and check.rows[0]["regret"] == 0
    assert (check.hit_rate, check.allowed_hit_rate, check.mean_regret) == (0.5, 0.5, pytest.approx(0.1))
    text = advice_markdown(suite, check)
    assert "| p | 0 | 0.5 | 24 |" in text and f"freeze + {ADVISED} = `freeze+adapter`" in text
    assert "Hit rate: 50% (1 of 2 measured advice)" in text and "not checked: q" in text

    # Advice of a method the pair does not have: not in the suite, not a miss.
    monkeypatch.setattr(advisor, "SMALL_SAME_CLASSES_OPTIONS", {"adapter": "channel", "adapt": "coral"})
    check = check_suite_advice(suite, runs_dir=runs, data_dir=data, pairs=["p"])
    assert [(r["advised"], r["options"], r["advised_setting"], r["hit"]) for r in check.rows] == [
        ("freeze", "adapter channel, adapt coral", "", None)] * 2
    assert all(math.isnan(r["regret"]) for r in check.rows) and math.isnan(check.hit_rate)
    assert check.unfinished == () and "not in the suite" in advice_markdown(suite, check)

    # The command line: --suite (and --pair), results next to the suite's.
    assert experiments_main(["advise-check", "--suite", str(path), "--pair", "p", "--runs-dir", str(runs),
                             "--data-dir", str(data), "--quiet"]) == 0
    assert "# Advisor check: suite tiny" in capsys.readouterr().out
    with open(runs / "tiny" / "advice.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert [(row["pair"], row["advised"], row["hit"], row["regret"]) for row in written] == [
        ("p", "freeze", "", "")] * 2
    for argv, message in [
        (["advise-check", str(path)], f"advise-check takes a grid file, or a suite with --suite {path}"),
        (["advise-check"], "give a grid file (GRID.json), or a suite with --suite"),
        (["advise-check", str(path), "--suite", str(path)], "not both"),
        (["advise-check", "--suite", str(path), "--study", "x"], "choose pairs with --pair"),
        (["advise-check", str(path), "--pair", "p"], "--pair chooses pairs of a suite; give the suite with --suite"),
        (["advise-check", "--suite", str(path), "--pair", "z", "--runs-dir", str(runs)], "has no pair 'z'"),
    ]:
        assert run_main(experiments_main, argv, prog=EXPERIMENTS) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


@pytest.mark.slow
def test_advise_check_on_a_suite_with_a_real_source_run(tmp_path):
    from dataclasses import replace

    from experiments.advise_check import check_suite_advice
    from experiments.suite import load_suite
    from experiments.suite_plan import plan_suite

    data, path, runs = _tiny_suite(tmp_path)
    suite = load_suite(path)
    plan, _ = plan_suite(suite, runs_dir=runs, data_dir=data)
    source = plan.cells[0].cell.source_config
    train_source(replace(source, runs_dir=str(plan.out / "runs"), data_dir=str(plan.data_dir)), verbose=0)
    assert (plan.source_runs[0] / "model.keras").is_file()
    _fake_transfers(plan)

    check = check_suite_advice(suite, runs_dir=runs, data_dir=data, pairs=["p"], max_samples=48)
    assert [(row["size"], row["n_labelled"]) for row in check.rows] == [("0.5", 24), ("1.0", 48)]
    for row in check.rows:
        assert 0 <= row["pad"] <= 2 and row["case"].startswith("small/")
        assert row["advised_setting"] in ("", *SUITE_ACCURACY) and row["best"] in ("freeze+adapter", "finetune")
        assert (row["hit"] is None) == (row["advised_setting"] == "")
