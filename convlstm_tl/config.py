"""Typed configurations and every choice they offer, validated once, before anything heavy.

Each default lives here and nowhere else. A config is saved as JSON with
every run and read back strictly (:mod:`convlstm_tl.jsonio`). ``validate()``
checks a config and changes nothing; an error names the field at fault
(``ConfigError.field``), and the command lines add the flag that sets it.
"""

import math
from dataclasses import dataclass, field

from convlstm_tl.errors import ConfigError
from convlstm_tl.jsonio import is_int, shown, shown_number
from convlstm_tl.strategies.registry import check_spec

CELLS = ("fast", "keras")

# Training budget: a generous maximum of epochs; early stopping ends a run when
# its validation measure has not improved for PATIENCE_DEFAULT epochs.
MAX_EPOCHS_DEFAULT = 200
PATIENCE_DEFAULT = 15
MONITORS = ("val_loss", "val_macro_f1", "val_accuracy")
CLASS_WEIGHTS = ("none", "balanced")
CLASS_WEIGHT_DEFAULT = "balanced"
LR_SCHEDULES = ("plateau", "constant")
# Automatic batch size: the largest power of two up to MAX_AUTO_BATCH that
# still gives MIN_STEPS_PER_EPOCH steps an epoch, but not below MIN_AUTO_BATCH.
MAX_AUTO_BATCH = 32
MIN_AUTO_BATCH = 8
MIN_STEPS_PER_EPOCH = 8


def resolve_batch_size(batch_size, n_train):
    """The batch size a run trains with: ``batch_size`` if given, else one derived from ``n_train`` samples.

    The derived size is the largest power of two up to ``MAX_AUTO_BATCH``
    that gives at least ``MIN_STEPS_PER_EPOCH`` steps an epoch, and at least
    ``MIN_AUTO_BATCH`` (a small set still takes several steps an epoch:
    32 samples -> batch 8, 4 steps; 200 -> 16; 1,000 -> 32); below
    ``2 * MIN_AUTO_BATCH`` samples, half the set (two steps an epoch).
    """
    if batch_size is not None:
        return batch_size
    batch = MAX_AUTO_BATCH
    while batch > MIN_AUTO_BATCH and n_train < MIN_STEPS_PER_EPOCH * batch:
        batch //= 2
    return max(1, min(batch, math.ceil(n_train / 2)))


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
    # ConvLSTM implementation: "fast" (convlstm_tl.models.layers.FastConvLSTM2D) or
    # "keras" (keras.layers.ConvLSTM2D); same math and weight layout.
    cell: str = "fast"

    def __post_init__(self):
        # A list from JSON or the command line is kept as the tuple the field declares.
        if isinstance(self.filters, list):
            self.filters = tuple(self.filters)

    def validate(self):
        """Refuse any setting out of its range or choices (ConfigError naming the field); change nothing."""
        _check_choice("cell", self.cell, CELLS)
        if (not self.filters or len(self.filters) > MAX_BLOCKS
                or any(not is_int(f) or not 1 <= f <= MAX_WIDTH for f in self.filters)):
            raise ConfigError(f"filters must be 1 to {MAX_BLOCKS} ints in [1, {MAX_WIDTH}]."
                              f" Received: filters={self.filters}", field="filters")
        check_range("kernel_size", self.kernel_size, 1, MAX_KERNEL)
        check_range("pool_size", self.pool_size, 1, MAX_KERNEL)
        check_range("head_units", self.head_units, 1, MAX_WIDTH)
        check_range("embedding_dim", self.embedding_dim, 1, MAX_WIDTH)
        for name in ("block_dropout", "recurrent_dropout", "head_dropout"):
            check_range(name, getattr(self, name), 0.0, 1.0, high_open=True)
        check_range("l2", self.l2, 0.0, None)

    @property
    def n_blocks(self):
        """How many ConvLSTM blocks the body has."""
        return len(self.filters)


