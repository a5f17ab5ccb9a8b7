"""The training loop's input layer computed from the nonzero inputs alone (src_c/mlp_impl.h,
dg_sparse_rows in src_c/direct_gemm_impl.h): where fastnn's own kernels make the dense products
too, the weights are the same bits with it on and off, on every SIMD path, for both dtypes,
and with any share of zeros in the inputs."""
import numpy as np
import pytest

import fastnn
from fastnn import _cpulimits, _machine
from fastnn._native import core


@pytest.fixture
def own_dense_kernels():
    """Every dense product in fastnn's own kernels (so that on and off compare bit for bit),
    then the strategy and the switch restored."""
    classes, sparse = core.direct_gemm_classes(), core.sparse_input_enabled()
    core.set_direct_gemm(set(core.DIRECT_GEMM_CLASSES))
    try:
        yield
    finally:
        core.set_direct_gemm(classes)
        core.set_sparse_input(sparse)


def _inputs(rng, n, features, nonzero, dtype):
    """(n, features) inputs of which about ``nonzero`` are not 0: uint8 values 1..255, or reals
    of both signs (and some -0.0 among the zeros)."""
    keep = rng.random((n, features)) < nonzero
    if dtype == np.uint8:
        return np.where(keep, rng.integers(1, 256, (n, features)), 0).astype(np.uint8)
    x = np.where(keep, rng.standard_normal((n, features)), 0.0).astype(dtype)
    x[(~keep) & (rng.random((n, features)) < 0.5)] = -0.0
    return x


def _fit(sparse, x, y, hidden, dtype, threads=1, batch=32, dropout=0.0, optimizer=None):
    core.set_sparse_input(sparse)
    layers = ([fastnn.Dropout(dropout)] if dropout else []) + [
        fastnn.Linear(x.shape[1], hidden), fastnn.Sigmoid(), fastnn.Linear(hidden, 10)]
    net = fastnn.Network(layers, dtype=dtype, input_scale=1 / 255 if x.dtype == np.uint8 else 1.0, seed=3)
    with fastnn.num_threads(threads):
        net.fit(x, y, epochs=2, batch_size=batch, progress=False, seed=5, engine="compiled",
                optimizer=optimizer or fastnn.SGD(lr=0.05, momentum=0.9))
    return [p.copy() for p in net.parameters()]


def _same_bits(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert p.dtype == q.dtype and p.tobytes() == q.tobytes()


# The share of nonzero inputs up to which the lists are made for a layer of 100 outputs (mlp.c):
# 5 100 / (8 (128 + 100)), about 0.27.
@pytest.mark.parametrize("nonzero", [0.0, 0.05, 0.2, 0.35, 1.0])
@pytest.mark.parametrize("x_dtype", [np.uint8, np.float32, np.float64])
def test_sparse_and_dense_give_the_same_bits(own_dense_kernels, simd_path, dtype, rng, nonzero, x_dtype):
    x = _inputs(rng, 203, 57, nonzero, x_dtype)  # a short last batch; parts of 15 and 12 columns
    y = rng.integers(0, 10, len(x))
    _same_bits(_fit(True, x, y, 100, dtype), _fit(False, x, y, 100, dtype))


@pytest.mark.parametrize("hidden", [63, 64, 65, 71, 72, 100, 128, 200])
def test_every_layer_width(own_dense_kernels, dtype, rng, hidden):
    x = _inputs(rng, 150, 40, 0.1, np.uint8)  # few enough nonzeros for 64 outputs and more
    y = rng.integers(0, 10, len(x))
    _same_bits(_fit(True, x, y, hidden, dtype, batch=16), _fit(False, x, y, hidden, dtype, batch=16))


def test_input_dropout_and_adam(own_dense_kernels, rng):
    x = _inputs(rng, 160, 48, 0.2, np.float32)  # Dropout makes more of them zeros
    y = rng.integers(0, 10, len(x))
    _same_bits(_fit(True, x, y, 128, "float32", dropout=0.3), _fit(False, x, y, 128, "float32", dropout=0.3))
    _same_bits(_fit(True, x, y, 128, "float32", optimizer=fastnn.Adam(lr=1e-3)),
               _fit(False, x, y, 128, "float32", optimizer=fastnn.Adam(lr=1e-3)))


def test_threads_do_not_change_the_weights(own_dense_kernels, rng, monkeypatch):
    monkeypatch.setattr(_cpulimits, "available_cores", lambda: (4, "test"))  # 4 threads on any machine
    x = _inputs(rng, 256, 784, 0.19, np.uint8)  # MNIST's share of nonzero pixels
    y = rng.integers(0, 10, len(x))
    one = _fit(True, x, y, 128, "float32", threads=1)
    for threads in (2, 4):
        _same_bits(_fit(True, x, y, 128, "float32", threads=threads), one)
    _same_bits(_fit(False, x, y, 128, "float32", threads=2), one)


def test_the_plain_strategy_switches_it_off():
    strategy = _machine.gemm_strategy()[0]
    sparse = core.sparse_input_enabled()
    try:
        _machine.set_gemm_strategy(core, "plain")
        assert not core.sparse_input_enabled()
        for other in ("direct", "blocked", "tiled"):
            _machine.set_gemm_strategy(core, other)
            assert core.sparse_input_enabled()
    finally:
        _machine.set_gemm_strategy(core, strategy)
        core.set_sparse_input(sparse)
