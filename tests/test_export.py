"""Tests of exports (``convlstm_tl.deploy.export``, ``python -m convlstm_tl.export``) and of a run's signature."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from conftest import CLASS_NAMES, FRAMES_1D, write_tiny
from convlstm_tl.cli import run_main
from convlstm_tl.config import ModelConfig, TrainConfig
from convlstm_tl.deploy import export as export_module
from convlstm_tl.deploy.export import (
    FLOAT32_TOLERANCE, SERVING_INPUT, SERVING_OUTPUT, ExportError, check_samples, export_run, signature_path_of,
)
from convlstm_tl.export import main as export_main
from convlstm_tl.runs.resolve import load_run

PROG = "python -m convlstm_tl.export"
TINY_MODEL = ModelConfig(filters=(4,), head_units=8, head_dropout=0.25)
ONNX_INSTALLED = all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnxruntime"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny trained source run, an ensemble of two, and the samples exports are checked on."""
    from convlstm_tl.training.source import train_source

    root = tmp_path_factory.mktemp("export")
    domain = write_tiny(root / "data")
    common = dict(source=domain.name, data_dir=str(domain.data_dir), runs_dir=str(root / "runs"), epochs=2,
                  batch_size=16, lr=1e-2, seed=0, model=TINY_MODEL)
    single = train_source(TrainConfig(**common), verbose=0).run_dir
    ensemble = train_source(TrainConfig(name="Ens", ensemble=2, **common), verbose=0).run_dir
    run = load_run(single)
    return root, domain, run, load_run(ensemble), check_samples(domain.path)


def _export_line(argv, capsys):
    try:
        code = run_main(export_main, argv, prog=PROG)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{PROG}: error:"), err
    return err[0]


# ------------------------------------------------------------------ signature


@pytest.mark.slow
def test_signature_says_what_the_model_takes_and_gives(world):
    _, domain, run, _, _ = world
    signature = run.signature()
    assert signature["class_names"] == list(CLASS_NAMES)
    assert signature["input"] == {"name": "frames", "shape": [None, *FRAMES_1D], "dtype": "float32",
                                  "layout": "(batch, time T, height H, width W, channels C)"}
    assert signature["output"]["shape"] == [None, len(CLASS_NAMES)]
    normalize = run.model.get_layer("normalize")
    np.testing.assert_allclose(signature["normalization"]["mean"], np.ravel(normalize.mean), rtol=1e-6)
    np.testing.assert_allclose(signature["normalization"]["variance"], np.ravel(normalize.variance), rtol=1e-6)
    assert signature["window_recipe"] is None  # the tiny domain's samples were given whole
    assert signature["versions"]["keras"] == keras.__version__
    assert "convlstm_tl" in signature["versions"]
    json.dumps(signature)  # JSON-ready


# ------------------------------------------------------------------ formats


@pytest.mark.slow
def test_keras_export_matches_and_names_no_toolkit_class(world, tmp_path):
    _, _, run, _, x = world
    out = tmp_path / "model.keras"
    report = export_run(run, out, format="keras", check_x=x)
    assert report.max_abs_diff <= FLOAT32_TOLERANCE and report.agreement == 1.0 and report.n_checked == len(x)
    assert export_module._toolkit_objects(out) == []
    reloaded = keras.saving.load_model(out, compile=False)
    assert not any("FastConvLSTM2D" in type(layer).__name__ for layer in _all_layers(reloaded))
    np.testing.assert_allclose(reloaded.predict_on_batch(x), run.model.predict_on_batch(x), atol=1e-5)
    signature = json.loads(signature_path_of(out).read_text())
    assert signature["export"]["format"] == "keras" and signature["class_names"] == list(CLASS_NAMES)


@pytest.mark.slow
def test_keras_export_loads_in_a_process_without_the_toolkit(world, tmp_path):
    _, _, run, _, x = world
    out = tmp_path / "model.keras"
    export_run(run, out, format="keras", check_x=x)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", run.model.predict_on_batch(x))
    # Any import of convlstm_tl fails in the child, however it is installed.
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("convlstm_tl", "data_prep", "experiments"):
                    raise ImportError("the toolkit is not installed here")
        sys.meta_path.insert(0, Block())
        import keras, numpy as np
        model = keras.saving.load_model({str(out)!r}, compile=False)
        got = model.predict_on_batch(np.load({str(tmp_path / 'x.npy')!r}))
        print(float(np.abs(got - np.load({str(tmp_path / 'expected.npy')!r})).max()))
        print("convlstm_tl" in sys.modules)
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    diff, imported = result.stdout.split()[-2:]
    assert float(diff) <= 1e-5 and imported == "False"


