"""The classical baselines, by name: what each needs of a domain, how it fits and how it scores.

A method reads a domain's samples through a *view* (see
:mod:`convlstm_tl.baselines.features`): series ``(N, channels, length)`` for
frames, documents of words for tokens, which ``inputs(view)`` turns into
what the method's model takes (samples first, so that the inputs of two
domains can be joined). :func:`create_method` builds an unfitted model;
``fit(inputs, y)`` trains it on label ids, ``scores(inputs)`` returns one
score per class of the training domain (``(N, n_classes)``, higher is more
likely; classes absent from the training set score ``-inf``).
``mismatch(trained, layout)`` says how a domain's inputs differ from those a
model was trained on, where the method cannot read them (pooling two such
domains, or scoring one with the other's model, is then skipped).

- ``summary-logreg``: :func:`~convlstm_tl.baselines.features.summary_features`
  (mean, std, min, max, mean absolute step per series channel), standardized,
  then a multinomial logistic regression. Token domains get a TF-IDF bag of
  words instead (no standardization: TF-IDF rows are already unit length).
  Classes are weighted ``"balanced"``: the results are read as macro-F1 too,
  and a pooled training set mixes domains with their own class balances.
- ``minirocket``: aeon's ``MiniRocketClassifier(random_state=seed)``, untuned
  (10,000 kernels, ridge regression with its own cross-validated penalty), on
  the series. Frames only, series of 9 or more steps (its kernels are 9 long).
"""

import importlib.util

import numpy as np

from convlstm_tl.baselines.features import series_shape, summary_features
from convlstm_tl.errors import ConfigError

# MiniRocket's kernels span 9 steps.
MINIROCKET_MIN_LENGTH = 9
INSTALL_HINT = "pip install 'convlstm_tl[baselines]'"
# Enough iterations that lbfgs converges on standardized summary features and TF-IDF alike.
LOGREG_MAX_ITER = 5000


def layout_of(kind, frame_shape):
    """A domain's layout as the methods see it: ``("tokens",)`` or ``("frames", channels, length)``."""
    return ("tokens",) if kind == "tokens" else ("frames", *series_shape(frame_shape))


class _Method:
    """What every method shares: an unfitted model for ``n_classes`` classes, seeded; it runs anywhere, on anything.

    A method defines ``name``, ``mismatch``, ``features``, ``inputs``, ``fit``
    and ``scores``, and overrides ``unavailable`` / ``problem`` where it has limits.
    """

    def __init__(self, *, n_classes, seed):
        self.n_classes = n_classes
        self.seed = seed
        self.model = None

    @staticmethod
    def unavailable():
        """Why the method cannot run in this environment (None: it can)."""
        return None

    @staticmethod
    def problem(layout):
        """Why the method cannot learn from a domain of this layout (None: it can)."""
        return None


