"""A run's model in the formats that serve it outside the toolkit, each checked against the run's own predictions.

    from convlstm_tl import load_run
    from convlstm_tl.deploy.export import export_run

    run = load_run("St")
    report = export_run(run, "exports/St.tflite", format="tflite")
    report.max_abs_diff, report.latency_ms

Formats (:data:`FORMATS`):

- ``keras``: a ``.keras`` file with ``keras.layers.ConvLSTM2D`` in place of
  the toolkit's layer (the weights have the stock layout already), which
  plain Keras 3 loads without the toolkit;
- ``savedmodel``: a TensorFlow SavedModel folder for TF Serving, whose
  ``serving_default`` signature takes ``frames`` and returns ``probabilities``;
- ``tflite``: a TensorFlow Lite flatbuffer, float32 or quantized
  (``quantize="dynamic"`` int8 weights, ``"float16"`` weights);
- ``onnx``: an ONNX model converted by ``tf2onnx`` (the ``onnx`` extra), run
  with ``onnxruntime``.

Every export is loaded back with its own runtime and run on samples of the
run's test split; the largest absolute difference of a class probability
from the run's model is reported and, for float32 formats, must not exceed
:data:`FLOAT32_TOLERANCE`, or nothing is written. The per-sequence latency
(batch 1) of the exported model in its runtime is measured beside the run's
Keras model's. A ``<out>.signature.json`` beside the export says what the
model takes and gives (:meth:`convlstm_tl.runs.resolve.Run.signature`) and
how the export was checked.
"""

import json
import os
import shutil
import statistics
import tempfile
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convlstm_tl.errors import UserError, first_line
from convlstm_tl.quiet import held_native_stderr

