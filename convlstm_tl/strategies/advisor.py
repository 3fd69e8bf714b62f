"""The transfer advisor: which strategy to try, from measured domain distance and target size.

The rule of thumb (Yosinski et al. 2014; the CS231n transfer-learning notes):

=========  =========================  ==============================
target     similar to the source      different from the source
=========  =========================  ==============================
small      ``freeze`` the whole body  ``cut:1``: cut early and freeze
large      ``finetune``               ``finetune`` (or ``scratch``)
=========  =========================  ==============================

"Similar" is measured on the source body's features: every block's output,
averaged over time and space, for samples of both domains' training splits.
Two distances are computed:

- the **proxy A-distance** (Ben-David et al. 2007): a logistic-regression
  domain classifier is cross-validated on source vs target features; its
  error ``e`` gives ``PAD = 2 (1 - 2e)``, 0 when the domains cannot be told
  apart, 2 when they always can. It decides "similar" (``PAD <=
  SIMILAR_MAX_PAD``);
- the **MMD** (Gretton et al. 2012), unbiased squared MMD with an RBF kernel
  whose bandwidth is the median pairwise distance; reported alongside.

"Large" is the number of labelled target training samples per class
(``>= LARGE_MIN_PER_CLASS``), since what a head can learn depends on the
examples of each class it sees.

On top of the strategy, :func:`adaptation_options` picks the transfer's
adapter and unsupervised adaptation (``TransferConfig.adapter`` /
``adapt``) from the tables at the top of this module:

===============================================  ===========================================
target                                           strategy and options
===============================================  ===========================================
no label (``target_fraction`` 0), frames         ``freeze`` + ``adapter channel``, ``adapt``
                                                 :data:`UNLABELLED_ADAPT` (``im``)
no label, tokens                                 ``finetune`` + ``adapt adabn``
labelled, different                              the strategy above + ``adapt adabn``
labelled, small, frames, the source's classes    the strategy above + ``adapter channel``
===============================================  ===========================================

(both of the last two can apply; neither applies to ``scratch``). With no
label the source's head is kept, so the target must have the source's
classes in the same order. The rule is provisional: measure it with
``python -m experiments advise-check --suite experiments/suite.json``.
"""

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from convlstm_tl.config import TransferConfig
from convlstm_tl.data.format import domain_path, find_domain, open_domain
from convlstm_tl.data.reader import read_labels
from convlstm_tl.data.subsets import labelled_subset
from convlstm_tl.errors import ConfigError, DomainFileError
from convlstm_tl.runs.resolve import same_classes as same_class_names

log = logging.getLogger(__name__)

# A linear domain classifier on deep features tells even close domains apart
# often: St -> ms measured PAD 1.14-1.26 although the source model alone scores
# 90% on ms, while mnist -> optdigits measured 2.00 (zero-shot 35-47%). A
# classifier that still errs on an eighth of the samples (PAD <= 1.5) means
# "similar"; calibrated on those two pairs, so it is a rule of thumb.
SIMILAR_MAX_PAD = 1.5
# Labelled target samples per class from which fine-tuning the whole body pays
# off rather than overfits: "large".
LARGE_MIN_PER_CLASS = 50
# Samples per domain used for the distances (a seeded subset of the training split).
MAX_SAMPLES = 1000
CV_FOLDS = 5

CASES = {
    (False, True): ("freeze", (), "small and similar: the source's features fit the target, and too few labels to"
                                  " adapt them; freeze the whole body and train a new head"),
    (False, False): ("cut:1", ("freeze",), "small and different: the source's later blocks are specific to the"
                                           " source and too few labels to adapt them; keep the first (generic)"
                                           " block frozen and train a new head on it"),
    (True, True): ("finetune", ("gradual",), "large and similar: enough labels to adapt the source's features"
                                             " without overfitting; fine-tune the whole body at a low rate"),
    (True, False): ("finetune", ("scratch",), "large and different: enough labels to learn the target's own"
                                              " features; fine-tune the whole body, or train from scratch"),
}