@dataclass
class AugmentConfig:
    """Training-time augmentation (see :mod:`convlstm_tl.data.augment`); 0 turns a transform off."""

    scale: float = 0.0  # multiply each sample's channels by U(1 - scale, 1 + scale)
    jitter: float = 0.0  # add Gaussian noise, sigma = jitter x the sample's per-channel std
    time_shift: float = 0.0  # shift along time by up to this fraction of the sequence, edges repeated
    spatial_shift: int = 0  # H > 1 only: shift frames by up to this many pixels, edges repeated
    rotate: float = 0.0  # rotate 3-D sensor vectors by a random rotation of up to this many degrees
    vector_channels: tuple = ()  # channels taken 3 at a time as 3-D vectors; () = all, in order

    def validate(self):
        """Refuse any setting out of its range (ConfigError naming the field); change nothing."""
        check_range("augment rotate", self.rotate, 0.0, 180.0)
        if (len(self.vector_channels) % 3 or len(set(self.vector_channels)) != len(self.vector_channels)
                or any(not is_int(c) or not 0 <= c < MAX_WIDTH for c in self.vector_channels)):
            raise ConfigError(f"augment vector_channels must be distinct channels, 3 per vector."
                              f" Received: vector_channels={self.vector_channels}", field="vector_channels")
        check_range("augment scale", self.scale, 0.0, 1.0, high_open=True)
        check_range("augment jitter", self.jitter, 0.0, 10.0)
        check_range("augment time_shift", self.time_shift, 0.0, 1.0, high_open=True)
        check_range("augment spatial_shift", self.spatial_shift, 0, MAX_SHIFT)

    @property
    def active(self):
        """Whether any transform is on."""
        return bool(self.scale or self.jitter or self.time_shift or self.spatial_shift or self.rotate)


@dataclass
class TrainConfig:
    """Everything that defines a source training run."""

    source: str = ""  # domain to train on (file <data_dir>/<source>.h5)
    name: str = ""  # run name; empty means the domain's name
    data_dir: str = ""  # empty means $CONVLSTM_TL_DATA or ./data
    runs_dir: str = "runs"
    epochs: int = MAX_EPOCHS_DEFAULT  # budget; early stopping ends training on convergence, usually much sooner
    batch_size: int | None = None  # None: from the training set's size (resolve_batch_size)
    lr: float = 1e-3
    patience: int = PATIENCE_DEFAULT  # early stopping on `monitor`, best weights restored; 0 = off
    monitor: str = "val_loss"  # val_loss | val_macro_f1 | val_accuracy: early stopping and best-epoch choice
    class_weight: str = CLASS_WEIGHT_DEFAULT  # none | balanced: weight each class's samples by n / (K n_class)
    lr_schedule: str = "plateau"  # plateau: halve the learning rate when `monitor` stalls | constant
    refit: bool = False  # then retrain on train + val for the epochs validation chose; the refit model is saved
    ensemble: int = 1  # train this many models (seeds seed, seed + 1, ...) and save their averaged prediction
    seed: int = 0
    overwrite: bool = False  # replace an existing run of the same name
    resume: bool = False  # continue the interrupted run of the same name from its last epoch
    distribute: str = "none"  # none | mirrored (local GPUs) | multiworker (TF_CONFIG); batch_size is global
    mixed_precision: str = "off"  # off | float16 | bfloat16: compute dtype; variables and softmax stay float32
    jit: str = "auto"  # XLA: auto (Keras' choice: off on TensorFlow CPU, on with GPU or JAX) | on | off
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self):
        """Refuse a missing source, any setting out of range or choices, and a bad run name; change nothing."""
        if not self.source:
            raise ConfigError("no source domain given (source is empty)", field="source")
        check_domain_name(self.source, "source")
        _check_training(self)
        _check_supervised(self)
        _check_run_control(self)
        _check_compute(self)
        check_run_name(self.run_name)
        self.model.validate()
        self.augment.validate()

    @property
    def run_name(self):
        """The run's folder name: ``name``, else the source domain's."""
        return self.name or self.source


