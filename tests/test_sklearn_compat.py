"""fastnn.sklearn.MLPClassifier: behaviour tests (scikit-learn's own checks:
test_sklearn_checks.py; parity with scikit-learn's weights: test_sklearn_parity.py).

Skipped as a whole when scikit-learn is not installed.
"""
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import fastnn  # noqa: E402
from fastnn._training import unsupported_reason  # noqa: E402
from fastnn.sklearn import MLPClassifier  # noqa: E402

# The small fits below stop at max_iter on purpose, and scikit-learn's checks fit a few rows
# with batch_size=16; the tests that are about these warnings catch them explicitly.
pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
              pytest.mark.filterwarnings("ignore:batch_size=16 is larger:UserWarning")]

SMALL = dict(hidden_layer_sizes=(8,), max_iter=20, batch_size=16, random_state=0)


def _blobs(n=240, centers=3, features=5, seed=0):
    X, y = make_blobs(n_samples=n, centers=centers, n_features=features, random_state=seed)
    return StandardScaler().fit_transform(X), y


def _fit_quiet(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def test_importing_fastnn_does_not_import_sklearn():
    code = ("import sys, fastnn, fastnn.network, fastnn.layers, fastnn.optim; "
            "fastnn.Network; assert 'sklearn' not in sys.modules, 'sklearn imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_string_labels_round_trip():
    X, y = _blobs()
    names = np.array(["cat", "dog", "eel"])[y]
    est = _fit_quiet(MLPClassifier(solver="sgd", learning_rate_init=0.05, **SMALL), X, names)
    assert list(est.classes_) == ["cat", "dog", "eel"]
    pred = est.predict(X)
    assert pred.dtype == names.dtype
    assert set(pred) <= {"cat", "dog", "eel"}
    assert est.score(X, names) > 0.95
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_array_equal(est.classes_[proba.argmax(axis=1)], pred)


def test_non_contiguous_and_binary_labels():
    X, y = _blobs()
    labels = np.array([-7, 3, 40])[y]
    est = _fit_quiet(MLPClassifier(solver="sgd", learning_rate_init=0.05, **SMALL), X, labels)
    np.testing.assert_array_equal(est.classes_, [-7, 3, 40])
    assert est.score(X, labels) > 0.95

    Xb, yb = _blobs(centers=2)
    est = _fit_quiet(MLPClassifier(solver="sgd", learning_rate_init=0.05, **SMALL), Xb, yb + 5)
    # two classes: one logistic output unit, as scikit-learn's
    assert est.coefs_[-1].shape == (8, 1) and est.n_outputs_ == 1
    assert est.out_activation_ == "logistic" and est.n_layers_ == 3
    proba = est.predict_proba(Xb)
    assert proba.shape == (len(Xb), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.predict(Xb), est.classes_[(proba[:, 1] > 0.5).astype(int)])
    assert est.score(Xb, yb + 5) > 0.95


def test_one_class_is_refused():
    X, _ = _blobs()
    with pytest.raises(ValueError, match="1 class"):
        MLPClassifier(**SMALL).fit(X, np.zeros(len(X)))


@pytest.mark.parametrize("in_dtype, expected", [(np.float32, np.float32),
                                                 (np.float64, np.float64),
                                                 (np.int64, np.float64),
                                                 (np.uint8, np.float64)])
def test_dtype_follows_the_input_unless_forced(in_dtype, expected):
    X, y = _blobs()
    X = np.clip(X * 10 + 50, 0, 255).astype(in_dtype)
    est = _fit_quiet(MLPClassifier(**SMALL), X, y)
    assert all(c.dtype == expected for c in est.coefs_ + est.intercepts_)
    assert est.predict_proba(X).dtype == expected
    for forced in (np.float32, np.float64):
        est = _fit_quiet(MLPClassifier(dtype=forced.__name__, **SMALL), X, y)
        assert all(c.dtype == forced for c in est.coefs_ + est.intercepts_)
        assert est.predict_proba(X).dtype == forced


@pytest.mark.parametrize("in_dtype", [np.float64, np.uint8, np.int32])
def test_inputs_read_as_float32_values(in_dtype):
    # float64 and uint8 X are converted batch by batch, int32 up front: the same fit either way
    X, y = _blobs()
    X = np.clip(X * 40 + 128, 0, 255).round().astype(in_dtype)
    kw = dict(solver="sgd", learning_rate_init=0.001, dtype="float32", **SMALL)
    a = _fit_quiet(MLPClassifier(**kw), X, y)
    b = _fit_quiet(MLPClassifier(**kw), X.astype(np.float32), y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X.astype(np.float32)))


def test_fitted_attributes():
    X, y = _blobs()
    est = MLPClassifier(hidden_layer_sizes=(6, 5), **{k: v for k, v in SMALL.items()
                                                      if k != "hidden_layer_sizes"})
    with pytest.raises(NotFittedError):
        est.predict(X)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    assert [c.shape for c in est.coefs_] == [(5, 6), (6, 5), (5, 3)]
    assert [b.shape for b in est.intercepts_] == [(6,), (5,), (3,)]
    assert est.n_features_in_ == 5 and est.n_layers_ == 4 and est.n_outputs_ == 3
    assert est.n_iter_ == 20 and len(est.loss_curve_) == 20 and est.t_ == 20 * len(X)
    assert est.best_loss_ == min(est.loss_curve_)
    assert est.validation_scores_ is None and est.best_validation_score_ is None
    assert est.loss_curve_[-1] < est.loss_curve_[0]


def test_stops_like_sklearn_when_the_loss_stalls():
    # With a huge tol no epoch counts as an improvement after the first, so both libraries
    # stop after n_iter_no_change + 2 epochs, without a ConvergenceWarning.
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", tol=10.0, n_iter_no_change=3,
              max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = MLPClassifier(**kw).fit(X, y)
        theirs = SkMLP(**kw).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 5


# Weight-level parity with scikit-learn's estimators: test_sklearn_parity.py.


def test_assigned_weights_are_the_model():
    X, y = _blobs(n=200)
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(7,), solver="sgd", max_iter=3,
                                   random_state=0, dtype="float32"), X, y)
    assert est.loss_ == est.loss_curve_[-1]
    est.coefs_ = [np.zeros_like(c) for c in est.coefs_]
    est.intercepts_ = [np.zeros(b.shape) for b in est.intercepts_]  # float64 into float32: cast
    np.testing.assert_array_equal(est.predict_proba(X[:5]), np.full((5, 3), 1 / 3, np.float32))
    assert all(not c.any() for c in est.network_.parameters())
    with pytest.raises(ValueError, match=r"coefs_\[1\]: expected shape \(7, 3\), got \(3, 7\)"):
        est.coefs_ = [est.coefs_[0], np.zeros((3, 7))]
    with pytest.raises(ValueError, match="a list of 2 arrays"):
        est.intercepts_ = [np.zeros(7)]
    with pytest.raises(TypeError, match=r"intercepts_\[0\]: expected real numbers"):
        est.intercepts_ = [np.zeros(7, complex), np.zeros(3)]
    with pytest.raises(AttributeError):
        MLPClassifier().coefs_