# ---- The adaptation options (see adaptation_options): provisional, to be changed after measurement
# (python -m experiments advise-check --suite ...). Keys and values are TransferConfig fields.
#
# No target label (target_fraction 0): the source's head is kept, so only an adapter or the body can adapt, to the
# target's unlabelled training data. Frames: a channel adapter in front of the frozen body, trained by this loss.
UNLABELLED_ADAPT = "adabn"
# {input kind: (strategy, options, why this strategy, why these options)}
# Measured on watch St -> ms as recorded (the left arm's axes flipped), no ms label, seeds 0-2 (README, "Adapt"):
# the sign search then adabn, no gradient step, beat every alignment loss trained from the identity and the
# same start trained further by im.
UNLABELLED = {
    "frames": ("freeze", {"adapter": "channel", "adapter_init": "signs", "adapt": UNLABELLED_ADAPT},
               "no target label: the source's head is kept and only the adapter adapts to unlabelled target frames",
               f"adapter channel started from the channel signs that make the source's head most informative on"
               f" the target's unlabelled frames (adapter_init signs), and adapt {UNLABELLED_ADAPT}: BatchNorm"
               f" statistics re-estimated on them"),
    "tokens": ("finetune", {"adapt": "adabn"},
               "no target label: the source's head is kept and only the body adapts to unlabelled target sequences",
               "adapt adabn: the body's BatchNorm statistics re-estimated on the target's unlabelled training"
               " sequences (token ids have no channels to mix)"),
}
# A labelled target that is different (PAD above SIMILAR_MAX_PAD), for a strategy that restores the body.
DIFFERENT_OPTIONS = {"adapt": "adabn"}
DIFFERENT_WHY = ("the target is different: the restored body's BatchNorm statistics are re-estimated on the target's"
                 " training data (adapt adabn, no gradient step)")
# A small labelled target of frames with the source's classes in the same order (same task, other recording):
# the sensors may be re-placed or mirrored. The body is then kept whole and frozen (not cut: the source's head,
# which scores the adapter's sign search and starts the new head, reads the whole body's features).
SMALL_SAME_CLASSES_STRATEGY = "freeze"
SMALL_SAME_CLASSES_OPTIONS = {"adapter": "channel", "adapter_init": "signs", "head_init": "source", "adapt": "adabn"}
SMALL_SAME_CLASSES_WHY = ("a small target with the source's classes is often the same task recorded with sensors"
                          " re-placed or mirrored: a channel adapter started from the best channel signs, the"
                          " source's head and BatchNorm statistics of the target, in front of the frozen body"
                          " (watch St -> ms as recorded, 10% of the labels: see the README)")
NO_OPTIONS_WHY = "none: the strategy alone (a similar target, and not a small one of frames with the source's classes)"
# Strategies that restore no body: no adapter or adaptation goes with them.
NOT_RESTORING = ("scratch",)
# The TransferConfig fields the tables above may set: advise-check matches a suite's methods on these.
OPTION_FIELDS = ("adapter", "adapter_init", "head_init", "adapt")


@dataclass
class DomainDistance:
    """Distances between a source and a target on the source body's features.

    Attributes:
        pad: proxy A-distance in [0, 2].
        domain_error: cross-validated error of the domain classifier.
        mmd2: unbiased squared MMD (RBF kernel, median bandwidth).
        bandwidth: the kernel's bandwidth.
        n_source: source samples used.
        n_target: target samples used.
        n_features: feature width (the sum of the blocks' filters).
    """

    pad: float
    domain_error: float
    mmd2: float
    bandwidth: float
    n_source: int
    n_target: int
    n_features: int


