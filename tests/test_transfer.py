"""Transfer: strategies as data, frozen weights, learning rates, cache, CLI errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import FRAMES_1D, make_splits

from convlstm_tl.config import ConfigError, ModelConfig, TrainConfig, TransferConfig
from convlstm_tl.domain import SplitArrays, write_domain
from convlstm_tl.model import block_name, body_blocks
from convlstm_tl.sampling import subsample
from convlstm_tl.training import train_source
from convlstm_tl.transfer import (
    LayerRateAdam,
    Phase,
    build_transfer_model,
    compile_for_phase,
    feature_extractor,
    head_model,
    load_source_run,
    parse_strategy,
    set_phase,
    transfer,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_CLASSES = ("w", "x", "y", "z")
STRATEGIES = ("freeze", "cut:1", "unfreeze:1", "finetune", "gradual", "scratch")


def _write_target(data_dir, name="Tgt", frame_shape=FRAMES_1D, n_classes=len(TARGET_CLASSES), seed=1):
    splits = make_splits(frame_shape, n_classes=n_classes, seed=seed,
                         sizes={"train": 64, "val": 16, "test": 16})
    # Recordings of 4 samples each, with one label per recording, for subsampling.
    for split, arrays in splits.items():
        order = np.argsort(arrays.y, kind="stable")
        splits[split] = SplitArrays(arrays.x[order], arrays.y[order], arrays.group[order],
                                    recording=np.array([f"{split}-{i // 4}" for i in range(len(order))]))
    classes = TARGET_CLASSES[:n_classes]
    write_domain(Path(data_dir) / f"{name}.h5", splits, domain=name, class_names=classes, provenance="test")
    return splits


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A trained 2-block source run on domain Src and a 4-class target Tgt."""
    root = tmp_path_factory.mktemp("transfer")
    data_dir, runs_dir = root / "data", root / "runs"
    from conftest import write_tiny

    write_tiny(data_dir, name="Src")
    _write_target(data_dir)
    _write_target(data_dir, name="Tgt3ch", frame_shape=(4, 1, 8, 3))
    config = TrainConfig(source="Src", data_dir=str(data_dir), runs_dir=str(runs_dir), epochs=2, patience=0,
                         model=ModelConfig(filters=(4, 4), head_units=8))
    train_source(config, verbose=0)
    return {"root": root, "data": data_dir, "runs": runs_dir, "source": load_source_run("Src", runs_dir)}


def _transfer(workspace, strategy, **overrides):
    settings = dict(target="Tgt", source_run="Src", strategy=strategy, data_dir=str(workspace["data"]),
                    runs_dir=str(workspace["runs"]), epochs=3, head_epochs=1, patience=0, lr=1e-2, overwrite=True,
                    name=f"t-{strategy.replace(':', '')}")
    settings.update(overrides)
    return transfer(TransferConfig(**settings), verbose=0)


def _block_weights(model, index):
    return [np.array(w) for w in model.get_layer(block_name(index)).get_weights()]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# --- strategies as data ----------------------------------------------------


def test_parse_strategy_tables():
    assert parse_strategy("freeze", 2).phases == (Phase(()),)
    assert parse_strategy("cut:1", 2).keep_blocks == 1
    assert parse_strategy("unfreeze:1", 3).phases == (Phase((3,)),)
    assert parse_strategy("finetune", 2).phases == (Phase((1, 2)),)
    gradual = parse_strategy("gradual", 2, head_epochs=4)
    assert gradual.phases == (Phase((), 4), Phase((1, 2)))
    scratch = parse_strategy("scratch", 2)
    assert not scratch.restore and not scratch.body_frozen_throughout
    assert parse_strategy("freeze", 2).body_frozen_throughout
    assert parse_strategy("cut:2", 2).slug == "cut2"


@pytest.mark.parametrize("spec", ["melt", "cut:0", "cut:3", "unfreeze:x", "freeze:1", "cut", "unfreeze:5"])
def test_parse_strategy_errors(spec):
    with pytest.raises(ConfigError, match="strategy"):
        parse_strategy(spec, 2)


# --- optimizer -------------------------------------------------------------


