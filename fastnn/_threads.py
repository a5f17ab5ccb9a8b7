"""One thread count for fastnn: OpenMP in the elementwise kernels and the BLAS libraries."""
import contextlib
import threading
import warnings

from . import _blas_pools, _cpulimits
from ._native import core as _core

SET_SOURCE = "set_num_threads"
_state = {"pinned": False, "source": None}


def set_num_threads(n):
    """Use ``n`` threads (a positive int) in fastnn's kernels and in every loaded BLAS library.

    A count above the cores this process may use (its CPU affinity, its cgroup CPU quota) is
    capped at them with a RuntimeWarning. TypeError for a non-int, ValueError for n < 1.

    Small arrays still run on one thread: starting threads would cost more than it saves.
    The BLAS limit goes through threadpoolctl and covers numpy's and scipy's OpenBLAS alike.
    Until this is called, fastnn uses the default count (see :func:`thread_source`) but lets
    the native training loop run on one thread while the machine is busy (see
    :func:`threads_pinned`); after it, exactly ``n`` threads run. The native loop cuts its work
    into a fixed number of parts whatever the thread count, so training with the same seed
    repeats bit for bit on any number of threads.
    """
    n = _capped(n, "set_num_threads", stacklevel=3)
    _core.set_kernel_threads(n)
    _state.update(pinned=True, source=SET_SOURCE)
    _limit_blas(n)
    blas_threads_limited._rebase()  # inside a fit: n is what its end restores


def _check_count(n):
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected a positive int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a positive int, got {n}")


def _capped(n, function, stacklevel):
    """n checked, and capped at the cores the process may use (with a RuntimeWarning)."""
    _check_count(n)
    n, message = _cpulimits.cap(n, f"{function}({n})")
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)
    return n


def _limit_blas(n):
    """Limit every loaded BLAS to ``n`` threads now; returns the limiter (it can restore)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


@contextlib.contextmanager
def num_threads(n):
    """Run the block with ``n`` threads as :func:`set_num_threads` sets them, then restore the
    previous kernel thread count, BLAS limits and pinned state. Capped as set_num_threads is."""
    n = _capped(n, "num_threads", stacklevel=4)
    before, state = _core.get_kernel_threads(), dict(_state)
    limiter = _limit_blas(n)  # first: it records the limits to restore
    _core.set_kernel_threads(n)
    _state.update(pinned=True, source=SET_SOURCE)
    try:
        yield
    finally:
        limiter.restore_original_limits()
        _core.set_kernel_threads(before)
        _state.update(state)


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
    """The thread count in use (int): set by :func:`set_num_threads`, else the default
    (see :func:`thread_source`)."""
    return _core.get_kernel_threads()


def thread_source():
    """What decided :func:`get_num_threads` (str): "set_num_threads", "FASTNN_NUM_THREADS",
    "OMP_NUM_THREADS", "CPU affinity", "cgroup CPU quota" or "os.cpu_count()"."""
    return _state["source"]


def _apply_default():
    n, source, messages = _cpulimits.default_threads()
    for message in messages:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    _core.set_kernel_threads(n)
    _state["source"] = source


_apply_default()


class blas_threads_limited:
    """Context manager: every loaded BLAS library runs with one thread inside.

    The native training loop uses it so that BLAS does not start threads of its own beside
    fastnn's (two pools on two cores make each other many times slower). BLAS thread counts are
    process-wide, so concurrent users share one limit: the first to enter applies it, the last to
    leave restores what was there before. A :func:`set_num_threads` inside the block becomes
    what is restored (BLAS stays at one thread until the block ends).

    stop_workers: the first to enter also ends OpenBLAS's worker threads if some are awake
    (spinning after a threaded call; see fastnn._blas_pools), for a block that runs fastnn's own
    threads for a while. Restoring the limit when the last one leaves starts an ended pool
    again.
    """

    _lock = threading.Lock()
    _users = 0
    _limiter = None
    _controller = None
    _stop_workers = False

    def __init__(self, n=1, stop_workers=False):
        if n != 1:
            raise ValueError("n: only a limit of 1 thread is supported")
        self.stop_workers = stop_workers

    @classmethod
    def _controller_now(cls):
        if cls._controller is None:
            from threadpoolctl import ThreadpoolController

            cls._controller = ThreadpoolController()
        return cls._controller

    def __enter__(self):
        cls = blas_threads_limited
        with cls._lock:
            if cls._users == 0:
                cls._apply(self.stop_workers)
            cls._users += 1
        return self

    @classmethod
    def _apply(cls, stop_workers):
        """Limit BLAS to one thread (recording what to restore) and end idle workers if asked;
        on any error (an interrupt included) nothing stays applied."""
        controller = cls._controller_now()
        limiter = controller.limit(limits=1, user_api="blas")
        try:
            _core.set_blas_single(True)
            if stop_workers:
                _blas_pools.stop_idle_workers(controller)
        except BaseException:
            limiter.restore_original_limits()
            _core.set_blas_single(False)
            raise
        cls._limiter, cls._stop_workers = limiter, stop_workers

    def __exit__(self, *exc):
        cls = blas_threads_limited
        with cls._lock:
            cls._users -= 1
            if cls._users == 0:
                limiter, cls._limiter = cls._limiter, None
                _core.set_blas_single(False)
                limiter.restore_original_limits()
        return False

    @classmethod
    def _rebase(cls):
        """Inside a block: take the BLAS limits set now as those to restore, and limit BLAS to
        one thread again."""
        with cls._lock:
            if cls._users > 0:
                cls._apply(cls._stop_workers)