NORMALIZATIONS = ("target", "source")
HEAD_INITS = ("new", "source")
# A learned layer in front of the restored body (see convlstm_tl.models.classifier): none, or a C x C channel mixing.
ADAPTERS = ("none", "channel")
# How the adapter starts: the identity, or the channel signs that the source's head finds most informative on the
# target's unlabelled frames (see convlstm_tl.training.adaptation.choose_adapter_signs).
ADAPTER_INITS = ("identity", "signs")
# Unsupervised adaptation to the target's unlabelled training sequences (see convlstm_tl.training.adaptation).
ADAPTS = ("none", "adabn", "coral", "mmd", "dann", "im")
# The ones that add a training loss on the target's unlabelled batches (and the source's, but for im).
ALIGNMENT_ADAPTS = ("coral", "mmd", "dann", "im")
ADAPTER_LR_FACTOR = 10.0


@dataclass
class TransferConfig:
    """Everything that defines a transfer run from a source run to a target domain."""

    target: str = ""  # domain to transfer to (file <data_dir>/<target>.h5)
    source_run: str = ""  # source run: a name in runs_dir, or a path to a run directory
    # freeze | cut:K | unfreeze:N | finetune | gradual | scratch (see convlstm_tl.strategies.registry)
    # The default by measurement on the benchmark suite (experiments/suite.json, 4 pairs x 3 seeds): finetune's
    # mean over the pairs beat freeze's (67.3 vs 65.1 at 10% of the labels, 87.7 vs 82.1 at 100%, with the body at
    # lr / 10; 72.1 at 10% with the body at lr); freeze stays ahead where the source body already fits the target
    # (the mirrored watch pair). See the README.
    strategy: str = "finetune"
    name: str = ""  # run name; empty means <source run>-<target>-<strategy, no colon>
    data_dir: str = ""  # empty means $CONVLSTM_TL_DATA or ./data
    runs_dir: str = "runs"
    epochs: int = MAX_EPOCHS_DEFAULT  # total budget; gradual spends head_epochs of it on the head alone
    head_epochs: int = 10  # gradual: epochs of head-only training before unfreezing
    batch_size: int | None = None  # None: from the size of the target's labelled subset (resolve_batch_size)
    lr: float = 1e-3  # learning rate of the new head (and of every layer for scratch)
    # Restored layers that train; None means lr. Measured on the suite's four CPU pairs at 10% of the labels
    # (README, "Transfer"): lr / 10 lost to scratch on three; at lr fine-tuning gained 4.8 points on the mean.
    body_lr: float | None = None
    patience: int = PATIENCE_DEFAULT  # early stopping on `monitor`, best weights restored; 0 = off
    monitor: str = "val_loss"  # val_loss | val_macro_f1 | val_accuracy: early stopping and best-epoch choice
    class_weight: str = CLASS_WEIGHT_DEFAULT  # none | balanced: weight each class's samples by n / (K n_class)
    lr_schedule: str = "plateau"  # plateau: halve the learning rate when `monitor` stalls | constant
    refit: bool = False  # then retrain on the labelled subset + val for the epochs validation chose
    ensemble: int = 1  # train this many models (seeds seed, seed + 1, ...) and save their averaged prediction
    seed: int = 0
    normalization: str = "target"  # statistics of the target's training samples, or the source's
    # keep this fraction of the target's training split; 0 (with adapt) reads no target label at all: the source's
    # head is kept and only the body or adapter adapts, selected on the source's validation loss
    target_fraction: float | None = None
    target_per_class: int | None = None  # or this many samples per class
    cache_features: bool = True  # train the head on cached body outputs when the body is frozen
    head_init: str = "new"  # new: random head; source: start from the source's head (same classes only)
    adapter: str = "none"  # none | channel: a learned C x C channel mixing (identity at start) before the body
    # The adapter's learning rate; None means ADAPTER_LR_FACTOR x lr: a sign flip moves its weights by 2, which
    # at the head's rate takes thousands of steps, more than a few labels give (see the README).
    adapter_lr: float | None = None
    adapter_init: str = "identity"  # identity | signs: start from the best sign flip of each channel (same classes)
    adapt: str = "none"  # none | adabn | coral | mmd | dann | im: adapt to the target's unlabelled training sequences
    adapt_weight: float = 1.0  # coral | mmd | dann | im: weight of the adaptation loss beside the classification loss
    target_weight: float = 1.0  # joint: weight of each step's target batch loss against its source batch loss
    overwrite: bool = False
    resume: bool = False  # continue the interrupted run of the same name from its last epoch
    distribute: str = "none"  # none | mirrored (local GPUs) | multiworker (TF_CONFIG); batch_size is global
    mixed_precision: str = "off"  # off | float16 | bfloat16: compute dtype; variables and softmax stay float32
    jit: str = "auto"  # XLA: auto (Keras' choice: off on TensorFlow CPU, on with GPU or JAX) | on | off
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # turns the feature cache off

    def validate(self):
        """Refuse a missing target or source run, a misspelt strategy, any setting out of range; change nothing."""
        if not self.target:
            raise ConfigError("no target domain given (target is empty)", field="target")
        if not self.source_run:
            raise ConfigError("no source run given (source_run is empty)", field="source_run")
        check_domain_name(self.target, "target")
        _check_training(self)
        _check_supervised(self)
        check_range("head_epochs", self.head_epochs, 1, MAX_EPOCHS)
        if self.body_lr is not None:
            check_range("body_lr", self.body_lr, 0.0, None, low_open=True)
        _check_run_control(self)
        _check_compute(self)
        _check_choice("head_init", self.head_init, HEAD_INITS)
        _check_choice("normalization", self.normalization, NORMALIZATIONS)
        if self.target_fraction is not None and self.target_per_class is not None:
            raise ConfigError("give target_fraction or target_per_class, not both",
                              field=("target_fraction", "target_per_class"))
        if self.target_fraction is not None:
            check_range("target_fraction", self.target_fraction, 0.0, 1.0)
        _check_adaptation(self)
        if self.target_per_class is not None:
            check_range("target_per_class", self.target_per_class, 1, MAX_INT32)
        check_spec(self.strategy)
        if self.strategy == "gradual" and self.epochs <= self.head_epochs:
            raise ConfigError(f"gradual needs more epochs than head_epochs. Received: epochs={self.epochs},"
                              f" head_epochs={self.head_epochs}", field="epochs")
        if self.name:
            check_run_name(self.name)
        self.augment.validate()

    @property
    def effective_adapter_lr(self):
        """The learning rate of the channel adapter: ``adapter_lr``, else ``ADAPTER_LR_FACTOR * lr``."""
        return self.adapter_lr if self.adapter_lr is not None else ADAPTER_LR_FACTOR * self.lr

    @property
    def unlabelled(self):
        """Whether the transfer reads no target label (``target_fraction`` 0)."""
        return self.target_fraction == 0

    @property
    def effective_body_lr(self):
        """The learning rate of restored blocks that train: ``body_lr``, else ``lr``."""
        return self.body_lr if self.body_lr is not None else self.lr


