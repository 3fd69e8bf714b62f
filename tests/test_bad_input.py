"""A corpus of bad inputs, each run through the command lines.

Every case builds one bad input in ``tmp_path`` (a domain file, a model file,
a config file, an option, a runs directory, a full disk) and runs
``python -m convlstm_tl.train`` (source, transfer, pretrain), ``.evaluate`` or ``.advise`` on it,
through ``convlstm_tl.cli.run_main`` in this process (a few also as real
subprocesses). Each must end with exit code 2, exactly one line on stderr,
no traceback, and no run directory (or temporary run folder) left behind.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from conftest import write_tiny
from convlstm_tl.cli import advise, evaluate, run_main, train
from convlstm_tl.config import ModelConfig, TrainConfig
from convlstm_tl.training.source import train_source

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--batch-size", "16", "--filters", "4", "--head-units", "8", "--quiet"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid domain Tiny and a finished run of it, copied into each case that needs them."""
    root = tmp_path_factory.mktemp("good")
    domain = write_tiny(root / "data")
    config = TrainConfig(source="Tiny", data_dir=str(root / "data"), runs_dir=str(root / "runs"), epochs=1,
                         batch_size=16, model=ModelConfig(filters=(4,), head_units=8))
    train_source(config, verbose=0)
    return root, domain


# ------------------------------------------------------------ domain files


def _edit(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)


def _replace(group, key, data):
    del group[key]
    group.create_dataset(key, data=data)


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _empty_file(path):
    path.write_bytes(b"")


def _rank4(path):
    _edit(path, lambda f: _replace(f["train"], "x", f["train/x"][()][:, 0]))


def _nan(path):
    _edit(path, lambda f: f["train/x"].__setitem__((3, 0, 0, 0, 0), np.nan))


def _inf(path):
    _edit(path, lambda f: f["test/x"].__setitem__((1, 2, 0, 1, 0), np.inf))


def _label_too_big(path):
    _edit(path, lambda f: f["val/y"].__setitem__(0, 3))


def _negative_label(path):
    _edit(path, lambda f: f["train/y"].__setitem__(5, -1))


def _empty_split(path):
    def edit(f):
        _replace(f["val"], "x", np.zeros((0, *f["val/x"].shape[1:]), np.float32))
        _replace(f["val"], "y", np.zeros(0, np.int64))
        _replace(f["val"], "group", np.zeros(0, np.int64))
    _edit(path, edit)


def _group_leak(path):
    _edit(path, lambda f: f["test/group"].__setitem__(0, f["train/group"][0]))


def _class_names(names):
    def edit(path):
        _edit(path, lambda f: f.attrs.__setitem__("class_names", json.dumps(names)))
    return edit


def _format_version(path):
    _edit(path, lambda f: f.attrs.__setitem__("format_version", 7))


def _missing_split(path):
    _edit(path, lambda f: f.__delitem__("test"))


DOMAIN_CASES = {
    "truncated_hdf5": (_truncated, "Tiny.h5"),
    "garbage_hdf5": (_garbage, "not a readable HDF5 file"),
    "empty_file": (_empty_file, "Tiny.h5"),
    "wrong_rank": (_rank4, "rank 5"),
    "nan_in_x": (_nan, "NaN or inf"),
    "inf_in_x": (_inf, "NaN or inf"),
    "label_out_of_range": (_label_too_big, "labels must lie in [0, 3)"),
    "negative_label": (_negative_label, "labels must lie in [0, 3)"),
    "empty_split": (_empty_split, "is empty"),
    "group_leak": (_group_leak, "leaks across splits"),
    "too_few_class_names": (_class_names(["walk", "run"]), "labels must lie in [0, 2)"),
    "too_many_class_names": (_class_names(["walk", "run", "sit", "swim"]), "class_names must match the labels"),
    "duplicate_class_names": (_class_names(["walk", "walk", "sit"]), "duplicates"),
    "class_names_not_a_list": (_class_names({"a": 1}), "class_names must be a non-empty JSON list"),
    "format_version": (_format_version, "format_version 7"),
    "missing_split": (_missing_split, "no 'test' split"),
}


