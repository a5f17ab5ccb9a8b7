"""One thread count for fastnn: OpenMP in the elementwise kernels and the BLAS libraries.

The count is process-wide (:func:`set_num_threads`, else the default fastnn._cpulimits derives);
a ``with num_threads(n)`` block gives the calling thread a count of its own. BLAS thread pools
are process-wide: fastnn holds them at most at a count while it runs BLAS for the caller
(:class:`blas_threads_limited`). A process made by fork runs fastnn on one thread.
"""
import contextlib
import operator
import os
import threading
import warnings

from . import _blas_pools, _cpulimits
from ._native import core as _core

SET_SOURCE = "set_num_threads"
FORK_SOURCE = "fork"
# The process-wide count: pinned (by set_num_threads or a fork) or the default, what decided it,
# and the CPU affinity (number of CPUs) the default was derived from.
_state = {"pinned": False, "source": None, "affinity": None}
# .blocks: the calling thread's num_threads blocks now open, in the order they were entered
# (the last one's count is the thread's); .base: the thread's kernel override before them.
_local = threading.local()


def set_num_threads(n):
    """Use ``n`` threads (a positive int, numpy integers included) in fastnn's kernels and in
    every loaded BLAS library.

    A count above the cores this process may use (its CPU affinity, its cgroup CPU quota) is
    capped at them with a RuntimeWarning. TypeError for a non-integer, ValueError for n < 1.

    Small arrays still run on one thread: starting threads would cost more than it saves.
    The BLAS limit goes through threadpoolctl and covers numpy's and scipy's OpenBLAS alike.
    Until this is called, fastnn uses the default count (see :func:`thread_source`) but lets
    the native training loop run on one thread while the machine is busy (see
    :func:`threads_pinned`); after it, exactly ``n`` threads run. The native loop cuts its work
    into a fixed number of parts whatever the thread count, so training with the same seed
    repeats bit for bit on any number of threads. The count is the process's: a thread inside
    a :func:`num_threads` block keeps the block's count until the block ends.

    In a process made by fork (multiprocessing's "fork" start method, os.fork) fastnn runs on
    one thread for good: OpenMP (libgomp) cannot start threads in a child forked after its
    threads ran, and the child would hang. :func:`thread_source` then says "fork", and a count
    above 1 is refused with a RuntimeWarning; processes started with "spawn" have no such limit.
    """
    n = _capped(n, "set_num_threads", stacklevel=3)
    _core.set_kernel_threads(n)
    if _state["source"] != FORK_SOURCE:
        _state.update(pinned=True, source=SET_SOURCE)
    with blas_threads_limited._lock:
        _as_blas_controller(lambda: _limit_blas(n))
        blas_threads_limited._rebase()  # inside a fit: n is what its end restores


def _check_count(n):
    """n as an int: a positive int or numpy integer (not a bool)."""
    try:
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n: expected a positive int, got {type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"n: expected a positive int, got {n}")
    return n


def _fork_safe(n):
    """n (a count, or None), or 1 where n > 1 in a process made by fork (see set_num_threads)."""
    return 1 if n is not None and n > 1 and _state["source"] == FORK_SOURCE else n


def _capped(n, function, stacklevel):
    """n checked, and capped at the cores the process may use, or at 1 after a fork (with a
    RuntimeWarning)."""
    n = _check_count(n)
    if _fork_safe(n) != n:
        n, message = 1, (f"{function}({n}): fastnn runs on 1 thread in a process made by fork "
                         "(OpenMP's threads hang after a fork); start processes with the "
                         "'spawn' method to use more")
    else:
        n, message = _cpulimits.cap(n, f"{function}({n})")
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)
    return n