def test_an_item_assigned_to_coefs_or_intercepts_is_the_model_as_in_scikit_learn():
    """est.coefs_[i] = W, as scikit-learn users write it, sets the network's weights (checked as
    the whole list is); the list keeps one array per layer; copies are plain lists."""
    import copy
    import pickle

    from sklearn.neural_network import MLPClassifier as SkMLP
    X, y = _blobs(n=200)
    ours = _fit_quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0), X, y)
    theirs = _fit_quiet(SkMLP(hidden_layer_sizes=(5,), max_iter=3, random_state=0), X, y)
    for est in (ours, theirs):
        est.coefs_[1] = np.zeros((5, 3))
        est.intercepts_[1] = np.array([0.0, 1.0, 0.0])
    np.testing.assert_array_equal(ours.predict(X[:4]), theirs.predict(X[:4]))
    np.testing.assert_array_equal(ours.predict(X[:4]), [1, 1, 1, 1])
    ours.coefs_[0:1] = [np.ones((X.shape[1], 5))]
    assert (ours.network_.layers[0].W == 1).all()
    with pytest.raises(ValueError, match=r"coefs_\[1\]: expected shape \(5, 3\), got \(3, 5\)"):
        ours.coefs_[1] = np.zeros((3, 5))
    with pytest.raises(TypeError, match=r"intercepts_\[-1\]: expected real numbers"):
        ours.intercepts_[-1] = np.array(["a", "b", "c"])
    with pytest.raises(ValueError, match=r"coefs_\[0\]: contains NaN"):
        ours.coefs_[0] = np.full((X.shape[1], 5), np.nan)
    for change in (lambda c: c.append(np.zeros((3, 3))), lambda c: c.pop(), lambda c: c.__delitem__(0)):
        with pytest.raises(TypeError, match="coefs_ has one array per layer"):
            change(ours.coefs_)
    assert len(ours.coefs_) == 2
    snapshot = copy.deepcopy(ours.coefs_)
    assert type(snapshot) is list and snapshot[1] is not ours.coefs_[1]
    assert type(pickle.loads(pickle.dumps(ours.intercepts_))) is list


