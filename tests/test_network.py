"""Network construction, the fused plan, forward/backward, inference and input validation."""
import tracemalloc

import numpy as np
import pytest

from fastnn import ops
from fastnn.layers import Dropout, Linear, ReLU, ScaledTanh, Sigmoid, Tanh
from fastnn.losses import MSE, BinaryCrossEntropy
from fastnn.network import Network
from fastnn.optim import SGD, Adam
from fastnn import _training

ACT = {
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "scaled_tanh": lambda x: 1.7159 * np.tanh(2 * x / 3),
}


def numpy_forward(layers, x):
    """Plain NumPy evaluation of a layer list (dropout as identity)."""
    for layer in layers:
        if isinstance(layer, Linear):
            x = x @ layer.W + layer.b
        elif isinstance(layer, Dropout):
            pass
        else:
            x = ACT[layer.name](x)
    return x


def small_data(n=64, f=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f))
    return X, rng.integers(0, k, n)


# -- construction, summary, repr --------------------------------------------------------------

def test_summary_parameter_counts():
    net = Network([Linear(784, 64), Sigmoid(), Linear(64, 10)])
    text = net.summary()
    assert "50,240" in text and "650" in text and "Total parameters: 50,890" in text
    assert net.n_parameters() == 50_890
    deeper = Network([Linear(784, 64), ReLU(), Linear(64, 64), ReLU(), Linear(64, 10)])
    assert "Total parameters: 55,050" in deeper.summary()
    assert "(N, 64)" in deeper.summary()


def test_repr_lists_layers_and_loss():
    net = Network([Linear(4, 3, init="xavier"), Tanh(), Dropout(0.2), Linear(3, 2, init="lecun")],
                  dtype="float64", input_scale=0.5)
    assert repr(net) == ("Network([Linear(4 -> 3, init='xavier'), Tanh(), Dropout(p=0.2), "
                         "Linear(3 -> 2, init='lecun')], loss=SoftmaxCrossEntropy(), "
                         "dtype='float64', input_scale=0.5, input_shift=0.0)")


@pytest.mark.parametrize("layers, exc, match", [
    ([], ValueError, "at least one Linear"),
    ([Sigmoid(), ReLU()], ValueError, "at least one Linear"),
    ([Linear(4, 5), Sigmoid(), Linear(6, 2)], ValueError, r"layers\[2\].*expects 6 inputs.*gives 5"),
    ([Linear(4, 5), "relu"], TypeError, r"layers\[1\]"),
])
def test_bad_layer_lists(layers, exc, match):
    with pytest.raises(exc, match=match):
        Network(layers)


def test_same_layer_object_twice_is_refused():
    act = Sigmoid()
    with pytest.raises(ValueError, match="appears twice"):
        Network([Linear(3, 3), act, Linear(3, 3), act, Linear(3, 2)])


def test_bad_network_arguments():
    with pytest.raises(TypeError, match="dtype"):
        Network([Linear(3, 2)], dtype="int8")
    with pytest.raises(TypeError, match="loss"):
        Network([Linear(3, 2)], loss="mse")
    with pytest.raises(ValueError, match="input_scale"):
        Network([Linear(3, 2)], input_scale=float("inf"))


# -- the plan ---------------------------------------------------------------------------------

