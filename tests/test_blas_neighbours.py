"""OpenBLAS's idle workers, which spin on a core for ~0.1 s after a threaded call, are ended
around fastnn's threaded fits (fastnn._blas_pools) while they are awake, only when no other
thread of the process could be inside a BLAS call, and OpenBLAS starts them again on its next
threaded call; workers already asleep are left alone; the BLAS limit a fit holds and
restores."""
import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastnn
from fastnn import _blas_pools, _threads

LINUX = sys.platform.startswith("linux")

# Prints, as JSON, what the snippet records in ``report``; the snippets run in a fresh
# interpreter so that no other test's threads or BLAS pools count.
PRELUDE = """
import json, os, threading, time
import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_limits
import fastnn
from fastnn import _blas_pools, _threads

fastnn.set_num_threads(2)
a = np.arange(256 * 256, dtype=np.float64).reshape(256, 256) / 65536
controller = ThreadpoolController()
pools = [_blas_pools._pool(path) for path in _blas_pools._threaded_openblas(controller)]
report = {"pools": len(pools), "readable": None not in pools}

def running():
    return [int(pool.workers() > 0) for pool in pools]

threadpool_limits(2, user_api="blas")
a @ a  # numpy's OpenBLAS now has a worker thread
report["running_before"] = running()

# The workers of a @ a spin for ~0.1 s, then sleep, and sleeping workers are left alone; the
# snippets below check the rules for ending them, so the workers count as awake whenever the
# snippet takes (the test of the sleeping workers puts the real check back).
real_awake = _blas_pools._awake
_blas_pools._awake = lambda tid: True


# Whether every thread but this one and fastnn's OpenMP team is asleep (not running or runnable
# in /proc) within ``seconds``: OpenBLAS's workers sleep ~0.1 s after their last call.
def wait_until_workers_asleep(seconds=10):
    def asleep():
        me, team = threading.get_native_id(), set(fastnn._native.core.openmp_team_thread_ids(2))
        others = {int(tid) for tid in os.listdir("/proc/self/task")} - team - {me}
        return not any(real_awake(tid) for tid in others)

    deadline = time.monotonic() + seconds
    while not asleep() and time.monotonic() < deadline:
        time.sleep(0.05)
    return asleep()

def fit(progress=False, **kwargs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 256)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    net = fastnn.Network([fastnn.Linear(256, 128), fastnn.Sigmoid(), fastnn.Linear(128, 10)], seed=0)
    net.fit(x, y, epochs=1, batch_size=128, progress=progress, seed=0, engine="compiled", **kwargs)
"""


