"""Joint training, the channel adapter, and transfers that read no target label."""

import json
import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from conftest import make_splits
from convlstm_tl import backend
from convlstm_tl.cli.train import build_transfer_config, parse_args
from convlstm_tl.config import ModelConfig, TrainConfig, TransferConfig
from convlstm_tl.data.format import SplitArrays
from convlstm_tl.data.paired import FrameRescaling, PairedSequence, ValidationInputs
from convlstm_tl.data.sequence import ArraySequence, DomainSequence
from convlstm_tl.data.stats import channel_stats
from convlstm_tl.data.writer import write_domain
from convlstm_tl.errors import ConfigError
from convlstm_tl.evaluation.crossdomain import evaluate_runs
from convlstm_tl.evaluation.report import format_markdown
from convlstm_tl.models.backbone import Backbone
from convlstm_tl.models.classifier import build_classifier, load_model
from convlstm_tl.models.paired import paired_model
from convlstm_tl.runs.resolve import load_run
from convlstm_tl.strategies.recipe import build_transfer_model, compile_for_phase, init_head_from_source, set_phase
from convlstm_tl.strategies.registry import parse_strategy
from convlstm_tl.training.adaptation import adapter_record
from convlstm_tl.training.plans import plan_transfer
from convlstm_tl.training.source import train_source
from convlstm_tl.training.transfer import transfer

FRAMES = (4, 1, 8, 3)
MODEL = ModelConfig(filters=(4, 4), head_units=8)


def _write(data_dir, name, class_names, *, seed, transform=None):
    splits = make_splits(FRAMES, n_classes=len(class_names), seed=seed)
    if transform is not None:
        splits = {split: SplitArrays(x=transform(arrays.x), y=arrays.y, group=arrays.group)
                  for split, arrays in splits.items()}
    path = Path(data_dir) / f"{name}.h5"
    write_domain(path, splits, domain=name, class_names=class_names, provenance="synthetic test data")
    return path


def _centred(x):
    """Class means -1, 0, 1 on channel 0: a model must read its sign."""
    return x - np.array([1.0, 0.0, 0.0], dtype=np.float32)


