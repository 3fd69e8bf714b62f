"""Tests of ``convlstm_tl.runs.record``: one schema for every run's ``config.json``."""

import copy
import json

import pytest

from convlstm_tl.config import ModelConfig
from convlstm_tl.errors import RunError
from convlstm_tl.runs.record import load_run_record, model_config

DOMAIN = {"name": "Src", "path": "/data/Src.h5", "class_names": ["walk", "run", "sit"], "frame_shape": [4, 1, 8, 2],
          "split_sizes": {"train": 48, "val": 12, "test": 12}, "kind": "frames"}
NORMALIZATION = {"mean": [0.5, 0.1], "variance": [1.0, 0.2]}
MODEL = {"filters": [4], "kernel_size": 3, "block_dropout": 0.0, "recurrent_dropout": 0.0, "pool_size": 1,
         "head_units": 8, "embedding_dim": 32, "head_dropout": 0.5, "l2": 1e-4, "cell": "fast"}
# What train_source, transfer and pretrain write (shortened: the fields the schema reads).
SOURCE = {"kind": "source", "config": {"source": "Src", "seed": 0, "model": MODEL}, "domain": DOMAIN,
          "normalization": NORMALIZATION, "n_params": 100, "versions": {}}
TRANSFER = {"kind": "transfer", "config": {"target": "Src", "source_run": "Src"}, "source_run": "/runs/Src",
            "strategy": {"spec": "freeze"}, "model": MODEL, "domain": DOMAIN,
            "normalization": {"from": "target", **NORMALIZATION}, "n_params": 100}
PRETRAIN = {"kind": "pretrain", "config": {"domain": "Src", "model": MODEL}, "model": MODEL,
            "domain": {key: value for key, value in DOMAIN.items() if key != "class_names"},
            "normalization": NORMALIZATION}
# A source run of the first version: no kind, no domain kind, fewer model keys.
OLD_SOURCE = {"config": {"source": "Src", "model": {"filters": [32, 32], "kernel_size": 3, "head_units": 64,
                                                    "head_dropout": 0.5, "l2": 1e-4}},
              "domain": {"name": "Src", "path": "/d/Src.h5", "class_names": ["a", "b"], "frame_shape": [4, 1, 8, 2],
                         "split_sizes": {}},
              "normalization": {"mean": [0.0, 0.0], "variance": [1.0, 1.0]}}
TOKENS_SOURCE = {**SOURCE, "domain": {**DOMAIN, "kind": "tokens", "frame_shape": [3, 1, 4, 1], "vocab_size": 50,
                                      "vocab_fingerprint": "abc"}, "normalization": None}


def _write(tmp_path, record):
    run = tmp_path / "Run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text(record if isinstance(record, str) else json.dumps(record))
    return run


@pytest.mark.parametrize("record", [SOURCE, TRANSFER, PRETRAIN, OLD_SOURCE, TOKENS_SOURCE],
                         ids=["source", "transfer", "pretrain", "old-source", "tokens"])
def test_every_kind_of_run_reads(tmp_path, record):
    loaded = load_run_record(_write(tmp_path, record))
    assert loaded["kind"] == record.get("kind", "source")
    assert isinstance(model_config(loaded), ModelConfig)


def test_old_runs_keep_their_architecture(tmp_path):
    loaded = load_run_record(_write(tmp_path, OLD_SOURCE))
    assert model_config(loaded).filters == (32, 32) and model_config(loaded).cell == "fast"


def _spoil(record, path, value=KeyError):
    record = copy.deepcopy(record)
    *parents, last = path
    target = record
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return record


