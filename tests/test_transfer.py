"""Tests of ``convlstm_tl.training.transfer`` and ``python -m convlstm_tl.train --transfer``.

One tiny 2-block source run (3 classes) is trained once per module; every
strategy is then transferred to a 4-class target with other class names. A
recorder wraps ``transfer``'s ``set_phase`` and ``fit`` so the tests see, for
each phase of a real ``transfer()`` call, what the optimizer trained and how
the body's weights moved.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest

import convlstm_tl.training.transfer as transfer_module
from convlstm_tl.cli.train import build_transfer_config, parse_args
from convlstm_tl.config import ModelConfig, TrainConfig, TransferConfig
from convlstm_tl.data.format import SplitArrays
from convlstm_tl.data.reader import read_labels, read_sampling_units, read_split
from convlstm_tl.data.stats import channel_stats
from convlstm_tl.data.subsets import subsample
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import ConfigError, RunError, UserError
from convlstm_tl.jsonio import to_dict
from convlstm_tl.models.backbone import Backbone, block_name
from convlstm_tl.models.classifier import build_classifier, load_model
from convlstm_tl.models.optimizers import LayerRateAdam
from convlstm_tl.runs.resolve import Run, load_run
from convlstm_tl.strategies.recipe import build_transfer_model, compile_for_phase, init_head_from_source, set_phase
from convlstm_tl.strategies.registry import Phase, parse_strategy
from convlstm_tl.training.source import train_source
from convlstm_tl.training.transfer import transfer


def _run(path, model_config, model, class_names=()):
    """A loaded run built in memory, as transfer reads a source run."""
    return Run(path=Path(path), record={"kind": "source", "model": to_dict(model_config),
                                        "domain": {"name": "Src", "class_names": list(class_names),
                                                   "frame_shape": list(model.input_shape[1:])}},
               model=model)


REPO_ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m convlstm_tl.train"
FRAMES = (4, 1, 8, 2)
SOURCE_CLASSES = ("walk", "run", "sit")
TARGET_CLASSES = ("jog", "climb", "lie", "stand")  # more classes, other names
SOURCE_MODEL = ModelConfig(filters=(4, 4), head_units=8, head_dropout=0.25)
STRATEGIES = ("freeze", "cut:1", "unfreeze:1", "finetune", "gradual", "scratch")
# Restored blocks that train in each phase (scratch: every layer of the body trains).
PHASE_BLOCKS = {"freeze": [()], "cut:1": [()], "unfreeze:1": [(2,)], "finetune": [(1, 2)],
                "gradual": [(), (1, 2)], "scratch": [(1, 2)]}
CACHED = {"freeze", "cut:1"}
# Settings beyond the strategy; scratch also checks normalization="source" (saves a run).
STRATEGY_OVERRIDES = {"scratch": {"normalization": "source"}}
# Recording sizes per class of the target's training split (12 samples per class).
RECORDING_SIZES = (1, 2, 3, 4, 2)
LR = 1e-2


# ---------------------------------------------------------------- tiny data


def _frames(y, frame_shape, rng):
    x = rng.normal(0.0, 0.3, size=(len(y), *frame_shape)).astype(np.float32)
    x[..., 0] += y[:, None, None, None]
    return x


def _write(data_dir, name, class_names, *, frame_shape=FRAMES, seed=0, n_train=36, recordings=False):
    """A domain file whose channel 0 carries the class; ``recordings`` gives
    the training split whole recordings of :data:`RECORDING_SIZES` samples."""
    rng = np.random.default_rng(seed)
    n_classes = len(class_names)
    splits = {}
    if recordings:
        y, recording = [], []
        for label in range(n_classes):
            for size in RECORDING_SIZES:
                recording += [len(set(recording))] * size
                y += [label] * size
        y, recording = np.array(y), np.array(recording)
        splits["train"] = SplitArrays(_frames(y, frame_shape, rng), y, group=recording % 3, recording=recording)
    else:
        y = np.arange(n_train) % n_classes
        splits["train"] = SplitArrays(_frames(y, frame_shape, rng), y, group=np.arange(n_train) % 3)
    for offset, split in ((10, "val"), (20, "test")):
        y = np.arange(12) % n_classes
        splits[split] = SplitArrays(_frames(y, frame_shape, rng), y, group=offset + np.arange(12) % 2,
                                    recording=(1000 * offset + np.arange(12)) if recordings else None)
    write_domain(Path(data_dir) / f"{name}.h5", splits, domain=name, class_names=class_names, provenance="test")
    return Path(data_dir) / f"{name}.h5"


@dataclass
class World:
    root: Path
    data_dir: Path
    runs_dir: Path
    source_dir: Path
    source: Run
    target: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Domains Src (3 classes), Tgt (4 classes, recordings), Tgt3ch, and a trained 2-block run Src."""
    root = tmp_path_factory.mktemp("transfer")
    data_dir, runs_dir = root / "data", root / "runs"
    _write(data_dir, "Src", SOURCE_CLASSES)
    target = _write(data_dir, "Tgt", TARGET_CLASSES, seed=1, recordings=True)
    _write(data_dir, "Tgt3ch", TARGET_CLASSES, frame_shape=(4, 1, 8, 3), seed=2)
    config = TrainConfig(source="Src", data_dir=str(data_dir), runs_dir=str(runs_dir), epochs=2, batch_size=16,
                         lr=LR, patience=0, model=SOURCE_MODEL)
    result = train_source(config, verbose=0)
    return World(root=root, data_dir=data_dir, runs_dir=runs_dir, source_dir=result.run_dir,
                 source=load_run(str(result.run_dir), runs_dir), target=target)


