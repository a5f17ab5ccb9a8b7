"""OpenBLAS's idle worker threads, which spin on a core for ~0.1 s after a threaded call, are
ended around fastnn's threaded training loop, only when no other Python thread could be inside
a BLAS call, and OpenBLAS starts them again on its next threaded call."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"),
                                reason="counts threads through /proc/self/task (Linux)")

# Prints, as JSON, the process's thread count around a few events; the snippets run in a fresh
# interpreter so that no other test's threads or BLAS pools count.
PRELUDE = """
import ctypes, json, os, threading
import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_limits
import fastnn
from fastnn import _threads

def n_threads():
    return len(os.listdir("/proc/self/task"))

a = np.arange(256 * 256, dtype=np.float64).reshape(256, 256) / 65536
controller = ThreadpoolController()
numpy_blas = [lib for lib in controller.lib_controllers
              if lib.internal_api == "openblas" and lib.threading_layer == "pthreads"]
report = {"openblas_pthreads": len(numpy_blas)}

def pools_running():
    # OpenBLAS's own flag: 1 while its pthreads pool (its worker threads) exists
    return [ctypes.c_int.in_dll(ctypes.CDLL(lib.filepath), "blas_server_avail").value
            for lib in numpy_blas]

threadpool_limits(2, user_api="blas")
a @ a  # numpy's OpenBLAS now has a worker thread
report["with_pool"] = n_threads()
report["running_before"] = pools_running()
"""


def _run(code):
    done = subprocess.run([sys.executable, "-c", PRELUDE + code + "\nprint(json.dumps(report))"],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    if not report["openblas_pthreads"]:
        pytest.skip("numpy's BLAS is not an OpenBLAS with its own pthreads pool")
    return report


def test_stopping_ends_the_workers_and_blas_starts_them_again():
    report = _run("""
expected = a @ a
report["stopped"] = _threads._stop_blas_workers(controller)
report["after_stop"] = n_threads()
report["running_after_stop"] = pools_running()
report["same_product"] = bool(np.array_equal(a @ a, expected))
report["after_product"] = n_threads()
""")
    assert report["running_before"] == [1] * report["openblas_pthreads"]
    assert report["stopped"] == report["openblas_pthreads"]
    assert report["running_after_stop"] == [0] * report["openblas_pthreads"]
    assert report["after_stop"] < report["with_pool"]
    assert report["same_product"]
    assert report["after_product"] > report["after_stop"]  # numpy's pool started again


def test_nothing_is_stopped_while_another_python_thread_lives():
    report = _run("""
done = threading.Event()
other = threading.Thread(target=done.wait)
other.start()
report["with_pool"] = n_threads()
try:
    report["stopped"] = _threads._stop_blas_workers(controller)
    report["after_stop"] = n_threads()
    report["running_after_stop"] = pools_running()
finally:
    done.set()
    other.join()
""")
    assert report["stopped"] == 0
    assert report["after_stop"] == report["with_pool"]
    assert report["running_after_stop"] == [1] * report["openblas_pthreads"]


@pytest.mark.parametrize("progress", [False, True], ids=["quiet", "progress_bar"])
def test_a_threaded_fit_leaves_no_blas_worker_spinning_and_numpy_works_after(progress):
    # the progress bar starts no thread of its own, so the loop still runs alone
    report = _run(f"progress = {progress}" + """
fastnn.set_num_threads(2)
rng = np.random.default_rng(0)
x = rng.standard_normal((512, 256)).astype(np.float32)
y = rng.integers(0, 10, 512)
net = fastnn.Network([fastnn.Linear(256, 128), fastnn.Sigmoid(), fastnn.Linear(128, 10)], seed=0)
net.fit(x, y, epochs=1, batch_size=128, progress=progress, seed=0, engine="compiled")
report["threads_used"] = fastnn.get_num_threads()
report["running_after_fit"] = pools_running()
report["blas_limit_restored"] = [lib.num_threads for lib in controller.lib_controllers
                                 if lib.internal_api == "openblas"]
b = a @ a
report["product_ok"] = bool(np.allclose(b, np.dot(a.astype(np.float64), a)))
""")
    if report["threads_used"] < 2:
        pytest.skip("one core: fastnn runs one thread and stops nothing")
    assert report["running_after_fit"] == [0] * report["openblas_pthreads"]
    assert all(n == 2 for n in report["blas_limit_restored"])
    assert report["product_ok"]


def test_a_compiled_fit_holds_blas_at_one_thread_from_start_to_end_then_restores():
    from threadpoolctl import threadpool_info, threadpool_limits

    import numpy as np

    import fastnn

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 16)).astype(np.float32)
    y = rng.integers(0, 3, 256)
    seen = []
    net = fastnn.Network([fastnn.Linear(16, 8), fastnn.ReLU(), fastnn.Linear(8, 3)], seed=0)
    with threadpool_limits(2, user_api="blas"):
        net.fit(x, y, epochs=2, batch_size=32, progress=False, seed=0, engine="compiled",
                validation_split=0.25, callbacks=[lambda epoch, logs, network: seen.append(blas_threads())])
        after = blas_threads()
    assert seen == [[1] * len(after)] * 2
    assert after == [2] * len(after)
