"""The fast ConvLSTM layer against the stock one, and the data path, measured (``python -m convlstm_tl.bench``).

**Layers.** The project's classifier is built twice, differing only in the
ConvLSTM (``ModelConfig(cell="keras")`` vs ``cell="fast"``), for each shape:
the watch frames (T=10, 1x25x6) and the moving digits (T=10, 40x40x1), batch
32, 2 blocks of 32 filters. After a warm-up (graph tracing and the first
steps), one process alternates between the two models over several
repetitions, flipping which goes first, so that a machine shared with other
work slows both alike; the figures are medians over the repetitions. Peak
memory is the process's peak resident set during each phase (Linux resets
the peak through ``/proc/self/clear_refs``; elsewhere it is the process's
peak so far).

**Data path.** A synthetic domain file of a few GB is written in chunks,
one epoch is trained from it through :class:`convlstm_tl.data.sequence.DomainSequence`,
and the peak resident memory is compared with the file's size; the file is
deleted afterwards. Its frames are wide in channels (8x8x64) and the model
small, so the epoch measures reading rather than the ConvLSTM.
"""

import contextlib
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

# name -> (T, H, W, C), classes
SHAPES = {"watch": ((10, 1, 25, 6), 7), "digits": ((10, 40, 40, 1), 10)}
CELLS = ("keras", "fast")
# Batches per timed phase: at the stock layer's baseline speeds on the 2-core
# CPU (829 / 2,783 seq/s for watch; 15.2 / 49 for 48x48 frames, a bit more for
# 40x40), a full phase takes 1.5 to 4 s, a quick one 0.4 to 2 s.
FULL = {"repeats": 5, "train_batches": {"watch": 40, "digits": 2}, "predict_batches": {"watch": 160, "digits": 4}}
QUICK = {"repeats": 2, "train_batches": {"watch": 10, "digits": 1}, "predict_batches": {"watch": 40, "digits": 1}}
# Data path: frames wide in channels keep the model's share of the epoch small.
DATA_FRAME_SHAPE = (10, 8, 8, 64)
DATA_FILE_GIB = 6.5


def peak_rss_reset():
    """Start a new peak-memory window; True if the OS supports it (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    """Peak resident memory of this process since the last :func:`peak_rss_reset` (or start)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@contextlib.contextmanager
def measured():
    """Time a block and record its peak resident memory into the yielded dict."""
    result = {}
    scoped = peak_rss_reset()
    start = time.perf_counter()
    yield result
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mib"] = peak_rss_bytes() / 2**20
    result["peak_rss_scope"] = "phase" if scoped else "process"


def build_bench_model(cell, frame_shape, n_classes, *, filters=(32, 32), mixed_precision="off", jit="auto", seed=0):
    """The project's classifier with the given ConvLSTM ``cell``, compiled for training."""
    import keras
    import numpy as np

    from convlstm_tl.compute import dtype_policy, jit_compile
    from convlstm_tl.config import ModelConfig
    from convlstm_tl.models.classifier import build_classifier

    keras.utils.set_random_seed(seed)
    channels = frame_shape[-1]
    with dtype_policy(mixed_precision):
        model = build_classifier(ModelConfig(filters=tuple(filters), cell=cell), frame_shape=frame_shape,
                                 n_classes=n_classes, mean=np.zeros(channels), variance=np.ones(channels))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      jit_compile=jit_compile(jit))
    return model


def _train_phase(model, x, y, batch_size):
    with measured() as result:
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    result["seq_per_s"] = len(x) / result["seconds"]
    return result


def _predict_phase(model, x, batch_size):
    with measured() as result:
        model.predict(x, batch_size=batch_size, verbose=0)
    result["seq_per_s"] = len(x) / result["seconds"]
    return result


