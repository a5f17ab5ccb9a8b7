"""The default thread count and its limits: set_num_threads, $FASTNN_NUM_THREADS,
$OMP_NUM_THREADS, the CPU affinity, the cgroup CPU quota; the cap and its warning."""
import json
import os
import subprocess
import sys
import warnings

import pytest

import fastnn
from fastnn import _cpulimits

HAS_AFFINITY = hasattr(os, "sched_setaffinity")


def _child(code, env=None, affinity=None):
    """Run ``code`` in a fresh interpreter (optionally pinned to ``affinity`` CPUs first);
    returns its stdout and stderr."""
    environ = {k: v for k, v in os.environ.items()
               if k not in (_cpulimits.FASTNN_ENV, _cpulimits.OMP_ENV)}
    environ.update(env or {})
    prefix = f"import os; os.sched_setaffinity(0, {sorted(affinity)!r}); " if affinity else ""
    done = subprocess.run([sys.executable, "-c", prefix + code], env=environ,
                          capture_output=True, text=True, timeout=60)
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