@dataclass
class Advice:
    """What the advisor recommends, and why.

    Attributes:
        strategy: the recommended ``--strategy``.
        alternatives: other strategies the rule also allows.
        case: ``"small/similar"``, ``"small/different"``, ``"large/similar"``,
            ``"large/different"``, or ``"unlabelled/similar"`` /
            ``"unlabelled/different"`` with no target label.
        reason: one sentence.
        similar: PAD at or below :data:`SIMILAR_MAX_PAD`.
        large: labelled samples per class at or above :data:`LARGE_MIN_PER_CLASS`.
        n_labelled: labelled target training samples (0: none, ``target_fraction`` 0).
        n_classes: the target's classes.
        options: ``TransferConfig`` settings beyond the strategy (``{"adapter":
            "channel"}``, ``{"adapt": "adabn"}``; empty when none), see
            :func:`adaptation_options`.
        options_reason: why these options (or none).
        same_classes: the target has the source's classes in the same order.
        input_kind: ``"frames"`` or ``"tokens"``.
        distance: the :class:`DomainDistance`, or None when given as a number.
        source_run: the source run's path ("" when not from a run).
        target: the target domain.
        target_fraction: the ``target_fraction`` the advice was asked for (None: not given).
        target_per_class: or the ``target_per_class``.
    """

    strategy: str
    alternatives: tuple
    case: str
    reason: str
    similar: bool
    large: bool
    n_labelled: int
    n_classes: int
    options: dict = field(default_factory=dict)
    options_reason: str = ""
    same_classes: bool = False
    input_kind: str = "frames"
    distance: DomainDistance | None = None
    source_run: str = ""
    target: str = ""
    target_fraction: float | None = None
    target_per_class: int | None = None

    def transfer_options(self):
        """The advised ``TransferConfig`` settings: strategy, options and the target's size (when given)."""
        size = {key: value for key, value in (("target_fraction", self.target_fraction),
                                              ("target_per_class", self.target_per_class)) if value is not None}
        return {"strategy": self.strategy, **self.options, **size}

    def settings(self):
        """``[(strategy, options)]``: the advice first, then each alternative with the options the rule gives it."""
        alternatives = [(strategy, adaptation_options(strategy, labelled=self.n_labelled > 0, similar=self.similar,
                                                      large=self.large, same_classes=self.same_classes,
                                                      input_kind=self.input_kind)[1])
                        for strategy in self.alternatives]
        return [(self.strategy, dict(self.options)), *alternatives]

    def to_dict(self):
        """The advice as JSON-ready data, with the thresholds it used."""
        data = asdict(self)
        data["alternatives"] = list(self.alternatives)
        data["thresholds"] = {"similar_max_pad": SIMILAR_MAX_PAD, "large_min_per_class": LARGE_MIN_PER_CLASS}
        return data


def adaptation_options(strategy, *, labelled, similar, large, same_classes, input_kind):
    """The adapter and adaptation to go with a strategy: the rule of the tables at the top of this module.

    Args:
        strategy: the strategy of the four-case rule (:data:`CASES`).
        labelled: whether the transfer has target labels (False: ``target_fraction`` 0).
        similar: the target is similar to the source (PAD at or below :data:`SIMILAR_MAX_PAD`).
        large: the target is large (:data:`LARGE_MIN_PER_CLASS` labelled samples per class or more).
        same_classes: the target has the source's classes in the same order.
        input_kind: ``"frames"`` or ``"tokens"``.

    Returns:
        ``(strategy, options, reason)``: the strategy (with no label, the one
        of :data:`UNLABELLED`), ``TransferConfig`` settings beyond it
        (``{}`` when none) and why.

    Example:

    >>> adaptation_options("cut:1", labelled=True, similar=False, large=False, same_classes=False,
    ...                    input_kind="frames")[:2]
    ('cut:1', {'adapt': 'adabn'})
    """
    if not labelled:
        strategy, options, _, why = UNLABELLED[input_kind]
        return strategy, dict(options), why
    options, reasons = {}, []
    if strategy.split(":")[0] not in NOT_RESTORING:
        if not similar:
            options.update(DIFFERENT_OPTIONS)
            reasons.append(DIFFERENT_WHY)
        if not large and same_classes and input_kind == "frames":
            strategy, options, reasons = SMALL_SAME_CLASSES_STRATEGY, dict(SMALL_SAME_CLASSES_OPTIONS), []
            reasons.append(SMALL_SAME_CLASSES_WHY)
    return strategy, options, "; ".join(reasons) or NO_OPTIONS_WHY