@pytest.fixture(scope="module")
def fake_source(tmp_path_factory):
    """An untrained 2-block source (no training: for the fast tests).

    Its block weights are shifted so that they differ from any fresh
    initialisation: equal weights can only come from restoring them.
    """
    model = build_classifier(SOURCE_MODEL, frame_shape=FRAMES, n_classes=len(SOURCE_CLASSES),
                             mean=np.zeros(2), variance=np.ones(2))
    for block in Backbone(model).blocks:
        block.set_weights([w + 0.5 for w in block.get_weights()])
    return _run(tmp_path_factory.mktemp("fake") / "Fake", SOURCE_MODEL, model)


def _x(n=16, seed=0, frame_shape=FRAMES):
    return np.random.default_rng(seed).normal(size=(n, *frame_shape)).astype(np.float32)


def _build(source, spec, n_classes=len(TARGET_CLASSES)):
    strategy = parse_strategy(spec, len(Backbone(source.model).blocks), head_epochs=1)
    model = build_transfer_model(source, strategy, frame_shape=FRAMES, n_classes=n_classes, mean=np.zeros(2),
                                 variance=np.ones(2))
    return strategy, model


def _layer_weights(model, block, layer):
    return [np.array(w) for w in model.get_layer(block).get_layer(layer).get_weights()]


