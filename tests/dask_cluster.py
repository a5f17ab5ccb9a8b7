"""A real Dask cluster on 127.0.0.1 for the tests: a ``dask scheduler`` process and two
single-thread ``dask worker`` processes, started here and stopped in the fixture's finaliser."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

WORKERS = 2


def _dask_command():
    """The ``dask`` command of this interpreter's environment (else the one on PATH), or None."""
    script = os.path.join(os.path.dirname(sys.executable), "dask")
    return script if os.path.exists(script) else shutil.which("dask")


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory):
    """The address (tcp://127.0.0.1:PORT) of a running scheduler with two workers."""
    pytest.importorskip("distributed")
    dask = _dask_command()
    if not dask:
        pytest.skip("the dask command is not installed")
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = str(folder / "scheduler.json")
    common = ["--no-dashboard"]
    processes = []

    def start(args, name):
        log = open(folder / f"{name}.log", "w")
        processes.append(subprocess.Popen([dask, *args],
                                          stdout=log, stderr=subprocess.STDOUT, cwd=folder))
        log.close()

    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file",
               scheduler_file, *common], "scheduler")
        address = _wait_for_address(scheduler_file, processes[0])
        for i in range(WORKERS):
            start(["worker", address, "--nthreads", "1", "--host", "127.0.0.1", *common],
                  f"worker{i}")
        from distributed import Client
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(WORKERS, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_address(path, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with status {process.returncode}")
        try:
            with open(path) as f:
                return json.load(f)["address"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    raise RuntimeError("dask scheduler did not start")
