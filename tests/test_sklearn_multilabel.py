"""Multi-label fastnn.sklearn.MLPClassifier: an indicator matrix y gives one logistic output per
label, as scikit-learn's MLPClassifier does.

Skipped as a whole when scikit-learn is not installed.
"""
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_multilabel_classification  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402

from fastnn.sklearn import MLPClassifier  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(n=200, labels=4, seed=0):
    X, Y = make_multilabel_classification(n_samples=n, n_features=8, n_classes=labels,
                                          random_state=seed)
    return (X - X.mean(axis=0)) / X.std(axis=0), Y


def test_fit_predict_and_proba():
    X, Y = _data()
    est = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=200,
                        random_state=0).fit(X, Y)
    assert est.out_activation_ == "logistic" and est.n_outputs_ == 4
    np.testing.assert_array_equal(est.classes_, np.arange(4))
    assert est.coefs_[-1].shape == (16, 4)
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), 4) and proba.dtype == np.float64
    assert ((proba >= 0) & (proba <= 1)).all()
    assert not np.allclose(proba.sum(axis=1), 1.0)  # independent labels, not a softmax
    pred = est.predict(X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    assert est.score(X, Y) > 0.6  # subset accuracy, as scikit-learn's score gives
    # the same weights as scikit-learn's (float64, alpha=0): L-BFGS on the same loss
    kw = dict(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=20, alpha=0.0, random_state=1)
    ours, theirs = MLPClassifier(**kw).fit(X, Y), SkClassifier(**kw).fit(X, Y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_sgd_follows_sklearn():
    X, Y = _data()
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", batch_size=20, learning_rate_init=0.1,
              max_iter=4, alpha=0.0, shuffle=False, random_state=1)
    ours, theirs = MLPClassifier(**kw).fit(X, Y), SkClassifier(**kw).fit(X, Y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


def test_partial_fit_equals_fit_epoch_by_epoch():
    X, Y = _data()
    kw = dict(hidden_layer_sizes=(8,), solver="adam", batch_size=32, learning_rate_init=0.01,
              shuffle=False, random_state=0)
    full = MLPClassifier(max_iter=3, **kw).fit(X, Y)
    inc = MLPClassifier(**kw)
    for _ in range(3):
        inc.partial_fit(X, Y, classes=np.arange(4))
    for a, b in zip(full.coefs_ + full.intercepts_, inc.coefs_ + inc.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert inc.loss_curve_ == full.loss_curve_
    assert inc.predict(X).shape == Y.shape
    with pytest.raises(ValueError, match="indicator matrix of 3 labels"):
        inc.partial_fit(X, Y[:, :3])
    with pytest.raises(ValueError, match="multi-label"):
        inc.partial_fit(X, Y[:, 0])


def test_early_stopping_scores_subset_accuracy():
    X, Y = _data(n=400)
    est = MLPClassifier(hidden_layer_sizes=(16,), solver="adam", learning_rate_init=0.01,
                        early_stopping=True, n_iter_no_change=3, max_iter=100,
                        random_state=0).fit(X, Y)
    assert len(est.validation_scores_) == est.n_iter_ == len(est.validation_loss_curve_)
    assert 0 < est.best_validation_score_ <= 1


def test_pickle_and_clone():
    X, Y = _data()
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, Y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    fresh = clone(est)
    assert not hasattr(fresh, "network_")
    np.testing.assert_array_equal(fresh.fit(X, Y).predict_proba(X), est.predict_proba(X))


def test_class_weight_is_refused():
    X, Y = _data()
    for class_weight in ("balanced", {0: 2.0}):
        with pytest.raises(ValueError, match="multi-label"):
            MLPClassifier(class_weight=class_weight).fit(X, Y)
