"""Fixtures of the pytest-benchmark suites: pinned thread counts and the MNIST training setup.

Run them with ``python -m pytest benchmarks`` (timings; add ``--benchmark-columns=median,iqr``
for a short table) or ``python -m pytest benchmarks --benchmark-disable`` (each body once:
the correctness checks only, as CI does). ``fastnn bench`` is the interleaved, median-of-repeats
comparison of the same cases.
"""
import os

import pytest

from fastnn.bench import machine
from fastnn.bench.training import training_setup


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Pin fastnn's kernels, both OpenBLAS copies (numpy's and scipy's) and torch to 1 or 2
    threads for the test: two unpinned pools on two cores slow each other down many times."""
    machine.set_threads(request.param)
    try:
        yield request.param
    finally:
        machine.set_threads(os.cpu_count() or 1)


@pytest.fixture(scope="session")
def training():
    """fastnn.bench.training.TrainingSetup: MNIST training images (uint8) and labels, starting
    parameters."""
    return training_setup()