def _equal(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _snapshot(model):
    return {w.path: np.array(keras.ops.convert_to_numpy(w)) for w in model.weights}


def _paths(model, block, layer, names=None):
    weights = model.get_layer(block_name(block)).get_layer(layer).weights
    return {w.path for w in weights if names is None or w.path.rsplit("/", 1)[-1] in names}


def _head_paths(model):
    return {w.path for layer in Backbone(model).head_layers for w in layer.weights}


def _expected_trainable(model, spec, blocks):
    """Paths the optimizer must train: the head, plus the phase's blocks'
    ConvLSTM weights (restored BatchNorm never trains), or everything trainable
    in the body for scratch."""
    expected = _head_paths(model)
    for index in range(1, len(Backbone(model).blocks) + 1):
        if spec == "scratch":
            expected |= _paths(model, index, "convlstm") | _paths(model, index, "batch_norm", ("gamma", "beta"))
        elif index in blocks:
            expected |= _paths(model, index, "convlstm")
    return expected


# ------------------------------------------------------- strategies as data


@pytest.mark.parametrize("spec, keep, restore, phases", [
    ("freeze", 2, True, (Phase(()),)),
    ("cut:1", 1, True, (Phase(()),)),
    ("cut:2", 2, True, (Phase(()),)),
    ("unfreeze:1", 2, True, (Phase((2,)),)),
    ("unfreeze:2", 2, True, (Phase((1, 2)),)),
    ("finetune", 2, True, (Phase((1, 2)),)),
    ("gradual", 2, True, (Phase((), 3), Phase((1, 2)))),
    ("scratch", 2, False, (Phase((1, 2)),)),
])
def test_parse_strategy(spec, keep, restore, phases):
    strategy = parse_strategy(spec, 2, head_epochs=3)
    assert (strategy.spec, strategy.keep_blocks, strategy.restore, strategy.phases) == (spec, keep, restore, phases)
    assert strategy.slug == spec.replace(":", "")
    assert strategy.body_frozen_throughout == (spec in ("freeze", "cut:1", "cut:2"))


@pytest.mark.parametrize("spec, fragment", [
    ("melt", "unknown strategy 'melt'"),
    ("cut:0", "out of range"),
    ("cut:3", "cut:1..2"),
    ("unfreeze:3", "unfreeze:1..2"),
    ("unfreeze:x", "whole number"),
    ("cut:", "whole number"),
    ("freeze:1", "unknown strategy"),
    ("cut", "unknown strategy"),
    ("", "unknown strategy"),
    ("cut:\uff11", "whole number"),  # a full-width digit, which int() reads as 1
    ("cut:\u0661", "whole number"),  # an Arabic-Indic digit
    ("cut: 1", "whole number"),
    ("cut:1 ", "whole number"),
    ("cut:+1", "whole number"),
    ("unfreeze:1_0", "whole number"),
    ("cut:01", "out of range"),
    ("cut:99999999999999999999", "out of range"),
    (" freeze", "unknown strategy"),
    ("FREEZE", "unknown strategy"),
])
def test_parse_strategy_errors(spec, fragment):
    with pytest.raises(ConfigError) as error:
        parse_strategy(spec, 2)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------ model building


@pytest.mark.parametrize("spec, blocks", [("cut:1", ["block_1"]), ("cut:2", ["block_1", "block_2"]),
                                          ("freeze", ["block_1", "block_2"])])
def test_build_keeps_exactly_the_first_k_blocks_restored(fake_source, spec, blocks):
    _, model = _build(fake_source, spec)
    assert [layer.name for layer in model.layers if layer.name.startswith("block_")] == blocks
    for name in blocks:
        assert _equal(model.get_layer(name).get_weights(), fake_source.model.get_layer(name).get_weights())
    assert model.output_shape == (None, len(TARGET_CLASSES))
    assert model.get_layer("head_softmax").get_weights()[0].shape == (SOURCE_MODEL.head_units, len(TARGET_CLASSES))


def test_scratch_keeps_the_architecture_but_not_the_weights(fake_source):
    _, model = _build(fake_source, "scratch")
    assert [b.name for b in Backbone(model).blocks] == ["block_1", "block_2"]
    for index in (1, 2):
        mine = _layer_weights(model, block_name(index), "convlstm")
        theirs = _layer_weights(fake_source.model, block_name(index), "convlstm")
        assert [w.shape for w in mine] == [w.shape for w in theirs]
        assert not np.array_equal(mine[0], theirs[0])


def test_build_uses_the_given_normalization(fake_source):
    strategy = parse_strategy("freeze", 2)
    model = build_transfer_model(fake_source, strategy, frame_shape=FRAMES, n_classes=4,
                                 mean=np.array([1.5, -2.0]), variance=np.array([4.0, 0.25]))
    mean = np.ravel(keras.ops.convert_to_numpy(model.get_layer("normalize").mean))
    np.testing.assert_allclose(mean, [1.5, -2.0])


def test_channel_mismatch_names_both_shapes(fake_source):
    from types import SimpleNamespace

    from convlstm_tl.evaluation.alignment import check_same_input

    strategy = parse_strategy("freeze", 2)
    target = SimpleNamespace(domain="Tgt3ch", kind="frames", vocab=(), frame_shape=(4, 1, 8, 3))
    with pytest.raises(UserError) as error:
        check_same_input(fake_source.name, fake_source.domain, target, strategy)
    assert "(4, 1, 8, 3)" in str(error.value) and "(4, 1, 8, 2)" in str(error.value)
    check_same_input(fake_source.name, fake_source.domain, SimpleNamespace(**{**vars(target), "frame_shape": FRAMES}),
                     strategy)


@pytest.mark.parametrize("spec", STRATEGIES)
def test_set_phase_makes_exactly_the_phase_blocks_trainable(fake_source, spec):
    strategy, model = _build(fake_source, spec)
    assert [p.trainable_blocks for p in strategy.phases] == [
        blocks if spec != "scratch" else (1, 2) for blocks in PHASE_BLOCKS[spec]]
    for phase, blocks in zip(strategy.phases, PHASE_BLOCKS[spec], strict=True):
        set_phase(model, strategy, phase)
        assert {w.path for w in model.trainable_weights} == _expected_trainable(model, spec, blocks)
        for block in Backbone(model).blocks:
            # Restored BatchNorm stays frozen, so it runs in inference mode.
            assert block.get_layer("batch_norm").trainable == (spec == "scratch")


def test_set_phase_refreezes_after_an_unfrozen_phase(fake_source):
    strategy, model = _build(fake_source, "gradual")
    set_phase(model, strategy, strategy.phases[1])
    set_phase(model, strategy, strategy.phases[0])
    assert {w.path for w in model.trainable_weights} == _head_paths(model)


# -------------------------------------------------------------- optimizer


def _two_dense():
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="b")(keras.layers.Dense(3, name="a")(inputs))
    return keras.Model(inputs, outputs)


def test_layer_rate_adam_scale_zero_freezes_only_the_scaled_layers():
    model = _two_dense()
    model.compile(LayerRateAdam(1e-2, scaled_prefixes=["a/"], scale=0.0), "mse")
    before = _snapshot(model)
    rng = np.random.default_rng(0)
    model.fit(rng.random((32, 4)), rng.random((32, 2)), epochs=2, batch_size=8, verbose=0)
    after = _snapshot(model)
    assert set(before) == {"a/kernel", "a/bias", "b/kernel", "b/bias"}
    for path in ("a/kernel", "a/bias"):
        np.testing.assert_array_equal(after[path], before[path])
    for path in ("b/kernel", "b/bias"):
        assert not np.array_equal(after[path], before[path])


def test_layer_rate_adam_scale_slows_the_scaled_layers():
    rng = np.random.default_rng(1)
    x, y = rng.random((32, 4)), rng.random((32, 2))
    moved = {}
    for scale in (1.0, 0.01):
        keras.utils.set_random_seed(0)
        model = _two_dense()
        model.compile(LayerRateAdam(1e-2, scaled_prefixes=["a/"], scale=scale), "mse")
        before = _snapshot(model)
        model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
        moved[scale] = np.abs(_snapshot(model)["a/kernel"] - before["a/kernel"]).max()
    # One Adam step moves each weight by about lr x scale.
    np.testing.assert_allclose(moved[0.01], moved[1.0] * 0.01, rtol=0.05)