FORMATS = ("keras", "savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "dynamic", "float16")
# The largest difference of a class probability a float32 export may show.
FLOAT32_TOLERANCE = 1e-4
# Test samples the export is checked on (spread over the split), at most.
CHECK_SAMPLES = 256
# Forward passes of one sequence timed for the latency (after one untimed pass).
LATENCY_RUNS = 30
SERVING_INPUT = "frames"
# The ONNX opset written: tf2onnx 1.17 converts up to 18; 15 is its default and what onnxruntime 1.20+ all run.
ONNX_OPSET = 15
SERVING_OUTPUT = "probabilities"
SUFFIXES = {"keras": ".keras", "tflite": ".tflite", "onnx": ".onnx", "savedmodel": ""}
SIGNATURE_SUFFIX = ".signature.json"


class ExportError(UserError):
    """An export that cannot be made, or that does not predict as the run's model does."""


@dataclass
class ExportReport:
    """What an export wrote and how it was checked.

    Attributes:
        format: one of :data:`FORMATS`.
        quantize: one of :data:`QUANTIZATIONS` (``"none"`` but for tflite).
        path: the exported file or folder.
        signature_path: the ``signature.json`` beside it.
        size_bytes: the export's size on disk.
        n_checked: test samples compared with the run's model.
        max_abs_diff: the largest absolute difference of a class probability.
        agreement: the fraction of those samples whose predicted class is the same.
        tolerance: the largest difference allowed (None: reported only, for quantized models).
        latency_ms: median time of one sequence (batch 1) in the export's runtime.
        reference_latency_ms: the same for the run's Keras model (``predict_on_batch``).
        runtime: what ran the export (e.g. ``"tf.lite.Interpreter"``).
    """

    format: str
    quantize: str
    path: str
    signature_path: str
    size_bytes: int
    n_checked: int
    max_abs_diff: float
    agreement: float
    tolerance: float | None
    latency_ms: float
    reference_latency_ms: float
    runtime: str

    def to_dict(self):
        """The report as a JSON-ready dict."""
        return asdict(self)


def export_run(run, out, *, format, quantize="none", check_x, overwrite=False, tolerance=FLOAT32_TOLERANCE):
    """Export ``run``'s model to ``out``, check it against the run's predictions, and write its signature.

    Args:
        run: a :class:`~convlstm_tl.runs.resolve.Run` loaded with its model.
        out: the file (``keras``, ``tflite``, ``onnx``) or folder
            (``savedmodel``) to write.
        format: one of :data:`FORMATS`.
        quantize: for ``tflite``, one of :data:`QUANTIZATIONS`.
        check_x: samples to compare the export with the run's model on
            (e.g. :func:`check_samples` of the run's test split).
        overwrite: replace an existing export at ``out``.
        tolerance: the largest difference of a class probability allowed for
            a float32 export; quantized exports are reported, not checked.

    Returns:
        An :class:`ExportReport`.

    Raises:
        ExportError: for a bad destination or option, a converter that is
            missing or fails, or an export that predicts differently; nothing
            is written then.
    """
    check_options(format, quantize)
    run.check_classifier("an export")
    out = Path(out)
    signature_path = signature_path_of(out)
    check_destination(out, format, overwrite=overwrite)
    exporter = _EXPORTERS[format]
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=_existing_parent(out)))
    try:
        artifact = work / f"model{SUFFIXES[format]}"
        exporter.write(run.model, artifact, run=run, quantize=quantize)
        predict_one, runtime = exporter.load(artifact)
        reference = np.asarray(run.model.predict_on_batch(check_x), dtype=np.float32)
        exported = np.asarray(predict_one(check_x), dtype=np.float32)
        if exported.shape != reference.shape:
            raise ExportError(f"the {format} export gives outputs of shape {exported.shape}, the run's model"
                              f" {reference.shape}; nothing written")
        diff = float(np.max(np.abs(exported - reference))) if reference.size else 0.0
        limit = tolerance if quantize == "none" else None
        if limit is not None and not diff <= limit:
            raise ExportError(f"the {format} export differs from the run's model by up to {diff:.3g} in a class"
                              f" probability (allowed: {limit:g}) on {len(check_x)} test samples; nothing written")
        one = check_x[:1]
        report = ExportReport(
            format=format, quantize=quantize, path=str(out), signature_path=str(signature_path),
            size_bytes=_size(artifact), n_checked=len(check_x), max_abs_diff=diff,
            agreement=float(np.mean(exported.argmax(-1) == reference.argmax(-1))) if len(check_x) else 1.0,
            tolerance=limit, latency_ms=median_latency_ms(predict_one, one),
            reference_latency_ms=median_latency_ms(run.model.predict_on_batch, one), runtime=runtime)
        checked = {key: value for key, value in report.to_dict().items() if key not in ("path", "signature_path")}
        signature = {**run.signature(), "export": {"file": out.name, **checked, "versions": _versions_now()}}
        if format != "keras":  # the serving formats name their input and output
            signature["output"] = {"name": SERVING_OUTPUT, **signature["output"]}
        (work / "signature.json").write_text(json.dumps(signature, indent=2) + "\n")
        _publish(artifact, out)
        os.replace(work / "signature.json", signature_path)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_options(format, quantize):
    """Refuse an unknown format or quantization, or quantizing a format other than tflite."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
    if quantize != "none" and format != "tflite":
        raise ExportError(f"quantization is offered for tflite only. Received: format={format}, quantize={quantize}")


def signature_path_of(out):
    """Where the signature of an export at ``out`` goes: ``<out>.signature.json``, beside it."""
    out = Path(out)
    return out.with_name(out.name + SIGNATURE_SUFFIX)


def check_destination(out, format, *, overwrite=False):
    """Refuse a destination that exists (unless ``overwrite`` and it is an earlier export) or cannot be written.

    ``overwrite`` replaces only an earlier export of the same format, known
    by the ``<out>.signature.json`` this module wrote beside it, so that a
    mistyped ``--out`` never replaces a file or folder the user keeps. A
    ``keras`` export must end in ``.keras``, which Keras' loader requires.
    """
    wants_folder = format == "savedmodel"
    if str(out).endswith(("/", os.sep)) and not wants_folder:
        raise ExportError(f"--out {out} names a folder; a {format} export is a file, e.g."
                          f" {Path(out) / ('model' + SUFFIXES[format])}")
    out = Path(out)
    if format == "keras" and out.suffix != ".keras":
        raise ExportError(f"a keras export must end in .keras (Keras loads no other name). Received: --out {out}")
    signature = signature_path_of(out)
    for path in (out, signature):
        if path.is_symlink() or (path.exists() and not (path.is_file() or path.is_dir())):
            raise ExportError(f"{path} is {'a symbolic link' if path.is_symlink() else 'not a regular file'};"
                              " choose another --out")
    if out.exists() or signature.exists():
        if not overwrite:
            raise ExportError(f"{out if out.exists() else signature} exists; choose another --out or pass"
                              " --overwrite to replace the export")
        if out.exists() and out.is_dir() != wants_folder:
            kind = "a folder" if out.is_dir() else "a file"
            raise ExportError(f"{out} is {kind}; a {format} export is {'a folder' if wants_folder else 'a file'},"
                              " choose another --out")
        if _exported_format(signature) != format:
            raise ExportError(f"{out if out.exists() else signature} is not an earlier {format} export (no"
                              f" {signature.name} of one beside it); --overwrite replaces only those: choose"
                              " another --out")
    parent = _existing_parent(out)
    if not os.access(parent, os.W_OK):
        raise ExportError(f"cannot write in {parent} (permission denied); choose another --out")


def _exported_format(signature):
    """The format an earlier export's signature file records, or None for anything else."""
    try:
        return json.loads(Path(signature).read_text(encoding="utf-8"))["export"]["format"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_samples(path, split="test", *, limit=CHECK_SAMPLES, dtype="float32"):
    """Up to ``limit`` samples of a split, spread evenly over it, in the model's input dtype."""
    import h5py

    from convlstm_tl.data.reader import read_split

    with h5py.File(path, "r") as f:
        n = f[split]["x"].shape[0]
    indices = np.unique(np.linspace(0, n - 1, num=min(limit, n)).round().astype(int))
    x, _ = read_split(path, split, indices)
    return x.astype(dtype, copy=False)


def median_latency_ms(predict, x, runs=LATENCY_RUNS):
    """Median wall time of ``predict(x)`` in milliseconds, after one untimed call."""
    predict(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


# ------------------------------------------------------------------ formats


class _Keras:
    """The model with the stock ``keras.layers.ConvLSTM2D``: loadable by plain Keras 3."""

    @staticmethod
    def write(model, path, **_):
        from convlstm_tl.models.layers import convert_model

        stock = convert_model(model, to="keras")
        stock.save(path)
        toolkit = _toolkit_objects(path)
        if toolkit:
            raise ExportError(f"the keras export still names the toolkit's {', '.join(toolkit)}; plain Keras could"
                              " not load it; nothing written")

    @staticmethod
    def load(path):
        import keras

        model = keras.saving.load_model(path, compile=False)
        return model.predict_on_batch, f"keras {keras.__version__} (stock ConvLSTM2D)"


class _SavedModel:
    """A SavedModel whose ``serving_default`` maps ``frames`` to ``probabilities``."""

    @staticmethod
    def write(model, path, *, run, **_):
        write_saved_model(model, path, run)

    @staticmethod
    def load(path):
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]

        def predict(x):
            return serve(**{SERVING_INPUT: tf.constant(x)})[SERVING_OUTPUT].numpy()

        return predict, f"tensorflow {tf.__version__} SavedModel"


def write_saved_model(model, path, run):
    """Write ``model`` as a SavedModel with one serving signature, ``frames`` -> ``probabilities``."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec((None, *run.frame_shape), dtype=run.input_dtype, name=SERVING_INPUT)

    def serve(frames):
        return {SERVING_OUTPUT: model(frames, training=False)}

    archive.add_endpoint("serve", serve, input_signature=[spec])
    _quietly(archive.write_out, str(path), verbose=False)


class _TFLite:
    """A TensorFlow Lite flatbuffer, converted from a SavedModel of the unrolled model (:func:`unrolled`)."""

    @staticmethod
    def write(model, path, *, run, quantize):
        import tensorflow as tf

        saved = path.with_suffix(".savedmodel")
        # Unrolled: the converter cannot lower the while loop of keras.ops.scan
        # with a free batch axis to builtin ops (TensorListReserve).
        write_saved_model(unrolled(model), saved, run)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        path.write_bytes(_converted("the TensorFlow Lite converter", converter.convert))
        shutil.rmtree(saved)

    @staticmethod
    def load(path):
        interpreter_class, runtime = _tflite_interpreter()
        interpreter = interpreter_class(model_path=str(path))
        (entry,), (exit_,) = interpreter.get_input_details(), interpreter.get_output_details()
        shape = [None]

        def predict(x):
            if shape[0] != x.shape:
                with held_native_stderr():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
                    interpreter.resize_tensor_input(entry["index"], list(x.shape), strict=False)
                    interpreter.allocate_tensors()
                shape[0] = x.shape
            interpreter.set_tensor(entry["index"], np.ascontiguousarray(x, dtype=entry["dtype"]))
            interpreter.invoke()
            return interpreter.get_tensor(exit_["index"]).copy()

        return predict, runtime


def _tflite_interpreter():
    """The LiteRT interpreter where installed (``ai-edge-litert``), else TensorFlow's own ``tf.lite.Interpreter``."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert Interpreter"
    except ImportError:
        import tensorflow as tf

        def interpreter(**kwargs):
            with warnings.catch_warnings():  # it warns that it moves to LiteRT
                warnings.simplefilter("ignore")
                return tf.lite.Interpreter(**kwargs)

        return interpreter, f"tf.lite.Interpreter (tensorflow {tf.__version__})"


class _ONNX:
    """An ONNX model converted by tf2onnx from the unrolled model (:func:`unrolled`), run with onnxruntime.

    ``tf2onnx.convert.from_keras`` is used rather than Keras' own
    ``export(format="onnx")``: that one leaves the normalization's mean and
    variance as extra graph inputs (tf2onnx 1.17, Keras 3.15), which
    onnxruntime then asks for. Every ConvLSTM is unrolled first, because
    tf2onnx cannot convert the TensorFlow while loop of ``keras.ops.scan``
    (the fast layer's loop beyond :data:`~convlstm_tl.models.layers.UNROLL_MAX_STEPS`
    steps) and writes a file onnxruntime refuses.
    """

    @staticmethod
    def write(model, path, *, run, **_):
        _require("tf2onnx", "onnx export")
        _require("onnxruntime", "onnx export (to check it)")
        import tensorflow as tf
        import tf2onnx

        spec = (tf.TensorSpec((None, *run.frame_shape), dtype=run.input_dtype, name=SERVING_INPUT),)
        _converted("the ONNX converter (tf2onnx)", tf2onnx.convert.from_keras, _named_output(unrolled(model)),
                   input_signature=spec, opset=ONNX_OPSET, output_path=str(path))

    @staticmethod
    def load(path):
        import onnxruntime

        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # tf2onnx writes a file even when a node failed to convert
            raise ExportError(f"onnxruntime cannot load the converted model ({first_line(error)}); nothing"
                              " written") from None
        (entry,) = session.get_inputs()

        def predict(x):
            return session.run(None, {entry.name: x})[0]

        return predict, f"onnxruntime {onnxruntime.__version__}"


def unrolled(model):
    """A copy of ``model`` whose every :class:`FastConvLSTM2D` unrolls its recurrence (same weights)."""
    import keras

    from convlstm_tl.models.layers import FastConvLSTM2D

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, FastConvLSTM2D):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def _named_output(model):
    """``model`` with its output named :data:`SERVING_OUTPUT` (the name converters give the graph's output)."""
    import keras

    return keras.Model(model.inputs, keras.layers.Identity(name=SERVING_OUTPUT)(model.outputs[0]), name=model.name)