def recommend(pad, n_labelled, n_classes, *, n_blocks=2, same_classes=False, input_kind="frames"):
    """Apply the four-case rule and the options rule to a measured distance and a target size.

    Args:
        pad: proxy A-distance between source and target, in [0, 2].
        n_labelled: labelled target training samples; 0 means no target label
            (``target_fraction`` 0).
        n_classes: the target's classes.
        n_blocks: blocks of the source body (a one-block body has nothing to
            cut, so "cut early" is ``freeze``).
        same_classes: whether the target has the source's classes in the same
            order (needed with no label: the source's head is kept).
        input_kind: the domains' ``"frames"`` or ``"tokens"``.

    Returns:
        An :class:`Advice` (without ``distance``).

    Raises:
        ConfigError: no target label, but the target's classes are not the source's.

    Example:

    >>> recommend(0.3, n_labelled=60, n_classes=7).strategy
    'freeze'
    """
    similar = bool(pad <= SIMILAR_MAX_PAD)
    likeness = "similar" if similar else "different"
    labelled = n_labelled > 0
    if not labelled and not same_classes:
        raise ConfigError("with no target label (target_fraction 0) the source's head is kept, so the target must"
                          " have the source's classes in the same order; it has not: give labels (a target_fraction"
                          " above 0)", field="target_fraction")
    per_class = n_labelled / max(1, n_classes)
    large = bool(per_class >= LARGE_MIN_PER_CLASS)
    pad_text = f"PAD {pad:.2f} ({likeness}: threshold {SIMILAR_MAX_PAD})"
    if labelled:
        strategy, alternatives, why = CASES[(large, similar)]
        if strategy == "cut:1" and n_blocks < 2:
            strategy, alternatives = "freeze", ()
        size = "large" if large else "small"
        reason = (f"{n_labelled} labelled samples ({per_class:.0f} per class, {size}: threshold"
                  f" {LARGE_MIN_PER_CLASS}) and {pad_text}; {why}")
    else:
        strategy, alternatives, size = "", (), "unlabelled"
    strategy, options, options_reason = adaptation_options(strategy, labelled=labelled, similar=similar, large=large,
                                                           same_classes=same_classes, input_kind=input_kind)
    if not labelled:
        reason = f"no labelled target sample (target_fraction 0) and {pad_text}; {UNLABELLED[input_kind][2]}"
    _check_rule(strategy, options, labelled=labelled, input_kind=input_kind)
    return Advice(strategy=strategy, alternatives=alternatives, case=f"{size}/{likeness}", reason=reason,
                  similar=similar, large=large, n_labelled=int(n_labelled), n_classes=int(n_classes),
                  options=options, options_reason=options_reason, same_classes=bool(same_classes),
                  input_kind=input_kind)


def _check_rule(strategy, options, *, labelled, input_kind):
    """The rule's answer is a transfer that would run: a wrong edit of the tables above fails here, not later."""
    try:
        unknown = sorted(set(options) - set(OPTION_FIELDS))
        if unknown:
            raise ConfigError(f"{unknown} not in OPTION_FIELDS {OPTION_FIELDS}")
        if options.get("adapter", "none") != "none" and input_kind != "frames":
            raise ConfigError(f"adapter {options['adapter']} mixes the channels of frames, not {input_kind}")
        TransferConfig(target="target", source_run="source", strategy=strategy,
                       target_fraction=None if labelled else 0.0, **options).validate()
    except ConfigError as error:
        raise RuntimeError(f"the advisor's rule gives a transfer that cannot run (strategy {strategy}, options"
                           f" {options}): {error}; fix the tables in {__name__}") from None


def proxy_a_distance(source_features, target_features, *, folds=CV_FOLDS, seed=0):
    """Proxy A-distance from a cross-validated logistic-regression domain classifier.

    Args:
        source_features: ``(n, d)``.
        target_features: ``(m, d)``.
        folds: cross-validation folds.
        seed: seed of the folds.

    Returns:
        ``(pad, error)``: ``2 (1 - 2 error)`` clipped to [0, 2], and the
        classifier's cross-validated error (balanced accuracy's complement,
        so unequal sample counts do not pass for a distance).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([source_features, target_features]).astype(np.float64)
    y = np.concatenate([np.zeros(len(source_features)), np.ones(len(target_features))])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    error = 1.0 - float(np.mean(cross_val_score(classifier, x, y, cv=splitter, scoring="balanced_accuracy")))
    return float(np.clip(2.0 * (1.0 - 2.0 * error), 0.0, 2.0)), error


def mmd2_rbf(source_features, target_features, *, bandwidth=None):
    """Unbiased squared MMD with an RBF kernel ``exp(-|a-b|^2 / (2 bandwidth^2))``.

    The features are standardized with the pooled mean and std first, so no
    channel dominates by scale; the bandwidth defaults to the median pairwise
    distance of the pooled samples (the median heuristic).

    Returns:
        ``(mmd2, bandwidth)``.
    """
    from scipy.spatial.distance import pdist
    from sklearn.metrics.pairwise import rbf_kernel

    x = np.concatenate([source_features, target_features]).astype(np.float64)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    if bandwidth is None:
        bandwidth = float(np.median(pdist(x))) or 1.0
    kernel = rbf_kernel(x, gamma=1.0 / (2 * bandwidth ** 2))
    n = len(source_features)
    k_ss, k_tt, k_st = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    m = len(x) - n

    def off_diagonal_mean(block, size):
        return (block.sum() - np.trace(block)) / (size * (size - 1))

    mmd2 = off_diagonal_mean(k_ss, n) + off_diagonal_mean(k_tt, m) - 2 * k_st.mean()
    return float(mmd2), float(bandwidth)


def pooled_features(model, path, split="train", *, indices=None, batch_size=128):
    """Every body block's output averaged over time and space, concatenated: ``(N, sum of filters)``."""
    from convlstm_tl.data.sequence import DomainSequence
    from convlstm_tl.models.backbone import Backbone

    extractor = Backbone(model).pooled()
    frames = DomainSequence(path, split, batch_size=batch_size, indices=indices, with_labels=False)
    return np.asarray(extractor.predict(frames, verbose=0), dtype=np.float64)


