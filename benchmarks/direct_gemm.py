"""fastnn's direct products (src_c/direct_gemm.h) against BLAS, switched in one process.

Two parts (--part, default both):

* products: each product shape of the two estimator benchmarks and a few more of each shape
  class, through ``fastnn._core.gemm`` (the product the engine and the ops make), with the
  direct kernels on and off, interleaved, BLAS held at one thread (as the training loop holds
  it); microseconds of the calling thread's CPU time per call (the Python call included; CPU
  time, so that other processes on the machine disturb it less).
* fits: the estimators of ``benchmarks/sklearn_epoch.py`` (regression: MLPRegressor, 10 epochs
  of Adam on 200,000 x 8 float64 rows; mnist: MLPClassifier, one epoch at batch 32), fitted
  with the direct kernels on and off in turn (the order rotates), medians of the wall time and
  of the calling thread's CPU time (the regressor's steps run on the calling thread).

Run it once as it is and once with ``OPENBLAS_CORETYPE=Haswell`` (AVX2 kernels) to see both
kinds of OpenBLAS kernels. The rest of the product strategy (``FASTNN_GEMM``) stays as chosen.

    python benchmarks/direct_gemm.py --part products
    OPENBLAS_CORETYPE=Haswell python benchmarks/direct_gemm.py --part fits --repeats 5
    OPENBLAS_CORETYPE=Haswell python benchmarks/direct_gemm.py --part fits --task mnist \
        --classes taken+blocked taken     # the "blocked" class on and off, BLAS alone last

Not a pytest file. Run it on a quiet machine (see `uptime`).
"""
import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

if __name__ == "__main__":  # run from a checkout: use the fastnn built in place beside this folder
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# (dtype, "NN" / "NT" / "TN": whether A and B are transposed, m, n, k)
PRODUCTS = [
    # the regressor's step (8-100-1, batch 200, float64)
    ("float64", "NN", 200, 100, 8), ("float64", "NN", 200, 1, 100), ("float64", "NT", 200, 100, 1),
    ("float64", "TN", 100, 1, 200), ("float64", "TN", 8, 100, 200),
    # the classifier's step (784-100-10, batch 32, float32, in 4 parts)
    ("float32", "NN", 32, 100, 196), ("float32", "NN", 32, 10, 25), ("float32", "NT", 32, 25, 10),
    ("float32", "TN", 25, 10, 32), ("float32", "TN", 196, 100, 32),
    # the 784-128-10 step at batch 32 in 4 parts (the "blocked" class)
    ("float32", "NN", 32, 128, 196), ("float32", "TN", 196, 128, 32), ("float64", "NN", 32, 128, 196),
    ("float64", "TN", 196, 128, 32),
    # its output layer (128->10) in 4 parts at batch 128 and 32
    ("float32", "NN", 128, 10, 32), ("float32", "TN", 32, 10, 128), ("float32", "NN", 32, 10, 32),
    ("float32", "TN", 32, 10, 32),
    # more of each class
    ("float32", "NN", 128, 128, 4), ("float32", "NN", 128, 128, 16), ("float64", "NN", 128, 128, 16),
    ("float32", "NN", 128, 1, 784), ("float32", "TN", 784, 1, 128), ("float32", "NT", 128, 784, 1),
    ("float32", "NN", 1, 128, 784), ("float32", "TN", 1, 128, 784),
]


def _core_module():
    from fastnn._native import core  # configures the core (FASTNN_GEMM, FASTNN_SIMD)

    return core


def products(repeats):
    from fastnn._threads import blas_threads_limited

    with blas_threads_limited(1):  # as in the training loop; a product split over BLAS threads
        _products(repeats)         # would also hide its other threads' CPU time


