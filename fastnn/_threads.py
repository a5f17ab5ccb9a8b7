"""One thread count for fastnn: OpenMP in the elementwise kernels and the BLAS libraries."""
import os

from ._native import core as _core

_state = {"blas_limiter": None}


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
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected a positive int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a positive int, got {n}")
    _core.set_kernel_threads(n)
    from threadpoolctl import threadpool_limits

    _state["blas_limiter"] = threadpool_limits(limits=n, user_api="blas")


def get_num_threads():
    """The thread count set by :func:`set_num_threads` (by default the number of CPUs)."""
    return _core.get_kernel_threads()


_core.set_kernel_threads(_default_threads())