def test_layer_rate_adam_prefix_scales_take_precedence():
    rng = np.random.default_rng(1)
    x, y = rng.random((32, 4)), rng.random((32, 2))
    keras.utils.set_random_seed(0)
    model = _two_dense()
    model.compile(LayerRateAdam(1e-3, scaled_prefixes=["a/", "b/"], scale=0.5, prefix_scales={"b/": 10.0}), "mse")
    before = _snapshot(model)
    model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    after = _snapshot(model)
    # One Adam step moves each weight by about lr x its scale.
    assert np.abs(after["a/kernel"] - before["a/kernel"]).max() == pytest.approx(5e-4, rel=0.05)
    assert np.abs(after["b/kernel"] - before["b/kernel"]).max() == pytest.approx(1e-2, rel=0.05)
    assert LayerRateAdam.from_config(model.optimizer.get_config()).prefix_scales == {"b/": 10.0}


def test_layer_rate_adam_config_round_trip(tmp_path):
    optimizer = LayerRateAdam(2e-3, scaled_prefixes=["block_1/", "block_2/"], scale=0.1, beta_1=0.8)
    config = optimizer.get_config()
    assert config["scaled_prefixes"] == ["block_1/", "block_2/"] and config["scale"] == 0.1
    for clone in (LayerRateAdam.from_config(config),
                  keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))):
        assert isinstance(clone, LayerRateAdam)
        assert clone.scaled_prefixes == ("block_1/", "block_2/") and clone.scale == 0.1
        assert clone.get_config() == config
    # A model saved with it reloads with it.
    model = _two_dense()
    model.compile(optimizer, "mse")
    model.fit(np.ones((4, 4)), np.ones((4, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(reloaded.optimizer, LayerRateAdam)
    assert reloaded.optimizer.scaled_prefixes == ("block_1/", "block_2/") and reloaded.optimizer.scale == 0.1


@pytest.mark.parametrize("body_lr, block_2_moves", [(0.0, False), (LR, True)])
def test_compile_for_phase_gives_trainable_restored_blocks_the_body_rate(fake_source, body_lr, block_2_moves):
    strategy, model = _build(fake_source, "unfreeze:1", n_classes=2)
    phase = strategy.phases[0]
    set_phase(model, strategy, phase)
    compile_for_phase(model, strategy, phase, lr=LR, body_lr=body_lr)
    assert model.optimizer.scaled_prefixes == ("block_2/",)
    assert model.optimizer.scale == body_lr / LR
    before = _snapshot(model)
    model.fit(_x(16), np.arange(16) % 2, epochs=1, batch_size=8, verbose=0)
    after = _snapshot(model)
    conv_2 = _paths(model, 2, "convlstm")
    assert any(not np.array_equal(before[p], after[p]) for p in conv_2) == block_2_moves
    for path in _paths(model, 1, "convlstm") | _paths(model, 1, "batch_norm") | _paths(model, 2, "batch_norm"):
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    assert not np.array_equal(before["head_softmax/kernel"], after["head_softmax/kernel"])


# ----------------------------------------------------------- feature cache


@pytest.mark.parametrize("spec, keep", [("freeze", 2), ("cut:1", 1)])
def test_cached_features_and_head_predict_like_the_full_model(fake_source, spec, keep):
    strategy, model = _build(fake_source, spec)
    set_phase(model, strategy, strategy.phases[0])
    x = _x(10, seed=3)
    features = Backbone(model).body(keep).predict(x, verbose=0)
    assert features.shape == (10, *model.get_layer(block_name(keep)).output.shape[1:])
    # A second model whose head got the first one's head weights.
    _, other = _build(fake_source, spec)
    for layer in Backbone(model).head_layers:
        other.get_layer(layer.name).set_weights(layer.get_weights())
    cached = Backbone(model).head(features.shape[1:]).predict(features, verbose=0)
    np.testing.assert_allclose(cached, model.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(cached, other.predict(x, verbose=0), atol=1e-5)
    # The head model shares (not copies) the head's weights.
    shared = {id(w) for w in Backbone(model).head(features.shape[1:]).weights}
    assert shared == {id(w) for layer in Backbone(model).head_layers for w in layer.weights}


def test_frozen_body_runs_in_inference_mode(fake_source):
    strategy, model = _build(fake_source, "freeze")
    set_phase(model, strategy, strategy.phases[0])
    body = Backbone(model).body(2)
    x = _x(8, seed=5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(body([x], training=True)),
                               keras.ops.convert_to_numpy(body([x], training=False)), atol=1e-6)


def test_frozen_body_with_block_dropout_runs_in_inference_mode():
    config = ModelConfig(filters=(4, 4), head_units=8, block_dropout=0.5)
    model = build_classifier(config, frame_shape=FRAMES, n_classes=3, mean=np.zeros(2), variance=np.ones(2))
    source = _run("Src", config, model)
    strategy, model = _build(source, "freeze")
    set_phase(model, strategy, strategy.phases[0])
    body = Backbone(model).body(2)
    x = _x(8, seed=5)
    # What fit() feeds the head (training=True) must be what the cache holds (training=False).
    np.testing.assert_allclose(keras.ops.convert_to_numpy(body([x], training=True)),
                               keras.ops.convert_to_numpy(body([x], training=False)), atol=1e-6)


# ------------------------------------------------------------ real transfers


@dataclass
class PhaseRecord:
    trained_paths: set  # what the fitted model (full or head-only) trains
    cached: bool  # the fitted model was the head model over cached features
    prefixes: tuple
    scale: float
    before: dict  # the full model's weights before this phase's fit
    after: dict
    epochs: int


@dataclass
class Record:
    result: object
    phases: list
    config: dict


def _recorded_transfer(world, spec, **overrides):
    """Run ``transfer()`` with ``set_phase`` and ``fit`` wrapped to record every phase."""
    models, phases = [], []

    def recording_set_phase(model, strategy, phase, **kwargs):
        models.append(model)
        return set_phase(model, strategy, phase, **kwargs)

    def recording_fit(trained, train, val, **kwargs):
        full = models[-1]
        before = _snapshot(full)
        result = real_fit(trained, train, val, **kwargs)
        phases.append(PhaseRecord(
            trained_paths={w.path for w in trained.trainable_weights}, cached=trained is not full,
            prefixes=trained.optimizer.scaled_prefixes, scale=trained.optimizer.scale, before=before,
            after=_snapshot(full), epochs=len(result.history["loss"])))
        return result

    real_fit = transfer_module.fit
    runs_dir = world.root / f"runs-{spec.replace(':', '')}-{len(list(world.root.iterdir()))}"
    settings = dict(target="Tgt", source_run=str(world.source_dir), strategy=spec, data_dir=str(world.data_dir),
                    runs_dir=str(runs_dir), epochs=2, head_epochs=1, batch_size=16, lr=LR, patience=0)
    settings.update(overrides)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transfer_module, "set_phase", recording_set_phase)
        patch.setattr(transfer_module, "fit", recording_fit)
        result = transfer(TransferConfig(**settings), verbose=0)
    return Record(result=result, phases=phases, config=json.loads((result.run_dir / "config.json").read_text()))


@pytest.fixture(scope="module")
def run_transfer(world):
    """``run_transfer(spec, **overrides)``: a recorded transfer, run once per module per arguments."""
    done = {}

    def run(spec, **overrides):
        overrides = {**STRATEGY_OVERRIDES.get(spec, {}), **overrides}
        key = (spec, tuple(sorted(overrides.items())))
        if key not in done:
            done[key] = _recorded_transfer(world, spec, **overrides)
        return done[key]

    return run


def _source_layer(world, index, layer):
    return _layer_weights(world.source.model, block_name(index), layer)


@pytest.mark.slow
@pytest.mark.parametrize("spec", STRATEGIES)
def test_each_phase_trains_exactly_what_the_strategy_says(run_transfer, spec):
    record = run_transfer(spec)
    model = record.result.model
    assert len(record.phases) == len(PHASE_BLOCKS[spec])
    for phase, blocks in zip(record.phases, PHASE_BLOCKS[spec]):
        assert phase.cached == (spec in CACHED)
        assert phase.trained_paths == _expected_trainable(model, spec, blocks)
        if spec == "scratch":
            assert phase.prefixes == ()
        else:
            assert phase.prefixes == tuple(f"block_{i}/" for i in blocks)
            assert phase.scale == pytest.approx(1.0)  # body_lr defaults to lr
    assert [p.epochs for p in record.phases] == ([1, 1] if spec == "gradual" else [2])
    assert len(record.result.history["loss"]) == 2
    assert record.result.metrics["feature_cache"] == (spec in CACHED)
    assert record.config["strategy"]["feature_cache"] == (spec in CACHED)


@pytest.mark.slow
@pytest.mark.parametrize("spec", STRATEGIES)
def test_restored_strategies_start_from_the_source_weights(world, run_transfer, spec):
    start = run_transfer(spec).phases[0].before
    kept = 1 if spec == "cut:1" else 2
    assert not any(path.startswith(f"block_{kept + 1}/") for path in start)
    for index in range(1, kept + 1):
        for layer in ("convlstm", "batch_norm"):
            paths = [w.path for w in run_transfer(spec).result.model.get_layer(block_name(index))
                     .get_layer(layer).weights]
            mine = [start[p] for p in paths]
            if spec == "scratch":
                if layer == "convlstm":
                    assert not np.array_equal(mine[0], _source_layer(world, index, layer)[0])
            else:
                assert _equal(mine, _source_layer(world, index, layer)), f"block_{index}/{layer} not restored"


@pytest.mark.slow
@pytest.mark.parametrize("spec", STRATEGIES)
def test_frozen_weights_are_bit_identical_and_trained_blocks_move(world, run_transfer, spec):
    model = run_transfer(spec).result.model
    trained = set().union(*PHASE_BLOCKS[spec])
    for block in Backbone(model).blocks:
        index = int(block.name.split("_")[1])
        conv, source_conv = _layer_weights(model, block.name, "convlstm"), _source_layer(world, index, "convlstm")
        bn, source_bn = _layer_weights(model, block.name, "batch_norm"), _source_layer(world, index, "batch_norm")
        if spec == "scratch":
            assert not np.array_equal(conv[0], source_conv[0])
        elif index in trained:
            assert not np.array_equal(conv[0], source_conv[0]), f"{block.name} should have trained"
            # gamma, beta, moving_mean, moving_variance: restored BatchNorm never moves.
            assert _equal(bn, source_bn), f"{block.name} batch norm moved"
        else:
            assert _equal(conv, source_conv), f"frozen {block.name} changed"
            assert _equal(bn, source_bn), f"frozen {block.name} batch norm moved"


@pytest.mark.slow
@pytest.mark.parametrize("spec", STRATEGIES)
def test_head_has_the_targets_classes(run_transfer, spec):
    record = run_transfer(spec)
    assert record.result.model.output_shape == (None, len(TARGET_CLASSES))
    assert record.result.model.get_layer("head_softmax").get_weights()[0].shape == (8, len(TARGET_CLASSES))
    assert set(record.result.metrics["per_class"]) == set(TARGET_CLASSES)
    assert record.config["domain"]["class_names"] == list(TARGET_CLASSES)


@pytest.mark.slow
def test_gradual_changes_the_body_only_in_its_second_phase(run_transfer):
    head_only, unfrozen = run_transfer("gradual").phases
    body = [p for p in head_only.before if p.startswith("block_")]
    assert body
    for path in body:
        np.testing.assert_array_equal(head_only.after[path], head_only.before[path], err_msg=path)
    assert not np.array_equal(head_only.after["head_softmax/kernel"], head_only.before["head_softmax/kernel"])
    model = run_transfer("gradual").result.model
    for index in (1, 2):
        conv = sorted(_paths(model, index, "convlstm"))
        assert any(not np.array_equal(unfrozen.after[p], unfrozen.before[p]) for p in conv), f"block_{index}"
        for path in _paths(model, index, "batch_norm"):
            np.testing.assert_array_equal(unfrozen.after[path], unfrozen.before[path], err_msg=path)


@pytest.mark.slow
def test_cut_run_keeps_block_1_only(run_transfer):
    record = run_transfer("cut:1")
    assert [layer.name for layer in record.result.model.layers if layer.name.startswith("block_")] == ["block_1"]
    assert record.config["model"]["filters"] == [4]
    assert record.config["strategy"]["keep_blocks"] == 1
    reloaded = keras.saving.load_model(record.result.run_dir / "model.keras")
    assert [layer.name for layer in reloaded.layers if layer.name.startswith("block_")] == ["block_1"]


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["freeze", "unfreeze:1"])
def test_run_records_source_strategy_and_samples(world, run_transfer, spec):
    record = run_transfer(spec)
    assert record.result.run_dir.name == f"Src-Tgt-{spec.replace(':', '')}"
    assert record.config["kind"] == "transfer"
    assert record.config["source_run"] == str(world.source_dir.resolve())
    assert record.config["strategy"]["spec"] == spec
    assert record.config["config"]["strategy"] == spec
    assert record.config["target_samples"] == {"n": 48, "of": 48, "indices": list(range(48))}


@pytest.mark.slow
def test_cached_run_saves_a_model_that_reloads_and_predicts_alike(world, run_transfer):
    result = run_transfer("freeze").result
    assert result.metrics["feature_cache"] is True
    x, _ = read_split(world.target, "test")
    reloaded = keras.saving.load_model(result.run_dir / "model.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.slow
def test_cache_changes_speed_not_results(world, run_transfer):
    cached = run_transfer("freeze")
    uncached = run_transfer("freeze", cache_features=False)
    assert not uncached.phases[0].cached and uncached.result.metrics["feature_cache"] is False
    # Same seed, head initialisation and sample order: the same head is trained.
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(uncached.result.history[key], cached.result.history[key], rtol=1e-4)
    x, _ = read_split(world.target, "test")
    np.testing.assert_allclose(uncached.result.model.predict(x, verbose=0),
                               cached.result.model.predict(x, verbose=0), atol=1e-5)


def _normalize_mean(model):
    return np.ravel(keras.ops.convert_to_numpy(model.get_layer("normalize").mean))


@pytest.mark.slow
def test_normalization_from_target_by_default_or_from_source(world, run_transfer):
    source_mean = json.loads((world.source_dir / "config.json").read_text())["normalization"]["mean"]
    target_mean, _ = channel_stats(world.target, "train")
    assert not np.allclose(source_mean, target_mean, atol=1e-3)

    own = run_transfer("freeze")
    np.testing.assert_allclose(_normalize_mean(own.result.model), target_mean, rtol=1e-6)
    assert own.config["normalization"]["from"] == "target"

    kept = run_transfer("scratch")
    assert STRATEGY_OVERRIDES["scratch"] == {"normalization": "source"}
    np.testing.assert_allclose(_normalize_mean(kept.result.model), source_mean, rtol=1e-6)
    assert kept.config["normalization"]["from"] == "source"
    np.testing.assert_allclose(kept.config["normalization"]["mean"], source_mean, rtol=1e-6)


@pytest.mark.slow
def test_gradual_needs_more_epochs_than_head_epochs(world):
    config = TransferConfig(target="Tgt", source_run=str(world.source_dir), strategy="gradual",
                            data_dir=str(world.data_dir), runs_dir=str(world.root / "runs-refused"), epochs=2,
                            head_epochs=2)
    with pytest.raises(ConfigError, match="head_epochs=2"):
        transfer(config, verbose=0)
    assert not (world.root / "runs-refused" / "Src-Tgt-gradual").exists()


@pytest.mark.slow
def test_load_run_by_name_and_refuses_incomplete_runs(world, tmp_path):
    by_name = load_run("Src", world.runs_dir)
    assert by_name.path == world.source_dir and by_name.n_blocks == 2 and by_name.frame_shape == FRAMES
    broken = tmp_path / "Broken"
    broken.mkdir()
    (broken / "config.json").write_text((world.source_dir / "config.json").read_text())
    with pytest.raises(RunError, match="model.keras"):
        load_run("Broken", tmp_path)
    with pytest.raises(RunError, match="not found"):
        load_run("Nowhere", tmp_path)


# ----------------------------------------------------------------------- CLI


def test_transfer_flags_reach_the_config():
    config = build_transfer_config(parse_args([
        "--transfer", "Tgt", "--from", "Src", "--strategy", "gradual", "--body-lr", "0.0005", "--head-epochs",
        "3", "--normalization", "source", "--target-per-class", "5", "--no-cache-features"]))
    assert (config.target, config.source_run, config.strategy) == ("Tgt", "Src", "gradual")
    assert (config.body_lr, config.head_epochs, config.normalization) == (0.0005, 3, "source")
    assert (config.target_fraction, config.target_per_class, config.cache_features) == (None, 5, False)
    default = build_transfer_config(parse_args(["--transfer", "Tgt", "--from", "Src", "--target-fraction", "0.5"]))
    assert default.cache_features is True and default.target_fraction == 0.5
    assert default.effective_body_lr == default.lr


_COMMON = ["--data-dir", "data", "--runs-dir", "runs", "--epochs", "1", "--batch-size", "16", "--quiet"]
_TO_TGT = ["--transfer", "Tgt", "--from", "Src"]
CLI_ERRORS = {
    "unknown-strategy": ([*_TO_TGT, "--strategy", "melt"], ["unknown strategy", "melt"], "Src-Tgt-melt"),
    "k-out-of-range": ([*_TO_TGT, "--strategy", "cut:3"], ["cut:3", "2 blocks", "cut:1..2"], "Src-Tgt-cut3"),
    "missing-run": (["--transfer", "Tgt", "--from", "Nowhere"], ["Nowhere", "not found"], "Nowhere-Tgt-freeze"),
    "run-without-model": (["--transfer", "Tgt", "--from", "Broken"], ["Broken", "model.keras"],
                          "Broken-Tgt-freeze"),
    "other-channels": (["--transfer", "Tgt3ch", "--from", "Src"], ["(4, 1, 8, 3)", "(4, 1, 8, 2)"],
                       "Src-Tgt3ch-freeze"),
    "fraction-above-1": ([*_TO_TGT, "--target-fraction", "1.5"], ["target_fraction", "1.5"], "Src-Tgt-freeze"),
    "fraction-and-per-class": ([*_TO_TGT, "--target-fraction", "0.5", "--target-per-class", "3"],
                               ["--target-fraction", "--target-per-class"], "Src-Tgt-freeze"),
    "architecture-flag": ([*_TO_TGT, "--filters", "8"], ["--filters", "source run"], "Src-Tgt-freeze"),
    "strategy-with-source": (["--source", "Src", "--strategy", "freeze"], ["--strategy", "--transfer"], None),
    "no-labels-no-adapt": ([*_TO_TGT, "--target-fraction", "0"], ["--target-fraction", "--adapt"], "Src-Tgt-finetune"),
    "adapter-on-scratch": ([*_TO_TGT, "--strategy", "scratch", "--adapter", "channel"], ["--adapter", "scratch"],
                           "Src-Tgt-scratch"),
    "no-labels-other-classes": ([*_TO_TGT, "--target-fraction", "0", "--adapt", "coral"],
                                ["--target-fraction", "source's classes"], "Src-Tgt-finetune"),
}
CLI_OK = [*_TO_TGT, "--strategy", "cut:1", "--target-per-class", "6", "--seed", "4"]


@pytest.fixture(scope="module")
def cli_runs(world):
    """Start every CLI case at once (each pays the backend's start-up) and hand out their results."""
    broken = world.runs_dir / "Broken"
    broken.mkdir()
    (broken / "config.json").write_text((world.source_dir / "config.json").read_text())
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("CONVLSTM_TL_DATA", None)
    cases = {name: args for name, (args, _, _) in CLI_ERRORS.items()}
    cases["ok"] = CLI_OK
    processes = {name: subprocess.Popen([sys.executable, "-m", "convlstm_tl.train", *args, *_COMMON],
                                        cwd=world.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
                 for name, args in cases.items()}
    results = {}

    def result(name):
        if name not in results:
            out, err = processes[name].communicate(timeout=300)
            results[name] = (processes[name].returncode, out, err)
        return results[name]

    yield result
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CLI_ERRORS))
def test_cli_user_errors_are_one_line_and_exit_2(world, cli_runs, case):
    _, fragments, run_name = CLI_ERRORS[case]
    returncode, _, stderr = cli_runs(case)
    assert returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{PROG}: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    if run_name:
        assert not (world.runs_dir / run_name).exists()


@pytest.mark.slow
def test_cli_transfer_writes_the_named_run(world, cli_runs):
    returncode, stdout, stderr = cli_runs("ok")
    assert returncode == 0, stderr
    run_dir = world.runs_dir / "Src-Tgt-cut1"
    assert str(Path("runs") / "Src-Tgt-cut1") in stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["source_run"] == str(world.source_dir.resolve())
    assert config["strategy"]["spec"] == "cut:1" and config["strategy"]["keep_blocks"] == 1
    labels, _ = read_labels(world.target, "train")
    expected = subsample(labels, read_sampling_units(world.target, "train"), per_class=6, seed=4)
    assert config["target_samples"]["indices"] == expected.tolist()
    assert config["target_samples"]["n"] == len(expected) < config["target_samples"]["of"] == 48
    assert (run_dir / "model.keras").is_file() and (run_dir / "metrics.json").is_file()


@pytest.mark.slow
def test_cli_errors_leave_nothing_behind(world, cli_runs):
    for name in [*CLI_ERRORS, "ok"]:
        cli_runs(name)
    assert sorted(p.name for p in world.runs_dir.iterdir()) == ["Broken", "Src", "Src-Tgt-cut1"]


# ------------------------------------------------------------ head from source


def _with_classes(source, class_names):
    return _run(source.path, source.model_config, source.model, class_names)


def test_head_init_source_starts_as_the_source_model(fake_source):
    """Same classes, whole body frozen, same normalization: before training it predicts what the source does."""
    source = _with_classes(fake_source, SOURCE_CLASSES)
    strategy, model = _build(source, "freeze", n_classes=len(SOURCE_CLASSES))
    init_head_from_source(model, source, strategy, SOURCE_CLASSES)
    for layer in Backbone(model).head_layers:
        assert _equal(layer.get_weights(), source.model.get_layer(layer.name).get_weights())
    x = _x()
    np.testing.assert_allclose(model.predict(x, verbose=0), source.model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("spec, classes, fragment", [
    ("freeze", SOURCE_CLASSES[::-1], "same order"),
    ("freeze", TARGET_CLASSES, "same order"),
    ("scratch", SOURCE_CLASSES, "restores the body"),
])
def test_head_init_source_refuses_what_it_cannot_mean(fake_source, spec, classes, fragment):
    source = _with_classes(fake_source, SOURCE_CLASSES)
    strategy, model = _build(source, spec, n_classes=len(classes))
    with pytest.raises(ConfigError, match=fragment):
        init_head_from_source(model, source, strategy, classes)


@pytest.mark.slow
def test_head_init_source_is_recorded_and_trains(world):
    """A transfer to a domain with the source's classes, from the source's head, writes a complete run."""
    result = transfer(TransferConfig(target="Src", source_run=str(world.source_dir), strategy="freeze",
                                     head_init="source", data_dir=str(world.data_dir),
                                     runs_dir=str(world.root / "runs-head-init"), epochs=1, batch_size=16, lr=LR,
                                     patience=0), verbose=0)
    recorded = json.loads((result.run_dir / "config.json").read_text())
    assert recorded["config"]["head_init"] == "source"
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and result.metrics["source_test"]["domain"] == "Src"


@pytest.mark.slow
def test_head_init_source_keeps_the_start_when_no_epoch_beats_it(world):
    """A learning rate that wrecks the head in one step: the run keeps the source's head, not epoch 1's."""
    result = transfer(TransferConfig(target="Src", source_run=str(world.source_dir), strategy="freeze",
                                     head_init="source", data_dir=str(world.data_dir),
                                     runs_dir=str(world.root / "runs-keep-start"), epochs=2, batch_size=16, lr=1e3,
                                     patience=0), verbose=0)
    source_model = load_model(world.source_dir / "model.keras")
    for layer in Backbone(result.model).head_layers:
        assert _equal(layer.get_weights(), source_model.get_layer(layer.name).get_weights()), layer.name
    assert len(result.history["val_loss"]) == 2