def test_alpha_has_sklearns_scale():
    # scikit-learn's L2 term adds alpha * W / batch_size to the gradient. fastnn decays the
    # intercepts too, so the weights are not identical; but with the right scale they are
    # several times closer to scikit-learn's than a run without decay (alpha = 0) is.
    X, y = _blobs(n=200)
    kw = dict(hidden_layer_sizes=(7,), solver="sgd", batch_size=20, learning_rate_init=0.05,
              max_iter=3, shuffle=False, random_state=3)
    theirs = _fit_quiet(SkMLP(alpha=0.5, **kw), X, y)
    ours = _fit_quiet(MLPClassifier(alpha=0.5, dtype="float64", **kw), X, y)
    plain = _fit_quiet(MLPClassifier(alpha=0.0, dtype="float64", **kw), X, y)

    def gap(a, b):
        return max(float(np.abs(p - q).max()) for p, q in zip(a.coefs_, b.coefs_))

    assert gap(ours, theirs) * 4 < gap(plain, theirs)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=0.05)


def test_partial_fit_equals_fit_epoch_by_epoch():
    X, y = _blobs()
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=16, learning_rate_init=0.05,
              shuffle=False, random_state=1)
    full = _fit_quiet(MLPClassifier(max_iter=4, **kw), X, y)
    inc = MLPClassifier(**kw)
    for _ in range(4):
        inc.partial_fit(X, y, classes=np.unique(y))
    for a, b in zip(full.coefs_ + full.intercepts_, inc.coefs_ + inc.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert inc.loss_curve_ == full.loss_curve_ and inc.t_ == full.t_


def test_partial_fit_over_chunks_approaches_fit():
    X, y = _blobs(n=600, seed=2)
    kw = dict(hidden_layer_sizes=(16,), solver="sgd", batch_size=20, learning_rate_init=0.02,
              random_state=0)
    full = _fit_quiet(MLPClassifier(max_iter=10, **kw), X, y)
    inc = MLPClassifier(**kw)
    for epoch in range(10):
        for rows in np.array_split(np.random.default_rng(epoch).permutation(len(X)), 3):
            inc.partial_fit(X[rows], y[rows], classes=[0, 1, 2])
    assert len(inc.loss_curve_) == 30 and inc.t_ == full.t_
    assert inc.loss_curve_[-1] < 0.5 * inc.loss_curve_[0]
    assert inc.score(X, y) >= full.score(X, y) - 0.02


def test_partial_fit_errors():
    X, y = _blobs()
    est = MLPClassifier(**SMALL)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, y)
    est.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])  # a chunk may miss a class
    with pytest.raises(ValueError, match="classes"):
        est.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="not the same"):
        est.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True, **SMALL).partial_fit(X, y, classes=[0, 1, 2])


def test_early_stopping_records_validation_scores():
    X, y = _blobs(n=400)
    est = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.05,
                        batch_size=16, early_stopping=True, n_iter_no_change=2, max_iter=60,
                        random_state=0).fit(X, y)
    assert est.best_loss_ is None
    assert len(est.validation_scores_) == est.n_iter_ == len(est.loss_curve_)
    assert est.n_iter_ < 60  # the blobs are separable: the score stops improving early
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert 0.9 <= est.best_validation_score_ <= 1.0
    assert est.score(X, y) > 0.9
    # Beyond scikit-learn: the validation loss per epoch, beside the scores.
    assert len(est.validation_loss_curve_) == est.n_iter_
    assert all(np.isfinite(est.validation_loss_curve_))
    assert est.validation_loss_curve_[-1] < est.validation_loss_curve_[0]
    assert MLPClassifier(max_iter=2).fit(X, y).validation_loss_curve_ is None