def _check_adaptation(config):
    """The adapter and adaptation settings of a transfer, and the strategies they go with."""
    _check_choice("adapter", config.adapter, ADAPTERS)
    _check_choice("adapt", config.adapt, ADAPTS)
    _check_choice("adapter_init", config.adapter_init, ADAPTER_INITS)
    if config.adapter_init != "identity" and config.adapter == "none":
        raise ConfigError(f"adapter_init {config.adapter_init} starts a channel adapter; add adapter channel",
                          field=("adapter_init", "adapter"))
    check_range("adapt_weight", config.adapt_weight, 0.0, 1e6, low_open=True)
    if config.adapter_lr is not None:
        check_range("adapter_lr", config.adapter_lr, 0.0, None, low_open=True)
    check_range("target_weight", config.target_weight, 0.0, 1e6, low_open=True)
    name = config.strategy.split(":")[0]
    if config.target_weight != 1.0 and name != "joint":
        raise ConfigError(f"target_weight weighs the target's batches against the source's in joint training; the"
                          f" strategy is {config.strategy}", field="target_weight")
    if name == "scratch" and (config.adapter != "none" or config.adapt != "none"):
        field = "adapter" if config.adapter != "none" else "adapt"
        raise ConfigError(f"{field} {getattr(config, field)!r} adapts a restored body, but scratch restores none;"
                          " choose another strategy", field=field)
    if not config.unlabelled:
        return
    if config.adapt == "none":
        raise ConfigError("target_fraction 0 reads no target label, so only unsupervised adaptation can train;"
                          " give adapt (adabn, coral, mmd, dann or im)", field=("target_fraction", "adapt"))
    if name == "joint":
        raise ConfigError("joint trains on the target's labels, but target_fraction 0 gives none; choose another"
                          " strategy", field=("strategy", "target_fraction"))
    if name in ("freeze", "cut") and config.adapt in ALIGNMENT_ADAPTS and config.adapter == "none":
        raise ConfigError(f"with target_fraction 0 the source's head is kept, and {config.strategy} freezes the"
                          f" body, so {config.adapt} has nothing to train; add adapter channel or choose finetune",
                          field=("strategy", "adapt"))