def benchmark_layers(shapes=tuple(SHAPES), *, cells=CELLS, batch_size=32, repeats=5, train_batches=None,
                     predict_batches=None, filters=(32, 32), mixed_precision="off", jit="auto", seed=0):
    """Train and predict sequences/s of the classifier with each ConvLSTM cell.

    Args:
        shapes: names from :data:`SHAPES`, or ``{name: ((T, H, W, C), n_classes)}``.
        cells: which ConvLSTM implementations to compare (``"keras"``, ``"fast"``).
        batch_size: sequences per batch.
        repeats: timed repetitions per cell, after one warm-up; the cells
            alternate and the first one alternates too.
        train_batches: ``{shape name: batches per training phase}`` (default :data:`FULL`).
        predict_batches: ``{shape name: batches per prediction phase}``.
        filters: filters of the body's blocks.
        mixed_precision: ``"off"``, ``"float16"`` or ``"bfloat16"``.
        jit: ``"auto"``, ``"on"`` or ``"off"`` (XLA).
        seed: seed of the weights and the random inputs.

    Returns:
        ``{shape: {"frame_shape", cell: {"train_seq_per_s", "predict_seq_per_s",
        "train_runs", "predict_runs", "peak_rss_mib", ...}, "train_ratio",
        "predict_ratio"}}``; the ratios are fast / keras and present when
        both cells ran.
    """
    import numpy as np

    shapes = {name: SHAPES[name] for name in shapes} if not isinstance(shapes, dict) else shapes
    train_batches = {**FULL["train_batches"], **(train_batches or {})}
    predict_batches = {**FULL["predict_batches"], **(predict_batches or {})}
    rng = np.random.default_rng(seed)
    results = {}
    for name, (frame_shape, n_classes) in shapes.items():
        n_train = batch_size * train_batches.get(name, 1)
        n_predict = batch_size * predict_batches.get(name, 1)
        x = rng.normal(size=(max(n_train, n_predict), *frame_shape)).astype(np.float32)
        y = rng.integers(0, n_classes, size=len(x))
        models = {cell: build_bench_model(cell, frame_shape, n_classes, filters=filters,
                                          mixed_precision=mixed_precision, jit=jit, seed=seed) for cell in cells}
        runs = {cell: {"train": [], "predict": []} for cell in cells}
        for repeat in range(repeats + 1):
            order = cells if repeat % 2 == 0 else tuple(reversed(cells))
            for cell in order:
                log.info("%s %s repeat %d/%d", name, cell, repeat, repeats)
                train = _train_phase(models[cell], x[:n_train], y[:n_train], batch_size)
                predict = _predict_phase(models[cell], x[:n_predict], batch_size)
                if repeat:  # repeat 0 is the warm-up: tracing, compilation, first allocations
                    runs[cell]["train"].append(train)
                    runs[cell]["predict"].append(predict)
        entry = {"frame_shape": list(frame_shape), "batch_size": batch_size, "filters": list(filters),
                 "mixed_precision": mixed_precision, "jit": jit, "repeats": repeats}
        for cell in cells:
            train, predict = runs[cell]["train"], runs[cell]["predict"]
            entry[cell] = {
                "train_seq_per_s": statistics.median(r["seq_per_s"] for r in train),
                "predict_seq_per_s": statistics.median(r["seq_per_s"] for r in predict),
                "train_runs": [round(r["seq_per_s"], 2) for r in train],
                "predict_runs": [round(r["seq_per_s"], 2) for r in predict],
                "train_peak_rss_mib": max(r["peak_rss_mib"] for r in train),
                "predict_peak_rss_mib": max(r["peak_rss_mib"] for r in predict),
                "peak_rss_scope": train[0]["peak_rss_scope"],
                "n_params": int(models[cell].count_params()),
            }
        if "keras" in cells and "fast" in cells:
            for phase in ("train", "predict"):
                entry[f"{phase}_ratio"] = entry["fast"][f"{phase}_seq_per_s"] / entry["keras"][f"{phase}_seq_per_s"]
        results[name] = entry
    return results