def test_early_stopping_restores_the_best_weights():
    X, y = _blobs(n=400)
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.05, batch_size=16,
              early_stopping=True, n_iter_no_change=2, max_iter=60, random_state=0)
    est = MLPClassifier(**kw).fit(X, y)
    best = int(np.argmax(est.validation_scores_)) + 1  # first epoch with the best score
    again = _fit_quiet(MLPClassifier(**{**kw, "max_iter": best, "n_iter_no_change": 100}), X, y)
    for a, b in zip(est.coefs_ + est.intercepts_, again.coefs_ + again.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_predictions_match_network_with_the_same_weights():
    X, y = _blobs()
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(9, 4), activation="tanh", max_iter=5,
                                   random_state=0, dtype="float32"), X, y)
    net = fastnn.Network([fastnn.Linear(5, 9), fastnn.Tanh(), fastnn.Linear(9, 4),
                          fastnn.Tanh(), fastnn.Linear(4, 3)], seed=123)
    for layer, W, b in zip([l for l in net.layers if isinstance(l, fastnn.Linear)],
                           est.coefs_, est.intercepts_):
        layer.W[...] = W
        layer.b[...] = b
    np.testing.assert_array_equal(est.predict_proba(X), net.predict_proba(X.astype(np.float32)))
    np.testing.assert_array_equal(est.predict(X), est.classes_[net.predict(X.astype(np.float32))])
    # coefs_ are the network's live arrays: editing them changes the predictions
    est.coefs_[-1][...] = 0.0
    est.intercepts_[-1][...] = [0.0, 5.0, 0.0]
    assert (est.predict(X) == est.classes_[1]).all()


def test_sgd_uses_the_native_epoch_loop():
    X, y = _blobs()
    est = _fit_quiet(MLPClassifier(solver="sgd", **SMALL), X, y)
    assert unsupported_reason(est.network_, est._optimizer, None) is None


def test_fit_is_deterministic_and_pickles():
    X, y = _blobs()
    a = _fit_quiet(MLPClassifier(**SMALL), X, y)
    b = _fit_quiet(MLPClassifier(**SMALL), X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(X), c.predict_proba(X))
    c.partial_fit(X, y)  # the unpickled model trains on
    assert c.t_ == a.t_ + len(X)


@pytest.mark.parametrize("centers, solver", [(2, "sgd"), (3, "lbfgs")])
def test_clone_and_pickle_binary_and_lbfgs(centers, solver):
    from sklearn.base import clone

    X, y = _blobs(centers=centers)
    est = _fit_quiet(MLPClassifier(solver=solver, **SMALL), X, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    assert again.out_activation_ == est.out_activation_ and again.loss_ == est.loss_
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "network_")
    np.testing.assert_array_equal(_fit_quiet(fresh, X, y).predict_proba(X), est.predict_proba(X))


def test_pickle_leaves_the_work_buffers_behind():
    X, y = _blobs(n=3000, features=50)
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(32,), max_iter=1, random_state=0), X, y)
    est.predict(X)  # allocates (1024, 50) input buffers and more
    weights = sum(p.nbytes for p in est.coefs_ + est.intercepts_)
    # the weights plus Adam's two moment buffers, and some header
    assert len(pickle.dumps(est)) < 3 * weights + 20_000


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_n_threads_is_temporary(solver):
    from threadpoolctl import threadpool_info

    from fastnn._threads import threads_pinned

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    X, y = _blobs()
    before = (fastnn.get_num_threads(), threads_pinned(), blas_threads())
    est = _fit_quiet(MLPClassifier(solver=solver, n_threads=1, **SMALL), X, y)
    est.predict(X)
    assert (fastnn.get_num_threads(), threads_pinned(), blas_threads()) == before
    _fit_quiet(MLPClassifier(solver=solver, **SMALL), X, y)  # lbfgs: one BLAS thread inside
    assert (fastnn.get_num_threads(), threads_pinned(), blas_threads()) == before


