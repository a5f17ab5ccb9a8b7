"""OpenBLAS's own worker threads, and ending them while they idle.

After a threaded call OpenBLAS's workers spin on their cores for about 0.1 s (its
``OPENBLAS_THREAD_TIMEOUT``, 2^28 cycles) whatever thread limit is set meanwhile, and so do the
new workers of a pool that a change of its thread count restarted: fastnn's native loop, whose
own threads share the cores with them, ran an MNIST epoch right after numpy's products
1.2-1.35x slower. OpenBLAS's ``blas_thread_shutdown_`` ends a pool's workers (OpenBLAS calls it
itself before a fork) and the pool starts again on its next threaded call, or as soon as its
thread count is set (even to the count it has). So a pool is ended only when some of the
workers are awake (running or runnable in /proc: spinning); asleep, they wake only for a
threaded call, which the fit's one-thread limit rules out, while ending them cost a fit 5-15 ms
on a two-core machine (each woken thread waits for a core) and left the pool to be started
again by the next limit set, a prediction's or a fit's. The limit a fit restores at its end
starts the pools it ended; their new workers spin out OpenBLAS's timeout, then sleep.

Ending the workers while another thread is inside a threaded call of that library would leave
that call waiting forever, so it is done only when every thread of the process is accounted
for: the calling thread (the process's only Python thread), fastnn's OpenMP team and the
workers of the OpenBLAS pools themselves (their count, ``blas_num_threads - 1`` for each pool
that runs, read from the library), and helper threads known by name never to call BLAS
(``HELPER_THREAD_NAMES``: jemalloc's background thread, which importing pyarrow, as
scikit-learn and pandas do, starts). With any other thread (a Python thread, however started,
one of a C extension, another OpenMP runtime's pool, a pool of a BLAS library loaded since) the
workers are left alone. Linux only: the threads are counted in /proc/self/task.
"""
import os
import threading

from ._native import core as _core


class _Pool:
    """One OpenBLAS library's pool: whether it runs, its thread count, and its shutdown."""

    def __init__(self, path):
        import ctypes

        library = ctypes.CDLL(path)  # already loaded by numpy or scipy: the same handle
        self.shutdown = library.blas_thread_shutdown_
        self.shutdown.argtypes, self.shutdown.restype = [], ctypes.c_int
        self._running = ctypes.c_int.in_dll(library, "blas_server_avail")
        self._threads = ctypes.c_int.in_dll(library, "blas_num_threads")

    def workers(self):
        """The worker threads the pool has now (0 when it does not run)."""
        return max(self._threads.value - 1, 0) if self._running.value else 0


# Names (/proc/.../comm) of threads that libraries start for themselves and that never call BLAS.
HELPER_THREAD_NAMES = frozenset({"jemalloc_bg_thd"})

# OpenBLAS library path -> its _Pool, or None when the library lacks one of the symbols.
_pools = {}


def _pool(path):
    if path not in _pools:
        try:
            _pools[path] = _Pool(path)
        except (OSError, AttributeError, ValueError):
            _pools[path] = None
    return _pools[path]


def _threaded_openblas(controller):
    """The paths of the OpenBLAS libraries with their own pthreads pool among those that
    ``controller`` (a threadpoolctl ThreadpoolController) knows."""
    return [lib.filepath for lib in controller.lib_controllers
            if lib.internal_api == "openblas" and lib.threading_layer == "pthreads"]


def _workers_beside_caller(pools):
    """The thread ids of the running ``pools``' workers, when the process's threads are exactly
    the calling thread, fastnn's OpenMP team and those workers (see the module docstring);
    None when some thread is unaccounted for."""
    if os.name != "posix" or threading.active_count() != 1:
        return None
    try:
        threads = {int(tid) for tid in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return None
    known = {threading.get_native_id()}
    known.update(_core.openmp_team_thread_ids(max(_core.get_kernel_threads(), 1)))
    others = [tid for tid in threads - known if _thread_name(tid) not in HELPER_THREAD_NAMES]
    return others if len(others) == sum(pool.workers() for pool in pools) else None


def _awake(tid):
    """Whether thread ``tid`` is running or runnable (an OpenBLAS worker spinning), not asleep."""
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            stat = f.read()
    except OSError:  # the thread has ended
        return False
    return stat[stat.rindex(")") + 2:].startswith("R")  # the state follows "(comm) "


def _thread_name(tid):
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:  # the thread has ended
        return None


def stop_idle_workers(controller):
    """End the workers of every running OpenBLAS pool ``controller`` knows, when some of them
    are awake (spinning idle after a threaded call) and the process has no thread that could be
    inside one of their calls (see the module docstring); returns how many pools were ended (0
    when it was not safe or not needed)."""
    pools = [_pool(path) for path in _threaded_openblas(controller)]
    if not pools or None in pools or not any(pool.workers() for pool in pools):
        return 0  # (no pool runs: nothing to end, and no need to account for every thread)
    workers = _workers_beside_caller(pools)
    if not workers or not any(_awake(tid) for tid in workers):
        return 0
    running = [pool for pool in pools if pool.workers()]
    for pool in running:
        pool.shutdown()
    return len(running)