# Pretraining objectives, and how many steps ahead each predicts.
OBJECTIVE_SHIFTS = {"next_frame": 1, "reconstruction": 0}
OBJECTIVES = tuple(OBJECTIVE_SHIFTS)


@dataclass
class PretrainConfig:
    """Everything that defines an unsupervised pretraining run (see :mod:`convlstm_tl.training.pretrain`)."""

    domain: str = ""  # domain whose frames are learnt, without labels (file <data_dir>/<domain>.h5)
    name: str = ""  # run name; empty means <domain>-pretrain
    data_dir: str = ""  # empty means $CONVLSTM_TL_DATA or ./data
    runs_dir: str = "runs"
    objective: str = "next_frame"  # next_frame: predict frame t+1 from frames 1..t; reconstruction: frame t
    epochs: int = MAX_EPOCHS_DEFAULT  # budget; early stopping on the validation loss ends training sooner
    batch_size: int | None = None  # None: from the training set's size (resolve_batch_size)
    lr: float = 1e-3
    patience: int = PATIENCE_DEFAULT  # early stopping on val loss, best weights restored; 0 = off
    seed: int = 0
    overwrite: bool = False
    resume: bool = False  # continue the interrupted run of the same name from its last epoch
    model: ModelConfig = field(default_factory=ModelConfig)  # the body's blocks (the head settings are unused)

    def validate(self):
        """Refuse a missing domain, any setting out of range or choices, and a bad run name; change nothing."""
        if not self.domain:
            raise ConfigError("no domain given (domain is empty)", field="domain")
        _check_choice("objective", self.objective, OBJECTIVES)
        check_domain_name(self.domain, "domain")
        _check_training(self)
        _check_resume_or_overwrite(self)
        check_run_name(self.run_name)
        self.model.validate()

    @property
    def run_name(self):
        """The run's folder name: ``name``, else ``<domain>-pretrain``."""
        return self.name or f"{self.domain}-pretrain"


DISTRIBUTE = ("none", "mirrored", "multiworker")
# Settings that say how to run, not what to train: a resumed run may change them.
RUN_CONTROL_KEYS = ("overwrite", "resume")


def _check_run_control(config):
    _check_choice("distribute", config.distribute, DISTRIBUTE)
    _check_resume_or_overwrite(config)
    if config.resume and config.distribute == "multiworker":
        # Only the chief keeps checkpoints: the other workers would start again from epoch 1.
        raise ConfigError("resume does not work with distribute multiworker (only the chief keeps checkpoints);"
                          " start the run again with overwrite", field="resume")


def _check_resume_or_overwrite(config):
    if config.resume and config.overwrite:
        raise ConfigError("give resume (continue the interrupted run) or overwrite (start again), not both",
                          field=("resume", "overwrite"))


MIXED_PRECISION = ("off", "float16", "bfloat16")
JIT = ("auto", "on", "off")


def _check_compute(config):
    _check_choice("mixed_precision", config.mixed_precision, MIXED_PRECISION)
    _check_choice("jit", config.jit, JIT)


# Bounds of the int settings: generous, but every int has one, so that a typo
# (an extra digit, a sign) is refused before it reaches the backend.
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 20
MAX_BLOCKS = 64
MAX_WIDTH = 65_536  # filters, units, embedding size, channel indices
MAX_KERNEL = 255
MAX_SHIFT = 65_536
MAX_INT32 = 2**31 - 1
MAX_ENSEMBLE = 64
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds are 32-bit unsigned


