"""fastnn.bench.reference_mlp.ReferenceMLP (the NumPy baseline of the benchmarks) trains exactly
like fastnn.Network: from the same start on the same batches, the same weights and losses."""
import numpy as np
import pytest

import fastnn
from fastnn._training import unsupported_reason
from fastnn.bench.reference_mlp import ReferenceMLP

N_ROWS, N_FEATURES, N_CLASSES = 96, 20, 5
SCALE = 1.0 / 255.0
TOLERANCES = {np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-6},
              np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12}}


@pytest.fixture
def data(rng):
    X = rng.integers(0, 256, (N_ROWS, N_FEATURES), dtype=np.uint8)
    y = rng.integers(0, N_CLASSES, N_ROWS)
    return X, y


def _network(hidden, activation, dtype, seed=3):
    layers, widths = [], [N_FEATURES, *hidden, N_CLASSES]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(fastnn.Linear(n_in, n_out))
        if i < len(hidden):
            layers.append({"sigmoid": fastnn.Sigmoid, "relu": fastnn.ReLU, "tanh": fastnn.Tanh,
                           "scaled_tanh": fastnn.ScaledTanh}[activation]())
    return fastnn.Network(layers, dtype=dtype, input_scale=SCALE, seed=seed)


def _reference_like(net, activation, n_hidden, **sgd):
    params = [p.copy() for p in net.parameters()]
    return ReferenceMLP(params[0::2], params[1::2], [activation] * n_hidden + [None],
                        input_scale=SCALE, **sgd)


