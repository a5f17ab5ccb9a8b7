"""Threads sharing one network: every inference entry point gives each thread the bits a lone
call gives, a result stays intact after later calls, and inference beside a fit neither fails
nor changes what the fit computes. A predict that fastnn's threads share first ends OpenBLAS's
spinning workers."""
import functools
import threading

import numpy as np
import pytest

from fastnn import SGD, Dropout, Linear, Network, ReLU
from in_threads import run_in_threads

N_THREADS = 4
CALLS = 200
ROWS = 64  # every thread the same row count: they would share one batch size's buffers

ENTRY_POINTS = {
    "forward": lambda net, X, y, w: net.forward(X),
    "__call__": lambda net, X, y, w: net(X),
    "evaluate": lambda net, X, y, w: net.evaluate(X, y),
    "evaluate_weighted": lambda net, X, y, w: net.evaluate(X, y, sample_weight=w),
    "predict_proba": lambda net, X, y, w: net.predict_proba(X),
    "predict": lambda net, X, y, w: net.predict(X),
}


def _net(layer_by_layer=False):
    net = Network([Linear(50, 256), ReLU(), Dropout(0.2), Linear(256, 10)], seed=0)
    if layer_by_layer:  # weights the compiled predict cannot read: predict runs the layers
        for layer in net.layers[::3]:
            layer.W = np.asfortranarray(layer.W)
    return net


def _data(n_sets, rows=ROWS, seed=0):
    """n_sets distinct (X float32 (rows, 50), labels (rows,), weights (rows,))."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((rows, 50)).astype(np.float32), rng.integers(0, 10, rows),
             rng.random(rows)) for _ in range(n_sets)]


def _bits(result):
    a = np.asarray(result)
    return a.dtype, a.shape, a.tobytes()


def _mismatches(net, calls, data):
    """How many of CALLS calls per thread differ from the lone call: thread i runs calls[i] on
    data[i]."""
    expected = [_bits(call(net, *d)) for call, d in zip(calls, data)]
    wrong = [0] * len(calls)

    def work(i):
        for _ in range(CALLS):
            if _bits(calls[i](net, *data[i])) != expected[i]:
                wrong[i] += 1

    run_in_threads(*(functools.partial(work, i) for i in range(len(calls))))
    return wrong


@pytest.mark.parametrize("layer_by_layer", [False, True], ids=["compiled", "layer_by_layer"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_threads_get_the_bits_of_a_lone_call(entry, layer_by_layer):
    net = _net(layer_by_layer)
    calls = [ENTRY_POINTS[entry]] * N_THREADS
    assert _mismatches(net, calls, _data(N_THREADS)) == [0] * N_THREADS


def test_threads_mixing_entry_points_get_the_bits_of_a_lone_call():
    calls = list(ENTRY_POINTS.values())
    assert _mismatches(_net(), calls, _data(len(calls))) == [0] * len(calls)


@pytest.mark.parametrize("entry", ["forward", "__call__", "predict_proba", "predict"])
def test_a_result_outlives_the_next_call(entry):
    call = ENTRY_POINTS[entry]
    for net in (_net(), _net(layer_by_layer=True)):
        (X1, y1, w1), (X2, y2, w2) = _data(2)
        first = call(net, X1, y1, w1)
        kept = first.copy()
        call(net, X2, y2, w2)
        assert _bits(first) == _bits(kept)


def test_backward_follows_the_forward_of_its_own_thread():
    net = _net()
    (X, _, _), (other, _, _) = _data(2)
    grad = np.random.default_rng(1).standard_normal((ROWS, 10)).astype(np.float32)
    net.forward(X)
    expected = [_bits(g) for g in net.backward(grad)]
    done, wrong = threading.Event(), [0]

    def work(i):
        if i == 0:  # inference on the same batch size in the meantime
            while not done.is_set():
                net(other)
            return
        try:
            for _ in range(CALLS):
                net.forward(X)
                wrong[0] += [_bits(g) for g in net.backward(grad)] != expected
        finally:
            done.set()

    run_in_threads(*(functools.partial(work, i) for i in range(2)))
    assert wrong[0] == 0


@pytest.mark.parametrize("engine", ["layers", "compiled"])
def test_inference_beside_a_fit_leaves_the_fit_unchanged(engine):
    (X, y, _), = _data(1, rows=1024)

    def train(net):
        net.fit(X, y, epochs=3, batch_size=ROWS, optimizer=SGD(lr=0.01), seed=1, engine=engine,
                progress=False)

    alone = _net()
    train(alone)
    net = _net()
    started, done, calls = threading.Event(), threading.Event(), [0]

    def infer():
        while not done.is_set():
            for call in ENTRY_POINTS.values():
                result = call(net, X[:ROWS], y[:ROWS], None)
                assert np.isfinite(np.asarray(result, np.float64)).all()
            calls[0] += 1
            started.set()

    def work(i):
        if i == 0:
            try:
                infer()
            finally:
                started.set()
            return
        try:
            started.wait()
            train(net)
        finally:
            started.set()
            done.set()

    run_in_threads(*(functools.partial(work, i) for i in range(2)))
    assert calls[0] > 1
    for a, b in zip(alone.parameters(), net.parameters()):
        assert _bits(a) == _bits(b)


def test_a_predict_shared_among_threads_ends_spinning_blas_workers_first(monkeypatch):
    # OpenBLAS's workers spin for a while after a threaded product and would take the cores of
    # fastnn's threads; ending them is fastnn._blas_pools' (its own tests say when it is safe).
    import fastnn
    from fastnn import _blas_pools, _cpulimits
    from fastnn._inference import PARALLEL_ROWS

    monkeypatch.setattr(_cpulimits, "available_cores", lambda: (2, "test"))
    calls = []
    monkeypatch.setattr(_blas_pools, "stop_idle_workers", lambda controller: calls.append(1) or 0)
    net = _net()
    X = _data(1, rows=PARALLEL_ROWS)[0][0]
    with fastnn.num_threads(2):
        net.predict(X)
        net.predict_proba(X)
        assert len(calls) == 2
        net.predict(X[:-1])  # fewer rows run on the calling thread
        assert len(calls) == 2
    with fastnn.num_threads(1):
        net.predict(X)
    assert len(calls) == 2