def _check_training(config):
    """The bounds shared by every training config: epochs, batch size, learning rate, patience, seed."""
    check_range("epochs", config.epochs, 1, MAX_EPOCHS)
    if config.batch_size is not None:
        check_range("batch_size", config.batch_size, 1, MAX_BATCH)
    check_range("lr", config.lr, 0.0, None, low_open=True)
    check_range("patience", config.patience, 0, MAX_EPOCHS)
    check_seed(config.seed)


def _check_supervised(config):
    """The choices of classifier training: what early stopping watches, class weights, the schedule."""
    _check_choice("monitor", config.monitor, MONITORS)
    _check_choice("class_weight", config.class_weight, CLASS_WEIGHTS)
    _check_choice("lr_schedule", config.lr_schedule, LR_SCHEDULES)
    if not isinstance(config.refit, bool):
        raise ConfigError(f"refit must be true or false. Received: refit={shown(config.refit)}", field="refit")
    check_range("ensemble", config.ensemble, 1, MAX_ENSEMBLE)
    if config.seed + config.ensemble - 1 > MAX_SEED:
        raise ConfigError(f"an ensemble of {config.ensemble} uses seeds {config.seed} to"
                          f" {config.seed + config.ensemble - 1}, above {MAX_SEED}; give a smaller seed", field="seed")


def check_seed(seed, name="seed"):
    """Refuse a seed outside [0, 2**32 - 1] (what the random generators accept)."""
    check_range(name, seed, 0, MAX_SEED)


# Names of runs and domains become file names (``runs/.partial-<name>``,
# ``<data-dir>/<name>.h5``): printable, one path component, short enough that
# every file made from them fits a file system's 255-byte name limit.
MAX_NAME_CHARS = 100
MAX_NAME_BYTES = 200


def _name_problem(name):
    """Why ``name`` cannot be a file name of ours, or None."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > MAX_NAME_CHARS or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"must be at most {MAX_NAME_CHARS} characters ({MAX_NAME_BYTES} bytes in UTF-8)"
    if not name.isprintable() or any(c.isspace() and c != " " for c in name):
        return "must hold printable characters only (no newline, tab or other control character)"
    if "/" in name or "\\" in name or "\0" in name:
        return "must be a plain folder name (no / or \\)"
    if name.startswith(".") or name != name.strip():
        return "must not start with a dot or start or end with a space"
    return None


def check_run_name(name):
    """Refuse run names that are not a plain, printable, short folder name."""
    problem = _name_problem(name)
    if problem:
        raise ConfigError(f"run name {problem}. Received: name={shown(name)}", field="name")


def check_domain_name(name, field=None):
    """Refuse domain names that cannot be a file name in the data folder (``field``: the setting that holds it)."""
    problem = _name_problem(name)
    if problem:
        raise ConfigError(f"domain name {problem}; give the name of a file in the data folder without .h5."
                          f" Received: {shown(name)}", field=field)


def _check_choice(name, value, choices):
    """Refuse ``value`` unless it is one of ``choices`` (the field ``name``)."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}. Received: {name}={shown(value)}", field=name)


def check_range(name, value, low, high, *, low_open=False, high_open=False):
    """Refuse ``value`` outside the bounds; NaN, inf and non-numbers fail every range.

    ``high`` None means no upper bound, but the value must still be finite.
    The error's field is ``name``'s last word (``"augment rotate"`` ->
    ``rotate``, the field of :class:`AugmentConfig`).
    """
    field = name.split()[-1]
    lo = "(" if low_open else "["
    hi = ")" if high_open or high is None else "]"
    bounds = f"{lo}{low}, {'inf' if high is None else high}{hi}"
    if is_int(value):
        finite = True
    elif isinstance(value, float):
        finite = math.isfinite(value)  # NaN fails no comparison below: ask explicitly
    else:
        raise ConfigError(f"{name} must be a number in {bounds}. Received: {name}={shown(value)}", field=field)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not finite or too_low or too_high:
        raise ConfigError(f"{name} must lie in {bounds}. Received: {name}={shown_number(value)}", field=field)
