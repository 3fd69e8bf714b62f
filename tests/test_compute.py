"""Tests of ``convlstm_tl.compute`` and of the ``mixed_precision`` / ``jit`` run options."""

import json

import keras
import numpy as np
import pytest

from convlstm_tl import config as config_module
from convlstm_tl.cli.train import build_config, build_transfer_config, main, parse_args
from convlstm_tl.compute import JIT_MODES, MIXED_PRECISION_POLICIES, dtype_policy, jit_compile
from convlstm_tl.config import ModelConfig, TrainConfig, TransferConfig
from convlstm_tl.errors import ConfigError


def test_options_match_the_config_choices():
    assert tuple(MIXED_PRECISION_POLICIES) == config_module.MIXED_PRECISION
    assert tuple(JIT_MODES) == config_module.JIT


def test_dtype_policy_is_restored_even_after_an_error():
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with dtype_policy("float16"):
            assert keras.config.dtype_policy().name == "mixed_float16"
            raise RuntimeError
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match="Received: mixed_precision='fp8'"):
        with dtype_policy("fp8"):
            pass


def test_jit_modes():
    assert jit_compile("auto") == "auto" and jit_compile("on") is True and jit_compile("off") is False
    with pytest.raises(ValueError, match="Received: jit='yes'"):
        jit_compile("yes")


def test_flags_reach_both_configs():
    config = build_config(parse_args(["--source", "St", "--mixed-precision", "bfloat16", "--jit"]))
    assert (config.mixed_precision, config.jit) == ("bfloat16", "on")
    config = build_transfer_config(parse_args(["--transfer", "ms", "--from", "St", "--jit", "off",
                                               "--mixed-precision", "float16"]))
    assert (config.mixed_precision, config.jit) == ("float16", "off")
    defaults = build_config(parse_args(["--source", "St"]))
    assert (defaults.mixed_precision, defaults.jit) == (TrainConfig.mixed_precision, TrainConfig.jit)


@pytest.mark.parametrize("argv", [["--source", "St", "--mixed-precision", "half"], ["--source", "St", "--jit", "2"]])
def test_bad_flag_values_are_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("cls, extra", [(TrainConfig, {"source": "St"}),
                                        (TransferConfig, {"target": "ms", "source_run": "St"})])
def test_config_refuses_unknown_values(cls, extra):
    with pytest.raises(ConfigError, match="mixed_precision must be one of"):
        cls(**extra, mixed_precision="half").validate()
    with pytest.raises(ConfigError, match="jit must be one of"):
        cls(**extra, jit="yes").validate()
    with pytest.raises(ConfigError, match="cell must be one of"):
        ModelConfig(cell="cudnn").validate()


@pytest.mark.slow
def test_mixed_precision_source_run_and_transfer(shared_domain, tmp_path):
    from convlstm_tl.training.source import train_source
    from convlstm_tl.training.transfer import transfer

    runs = tmp_path / "runs"
    source = train_source(TrainConfig(source=shared_domain.name, data_dir=str(shared_domain.data_dir),
                                      runs_dir=str(runs), epochs=1, mixed_precision="float16", jit="off",
                                      model=ModelConfig(filters=(3,), head_units=4)), verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    saved = json.loads((source.run_dir / "config.json").read_text())["config"]
    assert (saved["mixed_precision"], saved["jit"]) == ("float16", "off")
    convlstm = source.model.get_layer("block_1").get_layer("convlstm")
    assert convlstm.compute_dtype == "float16" and convlstm.kernel.dtype == "float32"
    reloaded = keras.saving.load_model(source.run_dir / "model.keras")
    x = shared_domain.splits["test"].x[:4]
    probabilities = reloaded.predict(x, verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, source.model.predict(x, verbose=0), atol=1e-6)

    # finetune trains the restored body with the layer-rate optimizer under loss scaling.
    result = transfer(TransferConfig(target=shared_domain.name, source_run=source.run_dir.name,
                                     data_dir=str(shared_domain.data_dir), runs_dir=str(runs), strategy="finetune",
                                     epochs=1, mixed_precision="bfloat16"), verbose=0)
    assert keras.config.dtype_policy().name == "float32"
    assert result.model.get_layer("block_1").get_layer("convlstm").compute_dtype == "bfloat16"
    assert np.isfinite(result.history["loss"]).all()
