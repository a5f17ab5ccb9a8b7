"""Threads: networks trained in two threads at once end as if trained one after the other, and
the compiled kernels release the GIL (two threads really run them at the same time)."""
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastnn
from in_threads import run_in_threads
from fastnn import Adam, Dropout, Linear, Network, ReLU, SGD, Tanh, ops

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def default_threads():
    """fastnn's default thread count (all cores), pinned so that the run is reproducible; the
    previous setting (and the BLAS limits) are restored afterwards."""
    previous = fastnn.get_num_threads()
    fastnn.set_num_threads(os.cpu_count() or 1)
    yield
    fastnn.set_num_threads(previous)


def data(seed=0, n=3000, f=100, k=5):
    """(X float32 (n, f), y int64 (n,))."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, f)).astype(np.float32), rng.integers(0, k, n)


def native_run(seed):
    """A plain MLP + SGD: the native whole-epoch loop. Returns its parameters."""
    X, y = data(seed)
    net = Network([Linear(100, 128), ReLU(), Linear(128, 5)], seed=seed)
    net.fit(X, y, epochs=3, batch_size=32, optimizer=SGD(lr=0.01, momentum=0.9), progress=False,
            seed=seed)
    return net.parameters()


def python_run(seed):
    """Dropout + Adam: the layer-by-layer path through the ops. Returns its parameters."""
    X, y = data(seed)
    net = Network([Linear(100, 128), Tanh(), Dropout(0.2), Linear(128, 5)], seed=seed)
    net.fit(X, y, epochs=3, batch_size=64, optimizer=Adam(lr=0.01), progress=False, seed=seed)
    return net.parameters()


@pytest.mark.parametrize("runs", [(native_run, python_run), (native_run, native_run)],
                         ids=["native+python", "native+native"])
def test_two_threads_train_as_if_one_after_the_other(default_threads, runs):
    jobs = [lambda run=run, seed=seed: run(seed) for seed, run in enumerate(runs)]
    one_after_the_other = [job() for job in jobs]
    at_once = run_in_threads(*jobs)
    for alone, together in zip(one_after_the_other, at_once):
        for p, q in zip(alone, together):
            np.testing.assert_array_equal(p, q)


def call_spans(fn, calls=3):
    """(start, end) perf_counter times of two threads each calling ``fn`` ``calls`` times,
    released by one barrier.

    The GIL switch interval is made huge meanwhile: a thread holding the GIL then keeps it until
    it releases it itself. If ``fn`` held the GIL, one thread would make all its calls before
    the other started and the spans could not intersect.
    """
    barrier = threading.Barrier(2)
    spans = [None, None]

    def work(i):
        barrier.wait()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        spans[i] = (start, time.perf_counter())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    return spans


def intersect(spans):
    (a0, a1), (b0, b1) = spans
    return max(a0, b0) < min(a1, b1)


def test_sigmoid_releases_the_gil():
    x = np.random.default_rng(0).standard_normal(8_000_000).astype(np.float32)
    spans = call_spans(lambda: ops.sigmoid(x))
    assert intersect(spans), spans


def test_linear_forward_releases_the_gil():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1024, 512)), rng.standard_normal((512, 256))
    spans = call_spans(lambda: ops.linear_forward(x, w, None, "relu"))
    assert intersect(spans), spans


def test_the_span_check_sees_a_function_that_holds_the_gil():
    """The control: pure Python holds the GIL, so the spans do not intersect."""
    def python_loop():
        total = 0
        for i in range(300_000):
            total += i
        return total

    assert not intersect(call_spans(python_loop))


# -- known races (fastnn/_threads.py, fastnn/_fastpath.py) ------------------------------------

def run_fresh(script):
    """Run ``script`` in a new interpreter with fastnn's default (adaptive) threads; its stdout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    env.pop("FASTNN_NUM_THREADS", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# Two threads enter and leave fastnn's BLAS limit in the order A, B, A, B, as two native
# training loops started at once may (threadpoolctl lets one thread at a time change OpenBLAS's
# limit: the first to try, until it ends). Prints the BLAS thread counts before and after.
BLAS_RACE = textwrap.dedent("""
    import threading
    from threadpoolctl import threadpool_info
    import fastnn
    from fastnn._threads import blas_threads_limited

    def blas_threads():
        return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    before = blas_threads()
    a, b = blas_threads_limited(1), blas_threads_limited(1)
    steps = [threading.Event() for _ in range(2)]

    def thread_a():
        a.__enter__()
        steps[0].set()
        steps[1].wait(10)
        a.__exit__(None, None, None)

    def thread_b():
        steps[0].wait(10)
        b.__enter__()
        steps[1].set()
        threads[0].join(10)  # A has left and ended (as a finished training thread does)
        b.__exit__(None, None, None)

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(before, blas_threads())
""")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a multi-threaded BLAS")
def test_interleaved_blas_limits_restore_the_original_count():
    before, after = run_fresh(BLAS_RACE).split("] [")
    assert before + "]" == "[" + after


ADAPTIVE_RACE = textwrap.dedent("""
    import threading
    import numpy as np
    import fastnn
    from fastnn import Linear, Network, ReLU, SGD, _fastpath

    core = _fastpath._core
    one_thread_chunk, b_finished = threading.Event(), threading.Event()

    class PausingEngine:
        def __init__(self, *args):
            self.engine = core.TrainingEngine(*args)
        def __getattr__(self, name):
            return getattr(self.engine, name)
        def run(self, *args, **kwargs):
            if threading.current_thread().name == "A" and kwargs["n_threads"] == 1:
                one_thread_chunk.set()
                b_finished.wait(60)
            return self.engine.run(*args, **kwargs)

    class PausingCore:
        '''Holds thread A inside a one-thread chunk of its adaptive training loop.'''
        TrainingEngine = PausingEngine
        def __getattr__(self, name):
            return getattr(core, name)

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((2000, 64)).astype(np.float32), rng.integers(0, 5, 2000)

    def train(seed):
        net = Network([Linear(64, 32), ReLU(), Linear(32, 5)], seed=seed)
        net.fit(X, y, epochs=2, batch_size=16, optimizer=SGD(lr=0.01, momentum=0.9),
                progress=False, seed=seed)
        return net.parameters()

    alone = train(1)
    _fastpath._core = PausingCore()
    a = threading.Thread(target=train, args=(0,), name="A")
    a.start()
    assert one_thread_chunk.wait(60)
    beside_a = train(1)
    b_finished.set()
    a.join()
    print(all(np.array_equal(p, q) for p, q in zip(alone, beside_a)))
""")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the adaptive loop needs 2 cores")
def test_adaptive_threads_do_not_leak_between_concurrent_fits(four_parts):
    assert run_fresh(ADAPTIVE_RACE) == "True"
