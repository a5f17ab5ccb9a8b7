"""One thread count for fastnn: OpenMP in the elementwise kernels and the BLAS libraries."""
import os

from ._native import core as _core

_state = {"blas_limiter": None, "pinned": False}


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
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected a positive int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a positive int, got {n}")
    _core.set_kernel_threads(n)
    _state["pinned"] = True
    from threadpoolctl import threadpool_limits

    _state["blas_limiter"] = threadpool_limits(limits=n, user_api="blas")


def threads_pinned():
    """True once :func:`set_num_threads` fixed the count (no adaptive fallback)."""
    return _state["pinned"]


def get_num_threads():
    """The thread count set by :func:`set_num_threads` (by default the number of CPUs)."""
    return _core.get_kernel_threads()


_core.set_kernel_threads(_default_threads())


class blas_threads_limited:
    """Context manager: every loaded BLAS library runs with at most ``n`` threads inside.

    The native training loop uses it so that BLAS does not start threads of its own beside
    fastnn's (two pools on two cores make each other many times slower).
    """

    _controller = None

    def __init__(self, n):
        self.n = n
        self._limiter = None

    def __enter__(self):
        if blas_threads_limited._controller is None:
            from threadpoolctl import ThreadpoolController

            blas_threads_limited._controller = ThreadpoolController()
        self._limiter = blas_threads_limited._controller.limit(limits=self.n, user_api="blas")
        return self

    def __exit__(self, *exc):
        self._limiter.restore_original_limits()
        return False