def _train_both(X, y, hidden, activation, dtype, batch_size=16, epochs=2, seed=11, **sgd):
    net = _network(hidden, activation, dtype)
    optimizer = fastnn.SGD(**sgd)
    ref = _reference_like(net, activation, len(hidden), **optimizer.get_config())
    history = net.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                      seed=seed, progress=False)
    order_rng = np.random.default_rng(seed)  # fit draws each epoch's order the same way
    ref_losses = []
    for _ in range(epochs):
        loss_sum, correct, seen = ref.epoch(X, y, order_rng.permutation(len(X)), batch_size)
        ref_losses.append(loss_sum / seen)
    return net, ref, history.train_loss, ref_losses


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh", "scaled_tanh"])
def test_same_weights_and_losses_as_network_fit(data, dtype, activation, threads):
    X, y = data
    net, ref, losses, ref_losses = _train_both(X, y, (16,), activation, dtype, lr=0.1, momentum=0.9)
    tol = TOLERANCES[np.dtype(dtype)]
    np.testing.assert_allclose(ref_losses, losses, **tol)
    for got, want in zip(ref.parameters(), net.parameters()):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("sgd", [
    {"lr": 0.05},
    {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"lr": 0.1, "momentum": 0.5, "weight_decay": 1e-3},
], ids=["plain", "nesterov", "weight_decay"])
def test_sgd_variants_follow_fastnn_sgd(data, sgd):
    X, y = data
    net, ref, losses, ref_losses = _train_both(X, y, (12, 8), "sigmoid", np.float32, **sgd)
    np.testing.assert_allclose(ref_losses, losses, rtol=1e-4)
    for got, want in zip(ref.parameters(), net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_short_last_batch_and_epoch_counts(data):
    X, y = data
    net = _network((16,), "sigmoid", np.float32)
    ref = _reference_like(net, "sigmoid", 1, lr=0.1, momentum=0.9)
    order = np.arange(len(X))
    loss_sum, correct, seen = ref.epoch(X, y, order, 40)  # batches of 40, 40, 16
    history = net.fit(X, y, epochs=1, batch_size=40, shuffle=False, progress=False,
                      optimizer=fastnn.SGD(lr=0.1, momentum=0.9))
    assert seen == len(X)
    assert loss_sum / seen == pytest.approx(history.train_loss[0], rel=1e-5)
    assert correct / seen == pytest.approx(history.train_accuracy[0])
    for got, want in zip(ref.parameters(), net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_step_is_one_batch_of_epoch(data):
    X, y = data
    net = _network((16,), "tanh", np.float32)
    by_step = _reference_like(net, "tanh", 1, lr=0.1, momentum=0.9)
    by_epoch = _reference_like(net, "tanh", 1, lr=0.1, momentum=0.9)
    rows = np.arange(16)
    loss, correct = by_step.step(X[rows], y[rows])
    loss_sum, correct_sum, _ = by_epoch.epoch(X, y, rows, 16)
    assert loss == pytest.approx(loss_sum / 16, rel=1e-6)
    assert correct == correct_sum
    for a, b in zip(by_step.parameters(), by_epoch.parameters()):
        np.testing.assert_array_equal(a, b)


def test_float_inputs_and_shift_match_the_network(rng):
    X = rng.standard_normal((48, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, 48)
    net = fastnn.Network([fastnn.Linear(N_FEATURES, 8), fastnn.Sigmoid(), fastnn.Linear(8, N_CLASSES)],
                         input_scale=0.5, input_shift=0.25, seed=1)
    params = [p.copy() for p in net.parameters()]
    ref = ReferenceMLP(params[0::2], params[1::2], ["sigmoid", None], lr=0.1, momentum=0.9,
                       input_scale=0.5, input_shift=0.25)
    net.fit(X, y, epochs=1, batch_size=16, shuffle=False, progress=False,
            optimizer=fastnn.SGD(lr=0.1, momentum=0.9))
    ref.epoch(X, y, np.arange(48), 16)
    for got, want in zip(ref.parameters(), net.parameters()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_copies_the_given_parameters(data):
    net = _network((16,), "sigmoid", np.float32)
    before = [p.copy() for p in net.parameters()]
    ref = _reference_like(net, "sigmoid", 1)
    ref.epoch(*data, np.arange(N_ROWS), 16)
    for p, b in zip(net.parameters(), before):
        np.testing.assert_array_equal(p, b)
    assert not any(np.shares_memory(p, q) for p in ref.parameters() for q in net.parameters())


def test_rejects_inconsistent_layers():
    w0, b0 = np.zeros((4, 3), np.float32), np.zeros(3, np.float32)
    w1, b1 = np.zeros((3, 2), np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="last layer"):
        ReferenceMLP([w0, w1], [b0, b1], ["sigmoid", "sigmoid"])
    with pytest.raises(ValueError, match="activation"):
        ReferenceMLP([w0, w1], [b0, b1], ["swish", None])
    with pytest.raises(ValueError, match="weights"):
        ReferenceMLP([w0, w1.T], [b0, b1], ["sigmoid", None])
    with pytest.raises(ValueError, match="one of each"):
        ReferenceMLP([w0, w1], [b0], ["sigmoid", None])
    with pytest.raises(TypeError, match="float32 or float64"):
        ReferenceMLP([w0, w1], [b0, b1], ["sigmoid", None], dtype=np.int32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_products_split_into_small_blas_calls_train_the_same(rng, dtype, threads, gemm_strategy):
    # 784 inputs and 128 hidden units at batch 32: with the "tiled" strategy the native loop cuts
    # x @ W0 and x.T @ dz into tiles of at most 100^3 multiply-adds (src_c/small_gemm.h); the
    # tiles' edges must neither drop nor repeat a row or column. "plain" makes one call each.
    n_features, hidden = 784, 128
    X = rng.integers(0, 256, (96, n_features), dtype=np.uint8)
    y = rng.integers(0, N_CLASSES, 96)
    net = fastnn.Network([fastnn.Linear(n_features, hidden), fastnn.Sigmoid(),
                          fastnn.Linear(hidden, N_CLASSES)], dtype=dtype, input_scale=SCALE, seed=3)
    assert unsupported_reason(net, fastnn.SGD(lr=0.1), None) is None
    optimizer = fastnn.SGD(lr=0.1, momentum=0.9)
    ref = _reference_like(net, "sigmoid", 1, **optimizer.get_config())
    history = net.fit(X, y, epochs=2, batch_size=32, optimizer=optimizer, seed=11, progress=False)
    order_rng = np.random.default_rng(11)
    ref_losses = [ref.epoch(X, y, order_rng.permutation(len(X)), 32)[0] / len(X) for _ in range(2)]
    tol = TOLERANCES[np.dtype(dtype)]
    np.testing.assert_allclose(ref_losses, history.train_loss, **tol)
    for got, want in zip(ref.parameters(), net.parameters()):
        np.testing.assert_allclose(want, got, **tol)
