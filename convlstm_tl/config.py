"""Typed configurations, saved as JSON with every run and reloaded from it.

Each default lives here and nowhere else. ``from_dict`` is strict: unknown
keys and values of the wrong type are a :class:`ConfigError`, so a typo in a
``--config`` file fails loudly instead of being ignored.
"""

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from convlstm_tl.errors import ConfigError


CELLS = ("fast", "keras")


@dataclass
class ModelConfig:
    """Architecture of the ConvLSTM classifier.

    The body is one block per entry of ``filters``; the head pools the last
    block's output over time and space and classifies.
    """

    filters: tuple = (32, 32)  # filters of block_1, block_2, ...
    kernel_size: int = 3  # k: (1, k) kernels for H == 1 frames, (k, k) otherwise
    block_dropout: float = 0.0  # dropout after each block's batch norm
    recurrent_dropout: float = 0.0  # dropout on the recurrent state inside ConvLSTM
    pool_size: int = 1  # spatial max-pooling after each block (1 = none)
    head_units: int = 64  # width of the dense layer of the head
    embedding_dim: int = 32  # token domains: size of the word vectors in front of block_1
    head_dropout: float = 0.5  # dropout before the softmax
    l2: float = 1e-4  # L2 penalty on kernels
    # ConvLSTM implementation: "fast" (convlstm_tl.layers.FastConvLSTM2D) or
    # "keras" (keras.layers.ConvLSTM2D); same math and weight layout.
    cell: str = "fast"

    def validate(self):
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {CELLS}. Received: cell={self.cell!r}")
        if not self.filters or any(int(f) < 1 for f in self.filters):
            raise ConfigError(f"filters must be one or more positive ints. Received: filters={self.filters}")
        _check_range("kernel_size", self.kernel_size, 1, None)
        _check_range("pool_size", self.pool_size, 1, None)
        _check_range("head_units", self.head_units, 1, None)
        _check_range("embedding_dim", self.embedding_dim, 1, None)
        for name in ("block_dropout", "recurrent_dropout", "head_dropout"):
            _check_range(name, getattr(self, name), 0.0, 1.0, high_open=True)
        _check_range("l2", self.l2, 0.0, None)
        self.filters = tuple(int(f) for f in self.filters)

    @property
    def n_blocks(self):
        return len(self.filters)


@dataclass
class AugmentConfig:
    """Training-time augmentation (see :mod:`convlstm_tl.augment`); 0 turns a transform off."""

    scale: float = 0.0  # multiply each sample's channels by U(1 - scale, 1 + scale)
    jitter: float = 0.0  # add Gaussian noise, sigma = jitter x the sample's per-channel std
    time_shift: float = 0.0  # shift along time by up to this fraction of the sequence, edges repeated
    spatial_shift: int = 0  # H > 1 only: shift frames by up to this many pixels, edges repeated
    rotate: float = 0.0  # rotate 3-D sensor vectors by a random rotation of up to this many degrees
    vector_channels: tuple = ()  # channels taken 3 at a time as 3-D vectors; () = all, in order

    def validate(self):
        _check_range("augment rotate", self.rotate, 0.0, 180.0)
        if len(self.vector_channels) % 3 or len(set(self.vector_channels)) != len(self.vector_channels):
            raise ConfigError(f"augment vector_channels must be distinct channels, 3 per vector."
                              f" Received: vector_channels={self.vector_channels}")
        _check_range("augment scale", self.scale, 0.0, 1.0, high_open=True)
        _check_range("augment jitter", self.jitter, 0.0, 10.0)
        _check_range("augment time_shift", self.time_shift, 0.0, 1.0, high_open=True)
        _check_range("augment spatial_shift", self.spatial_shift, 0, None)

    @property
    def active(self):
        return bool(self.scale or self.jitter or self.time_shift or self.spatial_shift or self.rotate)