def _mirror(x):
    """The target sensor: channel 0 negated, channels 1 and 2 swapped."""
    x = _centred(x)
    return np.stack([-x[..., 0], x[..., 2], x[..., 1]], axis=-1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Src (3 classes), Mirror (Src's classes, channels mirrored), Two (2 other classes), a trained run Src."""
    root = tmp_path_factory.mktemp("joint")
    data_dir, runs_dir = root / "data", root / "runs"
    _write(data_dir, "Src", ("walk", "run", "sit"), seed=0, transform=_centred)
    _write(data_dir, "Mirror", ("walk", "run", "sit"), seed=1, transform=_mirror)
    _write(data_dir, "Two", ("a", "b"), seed=2)
    train_source(TrainConfig(source="Src", data_dir=str(data_dir), runs_dir=str(runs_dir), epochs=8, batch_size=16,
                             patience=0, model=MODEL), verbose=0)
    return root, data_dir, runs_dir


def _transfer(world, **settings):
    root, data_dir, runs_dir = world
    config = TransferConfig(**{"target": "Mirror", "source_run": "Src", "data_dir": str(data_dir),
                               "runs_dir": str(runs_dir), "epochs": 2, "patience": 0, "batch_size": 16,
                               "overwrite": True, **settings})
    return transfer(config, verbose=0)


def _fake_source():
    model = build_classifier(MODEL, frame_shape=FRAMES, n_classes=3, mean=np.zeros(3), variance=np.ones(3))

    class Source:
        pass

    source = Source()
    source.model, source.model_config = model, MODEL
    return source


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize("settings, fragment", [
    ({"target_fraction": 0.0}, "give adapt"),
    ({"target_fraction": 0.0, "adapt": "coral", "strategy": "freeze"}, "nothing to train"),
    ({"target_fraction": 0.0, "adapt": "coral", "strategy": "joint"}, "joint trains on the target's labels"),
    ({"adapter": "channel", "strategy": "scratch"}, "scratch restores none"),
    ({"adapt": "adabn", "strategy": "scratch"}, "scratch restores none"),
    ({"target_weight": 2.0}, "joint training"),
    ({"adapt": "coral", "adapt_weight": 0.0}, "adapt_weight"),
    ({"adapter": "rotation"}, "adapter"),
    ({"adapt": "tca"}, "adapt"),
])
def test_adaptation_settings_are_checked_in_one_line(settings, fragment):
    config = TransferConfig(target="T", source_run="S", **settings)
    with pytest.raises(ConfigError, match=fragment):
        config.validate()


def test_adaptation_flags_reach_the_config():
    config = build_transfer_config(parse_args([
        "--transfer", "Tgt", "--from", "Src", "--strategy", "joint", "--adapter", "channel", "--adapt", "mmd",
        "--adapt-weight", "0.5", "--target-weight", "2", "--target-fraction", "0.1"]))
    assert (config.strategy, config.adapter, config.adapt) == ("joint", "channel", "mmd")
    assert (config.adapt_weight, config.target_weight, config.target_fraction) == (0.5, 2.0, 0.1)
    config.validate()
    default = TransferConfig()
    assert (default.adapter, default.adapt, default.target_weight) == ("none", "none", 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("settings, name", [
    ({}, "Src-Mirror-finetune"),
    ({"strategy": "freeze", "adapter": "channel"}, "Src-Mirror-freeze-adapter"),
    ({"adapt": "adabn"}, "Src-Mirror-finetune-adabn"),
    ({"strategy": "cut:1", "adapter": "channel", "adapt": "coral"}, "Src-Mirror-cut1-adapter-coral"),
])
def test_adapted_runs_are_named_apart_from_plain_ones(world, settings, name):
    _, data_dir, runs_dir = world
    plan = plan_transfer(TransferConfig(target="Mirror", source_run="Src", data_dir=str(data_dir),
                                        runs_dir=str(runs_dir), **settings))
    assert plan.name == name


@pytest.mark.slow
def test_a_transfer_without_target_labels_refuses_other_classes(world):
    with pytest.raises(ConfigError, match="source's classes"):
        _transfer(world, target="Two", strategy="finetune", adapt="coral", target_fraction=0.0)


# --------------------------------------------------------------- the adapter


def test_an_untrained_adapter_predicts_exactly_as_without_it():
    source = _fake_source()
    strategy = parse_strategy("freeze", 2)
    x = np.random.default_rng(0).normal(size=(8, *FRAMES)).astype(np.float32)
    plain, adapted = (build_transfer_model(source, strategy, frame_shape=FRAMES, n_classes=3, mean=np.ones(3),
                                           variance=np.full(3, 2.0), adapter=adapter) for adapter in (False, True))
    Backbone(adapted).head_layers[1].set_weights(Backbone(plain).head_layers[1].get_weights())
    Backbone(adapted).head_layers[-1].set_weights(Backbone(plain).head_layers[-1].get_weights())
    np.testing.assert_array_equal(plain.predict(x, verbose=0), adapted.predict(x, verbose=0))
    assert adapter_record(adapted)["distance_from_identity"] == 0.0
    assert adapter_record(plain) is None


@pytest.mark.slow
def test_the_adapter_learns_a_mirrored_sensor(world):
    """Target channel 0 is the source's negated: with the source's body and head fixed, the adapter learns the flip."""
    _, data_dir, runs_dir = world
    source = load_run("Src", runs_dir)
    strategy = parse_strategy("freeze", 2)
    target = DomainSequence(data_dir / "Mirror.h5", "train", batch_size=16, shuffle=True)
    mean, variance = channel_stats(data_dir / "Mirror.h5", "train")
    with backend.seeded(0):
        model = build_transfer_model(source, strategy, frame_shape=FRAMES, n_classes=3, mean=mean, variance=variance,
                                     adapter=True)
        init_head_from_source(model, source, strategy, ["walk", "run", "sit"])
        set_phase(model, strategy, strategy.phases[0], train_head=False)
        assert [w.path for w in model.trainable_weights] == ["adapter/kernel", "adapter/bias"]
        compile_for_phase(model, strategy, strategy.phases[0], lr=0.05, body_lr=0.0)
        before = model.evaluate(target, verbose=0, return_dict=True)["accuracy"]
        model.fit(target, epochs=30, verbose=0)
    record = adapter_record(model)
    assert record["nearest_signed_permutation"][0] == [0, -1]  # body input 0 <- minus target channel 0
    assert model.evaluate(target, verbose=0, return_dict=True)["accuracy"] > before


@pytest.mark.slow
def test_the_sign_search_finds_the_mirror_without_a_label(world):
    """With no target label, the adapter's start is the sign flip that makes the source's head informative."""
    runs = {init: _transfer(world, strategy="freeze", adapter="channel", adapter_init=init, adapt="adabn",
                            target_fraction=0.0, name=f"signs-{init}") for init in ("identity", "signs")}
    start = json.loads((runs["signs"].run_dir / "adapter.json").read_text())["start"]
    assert start["signs"][0] == -1 and start["patterns_scored"] == 8
    assert start["score"] < start["identity_score"]
    assert json.loads((runs["identity"].run_dir / "adapter.json").read_text())["start"] == "identity"
    assert runs["signs"].metrics["accuracy"] > runs["identity"].metrics["accuracy"]
    # Forgetting stays visible, each row naming what the transfer added to its strategy.
    _, data_dir, runs_dir = world
    evaluation = evaluate_runs([runs_dir / "Src", runs["signs"].run_dir], ["Src", "Mirror"], data_dir=data_dir,
                               progress=False)
    assert "| signs-signs | freeze + adapter (signs) + adabn, no target label | Src | Src |" in format_markdown(
        evaluation)


@pytest.mark.slow
def test_the_sign_search_needs_an_adapter_and_the_sources_classes(world):
    with pytest.raises(ConfigError, match="add adapter channel"):
        TransferConfig(target="T", source_run="S", adapter_init="signs").validate()
    with pytest.raises(ConfigError, match="source's classes"):
        _transfer(world, target="Two", adapter="channel", adapter_init="signs", target_fraction=0.5)


# ---------------------------------------------------------- joint training


def test_paired_sequence_samples_both_domains_and_repeats_itself():
    rng = np.random.default_rng(0)
    target = ArraySequence(rng.normal(size=(10, *FRAMES)), np.arange(10) % 3, batch_size=4, shuffle=True, seed=1)
    source = ArraySequence(rng.normal(size=(25, *FRAMES)), np.arange(25) % 3, batch_size=4, shuffle=True, seed=1,
                           class_weight=np.array([1.0, 2.0, 3.0]))
    rescale = FrameRescaling(from_mean=np.zeros(3), from_variance=np.ones(3), to_mean=np.ones(3),
                             to_variance=np.full(3, 4.0))
    paired = PairedSequence(target, source=source, source_labels=True, source_transform=rescale, labelled_weight=2.0)
    seen = []
    for epoch in range(3):
        paired.set_epoch(epoch)
        for index in range(len(paired)):
            inputs, y, weights = paired[index]
            assert set(inputs) == {"frames", "source_frames", "source_labels", "source_weights"}
            np.testing.assert_array_equal(weights, 2.0)
            np.testing.assert_array_equal(inputs["source_weights"], np.array([1.0, 2.0, 3.0])[inputs["source_labels"]])
            seen.append(inputs["source_frames"])
    # The source stream's first epoch (7 batches): every source sample once, rescaled to mean 1 and std 2.
    frames = np.concatenate(seen)[:25]
    np.testing.assert_allclose(np.sort((frames - 1) / 2, axis=None), np.sort(source.x, axis=None), atol=1e-5)
    paired.set_epoch(1)
    again = paired[1][0]["source_frames"]
    np.testing.assert_array_equal(again, seen[len(paired) + 1])


def test_validation_inputs_repeat_the_frames_for_the_other_inputs():
    val = ArraySequence(np.ones((5, *FRAMES)), np.zeros(5, int), batch_size=5)
    inputs, y = ValidationInputs(val, ["frames", "source_frames", "source_labels", "source_weights"])[0]
    np.testing.assert_array_equal(inputs["source_frames"], inputs["frames"])
    np.testing.assert_array_equal(inputs["source_weights"], 0.0)


def test_paired_model_gives_other_classes_a_source_head_of_their_own():
    source = _fake_source()
    model = build_transfer_model(source, parse_strategy("joint", 2), frame_shape=FRAMES, n_classes=2,
                                 mean=np.zeros(3), variance=np.ones(3))
    paired = paired_model(model, with_source=True, source_labels=True, source_classes=3, source_model=source.model)
    head = paired.get_layer("source_head_softmax")
    assert head.units == 3
    for name in ("dense", "softmax"):
        for mine, theirs in zip(paired.get_layer(f"source_head_{name}").get_weights(),
                                source.model.get_layer(f"head_{name}").get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    # The classifier's own weights are shared, not copied.
    shared = {id(w) for w in model.weights}
    assert shared <= {id(w) for w in paired.weights}
    assert paired.output_shape == (None, 2)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["Mirror", "Two"])
def test_joint_trains_on_both_domains_and_saves_the_target_head(world, target):
    result = _transfer(world, target=target, strategy="joint", target_fraction=0.5, name=f"joint-{target}")
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["strategy"]["with_source_data"] is True
    assert record["strategy"]["source_data"].endswith("Src.h5")
    saved = load_model(result.run_dir / "model.keras")
    n_classes = 3 if target == "Mirror" else 2
    assert saved.output_shape == (None, n_classes)
    assert not [layer for layer in saved.layers if layer.name.startswith("source_head")]
    # The body trained (it is fine-tuned on both domains).
    source = load_run("Src", world[2])
    assert not np.array_equal(saved.get_layer("block_1").get_weights()[0],
                              source.model.get_layer("block_1").get_weights()[0])


@pytest.mark.slow
def test_joint_refuses_in_one_line_when_the_source_data_is_gone(world, tmp_path):
    _, data_dir, runs_dir = world
    run = tmp_path / "runs" / "Moved"
    shutil.copytree(runs_dir / "Src", run)
    record = json.loads((run / "config.json").read_text())
    record["domain"]["path"] = str(tmp_path / "gone" / "Src.h5")
    (run / "config.json").write_text(json.dumps(record))
    (tmp_path / "data").mkdir()
    shutil.copy(data_dir / "Mirror.h5", tmp_path / "data" / "Mirror.h5")
    with pytest.raises(ConfigError, match="joint trains on the source's training data, but source run Moved's"
                                          " domain file is gone"):
        plan_transfer(TransferConfig(target="Mirror", source_run=str(run), data_dir=str(tmp_path / "data"),
                                     runs_dir=str(tmp_path / "runs"), strategy="joint", target_fraction=0.5))


# ------------------------------------------------------- no target labels


def _poisoned_copy(world, name):
    """Mirror with every train and val label replaced by a wrong one."""
    _, data_dir, _ = world
    path = data_dir / f"{name}.h5"
    shutil.copy(data_dir / "Mirror.h5", path)
    with h5py.File(path, "r+") as f:
        f.attrs["domain"] = name
        for split in ("train", "val"):
            f[split]["y"][...] = (f[split]["y"][()] + 1) % 3
    return name


@pytest.mark.slow
@pytest.mark.parametrize("settings", [
    {"strategy": "finetune", "adapt": "coral"},
    {"strategy": "freeze", "adapter": "channel", "adapt": "dann"},
    {"strategy": "freeze", "adapt": "adabn"},
    {"strategy": "finetune", "adapt": "im"},
])
def test_no_target_label_is_read(world, settings):
    """Poisoned target labels leave a transfer with target_fraction 0 unchanged, weight for weight."""
    poisoned = _poisoned_copy(world, f"Poisoned{'-'.join(settings.values())}")
    runs = [_transfer(world, target=target, target_fraction=0.0, name=f"unlabelled-{target}", **settings)
            for target in ("Mirror", poisoned)]
    for clean, dirty in zip(*(load_model(run.run_dir / "model.keras").get_weights() for run in runs)):
        np.testing.assert_array_equal(clean, dirty)
    source = load_run("Src", world[2])
    saved = load_model(runs[0].run_dir / "model.keras")
    for mine, theirs in zip(saved.get_layer("head_softmax").get_weights(),
                            source.model.get_layer("head_softmax").get_weights()):
        np.testing.assert_array_equal(mine, theirs)  # the source's head is kept


@pytest.mark.slow
def test_adabn_without_labels_trains_nothing_and_moves_only_batch_norm_statistics(world):
    result = _transfer(world, strategy="freeze", adapt="adabn", target_fraction=0.0, name="adabn")
    assert result.metrics["epochs_run"] == 0
    assert set(result.metrics["adabn"]) == {"block_1", "block_2"}
    source = load_run("Src", world[2]).model
    saved = load_model(result.run_dir / "model.keras")
    paths = [w.path for w in saved.weights]
    assert paths == [w.path for w in source.weights]
    for path, mine, theirs in zip(paths, saved.weights, source.weights):
        mine, theirs = keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs)
        if "moving_" in path:
            assert not np.array_equal(mine, theirs), path
        elif not path.startswith("normalize"):  # the target's statistics
            np.testing.assert_array_equal(mine, theirs, err_msg=path)
