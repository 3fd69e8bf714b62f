"""Runs written by earlier versions still load, transfer and evaluate; plain Keras reloads any run.

``tests/data/runs-29d757e`` holds a source run ``Tiny`` (2 blocks of 4 filters)
and a transfer run ``Tiny-cut1`` written by commit 29d757e (the flat layout
before the subpackages), trained for 2 epochs on ``write_tiny``'s domain,
which the tests write again: the same generator, the same samples.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convlstm_tl
from conftest import write_tiny
from convlstm_tl.config import TransferConfig

OLD_RUNS = Path(__file__).parent / "data" / "runs-29d757e"
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def old_world(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(OLD_RUNS, runs)
    # The transfer recorded its source where it was trained; point it at the copy (as after moving a runs folder).
    record = json.loads((runs / "Tiny-cut1" / "config.json").read_text())
    record["source_run"] = str(runs / "Tiny")
    (runs / "Tiny-cut1" / "config.json").write_text(json.dumps(record))
    domain = write_tiny(tmp_path / "data")
    return runs, domain


def test_load_run_returns_model_record_and_metrics(old_world):
    runs, domain = old_world
    run = convlstm_tl.load_run("Tiny", runs)
    assert run.kind == "source" and run.n_blocks == 2 and run.class_names == list(domain.class_names)
    assert run.frame_shape == tuple(domain.frame_shape) and run.model_config.filters == (4, 4)
    assert set(run.metrics) >= {"accuracy", "macro_f1", "confusion_matrix"}
    # The model scores today what the old code recorded for it.
    x, y = domain.splits["test"].x, domain.splits["test"].y
    accuracy = float(np.mean(run.model.predict(x, verbose=0).argmax(-1) == y))
    assert accuracy == pytest.approx(run.metrics["accuracy"])
    transfer = convlstm_tl.load_run(runs / "Tiny-cut1")  # a path works as well as a name
    assert transfer.kind == "transfer" and transfer.n_blocks == 1


def test_old_runs_transfer_and_evaluate(old_world):
    runs, domain = old_world
    result = convlstm_tl.transfer(TransferConfig(target="Tiny", source_run="Tiny", strategy="freeze",
                                                 data_dir=str(domain.data_dir), runs_dir=str(runs), epochs=1,
                                                 batch_size=16), verbose=0)
    assert result.run_dir.name == "Tiny-Tiny-freeze" and 0.0 <= result.metrics["accuracy"] <= 1.0
    evaluation = convlstm_tl.evaluate_runs([runs / "Tiny", runs / "Tiny-cut1", result.run_dir], ["Tiny"],
                                      data_dir=domain.data_dir, progress=False)
    assert evaluation.cell("Tiny", "Tiny")["accuracy"] == pytest.approx(
        convlstm_tl.load_run("Tiny", runs, with_model=False).metrics["accuracy"])
    assert evaluation.cell("Tiny-cut1", "Tiny")["accuracy"] == pytest.approx(
        convlstm_tl.load_run("Tiny-cut1", runs, with_model=False).metrics["accuracy"])
    forgetting = {row["run"]: row for row in evaluation.forgetting}
    for name in ("Tiny-cut1", "Tiny-Tiny-freeze"):
        row = forgetting[name]
        assert row["before"] == pytest.approx(evaluation.cell("Tiny", "Tiny")["accuracy"])
        assert row["lost"] == pytest.approx(row["before"] - evaluation.cell(name, "Tiny")["accuracy"])


# One import order in the fast tier (each case starts a Python with TensorFlow, ~10 s); the others in the slow one.
@pytest.mark.parametrize("imports", ["import keras, convlstm_tl",
                                     pytest.param("import convlstm_tl, keras", marks=pytest.mark.slow),
                                     pytest.param("import convlstm_tl.training.transfer, keras",
                                                  marks=pytest.mark.slow)])
def test_plain_keras_load_model_after_importing_the_package(imports, tmp_path):
    """``import convlstm_tl`` registers the toolkit's layers, whether Keras is imported before, after or through it."""
    code = f"{imports}, sys; model = keras.saving.load_model(sys.argv[1], compile=False); print(model.count_params())"
    done = subprocess.run([sys.executable, "-c", code, str(OLD_RUNS / "Tiny" / "model.keras")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 0


def test_importing_the_package_does_not_import_keras():
    code = "import convlstm_tl, convlstm_tl.data.format, sys; print('keras' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


def _env():
    import os

    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