def _products(repeats):
    core = _core_module()
    previous = core.direct_gemm_classes()
    rng = np.random.default_rng(0)
    core.set_direct_gemm(set(core.DIRECT_GEMM_CLASSES))  # every class, taken or not
    print(f"{'product':>28}  class       form   direct us   BLAS us   BLAS / direct")
    for dtype, trans, m, n, k in PRODUCTS:
        ta, tb = trans[0] == "T", trans[1] == "T"
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
        c = np.empty((m, n), dtype)
        form = core.direct_gemm_form(ta, tb, m, n, k, a.shape[1], b.shape[1])
        kind = core.direct_gemm_class(ta, tb, m, n, k)
        calls = max(20, int(2e6 / (m * n * k + 2000)))
        times = {True: [], False: []}
        for r in range(repeats):
            for on in (True, False) if r % 2 == 0 else (False, True):
                core.set_direct_gemm(set(core.DIRECT_GEMM_CLASSES) if on else False)
                t0 = time.thread_time()
                for _ in range(calls):
                    core.gemm(a, b, c, ta, tb)
                times[on].append((time.thread_time() - t0) / calls * 1e6)
        core.set_direct_gemm(previous)
        direct, blas = statistics.median(times[True]), statistics.median(times[False])
        print(f"{dtype} {trans} {m:4d}x{n:4d}x{k:4d}  {kind or '-':10}  {form or '-':5}  "
              f"{direct:9.2f}  {blas:8.2f}   {blas / direct:5.2f}x")


def fits(repeats, tasks, configs):
    """configs: {label: what core.set_direct_gemm takes (True, False or a set of class names)}."""
    import sklearn_epoch
    from fastnn.datasets import load_mnist
    from fastnn.sklearn import MLPClassifier, MLPRegressor

    core = _core_module()
    previous = core.direct_gemm_classes()
    cases = {}
    if "regression" in tasks:
        X, y, _, _ = sklearn_epoch.regression_data()
        cases["regression"] = (lambda: MLPRegressor(hidden_layer_sizes=(100,), solver="adam", max_iter=10,
                                                    random_state=0, n_iter_no_change=10 ** 6), X, y)
    if "mnist" in tasks:
        (x_train, y_train), _ = load_mnist()
        cases["mnist"] = (lambda: MLPClassifier(hidden_layer_sizes=(100,), solver="sgd", batch_size=32,
                                                learning_rate_init=0.01, momentum=0.9, max_iter=1,
                                                random_state=0, n_iter_no_change=10 ** 6),
                          x_train.astype(np.float32) / np.float32(255), y_train)
    labels = list(configs)
    for name, (make, X, y) in cases.items():
        times = {label: [] for label in labels}
        cpu = {label: [] for label in labels}
        for r in range(repeats + 1):  # the first round warms up
            for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                core.set_direct_gemm(configs[label])
                time.sleep(sklearn_epoch.POOL_IDLE_PAUSE)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0, c0 = time.perf_counter(), time.thread_time()
                    make().fit(X, y)
                    if r:
                        times[label].append(time.perf_counter() - t0)
                        cpu[label].append(time.thread_time() - c0)
        core.set_direct_gemm(previous)
        base, base_cpu = statistics.median(times[labels[-1]]), statistics.median(cpu[labels[-1]])
        print(f"{name}: medians of {repeats} (wall time; the calling thread's CPU time, which other "
              "processes disturb less), and the last one's over each")
        for label in labels:
            t, c = statistics.median(times[label]), statistics.median(cpu[label])
            print(f"  {label:>24}: {t:.3f} s {base / t:5.2f}x; CPU {c:.3f} s {base_cpu / c:5.2f}x  "
                  f"({' '.join(f'{v:.3f}' for v in times[label])})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["products", "fits", "both"], default="both")
    parser.add_argument("--task", choices=["regression", "mnist", "both"], default="both", help="fits: which")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--classes", nargs="+", default=["taken"],
                        help="fits: the direct classes to time against BLAS alone: 'taken' (the "
                             "small classes every strategy but plain takes), or class names joined "
                             "by '+' (outer+one_column, taken+blocked), one configuration per word")
    args = parser.parse_args(argv)
    from fastnn import _machine

    print(f"BLAS core {[lib.get('architecture') for lib in _machine.blas_called()]}, strategy "
          f"{_machine.gemm_strategy()}, load average {os.getloadavg()[0]:.2f}")
    if args.part in ("products", "both"):
        products(args.repeats)
    if args.part in ("fits", "both"):
        from fastnn._native import core
        taken = core.direct_gemm_taken()
        configs = {label: set().union(*(taken if name == "taken" else {name} for name in label.split("+")))
                   for label in args.classes}
        configs["BLAS only"] = False
        fits(args.repeats, ["regression", "mnist"] if args.task == "both" else [args.task], configs)


if __name__ == "__main__":
    main()
