"""Scale-out with ``tf.distribute`` (TensorFlow backend only).

``--distribute`` picks one of:

- ``none``: no strategy, the default device;
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over the local GPUs, or
  over the logical CPU devices when there is no GPU (tests configure two
  with ``tf.config.set_logical_device_configuration``);
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy``; the
  cluster and this process's task come from the ``TF_CONFIG`` variable.

The model is built and compiled inside :func:`scope`. A run's batch size is
the global batch. On one machine Keras splits every batch of the
``PyDataset`` over the replicas (``experimental_distribute_dataset``). With
several workers :func:`fit_input` turns the sequence into a ``tf.data``
pipeline per worker (``distribute_datasets_from_function``): every worker
walks the same global batches in the same order and keeps its replicas'
slices of each. Only the chief writes the run directory; the other workers
do the same work, saves included, in a throwaway folder.

Everything else in the library uses ``keras.*`` only; this module imports
TensorFlow only when a strategy is asked for.
"""

import contextlib
import json
import os

from convlstm_tl.errors import ConfigError


def read_tf_config(environ=None):
    """The cluster and task of ``TF_CONFIG``, checked.

    Returns:
        ``(cluster, task_type, task_index)``.

    Raises:
        ConfigError: if ``TF_CONFIG`` is missing or does not name this task
            in the cluster.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    example = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
               '"index": 0}}')
    if not text:
        raise ConfigError(f"distribute multiworker needs the TF_CONFIG environment variable, {example}",
                          field="distribute")
    try:
        data = json.loads(text)
        cluster, task = data["cluster"], data["task"]
        task_type, task_index = task["type"], int(task["index"])
        known = cluster[task_type]
        if not 0 <= task_index < len(known):
            raise IndexError(task_index)
    except (ValueError, KeyError, TypeError, IndexError):
        raise ConfigError(f"TF_CONFIG must name this task in its cluster, {example}. Received: {text!r}") from None
    return cluster, task_type, task_index


def is_chief(kind, environ=None):
    """Whether this process writes the run directory.

    Always, except under ``multiworker`` for a task that is not the chief:
    the task of type ``chief``, or worker 0 when the cluster has no chief.
    """
    if kind != "multiworker":
        return True
    cluster, task_type, task_index = read_tf_config(environ)
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and task_index == 0


def make_strategy(kind):
    """Return the ``tf.distribute`` strategy for ``kind``, or None for ``"none"``.

    Call it before any other TensorFlow work: the multi-worker strategy sets
    up its collective ops when the runtime starts.

    Raises:
        ConfigError: for a backend other than TensorFlow, or a bad ``TF_CONFIG``.
    """
    if kind == "none":
        return None
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"distribute {kind} needs the TensorFlow backend. Received: KERAS_BACKEND="
                          f"{keras.backend.backend()}", field="distribute")
    import tensorflow as tf

    if kind == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if kind == "multiworker":
        read_tf_config()
        return _multi_worker_strategy_class()()
    raise ConfigError(f"distribute must be none, mirrored or multiworker. Received: {kind!r}")


def scope(strategy):
    """The strategy's scope, or a context that does nothing for no strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def replicas(strategy):
    """How many replicas share each global batch (1 without a strategy)."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def _multi_worker_strategy_class():
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras 3.15 gives it.

    Two calls of Keras 3.15 fail with the plain strategy: ``fit`` reduces its
    first batch, an ``(x, y)`` tuple of per-replica values, with one
    ``strategy.reduce("MEAN", batch, axis=None)`` to learn the input shapes
    ("Attempt to convert a value (PerReplica...) to a Tensor": the strategy
    reduces single values only), and every step reduces its scalar logs
    with ``axis=0`` ("Invalid reduction dimension 0 for input with 0
    dimensions"). Here every leaf of a nest is reduced on its own, and a
    scalar only across replicas.
    """
    import tensorflow as tf

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        multi_worker = True

        def reduce(self, reduce_op, value, axis):
            base = super().reduce

            def reduce_leaf(leaf):
                rank = getattr(self.experimental_local_results(leaf)[0], "shape", tf.TensorShape(None)).rank
                return base(reduce_op, leaf, None if rank == 0 else axis)

            return tf.nest.map_structure(reduce_leaf, value)

    return MultiWorkerStrategy


