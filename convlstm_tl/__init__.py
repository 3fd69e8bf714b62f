"""convlstm_tl: transfer learning with ConvLSTM sequence classifiers.

The public API::

    import convlstm_tl
    from convlstm_tl.config import TrainConfig, TransferConfig

    convlstm_tl.train_source(TrainConfig(source="St"))
    convlstm_tl.transfer(TransferConfig(target="ms", source_run="St", strategy="freeze"))
    run = convlstm_tl.load_run("St-ms-freeze")          # model, record, metrics
    evaluation = convlstm_tl.evaluate_runs([run.path], ["St", "ms"])
    advice = convlstm_tl.advise_transfer("St", "ms", target_fraction=0.1)
    run.signature()                                     # classes, input, normalization, window recipe
    predictions = convlstm_tl.predict_samples(run, convlstm_tl.open_samples("new.csv", run))
    convlstm_tl.export_run(run, "St.tflite", format="tflite", check_x=x)   # checked against run.model

(The functions are named apart from the modules ``convlstm_tl.train``,
``.evaluate`` and ``.advise``, which are the ``python -m`` entry points.)

Importing the package registers the toolkit's Keras layers, so plain
``keras.saving.load_model("runs/St/model.keras")`` reloads any run. Keras
itself is imported only when first needed (the converters of ``data_prep``
never pay for it): when it is already imported the layers are registered now,
otherwise right after Keras' own import.

Where things are (the README's code map says more): :mod:`convlstm_tl.config`
(settings), :mod:`convlstm_tl.data` (domain files), :mod:`convlstm_tl.models`
(layers, classifier), :mod:`convlstm_tl.strategies` (registry, recipe,
advisor), :mod:`convlstm_tl.training` (the run drivers), :mod:`convlstm_tl.runs`
(run directories and records), :mod:`convlstm_tl.evaluation`,
:mod:`convlstm_tl.deploy` (predict on new recordings, export), :mod:`convlstm_tl.cli` (the command lines).
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# name -> (module, attribute): resolved on first use, so that importing the
# package stays cheap.
_API = {
    "create_model": ("convlstm_tl.models.classifier", "build_classifier"),
    "load_model": ("convlstm_tl.models.classifier", "load_model"),
    "train_source": ("convlstm_tl.training.source", "train_source"),
    "transfer": ("convlstm_tl.training.transfer", "transfer"),
    "pretrain": ("convlstm_tl.training.pretrain", "pretrain"),
    "evaluate_runs": ("convlstm_tl.evaluation.crossdomain", "evaluate_runs"),
    "advise_transfer": ("convlstm_tl.strategies.advisor", "advise_transfer"),
    "load_run": ("convlstm_tl.runs.resolve", "load_run"),
    "open_samples": ("convlstm_tl.deploy.inputs", "open_samples"),
    "predict_samples": ("convlstm_tl.deploy.predict", "predict_samples"),
    "export_run": ("convlstm_tl.deploy.export", "export_run"),
    "resolve_run": ("convlstm_tl.runs.resolve", "resolve_run"),
}
__all__ = sorted(_API)

# Importing this module registers the custom layers and optimizer with Keras.
_REGISTRATION = "convlstm_tl.models.registry"


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'convlstm_tl' has no attribute {name!r}")
    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Registers the toolkit's layers as soon as ``keras`` has been imported.

    It only watches for the name ``keras``: it finds the module as Python
    would, runs it, then imports the registration module, and removes itself.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader_exec = spec.loader.exec_module

        def exec_module(module):
            loader_exec(module)
            importlib.import_module(_REGISTRATION)

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    importlib.import_module(_REGISTRATION)
elif not any(isinstance(finder, _RegisterAfterKerasImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasImport())
