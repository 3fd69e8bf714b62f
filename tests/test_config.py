"""Tests of ``convlstm_tl.config``: strict loading, round trips, validation."""

import json

import pytest

from convlstm_tl.config import ModelConfig, TrainConfig, from_dict, load_json, save_json, to_dict
from convlstm_tl.errors import ConfigError, UserError


def test_defaults_validate():
    config = TrainConfig(source="St")
    config.validate()
    assert config.run_name == "St"
    assert config.model.filters == (32, 32)
    assert config.model.n_blocks == 2
    assert TrainConfig(source="St", name="mine").run_name == "mine"


@pytest.mark.parametrize("data, message", [
    ({"epochz": 3}, "unknown keys ['epochz']"),
    ({"source": "St", "model": {"filter": [8]}}, "unknown keys ['filter']"),
    ({"epochs": "3"}, "config.epochs must be int"),
    ({"epochs": True}, "config.epochs must be int"),
    ({"epochs": 3.0}, "config.epochs must be int"),
    ({"lr": "0.1"}, "config.lr must be float"),
    ({"lr": False}, "config.lr must be float"),
    ({"overwrite": 1}, "config.overwrite must be bool"),
    ({"source": 5}, "config.source must be str"),
    ({"model": {"filters": ["32", "64"]}}, "config.model.filters must be a list of ints"),
    ({"model": {"filters": [True]}}, "config.model.filters must be a list of ints"),
    ({"model": {"filters": 32}}, "config.model.filters must be a list of ints"),
    ({"model": {"kernel_size": 3.5}}, "config.model.kernel_size must be int"),
    ({"model": [1, 2]}, "config.model must be a JSON object"),
])
def test_from_dict_rejects_unknown_keys_and_wrong_types(data, message):
    with pytest.raises(ConfigError) as error:
        from_dict(TrainConfig, data)
    assert message in str(error.value)


def test_from_dict_rejects_non_objects():
    with pytest.raises(ConfigError, match="must be a JSON object"):
        from_dict(TrainConfig, ["source", "St"])


def test_unknown_key_message_names_the_file_and_known_keys():
    with pytest.raises(ConfigError) as error:
        from_dict(TrainConfig, {"epoch": 1}, where="my.json")
    assert str(error.value).startswith("my.json has unknown keys ['epoch']")
    assert "'epochs'" in str(error.value)


def test_from_dict_nested_model_and_coercions():
    config = from_dict(TrainConfig, {
        "source": "St", "epochs": 5, "lr": 1, "overwrite": True,
        "model": {"filters": [8, 16, 4], "kernel_size": 5, "head_dropout": 0},
    })
    assert isinstance(config.model, ModelConfig)
    assert config.model.filters == (8, 16, 4)
    assert config.model.n_blocks == 3
    assert config.model.kernel_size == 5
    assert config.model.head_dropout == 0.0 and isinstance(config.model.head_dropout, float)
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.epochs == 5 and config.overwrite is True
    # Keys not given keep their defaults.
    assert config.batch_size == TrainConfig().batch_size
    assert config.model.head_units == ModelConfig().head_units


def test_round_trip_through_json(tmp_path):
    config = TrainConfig(source="St", name="run", epochs=3, lr=0.01, seed=4, overwrite=True,
                         model=ModelConfig(filters=(4, 8), pool_size=2, block_dropout=0.25))
    data = to_dict(config)
    assert data["model"]["filters"] == [4, 8]
    assert json.loads(json.dumps(data)) == data
    assert from_dict(TrainConfig, data) == config
    save_json(tmp_path / "c.json", data)
    assert from_dict(TrainConfig, load_json(tmp_path / "c.json")) == config


def test_load_json_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{epochs: 3")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_json(tmp_path / "bad.json")


@pytest.mark.parametrize("changes, message", [
    ({"epochs": -1}, "epochs must lie in [1, inf]"),
    ({"epochs": 0}, "epochs must lie in [1, inf]"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": 0.0}, "lr must lie in (0.0, inf]"),
    ({"lr": -1e-3}, "lr must lie"),
    ({"patience": -1}, "patience"),
    ({"source": ""}, "no source domain"),
    ({"name": "a/b"}, "plain folder name"),
    ({"name": ".."}, "plain folder name"),
    ({"model": ModelConfig(block_dropout=1.0)}, "block_dropout must lie in [0.0, 1.0)"),
    ({"model": ModelConfig(head_dropout=1.0)}, "head_dropout must lie in [0.0, 1.0)"),
    ({"model": ModelConfig(recurrent_dropout=-0.1)}, "recurrent_dropout"),
    ({"model": ModelConfig(filters=())}, "filters must be one or more positive ints"),
    ({"model": ModelConfig(filters=(8, 0))}, "filters must be one or more positive ints"),
    ({"model": ModelConfig(kernel_size=0)}, "kernel_size"),
    ({"model": ModelConfig(pool_size=0)}, "pool_size"),
    ({"model": ModelConfig(l2=-1.0)}, "l2"),
])
def test_validate_rejects_out_of_range_values(changes, message):
    config = TrainConfig(**{"source": "St", **changes})
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert message in str(error.value)
    assert "Received" in str(error.value) or message in ("no source domain",)


def test_validate_accepts_edges():
    TrainConfig(source="St", epochs=1, patience=0, model=ModelConfig(filters=(1,), block_dropout=0.0,
                                                                     head_dropout=0.99)).validate()


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, UserError)
