"""predict / predict_proba through the compiled inference call: the same bits for a row alone
and inside any batch, the same values as the layer-by-layer forward pass, the same errors."""
import warnings

import numpy as np
import pytest

import fastnn
import fastnn._threads
from fastnn.losses import SoftmaxCrossEntropy

ACTIVATIONS = [getattr(fastnn, e.layer) for e in fastnn.activations.REGISTRY]
HEADS = [(fastnn.SoftmaxCrossEntropy, 10), (fastnn.BinaryCrossEntropy, 1), (fastnn.MSE, 3)]
ROWS = [1, 2, 7, 64]
BATCH = 300  # more than one block of 64 rows, not a multiple of 4


def _net(activation, loss, n_out, dtype, **kwargs):
    # 37 and 130 wide: column blocks with tails, and two blocks of the shared dimension (> 256)
    layers = [fastnn.Linear(300, 130), activation(), fastnn.Dropout(0.5), fastnn.Linear(130, 37),
              activation(), fastnn.Linear(37, n_out)]
    net = fastnn.Network(layers, loss=loss(), dtype=dtype, seed=5, **kwargs)
    for p in net.parameters()[1::2]:  # non-zero biases
        p[...] = np.random.default_rng(p.size).normal(size=p.shape) * 0.1
    return net


def _X(dtype, n=BATCH, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 300)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,n_out", HEADS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda c: c.__name__)
def test_few_rows_equal_the_batch_bit_for_bit(activation, loss, n_out, dtype):
    net = _net(activation, loss, n_out, dtype, input_scale=0.5, input_shift=0.1)
    X = _X(dtype)
    for method in ("predict", "predict_proba"):
        batch = getattr(net, method)(X)
        for n in ROWS:
            for start in (0, 5, BATCH - n):  # rows at other positions of the blocks of 4 and 64
                part = getattr(net, method)(X[start:start + n])
                assert part.dtype == batch.dtype and part.shape == batch[start:start + n].shape
                assert (part == batch[start:start + n]).all(), (method, n, start)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,n_out", HEADS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_same_values_as_the_layer_by_layer_pass(loss, n_out, dtype):
    net = _net(fastnn.Tanh, loss, n_out, dtype)
    X = _X(dtype, 70)
    outputs = net.forward(X)  # the BLAS path
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(net.predict_proba(X), net.loss.predict_proba(outputs), rtol=tol, atol=tol)
    assert net.predict(X).dtype == net.loss.predict(outputs).dtype


def test_uint8_input_is_scaled_like_training():
    net = fastnn.Network([fastnn.Linear(784, 32), fastnn.ReLU(), fastnn.Linear(32, 10)],
                         input_scale=1 / 255, seed=0)
    X = np.random.default_rng(1).integers(0, 256, (20, 784)).astype(np.uint8)
    p = net.predict_proba(X)
    np.testing.assert_allclose(p, net.predict_proba(X.astype(np.float32)), rtol=1e-6, atol=1e-7)
    assert (net.predict_proba(X[3:4]) == p[3:4]).all()


def test_other_inputs_are_converted_or_refused():
    net = _net(fastnn.ReLU, fastnn.SoftmaxCrossEntropy, 10, "float32")
    X = _X("float32", 10)
    expected = net.predict_proba(X)
    assert (net.predict_proba(np.asfortranarray(X)) == expected).all()
    assert (net.predict_proba(X.tolist()) == expected).all()
    np.testing.assert_allclose(net.predict_proba(X.astype(">f4")), expected)
    bad = X.copy()
    bad[4, 7] = np.nan
    with pytest.raises(ValueError, match=r"X: 1 NaN/Inf value\(s\); the first at row 4, column 7"):
        net.predict(bad)
    with pytest.raises(ValueError, match="X: expected 300 features"):
        net.predict(X[:, :5])
    with pytest.raises(ValueError, match="at least one row"):
        net.predict(X[:0])
    with pytest.raises(TypeError, match="batch_size"):
        net.predict(X, batch_size=2.5)


def test_overflow_once_scaled_is_refused():
    net = fastnn.Network([fastnn.Linear(3, 2)], input_scale=1e30, seed=0)
    with pytest.raises(ValueError, match="overflow float32 once scaled"):
        net.predict(np.array([[1.0, 2e10, 0.0]]))


def test_replaced_weights_are_used():
    net = _net(fastnn.Sigmoid, fastnn.SoftmaxCrossEntropy, 10, "float32")
    X = _X("float32", 3)
    before = net.predict_proba(X)
    first = net.layers[0]
    first.W = first.W * 2  # a new array: the compiled plan is rebuilt
    after = net.predict_proba(X)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, net.loss.predict_proba(net.forward(X)), rtol=1e-5, atol=1e-6)
    first.W[...] = 0  # in place: the plan reads the live array
    np.testing.assert_allclose(net.predict_proba(X), net.loss.predict_proba(net.forward(X)),
                               rtol=1e-5, atol=1e-6)
    first.W = np.asfortranarray(first.W)  # not usable as is: the layer-by-layer path runs
    np.testing.assert_allclose(net.predict_proba(X), net.loss.predict_proba(net.forward(X)),
                               rtol=1e-5, atol=1e-6)


