"""``fastnn bench --engines``: the compiled engine's epoch for each kind of network it trains,
as a ratio to the plain softmax cross-entropy epoch.

All on 20,000 MNIST rows, batch 32, 784-128-10 (or -1) with a sigmoid hidden layer, SGD with
momentum 0.9, float32; cases interleaved (each repeat starts one case later), medians of the
repeats; at the default thread count (adaptive, as a fit runs) and at 1 thread. Target: every
ratio <= 1.25.
"""
import time

from .machine import blas_in_use, machine_info, set_threads, versions
from .report import fmt_time, print_result, progress
from .timing import OtherLoad

ROWS = 20_000
BATCH = 32
TARGET = 1.25
CASES = ("softmax", "dropout", "mse", "bce", "bce-multilabel", "weighted", "leaky_relu", "gelu")
DESCRIPTIONS = {
    "softmax": "softmax cross-entropy (the base)",
    "dropout": "Dropout(0.2) after the hidden layer",
    "mse": "MSE regression 784-128-1",
    "bce": "binary cross-entropy 784-128-1",
    "bce-multilabel": "binary cross-entropy 784-128-10, one-hot targets",
    "weighted": "softmax cross-entropy, sample weights",
    "leaky_relu": "LeakyReLU hidden layer",
    "gelu": "GELU hidden layer",
}


def _case(name, x, y):
    """(layers, loss, targets, sample weights or None) of one case."""
    import numpy as np

    import fastnn

    hidden = {"leaky_relu": fastnn.LeakyReLU, "gelu": fastnn.GELU}.get(name, fastnn.Sigmoid)
    outputs = 1 if name in ("mse", "bce") else 10
    layers = [fastnn.Linear(784, 128), hidden()]
    layers += [fastnn.Dropout(0.2)] if name == "dropout" else []
    layers.append(fastnn.Linear(128, outputs))
    if name == "mse":
        return layers, fastnn.MSE(), (y / 9).astype(np.float32).reshape(-1, 1), None
    if name == "bce":
        return layers, fastnn.BinaryCrossEntropy(), (y % 2).astype(np.float32).reshape(-1, 1), None
    if name == "bce-multilabel":
        return layers, fastnn.BinaryCrossEntropy(), np.eye(10, dtype=np.float32)[y], None
    weights = None
    if name == "weighted":
        weights = np.random.default_rng(0).uniform(0.5, 2.0, len(y)).astype(np.float32)
    return layers, fastnn.SoftmaxCrossEntropy(), y, weights


def epoch_seconds(name, x, y):
    """Seconds of one compiled epoch of case ``name`` over all of x (after a short warm-up)."""
    import numpy as np

    import fastnn
    from .._fastpath import CompiledEngine

    layers, loss, targets, weights = _case(name, x, y)
    net = fastnn.Network(layers, loss=loss, input_scale=1 / 255, seed=0)
    engine = CompiledEngine(net, fastnn.SGD(lr=0.01, momentum=0.9), x, targets, weights, BATCH)
    order = np.random.default_rng(0).permutation(len(x))
    with engine.blas_scope_for(net, BATCH):  # as fit holds it
        engine.run_epoch(order[:BATCH * 8], net._rng, None, RuntimeError)
        started = time.perf_counter()
        engine.run_epoch(order, net._rng, None, RuntimeError)
        return time.perf_counter() - started


def measure(x, y, repeats):
    """case -> median seconds, interleaved over ``repeats`` rounds."""
    import numpy as np

    times = {name: [] for name in CASES}
    for r in range(repeats):
        for name in CASES[r % len(CASES):] + CASES[:r % len(CASES)]:
            times[name].append(epoch_seconds(name, x, y))
    return {name: float(np.median(values)) for name, values in times.items()}


def run_engines(args):
    """Measure, print the table (or JSON); returns the exit status (0)."""
    import numpy as np

    import fastnn
    from ..datasets import load_mnist

    started, t0, load = time.time(), time.perf_counter(), OtherLoad()
    (x, y), _ = load_mnist()
    x, y = np.ascontiguousarray(x[:ROWS]), y[:ROWS]
    repeats = args.repeats or (2 if args.quick else 5)
    # The default count first: until set_num_threads is called, the engine picks per chunk of
    # steps the faster of it and 1 thread (fastnn._fastpath.ThreadChooser), as a fit does.
    result = {"engines": [], "targets": [], "started": started, "machine": machine_info(),
              "versions": versions(), "blas": {}, "rows": ROWS, "batch_size": BATCH,
              "repeats": repeats}
    for n in [None, *(args.threads or [1])]:
        if n is None:
            label = f"default ({fastnn.get_num_threads()}, adaptive)"
        else:  # the count used: n capped at the cores this process may use
            label = f"{set_threads(n)} (set_num_threads)"
            if label in result["blas"]:
                continue
        result["blas"][label] = blas_in_use()
        progress(f"engine epochs, threads {label}: {', '.join(CASES)}")
        medians = measure(x, y, repeats)
        for name in CASES:
            ratio = medians[name] / medians["softmax"]
            result["engines"].append({"threads": label, "case": name, "seconds": medians[name],
                                      "ratio": ratio})
            if name != "softmax":
                result["targets"].append({"threads": label, "case": name, "ratio": ratio,
                                          "bound": TARGET, "met": ratio <= TARGET})
    result["seconds"] = time.perf_counter() - t0
    result["other_load"] = load.share()
    return print_result(args, format_engines(result), result, 0)


def format_engines(result):
    labels = list(dict.fromkeys(row["threads"] for row in result["engines"]))
    rows = {(row["threads"], row["case"]): row for row in result["engines"]}
    lines = [f"Compiled engine epochs: {result['rows']:,} MNIST rows, batch {result['batch_size']}, "
             f"medians of {result['repeats']}; ratio to the softmax epoch (target <= {TARGET})",
             f"{'network':50s}" + "".join(f"  {label:>28s}" for label in labels)]
    for name in CASES:
        cells = []
        for label in labels:
            row = rows[(label, name)]
            mark = "" if name == "softmax" or row["ratio"] <= TARGET else " !"
            cell = f"{fmt_time(row['seconds'])}  {row['ratio']:.2f}x{mark}"
            cells.append(f"  {cell:>28s}")
        lines.append(f"{DESCRIPTIONS[name]:50s}" + "".join(cells))
    met = sum(t["met"] for t in result["targets"])
    lines.append(f"targets met: {met} of {len(result['targets'])}")
    return "\n".join(lines)