def test_layer_rate_adam_scales_only_named_layers_and_round_trips():
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="b")(keras.layers.Dense(3, name="a")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(LayerRateAdam(1e-2, scaled_prefixes=["a/"], scale=0.0), "mse")
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    rng = np.random.default_rng(0)
    model.fit(rng.random((32, 4)), rng.random((32, 2)), epochs=2, verbose=0)
    after = [keras.ops.convert_to_numpy(w) for w in model.weights]
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert not np.array_equal(before[2], after[2])
    config = LayerRateAdam(1e-3, scaled_prefixes=["block_1/"], scale=0.1).get_config()
    clone = LayerRateAdam.from_config(config)
    assert clone.scaled_prefixes == ("block_1/",) and clone.scale == 0.1


# --- model building and trainability --------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_trainable_weights_per_phase(workspace, strategy):
    source = workspace["source"]
    parsed = parse_strategy(strategy, source.n_blocks, head_epochs=1)
    model = build_transfer_model(source, parsed, frame_shape=FRAMES_1D, n_classes=4,
                                 mean=np.zeros(2), variance=np.ones(2))
    for phase in parsed.phases:
        set_phase(model, parsed, phase)
        trainable = {w.path for w in model.trainable_weights}
        for index, block in enumerate(body_blocks(model), start=1):
            conv = {w.path for w in block.get_layer("convlstm").weights}
            bn = {w.path for w in block.get_layer("batch_norm").trainable_weights + block.get_layer(
                "batch_norm").non_trainable_weights}
            trains = not parsed.restore or index in phase.trainable_blocks
            assert (conv <= trainable) == trains and not (conv & trainable) == trains
            # Restored BatchNorm never trains (inference mode); a fresh one does.
            assert bool(bn & trainable) == (not parsed.restore)
        assert {"head_dense/kernel", "head_softmax/kernel"} <= trainable


def test_cut_keeps_exactly_the_first_blocks_and_head_fits_target(workspace):
    source = workspace["source"]
    model = build_transfer_model(source, parse_strategy("cut:1", 2), frame_shape=FRAMES_1D, n_classes=4,
                                 mean=np.zeros(2), variance=np.ones(2))
    assert [b.name for b in body_blocks(model)] == ["block_1"]
    assert model.output_shape == (None, 4)
    assert _same(_block_weights(model, 1), _block_weights(source.model, 1))


def test_scratch_does_not_load_source_weights(workspace):
    source = workspace["source"]
    model = build_transfer_model(source, parse_strategy("scratch", 2), frame_shape=FRAMES_1D, n_classes=4,
                                 mean=np.zeros(2), variance=np.ones(2))
    conv = model.get_layer("block_1").get_layer("convlstm").get_weights()[0]
    assert not np.array_equal(conv, source.model.get_layer("block_1").get_layer("convlstm").get_weights()[0])


def test_channel_mismatch_names_both_shapes(workspace):
    source = workspace["source"]
    from convlstm_tl.errors import UserError

    with pytest.raises(UserError, match=r"\(4, 1, 8, 3\).*\(4, 1, 8, 2\)"):
        build_transfer_model(source, parse_strategy("freeze", 2), frame_shape=(4, 1, 8, 3), n_classes=4,
                             mean=np.zeros(3), variance=np.ones(3))


# --- real transfers --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_transfer_trains_what_it_should_and_keeps_the_rest(workspace, strategy):
    source = workspace["source"]
    result = _transfer(workspace, strategy)
    model = result.model
    parsed = parse_strategy(strategy, source.n_blocks)
    assert model.output_shape == (None, len(TARGET_CLASSES))
    assert len(body_blocks(model)) == parsed.keep_blocks
    trained_blocks = set().union(*(p.trainable_blocks for p in parsed.phases))
    for index in range(1, parsed.keep_blocks + 1):
        source_conv = source.model.get_layer(block_name(index)).get_layer("convlstm").get_weights()
        final_conv = model.get_layer(block_name(index)).get_layer("convlstm").get_weights()
        source_bn = source.model.get_layer(block_name(index)).get_layer("batch_norm").get_weights()
        final_bn = model.get_layer(block_name(index)).get_layer("batch_norm").get_weights()
        if not parsed.restore:
            assert not _same(source_conv, final_conv)
        elif index in trained_blocks:
            assert not _same(source_conv, final_conv), f"block_{index} should have trained"
            assert _same(source_bn, final_bn), "restored BatchNorm must keep the source's statistics"
        else:
            assert _same(source_conv, final_conv), f"frozen block_{index} changed"
            assert _same(source_bn, final_bn)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["kind"] == "transfer" and config["strategy"]["spec"] == strategy
    assert config["source_run"] == str((workspace["runs"] / "Src").resolve())
    assert (result.run_dir / "model.keras").is_file()


@pytest.mark.slow
def test_gradual_changes_the_body_only_in_its_second_phase(workspace):
    source = workspace["source"]
    parsed = parse_strategy("gradual", 2, head_epochs=1)
    model = build_transfer_model(source, parsed, frame_shape=FRAMES_1D, n_classes=2,
                                 mean=np.zeros(2), variance=np.ones(2))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, *FRAMES_1D)).astype(np.float32), rng.integers(0, 2, 16)
    weights = [_block_weights(model, i) for i in (1, 2)]
    head = np.array(model.get_layer("head_dense").get_weights()[0])
    set_phase(model, parsed, parsed.phases[0])
    compile_for_phase(model, parsed, parsed.phases[0], lr=1e-2, body_lr=1e-3)
    model.fit(x, y, epochs=1, verbose=0)
    assert all(_same(weights[i - 1], _block_weights(model, i)) for i in (1, 2))
    assert not np.array_equal(head, model.get_layer("head_dense").get_weights()[0])
    set_phase(model, parsed, parsed.phases[1])
    compile_for_phase(model, parsed, parsed.phases[1], lr=1e-2, body_lr=1e-3)
    model.fit(x, y, epochs=1, verbose=0)
    assert not any(_same(weights[i - 1][:3], _block_weights(model, i)[:3]) for i in (1, 2))


