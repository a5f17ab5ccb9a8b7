"""MNIST 784-128-10 training (sigmoid, softmax-CE, SGD lr 0.1 momentum 0.9, float32): one step
and one epoch by fastnn, the NumPy ReferenceMLP, PyTorch (skipped when missing) and the matrix
products alone ("matmul-only", the limit), at batch 16, 32, 128 and 512, 1 and 2 threads.

Every test first trains its contender and the reference from the same start on the same few
batches and checks that weights and loss agree (fastnn.bench.training.check_agreement).

Epochs are full (60000 rows) when timing. With ``--benchmark-disable`` (CI: correctness only)
each body runs once on the first STEPS_WHEN_DISABLED batches instead, to keep the run short.
"""
import itertools
import math

import pytest

from fastnn.bench import training as bench_training

EPOCH_CONTENDERS = ("fastnn", "reference", "torch", "matmul-only")
STEP_CONTENDERS = ("fastnn", "fastnn-layerwise", "reference", "torch", "matmul-only")
STEPS_WHEN_DISABLED = 10


def _checked_trainer(name, setup, batch_size):
    if name == "torch":
        pytest.importorskip("torch")
    # The reference is checked against fastnn, every other contender against the reference.
    bench_training.check_agreement(setup, batch_size, ["fastnn"] if name == "reference" else [name])
    return bench_training.make_trainer(name, setup.params, batch_size)


@pytest.mark.parametrize("name", EPOCH_CONTENDERS)
@pytest.mark.parametrize("batch_size", bench_training.BATCH_SIZES)
def test_epoch(benchmark, threads, training, batch_size, name):
    trainer = _checked_trainer(name, training, batch_size)
    X, y = training.X, training.y
    if benchmark.disabled:
        X, y = X[:STEPS_WHEN_DISABLED * batch_size], y[:STEPS_WHEN_DISABLED * batch_size]
    benchmark.group = f"epoch, batch {batch_size} | {threads} thread(s)"
    benchmark.extra_info.update(contender=name, threads=threads, rows=len(X),
                                steps=-(-len(X) // batch_size))
    seeds = itertools.count(1000)  # one epoch order per round, the same for every contender
    loss, accuracy = benchmark.pedantic(lambda: trainer.epoch(X, y, next(seeds)),
                                        rounds=3, iterations=1, warmup_rounds=1)
    if name != "matmul-only":
        assert math.isfinite(loss) and 0 <= accuracy <= 1


@pytest.mark.parametrize("name", STEP_CONTENDERS)
@pytest.mark.parametrize("batch_size", bench_training.BATCH_SIZES)
def test_step(benchmark, threads, training, batch_size, name):
    trainer = _checked_trainer(name, training, batch_size)
    rows = bench_training.epoch_order(len(training.X), 5)[:batch_size]
    benchmark.group = f"one step, batch {batch_size} | {threads} thread(s)"
    benchmark.extra_info.update(contender=name, threads=threads)
    loss_sum, correct, seen = benchmark(trainer.train_rows, training.X, training.y, rows)
    assert seen == batch_size
    assert name == "matmul-only" or math.isfinite(loss_sum)