def _domain_case(name, *, with_run=False):
    def build(tmp_path, good):
        spoil, fragment = DOMAIN_CASES[name]
        if with_run:  # evaluate scores a finished run on the spoilt domain
            _copy_run(tmp_path, good)
        else:
            write_tiny(tmp_path / "data")
        spoil(tmp_path / "data" / "Tiny.h5")
        return fragment
    return build


# ------------------------------------------------------------- model files


def _copy_run(tmp_path, good):
    root, _ = good
    shutil.copytree(root / "runs" / "Tiny", tmp_path / "runs" / "Tiny")
    write_tiny(tmp_path / "data")
    return tmp_path / "runs" / "Tiny" / "model.keras"


def _truncated_model(tmp_path, good):
    model = _copy_run(tmp_path, good)
    model.write_bytes(model.read_bytes()[:2000])
    return "model.keras"


def _model_from_another_version(tmp_path, good):
    """A model.keras written by another Keras, whose config this one cannot build."""
    model = _copy_run(tmp_path, good)
    with zipfile.ZipFile(model) as source:
        files = {name: source.read(name) for name in source.namelist()}
    config = json.loads(files["config.json"])
    config["class_name"] = "FutureFunctional"
    config["module"] = "keras.src.models.future"
    files["config.json"] = json.dumps(config).encode()
    files["metadata.json"] = json.dumps({"keras_version": "9.0.0", "date_saved": "2031-01-01"}).encode()
    with zipfile.ZipFile(model, "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
    return "model.keras"


# -------------------------------------------------------------------- cases
# name -> (module, argv, build): build(tmp_path, good) prepares the input and
# returns a fragment that the error line must hold.


def _config_file(content, fragment="bad.json"):
    def build(tmp_path, good):
        write_tiny(tmp_path / "data")
        (tmp_path / "bad.json").write_text(content if isinstance(content, str) else json.dumps(content))
        return fragment
    return build


def _data_only(fragment):
    def build(tmp_path, good):
        write_tiny(tmp_path / "data")
        return fragment
    return build


def _runs_dir_is_a_file(tmp_path, good):
    write_tiny(tmp_path / "data")
    (tmp_path / "runs").write_text("a file, not a folder")
    return "cannot create runs directory"


SOURCE = ["--source", "Tiny", *TINY]
TRANSFER = ["--transfer", "Tiny", "--from", "Tiny", "--epochs", "1", "--batch-size", "16", "--quiet"]
EVALUATE = ["--runs", "Tiny", "--domains", "Tiny", "--quiet"]

CASES = {
    **{f"train_{name}": (train, SOURCE, _domain_case(name)) for name in DOMAIN_CASES},
    **{f"evaluate_{name}": (evaluate, EVALUATE, _domain_case(name, with_run=True))
       for name in ("truncated_hdf5", "nan_in_x", "group_leak", "wrong_rank")},
    "evaluate_truncated_model": (evaluate, EVALUATE, _truncated_model),
    "evaluate_model_from_another_version": (evaluate, EVALUATE, _model_from_another_version),
    "transfer_from_truncated_model": (train, TRANSFER, _truncated_model),
    "transfer_from_model_of_another_version": (train, TRANSFER, _model_from_another_version),
    "config_unknown_key": (train, ["--config", "bad.json", "--quiet"], _config_file({"source": "Tiny", "epoch": 3})),
    "config_wrong_type": (train, ["--config", "bad.json", "--quiet"], _config_file({"source": "Tiny", "lr": "fast"})),
    "config_nested_wrong_type": (train, ["--config", "bad.json", "--quiet"],
                                 _config_file({"source": "Tiny", "model": {"filters": "32"}})),
    "config_not_json": (train, ["--config", "bad.json", "--quiet"], _config_file("{source: Tiny")),
    "config_not_an_object": (train, ["--config", "bad.json", "--quiet"], _config_file([1, 2])),
    "negative_epochs": (train, [*SOURCE, "--epochs", "-3"], _data_only("epochs must lie in [1, 100000]")),
    "zero_batch_size": (train, [*SOURCE, "--batch-size", "0"], _data_only("batch_size")),
    "negative_lr": (train, [*SOURCE, "--lr", "-0.1"], _data_only("lr must lie in (0.0, inf)")),
    "dropout_one": (train, [*SOURCE, "--dropout", "1"], _data_only("block_dropout")),
    "fraction_above_one": (train, [*TRANSFER, "--target-fraction", "1.5"], _data_only("target_fraction")),
    "negative_patience": (train, [*SOURCE, "--patience", "-1"], _data_only("patience")),
    "unknown_distribute": (train, [*SOURCE, "--distribute", "cluster"], _data_only("--distribute")),
    "multiworker_without_tf_config": (train, [*SOURCE, "--distribute", "multiworker"],
                                      _data_only("TF_CONFIG")),
    "resume_and_overwrite": (train, [*SOURCE, "--resume", "--overwrite"], _data_only("not both")),
    "resume_nothing": (train, [*SOURCE, "--resume"], _data_only("nothing to resume")),
    "runs_dir_is_a_file": (train, SOURCE, _runs_dir_is_a_file),
}


# ------------------------------------------- numbers, names, files (round two)

PRETRAIN = ["--pretrain", "Tiny", *TINY]
ADVISE = ["--source", "Tiny", "--target", "Tiny", "--quiet"]
CONFIG = ["--config", "bad.json", "--quiet"]


def _raw_config_file(content, fragment="bad.json"):
    """A --config file of raw bytes (None: a folder in its place)."""
    def build(tmp_path, good):
        write_tiny(tmp_path / "data")
        if content is None:
            (tmp_path / "bad.json").mkdir()
        else:
            (tmp_path / "bad.json").write_bytes(content)
        return fragment
    return build


def _with_run(fragment, spoil=None):
    """A copy of the finished run Tiny, its config.json changed by ``spoil(record)`` (returns the new record)."""
    def build(tmp_path, good):
        _copy_run(tmp_path, good)
        if spoil is not None:
            path = tmp_path / "runs" / "Tiny" / "config.json"
            record = spoil(json.loads(path.read_text()))
            path.write_text(record if isinstance(record, str) else json.dumps(record))
        return fragment
    return build


def _set(path, value):
    """A spoil that sets (or, for KeyError, deletes) ``record[path[0]][path[1]]...``."""
    def spoil(record):
        target = record
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return record
    return spoil


def _weights_missing_a_variable(tmp_path, good):
    """A model.keras whose weights file lacks one variable: Keras warns, then fails."""
    import io

    model = _copy_run(tmp_path, good)
    with zipfile.ZipFile(model) as source:
        files = {name: source.read(name) for name in source.namelist()}
    weights = io.BytesIO(files["model.weights.h5"])
    with h5py.File(weights, "r+") as f:
        names = []
        f.visit(names.append)
        del f[next(name for name in names if isinstance(f[name], h5py.Dataset))]
    files["model.weights.h5"] = weights.getvalue()
    with zipfile.ZipFile(model, "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
    return "cannot load"


NAN_OPTIONS = {  # flag -> the config field its error names
    "--lr": "lr must lie in (0.0, inf)", "--dropout": "block_dropout", "--recurrent-dropout": "recurrent_dropout",
    "--head-dropout": "head_dropout", "--l2": "l2 must lie in [0.0, inf)", "--augment-scale": "augment scale",
    "--augment-jitter": "augment jitter", "--augment-time-shift": "augment time_shift",
    "--augment-rotate": "augment rotate",
}
OUT_OF_RANGE = {  # name -> (argv tail, fragment)
    "seed_negative": (["--seed", "-1"], "seed must lie in [0, 4294967295]"),
    "seed_too_big": (["--seed", "99999999999"], "seed must lie in [0, 4294967295]"),
    "epochs_too_many": (["--epochs", "1000000000"], "epochs must lie in [1, 100000]"),
    "batch_size_too_big": (["--batch-size", "99999999999"], "batch_size must lie in [1, 1048576]"),
    "patience_too_big": (["--patience", "10000000"], "patience must lie in [0, 100000]"),
    "kernel_too_big": (["--kernel", "100000"], "kernel_size must lie in [1, 255]"),
    "pool_zero": (["--pool", "0"], "pool_size"),
    "head_units_too_many": (["--head-units", "10000000"], "head_units must lie in [1, 65536]"),
    "filters_zero": (["--filters", "0"], "filters must be 1 to 64 ints"),
    "filters_too_many": (["--filters", "99999999"], "filters must be 1 to 64 ints"),
    "blocks_zero": (["--blocks", "0"], "--blocks must be at least 1"),
    "spatial_shift_too_big": (["--augment-spatial-shift", "99999999"], "augment spatial_shift"),
    "vector_channels_negative": (["--augment-rotate", "10", "--vector-channels=-1,0,1"], "vector_channels"),
    "lr_inf": (["--lr", "inf"], "lr must lie in (0.0, inf)"),
    "lr_minus_inf": (["--lr=-inf"], "lr must lie in (0.0, inf)"),
}
BAD_NAMES = {  # name -> (--name value, fragment)
    "300_characters": ("x" * 300, "run name must be at most 100 characters"),
    "250_bytes_of_utf8": ("日" * 90, "200 bytes in UTF-8"),
    "newline": ("a\nb", "run name must hold printable characters only"),
    "tab": ("a\tb", "printable characters only"),
    "escape_sequence": ("a\x1b[31mb", "printable characters only"),
    "leading_dot": (".hidden", "must not start with a dot"),
    "backslash": ("a\\b", "plain folder name"),
}
BAD_RECORDS = {  # name -> (spoil of the run's config.json, fragment)
    "a_list": (lambda record: [record], "config.json field (top level) must be a JSON object, not a list"),
    # Source runs record the model at the top level and (as the first versions did) inside config.
    "lacks_model": (lambda record: _set(["model"], KeyError)(_set(["config", "model"], KeyError)(record)),
                    "config.json field model is missing"),
    "frame_shape_abcd": (_set(["domain", "frame_shape"], "abcd"), "config.json field domain.frame_shape must be a list"),
    "source_run_5": (_set(["source_run"], 5), "config.json field source_run must be a string"),
    "normalization_too_long": (_set(["normalization", "mean"], [0.0, 0.0, 0.0]),
                               "config.json field normalization.mean must hold one value per channel (2), not 3"),
    "nan_constant": (lambda record: json.dumps(record).replace('"lr": 0.001', '"lr": NaN'),
                     "NaN is not a JSON number"),
    "not_json": (lambda record: "{", "is not valid JSON"),
    "unknown_kind": (_set(["kind"], "mystery"), "config.json field kind must be one of"),
    "class_names_a_string": (_set(["domain", "class_names"], "walk,run"), "domain.class_names must be a list"),
    "model_filters_abc": (_set(["config", "model", "filters"], "abc"), "config.json field config.model"),
}

CASES.update({
    **{f"train_nan{flag[1:].replace('-', '_')}": (train, [*SOURCE, flag, "nan"], _data_only(fragment))
       for flag, fragment in NAN_OPTIONS.items()},
    **{f"train_{name}": (train, [*SOURCE, *tail], _data_only(fragment)) for name, (tail, fragment) in OUT_OF_RANGE.items()},
    **{f"train_name_{name}": (train, [*SOURCE, "--name", value], _data_only(fragment))
       for name, (value, fragment) in BAD_NAMES.items()},
    "train_source_outside_data_dir": (train, [*SOURCE, "--source", "../Tiny"], _data_only("domain name must be a plain")),
    "train_source_with_newline": (train, [*SOURCE, "--source", "Ti\nny"], _data_only("domain name must hold printable")),
    # --config files that cannot be read
    "config_is_a_directory": (train, CONFIG, _raw_config_file(None)),
    "config_not_utf8": (train, CONFIG, _raw_config_file(b'{"source": "\xff\xfe"}')),
    "config_nested_100k_deep": (train, CONFIG, _raw_config_file(b"[" * 100_000 + b"]" * 100_000)),
    "config_5000_digit_int": (train, CONFIG, _raw_config_file(b'{"source": "Tiny", "epochs": ' + b"9" * 5000 + b"}")),
    "config_nan_constant": (train, CONFIG, _raw_config_file(b'{"source": "Tiny", "lr": NaN}')),
    "config_infinity_constant": (train, CONFIG, _raw_config_file(b'{"source": "Tiny", "lr": Infinity}')),
    "config_float_overflow": (train, CONFIG, _raw_config_file(b'{"source": "Tiny", "lr": 1e400}', "lr must lie in (0.0, inf)")),
    "config_int_for_float_overflow": (train, CONFIG,
                                      _raw_config_file(b'{"source": "Tiny", "l2": 1' + b"0" * 400 + b"}")),
    "config_seed_out_of_range": (train, CONFIG, _config_file({"source": "Tiny", "seed": -5}, "seed must lie in")),
    "config_name_with_newline": (train, CONFIG, _config_file({"source": "Tiny", "name": "a\nb"}, "printable characters only")),
    # transfer: options, strategies, names
    "transfer_nan_lr": (train, [*TRANSFER, "--lr", "nan"], _data_only("lr must lie in (0.0, inf)")),
    "transfer_nan_body_lr": (train, [*TRANSFER, "--body-lr", "nan"], _data_only("body_lr")),
    "transfer_nan_target_fraction": (train, [*TRANSFER, "--target-fraction", "nan"],
                                     _data_only("target_fraction must lie in [0.0, 1.0]")),
    "transfer_inf_target_fraction": (train, [*TRANSFER, "--target-fraction", "inf"], _data_only("target_fraction")),
    "transfer_per_class_too_big": (train, [*TRANSFER, "--target-per-class", "99999999999"],
                                   _data_only("target_per_class")),
    "transfer_seed_negative": (train, [*TRANSFER, "--seed", "-1"], _data_only("seed must lie in [0, 4294967295]")),
    "transfer_head_epochs_zero": (train, [*TRANSFER, "--head-epochs", "0"], _data_only("head_epochs")),
    "transfer_name_300_characters": (train, [*TRANSFER, "--name", "x" * 300], _data_only("at most 100 characters")),
    "transfer_name_newline": (train, [*TRANSFER, "--name", "a\nb"], _data_only("printable characters only")),
    "transfer_target_outside_data_dir": (train, [*TRANSFER[:1], "../Tiny", *TRANSFER[2:]],
                                         _data_only("domain name must be a plain")),
    "transfer_config_nan": (train, [*TRANSFER, *CONFIG], _raw_config_file(b'{"lr": NaN}')),
    "transfer_config_directory": (train, [*TRANSFER, *CONFIG], _raw_config_file(None)),
    "transfer_strategy_full_width_digit": (train, [*TRANSFER, "--strategy", "cut:\uff11"], _with_run("whole number")),
    "transfer_strategy_space": (train, [*TRANSFER, "--strategy", "cut: 1"], _with_run("whole number")),
    "transfer_strategy_leading_zero": (train, [*TRANSFER, "--strategy", "cut:01"], _with_run("out of range")),
    "transfer_strategy_huge": (train, [*TRANSFER, "--strategy", "unfreeze:99999999999999999999"],
                               _with_run("out of range")),
    "transfer_weights_missing_a_variable": (train, TRANSFER, _weights_missing_a_variable),
    "transfer_source_normalization_null": (train, [*TRANSFER, "--normalization", "source"],
                                           _with_run("records no normalization", _set(["normalization"], None))),
    **{f"transfer_from_record_{name}": (train, TRANSFER, _with_run(fragment, spoil))
       for name, (spoil, fragment) in BAD_RECORDS.items()},
    # pretrain
    "pretrain_nan_lr": (train, [*PRETRAIN, "--lr", "nan"], _data_only("lr must lie in (0.0, inf)")),
    "pretrain_nan_dropout": (train, [*PRETRAIN, "--dropout", "nan"], _data_only("block_dropout")),
    "pretrain_seed_too_big": (train, [*PRETRAIN, "--seed", "99999999999"], _data_only("seed must lie in")),
    "pretrain_epochs_too_many": (train, [*PRETRAIN, "--epochs", "1000000000"], _data_only("epochs must lie in")),
    "pretrain_name_newline": (train, [*PRETRAIN, "--name", "a\nb"], _data_only("printable characters only")),
    "pretrain_name_300_characters": (train, [*PRETRAIN, "--name", "x" * 300], _data_only("at most 100 characters")),
    "pretrain_config_5000_digit_int": (train, [*PRETRAIN, *CONFIG],
                                       _raw_config_file(b'{"seed": ' + b"1" * 5000 + b"}")),
    # advise
    "advise_nan_target_fraction": (advise, [*ADVISE, "--target-fraction", "nan"], _with_run("target_fraction")),
    "advise_seed_negative": (advise, [*ADVISE, "--seed", "-1"], _with_run("seed must lie in [0, 4294967295]")),
    "advise_seed_too_big": (advise, [*ADVISE, "--seed", "99999999999"], _with_run("seed must lie in")),
    "advise_per_class_zero": (advise, [*ADVISE, "--target-per-class", "0"], _with_run("target_per_class")),
    "advise_target_outside_data_dir": (advise, [*ADVISE[:3], "../Tiny", *ADVISE[4:]],
                                       _with_run("domain name must be a plain")),
    "advise_weights_missing_a_variable": (advise, ADVISE, _weights_missing_a_variable),
    **{f"advise_record_{name}": (advise, ADVISE, _with_run(fragment, spoil))
       for name, (spoil, fragment) in BAD_RECORDS.items() if name in ("a_list", "lacks_model", "nan_constant",
                                                                      "frame_shape_abcd", "normalization_too_long")},
})


def _run(module, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVLSTM_TL_DATA", raising=False)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    try:
        return run_main(module.main, argv, prog=module.PROG, flags=getattr(module, "FLAGS", None))
    except SystemExit as exit:  # argparse's own errors: one line and exit 2 as well
        return exit.code


def _assert_one_line(capsys, code, prog, fragment):
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert lines[0].startswith(f"{prog}: error: ")
    assert fragment in lines[0], lines[0]


def _run_folders(tmp_path):
    runs = tmp_path / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case, good, tmp_path, monkeypatch, capsys):
    module, argv, build = CASES[case]
    fragment = build(tmp_path, good)
    before = _run_folders(tmp_path)
    code = _run(module, argv, tmp_path, monkeypatch)
    _assert_one_line(capsys, code, module.PROG, fragment)
    # No run was written, and no temporary run folder was left.
    assert _run_folders(tmp_path) == before


def test_corpus_size():
    # The figure reported for the corpus; keep it in step with CASES.
    assert len(CASES) == 129 and len(DOMAIN_CASES) == 16


# ------------------------------------------------------------- failed writes


def _full_disk_save(self, filepath, *args, **kwargs):
    Path(filepath).write_bytes(b"PK\x03\x04partial")  # what a full disk leaves: part of a file
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))


