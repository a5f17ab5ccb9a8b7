"""Weight-level parity of fastnn.sklearn's estimators with scikit-learn's (float64, alpha=0,
shuffle=False, the same random_state): sgd under every schedule with and without Nesterov,
adam, lbfgs, with and without sample weights.

Skipped as a whole when scikit-learn is not installed.
"""
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import make_blobs, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


def _problem(kind, n=200, seed=0):
    """(X, y, our class, their class) for 'multiclass', 'binary', 'regression' (2 outputs),
    'regression1' (1 output), 'poisson' (counts)."""
    if kind in ("multiclass", "binary"):
        X, y = make_blobs(n_samples=n, centers=3 if kind == "multiclass" else 2, n_features=5,
                          cluster_std=3.0, random_state=seed)
        return StandardScaler().fit_transform(X), y, MLPClassifier, SkClassifier
    X, y = make_regression(n_samples=n, n_features=5, n_targets=2, noise=5.0, random_state=seed)
    X = StandardScaler().fit_transform(X)
    if kind == "poisson":
        y = np.random.default_rng(seed).poisson(np.exp(0.3 * X[:, :2] + 1.0)).astype(float)
        return X, y, MLPRegressor, SkRegressor
    y = y / y.std(axis=0)
    return X, (y[:, 0] if kind == "regression1" else y), MLPRegressor, SkRegressor


def _fit_both(kind, sample_weight=None, **kw):
    X, y, ours, theirs = _problem(kind)
    if kind == "poisson":
        kw["loss"] = "poisson"
    kw = dict(dict(hidden_layer_sizes=(7,), alpha=0.0, shuffle=False, random_state=3), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = theirs(**kw).fit(X, y, sample_weight=sample_weight)
        b = ours(**kw).fit(X, y, sample_weight=sample_weight)
    assert all(p.dtype == np.float64 for p in b.coefs_)  # the input's dtype
    return a, b


def _assert_same_weights(theirs, ours, rtol, atol):
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_outputs_ == theirs.n_outputs_ and ours.n_layers_ == theirs.n_layers_
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)


SGD = dict(solver="sgd", batch_size=20, learning_rate_init=0.05, momentum=0.9, power_t=0.5,
           max_iter=6, tol=10.0, n_iter_no_change=1)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
@pytest.mark.parametrize("nesterov", [True, False], ids=["nesterov", "momentum"])
@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
def test_sgd_follows_sklearn_under_every_schedule(schedule, nesterov, kind):
    # tol=10 makes every epoch one without improvement: "adaptive" divides the rate by 5 every
    # other epoch, and "constant"/"invscaling" stop after n_iter_no_change + 1 epochs as
    # scikit-learn's do.
    lr = 0.01 if kind == "regression" else 0.05
    theirs, ours = _fit_both(kind, **dict(SGD, nesterovs_momentum=nesterov,
                                          learning_rate=schedule, learning_rate_init=lr))
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    _assert_same_weights(theirs, ours, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-9)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression", "poisson"])
def test_adam_follows_sklearn(kind):
    # fastnn adds epsilon to the bias-corrected sqrt(v), scikit-learn to the raw one: the
    # steps differ by a relative ~ epsilon / sqrt(v), made negligible by a small epsilon.
    theirs, ours = _fit_both(kind, solver="adam", batch_size=20, learning_rate_init=0.01,
                             epsilon=1e-13, max_iter=5)
    _assert_same_weights(theirs, ours, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)


# One output for the squared error: with several, scikit-learn's gradient is that of the sum
# over the outputs while its loss is their mean, and fastnn's L-BFGS minimises the sum (whose
# gradient that is), so the line searches differ.
@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression1", "poisson"])
def test_lbfgs_follows_sklearn(kind):
    theirs, ours = _fit_both(kind, solver="lbfgs", max_iter=25)
    assert ours.n_iter_ == theirs.n_iter_
    _assert_same_weights(theirs, ours, rtol=1e-6, atol=1e-9)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    assert len(ours.loss_curve_) == ours.n_iter_
    assert ours.loss_curve_[-1] == pytest.approx(ours.loss_, rel=1e-12)


def test_lbfgs_reports_sklearns_loss_for_several_outputs():
    theirs, ours = _fit_both("regression", solver="lbfgs", alpha=0.01, max_iter=200)
    # both end near one minimum; loss_ is on scikit-learn's scale (the mean over the outputs)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=0.05)
    X, y, _, _ = _problem("regression")
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=1e-3)


def test_lbfgs_with_alpha_and_sample_weights_follows_sklearn():
    X, y, _, _ = _problem("multiclass")
    w = np.random.default_rng(0).uniform(0, 3, len(X))
    theirs, ours = _fit_both("multiclass", sample_weight=w, solver="lbfgs", alpha=0.01,
                             max_iter=20)
    _assert_same_weights(theirs, ours, rtol=1e-6, atol=1e-9)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)


def test_lbfgs_stops_like_sklearn():
    # max_fun caps the evaluations, tol (gtol) ends a converged run before max_iter
    kw = dict(solver="lbfgs", max_iter=500)
    theirs, ours = _fit_both("binary", max_fun=30, **kw)
    assert ours.n_iter_ == theirs.n_iter_ < 30
    theirs, ours = _fit_both("binary", tol=1e-2, **kw)
    assert ours.n_iter_ == theirs.n_iter_ < 500


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_sgd_with_sample_weights_follows_sklearn(kind):
    X, _, _, _ = _problem(kind)
    w = np.random.default_rng(1).uniform(0, 2, len(X))
    w[::7] = 0
    lr = 0.01 if kind == "regression" else 0.05
    theirs, ours = _fit_both(kind, sample_weight=w, solver="sgd", batch_size=20,
                             learning_rate_init=lr, max_iter=3)
    _assert_same_weights(theirs, ours, rtol=1e-9, atol=1e-12)
