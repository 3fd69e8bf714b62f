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
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convlstm_tl.config import TransferConfig
from convlstm_tl.data.format import domain_path, find_domain, open_domain
from convlstm_tl.data.reader import read_labels
from convlstm_tl.data.subsets import labelled_subset
from convlstm_tl.errors import DomainFileError

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
        case: ``"small/similar"``, ``"small/different"``, ``"large/similar"``
            or ``"large/different"``.
        reason: one sentence.
        similar: PAD at or below :data:`SIMILAR_MAX_PAD`.
        large: labelled samples per class at or above :data:`LARGE_MIN_PER_CLASS`.
        n_labelled: labelled target training samples.
        n_classes: the target's classes.
        distance: the :class:`DomainDistance`, or None when given as a number.
        source_run: the source run's path ("" when not from a run).
        target: the target domain.
    """

    strategy: str
    alternatives: tuple
    case: str
    reason: str
    similar: bool
    large: bool
    n_labelled: int
    n_classes: int
    distance: DomainDistance | None = None
    source_run: str = ""
    target: str = ""

    def to_dict(self):
        """The advice as JSON-ready data, with the thresholds it used."""
        data = asdict(self)
        data["alternatives"] = list(self.alternatives)
        data["thresholds"] = {"similar_max_pad": SIMILAR_MAX_PAD, "large_min_per_class": LARGE_MIN_PER_CLASS}
        return data


def recommend(pad, n_labelled, n_classes, *, n_blocks=2):
    """Apply the four-case rule to a measured distance and a target size.

    Args:
        pad: proxy A-distance between source and target, in [0, 2].
        n_labelled: labelled target training samples.
        n_classes: the target's classes.
        n_blocks: blocks of the source body (a one-block body has nothing to
            cut, so "cut early" is ``freeze``).

    Returns:
        An :class:`Advice` (without ``distance``).

    Example:

    >>> recommend(0.3, n_labelled=60, n_classes=7).strategy
    'freeze'
    """
    similar = bool(pad <= SIMILAR_MAX_PAD)
    per_class = n_labelled / max(1, n_classes)
    large = bool(per_class >= LARGE_MIN_PER_CLASS)
    strategy, alternatives, why = CASES[(large, similar)]
    if strategy == "cut:1" and n_blocks < 2:
        strategy, alternatives = "freeze", ()
    size = "large" if large else "small"
    likeness = "similar" if similar else "different"
    reason = (f"{n_labelled} labelled samples ({per_class:.0f} per class, {size}: threshold"
              f" {LARGE_MIN_PER_CLASS}) and PAD {pad:.2f} ({likeness}: threshold {SIMILAR_MAX_PAD}); {why}")
    return Advice(strategy=strategy, alternatives=alternatives, case=f"{size}/{likeness}", reason=reason,
                  similar=similar, large=large, n_labelled=int(n_labelled), n_classes=int(n_classes))


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
    for model, path in ((source.model, source_domain_path(source, data_dir)), (target_model, target_info.path)):
        n = len(read_labels(path, "train")[0])
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
    """How many labelled training samples a transfer with these options uses (whole recordings kept)."""
    indices, _ = labelled_subset(target_info.path, fraction=target_fraction, per_class=target_per_class, seed=seed)
    return len(indices)


def check_advice_options(source_run, target, *, target_fraction=None, target_per_class=None,
                         normalization="target", seed=0):
    """Refuse options a transfer with the same settings would refuse: the rule is the transfer config's.

    Raises:
        ConfigError: naming the field.
    """
    TransferConfig(target=target, source_run=str(source_run), target_fraction=target_fraction,
                   target_per_class=target_per_class, normalization=normalization, seed=seed).validate()


def advise_transfer(source_run, target, *, data_dir=None, runs_dir="runs", target_fraction=None,
                    target_per_class=None, normalization="target", seed=0, distance=None):
    """Recommend a transfer strategy from ``source_run`` to the domain ``target``.

    Args:
        source_run: a run name in ``runs_dir`` or a path (a source or pretraining run).
        target: the target domain's name.
        data_dir: folder of domain files.
        runs_dir: folder of runs.
        target_fraction: the fraction of the target's labels the transfer
            will use (sizes the target like ``--target-fraction``).
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
    if distance is None:
        distance = domain_distance(source, target_info, data_dir=data_dir, normalization=normalization, seed=seed)
    n_labelled = labelled_count(target_info, target_fraction=target_fraction, target_per_class=target_per_class,
                                seed=seed)
    advice = recommend(distance.pad, n_labelled, target_info.n_classes, n_blocks=source.n_blocks)
    advice.distance = distance
    advice.source_run = str(source.path)
    advice.target = target_info.domain
    log.info("advice for %s -> %s: %s (%s)", source.path.name, target, advice.strategy, advice.case)
    return advice