def test_disk_full_while_saving_the_model(tmp_path, monkeypatch, capsys):
    write_tiny(tmp_path / "data")
    monkeypatch.setattr(keras.Model, "save", _full_disk_save)
    code = _run(train, SOURCE, tmp_path, monkeypatch)
    _assert_one_line(capsys, code, train.PROG, "free some space, then continue with --resume")
    # The trained epochs are kept for --resume (tests/test_faults.py resumes them).
    assert _run_folders(tmp_path) == [".partial-Tiny"]


def test_disk_full_while_checkpointing(tmp_path, monkeypatch, capsys):
    write_tiny(tmp_path / "data")

    def full(file, *args, **kwargs):
        file.write(b"PK\x03\x04")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full)
    code = _run(train, SOURCE, tmp_path, monkeypatch)
    _assert_one_line(capsys, code, train.PROG, "No space left on device")
    assert _run_folders(tmp_path) == []


def test_runs_dir_without_write_permission(tmp_path, monkeypatch, capsys):
    write_tiny(tmp_path / "data")
    (tmp_path / "runs").mkdir()
    # As root chmod does not take write access away; os.access is what the check asks.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    code = _run(train, SOURCE, tmp_path, monkeypatch)
    _assert_one_line(capsys, code, train.PROG, "is not writable")
    assert _run_folders(tmp_path) == []


# -------------------------------------------------- a few as real processes


@pytest.mark.slow
@pytest.mark.parametrize("case", ["train_truncated_hdf5", "evaluate_model_from_another_version",
                                  "config_unknown_key", "fraction_above_one"])
def test_bad_input_in_a_real_process(case, good, tmp_path):
    module, argv, build = CASES[case]
    fragment = build(tmp_path, good)
    before = _run_folders(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("CONVLSTM_TL_DATA", None)
    env.pop("TF_CONFIG", None)
    result = subprocess.run([sys.executable, "-m", module.__name__, *argv], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in lines[0]
    assert _run_folders(tmp_path) == before
