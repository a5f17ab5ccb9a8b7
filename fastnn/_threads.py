"""One thread count for fastnn: OpenMP in the elementwise kernels and the BLAS libraries."""
import contextlib
import os
import threading

from ._native import core as _core

_state = {"pinned": False}


def _default_threads():
    env = os.environ.get("FASTNN_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    return os.cpu_count() or 1


def set_num_threads(n):
    """Use ``n`` threads (a positive int) in fastnn's kernels and in every loaded BLAS library.

    Small arrays still run on one thread: starting threads would cost more than it saves.
    The BLAS limit goes through threadpoolctl and covers numpy's and scipy's OpenBLAS alike.
    Until this is called, fastnn uses every core but lets the native training loop run on one
    thread while the machine is busy (see :func:`threads_pinned`); after it, exactly ``n``
    threads run. Either way the work is cut by the configured count, so training with the same
    seed and thread count repeats bit for bit.
    """
    _check_count(n)
    _core.set_kernel_threads(n)
    _state["pinned"] = True
    _limit_blas(n)


def _check_count(n):
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected a positive int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a positive int, got {n}")


def _limit_blas(n):
    """Limit every loaded BLAS to ``n`` threads now; returns the limiter (it can restore)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


@contextlib.contextmanager
def num_threads(n):
    """Run the block with ``n`` threads as :func:`set_num_threads` sets them, then restore the
    previous kernel thread count, BLAS limits and pinned state."""
    _check_count(n)
    before, pinned = _core.get_kernel_threads(), _state["pinned"]
    limiter = _limit_blas(n)  # first: it records the limits to restore
    _core.set_kernel_threads(n)
    _state["pinned"] = True
    try:
        yield
    finally:
        limiter.restore_original_limits()
        _core.set_kernel_threads(before)
        _state["pinned"] = pinned


@contextlib.contextmanager
def kernels_on_calling_thread():
    """Run the calling thread's elementwise kernels on that thread alone inside the block, leaving
    BLAS its threads.

    The layer-by-layer training path alternates small elementwise kernels with BLAS products;
    OpenMP's workers and OpenBLAS's each spin for a while after their work, and on a two-core
    machine the two pools took turns spinning: at two threads a Dropout network's MNIST epoch
    took 11x its one-thread time (30-130x with another process on a core). With the kernels on
    the calling thread it runs as fast as at one thread, and its bits no longer depend on the
    thread count (the kernels' partial sums are then never split).
    """
    previous = _core.set_calling_thread_kernel_threads(1)
    try:
        yield
    finally:
        _core.set_calling_thread_kernel_threads(previous)


def threads_pinned():
    """True once :func:`set_num_threads` fixed the count (no adaptive fallback)."""
    return _state["pinned"]


def get_num_threads():
    """The thread count set by :func:`set_num_threads` (by default the number of CPUs)."""
    return _core.get_kernel_threads()


_core.set_kernel_threads(_default_threads())


class blas_threads_limited:
    """Context manager: every loaded BLAS library runs with one thread inside.

    The native training loop uses it so that BLAS does not start threads of its own beside
    fastnn's (two pools on two cores make each other many times slower). BLAS thread counts are
    process-wide, so concurrent users share one limit: the first to enter applies it, the last to
    leave restores what was there before.
    """

    _lock = threading.Lock()
    _users = 0
    _limiter = None
    _controller = None

    def __init__(self, n=1):
        if n != 1:
            raise ValueError("n: only a limit of 1 thread is supported")

    def __enter__(self):
        cls = blas_threads_limited
        with cls._lock:
            if cls._users == 0:
                if cls._controller is None:
                    from threadpoolctl import ThreadpoolController

                    cls._controller = ThreadpoolController()
                cls._limiter = cls._controller.limit(limits=1, user_api="blas")
            cls._users += 1
        return self

    def __exit__(self, *exc):
        cls = blas_threads_limited
        with cls._lock:
            cls._users -= 1
            if cls._users == 0:
                cls._limiter.restore_original_limits()
                cls._limiter = None
        return False