def domain_distance(source, target_info, *, data_dir=None, normalization="target", max_samples=MAX_SAMPLES,
                    seed=0):
    """Measure how far ``target_info``'s domain is from a source run's, on its body's features.

    Args:
        source: a loaded :class:`convlstm_tl.runs.resolve.Run`.
        target_info: the target's :class:`~convlstm_tl.data.format.DomainInfo`.
        data_dir: folder of domain files, where the source's domain is looked
            for first (then at the path its run recorded).
        normalization: ``"target"`` feeds target frames normalized with the
            target's statistics (what a transfer does by default),
            ``"source"`` with the source's.
        max_samples: at most this many training samples per domain.
        seed: seed of the sample subsets and of the cross-validation folds.

    Returns:
        A :class:`DomainDistance`.
    """
    from convlstm_tl.evaluation.alignment import check_same_input
    from convlstm_tl.strategies.recipe import build_transfer_model, transfer_inputs
    from convlstm_tl.strategies.registry import parse_strategy

    strategy = parse_strategy("freeze", source.n_blocks)
    check_same_input(source.name, source.domain, target_info, strategy)
    inputs = transfer_inputs(source, target_info, normalization=normalization)
    # The target passes through the source's restored body, as in a frozen transfer.
    target_model = build_transfer_model(source, strategy, frame_shape=target_info.frame_shape,
                                        n_classes=target_info.n_classes, **inputs)
    rng = np.random.default_rng(seed)
    features = []
    source_path = source_domain_path(source, data_dir)
    sizes = (len(read_labels(source_path, "train")[0]), target_info.split_sizes["train"])  # no target label read
    for model, path, n in ((source.model, source_path, sizes[0]), (target_model, target_info.path, sizes[1])):
        indices = np.sort(rng.choice(n, size=min(n, max_samples), replace=False))
        features.append(pooled_features(model, path, indices=indices))
    pad, error = proxy_a_distance(*features, seed=seed)
    mmd2, bandwidth = mmd2_rbf(*features)
    return DomainDistance(pad=pad, domain_error=error, mmd2=mmd2, bandwidth=bandwidth, n_source=len(features[0]),
                          n_target=len(features[1]), n_features=int(features[0].shape[1]))


def source_domain_path(source, data_dir=None):
    """The domain file a source run was trained on: in ``data_dir`` if there, else where the run recorded it."""
    record = source.domain
    candidate = domain_path(record.get("name", ""), data_dir)
    if record.get("name") and candidate.is_file():
        return candidate
    recorded = Path(record.get("path", ""))
    if record.get("path") and recorded.is_file():
        return recorded
    raise DomainFileError(f"the domain file of source run {source.path.name} ({record.get('name', '?')}) is in"
                          f" neither {candidate} nor {recorded}; give the data folder that has it",
                          field="data_dir")


def labelled_count(target_info, *, target_fraction=None, target_per_class=None, seed=0):
    """How many labelled training samples a transfer with these options uses (whole recordings kept).

    0 for ``target_fraction`` 0, without reading a label.
    """
    if target_fraction == 0:
        return 0
    indices, _ = labelled_subset(target_info.path, fraction=target_fraction, per_class=target_per_class, seed=seed)
    return len(indices)