def _spy(monkeypatch, name, calls):
    real = getattr(ops, name)

    def spy(*args, **kwargs):
        calls.append((name, args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(ops, name, spy)


def test_fused_blocks_call_fused_kernels(monkeypatch):
    calls = []
    for name in ("linear_forward", "linear_backward", "sigmoid", "relu", "sigmoid_backward",
                 "relu_backward", "softmax_cross_entropy"):
        _spy(monkeypatch, name, calls)
    net = Network([Linear(6, 5), Sigmoid(), Linear(5, 4), ReLU(), Linear(4, 3)], seed=0)
    X, y = small_data()
    # Only the training steps' calls: not the loss measured before training (explosion check).
    monkeypatch.setattr(_training, "_loss_before_training", lambda *args: None)
    net.fit(X, y, epochs=1, batch_size=64, progress=False, seed=0, engine="layers")
    names = [c[0] for c in calls]
    assert names.count("linear_forward") == 3
    assert names.count("linear_backward") == 3
    assert names.count("softmax_cross_entropy") == 1
    assert not {"sigmoid", "relu", "sigmoid_backward", "relu_backward"} & set(names)
    acts = [c[1][3] for c in calls if c[0] == "linear_forward"]
    assert acts == ["sigmoid", "relu", None]
    need_dx = [c[1][5] for c in calls if c[0] == "linear_backward"]
    assert need_dx == [True, True, False]  # backward runs last block first; first layer: no dx


def _mlp(dtype, seed=0):
    return Network([Linear(6, 5), Sigmoid(), Linear(5, 4), ReLU(), Linear(4, 3)],
                   dtype=dtype, seed=seed)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", [dict(lr=0.1), dict(lr=0.1, momentum=0.9),
                                       dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)])
