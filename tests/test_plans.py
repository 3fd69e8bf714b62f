"""Tests of ``convlstm_tl.training.plans``: every check before the backend, the config validated once."""

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_tiny
from convlstm_tl.config import ModelConfig, TrainConfig, TransferConfig
from convlstm_tl.errors import ConfigError, RunError
from convlstm_tl.training.plans import plan_source, plan_transfer

OLD_RUNS = Path(__file__).parent / "data" / "runs-29d757e"
REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_run_records_the_data_folder_it_read(tmp_path, monkeypatch):
    domain = write_tiny(tmp_path / "elsewhere")
    monkeypatch.setenv("CONVLSTM_TL_DATA", str(domain.data_dir))
    config = TrainConfig(source="Tiny", runs_dir=str(tmp_path / "runs"))
    plan = plan_source(config)
    assert plan.config.data_dir == str(domain.data_dir) and plan.info.path == domain.path
    assert config.data_dir == ""  # the caller's config is not changed


def test_validate_changes_nothing():
    config = TrainConfig(source="St", model=ModelConfig(filters=[8, 16]))
    assert config.model.filters == (8, 16)  # a list becomes the declared tuple when the config is built
    before = copy.deepcopy(config)
    config.validate()
    assert config == before


@pytest.fixture
def old_source(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(OLD_RUNS / "Tiny", runs / "Tiny")
    return runs, write_tiny(tmp_path / "data")


@pytest.mark.parametrize("strategy, message", [("cut:3", "the source body has 2 blocks, so use cut:1..2"),
                                               ("frezee", "unknown strategy 'frezee'")])
def test_strategy_is_checked_against_the_source_record(old_source, strategy, message):
    runs, domain = old_source
    config = TransferConfig(target="Tiny", source_run="Tiny", strategy=strategy, data_dir=str(domain.data_dir),
                            runs_dir=str(runs))
    with pytest.raises(ConfigError, match=message) as error:
        plan_transfer(config)
    assert error.value.field == "strategy"


def test_a_transfer_plan_reads_records_only(old_source):
    runs, domain = old_source
    plan = plan_transfer(TransferConfig(target="Tiny", source_run="Tiny", strategy="cut:1",
                                        data_dir=str(domain.data_dir), runs_dir=str(runs)))
    assert plan.name == "Tiny-Tiny-cut1" and plan.strategy.keep_blocks == 1 and plan.source.model is None
    with pytest.raises(RunError, match="not found"):
        plan_transfer(TransferConfig(target="Tiny", source_run="Nope", data_dir=str(domain.data_dir),
                                     runs_dir=str(runs)))


def test_the_train_command_checks_a_transfer_without_starting_the_backend(old_source):
    """A mistake found by the plan is reported before Keras (and TensorFlow's start-up) is imported."""
    runs, domain = old_source
    code = ("import sys; from convlstm_tl.cli.train import main; from convlstm_tl.errors import UserError\n"
            "try:\n    main(sys.argv[1:])\nexcept UserError:\n    print('keras' in sys.modules)")
    argv = ["--transfer", "Tiny", "--from", "Tiny", "--strategy", "unfreeze:3", "--data-dir", str(domain.data_dir),
            "--runs-dir", str(runs)]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "False", done.stderr[-2000:]