def _run(code, timeout=120):
    done = subprocess.run([sys.executable, "-c", PRELUDE + code + "\nprint(json.dumps(report))"],
                          capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    if not report["pools"] or not report["readable"]:
        pytest.skip("no OpenBLAS with its own pthreads pool and readable counters")
    if report["running_before"] != [1] * report["pools"]:
        pytest.skip("OpenBLAS started no worker for a 2-thread product here")
    return report


linux_only = pytest.mark.skipif(not LINUX, reason="workers are ended only where /proc/self/task counts threads")


@linux_only
def test_ending_the_workers_and_blas_starting_them_again():
    report = _run("""
expected = a @ a
report["stopped"] = _blas_pools.stop_idle_workers(controller)
report["running_after_stop"] = running()
report["same_product"] = bool(np.array_equal(a @ a, expected))
report["running_after_product"] = running()
""")
    n = report["pools"]
    assert report["stopped"] == n
    assert report["running_after_stop"] == [0] * n
    assert report["same_product"]
    assert 1 in report["running_after_product"]  # numpy's pool started again


@linux_only
def test_a_spinning_thread_is_awake_and_a_waiting_one_is_not():
    stop, ready = threading.Event(), threading.Event()
    ids = {}

    def spin():  # hashing releases the GIL: the thread runs while this one reads /proc
        ids["spin"] = threading.get_native_id()
        ready.set()
        data = bytes(1 << 22)
        while not stop.is_set():
            hashlib.sha256(data).digest()

    def wait():
        ids["wait"] = threading.get_native_id()
        stop.wait()

    threads = [threading.Thread(target=spin, daemon=True), threading.Thread(target=wait, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        ready.wait()
        while "wait" not in ids:
            time.sleep(0.01)
        time.sleep(0.1)  # the waiting thread reaches its wait
        # between two hashes the spinning thread waits a moment for the GIL: several looks
        assert sum(_blas_pools._awake(ids["spin"]) for _ in range(20)) >= 10
        assert not any(_blas_pools._awake(ids["wait"]) for _ in range(20))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    # ended: Thread.join returns before the system thread has quite exited, so give it a moment
    deadline = time.monotonic() + 5
    while _blas_pools._awake(ids["spin"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _blas_pools._awake(ids["spin"])


@linux_only
@pytest.mark.parametrize("start", ["threading", "_thread"])
def test_nothing_is_ended_while_another_thread_could_be_in_blas(start):
    # a thread started with _thread is not known to threading: the threads are counted in /proc
    report = _run(f"start = {start!r}" + """
import _thread
done, looping = threading.Event(), threading.Event()

def work():
    while not done.is_set():
        a @ a  # threaded products, again and again
        looping.set()

if start == "threading":
    threading.Thread(target=work, daemon=True).start()
else:
    _thread.start_new_thread(work, ())
looping.wait()
try:
    report["stopped"] = _blas_pools.stop_idle_workers(controller)
    report["running_after_stop"] = running()
    fit()  # a threaded fit beside it neither ends the workers nor waits forever
    report["fitted"] = True
finally:
    done.set()
""", timeout=60)
    assert report["stopped"] == 0
    assert report["running_after_stop"] == [1] * report["pools"]
    assert report["fitted"]


@linux_only
@pytest.mark.parametrize("progress", [False, True], ids=["quiet", "progress_bar"])
def test_a_threaded_fit_ends_spinning_workers_and_numpy_works_after(progress):
    # the progress bar starts no thread of its own, so the fit still runs alone
    report = _run("""
ended = []
stop = _blas_pools.stop_idle_workers
_blas_pools.stop_idle_workers = lambda controller: ended.append(stop(controller)) or ended[-1]
""" + f"fit(progress={progress})" + """
report["ended"] = ended
report["limits_after_fit"] = [lib.num_threads for lib in controller.lib_controllers
                              if lib.internal_api == "openblas"]
b = a.astype(np.float32) @ a.astype(np.float32)
report["product_ok"] = bool(np.allclose(b, a @ a, rtol=1e-4))
report["running_after_product"] = running()
""")
    n = report["pools"]
    assert report["ended"] == [n]  # when the fit started, and only then
    assert report["limits_after_fit"] == [2] * n
    assert report["product_ok"]
    assert 1 in report["running_after_product"]


@linux_only
def test_after_a_fit_ended_them_the_next_fit_and_predict_leave_the_sleeping_workers_alone():
    # Asleep, the workers wake only for a threaded call. Ending them (and ending them again at
    # the end of a fit, which left the pools to be started again by the next limit set, a
    # prediction's or the next fit's, whose new workers spin and were ended again) cost every
    # fit 5-15 ms. The pools the restored limit starts now go to sleep and stay.
    report = _run("""
with fastnn.num_threads(2):
    fit()  # the workers of a @ a count as awake: ended, then started by the restored limit
_blas_pools._awake = real_awake
report["asleep"] = wait_until_workers_asleep()
report["running"] = running()
threads = set(os.listdir("/proc/self/task"))
report["stopped"] = _blas_pools.stop_idle_workers(controller)  # asleep: nothing to end
fit()
rng = np.random.default_rng(1)
net = fastnn.Network([fastnn.Linear(256, 128), fastnn.Sigmoid(), fastnn.Linear(128, 10)], seed=0)
net.predict(rng.standard_normal((4096, 256)).astype(np.float32))
fit()
report["same_threads"] = set(os.listdir("/proc/self/task")) == threads
report["limits_after"] = [lib.num_threads for lib in controller.lib_controllers
                          if lib.internal_api == "openblas"]
""")
    if not report["asleep"]:
        pytest.skip("OpenBLAS's workers did not go to sleep within 10 s on this machine")
    n = report["pools"]
    assert report["running"] == [1] * n
    assert report["stopped"] == 0
    assert report["same_threads"]  # no pool ended or started since
    assert report["limits_after"] == [2] * n


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((512, 256)).astype(np.float32), rng.integers(0, 4, 512)


def _net():  # 128 x (256*64 + 64*4) multiply-adds a step: several parts, so the workers are ended
    return fastnn.Network([fastnn.Linear(256, 64), fastnn.ReLU(), fastnn.Linear(64, 4)], seed=0)


@pytest.fixture
def two_threads():
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(2)
    yield
    fastnn.set_num_threads(before)


def test_a_compiled_fit_holds_blas_at_one_thread_from_start_to_end_then_restores(two_threads):
    x, y = _data()
    seen = []
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        assert before, "no BLAS library found"
        _net().fit(x, y, epochs=2, batch_size=128, progress=False, seed=0, engine="compiled",
                   validation_split=0.25, callbacks=[lambda e, logs, net: seen.append(_blas_threads())])
        after = _blas_threads()
    assert seen == [[1] * len(before)] * 2
    assert after == before == [2] * len(before)


def test_set_num_threads_in_a_callback_is_what_the_fit_restores(two_threads):
    if fastnn.get_num_threads() < 2:
        pytest.skip("needs two cores")
    x, y = _data()
    seen = []

    def callback(epoch, logs, network):
        seen.append(_blas_threads())
        if epoch == 0:
            fastnn.set_num_threads(2)  # BLAS too; the fit keeps it at one thread meanwhile

    with threadpool_limits(1, user_api="blas"):
        _net().fit(x, y, epochs=2, batch_size=128, progress=False, seed=0, engine="compiled",
                   callbacks=[callback])
        after = _blas_threads()
    assert seen == [[1] * len(after)] * 2
    assert after == [2] * len(after)


def test_an_interrupt_while_entering_leaves_nothing_applied(two_threads, monkeypatch):
    x, y = _data()

    def interrupted(controller):
        raise KeyboardInterrupt

    monkeypatch.setattr(_blas_pools, "stop_idle_workers", interrupted)
    with threadpool_limits(2, user_api="blas"):
        with pytest.raises(KeyboardInterrupt):
            _net().fit(x, y, epochs=1, batch_size=128, progress=False, seed=0, engine="compiled")
        after = _blas_threads()
    assert after == [2] * len(after)
    assert _threads.blas_threads_limited._active == []  # no block left inside
    assert _threads.blas_threads_limited._limiter is None


@linux_only
@pytest.mark.parametrize("name, ended", [("jemalloc_bg_thd", True), ("someone_else", False)])
def test_helper_threads_known_by_name_do_not_count(name, ended):
    # jemalloc's background thread (pyarrow starts it) never calls BLAS; an unknown one might
    report = _run(f"name = {name!r}" + """
import _thread, ctypes
named, release = threading.Event(), _thread.allocate_lock()
release.acquire()

def helper():
    ctypes.CDLL(None).prctl(15, name.encode())  # PR_SET_NAME
    named.set()
    release.acquire()  # waits, calling nothing

_thread.start_new_thread(helper, ())
named.wait()
report["stopped"] = _blas_pools.stop_idle_workers(controller)
release.release()
""")
    assert report["stopped"] == (report["pools"] if ended else 0)
