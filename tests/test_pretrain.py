"""Tests of unsupervised pretraining and of transferring a pretrained body."""

import json

import keras
import numpy as np
import pytest

from conftest import FRAMES_2D, write_tiny
from convlstm_tl.cli import run_main
from convlstm_tl.cli.train import PROG, main
from convlstm_tl.config import ModelConfig, PretrainConfig, TransferConfig
from convlstm_tl.errors import ConfigError
from convlstm_tl.models.autoencoder import build_autoencoder
from convlstm_tl.models.classifier import block_name
from convlstm_tl.models.losses import FramePredictionLoss
from convlstm_tl.training.pretrain import baseline_loss, pretrain
from convlstm_tl.training.transfer import transfer

TINY_MODEL = ModelConfig(filters=(4, 4), head_units=8)


def test_frame_prediction_loss_compares_with_the_next_frame():
    frames = np.arange(2 * 3 * 1 * 2 * 1, dtype="float32").reshape(2, 3, 1, 2, 1)
    # Predicting frame t as frame t+1 exactly: no loss for next_frame, some for reconstruction.
    predicted = np.concatenate([frames[:, 1:], frames[:, -1:]], axis=1)
    assert float(keras.ops.convert_to_numpy(FramePredictionLoss(1)(frames, predicted))) == pytest.approx(0.0)
    assert float(keras.ops.convert_to_numpy(FramePredictionLoss(0)(frames, predicted))) > 0
    assert FramePredictionLoss.from_config(FramePredictionLoss(1).get_config()).shift == 1


@pytest.mark.parametrize("frame_shape, pool", [((4, 1, 8, 2), 1), ((4, 1, 7, 2), 2), (FRAMES_2D, 2), ((4, 5, 7, 3), 2)])
def test_autoencoder_predicts_frames_of_the_input_shape(frame_shape, pool):
    channels = frame_shape[-1]
    model = build_autoencoder(ModelConfig(filters=(4, 4), pool_size=pool), frame_shape=frame_shape,
                              mean=np.zeros(channels), variance=np.ones(channels))
    assert model.output_shape == (None, *frame_shape)
    assert [layer.name for layer in model.layers if layer.name.startswith("block_")] == ["block_1", "block_2"]


@pytest.mark.slow
def test_pretrained_body_loads_into_a_transfer(tmp_path):
    domain = write_tiny(tmp_path / "data")
    write_tiny(tmp_path / "data", name="Target", seed=3)
    runs = tmp_path / "runs"
    result = pretrain(PretrainConfig(domain="Tiny", data_dir=str(domain.data_dir), runs_dir=str(runs), epochs=2,
                                     model=TINY_MODEL), verbose=0)
    run = runs / "Tiny-pretrain"
    assert result.run_dir == run
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "history.csv", "metrics.json", "model.keras"]
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "pretrain" and config["model"]["filters"] == [4, 4]
    assert "class_names" not in config["domain"] and len(config["normalization"]["mean"]) == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["objective"] == "next_frame" and metrics["epochs_run"] == 2 and np.isfinite(metrics["loss"])
    mean, variance = np.array(config["normalization"]["mean"]), np.array(config["normalization"]["variance"])
    assert metrics["baseline_loss"] == pytest.approx(baseline_loss(domain.path, "test", mean=mean, variance=variance,
                                                                   shift=1))
    pretrained = keras.saving.load_model(run / "model.keras", compile=False)
    blocks = {i: pretrained.get_layer(block_name(i)).get_weights() for i in (1, 2)}

    frozen = transfer(TransferConfig(target="Target", source_run="Tiny-pretrain", strategy="freeze", epochs=1,
                                     runs_dir=str(runs), data_dir=str(domain.data_dir)), verbose=0)
    for i in (1, 2):
        for restored, saved in zip(frozen.model.get_layer(block_name(i)).get_weights(), blocks[i]):
            np.testing.assert_array_equal(restored, saved)
    transfer_config = json.loads((frozen.run_dir / "config.json").read_text())
    assert transfer_config["source_run"] == str(run.resolve()) and "source_test" not in frozen.metrics


@pytest.mark.slow
def test_pretrain_command_line(tmp_path, capsys):
    domain = write_tiny(tmp_path / "data")
    runs = tmp_path / "runs"
    common = ["--data-dir", str(domain.data_dir), "--runs-dir", str(runs), "--quiet"]
    assert main(["--pretrain", "Tiny", "--objective", "reconstruction", "--epochs", "1", "--filters", "4,4",
                 "--name", "ae", *common]) == 0
    assert "reconstruction test loss" in capsys.readouterr().out
    config = json.loads((runs / "ae" / "config.json").read_text())
    assert config["config"]["objective"] == "reconstruction" and config["model"]["filters"] == [4, 4]

    for argv, message in ((["--source", "Tiny", "--objective", "next_frame"], "--objective belongs to pretraining"),
                          (["--pretrain", "Tiny", "--strategy", "freeze"], "--strategy does not apply"),
                          (["--pretrain", "Tiny", "--augment-scale", "0.1"], "--augment-scale does not apply"),
                          (["--pretrain", "Tiny", "--jit"], "--jit does not apply")):
        assert run_main(main, [*argv, *common], prog=PROG) == 2
        assert message in capsys.readouterr().err


def test_pretrain_config_is_checked():
    # The library names the field; the command line names the flag (tests/test_bad_input.py).
    with pytest.raises(ConfigError, match="domain is empty") as error:
        PretrainConfig().validate()
    assert error.value.field == "domain"
    with pytest.raises(ConfigError, match="objective"):
        PretrainConfig(domain="x", objective="colour").validate()
    assert PretrainConfig(domain="ms").run_name == "ms-pretrain"