@pytest.mark.slow
def test_ensemble_exports_to_stock_keras(world, tmp_path):
    _, _, _, ensemble, x = world
    report = export_run(ensemble, tmp_path / "ens.keras", format="keras", check_x=x)
    assert report.max_abs_diff <= FLOAT32_TOLERANCE


@pytest.mark.slow
def test_savedmodel_serves_frames_to_probabilities(world, tmp_path):
    import tensorflow as tf

    _, _, run, _, x = world
    out = tmp_path / "served"
    report = export_run(run, out, format="savedmodel", check_x=x)
    assert report.max_abs_diff <= FLOAT32_TOLERANCE
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    assert list(serve.structured_input_signature[1]) == [SERVING_INPUT]
    assert list(serve.structured_outputs) == [SERVING_OUTPUT]
    got = serve(frames=tf.constant(x[:5]))[SERVING_OUTPUT].numpy()
    np.testing.assert_allclose(got, run.model.predict_on_batch(x[:5]), atol=1e-5)
    assert (tmp_path / "served.signature.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["none", "dynamic", "float16"])
def test_tflite_export_runs_in_the_interpreter(world, tmp_path, quantize):
    _, _, run, _, x = world
    out = tmp_path / f"model-{quantize}.tflite"
    report = export_run(run, out, format="tflite", quantize=quantize, check_x=x)
    assert out.read_bytes()[4:8] == b"TFL3"
    if quantize == "none":
        assert report.tolerance == FLOAT32_TOLERANCE and report.max_abs_diff <= FLOAT32_TOLERANCE
    else:  # reported, not checked
        assert report.tolerance is None and 0.0 <= report.agreement <= 1.0
    assert report.latency_ms > 0 and report.reference_latency_ms > 0
    predict, _ = export_module._TFLite.load(out)
    # Any batch size: the batch axis is free.
    for n in (1, 7):
        assert predict(x[:n]).shape == (n, len(CLASS_NAMES))


@pytest.mark.slow
def test_onnx_export_matches_or_says_what_is_missing(world, tmp_path):
    _, _, run, _, x = world
    if not ONNX_INSTALLED:
        with pytest.raises(ExportError, match="needs the package"):
            export_run(run, tmp_path / "m.onnx", format="onnx", check_x=x)
        assert list(tmp_path.iterdir()) == []
        pytest.skip("tf2onnx or onnxruntime is not installed (pip install 'convlstm_tl[onnx]'): checked the refusal")
    report = export_run(run, tmp_path / "m.onnx", format="onnx", check_x=x)
    assert report.max_abs_diff <= FLOAT32_TOLERANCE


@pytest.mark.slow
def test_long_sequences_export_to_tflite_and_onnx(tmp_path):
    """Beyond UNROLL_MAX_STEPS the fast layer loops with keras.ops.scan, which neither converter takes: unrolled."""
    from convlstm_tl.models.layers import UNROLL_MAX_STEPS
    from convlstm_tl.training.source import train_source

    steps = UNROLL_MAX_STEPS + 8
    domain = write_tiny(tmp_path / "data", name="Long", frame_shape=(steps, 1, 4, 2))
    run_dir = train_source(TrainConfig(source="Long", data_dir=str(domain.data_dir), runs_dir=str(tmp_path / "runs"),
                                       epochs=1, batch_size=16, seed=0, model=TINY_MODEL), verbose=0).run_dir
    run = load_run(run_dir)
    x = check_samples(domain.path, limit=16)
    formats = ["tflite"] + (["onnx"] if ONNX_INSTALLED else [])
    for format in formats:
        report = export_run(run, tmp_path / f"long.{format}", format=format, check_x=x)
        assert report.max_abs_diff <= FLOAT32_TOLERANCE, format


# ------------------------------------------------------------------ refusals and atomicity


@pytest.mark.slow
def test_an_export_that_differs_writes_nothing(world, tmp_path, monkeypatch):
    _, _, run, _, x = world
    real_load = export_module._TFLite.load

    def off_by_a_little(path):
        predict, runtime = real_load(path)
        return (lambda batch: predict(batch) + 1e-3), runtime

    monkeypatch.setattr(export_module._TFLite, "load", staticmethod(off_by_a_little))
    with pytest.raises(ExportError, match="differs from the run's model by up to 0.001"):
        export_run(run, tmp_path / "m.tflite", format="tflite", check_x=x)
    assert list(tmp_path.iterdir()) == []  # no export, no signature, no work folder


@pytest.mark.slow
def test_existing_destinations_are_kept(world, tmp_path):
    _, _, run, _, x = world
    mine = tmp_path / "model.keras"
    mine.write_text("the user's own file")
    with pytest.raises(ExportError, match="exists; choose another --out or pass --overwrite"):
        export_run(run, mine, format="keras", check_x=x)
    assert mine.read_text() == "the user's own file"
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_text("x")
    with pytest.raises(ExportError, match="is not an earlier savedmodel export"):
        export_run(run, folder, format="savedmodel", check_x=x, overwrite=True)
    with pytest.raises(ExportError, match="a tflite export is a file"):
        export_run(run, folder, format="tflite", check_x=x, overwrite=True)
    assert (folder / "holiday.jpg").read_text() == "x"
    # --overwrite replaces an earlier export of the same format only, never the user's own file.
    with pytest.raises(ExportError, match="is not an earlier keras export"):
        export_run(run, mine, format="keras", check_x=x, overwrite=True)
    assert mine.read_text() == "the user's own file"
    with pytest.raises(ExportError, match="must end in .keras"):
        export_run(run, tmp_path / "model", format="keras", check_x=x)
    link = tmp_path / "link.tflite"
    link.symlink_to(mine)
    with pytest.raises(ExportError, match="is a symbolic link"):
        export_run(run, link, format="tflite", check_x=x, overwrite=True)


@pytest.mark.slow
def test_overwrite_replaces_an_earlier_export_of_the_same_format(world, tmp_path):
    _, _, run, _, x = world
    out = tmp_path / "m.tflite"
    export_run(run, out, format="tflite", check_x=x[:4])
    first = out.read_bytes()
    report = export_run(run, out, format="tflite", quantize="float16", check_x=x[:4], overwrite=True)
    assert out.read_bytes() != first and report.quantize == "float16"
    signature = json.loads(signature_path_of(out).read_text())
    assert signature["export"]["file"] == "m.tflite" and signature["export"]["quantize"] == "float16"
    assert signature["output"]["name"] == SERVING_OUTPUT
    with pytest.raises(ExportError, match="is not an earlier onnx export"):
        export_run(run, out, format="onnx", check_x=x[:4], overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "m.tflite.signature.json"]


@pytest.mark.parametrize("argv, expected", [
    (["--format", "keras", "--quantize", "dynamic"], "quantization is offered for tflite only"),
    (["--format", "zip"], "invalid choice: 'zip'"),
    (["--format", "tflite", "--check-samples", "0"], "--check-samples must be at least 1"),
])
def test_cli_option_mistakes_are_one_line(tmp_path, capsys, argv, expected):
    line = _export_line(["--run", "nothing", "--out", str(tmp_path / "m"), "--runs-dir", str(tmp_path), *argv],
                        capsys)
    assert expected in line


@pytest.mark.slow
def test_cli_refuses_an_unknown_run_and_a_missing_domain_file(world, tmp_path, capsys):
    root, _, run, _, _ = world
    line = _export_line(["--run", "nope", "--format", "keras", "--out", str(tmp_path / "m.keras"),
                         "--runs-dir", str(root / "runs")], capsys)
    assert "nope" in line
    # A copy of the run whose domain file is neither at its recorded path nor in --data-dir.
    moved = tmp_path / "moved"
    _copy_run_with_domain_path(run.path, moved, "/nonexistent/Tiny.h5")
    line = _export_line(["--run", str(moved), "--format", "keras", "--out", str(tmp_path / "m.keras"),
                         "--data-dir", str(tmp_path / "empty")], capsys)
    assert "point --data-dir at the folder that has Tiny.h5" in line
    assert not (tmp_path / "m.keras").exists()


@pytest.mark.slow
def test_cli_exports_and_reports(world, tmp_path, capsys):
    root, domain, _, _, _ = world
    out = tmp_path / "St.tflite"
    assert export_main(["--run", "Tiny", "--runs-dir", str(root / "runs"), "--format", "tflite", "--out", str(out),
                        "--data-dir", str(domain.data_dir), "--check-samples", "8", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["n_checked"] == 8 and report["path"] == str(out) and out.is_file()
    assert captured.err == ""  # the interpreter's native notices are held back


def _copy_run_with_domain_path(run_dir, to, domain_path):
    import shutil

    shutil.copytree(run_dir, to)
    record = json.loads((to / "config.json").read_text())
    record["domain"]["path"] = domain_path
    (to / "config.json").write_text(json.dumps(record))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