def test_native_epoch_matches_layer_by_layer(dtype, optimizer):
    """The native whole-epoch loop and the op-by-op path train to the same weights."""
    X, y = small_data()
    fast, slow = _mlp(dtype), _mlp(dtype)
    for net, engine in ((fast, "compiled"), (slow, "layers")):
        net.fit(X, y, epochs=3, batch_size=16, optimizer=SGD(**optimizer), progress=False, seed=1,
                engine=engine)
    rtol = 2e-4 if dtype == "float32" else 1e-10
    for a, b in zip(fast.parameters(), slow.parameters()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    fast_state, slow_state = fast.optimizer.state_dict(), slow.optimizer.state_dict()
    assert fast_state["steps"] == slow_state["steps"]
    assert {k: v is None for k, v in fast_state["state"].items()} == \
        {k: v is None for k, v in slow_state["state"].items()}


def test_native_epoch_is_used_only_where_it_applies(monkeypatch):
    calls = []
    from fastnn._fastpath import CompiledEngine
    real = CompiledEngine.run_epoch
    monkeypatch.setattr(CompiledEngine, "run_epoch", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    X, y = small_data()
    _mlp("float32").fit(X, y, epochs=1, batch_size=32, progress=False, seed=0)
    assert calls
    calls.clear()
    _mlp("float32").fit(X, y, epochs=1, batch_size=32, optimizer=Adam(), progress=False, seed=0)
    assert calls  # SGD and Adam both run natively
    calls.clear()
    dropout = Network([Linear(6, 5), ReLU(), Dropout(0.2), Linear(5, 3)], seed=0)
    dropout.fit(X, y, epochs=1, batch_size=32, progress=False, seed=0)
    assert calls  # and Dropout
    calls.clear()
    unfused = Network([Linear(6, 5), ReLU(), Sigmoid(), Linear(5, 3)], seed=0)
    unfused.fit(X, y, epochs=1, batch_size=32, progress=False, seed=0)
    assert not calls
    assert _training.unsupported_reason(dropout, SGD(lr=0.1), None) is None
    _mlp("float32").fit(X, y, epochs=1, progress=False, seed=0, sample_weight=np.ones(len(X)))
    assert calls  # sample weights run compiled too
    calls.clear()
    _mlp("float32").fit(X, y, epochs=1, progress=False, seed=0, engine="layers")
    assert not calls


def test_unfusable_orders_use_unfused_ops(monkeypatch):
    calls = []
    for name in ("tanh", "relu", "relu_backward", "sigmoid", "sigmoid_backward"):
        _spy(monkeypatch, name, calls)
    layers = [Tanh(), Linear(6, 5), Sigmoid(), ReLU(), Linear(5, 3)]
    net = Network(layers, dtype="float64", seed=0)
    X, y = small_data()
    np.testing.assert_allclose(net.forward(X), numpy_forward(layers, X), rtol=1e-12)
    names = [c[0] for c in calls]
    assert names == ["tanh", "relu"]  # the sigmoid is fused into the Linear
    net.fit(X, y, epochs=1, batch_size=64, progress=False)
    assert "relu_backward" in [c[0] for c in calls]
    assert "tanh_backward" not in [c[0] for c in calls]  # no gradient needed w.r.t. the input


@pytest.mark.parametrize("layers", [
    [Linear(6, 5), ScaledTanh(), Tanh(), Linear(5, 3)],
    [Sigmoid(), Sigmoid(), Linear(6, 3)],
    [Dropout(0.5), Linear(6, 4), Dropout(0.3), ReLU(), Linear(4, 3)],
    [Linear(6, 4), Linear(4, 4), ReLU(), Dropout(0.2), Dropout(0.2), Linear(4, 3), Tanh()],
], ids=["two-activations", "activation-first", "dropout-first", "linear-linear"])
def test_any_layer_order_runs_and_matches_numpy(layers):
    net = Network(layers, dtype="float64", seed=1)
    X, y = small_data()
    np.testing.assert_allclose(net.forward(X), numpy_forward(layers, X), rtol=1e-12, atol=1e-15)
    history = net.fit(X, y, epochs=2, batch_size=16, progress=False, optimizer=SGD(lr=0.05))
    assert np.isfinite(history.train_loss).all()


# -- forward / backward / dropout -------------------------------------------------------------

def test_forward_returns_a_copy_in_network_dtype():
    X, _ = small_data()
    for dtype in ("float32", "float64"):
        net = Network([Linear(6, 4), Tanh(), Linear(4, 3)], dtype=dtype, seed=0)
        a = net.forward(X)
        b = net.forward(X[:10])
        assert a.dtype == np.dtype(dtype) and a.shape == (64, 3) and b.shape == (10, 3)
        np.testing.assert_array_equal(a[:10], b)


def test_backward_fills_gradients_aligned_with_parameters():
    net = Network([Linear(6, 4), Tanh(), Linear(4, 3)], dtype="float64", seed=0)
    X, y = small_data()
    out = net.forward(X)
    grads = net.backward(net.loss.backward(out, y))
    assert [g.shape for g in grads] == [p.shape for p in net.parameters()]
    # Output-layer gradients by hand: dW2 = h.T @ dz, db2 = dz.sum(0).
    h = np.tanh(X @ net.layers[0].W + net.layers[0].b)
    dz = net.loss.backward(out, y)
    np.testing.assert_allclose(grads[2], h.T @ dz, rtol=1e-10)
    np.testing.assert_allclose(grads[3], dz.sum(0), rtol=1e-10)
    with pytest.raises(ValueError, match="grad_outputs"):
        net.backward(np.zeros((3, 3)))


def test_backward_needs_forward():
    with pytest.raises(RuntimeError, match="forward"):
        Network([Linear(3, 2)]).backward(np.zeros((1, 2)))


def test_dropout_training_vs_evaluation():
    layers = [Linear(6, 200, init="lecun"), ReLU(), Dropout(0.25), Linear(200, 3)]
    net = Network(layers, dtype="float64", seed=3)
    X, _ = small_data(n=32)
    np.testing.assert_array_equal(net.forward(X), net.forward(X))  # evaluation: deterministic
    net.forward(X, training=True)
    ws = net._last_ws
    dense = ws.fwd[0][1]
    kept = dense.mask != 0
    assert 0.2 < 1 - kept.mean() < 0.3
    np.testing.assert_allclose(dense.mask[kept], 1 / 0.75)
    np.testing.assert_allclose(dense.yd, dense.y * dense.mask)
    assert not np.array_equal(net.forward(X, training=True), net.forward(X, training=True))


def test_dropout_backward_uses_the_forward_mask():
    net = Network([Linear(6, 8), Sigmoid(), Dropout(0.5), Linear(8, 3)], dtype="float64", seed=4)
    X, y = small_data(n=20)
    out = net.forward(X, training=True)
    dense = net._last_ws.fwd[0][1]
    dz = net.loss.backward(out, y)
    grads = net.backward(dz)
    h = dense.y * dense.mask
    np.testing.assert_allclose(grads[2], h.T @ dz, rtol=1e-10)
    dh = (dz @ net.layers[3].W.T) * dense.mask * dense.y * (1 - dense.y)
    np.testing.assert_allclose(grads[0], X.T @ dh, rtol=1e-10, atol=1e-15)


def test_training_step_allocates_no_arrays():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 128)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    net = Network([Linear(128, 256), ReLU(), Dropout(0.1), Linear(256, 10)], seed=0)
    opt = SGD(lr=0.01, momentum=0.9)
    net.fit(X, y, epochs=1, batch_size=64, optimizer=opt, progress=False,
            engine="layers")  # warm up the buffers
    Y = net._check_targets(y, len(X), "y", "X")
    order = np.arange(512)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        _training.LayerEngine(net, opt, X, Y, None, 64).run_epoch(order, net._rng, None, None)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # One activation of this batch is 64*256*4 = 64 KiB; a step must stay far below that. The
    # small Python objects of the calls (tuples, frames) alone reach 16-19 KiB.
    assert peak < 32 * 1024, f"a training epoch allocated {peak} bytes at its peak"


# -- inference --------------------------------------------------------------------------------

def test_predict_and_predict_proba():
    net = Network([Linear(6, 5), Tanh(), Linear(5, 3)], seed=0)
    X, _ = small_data(n=2500)
    proba = net.predict_proba(X, batch_size=1000)
    assert proba.shape == (2500, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(net.predict(X), np.argmax(net.forward(X), axis=1))
    bce = Network([Linear(6, 1)], loss=BinaryCrossEntropy(), seed=0)
    assert bce.predict(X).shape == (2500,) and set(np.unique(bce.predict(X))) <= {0, 1}
    assert bce.predict_proba(X).shape == (2500,)
    mse = Network([Linear(6, 2)], loss=MSE(), seed=0)
    # predict runs fastnn's own one-call kernel, forward BLAS: equal to rounding, not in bits.
    np.testing.assert_allclose(mse.predict(X), mse.forward(X), rtol=1e-5, atol=1e-6)


def test_evaluate_matches_loss_on_all_rows():
    net = Network([Linear(6, 5), Sigmoid(), Linear(5, 3)], dtype="float64", seed=0)
    X, y = small_data(n=300)
    loss, acc = net.evaluate(X, y, batch_size=64)
    out = net.forward(X)
    assert loss == pytest.approx(net.loss.forward(out, y), rel=1e-12)
    assert acc == pytest.approx(np.mean(out.argmax(1) == y))


def test_uint8_input_with_scaling_matches_float_input():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (50, 12), dtype=np.uint8)
    scale, shift = 1 / 255, -0.5
    net = Network([Linear(12, 6), Sigmoid(), Linear(6, 3)], input_scale=scale, input_shift=shift, seed=0)
    plain = Network([Linear(12, 6), Sigmoid(), Linear(6, 3)], seed=0)
    scaled = pixels.astype(np.float32) * np.float32(scale) + np.float32(shift)
    np.testing.assert_allclose(net.forward(pixels), plain.forward(scaled), rtol=1e-6, atol=1e-6)


# -- input validation -------------------------------------------------------------------------

@pytest.fixture
def net():
    return Network([Linear(6, 5), Sigmoid(), Linear(5, 3)], seed=0)


@pytest.mark.parametrize("X, y, kwargs, exc, match", [
    (np.zeros(6), np.zeros(1, int), {}, ValueError, r"X: expected a 2-D array \(n_samples, 6\)"),
    (np.zeros((4, 5)), np.zeros(4, int), {}, ValueError, "X: expected 6 features.*got 5"),
    (np.zeros((0, 6)), np.zeros(0, int), {}, ValueError, "X: expected at least one row"),
    (np.zeros((4, 6), complex), np.zeros(4, int), {}, TypeError, "X: .*complex"),
    (np.zeros((4, 6)), np.zeros(3, int), {}, ValueError, r"y: expected 4 targets.*got 3"),
    (np.zeros((4, 6)), np.array([0, 1, 3, 0]), {}, ValueError, r"y: labels must be in \[0, 3\); y\[2\] = 3"),
    (np.zeros((4, 6)), np.array([0, 1, -1, 5]), {}, ValueError, r"y\[2\] = -1 \(2 out of range\)"),
    (np.zeros((4, 6)), np.zeros(4), {}, TypeError, "y: expected integer class labels, got dtype float64"),
    (np.zeros((4, 6)), np.zeros(4, int), {"batch_size": 0}, ValueError, "batch_size: expected a positive integer, got 0"),
    (np.zeros((4, 6)), np.zeros(4, int), {"batch_size": 2.0}, TypeError, "batch_size"),
    (np.zeros((4, 6)), np.zeros(4, int), {"epochs": 0}, ValueError, "epochs"),
    (np.zeros((4, 6)), np.zeros(4, int), {"validation_split": 1.0}, ValueError, r"validation_split: .*\[0.0, 1.0\)"),
    (np.zeros((4, 6)), np.zeros(4, int), {"validation_split": -0.1}, ValueError, "validation_split"),
    (np.zeros((4, 6)), np.zeros(4, int), {"optimizer": 3}, TypeError, "optimizer"),
    (np.zeros((4, 6)), np.zeros(4, int), {"early_stopping": "yes"}, TypeError, "early_stopping"),
    (np.zeros((4, 6)), np.zeros(4, int), {"callbacks": [1]}, TypeError, r"callbacks\[0\]"),
    (np.zeros((4, 6)), np.zeros(4, int), {"validation_data": np.zeros((4, 6))}, TypeError, "validation_data"),
    (np.zeros((4, 6)), np.zeros(4, int), {"validation_data": (np.zeros((4, 5)), np.zeros(4, int))},
     ValueError, r"validation_data\[0\]: expected 6 features"),
    (np.zeros((4, 6)), np.zeros(4, int), {"validation_data": (np.zeros((4, 6)), np.zeros(4, int)),
                                          "validation_split": 0.5}, ValueError, "not both"),
])
def test_fit_argument_errors(net, X, y, kwargs, exc, match):
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(exc, match=match):
        net.fit(X, y, progress=False, **kwargs)
    for p, q in zip(net.parameters(), before):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_refused_with_count_and_position(net, bad):
    X = np.ones((10, 6), np.float32)
    X[3, 4] = bad
    X[7, 0] = bad
    with pytest.raises(ValueError, match=r"X: 2 NaN/Inf value\(s\); the first at row 3, column 4"):
        net.fit(X, np.zeros(10, int), progress=False)
    with pytest.raises(ValueError, match=r"validation_data\[0\]: 2 NaN/Inf"):
        net.fit(np.ones((10, 6)), np.zeros(10, int), validation_data=(X, np.zeros(10, int)), progress=False)
    with pytest.raises(ValueError, match="row 3, column 4"):
        net.predict(X)


def test_batch_larger_than_data_is_clamped(net, monkeypatch):
    X, y = small_data(n=10)
    calls = []
    real = _training.make_engine
    monkeypatch.setattr(_training, "make_engine", lambda *a: (calls.append(a[5]), real(*a))[1])
    history = net.fit(X, y, epochs=2, batch_size=1000, progress=False)
    assert calls == [10] and history.epochs == 2


def test_integer_and_bool_inputs_are_converted(net):
    X = np.random.default_rng(0).integers(-3, 3, (20, 6))
    np.testing.assert_allclose(net.forward(X), net.forward(X.astype(np.float32)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 100_003])
def test_one_pass_scan_finds_every_bad_value_and_the_range(dtype, n, threads):
    # The compiled scan behind the check above (vector lanes, split over threads): one bad value
    # anywhere, including the tails that the lanes do not cover, must be found.
    from fastnn._native import core
    rng = np.random.default_rng(n)
    X = (rng.standard_normal(n) * 1e3).astype(dtype)
    assert core.finite_range(X) == (False, float(X.min()), float(X.max()))
    positions = range(n) if n < 100 else [0, 1, n // 2, n - 9, n - 1]
    for bad in (np.nan, np.inf, -np.inf):
        for i in positions:
            Y = X.copy()
            Y[i] = bad
            assert core.finite_range(Y)[0] is True, (bad, i)
    assert core.finite_range(np.empty(0, dtype)) == (False, np.inf, -np.inf)