@dataclass
class TrainConfig:
    """Everything that defines a source training run."""

    source: str = ""  # domain to train on (file <data_dir>/<source>.h5)
    name: str = ""  # run name; empty means the domain's name
    data_dir: str = ""  # empty means $CONVLSTM_TL_DATA or ./data
    runs_dir: str = "runs"
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 8  # early stopping on val loss, best weights restored; 0 = off
    seed: int = 0
    overwrite: bool = False  # replace an existing run of the same name
    resume: bool = False  # continue the interrupted run of the same name from its last epoch
    distribute: str = "none"  # none | mirrored (local GPUs) | multiworker (TF_CONFIG); batch_size is global
    mixed_precision: str = "off"  # off | float16 | bfloat16: compute dtype; variables and softmax stay float32
    jit: str = "auto"  # XLA: auto (Keras' choice: off on TensorFlow CPU, on with GPU or JAX) | on | off
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self):
        if not self.source:
            raise ConfigError("no source domain given; pass --source NAME")
        _check_range("epochs", self.epochs, 1, None)
        _check_range("batch_size", self.batch_size, 1, None)
        _check_range("lr", self.lr, 0.0, None, low_open=True)
        _check_range("patience", self.patience, 0, None)
        _check_run_control(self)
        _check_compute(self)
        check_run_name(self.run_name)
        self.model.validate()
        self.augment.validate()

    @property
    def run_name(self):
        return self.name or self.source


NORMALIZATIONS = ("target", "source")
HEAD_INITS = ("new", "source")


@dataclass
class TransferConfig:
    """Everything that defines a transfer run from a source run to a target domain."""

    target: str = ""  # domain to transfer to (file <data_dir>/<target>.h5)
    source_run: str = ""  # source run: a name in runs_dir, or a path to a run directory
    strategy: str = "freeze"  # freeze | cut:K | unfreeze:N | finetune | gradual | scratch
    name: str = ""  # run name; empty means <source run>-<target>-<strategy, no colon>
    data_dir: str = ""  # empty means $CONVLSTM_TL_DATA or ./data
    runs_dir: str = "runs"
    epochs: int = 40  # total budget; gradual spends head_epochs of it on the head alone
    head_epochs: int = 10  # gradual: epochs of head-only training before unfreezing
    batch_size: int = 32
    lr: float = 1e-3  # learning rate of the new head (and of every layer for scratch)
    body_lr: float | None = None  # restored layers that train; None means lr / 10
    patience: int = 8  # early stopping on val loss, best weights restored; 0 = off
    seed: int = 0
    normalization: str = "target"  # statistics of the target's training samples, or the source's
    target_fraction: float | None = None  # keep this fraction of the target's training split
    target_per_class: int | None = None  # or this many samples per class
    cache_features: bool = True  # train the head on cached body outputs when the body is frozen
    head_init: str = "new"  # new: random head; source: start from the source's head (same classes only)
    overwrite: bool = False
    resume: bool = False  # continue the interrupted run of the same name from its last epoch
    distribute: str = "none"  # none | mirrored (local GPUs) | multiworker (TF_CONFIG); batch_size is global
    mixed_precision: str = "off"  # off | float16 | bfloat16: compute dtype; variables and softmax stay float32
    jit: str = "auto"  # XLA: auto (Keras' choice: off on TensorFlow CPU, on with GPU or JAX) | on | off
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # turns the feature cache off

    def validate(self):
        if not self.target:
            raise ConfigError("no target domain given; pass --transfer TARGET")
        if not self.source_run:
            raise ConfigError("no source run given; pass --from RUN")
        _check_range("epochs", self.epochs, 1, None)
        _check_range("head_epochs", self.head_epochs, 1, None)
        _check_range("batch_size", self.batch_size, 1, None)
        _check_range("lr", self.lr, 0.0, None, low_open=True)
        if self.body_lr is not None:
            _check_range("body_lr", self.body_lr, 0.0, None, low_open=True)
        _check_range("patience", self.patience, 0, None)
        _check_run_control(self)
        _check_compute(self)
        if self.head_init not in HEAD_INITS:
            raise ConfigError(f"head_init must be one of {HEAD_INITS}. Received: head_init={self.head_init!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"normalization must be one of {NORMALIZATIONS}. Received: normalization={self.normalization!r}"
            )
        if self.target_fraction is not None and self.target_per_class is not None:
            raise ConfigError("give --target-fraction or --target-per-class, not both")
        if self.target_fraction is not None:
            _check_range("target_fraction", self.target_fraction, 0.0, 1.0, low_open=True)
        if self.target_per_class is not None:
            _check_range("target_per_class", self.target_per_class, 1, None)
        if self.name:
            check_run_name(self.name)
        self.augment.validate()

    @property
    def effective_body_lr(self):
        return self.body_lr if self.body_lr is not None else self.lr / 10


OBJECTIVES = ("next_frame", "reconstruction")