def fit_input(model, sequence):
    """What ``model.fit`` should be given for ``sequence`` (a ``PyDataset`` of ``(x, y)``).

    The sequence itself, except when ``model`` was built under the
    multi-worker strategy: then a distributed ``tf.data`` pipeline. Each
    worker builds its own from the sequence (no auto-sharding): every time it
    is iterated it reads the global batches of the sequence's current epoch
    in order, splits each into one slice per replica and yields its own
    replicas' slices. It leaves the sequence as it is: the caller calls
    ``sequence.on_epoch_end()`` at the end of every epoch (Keras does for a
    ``PyDataset``, not for this), so that every worker, whatever its
    prefetching, reads the same order. A last batch with fewer samples than
    there are replicas is left out.

    On TensorFlow with one replica, an in-memory sequence (cached body
    features) becomes a ``tf.data`` pipeline over its arrays instead
    (:func:`in_memory_input`), which follows the sequence's order of every
    epoch; the caller calls ``sequence.on_epoch_end()`` as above.
    """
    strategy = getattr(model, "distribute_strategy", None)
    if not getattr(strategy, "multi_worker", False):
        if _in_memory_pipeline_fits(sequence, strategy):
            return in_memory_input(sequence)
        return sequence
    import numpy as np
    import tensorflow as tf

    n_replicas = strategy.num_replicas_in_sync
    n_batches = len(sequence)
    if len(sequence[n_batches - 1][1]) < n_replicas:
        n_batches -= 1
    if n_batches < 1:
        raise ConfigError(f"distribute multiworker has {n_replicas} replicas, but the split holds fewer samples",
                          field="distribute")
    # (x, y), or (x, y, sample_weight) when the classes are weighted.
    signature = tuple(tf.TensorSpec((None, *part.shape[1:]), tf.as_dtype(part.dtype)) for part in sequence[0])

    def dataset_fn(context):
        per_pipeline = n_replicas // context.num_input_pipelines
        first = context.input_pipeline_id * per_pipeline

        def batches():
            for index in range(n_batches):
                batch = sequence[index]
                for piece in np.array_split(np.arange(len(batch[1])), n_replicas)[first:first + per_pipeline]:
                    yield tuple(part[piece] for part in batch)

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches * per_pipeline))
        return dataset.with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)


def _in_memory_pipeline_fits(sequence, strategy):
    """Whether :func:`in_memory_input` serves ``sequence``: in-memory arrays, TensorFlow, one replica."""
    import keras

    from convlstm_tl.data.sequence import ArraySequence

    if not isinstance(sequence, ArraySequence) or keras.backend.backend() != "tensorflow":
        return False
    return strategy is None or getattr(strategy, "num_replicas_in_sync", 1) == 1


def in_memory_input(sequence):
    """A ``tf.data`` pipeline of an :class:`~convlstm_tl.data.sequence.ArraySequence`'s batches, built once.

    Keras runs a ``PyDataset`` through Python every epoch (a generator and
    its ``tf.data`` wrapper, about 0.1 s an epoch here), which dominates an
    epoch over a few hundred cached feature vectors. This pipeline holds the
    arrays as tensors and gathers each batch by the sequence's current
    order, kept in a variable that the sequence updates whenever its epoch
    changes: the same batches, in the same order, with the same sample
    weights, as the sequence gives.
    """
    import tensorflow as tf

    arrays = [tf.constant(sequence.x), tf.constant(sequence.y)]
    if sequence.class_weight is not None:
        arrays.append(tf.constant(sequence.class_weight[sequence.y]))
    order = tf.Variable(sequence.order, trainable=False, name="epoch_order")
    sequence.order_listeners.append(order.assign)

    def epoch(_):
        # Read when an epoch's iteration starts: one gather per epoch, then plain batching.
        return tf.data.Dataset.from_tensor_slices(tuple(tf.gather(a, order) for a in arrays)).batch(
            sequence.batch_size)

    return tf.data.Dataset.from_tensors(0).flat_map(epoch).apply(
        tf.data.experimental.assert_cardinality(len(sequence)))
