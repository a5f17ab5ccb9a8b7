"""Sparse X (scipy.sparse CSR, CSC, COO): trained, evaluated and predicted without densifying
the whole matrix, with the weights and results of the same rows given densely."""
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import _sparse

sp = pytest.importorskip("scipy.sparse")

N, F, K = 300, 40, 3


def _data(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = ((rng.random((N, F)) < 0.1) * rng.random((N, F))).astype(dtype)
    return X, rng.integers(0, K, N)


def _net(dtype="float64", dropout=0.0, **kwargs):
    layers = [fastnn.Linear(F, 16), fastnn.ReLU()]
    layers += [fastnn.Dropout(dropout)] if dropout else []
    return fastnn.Network(layers + [fastnn.Linear(16, K)], dtype=dtype, seed=1, **kwargs)


def _max_difference(a, b):
    return max(float(np.abs(p - q).max()) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("engine", ["layers", "auto"])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_sparse_training_gives_the_dense_weights(engine, fmt, dropout, monkeypatch):
    # small chunks, so that an epoch runs through several of them
    monkeypatch.setattr(_sparse, "CHUNK_VALUES", 3 * 32 * F)
    X, y = _data()
    dense, sparse = _net(dropout=dropout), _net(dropout=dropout)
    w = np.random.default_rng(5).random(N)
    dense.fit(X, y, epochs=2, batch_size=32, progress=False, seed=3, engine=engine, sample_weight=w)
    sparse.fit(sp.csr_matrix(X).asformat(fmt), y, epochs=2, batch_size=32, progress=False, seed=3,
               engine=engine, sample_weight=w)
    assert _max_difference(dense, sparse) == 0.0
    Xs = sp.csr_matrix(X).asformat(fmt)
    np.testing.assert_array_equal(dense.predict_proba(X), sparse.predict_proba(Xs))
    # evaluation batches of a sparse X are smaller here (CHUNK_VALUES): sums in other groups
    assert dense.evaluate(X, y) == pytest.approx(sparse.evaluate(Xs, y), rel=1e-14)


def test_scaled_float32_inputs_and_validation_split(monkeypatch):
    monkeypatch.setattr(_sparse, "CHUNK_VALUES", 2 * 16 * F)
    X, y = _data(np.float32)
    kwargs = dict(dtype="float32", input_scale=0.5, input_shift=0.1)
    dense, sparse = _net(**kwargs), _net(**kwargs)
    histories = [net.fit(data, y, epochs=2, batch_size=16, progress=False, seed=3,
                         validation_split=0.2) for net, data in ((dense, X), (sparse, sp.csr_matrix(X)))]
    assert _max_difference(dense, sparse) == 0.0
    assert histories[0].history["val_loss"] == pytest.approx(histories[1].history["val_loss"],
                                                             rel=1e-14)
    np.testing.assert_array_equal(dense.predict(X), sparse.predict(sp.csr_matrix(X)))


def test_a_canonical_csr_matrix_is_not_copied():
    X, _ = _data()
    csr = sp.csr_matrix(X)
    checked = _net()._check_X(csr, "X")
    assert checked.csr is csr and len(checked) == N


def test_duplicates_are_summed_and_other_dtypes_converted():
    X = sp.coo_matrix((np.array([1, 2], np.int32), (np.array([0, 0]), np.array([3, 3]))),
                      shape=(2, F))
    checked = _net()._check_X(X, "X")
    dense = checked.dense_rows(np.arange(2))
    assert dense.dtype == np.float64 and dense[0, 3] == 3.0 and dense.sum() == 3.0


def test_bad_sparse_inputs_are_refused_naming_the_argument():
    X, y = _data()
    net = _net()
    bad = sp.csr_matrix(X)
    bad.data[5] = np.nan
    row = int(np.searchsorted(bad.indptr, 5, side="right") - 1)
    with pytest.raises(ValueError, match=rf"X: 1 NaN/Inf value\(s\); the first at row {row}, column"):
        net.fit(bad, y, epochs=1, progress=False)
    with pytest.raises(ValueError, match="X: expected 40 features per row"):
        net.predict(sp.csr_matrix(np.ones((2, F + 1))))
    with pytest.raises(ValueError, match="X: expected at least one row"):
        net.predict(sp.csr_matrix((0, F)))
    with pytest.raises(TypeError, match="X: expected a real-valued array"):
        net.predict(sp.csr_matrix(np.ones((2, F), np.complex128)))
    huge = sp.csr_matrix(X * 1e300)
    with pytest.raises(ValueError, match="overflow float32 once scaled"):
        _net(dtype="float32").fit(huge, y, epochs=1, progress=False)


def test_the_range_warning_reads_a_sparse_input():
    X, y = _data()
    net = _net()
    net.fit(sp.csr_matrix(X), y, epochs=1, progress=False, seed=0)
    assert net.input_range.shape == (F, 2)
    np.testing.assert_array_equal(net.input_range[:, 0], X.min(axis=0))
    np.testing.assert_array_equal(net.input_range[:, 1], X.max(axis=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.predict(sp.csr_matrix(X * 100))
    assert len(caught) == 1 and "far outside the range seen in training" in str(caught[0].message)


@pytest.mark.slow
def test_a_wide_sparse_matrix_trains_within_its_size_plus_200_mb():
    """100,000 x 50,000 at 0.1 % density (the TF-IDF -> MLP case): numpy/scipy allocations
    during fit stay under 200 MB beyond the matrix."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n, f, nnz = 100_000, 50_000, 5_000_000
    rows = np.sort(rng.integers(0, n, nnz))
    X = sp.csr_matrix((rng.random(nnz, dtype=np.float32), (rows, rng.integers(0, f, nnz))),
                      shape=(n, f))
    X.sum_duplicates()
    y = rng.integers(0, 2, n)
    net = fastnn.Network([fastnn.Linear(f, 8), fastnn.ReLU(), fastnn.Linear(8, 2)], seed=0)
    tracemalloc.start()
    try:
        net.fit(X, y, epochs=1, batch_size=256, progress=False, optimizer="adam")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak {peak / 1e6:.0f} MB beyond X ({(X.data.nbytes + X.indices.nbytes) / 1e6:.0f} MB)")
    assert peak < 200e6, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_estimators_give_the_dense_weights_for_sparse_X(solver, fmt, monkeypatch):
    pytest.importorskip("sklearn")
    from fastnn.sklearn import MLPClassifier, MLPRegressor

    monkeypatch.setattr(_sparse, "CHUNK_VALUES", 50 * F)  # lbfgs passes X in several chunks
    X, y = _data()
    Xs = sp.csr_matrix(X).asformat(fmt)
    w = np.random.default_rng(2).random(N)
    for make, target in ((MLPClassifier, y), (MLPRegressor, X[:, :2] @ [1.0, -2.0] + y)):
        dense, sparse = (make(hidden_layer_sizes=(8,), solver=solver, max_iter=5, random_state=0)
                         for _ in range(2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dense.fit(X, target, sample_weight=w)
            sparse.fit(Xs, target, sample_weight=w)
        for a, b in zip(dense.coefs_ + dense.intercepts_, sparse.coefs_ + sparse.intercepts_):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_allclose(dense.predict(X), sparse.predict(Xs), rtol=0, atol=1e-12)