def write_synthetic_domain(path, n_train, frame_shape, *, n_classes=4, n_eval=64, chunk=256, seed=0):
    """Write a domain file of ``n_train`` training samples without holding it in memory.

    Writes ``chunk`` samples at a time through
    :class:`convlstm_tl.data.writer.DomainWriter`, so the file can be larger than
    memory. Samples repeat one random block with a per-chunk offset: cheap to
    make, and no two chunks are equal.

    Returns:
        The :class:`convlstm_tl.data.format.DomainInfo` of the written file.
    """
    import numpy as np

    from convlstm_tl.data.writer import DomainWriter

    rng = np.random.default_rng(seed)
    block = rng.normal(size=(chunk, *frame_shape)).astype(np.float32)
    path = Path(path)
    class_names = [f"class_{i}" for i in range(n_classes)]
    with DomainWriter(path, domain=path.stem, class_names=class_names, frame_shape=frame_shape,
                      provenance="synthetic data written by convlstm_tl.bench to measure the data path") as writer:
        for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                y = rng.integers(0, n_classes, size=stop - start)
                if split == "train" and start == 0:
                    # Every class in train, as the format requires.
                    y[:min(n_classes, len(y))] = np.arange(min(n_classes, len(y)))
                writer.append(split, block[:stop - start] + np.float32(start // chunk % 97) * 0.01, y)
    return writer.info


def benchmark_data_path(directory=None, *, file_gib=DATA_FILE_GIB, frame_shape=DATA_FRAME_SHAPE, batch_size=64,
                        workers=(1, 2), seed=0):
    """Train one epoch from a generated domain file of ``file_gib`` GiB; report memory and speed.

    Args:
        directory: where to write the file (default: the system's temp dir);
            the file is deleted afterwards, also on error.
        file_gib: size of the file's training split in GiB.
        frame_shape: ``(T, H, W, C)`` of the samples.
        batch_size: sequences per batch.
        workers: one epoch per value, each with ``DomainSequence(workers=...)``
            (threads that read batches ahead of the training step).
        seed: seed of the data and the model.

    Returns:
        ``{"file_gib", "n_samples", "frame_shape", "write_seconds", "epochs":
        [{"workers", "seconds", "samples_per_s", "read_mib_per_s",
        "peak_rss_mib", "peak_rss_over_file"}], "peak_rss_mib", "peak_rss_scope",
        "baseline_rss_mib"}``.
    """
    import keras
    import numpy as np

    from convlstm_tl.config import ModelConfig
    from convlstm_tl.data.sequence import DomainSequence
    from convlstm_tl.models.classifier import build_classifier

    sample_bytes = int(np.prod(frame_shape)) * 4
    n_train = max(batch_size, int(file_gib * 2**30 / sample_bytes))
    handle, name = tempfile.mkstemp(prefix="convlstm_tl-bench-", suffix=".h5", dir=directory)
    os.close(handle)
    path = Path(name)
    try:
        start = time.perf_counter()
        info = write_synthetic_domain(path, n_train, frame_shape, seed=seed)
        write_seconds = time.perf_counter() - start
        keras.utils.set_random_seed(seed)
        channels = frame_shape[-1]
        model = build_classifier(ModelConfig(filters=(4,), kernel_size=1, head_units=8), frame_shape=frame_shape,
                                 n_classes=info.n_classes, mean=np.zeros(channels), variance=np.ones(channels))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        # Trace the training step before measuring, on a few batches.
        model.fit(DomainSequence(path, "val", batch_size=batch_size), epochs=1, verbose=0)
        peak_rss_reset()
        baseline = peak_rss_bytes() / 2**20
        epochs = []
        for count in workers:
            train = DomainSequence(path, "train", batch_size=batch_size, shuffle=True, seed=seed, workers=count)
            with measured() as result:
                model.fit(train, epochs=1, verbose=0)
            train.close()
            epochs.append({
                "workers": count,
                "seconds": result["seconds"],
                "samples_per_s": n_train / result["seconds"],
                "read_mib_per_s": n_train * sample_bytes / 2**20 / result["seconds"],
                "peak_rss_mib": result["peak_rss_mib"],
                "peak_rss_over_file": result["peak_rss_mib"] / (n_train * sample_bytes / 2**20),
                "peak_rss_scope": result["peak_rss_scope"],
            })
        file_gib = path.stat().st_size / 2**30
    finally:
        path.unlink(missing_ok=True)
    return {"file_gib": file_gib, "n_samples": n_train, "frame_shape": list(frame_shape), "batch_size": batch_size,
            "write_seconds": write_seconds, "baseline_rss_mib": baseline, "epochs": epochs,
            "peak_rss_mib": max(epoch["peak_rss_mib"] for epoch in epochs)}


def run_benchmark(*, quick=False, shapes=tuple(SHAPES), data_path=None, data_dir=None, mixed_precision="off",
                  jit="auto"):
    """Run the layer benchmark and (unless ``quick``) the data-path benchmark.

    Returns:
        ``{"settings", "versions", "layers": ..., "data_path": ... or None}``.
    """
    from convlstm_tl import backend

    plan = QUICK if quick else FULL
    data_path = not quick if data_path is None else data_path
    results = {
        "settings": {"quick": quick, "mixed_precision": mixed_precision, "jit": jit, "repeats": plan["repeats"],
                     "cpu_count": os.cpu_count()},
        "versions": backend.versions(),
        "layers": benchmark_layers(shapes, repeats=plan["repeats"], train_batches=plan["train_batches"],
                                   predict_batches=plan["predict_batches"], mixed_precision=mixed_precision,
                                   jit=jit),
        "data_path": benchmark_data_path(data_dir) if data_path else None,
    }
    return results