@pytest.mark.parametrize("record, field", [
    ([1, 2], "(top level) must be a JSON object, not a list"),
    ("null", "(top level) must be a JSON object, not null"),
    (_spoil(SOURCE, ["config", "model"]), "model is missing"),
    (_spoil(TRANSFER, ["model"]), "model is missing"),
    (_spoil(TRANSFER, ["model"], [4]), "model is not a model config"),
    (_spoil(SOURCE, ["config", "model", "filters"], "abc"), "config.model is not a model config"),
    (_spoil(SOURCE, ["config", "model", "filters"], [0]), "config.model is not a model config"),
    (_spoil(SOURCE, ["config", "model", "head_dropout"], 7.0), "config.model is not a model config"),
    (_spoil(SOURCE, ["config"], "x"), "config must be an object"),
    (_spoil(SOURCE, ["kind"], "mystery"), "kind must be one of"),
    (_spoil(SOURCE, ["domain"]), "domain is missing"),
    (_spoil(SOURCE, ["domain"], "Src"), "domain must be an object"),
    (_spoil(SOURCE, ["domain", "frame_shape"], "abcd"), "domain.frame_shape must be a list"),
    (_spoil(SOURCE, ["domain", "frame_shape"], [4, 1, 8]), "domain.frame_shape must be 4 positive ints"),
    (_spoil(SOURCE, ["domain", "frame_shape"], [4, 1, 8, 0]), "domain.frame_shape must be 4 positive ints"),
    (_spoil(SOURCE, ["domain", "frame_shape"], [4, 1, 8, True]), "domain.frame_shape must be 4 positive ints"),
    (_spoil(SOURCE, ["domain", "frame_shape"]), "domain.frame_shape is missing"),
    (_spoil(SOURCE, ["domain", "class_names"]), "domain.class_names is missing"),
    (_spoil(SOURCE, ["domain", "class_names"], []), "domain.class_names must be a non-empty list of strings"),
    (_spoil(SOURCE, ["domain", "class_names"], ["a", 2]), "domain.class_names must be a non-empty list"),
    (_spoil(SOURCE, ["domain", "name"], 5), "domain.name must be a string"),
    (_spoil(SOURCE, ["domain", "kind"], "pixels"), "domain.kind must be one of"),
    (_spoil(TOKENS_SOURCE, ["domain", "vocab_size"], -1), "domain.vocab_size must be a positive int"),
    (_spoil(SOURCE, ["normalization"], [0.1]), "normalization must be an object or null"),
    (_spoil(SOURCE, ["normalization", "mean"], [0.1]), "normalization.mean must hold one value per channel (2)"),
    (_spoil(SOURCE, ["normalization", "variance"], [1, 2, 3]), "normalization.variance must hold one value per"),
    (_spoil(SOURCE, ["normalization", "mean"]), "normalization.mean is missing"),
    (_spoil(SOURCE, ["normalization", "mean"], ["a", "b"]), "normalization.mean must hold finite numbers"),
    (_spoil(SOURCE, ["normalization", "variance"], [1.0, -1.0]), "normalization.variance must not be negative"),
    (_spoil(TRANSFER, ["source_run"], 5), "source_run must be a string"),
    (_spoil(TRANSFER, ["source_run"]), "source_run is missing"),
    (_spoil(TRANSFER, ["source_run"], ""), "source_run must name"),
])
def test_a_bad_record_is_one_line_naming_the_field(tmp_path, record, field):
    run = _write(tmp_path, record)
    with pytest.raises(RunError) as error:
        load_run_record(run)
    message = str(error.value)
    assert message.startswith(f"run {run}: config.json field {field}"), message
    assert message.endswith("train it again") and len(message.splitlines()) == 1 and len(message) < 400


@pytest.mark.parametrize("content, fragment", [
    ('{"kind": "source", "normalization": {"mean": [NaN]}}', "NaN is not a JSON number"),
    ("{not json", "is not valid JSON"),
    ("[" * 100_000, "nested too deeply"),
])
def test_an_unreadable_record_is_one_line(tmp_path, content, fragment):
    run = _write(tmp_path, content)
    with pytest.raises(RunError) as error:
        load_run_record(run)
    assert str(error.value).startswith(f"run {run}: run record {run / 'config.json'}")
    assert fragment in str(error.value) and str(error.value).endswith("train it again")


def test_a_missing_record_is_one_line(tmp_path):
    with pytest.raises(RunError, match="not found"):
        load_run_record(tmp_path)


@pytest.mark.parametrize("kind, inputs, extra", [
    ("source", {"mean": [0.5, 0.1], "variance": [1.0, 0.2]}, {"replicas": 1}),
    ("transfer", {"mean": [0.5, 0.1], "variance": [1.0, 0.2]},
     {"normalization_from": "source", "source_run": "/runs/Src", "strategy": {"spec": "freeze"}}),
    ("source", {"vocab_size": 30}, {}),
])
def test_every_kind_writes_the_one_schema(kind, inputs, extra, tmp_path):
    from convlstm_tl.config import TrainConfig
    from convlstm_tl.runs.record import make_run_record

    domain = DOMAIN if "mean" in inputs else {**DOMAIN, "kind": "tokens", "vocab_size": 30}
    record = make_run_record(kind, config=TrainConfig(source="Src"), model=ModelConfig(filters=(4,)), domain=domain,
                             model_inputs=inputs, n_params=100, **extra)
    assert record["kind"] == kind and record["model"]["filters"] == [4] and "keras" in record["versions"]
    if "mean" in inputs:
        assert record["normalization"]["mean"] == [0.5, 0.1]
        assert record["normalization"].get("from") == extra.get("normalization_from")
    else:
        assert record["normalization"] is None
    (tmp_path / "config.json").write_text(json.dumps(record))
    assert load_run_record(tmp_path)["kind"] == kind
    assert model_config(record) == ModelConfig(filters=(4,))
