"""fastnn.sklearn.MLPClassifier."""
import math
import numbers

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d

from ._base import BaseMLP, thread_count


def _stochastic(est):
    if est.solver == "lbfgs":
        raise AttributeError("partial_fit is only available for the stochastic solvers "
                             "('sgd', 'adam'), not for solver='lbfgs'")
    return True


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier trained by fastnn, with scikit-learn's interface.

    Parameters mean what they mean in ``sklearn.neural_network.MLPClassifier`` (the mapping is
    in the package docstring, ``help(fastnn.sklearn)``), plus:

    class_weight: None, "balanced" or a dict {label: weight}: each row's weight is multiplied
    by its class's (scikit-learn's ``compute_sample_weight``; "balanced" gives
    n_samples / (n_classes * count of the class)). Not for multi-label y; partial_fit refuses
    "balanced" (the counts of one chunk are not the data set's).
    dtype: None (default: the input's, float32 or float64; other inputs float64), "float32" or
    "float64": the network's dtype (weights, arithmetic, the probabilities).
    n_threads: int or None. When given, fit/predict run on that many threads (fastnn.num_threads
    for the calling thread while the call runs; other threads keep their own count); None uses
    fastnn's current setting.

    y: class labels (n_samples,) (softmax outputs for 3+ classes, one logistic output for 2),
    or a 0/1 indicator matrix (n_samples, n_labels) for multi-label problems (one logistic
    output per label).

    Fitted attributes: classes_ (n_classes,) (0..n_labels-1 for multi-label), n_features_in_,
    feature_names_in_ (DataFrame input), coefs_ / intercepts_ (lists of the network's live weight
    arrays, (n_in, n_out) and (n_out,), in the network dtype; assigning lists of arrays of those
    shapes sets the weights), loss_, loss_curve_, best_loss_ (None with early_stopping),
    validation_scores_ / best_validation_score_ / validation_loss_curve_ (the validation split's
    loss per epoch, beside scikit-learn's attributes; None without early_stopping), n_iter_, t_
    (training samples seen), n_layers_, n_outputs_, out_activation_ ("softmax" or "logistic"),
    network_ (the fastnn.Network).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, dtype=None, n_threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            dtype=dtype, n_threads=n_threads)
        self.class_weight = class_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    # -- training -----------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and y: labels (n_samples,) or a 0/1 indicator
        matrix (n_samples, n_labels). sample_weight: None or (n_samples,) reals >= 0, not all
        zero (a weight of 2 counts a row twice). Returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over X, y, continuing from the current weights and optimizer state.

        classes: every label that may appear; required on the first call (for multi-label y,
        anything: the labels are the indicator's columns).
        """
        first = self.__dict__.get("network_") is None
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None and not first:
            given = unique_labels(classes)
            if not np.array_equal(given, self.classes_):
                raise ValueError(f"classes={given!r} is not the same as on the first call "
                                 f"to partial_fit, was {self.classes_!r}")
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError("class_weight='balanced' is not supported by partial_fit (one "
                             "chunk's class counts are not the data set's); pass a dict, e.g. "
                             "from sklearn.utils.class_weight.compute_class_weight")
        return self._fit(X, y, sample_weight, incremental=True,
                         classes=classes if first else None)

    def _targets(self, y, keep, classes, dtype, incremental):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim == 2 and type_of_target(y) == "multilabel-indicator":  # 1-D y never is
            self._check_multilabel(y, keep)
            return np.ascontiguousarray(y, dtype=dtype), "logistic", y.shape[1]
        check_classification_targets(y)
        if keep:
            if getattr(self, "_multilabel", False):
                raise ValueError("y: expected a multi-label indicator matrix as in the first "
                                 f"fit, got {type_of_target(y)!r} targets")
            if not incremental and not np.array_equal(unique_labels(y), self.classes_):
                raise ValueError(f"warm_start needs y with the same classes as before "
                                 f"{self.classes_!r}, got {unique_labels(y)!r}")
            all_classes = self.classes_
        else:
            all_classes = unique_labels(classes) if classes is not None else unique_labels(y)
            if len(all_classes) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; "
                                 f"got 1 class: {all_classes!r}")
            self.classes_ = all_classes
            self._multilabel = False
        idx = _encode(all_classes, y)
        if len(all_classes) == 2:
            return idx.astype(dtype), "logistic", 1
        return idx, "softmax", len(all_classes)

    def _check_multilabel(self, y, keep):
        if keep:
            if not getattr(self, "_multilabel", False) or y.shape[1] != len(self.classes_):
                raise ValueError(f"y: expected the targets of the first fit, got an indicator "
                                 f"matrix of {y.shape[1]} labels")
        else:
            self.classes_ = np.arange(y.shape[1])
            self._multilabel = True

    def _sample_weight(self, sample_weight, X, y):
        sw = super()._sample_weight(sample_weight, X, y)
        if self.class_weight is None:
            return sw
        if not (isinstance(self.class_weight, dict) or self.class_weight == "balanced"):
            raise ValueError(f"class_weight: expected None, 'balanced' or a dict "
                             f"{{label: weight}}, got {self.class_weight!r}")
        y = column_or_1d(y) if np.ndim(y) == 2 and np.shape(y)[1] == 1 else y
        if type_of_target(y) == "multilabel-indicator":
            raise ValueError("class_weight is not supported for multi-label y; pass "
                             "sample_weight instead")
        if isinstance(self.class_weight, dict):
            bad = {label: w for label, w in self.class_weight.items()
                   if isinstance(w, bool) or not isinstance(w, numbers.Real) or not (math.isfinite(w) and w >= 0)}
            if bad:
                label, w = next(iter(bad.items()))
                raise ValueError(f"class_weight: expected finite weights >= 0, got {w!r} for class {label!r}")
        cw = compute_sample_weight(self.class_weight, y)
        sw = cw if sw is None else sw * cw
        if not sw.any():
            raise ValueError("sample_weight: the weights (times class_weight) are all zero")
        return sw

    def _stratify(self, y):
        """The labels the early-stopping split is stratified by (scikit-learn's documented
        rule), or None for a plain random split: for multi-label y, and where stratifying is
        impossible (a class of one row, or fewer validation or training rows than classes)."""
        if getattr(self, "_multilabel", False):
            return None
        counts = np.unique(y, return_counts=True)[1]
        n_val = math.ceil(self.validation_fraction * len(y))  # as train_test_split counts it
        if counts.min() < 2 or min(n_val, len(y) - n_val) < len(counts):
            return None
        return y

    def _score_rows(self, X, y, sample_weight):
        return accuracy_score(y, self._predict_checked(X), sample_weight=sample_weight)

    # -- prediction ---------------------------------------------------------------------------

    def _proba_checked(self, X):
        with thread_count(self.n_threads):
            p = self.network_.predict_proba(X)
        if self.out_activation_ == "softmax" or self._multilabel:
            return p.reshape(X.shape[0], -1)
        p = p.reshape(-1)
        return np.column_stack([1 - p, p])

    def _predict_checked(self, X):
        p = self._proba_checked(X)
        if self._multilabel:
            return (p > 0.5).astype(np.int64)
        if self.out_activation_ == "logistic":
            return self.classes_.take((p[:, 1] > 0.5).astype(np.intp))
        return self.classes_.take(p.argmax(axis=1))

    def _net_input(self, X):
        self._check_fitted_state()
        return self._validate_X(X, reset=False, dtype=self.network_.dtype)

    def predict_proba(self, X):
        """Probabilities in the network dtype: (n_samples, n_classes), columns in classes_
        order (two columns, 1 - p and p, for two classes); per-label probabilities (n_samples,
        n_labels) for multi-label y."""
        return self._proba_checked(self._net_input(X))

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        p = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(p, out=p)

    def predict(self, X):
        """Predicted labels (n_samples,) taken from classes_, or the 0/1 indicator matrix
        (n_samples, n_labels) int64 for multi-label y."""
        return self._predict_checked(self._net_input(X))


def _encode(classes, y):
    """Indices (N,) int64 of labels y in the sorted array classes (ValueError for unknown ones)."""
    try:
        idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        unknown = classes[idx] != y
    except TypeError:  # labels not comparable with the classes (e.g. str and int)
        raise ValueError(f"y has labels of another type than classes_ {classes!r}") from None
    if np.any(unknown):
        raise ValueError(f"y has classes not in classes_ {classes!r}: "
                         f"{np.unique(np.asarray(y)[unknown])!r}")
    return idx.astype(np.int64)