_EXPORTERS = {"keras": _Keras, "savedmodel": _SavedModel, "tflite": _TFLite, "onnx": _ONNX}


# ------------------------------------------------------------------ helpers


def _require(module, purpose):
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ExportError(f"{purpose} needs the package {module}, which is not installed;"
                          " pip install 'convlstm_tl[onnx]'")


def _toolkit_objects(path):
    """Names of the toolkit's own classes that a saved ``.keras`` file's config refers to."""
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    found = set()

    def visit(node):
        if isinstance(node, dict):
            module, name = str(node.get("module", "")), str(node.get("registered_name", ""))
            if module.startswith("convlstm_tl") or name.startswith("convlstm_tl>"):
                found.add(str(node.get("class_name", name)))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(json.loads(config))
    return sorted(found)


def _converted(converter, function, *args, **kwargs):
    """``function(*args, **kwargs)`` with the converter's own output held back; its failure as one ExportError line.

    Converters write pages of MLIR or graph diagnostics to stderr; the
    exception's first line says enough to act on.
    """
    failure = None
    with held_native_stderr():
        try:
            return _quietly(function, *args, **kwargs)
        except Exception as error:  # converters fail in many types
            failure = error
    raise ExportError(f"{converter} failed ({type(failure).__name__}: {first_line(failure)}); nothing written")


def _quietly(function, *args, **kwargs):
    """Call ``function`` with the converters' Python warnings held back (they are not the user's to act on)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def _publish(artifact, out):
    """Move the checked export to ``out``, replacing an earlier export (checked by :func:`check_destination`)."""
    from convlstm_tl.files import replace_folder

    out.parent.mkdir(parents=True, exist_ok=True)
    if artifact.is_dir():
        replace_folder(artifact, out)
    else:
        os.replace(artifact, out)


def _existing_parent(out):
    """The nearest existing folder at or above ``out``'s parent (where the work folder goes)."""
    parent = Path(out).resolve().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def _size(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _versions_now():
    from convlstm_tl import backend

    return backend.versions()