class SummaryLogReg(_Method):
    """Summary statistics (or TF-IDF of tokens) + standardization + logistic regression."""

    name = "summary-logreg"

    @staticmethod
    def mismatch(trained, layout):
        """How inputs of layout ``layout`` differ from ``trained`` for this method, or None if they are alike."""
        if trained[0] != layout[0]:
            return f"{trained[0]} vs {layout[0]}"
        if layout[0] == "frames" and trained[1] != layout[1]:
            return f"series of {trained[1]} vs {layout[1]} channels"
        return None

    @staticmethod
    def features(layout):
        """What the method's features are, in words."""
        return "TF-IDF bag of words" if layout[0] == "tokens" else "per-channel mean, std, min, max, mean |step|"

    @staticmethod
    def inputs(view):
        """Summary features ``(N, 5 * channels)`` of series; documents stay documents (list of word tuples)."""
        return summary_features(view) if isinstance(view, np.ndarray) else view

    def fit(self, inputs, y):
        """Fit on :meth:`inputs` and label ids ``y``; returns self."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        classifier = LogisticRegression(max_iter=LOGREG_MAX_ITER, class_weight="balanced", random_state=self.seed)
        if isinstance(inputs, np.ndarray):
            self.model = make_pipeline(StandardScaler(), classifier)
        else:
            from sklearn.feature_extraction.text import TfidfVectorizer

            # The documents are already tuples of words: the analyzer only lists them.
            self.model = make_pipeline(TfidfVectorizer(analyzer=list, lowercase=False), classifier)
        self.model.fit(inputs, y)
        return self

    def scores(self, inputs):
        """Class probabilities ``(N, n_classes)``; ``-inf`` for classes the training set lacked."""
        return _full_columns(self.model.predict_proba(inputs), self.model.classes_, self.n_classes)


class MiniRocket(_Method):
    """aeon's ``MiniRocketClassifier`` on the raw series, untuned."""

    name = "minirocket"

    @staticmethod
    def unavailable():
        """Why the method cannot run in this environment (None: it can)."""
        if importlib.util.find_spec("aeon") is None:
            return f"minirocket needs the aeon package, which is not installed; install it with {INSTALL_HINT}"
        return None

    @staticmethod
    def problem(layout):
        """Why the method cannot learn from a domain of this layout (None: it can)."""
        if layout[0] != "frames":
            return "minirocket convolves numeric series; token ids are not one"
        if layout[2] < MINIROCKET_MIN_LENGTH:
            return (f"minirocket needs series of at least {MINIROCKET_MIN_LENGTH} steps (its kernels are"
                    f" {MINIROCKET_MIN_LENGTH} long); these samples are series of {layout[2]}")
        return None

    @staticmethod
    def mismatch(trained, layout):
        """How inputs of layout ``layout`` differ from ``trained`` for this method, or None if they are alike."""
        if trained != layout:
            return f"series of {trained[1]} channels x {trained[2]} steps vs {layout[1]} x {layout[2]}"
        return None

    @staticmethod
    def features(layout):
        """What the method's features are, in words."""
        return "MiniRocket, 10,000 kernels"

    @staticmethod
    def inputs(view):
        """The series ``(N, channels, length)`` as float64, as aeon computes."""
        return np.asarray(view, dtype=np.float64)

    def fit(self, inputs, y):
        """Fit on series ``(N, channels, length)`` and label ids ``y``; returns self."""
        from aeon.classification.convolution_based import MiniRocketClassifier

        self.model = MiniRocketClassifier(random_state=self.seed)
        self.model.fit(inputs, y)
        return self

    def scores(self, inputs):
        """The ridge classifier's decision values ``(N, n_classes)``; ``-inf`` for classes not trained on."""
        series = inputs
        pipeline = getattr(self.model, "pipeline_", None)
        if pipeline is None or not hasattr(pipeline, "decision_function"):
            # No decision values to be had: the prediction as a one-hot score.
            return _full_columns(self.model.predict_proba(series), self.model.classes_, self.n_classes)
        decision = np.asarray(pipeline.decision_function(series), dtype=np.float64)
        if decision.ndim == 1:  # two classes: one value, positive for the second
            decision = np.stack([-decision, decision], axis=1)
        return _full_columns(decision, self.model.classes_, self.n_classes)


METHODS = {method.name: method for method in (SummaryLogReg, MiniRocket)}
METHOD_NAMES = tuple(METHODS)


def create_method(name, *, n_classes, seed):
    """An unfitted model of method ``name`` for ``n_classes`` classes, seeded.

    Raises:
        ConfigError: for an unknown name.
    """
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known methods are {', '.join(METHOD_NAMES)}", field="methods")
    return METHODS[name](n_classes=n_classes, seed=seed)


def _full_columns(values, classes, n_classes):
    """Scores over the classes a model saw (``classes``) spread to all ``n_classes`` columns, ``-inf`` elsewhere."""
    full = np.full((len(values), n_classes), -np.inf)
    full[:, np.asarray(classes, dtype=np.int64)] = values
    return full