@dataclass
class PretrainConfig:
    """Everything that defines an unsupervised pretraining run (see :mod:`convlstm_tl.pretrain`)."""

    domain: str = ""  # domain whose frames are learnt, without labels (file <data_dir>/<domain>.h5)
    name: str = ""  # run name; empty means <domain>-pretrain
    data_dir: str = ""  # empty means $CONVLSTM_TL_DATA or ./data
    runs_dir: str = "runs"
    objective: str = "next_frame"  # next_frame: predict frame t+1 from frames 1..t; reconstruction: frame t
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 8  # early stopping on val loss, best weights restored; 0 = off
    seed: int = 0
    overwrite: bool = False
    resume: bool = False  # continue the interrupted run of the same name from its last epoch
    model: ModelConfig = field(default_factory=ModelConfig)  # the body's blocks (the head settings are unused)

    def validate(self):
        if not self.domain:
            raise ConfigError("no domain given; pass --pretrain DOMAIN")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {OBJECTIVES}. Received: objective={self.objective!r}")
        _check_range("epochs", self.epochs, 1, None)
        _check_range("batch_size", self.batch_size, 1, None)
        _check_range("lr", self.lr, 0.0, None, low_open=True)
        _check_range("patience", self.patience, 0, None)
        if self.resume and self.overwrite:
            raise ConfigError("give --resume (continue the interrupted run) or --overwrite (start again), not both")
        check_run_name(self.run_name)
        self.model.validate()

    @property
    def run_name(self):
        return self.name or f"{self.domain}-pretrain"


DISTRIBUTE = ("none", "mirrored", "multiworker")
# Settings that say how to run, not what to train: a resumed run may change them.
RUN_CONTROL_KEYS = ("overwrite", "resume")


def _check_run_control(config):
    if config.distribute not in DISTRIBUTE:
        raise ConfigError(f"distribute must be one of {DISTRIBUTE}. Received: distribute={config.distribute!r}")
    if config.resume and config.overwrite:
        raise ConfigError("give --resume (continue the interrupted run) or --overwrite (start again), not both")
    if config.resume and config.distribute == "multiworker":
        # Only the chief keeps checkpoints: the other workers would start again from epoch 1.
        raise ConfigError("--resume does not work with --distribute multiworker (only the chief keeps "
                          "checkpoints); start the run again with --overwrite")


MIXED_PRECISION = ("off", "float16", "bfloat16")
JIT = ("auto", "on", "off")


def _check_compute(config):
    if config.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(f"mixed_precision must be one of {MIXED_PRECISION}."
                          f" Received: mixed_precision={config.mixed_precision!r}")
    if config.jit not in JIT:
        raise ConfigError(f"jit must be one of {JIT}. Received: jit={config.jit!r}")


def check_run_name(name):
    """Refuse run names that are not a plain folder name."""
    if any(sep in name for sep in ("/", "\\")) or name in (".", "..") or name.startswith("."):
        raise ConfigError(f"run name must be a plain folder name. Received: name={name!r}")


def _check_range(name, value, low, high, *, low_open=False, high_open=False):
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        bounds = f"{lo}{low}, {'inf' if high is None else high}{hi}"
        raise ConfigError(f"{name} must lie in {bounds}. Received: {name}={value}")


def to_dict(config):
    """Return a config dataclass as plain JSON-ready data."""
    data = dataclasses.asdict(config)
    return json.loads(json.dumps(data))


def from_dict(cls, data, *, where="config"):
    """Build the dataclass ``cls`` from ``data``, checking keys and types.

    Raises:
        ConfigError: for an unknown key or a value of the wrong type.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object. Received: {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; known keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        values[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**values)


def _coerce(kind, value, where):
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value, where=where)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise ConfigError(f"{where} must be a list of ints. Received: {value!r}")
    elif isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None and type(None) in typing.get_args(kind):
            return None
        for option in typing.get_args(kind):
            if option is not type(None):
                try:
                    return _coerce(option, value, where)
                except ConfigError:
                    pass
    else:
        return value
    raise ConfigError(f"{where} must be {getattr(kind, '__name__', kind)}. Received: {value!r}")


def load_json(path):
    """Read a JSON file, turning I/O and syntax problems into ConfigError."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"config file {path} is not valid JSON: {error}") from None


def save_json(path, data):
    """Write ``data`` as indented JSON."""
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