def test_cached_and_uncached_heads_predict_the_same(workspace):
    source = workspace["source"]
    parsed = parse_strategy("freeze", 2)
    model = build_transfer_model(source, parsed, frame_shape=FRAMES_1D, n_classes=4,
                                 mean=np.zeros(2), variance=np.ones(2))
    set_phase(model, parsed, parsed.phases[0])
    x = np.random.default_rng(3).normal(size=(10, *FRAMES_1D)).astype(np.float32)
    features = feature_extractor(model, 2).predict(x, verbose=0)
    cached = head_model(model, features.shape[1:]).predict(features, verbose=0)
    np.testing.assert_allclose(cached, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_cached_run_saves_full_model_that_predicts_like_it(workspace):
    result = _transfer(workspace, "freeze", name="cached")
    assert result.metrics["feature_cache"] is True
    uncached = _transfer(workspace, "freeze", name="uncached", cache_features=False)
    assert uncached.metrics["feature_cache"] is False
    x = np.random.default_rng(4).normal(size=(8, *FRAMES_1D)).astype(np.float32)
    reloaded = keras.saving.load_model(result.run_dir / "model.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), result.model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    # Same seed, same head initialisation, same data order: the cache changes speed, not results.
    np.testing.assert_allclose(result.model.predict(x, verbose=0), uncached.model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_subsampling_is_recorded_and_reproducible(workspace):
    result = _transfer(workspace, "freeze", name="few", target_fraction=0.25, seed=5)
    recorded = json.loads((result.run_dir / "config.json").read_text())["target_samples"]
    from convlstm_tl.domain import read_labels, read_sampling_units

    path = workspace["data"] / "Tgt.h5"
    labels, _ = read_labels(path, "train")
    expected = subsample(labels, read_sampling_units(path, "train"), fraction=0.25, seed=5)
    assert recorded["indices"] == expected.tolist() and recorded["n"] < recorded["of"]


@pytest.mark.slow
def test_normalization_source_or_target(workspace):
    source_stats = json.loads((workspace["runs"] / "Src" / "config.json").read_text())["normalization"]
    kept = _transfer(workspace, "freeze", name="norm-source", normalization="source", epochs=1)
    own = _transfer(workspace, "freeze", name="norm-target", epochs=1)
    mean_of = lambda model: np.array(model.get_layer("normalize").mean).reshape(-1)  # noqa: E731
    np.testing.assert_allclose(mean_of(kept.model), source_stats["mean"], rtol=1e-6)
    target_x = np.concatenate([a for a in [make_splits(FRAMES_1D, n_classes=4, seed=1,
                                                       sizes={"train": 64, "val": 16, "test": 16})["train"].x]])
    np.testing.assert_allclose(mean_of(own.model), target_x.reshape(-1, 2).mean(axis=0), rtol=1e-4, atol=1e-5)


# --- CLI -------------------------------------------------------------------


def _cli(workspace, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "convlstm_tl.train", *args, "--data-dir", str(workspace["data"]),
         "--runs-dir", str(workspace["runs"])],
        cwd=workspace["root"], env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_cli_transfer_names_the_run_and_records_source_and_strategy(workspace):
    done = _cli(workspace, "--transfer", "Tgt", "--from", "Src", "--strategy", "cut:1", "--epochs", "1",
                "--quiet", "--overwrite")
    assert done.returncode == 0, done.stderr
    config = json.loads((workspace["runs"] / "Src-Tgt-cut1" / "config.json").read_text())
    assert config["strategy"]["spec"] == "cut:1" and config["source_run"].endswith("Src")


@pytest.fixture(scope="module")
def broken_run(workspace):
    path = workspace["runs"] / "Broken"
    path.mkdir()
    (path / "config.json").write_text("{}")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("args, fragments", [
    (["--strategy", "melt"], ["unknown strategy", "melt"]),
    (["--strategy", "cut:3"], ["2 blocks", "cut:1..2"]),
    (["--from", "Nowhere"], ["Nowhere", "not found"]),
    (["--from", "Broken"], ["Broken", "model.keras"]),
    (["--target-fraction", "1.5"], ["target_fraction", "1.5"]),
    (["--target-fraction", "0.5", "--target-per-class", "3"], ["not both"]),
    (["--filters", "8"], ["--filters", "source run"]),
    (["--transfer", "Tgt3ch"], ["(4, 1, 8, 3)", "(4, 1, 8, 2)"]),
])
def test_cli_transfer_errors_are_one_line_exit_2(workspace, broken_run, args, fragments):
    defaults = {"--transfer": "Tgt", "--from": "Src", "--strategy": "freeze"}
    for flag in list(defaults):
        if flag in args:
            defaults.pop(flag)
    argv = [part for pair in defaults.items() for part in pair] + args + ["--epochs", "1", "--quiet"]
    before = set(os.listdir(workspace["runs"]))
    done = _cli(workspace, *argv)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert set(os.listdir(workspace["runs"])) == before


def test_cli_strategy_with_source_is_refused(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-m", "convlstm_tl.train", "--source", "X", "--strategy", "freeze"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--strategy belongs to a transfer" in done.stderr