def _limit_blas(n):
    """Limit every loaded BLAS to ``n`` threads now; returns the limiter (it can restore)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def _as_blas_controller(change):
    """change() (a change of BLAS thread counts through threadpoolctl), made as the thread that
    controls OpenBLAS's process-wide count: threadpoolctl 3.8+ lets one thread at a time set it
    and ignores the others' calls (a limit set in one thread could not be restored from
    another). fastnn's changes are made under blas_threads_limited._lock, one at a time; each
    takes that role and gives it back."""
    from threadpoolctl import OpenBLASController

    release = getattr(OpenBLASController, "clear_controlling_thread", None)
    if release is None:  # threadpoolctl before 3.8: any thread sets the count
        return change()
    release(force=True)
    try:
        return change()
    finally:
        release()


def _own_blocks():
    if not hasattr(_local, "blocks"):
        _local.blocks = []
    return _local.blocks


def _own_count():
    blocks = _own_blocks()
    return blocks[-1][0] if blocks else None


@contextlib.contextmanager
def num_threads(n):
    """Run the block with ``n`` threads (capped as set_num_threads is) in the calling thread's
    fastnn work: its kernels, fits and predictions run as after set_num_threads(n) (the count
    is pinned), while other threads keep theirs; then the thread's previous count comes back.

    Every loaded BLAS runs at most ``n`` threads during the block. BLAS thread pools are
    process-wide, so blocks active at once in several threads hold BLAS at the lowest of their
    counts, and the last to end restores what was there before (see blas_threads_limited).
    """
    n = _capped(n, "num_threads", stacklevel=4)
    blocks, block = _own_blocks(), [n]  # a list: each block is its own entry
    previous_kernels = _core.set_calling_thread_kernel_threads(n)
    if not blocks:
        _local.base = previous_kernels
    blocks.append(block)
    try:
        with blas_threads_limited(n):
            yield
    finally:
        # Blocks may end out of order in one thread (asyncio tasks, generators): the thread's
        # count is that of the last block still open, else what it was before the first.
        blocks[:] = [b for b in blocks if b is not block]
        _core.set_calling_thread_kernel_threads(
            _fork_safe(blocks[-1][0] if blocks else getattr(_local, "base", 0)))


@contextlib.contextmanager
def kernels_on_calling_thread():
    """Run the calling thread's elementwise kernels on that thread alone inside the block, and
    BLAS on at most fastnn's thread count (:func:`get_num_threads`; a lower limit stays).

    The layer-by-layer training path alternates small elementwise kernels with BLAS products;
    OpenMP's workers and OpenBLAS's each spin for a while after their work, and on a two-core
    machine the two pools took turns spinning: at two threads a Dropout network's MNIST epoch
    took 11x its one-thread time (30-130x with another process on a core). With the kernels on
    the calling thread it runs as fast as at one thread, and its bits no longer depend on the
    thread count (the kernels' partial sums are then never split). BLAS keeps the threads, up
    to the count fastnn was given (a default of 1 from FASTNN_NUM_THREADS holds BLAS at 1).
    """
    previous = _core.set_calling_thread_kernel_threads(1)
    try:
        with blas_threads_limited(get_num_threads()):
            yield
    finally:
        _core.set_calling_thread_kernel_threads(_fork_safe(previous))


def threads_pinned():
    """True once :func:`set_num_threads` fixed the count, or inside a :func:`num_threads`
    block (no adaptive fallback)."""
    return _own_count() is not None or _state["pinned"]


def get_num_threads():
    """The thread count of the calling thread's fastnn work (int): its :func:`num_threads`
    block's, else the one set by :func:`set_num_threads`, else the default (see
    :func:`thread_source`)."""
    own = _own_count()
    if own is not None:
        return own
    _refresh_default()
    return _core.get_kernel_threads()


def thread_source():
    """What decided :func:`get_num_threads` (str): "set_num_threads" (or a num_threads block),
    "FASTNN_NUM_THREADS", "OMP_NUM_THREADS", "CPU affinity", "cgroup CPU quota",
    "os.cpu_count()", or "fork" in a process made by fork (one thread; see set_num_threads).

    Until set_num_threads is called the default follows the CPU affinity: when it has changed
    (os.sched_setaffinity, taskset -p), the count is derived again when next asked for (a fit,
    a predict of 449 rows or more, show_config). The cgroup quota is read again only then."""
    if _own_count() is not None:
        return SET_SOURCE
    _refresh_default()
    return _state["source"]


def _apply_default():
    n, source, messages = _cpulimits.default_threads()
    for message in messages:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    _core.set_kernel_threads(n)
    _state.update(source=source, affinity=_cpulimits.affinity_cpus())


def _refresh_default():
    """Derive the default count again if the CPU affinity changed since (not once pinned)."""
    if not _state["pinned"] and _cpulimits.affinity_cpus() != _state["affinity"]:
        _apply_default()


def _after_fork_in_child():
    """In a process made by fork: one thread for good (see set_num_threads)."""
    _core.set_kernel_threads(1)
    _core.set_calling_thread_kernel_threads(0)
    _local.blocks = []
    _local.base = 0
    cls = blas_threads_limited  # other threads' blocks did not come along
    cls._active, cls._limit, cls._limiter = [], None, None
    _state.update(pinned=True, source=FORK_SOURCE)
    blas_threads_limited._lock = threading.Lock()  # another thread may have held it


_apply_default()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def end_spinning_blas_workers():
    """End OpenBLAS's worker threads if some spin idle after a threaded call and no other thread
    could be inside one (fastnn._blas_pools): done before fastnn's own threads take the cores.
    OpenBLAS starts them again on its next threaded call."""
    _blas_pools.stop_idle_workers(blas_threads_limited._controller_now())


class blas_threads_limited:
    """Context manager: every loaded BLAS library runs at most ``n`` threads inside (default 1).

    fastnn holds it wherever it runs BLAS for the caller: at one thread in the native training
    loop, predict and evaluate, so that BLAS does not start threads of its own beside fastnn's
    (two pools on two cores make each other many times slower); at fastnn's count on the
    layer-by-layer paths; at ``n`` in a ``num_threads(n)`` block. BLAS thread counts are
    process-wide, so the blocks inside, in any thread, share one limit: the lowest of their
    ``n`` (a library already at or below it is left alone). The first limit records the counts
    it replaced, and the last block to leave restores them. A :func:`set_num_threads` inside a
    block becomes what is restored (BLAS stays limited until the blocks end).

    stop_workers: also end OpenBLAS's worker threads if some are awake (spinning after a
    threaded call; see fastnn._blas_pools), for a block that runs fastnn's own threads for a
    while. Restoring the limit when the last one leaves starts an ended pool again.
    """

    _lock = threading.Lock()
    _active = []  # the blocks inside, in any thread
    _limit = None  # the limit in force: the lowest n of the blocks inside (None: no block)
    _limiter = None  # restores the counts the limit replaced (None: none was above it)
    _controller = None

    def __init__(self, n=1, stop_workers=False):
        self.n = _check_count(n)
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
            cls._active.append(self)
            try:
                cls._apply(self.stop_workers)
            except BaseException:  # an interrupt included: this block leaves nothing applied
                cls._active.remove(self)
                cls._settle()
                raise
        return self

    def __exit__(self, *exc):
        cls = blas_threads_limited
        with cls._lock:
            if self in cls._active:  # not after a fork made inside the block (the child drops it)
                cls._active.remove(self)
            cls._settle()
        return False

    @classmethod
    def _apply(cls, stop_workers):
        cls._settle()
        if stop_workers:
            _blas_pools.stop_idle_workers(cls._controller_now())

    @classmethod
    def _settle(cls):
        """Hold BLAS at the lowest n of the blocks inside; restore the replaced counts when
        none is left (or before another limit)."""
        limit = min((block.n for block in cls._active), default=None)
        if limit == cls._limit:
            return
        if cls._limiter is not None:
            cls._limiter, limiter = None, cls._limiter
            cls._limit = None
            _as_blas_controller(limiter.restore_original_limits)
        if limit is not None:
            controller = cls._controller_now()
            above = {lib.filepath: limit for lib in controller.lib_controllers
                     if lib.user_api == "blas" and lib.num_threads > limit}
            if above:
                cls._limiter = _as_blas_controller(lambda: controller.limit(limits=above))
        cls._limit = limit
        _core.set_blas_single(limit == 1)

    @classmethod
    def _rebase(cls):
        """Inside blocks: take the BLAS counts set now as those to restore, and hold the limit
        again (the caller holds _lock)."""
        if cls._active:
            cls._limiter = cls._limit = None
            cls._apply(any(block.stop_workers for block in cls._active))
