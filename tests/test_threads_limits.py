"""The default thread count and its limits: set_num_threads, $FASTNN_NUM_THREADS,
$OMP_NUM_THREADS, the CPU affinity (followed when it changes), the cgroup CPU quota; the cap and
its warning; num_threads blocks in several threads; BLAS held at fastnn's count; one thread in a
process made by fork."""
import json
import os
import subprocess
import sys
import threading
import warnings

import pytest

import fastnn
from fastnn import _cpulimits

HAS_AFFINITY = hasattr(os, "sched_setaffinity")


def _child(code, env=None, affinity=None, timeout=60):
    """Run ``code`` in a fresh interpreter (optionally pinned to ``affinity`` CPUs first);
    returns its stdout and stderr."""
    environ = {k: v for k, v in os.environ.items()
               if k not in (_cpulimits.FASTNN_ENV, _cpulimits.OMP_ENV)}
    environ.update(env or {})
    prefix = f"import os; os.sched_setaffinity(0, {sorted(affinity)!r}); " if affinity else ""
    done = subprocess.run([sys.executable, "-c", prefix + code], env=environ,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


REPORT = ("import fastnn, json; from fastnn._threads import thread_source; "
          "print(json.dumps([fastnn.get_num_threads(), thread_source()]))")


def _default(env=None, affinity=None):
    out, err = _child(REPORT, env, affinity)
    return tuple(json.loads(out.splitlines()[-1])), err


# -- cgroup files, parsed from fixture text -----------------------------------------------------

@pytest.mark.parametrize("text, cpus", [("max 100000\n", None), ("150000 100000\n", 1.5),
                                        ("50000 100000", 0.5), ("200000\n", 2.0)])
def test_cgroup_v2_text(text, cpus):
    assert _cpulimits.parse_cgroup_v2(text) == cpus


@pytest.mark.parametrize("text", ["", "a b", "100 0", "-5 100000", "1 2 3"])
def test_cgroup_v2_malformed(text):
    with pytest.raises(ValueError):
        _cpulimits.parse_cgroup_v2(text)


def test_cgroup_v1_text():
    assert _cpulimits.parse_cgroup_v1("-1\n", "100000\n") is None
    assert _cpulimits.parse_cgroup_v1("300000\n", "100000\n") == 3.0
    with pytest.raises(ValueError):
        _cpulimits.parse_cgroup_v1("lots\n", "100000\n")


ROOT_CGROUP = "0::/\n"  # /proc/self/cgroup of a process in the root (or a container's own) cgroup


def test_cgroup_files_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert _cpulimits.cgroup_cpus(str(v2), ROOT_CGROUP) == 2  # 1.5 CPUs: two threads use them
    (v2 / "cpu.max").write_text("max 100000\n")
    assert _cpulimits.cgroup_cpus(str(v2), ROOT_CGROUP) is None
    (v2 / "cpu.max").write_text("garbage\n")
    assert _cpulimits.cgroup_cpus(str(v2), ROOT_CGROUP) is None
    v1 = tmp_path / "v1" / "cpu,cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert _cpulimits.cgroup_cpus(str(tmp_path / "v1"), "2:cpu,cpuacct:/\n") == 1
    assert _cpulimits.cgroup_cpus(str(tmp_path / "none"), ROOT_CGROUP) is None


def test_nested_cgroups_lowest_quota_wins(tmp_path):
    job = tmp_path / "slurm" / "job_7"
    job.mkdir(parents=True)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "slurm" / "cpu.max").write_text("800000 100000\n")
    (job / "cpu.max").write_text("200000 100000\n")
    own = "0::/slurm/job_7\n"
    assert _cpulimits.cgroup_cpus(str(tmp_path), own) == 2
    (job / "cpu.max").write_text("max 100000\n")
    assert _cpulimits.cgroup_cpus(str(tmp_path), own) == 8  # the parent's quota still holds
    # A v1 hierarchy: the cpu controller's line of /proc/self/cgroup names the folder.
    v1 = tmp_path / "v1" / "cpu" / "docker" / "abc"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    text = "4:memory:/other\n3:cpu,cpuacct:/docker/abc\n0::/\n"
    assert _cpulimits.cgroup_cpus(str(tmp_path / "v1"), text) == 1
    # Paths cannot climb out of the root.
    assert _cpulimits.cgroup_cpus(str(job), "0::/../../..\n") is None


