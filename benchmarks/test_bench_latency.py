"""One predict_proba call on 1, 8 and 256 rows of MNIST 784-128-10 (float32, 1 thread): fastnn,
a NumPy forward pass, PyTorch and ONNX Runtime (each skipped when missing), the contenders of
``fastnn bench --latency``. Each test first checks the contender's probabilities against
fastnn's. pytest-benchmark's min/median are per call; ``fastnn bench --latency`` reports p99 too."""
import numpy as np
import pytest

from fastnn.bench import latency as bench_latency
from fastnn.bench.machine import set_threads
from fastnn.bench.training import INIT_SEED, fastnn_network
from fastnn.datasets import load_mnist

NEEDS = {"torch": "torch", "onnxruntime": "onnxruntime"}


@pytest.fixture(scope="module")
def funcs():
    set_threads(1)
    return bench_latency.contenders(fastnn_network(INIT_SEED))


@pytest.mark.parametrize("contender", ["fastnn", "numpy", "torch", "onnxruntime"])
@pytest.mark.parametrize("rows", bench_latency.ROWS)
def test_latency(benchmark, funcs, rows, contender):
    if contender in NEEDS:
        pytest.importorskip(NEEDS[contender])
    _, (x_test, _) = load_mnist()
    x = np.ascontiguousarray(x_test[:rows], dtype=np.float32)
    bench_latency.check_agreement({"fastnn": funcs["fastnn"], contender: funcs[contender]}, x)
    benchmark.group = f"predict_proba {rows} row(s), 1 thread"
    benchmark(funcs[contender], x)
