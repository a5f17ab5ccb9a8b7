"""Epoch time of the compiled engine for each kind of network it trains, as a ratio to the plain
softmax cross-entropy epoch (784-128-10 sigmoid, SGD momentum 0.9, float32, batch 32, 20,000
MNIST rows). Rows, interleaved, medians of --repeats, at 1 thread and at the default count:

* dropout: Dropout(0.2) after the hidden layer;
* mse: MSE regression 784-128-1 (target: the digit / 9);
* bce: binary cross-entropy 784-128-1 (target: the digit is odd);
* bce-multilabel: binary cross-entropy 784-128-10 on one-hot targets;
* weighted: softmax cross-entropy with per-sample weights;
* leaky_relu, gelu: those hidden activations.

Target: every ratio <= 1.25.

    python benchmarks/engine_epoch.py --repeats 5

Not a pytest file. Run it on a quiet machine.
"""
import argparse
import time

import numpy as np

import fastnn
from fastnn._fastpath import CompiledEngine
from fastnn.datasets import load_mnist
from fastnn.losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy

ROWS = 20_000
BATCH = 32


def _hidden(name):
    return {"sigmoid": fastnn.Sigmoid, "leaky_relu": fastnn.LeakyReLU, "gelu": fastnn.GELU}[name]()


def cases(x, y):
    """name -> (layers factory, loss, targets, sample weights or None)."""
    one_hot = np.eye(10, dtype=np.float32)[y]
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(y)).astype(np.float32)

    def mlp(outputs, hidden="sigmoid", dropout=False):
        def make():
            layers = [fastnn.Linear(784, 128), _hidden(hidden)]
            return layers + ([fastnn.Dropout(0.2)] if dropout else []) + [fastnn.Linear(128, outputs)]
        return make

    table = {
        "softmax": (mlp(10), SoftmaxCrossEntropy, y, None),
        "dropout": (mlp(10, dropout=True), SoftmaxCrossEntropy, y, None),
        "mse": (mlp(1), MSE, (y / 9).astype(np.float32).reshape(-1, 1), None),
        "bce": (mlp(1), BinaryCrossEntropy, (y % 2).astype(np.float32).reshape(-1, 1), None),
        "bce-multilabel": (mlp(10), BinaryCrossEntropy, one_hot, None),
        "weighted": (mlp(10), SoftmaxCrossEntropy, y, weights),
    }
    for name in ("leaky_relu", "gelu"):
        table[name] = (mlp(10, hidden=name), SoftmaxCrossEntropy, y, None)
    return table


def epoch_seconds(x, case):
    make, loss, targets, weights = case
    loss = loss()
    loss.check_outputs = lambda n: None  # multi-label binary cross-entropy
    net = fastnn.Network(make(), loss=loss, input_scale=1 / 255, seed=0)
    engine = CompiledEngine(net, fastnn.SGD(lr=0.01, momentum=0.9), x, targets, weights, BATCH)
    order = np.random.default_rng(0).permutation(len(x))
    engine.run_epoch(order[:BATCH * 8], net._rng, None, RuntimeError)  # warm-up
    started = time.perf_counter()
    engine.run_epoch(order, net._rng, None, RuntimeError)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    (x, y), _ = load_mnist()
    x, y = np.ascontiguousarray(x[:ROWS]), y[:ROWS]
    table = cases(x, y)
    # The default count first: until set_num_threads is called the engine picks, per chunk of
    # steps, the faster of it and 1 thread (fastnn._fastpath.ThreadChooser), as a fit does.
    for label in (f"default ({fastnn.get_num_threads()}, adaptive)", "1 (set_num_threads(1))"):
        if label.startswith("1 "):
            fastnn.set_num_threads(1)
        times = {name: [] for name in table}
        names = list(table)
        for repeat in range(args.repeats):
            # interleaved, each repeat starting one row later (no row always runs first)
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:
                times[name].append(epoch_seconds(x, table[name]))
        base = np.median(times["softmax"])
        print(f"threads {label}: softmax epoch {base:.3f} s")
        for name, values in times.items():
            ratio = np.median(values) / base
            print(f"  {name:15s} {np.median(values):.3f} s  ratio {ratio:.2f}"
                  f"{'' if ratio <= 1.25 else '  (above the 1.25 target)'}")


if __name__ == "__main__":
    main()
