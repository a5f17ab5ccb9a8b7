"""fastnn.sklearn.MLPRegressor: behaviour tests (scikit-learn's checks: test_sklearn_checks.py,
parity with scikit-learn's weights: test_sklearn_parity.py).

Skipped as a whole when scikit-learn is not installed.
"""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastnn.sklearn import MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(n=300, targets=1, seed=0):
    X, y = make_regression(n_samples=n, n_features=5, n_targets=targets, noise=2.0,
                           random_state=seed)
    return StandardScaler().fit_transform(X), y / y.std(axis=0)


def test_fit_predict_score_and_attributes():
    X, y = _data()
    est = MLPRegressor(hidden_layer_sizes=(16, 8), learning_rate_init=0.01, max_iter=30,
                       random_state=0)
    with pytest.raises(NotFittedError):
        est.predict(X)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    pred = est.predict(X)
    assert pred.shape == (len(X),) and pred.dtype == np.float64
    assert est.score(X, y) == pytest.approx(r2_score(y, pred))
    assert est.score(X, y) > 0.9
    assert [c.shape for c in est.coefs_] == [(5, 16), (16, 8), (8, 1)]
    assert est.n_outputs_ == 1 and est.n_layers_ == 4 and est.out_activation_ == "identity"
    assert est.n_iter_ == 30 == len(est.loss_curve_) and est.t_ == 30 * len(X)
    assert est.loss_ == est.loss_curve_[-1] and est.best_loss_ == min(est.loss_curve_)
    assert est.validation_scores_ is None and est.best_validation_score_ is None
    assert not hasattr(est, "classes_")


def test_several_outputs():
    X, Y = _data(targets=3)
    est = MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=300,
                       random_state=0).fit(X, Y)
    assert est.predict(X).shape == (len(X), 3) and est.n_outputs_ == 3
    assert est.score(X, Y) > 0.95
    # a y column (n, 1) is taken as (n,), with scikit-learn's warning
    with pytest.warns(Warning, match="column-vector y"):
        est = MLPRegressor(max_iter=2, random_state=0).fit(X, Y[:, :1])
    assert est.n_outputs_ == 1 and est.predict(X).shape == (len(X),)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_poisson_loss(solver):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    mean = np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1] + 1.0)
    y = rng.poisson(mean).astype(float)
    est = MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), solver=solver,
                       learning_rate_init=0.01, max_iter=200, random_state=0).fit(X, y)
    assert est.out_activation_ == "exp"
    pred = est.predict(X)
    assert (pred > 0).all()
    assert np.corrcoef(pred, mean)[0, 1] > 0.9
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson").fit(X, y - 5)
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="huber").fit(X, y)


def test_partial_fit_equals_fit_epoch_by_epoch():
    X, y = _data()
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=16, learning_rate_init=0.01,
              shuffle=False, random_state=1)
    full = MLPRegressor(max_iter=4, **kw).fit(X, y)
    inc = MLPRegressor(**kw)
    for _ in range(4):
        inc.partial_fit(X, y)
    for a, b in zip(full.coefs_ + full.intercepts_, inc.coefs_ + inc.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert inc.loss_curve_ == full.loss_curve_ and inc.t_ == full.t_ and inc.n_iter_ == 1
    with pytest.raises(ValueError, match="2 output"):
        inc.partial_fit(X, np.column_stack([y, y]))
    with pytest.raises(AttributeError, match="partial_fit"):
        MLPRegressor(solver="lbfgs").partial_fit(X, y)


def test_warm_start_continues_as_sklearns():
    # Each warm fit starts a new optimizer from the current weights, as scikit-learn's does
    from sklearn.neural_network import MLPRegressor as SkRegressor

    X, y = _data()
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.01, shuffle=False,
              alpha=0.0, random_state=0, max_iter=3, warm_start=True)
    ours, theirs = MLPRegressor(**kw), SkRegressor(**kw)
    ours.fit(X, y)
    theirs.fit(X, y)
    first = [c.copy() for c in ours.coefs_]
    ours.fit(X, y)
    theirs.fit(X, y)
    assert not all(np.array_equal(a, b) for a, b in zip(first, ours.coefs_))
    assert len(ours.loss_curve_) == 6 and ours.n_iter_ == 3 and ours.t_ == 6 * len(X)
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    with pytest.raises(ValueError, match="dtype"):
        ours.set_params(dtype="float32").fit(X, y)


def test_early_stopping_on_r2():
    X, y = _data(n=600)
    est = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, early_stopping=True,
                       n_iter_no_change=3, max_iter=300, random_state=0).fit(X, y)
    assert est.n_iter_ < 300 and est.best_loss_ is None
    assert len(est.validation_scores_) == est.n_iter_ == len(est.validation_loss_curve_)
    assert est.best_validation_score_ == max(est.validation_scores_) > 0.9
    # the validation loss is half the squared error: it falls as R^2 rises
    best = int(np.argmax(est.validation_scores_))
    assert est.validation_loss_curve_[best] == min(est.validation_loss_curve_)
    assert est.score(X, y) > 0.9


def test_assigned_weights_are_the_model():
    X, y = _data()
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)
    est.coefs_ = [np.zeros_like(c) for c in est.coefs_]
    est.intercepts_ = [np.zeros(4), np.array([2.5])]
    np.testing.assert_array_equal(est.predict(X[:3]), [2.5, 2.5, 2.5])
    with pytest.raises(ValueError, match=r"intercepts_\[1\]: expected shape \(1,\)"):
        est.intercepts_ = [np.zeros(4), np.zeros(2)]


@pytest.mark.parametrize("in_dtype, expected", [(np.float32, np.float32),
                                                 (np.float64, np.float64),
                                                 (np.int32, np.float64)])
def test_dtype_follows_the_input(in_dtype, expected):
    X, y = _data(n=100)
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    est.fit((X * 10).astype(in_dtype), y)
    assert all(c.dtype == expected for c in est.coefs_ + est.intercepts_)
    assert est.predict(X).dtype == expected
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, dtype="float32").fit(X, y)
    assert est.coefs_[0].dtype == np.float32


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_pickle_and_clone(solver):
    X, y = _data()
    est = MLPRegressor(hidden_layer_sizes=(8,), solver=solver, max_iter=5,
                       random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    assert again.loss_curve_ == est.loss_curve_
    if solver == "adam":
        again.partial_fit(X, y)  # the unpickled model trains on
        assert again.t_ == est.t_ + len(X)
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "network_")
    np.testing.assert_array_equal(fresh.fit(X, y).predict(X), est.predict(X))


def test_verbose_shows_a_progress_bar(capsys):
    X, y = _data(n=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, verbose=True, random_state=0).fit(X, y)
        MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=3, verbose=True,
                     random_state=0).fit(X, y)
    out, err = capsys.readouterr()
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out
    assert "Epoch 1/2" in err and "Epoch 2/2" in err  # tqdm writes to stderr
    assert "L-BFGS" in err
