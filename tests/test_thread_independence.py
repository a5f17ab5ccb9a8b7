"""The same seed gives bit-identical weights whatever the thread count (the native loop cuts its
work into a fixed number of parts; fastnn._fastpath.N_PARTS)."""
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import _cpulimits

from synthetic import blobs

THREAD_COUNTS = (1, 2, 3, 4, 8)


@pytest.fixture
def many_cores(monkeypatch):
    """Let the tests run more threads than this machine has (the cap would otherwise stop them:
    results must not depend on the machine either)."""
    monkeypatch.setattr(_cpulimits, "available_cores", lambda: (max(THREAD_COUNTS), "test"))


def _train(threads, layers, optimizer, **fit):
    x, y = blobs(600, 40, 5, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with fastnn.num_threads(threads):
            assert fastnn.get_num_threads() == threads
            net = fastnn.Network(layers(), seed=7)
            net.fit(x, y, epochs=2, batch_size=32, optimizer=optimizer(), seed=11,
                    progress=False, **fit)
    return [p.copy() for p in net.parameters()]


def _mlp():
    return [fastnn.Linear(40, 64), fastnn.ReLU(), fastnn.Linear(64, 32), fastnn.Tanh(),
            fastnn.Linear(32, 5)]


@pytest.mark.parametrize("optimizer", [lambda: fastnn.SGD(lr=0.05, momentum=0.9),
                                       lambda: fastnn.Adam(lr=1e-3)], ids=["sgd", "adam"])
def test_native_loop_weights_do_not_depend_on_threads(many_cores, optimizer, four_parts):
    reference = _train(1, _mlp, optimizer)
    for threads in THREAD_COUNTS[1:]:
        weights = _train(threads, _mlp, optimizer)
        for a, b in zip(reference, weights):
            assert np.array_equal(a, b), f"{threads} threads give other weights than 1"


def test_sklearn_estimator_does_not_depend_on_threads(many_cores, four_parts):
    pytest.importorskip("sklearn")
    from fastnn.sklearn import MLPClassifier
    x, y = blobs(300, 20, 3, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 3 epochs on purpose
        fits = [MLPClassifier((16,), solver="sgd", max_iter=3, random_state=0, n_threads=n,
                              learning_rate_init=0.05).fit(x, y) for n in (1, 2, 4)]
    for other in fits[1:]:
        for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, other.coefs_ + other.intercepts_):
            assert np.array_equal(a, b)