def test_pipeline_in_grid_search():
    X, y = _blobs(n=300, seed=4)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPClassifier(solver="sgd", learning_rate_init=0.05,
                                           batch_size=16, max_iter=15, random_state=0))])
    grid = GridSearchCV(pipe, {"mlp__hidden_layer_sizes": [(4,), (16,)]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X * 50 + 3, y)
    assert grid.best_params_["mlp__hidden_layer_sizes"] in [(4,), (16,)]
    assert len(grid.cv_results_["mean_test_score"]) == 2
    assert grid.score(X * 50 + 3, y) > 0.9


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = _blobs()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = _fit_quiet(MLPClassifier(**SMALL), df, y)
    np.testing.assert_array_equal(est.feature_names_in_, df.columns)
    with pytest.warns(UserWarning, match="feature names"):
        from_array = est.predict(X)
    np.testing.assert_array_equal(est.predict(df), from_array)


def test_other_sparse_formats_are_converted_as_scikit_learn_does():
    sparse = pytest.importorskip("scipy.sparse")
    X, y = _blobs()
    from_lil = MLPClassifier(**SMALL).fit(sparse.lil_matrix(X), y)
    from_csr = MLPClassifier(**SMALL).fit(sparse.csr_matrix(X), y)
    np.testing.assert_array_equal(from_lil.predict_proba(sparse.dok_matrix(X)),
                                  from_csr.predict_proba(X))


@pytest.mark.parametrize("params, match", [
    (dict(solver="newton-cg"), "solver"),
    (dict(solver="newton"), "solver"),
    (dict(activation="softplus"), "activation"),
    (dict(momentum=1.0), "momentum"),
    (dict(learning_rate="cyclic"), "learning_rate"),
    (dict(batch_size=0), "batch_size"),
    (dict(hidden_layer_sizes=(4, 0)), "hidden_layer_sizes"),
    (dict(dtype="float16"), "dtype"),
    (dict(n_iter_no_change=0), "n_iter_no_change"),
])
def test_bad_parameters_are_refused_at_fit(params, match):
    X, y = _blobs()
    est = MLPClassifier(**params)  # accepted here, as scikit-learn requires
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)


def test_adam_parameters_are_passed_on():
    X, y = _blobs()
    est = _fit_quiet(MLPClassifier(beta_1=0.8, beta_2=0.99, epsilon=1e-6, alpha=0.032,
                                   batch_size=16, max_iter=2), X, y)
    opt = est._optimizer
    assert isinstance(opt, fastnn.Adam)
    assert (opt.beta1, opt.beta2, opt.eps) == (0.8, 0.99, 1e-6)
    assert opt.weight_decay == pytest.approx(0.032 / 16)


def test_inputs_far_from_the_training_range_give_no_warning():
    # scikit-learn's estimators give none, and cross-validation folds meet such inputs routinely;
    # the network does not even record the range (one pass over X less per fit).
    X, y = _blobs()
    est = _fit_quiet(MLPClassifier(**SMALL), X, y)
    assert est.network_.input_range is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.predict(X * 1000)


def test_early_stopping_splits_without_strata_where_a_class_has_one_row():
    """A class of one row cannot be stratified: the validation split is then a plain random one
    (scikit-learn's own estimator fits such data too), and a too small validation set is still
    refused with the message that says so."""
    X, y = _blobs(n=101)
    y[-1] = 3  # a fourth class of one row
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, early_stopping=True,
                                   random_state=0), X, y)
    assert est.n_iter_ == 3 and list(est.classes_) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="the validation set is too small"):
        MLPClassifier(early_stopping=True, validation_fraction=0.001).fit(*_blobs(n=240))


@pytest.mark.parametrize("then", ["partial_fit", "warm_start"])
def test_early_stopping_switched_off_after_a_fit_trains_on(then):
    """best_loss_ is None while early stopping runs; switched off, the next partial_fit or
    warm-started fit tracks the training loss again instead of failing on None."""
    X, y = _blobs()
    est = _fit_quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, early_stopping=True,
                                   random_state=0, warm_start=then == "warm_start"), X, y)
    assert est.best_loss_ is None
    epochs_before = len(est.loss_curve_)
    est.set_params(early_stopping=False)
    if then == "partial_fit":
        est.partial_fit(X, y)
    else:
        _fit_quiet(est, X, y)
    assert np.isfinite(est.best_loss_) and est.best_loss_ == min(est.loss_curve_[epochs_before:])


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_a_sparse_indicator_y_trains_as_the_dense_one(fmt):
    import scipy.sparse as sp
    from sklearn.datasets import make_multilabel_classification
    X, Y = make_multilabel_classification(100, n_classes=3, random_state=0)
    sparse = _fit_quiet(MLPClassifier(max_iter=3, random_state=0), X, sp.csr_matrix(Y).asformat(fmt))
    dense = _fit_quiet(MLPClassifier(max_iter=3, random_state=0), X, Y)
    np.testing.assert_array_equal(sparse.predict_proba(X), dense.predict_proba(X))
    assert isinstance(sparse.predict(X), np.ndarray)
