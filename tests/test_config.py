"""Tests of ``convlstm_tl.config``: strict loading, round trips, validation."""

import json

import pytest

from convlstm_tl.config import (
    AugmentConfig, ModelConfig, PretrainConfig, TrainConfig, TransferConfig, check_domain_name, check_run_name,
    check_seed,
)
from convlstm_tl.errors import ConfigError
from convlstm_tl.jsonio import from_dict, load_json, save_json, to_dict


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
    ({"epochs": -1}, "epochs must lie in [1, 100000]"),
    ({"epochs": 0}, "epochs must lie in [1, 100000]"),
    ({"epochs": 10**9}, "epochs must lie in [1, 100000]"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": 0.0}, "lr must lie in (0.0, inf)"),
    ({"lr": -1e-3}, "lr must lie"),
    ({"patience": -1}, "patience"),
    ({"source": ""}, "no source domain"),
    ({"name": "a/b"}, "plain folder name"),
    ({"name": "a\\b"}, "plain folder name"),
    ({"name": ".."}, "must not start with a dot"),
    ({"model": ModelConfig(block_dropout=1.0)}, "block_dropout must lie in [0.0, 1.0)"),
    ({"model": ModelConfig(head_dropout=1.0)}, "head_dropout must lie in [0.0, 1.0)"),
    ({"model": ModelConfig(recurrent_dropout=-0.1)}, "recurrent_dropout"),
    ({"model": ModelConfig(filters=())}, "filters must be 1 to 64 ints in [1, 65536]"),
    ({"model": ModelConfig(filters=(8, 0))}, "filters must be 1 to 64 ints in [1, 65536]"),
    ({"model": ModelConfig(filters=(8, 10**6))}, "filters must be 1 to 64 ints"),
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


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("config, message", [
    (TrainConfig(source="St", lr=NAN), "lr must lie in (0.0, inf). Received: lr=nan"),
    (TrainConfig(source="St", lr=INF), "lr must lie in (0.0, inf). Received: lr=inf"),
    (TrainConfig(source="St", model=ModelConfig(block_dropout=NAN)), "block_dropout must lie in [0.0, 1.0)"),
    (TrainConfig(source="St", model=ModelConfig(head_dropout=NAN)), "head_dropout"),
    (TrainConfig(source="St", model=ModelConfig(recurrent_dropout=NAN)), "recurrent_dropout"),
    (TrainConfig(source="St", model=ModelConfig(l2=INF)), "l2 must lie in [0.0, inf)"),
    (TrainConfig(source="St", model=ModelConfig(l2=NAN)), "l2"),
    (TrainConfig(source="St", augment=AugmentConfig(scale=NAN)), "augment scale"),
    (TrainConfig(source="St", augment=AugmentConfig(jitter=NAN)), "augment jitter"),
    (TrainConfig(source="St", augment=AugmentConfig(time_shift=NAN)), "augment time_shift"),
    (TrainConfig(source="St", augment=AugmentConfig(rotate=NAN)), "augment rotate"),
    (TrainConfig(source="St", augment=AugmentConfig(spatial_shift=10**7)), "augment spatial_shift"),
    (TrainConfig(source="St", augment=AugmentConfig(vector_channels=(0, 1, -2))), "vector_channels"),
    (TransferConfig(target="T", source_run="S", target_fraction=NAN), "target_fraction must lie in [0.0, 1.0]"),
    (TransferConfig(target="T", source_run="S", target_fraction=-INF), "target_fraction"),
    (TransferConfig(target="T", source_run="S", body_lr=NAN), "body_lr"),
    (TransferConfig(target="T", source_run="S", lr=NAN), "lr must lie"),
    (TransferConfig(target="T", source_run="S", target_per_class=2**40), "target_per_class"),
    (TransferConfig(target="T", source_run="S", head_epochs=0), "head_epochs"),
    (PretrainConfig(domain="St", lr=NAN), "lr must lie"),
    (PretrainConfig(domain="St", batch_size=2**30), "batch_size must lie in [1, 1048576]"),
])
def test_every_float_refuses_nan_and_inf_and_every_int_has_a_range(config, message):
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert message in str(error.value)


@pytest.mark.parametrize("seed", [-1, 2**32, 99999999999, 10**5000], ids=["minus1", "2to32", "11digits", "5000digits"])
@pytest.mark.parametrize("cls, required", [(TrainConfig, {"source": "St"}),
                                           (TransferConfig, {"target": "T", "source_run": "S"}),
                                           (PretrainConfig, {"domain": "St"})])
def test_seeds_lie_in_32_bits(cls, required, seed):
    with pytest.raises(ConfigError) as error:
        cls(**required, seed=seed).validate()
    message = str(error.value)
    assert message.startswith("seed must lie in [0, 4294967295]") and len(message) < 200
    cls(**required, seed=2**32 - 1).validate()
    check_seed(0)


def test_a_type_that_slips_past_from_dict_is_still_refused():
    with pytest.raises(ConfigError, match="lr must be a number"):
        TrainConfig(source="St", lr="0.1").validate()


@pytest.mark.parametrize("name, message", [
    ("x" * 101, "at most 100 characters"),
    ("日" * 70, "200 bytes"),  # 70 characters, 210 bytes
    ("a\nb", "printable"),
    ("a\tb", "printable"),
    ("a\x1bb", "printable"),
    ("a\u2028b", "printable"),  # a line separator
    (".hidden", "must not start with a dot"),
    (" padded", "start or end with a space"),
    ("padded ", "start or end with a space"),
    ("", "non-empty"),
])
def test_run_names_are_short_printable_folder_names(name, message):
    with pytest.raises(ConfigError) as error:
        check_run_name(name)
    assert message in str(error.value) and "\n" not in str(error.value) and len(str(error.value)) < 250
    with pytest.raises(ConfigError, match="run name"):
        TrainConfig(source="St", name=name or ".").validate()


@pytest.mark.parametrize("name", ["St", "St-ms-cut1", "日本", "a b", "x" * 100, "é" * 100, "run_1.v2"])
def test_plain_names_pass(name):
    check_run_name(name)
    check_domain_name(name)


@pytest.mark.parametrize("config", [TrainConfig(source="../St"), TrainConfig(source="a\nb"),
                                    TransferConfig(target="x" * 300, source_run="S"), PretrainConfig(domain=".h")])
def test_domain_names_are_checked_too(config):
    with pytest.raises(ConfigError, match="domain name"):
        config.validate()


@pytest.mark.parametrize("content, message", [
    (None, "is a directory"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
    (b"[" * 100_000, "nested too deeply"),
    (b'{"seed": ' + b"9" * 5000 + b"}", "too many digits"),
    (b'{"lr": NaN}', "NaN is not a JSON number"),
    (b'{"lr": Infinity}', "Infinity is not a JSON number"),
    (b'{"lr": [-Infinity]}', "-Infinity is not a JSON number"),
])
def test_load_json_refuses_unreadable_files_in_one_line(tmp_path, content, message):
    path = tmp_path / "c.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        load_json(path)
    assert message in str(error.value) and str(path) in str(error.value)
    assert len(str(error.value).splitlines()) == 1 and len(str(error.value)) < 400


def test_a_huge_int_for_a_float_is_one_line():
    with pytest.raises(ConfigError, match="must be a finite number"):
        from_dict(TrainConfig, {"lr": 10**400})


def test_save_json_writes_strict_json(tmp_path):
    save_json(tmp_path / "m.json", {"loss": float("nan"), "per": [float("inf"), 1.5], "n": {"x": -INF}})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert load_json(tmp_path / "m.json") == {"loss": None, "per": [None, 1.5], "n": {"x": None}}
