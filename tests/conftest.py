"""Shared fixtures: seeded generator, float dtypes with tolerances, thread counts, SIMD paths,
product strategies, the command line run in this process."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Deterministic property-based runs: same examples on every run, no timing flakiness.
settings.register_profile(
    "fastnn",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
settings.load_profile("fastnn")

SEED = 20240521

from fastnn.testing import TWIN_TOLERANCES as TOLERANCES


@pytest.fixture
def rng():
    """A fresh, seeded ``np.random.Generator`` for each test."""
    return np.random.default_rng(SEED)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    """Each supported float dtype, as an ``np.dtype``."""
    return np.dtype(request.param)


@pytest.fixture
def tol(dtype):
    """``{"rtol": ..., "atol": ...}`` for the ``dtype`` under test."""
    return dict(TOLERANCES[dtype])


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Run the test with 1 and with 2 threads (``fastnn.set_num_threads``), then restore."""
    import fastnn

    previous = fastnn.get_num_threads()
    fastnn.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        fastnn.set_num_threads(previous)


def _simd_paths():
    try:
        from fastnn import _core
    except ImportError:
        return []
    return list(_core.simd_paths_available())


def pytest_generate_tests(metafunc):
    # The available SIMD paths depend on the machine, so the parameters are found at collection.
    if "simd_path" in metafunc.fixturenames:
        metafunc.parametrize("simd_path", _simd_paths(), indirect=True)


@pytest.fixture
def simd_path(request):
    """Run the test on one SIMD path of the compiled core (every available one), then restore."""
    from fastnn import _core

    previous = _core.get_simd_path()
    _core.set_simd_path(request.param)
    try:
        assert _core.get_simd_path() == request.param
        yield request.param
    finally:
        _core.set_simd_path(previous)


@pytest.fixture(params=["tiled", "blocked", "direct", "plain"])
def gemm_strategy(request):
    """Run the test with each product strategy (fastnn/_machine.py: the small products in
    fastnn's own kernels and the larger ones cut into small BLAS calls, "tiled"; the small ones
    and those up to 2^20 multiply-adds in fastnn's own kernels, "blocked"; the small ones direct
    and one BLAS call for the others, "direct"; one BLAS call per product, "plain"), whichever
    the machine would choose; then restore."""
    from fastnn import _core, _machine

    previous, _ = _machine.gemm_strategy()
    _machine.set_gemm_strategy(_core, request.param)
    try:
        yield request.param
    finally:
        _machine.set_gemm_strategy(_core, previous)


@pytest.fixture
def four_parts(monkeypatch):
    """Small networks train in one part (fastnn._fastpath.n_parts); tests of how the parts and
    the threads share a step's work use this to cut even a small network's steps in four."""
    monkeypatch.setattr("fastnn._fastpath.SMALL_STEP_MACS", 0)


class CliResult:
    """What a command-line run gave: returncode, stdout, stderr, and the JSON on its last line."""

    def __init__(self, status, out, err):
        self.returncode, self.stdout, self.stderr = status, out, err

    @property
    def json(self):
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout.strip().splitlines()[-1])


@pytest.fixture
def cli(capsys):
    """Run the command line in this process; returns a CliResult."""
    from fastnn.cli import main

    def run(*args):
        capsys.readouterr()
        status = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(status, out, err)
    return run


@pytest.fixture
def cli_on_one_cpu():
    """Run the command line in a child process whose CPU affinity is one CPU; returns a
    CliResult. Skips where the affinity cannot be set."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs CPU affinity")
    code = ("import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from fastnn.cli import main; sys.exit(main(sys.argv[1:]))")

    def run(*args, timeout=300):
        result = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                                capture_output=True, text=True, timeout=timeout)
        return CliResult(result.returncode, result.stdout, result.stderr)
    return run