def test_cgroup_quota_below_affinity_decides(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    monkeypatch.setattr(_cpulimits, "affinity_cpus", lambda: 2)
    assert _cpulimits.available_cores(str(tmp_path), ROOT_CGROUP) == (1, "cgroup CPU quota")
    (tmp_path / "cpu.max").write_text("400000 100000\n")
    assert _cpulimits.available_cores(str(tmp_path), ROOT_CGROUP) == (2, "CPU affinity")


# -- precedence of the environment ---------------------------------------------------------------

CORES = (2, "CPU affinity")


def test_precedence_of_the_environment():
    default = _cpulimits.default_threads
    assert default({}, CORES)[:2] == (2, "CPU affinity")
    assert default({"OMP_NUM_THREADS": "1"}, CORES)[:2] == (1, "OMP_NUM_THREADS")
    assert default({"OMP_NUM_THREADS": "1,2"}, CORES)[:2] == (1, "OMP_NUM_THREADS")
    assert default({"OMP_NUM_THREADS": "2", "FASTNN_NUM_THREADS": "1"}, CORES)[:2] == \
        (1, "FASTNN_NUM_THREADS")


@pytest.mark.parametrize("env", [{"FASTNN_NUM_THREADS": "two"}, {"OMP_NUM_THREADS": "0"},
                                 {"OMP_NUM_THREADS": "-3"}, {"FASTNN_NUM_THREADS": "1.5"}])
def test_malformed_values_are_skipped_with_a_warning(env):
    n, source, messages = _cpulimits.default_threads(env, CORES)
    assert (n, source) == (2, "CPU affinity")
    assert len(messages) == 1 and list(env)[0] in messages[0] and "ignored" in messages[0]


def test_malformed_fastnn_value_falls_back_to_omp():
    n, source, messages = _cpulimits.default_threads(
        {"FASTNN_NUM_THREADS": "x", "OMP_NUM_THREADS": "1"}, CORES)
    assert (n, source) == (1, "OMP_NUM_THREADS") and len(messages) == 1


def test_environment_above_the_cores_is_capped():
    n, source, messages = _cpulimits.default_threads({"FASTNN_NUM_THREADS": "16"}, CORES)
    assert (n, source) == (2, "FASTNN_NUM_THREADS")
    assert "16" in messages[0] and "2 cores" in messages[0]


@pytest.mark.parametrize("env, expected", [
    ({"OMP_NUM_THREADS": "1"}, [1, "OMP_NUM_THREADS"]),
    ({"OMP_NUM_THREADS": "1", "FASTNN_NUM_THREADS": "1"}, [1, "FASTNN_NUM_THREADS"]),
])
def test_environment_in_a_fresh_process(env, expected):
    assert list(_default(env)[0]) == expected


def test_malformed_environment_warns_in_a_fresh_process():
    (n, source), err = _default({"OMP_NUM_THREADS": "many"})
    assert source != "OMP_NUM_THREADS" and n >= 1
    assert "OMP_NUM_THREADS='many' is not a positive integer" in err


@pytest.mark.skipif(not HAS_AFFINITY, reason="no sched_setaffinity on this platform")
def test_affinity_decides_in_a_fresh_process():
    assert _default(affinity={0})[0] == (1, "CPU affinity")
    # The explicit count is capped at the affinity too, with a warning.
    (n, source), err = _default({"FASTNN_NUM_THREADS": "4"}, affinity={0})
    assert (n, source) == (1, "FASTNN_NUM_THREADS") and "using 1" in err
    out, err = _child("import fastnn; fastnn.set_num_threads(3); print(fastnn.get_num_threads())",
                      affinity={0})
    assert out.split() == ["1"]
    assert "RuntimeWarning: set_num_threads(3): more threads than the 1 cores" in err


# -- the cap on explicit counts ------------------------------------------------------------------

def test_set_num_threads_above_the_cores_warns_and_caps(monkeypatch):
    monkeypatch.setattr(_cpulimits, "available_cores", lambda: (2, "CPU affinity"))
    with pytest.warns(RuntimeWarning, match=r"num_threads\(5\): more threads than the 2 cores"):
        with fastnn.num_threads(5):
            assert fastnn.get_num_threads() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fastnn.num_threads(2):
            assert fastnn.get_num_threads() == 2


def test_source_follows_set_num_threads_and_is_restored(monkeypatch):
    from fastnn._threads import thread_source
    before = thread_source()
    with fastnn.num_threads(1):
        assert thread_source() == "set_num_threads"
        from fastnn._config import config
        assert config()["threads_source"] == "set_num_threads"
    assert thread_source() == before


def test_cli_threads_above_the_cores_warns_one_line(capsys):
    from fastnn import cli
    cores = _cpulimits.available_cores()[0]
    status = cli.main(["train", "--limit", "200", "--epochs", "1", "--hidden", "8", "--quiet",
                       "--threads", str(cores + 3)])
    err = capsys.readouterr().err
    assert status == 0
    lines = [line for line in err.splitlines() if line]
    assert lines == [f"fastnn: warning: --threads {cores + 3}: more threads than the "
                     f"{cores} cores this process may use (limited by "
                     f"{_cpulimits.available_cores()[1]}); using {cores}"]


def test_info_names_the_source():
    out, _ = _child("from fastnn import cli; cli.main(['info'])", {"OMP_NUM_THREADS": "1"})
    assert "threads:     1 (from OMP_NUM_THREADS)" in out


# -- numpy integers ------------------------------------------------------------------------------

def test_counts_take_numpy_integers_but_not_bools():
    import numpy as np
    with fastnn.num_threads(np.int64(1)):
        assert fastnn.get_num_threads() == 1 and type(fastnn.get_num_threads()) is int
    for bad in (True, np.True_, 1.0, "1", None):
        with pytest.raises(TypeError, match=r"^n: expected a positive int"):
            with fastnn.num_threads(bad):
                pass
    with pytest.raises(ValueError, match=r"^n: expected a positive int, got 0"):
        with fastnn.num_threads(np.int64(0)):
            pass


def test_grid_search_over_numpy_n_threads():
    pytest.importorskip("sklearn")
    import numpy as np
    from sklearn.model_selection import GridSearchCV

    from fastnn.sklearn import MLPClassifier
    from synthetic import blobs
    x, y = blobs(120, 6, 3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning; a count above the cores is capped
        search = GridSearchCV(MLPClassifier((8,), max_iter=2, random_state=0),
                              {"n_threads": np.arange(1, 3)}, cv=2, error_score="raise").fit(x, y)
    assert list(search.cv_results_["param_n_threads"]) == [1, 2]


# -- num_threads blocks in several threads -------------------------------------------------------

def _blas_threads():
    from threadpoolctl import threadpool_info
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture
def default_of_two(monkeypatch):
    """A process whose count is a default of 2 (not pinned), with BLAS at 2; restored after."""
    from threadpoolctl import threadpool_limits

    from fastnn import _threads
    from fastnn._native import core
    monkeypatch.setattr(_cpulimits, "available_cores", lambda: (2, "test"))
    monkeypatch.setitem(_threads._state, "pinned", False)
    monkeypatch.setitem(_threads._state, "source", "test")
    monkeypatch.setitem(_threads._state, "affinity", _cpulimits.affinity_cpus())  # as derived
    before = core.get_kernel_threads()
    core.set_kernel_threads(2)
    try:
        with threadpool_limits(2, user_api="blas"):
            yield
    finally:
        core.set_kernel_threads(before)


def _process_setting():
    from fastnn._threads import thread_source, threads_pinned
    return fastnn.get_num_threads(), thread_source(), threads_pinned(), _blas_threads()


def test_num_threads_blocks_overlapping_in_two_threads_restore_the_process(default_of_two):
    # A enters num_threads(1), B enters num_threads(2), A leaves, B leaves.
    base = _process_setting()
    assert base[:3] == (2, "test", False) and set(base[3]) == {2}
    blas = len(base[3])
    a_in, main_read, b_read, a_out = (threading.Event() for _ in range(4))
    seen = {}

    def a():
        with fastnn.num_threads(1):
            a_in.set()
            b_read.wait(10)
            seen["a"] = fastnn.get_num_threads()
        a_out.set()

    def b():
        main_read.wait(10)
        with fastnn.num_threads(2):
            seen["blas while a is in"] = _blas_threads()
            b_read.set()
            a_out.wait(10)
            seen["b"] = fastnn.get_num_threads()
            seen["blas after a left"] = _blas_threads()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    a_in.wait(10)
    seen["this thread while a is in"] = fastnn.get_num_threads()  # A's block is A's own
    main_read.set()
    for t in threads:
        t.join(30)
    assert seen == {"a": 1, "b": 2, "this thread while a is in": 2,
                    "blas while a is in": [1] * blas, "blas after a left": [2] * blas}
    assert _process_setting() == base


def test_num_threads_blocks_ending_out_of_order_in_one_thread_restore_it(default_of_two):
    # asyncio tasks and generators can leave blocks of one thread in any order.
    from fastnn import _native

    base = _process_setting()
    outer, inner = fastnn.num_threads(1), fastnn.num_threads(2)
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)
    assert fastnn.get_num_threads() == 2  # the block still open
    inner.__exit__(None, None, None)
    assert _process_setting() == base
    assert _native.core.set_calling_thread_kernel_threads(0) == 0  # no override left


# -- a changed affinity, BLAS at fastnn's count, fork ---------------------------------------------

def _two_cores():
    if _cpulimits.available_cores()[0] < 2:
        pytest.skip("needs two cores")


@pytest.mark.skipif(not HAS_AFFINITY, reason="no sched_setaffinity on this platform")
def test_the_default_follows_a_changed_affinity():
    _two_cores()
    cpus = sorted(os.sched_getaffinity(0))
    out, _ = _child(
        "import json, os, fastnn\n"
        "from fastnn._config import config\n"
        "from fastnn._threads import thread_source\n"
        "seen = []\n"
        "def note():\n"
        "    seen.append([fastnn.get_num_threads(), thread_source(), config()['threads']])\n"
        f"note(); os.sched_setaffinity(0, {{{cpus[0]}}}); note()\n"
        f"os.sched_setaffinity(0, {cpus!r}); note()\n"
        f"fastnn.set_num_threads(2); os.sched_setaffinity(0, {{{cpus[0]}}}); note()\n"
        "print(json.dumps(seen))")
    start, narrowed, widened, pinned = json.loads(out.splitlines()[-1])
    assert narrowed == [1, "CPU affinity", 1]
    assert widened == start and start[0] >= 2
    assert pinned == [2, "set_num_threads", 2]  # a count the user set stays


BLAS_DURING_FITS = """
import json, warnings
import numpy as np
from threadpoolctl import ThreadpoolController
import fastnn
from fastnn.sklearn import MLPClassifier, _lbfgs

controller = ThreadpoolController()

def blas():
    return max(lib.num_threads for lib in controller.lib_controllers if lib.user_api == "blas")

seen = {"before": blas(), "layers": set(), "lbfgs": set()}

class Recording(fastnn.SGD):  # not SGD itself: the network trains layer by layer
    def step(self, params, grads):
        seen["layers"].add(blas())
        super().step(params, grads)

objective = _lbfgs._Objective.__call__

def recording(self, x):
    seen["lbfgs"].add(blas())
    return objective(self, x)

_lbfgs._Objective.__call__ = recording
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 8)).astype(np.float32)
y = (x[:, 0] > 0).astype(int)
net = fastnn.Network([fastnn.Linear(8, 16), fastnn.ReLU(), fastnn.Linear(16, 2)], seed=0)
net.fit(x, y, epochs=2, batch_size=64, optimizer=Recording(lr=0.1), progress=False)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ConvergenceWarning: 5 iterations on purpose
    MLPClassifier((16,), solver="lbfgs", max_iter=5, random_state=0).fit(x, y)
seen["after"] = blas()
print(json.dumps({k: sorted(v) if isinstance(v, set) else v for k, v in seen.items()}))
"""


def test_a_default_count_holds_blas_in_layer_by_layer_fits_and_lbfgs():
    # OpenBLAS reads OMP_NUM_THREADS itself, not FASTNN_NUM_THREADS: fastnn holds it at 1.
    pytest.importorskip("sklearn")
    _two_cores()
    out, _ = _child(BLAS_DURING_FITS, {"FASTNN_NUM_THREADS": "1"})
    seen = json.loads(out.splitlines()[-1])
    assert seen["before"] >= 2, "OpenBLAS runs one thread: nothing to hold"
    assert seen == {"before": seen["before"], "layers": [1], "lbfgs": [1],
                    "after": seen["before"]}


FORKED_CHILD = """
import json, multiprocessing, warnings
import numpy as np
import fastnn
from fastnn._threads import thread_source

fastnn.set_num_threads(2)
net = fastnn.Network([fastnn.Linear(20, 512), fastnn.ReLU(), fastnn.Linear(512, 3)], seed=0)
rng = np.random.default_rng(0)
x = rng.standard_normal((4096, 20)).astype(np.float32)
y = rng.integers(0, 3, 4096)
expected = net.predict_proba(x)  # 64 blocks of 64 rows for two threads: OpenMP's team runs

def child(queue):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastnn.set_num_threads(2)
    same = bool((net.predict_proba(x) == expected).all())
    net.fit(x, y, epochs=1, batch_size=256, progress=False, seed=0)  # steps in four parts
    messages = [str(w.message) for w in caught]
    queue.put([fastnn.get_num_threads(), thread_source(), same, messages])

context = multiprocessing.get_context("fork")
queue = context.Queue()
process = context.Process(target=child, args=(queue,))
process.start()
try:
    print(json.dumps(queue.get(timeout=60)))  # a hung child leaves it empty
finally:
    process.join(10)
    if process.is_alive():
        process.kill()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_after_threads_ran_predicts_and_fits_on_one_thread():
    _two_cores()
    out, _ = _child(FORKED_CHILD, timeout=120)
    threads, source, same, caught = json.loads(out.splitlines()[-1])
    assert (threads, source, same) == (1, "fork", True)
    assert len(caught) == 1 and "set_num_threads(2): fastnn runs on 1 thread in a process " \
        "made by fork" in caught[0]