def test_a_loss_subclass_keeps_its_own_head():
    class Shifted(SoftmaxCrossEntropy):
        def predict(self, outputs):
            return np.argmax(outputs, axis=1) + 100

    net = fastnn.Network([fastnn.Linear(4, 3)], loss=Shifted(), seed=0)
    X = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    assert (net.predict(X) >= 100).all()


def test_layer_orders_without_fusion():
    net = fastnn.Network([fastnn.Tanh(), fastnn.Dropout(0.2), fastnn.Linear(6, 5), fastnn.ReLU(),
                          fastnn.Sigmoid(), fastnn.Linear(5, 3)], seed=0)
    X = np.random.default_rng(3).normal(size=(9, 6)).astype(np.float32)
    before = X.copy()
    np.testing.assert_allclose(net.predict_proba(X), net.loss.predict_proba(net.forward(X)),
                               rtol=1e-6, atol=1e-7)
    assert (net.predict_proba(X[2:3]) == net.predict_proba(X)[2:3]).all()
    assert (X == before).all()  # the leading activation wrote to a buffer, not to the input


def test_argmax_ties_and_nan_follow_numpy():
    net = fastnn.Network([fastnn.Linear(2, 3)], seed=0)
    net.layers[0].W[...] = 0
    net.layers[0].b[...] = [1.0, 3.0, 3.0]
    assert net.predict(np.zeros((2, 2), np.float32)).tolist() == [1, 1]
    for b in ([np.nan, 3.0, np.nan], [1.0, np.nan, 5.0], [np.inf, -np.inf, np.inf]):
        net.layers[0].b[...] = b
        outputs = net.forward(np.zeros((1, 2), np.float32))
        assert net.predict(np.zeros((1, 2), np.float32)).tolist() == np.argmax(outputs, axis=1).tolist()


@pytest.mark.parametrize("path", __import__("fastnn._native", fromlist=["core"]).core.simd_paths_available())
def test_each_simd_path_is_row_count_independent(path):
    from fastnn._native import core
    before = core.get_simd_path()
    core.set_simd_path(path)
    try:
        for dtype in ("float32", "float64"):
            net = _net(fastnn.ScaledTanh, fastnn.SoftmaxCrossEntropy, 10, dtype)
            X = _X(dtype, 23)
            batch = net.predict_proba(X)
            assert all((net.predict_proba(X[i:i + 1]) == batch[i:i + 1]).all() for i in range(23))
    finally:
        core.set_simd_path(before)


def test_threads_share_a_network():
    from concurrent.futures import ThreadPoolExecutor
    net = _net(fastnn.Sigmoid, fastnn.SoftmaxCrossEntropy, 10, "float32")
    X = _X("float32", 200)
    expected = net.predict_proba(X)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: net.predict_proba(X[i:i + 1 + i % 70]), range(120)))
    for i, got in enumerate(results):
        assert (got == expected[i:i + 1 + i % 70]).all()


def test_changed_input_scaling_is_used():
    net = fastnn.Network([fastnn.Linear(3, 2)], loss=fastnn.MSE(), seed=0)
    X = np.ones((1, 3), np.float32)
    before = net.predict(X)
    net.input_scale, net.input_shift = 2.0, 1.0
    np.testing.assert_allclose(net.predict(X), net.forward(X), rtol=1e-6)
    assert not np.allclose(net.predict(X), before)


def test_large_batches_split_among_threads_give_the_same_bits():
    net = _net(fastnn.Tanh, fastnn.SoftmaxCrossEntropy, 10, "float32", input_scale=0.5)
    X = _X("float32", 64 * 9 + 5)  # enough blocks of 64 rows for the threads
    with fastnn._threads.num_threads(1):
        one = net.predict_proba(X)
    with fastnn._threads.num_threads(2):
        two = net.predict_proba(X)
        assert (net.predict_proba(X[578:579]) == two[578:579]).all()
    assert (one == two).all()


@pytest.mark.parametrize("layer_by_layer", [False, True], ids=["compiled", "layer_by_layer"])
def test_track_input_range_off_keeps_predict_silent(layer_by_layer):
    X = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    net = fastnn.Network([fastnn.Linear(4, 2)], seed=0)
    net.fit(X, y, epochs=1, progress=False)
    if layer_by_layer:  # weights the compiled call cannot read
        net.layers[0].W = np.asfortranarray(net.layers[0].W)
    far = X * 100
    for method in ("predict", "predict_proba"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            getattr(net, method)(far)
        assert len(caught) == 1 and "far outside" in str(caught[0].message)
        assert caught[0].filename == __file__  # points at the caller of predict
        net.track_input_range = False  # the range of the earlier fit stays, unused
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            getattr(net, method)(far)
        net.track_input_range = True
