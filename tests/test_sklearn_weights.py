"""sample_weight and class_weight in fastnn.sklearn's estimators.

Skipped as a whole when scikit-learn is not installed.
"""
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import make_blobs, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _blobs(n=120, centers=3, seed=0, std=2.5):
    X, y = make_blobs(n_samples=n, centers=centers, n_features=4, cluster_std=std,
                      random_state=seed)
    return StandardScaler().fit_transform(X), y


def _regression(n=120, seed=0):
    X, y = make_regression(n_samples=n, n_features=4, n_targets=2, noise=3.0, random_state=seed)
    return StandardScaler().fit_transform(X), y / y.std(axis=0)


def _weights(n, seed=0):
    """Integer weights 0..3 (some rows dropped, some repeated)."""
    return np.random.default_rng(seed).integers(0, 4, n)


def _same_weights(a, b, rtol=1e-9, atol=1e-12):
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(p, q, rtol=rtol, atol=atol)


# Full-batch training (batch_size >= the rows): a weight of k is the row given k times.
@pytest.mark.parametrize("make, data", [
    (lambda: MLPClassifier(solver="sgd", learning_rate_init=0.1, batch_size=1000),
     _blobs),
    (lambda: MLPClassifier(solver="adam", learning_rate_init=0.01, batch_size=1000), _blobs),
    (lambda: MLPClassifier(solver="lbfgs"), _blobs),
    (lambda: MLPClassifier(solver="sgd", learning_rate_init=0.1, batch_size=1000),
     lambda: _blobs(centers=2)),
    (lambda: MLPRegressor(solver="sgd", learning_rate_init=0.01, batch_size=1000), _regression),
    (lambda: MLPRegressor(solver="lbfgs"), _regression),
], ids=["sgd", "adam", "lbfgs", "binary", "regressor-sgd", "regressor-lbfgs"])
def test_a_weight_is_a_repeated_row(make, data):
    X, y = data()
    w = _weights(len(X))
    kw = dict(hidden_layer_sizes=(6,), max_iter=15, random_state=0, alpha=1e-3)
    weighted = make().set_params(**kw).fit(X, y, sample_weight=w)
    repeated = make().set_params(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w, axis=0))
    _same_weights(weighted, repeated, rtol=1e-7, atol=1e-10)
    assert weighted.loss_ == pytest.approx(repeated.loss_, rel=1e-7)


def test_unit_weights_change_nothing():
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", batch_size=16, max_iter=3, random_state=0)
    plain = MLPClassifier(**kw).fit(X, y)
    ones = MLPClassifier(**kw).fit(X, y, sample_weight=np.ones(len(X)))
    _same_weights(plain, ones, rtol=1e-12, atol=1e-14)


def test_partial_fit_takes_weights():
    X, y = _regression()
    w = _weights(len(X), seed=3)
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", batch_size=1000, learning_rate_init=0.01,
              random_state=0, shuffle=False)
    inc, rep = MLPRegressor(**kw), MLPRegressor(**kw)
    for _ in range(3):
        inc.partial_fit(X, y, sample_weight=w)
        rep.partial_fit(np.repeat(X, w, axis=0), np.repeat(y, w, axis=0))
    _same_weights(inc, rep, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("est", [MLPClassifier(), MLPRegressor()], ids=["classifier", "regressor"])
@pytest.mark.parametrize("bad, error, match", [
    (np.zeros(120), ValueError, "zero"),
    (-np.ones(120), ValueError, "(?i)negative"),
    (np.ones(7), ValueError, "sample_weight"),
    (np.full(120, np.nan), ValueError, "NaN|nan|infinity"),
])
def test_bad_weights_are_refused(est, bad, error, match):
    X, y = _blobs() if isinstance(est, MLPClassifier) else _regression()
    with pytest.raises(error, match=match):
        est.fit(X, y, sample_weight=bad)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_balanced_class_weight_is_the_explicit_weights(solver):
    X, y = _blobs(n=150)
    keep = (y != 2) | (np.arange(len(y)) % 5 == 0)  # class 2 rare
    X, y = X[keep], y[keep]
    kw = dict(hidden_layer_sizes=(6,), solver=solver, batch_size=16, max_iter=5,
              learning_rate_init=0.05, random_state=0)
    balanced = MLPClassifier(class_weight="balanced", **kw).fit(X, y)
    explicit = MLPClassifier(**kw).fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    _same_weights(balanced, explicit, rtol=1e-12, atol=1e-14)
    counts = np.bincount(y)
    by_dict = MLPClassifier(class_weight={c: len(y) / (3 * n) for c, n in enumerate(counts)},
                            **kw).fit(X, y)
    _same_weights(balanced, by_dict, rtol=1e-12, atol=1e-14)
    # and class_weight multiplies sample_weight
    w = np.linspace(0.5, 2, len(y))
    both = MLPClassifier(class_weight="balanced", **kw).fit(X, y, sample_weight=w)
    product = MLPClassifier(**kw).fit(X, y, sample_weight=w * compute_sample_weight("balanced", y))
    _same_weights(both, product, rtol=1e-12, atol=1e-14)


def test_class_weight_raises_the_recall_of_a_rare_class():
    X, y = _blobs(n=600, seed=1, std=8.0)  # overlapping classes
    keep = (y != 2) | (np.arange(len(y)) % 10 == 0)
    X, y = X[keep], y[keep]
    kw = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=200, random_state=0)
    plain = MLPClassifier(**kw).fit(X, y)
    weighted = MLPClassifier(class_weight={0: 1.0, 1: 1.0, 2: 20.0}, **kw).fit(X, y)
    rare = y == 2
    assert (weighted.predict(X[rare]) == 2).mean() > (plain.predict(X[rare]) == 2).mean()


def test_class_weight_errors():
    X, y = _blobs()
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="even").fit(X, y)
    with pytest.raises(ValueError, match="balanced"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="zero"):
        MLPClassifier(class_weight={0: 0.0, 1: 0.0, 2: 0.0}).fit(X, y)
    for bad in (-1.0, float("nan"), float("inf"), "2"):
        with pytest.raises(ValueError, match=r"^class_weight: expected finite weights >= 0, got .* for class 2"):
            MLPClassifier(class_weight={0: 1.0, 1: 1.0, 2: bad}).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(class_weight={0: 2.0}, max_iter=2).partial_fit(X, y, classes=[0, 1, 2])
    assert est.n_iter_ == 1


def test_early_stopping_refuses_a_split_of_zero_weights():
    X, y = _regression(n=40)
    w = np.zeros(40)
    w[0] = 1.0  # the split gives either part only rows of weight zero
    est = MLPRegressor(hidden_layer_sizes=(4,), early_stopping=True, validation_fraction=0.1,
                       random_state=0)
    with pytest.raises(ValueError, match="validation split .* weight zero|training .* weight zero"):
        est.fit(X, y[:, 0], sample_weight=w)