def same_classes(source, target_info):
    """Whether ``target_info`` has the classes of the source run ``source``, in the same order (names as strings)."""
    return same_class_names(source.class_names, target_info.class_names)


# What check_advice_options checks a target_fraction of 0 with: a transfer with no label needs an adapt, but which
# one is the advisor's answer, so "what if I have no label?" is checked with one the default strategy accepts.
PROBE_ADAPT = "adabn"


def check_advice_options(source_run, target, *, target_fraction=None, target_per_class=None,
                         normalization="target", seed=0):
    """Refuse options a transfer with the same settings would refuse: the rule is the transfer config's.

    ``target_fraction`` 0 (no target label) is a fair question to the
    advisor: its answer sets the adaptation such a transfer needs.

    Raises:
        ConfigError: naming the field.
    """
    TransferConfig(target=target, source_run=str(source_run), target_fraction=target_fraction,
                   target_per_class=target_per_class, normalization=normalization, seed=seed,
                   adapt=PROBE_ADAPT if target_fraction == 0 else "none").validate()


def advice_for(source, target_info, distance, *, target_fraction=None, target_per_class=None, seed=0):
    """The advice for a loaded source run and target, from a distance measured before.

    Args:
        source: a loaded :class:`convlstm_tl.runs.resolve.Run`.
        target_info: the target's :class:`~convlstm_tl.data.format.DomainInfo`.
        distance: the :class:`DomainDistance` between them (:func:`domain_distance`).
        target_fraction: the fraction of the target's labels the transfer
            will use; 0: none.
        target_per_class: or that many samples per class.
        seed: seed of the labelled subset (the same as the transfer's).

    Returns:
        An :class:`Advice` with its ``distance``, source run, target and size.

    Raises:
        ConfigError: ``target_fraction`` 0 and the target's classes are not the source's.
    """
    n_labelled = labelled_count(target_info, target_fraction=target_fraction, target_per_class=target_per_class,
                                seed=seed)
    advice = recommend(distance.pad, n_labelled, target_info.n_classes, n_blocks=source.n_blocks,
                       same_classes=same_classes(source, target_info), input_kind=target_info.kind)
    advice.distance = distance
    advice.source_run = str(source.path)
    advice.target = target_info.domain
    advice.target_fraction = target_fraction
    advice.target_per_class = target_per_class
    return advice


def advise_transfer(source_run, target, *, data_dir=None, runs_dir="runs", target_fraction=None,
                    target_per_class=None, normalization="target", seed=0, distance=None):
    """Recommend a transfer strategy, and its adapter and adaptation, from ``source_run`` to the domain ``target``.

    Args:
        source_run: a run name in ``runs_dir`` or a path (a source or pretraining run).
        target: the target domain's name.
        data_dir: folder of domain files.
        runs_dir: folder of runs.
        target_fraction: the fraction of the target's labels the transfer
            will use (sizes the target like ``--target-fraction``); 0: no
            label at all (the target must have the source's classes in the
            same order).
        target_per_class: or that many samples per class.
        normalization: see :func:`domain_distance`.
        seed: seed of the sampling (the same as the transfer's).
        distance: a :class:`DomainDistance` measured before (the distance does
            not depend on the target's size), to skip measuring again.

    Returns:
        An :class:`Advice` with its ``distance``.
    """
    from convlstm_tl.runs.resolve import load_run

    check_advice_options(source_run, target, target_fraction=target_fraction, target_per_class=target_per_class,
                         normalization=normalization, seed=seed)
    source = load_run(source_run, runs_dir)
    source.check_single_model("the advisor")
    target_info = open_domain(find_domain(target, data_dir))
    if target_fraction == 0 and not same_classes(source, target_info):
        # Before the distance is measured: with no label the source's head is kept.
        raise ConfigError(f"target_fraction 0 keeps the source's head, so the target must have the source's classes"
                          f" in the same order; source run {source.name} has {source.class_names},"
                          f" {target_info.domain} {list(target_info.class_names)}", field="target_fraction")
    if distance is None:
        distance = domain_distance(source, target_info, data_dir=data_dir, normalization=normalization, seed=seed)
    advice = advice_for(source, target_info, distance, target_fraction=target_fraction,
                        target_per_class=target_per_class, seed=seed)
    log.info("advice for %s -> %s: %s %s (%s)", source.path.name, target, advice.strategy, advice.options,
             advice.case)
    return advice
