"""MNIST epochs of fastnn.sklearn.MLPClassifier vs sklearn.neural_network.MLPClassifier.

Both estimators get the same settings (solver="sgd" with Nesterov momentum by default, or
--solver adam; the same lr, alpha, batch size, hidden layer and random_state) and the same
inputs scaled to [0, 1] (float32 by default). Each fit is timed as a whole (input validation
included) and followed by the test accuracy.

    python benchmarks/sklearn_epoch.py               # 1 epoch, then 3 epochs; seeds 0 1 2
    python benchmarks/sklearn_epoch.py --epochs 1 --seeds 0 1 2 3 4
    python benchmarks/sklearn_epoch.py --solver adam --lr 0.001 --epochs 1

Not a pytest file (pytest collects test_*.py only). Run it on a quiet machine (see `uptime`).
"""
import argparse
import os
import statistics
import time
import warnings

import numpy as np

if __name__ == "__main__":  # run from a checkout: use the fastnn built in place beside this folder
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _settings(args, epochs, seed):
    return dict(hidden_layer_sizes=(args.hidden,), activation="relu", solver=args.solver,
                alpha=1e-4, batch_size=args.batch_size, learning_rate_init=args.lr,
                momentum=0.9, nesterovs_momentum=True, max_iter=epochs, shuffle=True,
                random_state=seed, n_iter_no_change=10 ** 6)


def _run(make, X, y, X_test, y_test):
    est = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is the point here
        t0 = time.perf_counter()
        est.fit(X, y)
        seconds = time.perf_counter() - t0
    return seconds, float(est.score(X_test, y_test))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="one timed fit of each library per seed")
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--solver", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--input-dtype", choices=["float32", "float64"], default="float32",
                        help="dtype of the scaled images given to both estimators (fastnn's "
                             "estimator converts to its own dtype, float32 by default)")
    parser.add_argument("--fastnn-dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--n-threads", type=int, default=None,
                        help="fastnn's n_threads (default: fastnn's own setting)")
    args = parser.parse_args(argv)

    import sklearn
    from sklearn.neural_network import MLPClassifier as SkMLP

    import fastnn
    from fastnn.datasets import load_mnist
    from fastnn.sklearn import MLPClassifier as FastMLP

    (x_train, y_train), (x_test, y_test) = load_mnist()
    dtype = np.dtype(args.input_dtype)
    X = x_train.astype(dtype) / dtype.type(255)
    X_test = x_test.astype(dtype) / dtype.type(255)
    fast_extra = dict(dtype=args.fastnn_dtype, n_threads=args.n_threads)
    print(f"fastnn {fastnn.__version__}, scikit-learn {sklearn.__version__}, numpy "
          f"{np.__version__}, {os.cpu_count()} CPUs")
    print(f"MNIST {X.shape} {dtype.name} in [0, 1]; fastnn {fast_extra}; "
          f"hidden=({args.hidden},) relu, {args.solver} lr={args.lr}"
          f"{' momentum=0.9 nesterov' if args.solver == 'sgd' else ''}, alpha=1e-4, "
          f"batch={args.batch_size}, random_state in {args.seeds}")
    libraries = {"fastnn": lambda settings: FastMLP(**settings, **fast_extra),
                 "scikit-learn": lambda settings: SkMLP(**settings)}
    for epochs in args.epochs:
        runs, load = {}, [os.getloadavg()[0]]
        # One library at a time, each after an untimed warm-up fit: right after scikit-learn's
        # fits OpenBLAS's idle threads still spin, fastnn's first 2-thread probe is slow, and
        # its native loop then keeps 1 thread for the whole (short) fit.
        for name, make in libraries.items():
            _run(lambda: make(_settings(args, 1, 0)), X, y_train, X_test, y_test)  # warm-up
            runs[name] = [_run(lambda: make(_settings(args, epochs, seed)), X, y_train,
                               X_test, y_test) for seed in args.seeds]
            load.append(os.getloadavg()[0])
        t = {k: statistics.median(s for s, _ in v) for k, v in runs.items()}
        print(f"{epochs} epoch(s), load average {min(load):.2f}..{max(load):.2f}:")
        for name, v in runs.items():
            accs = " ".join(f"{a:.4f}" for _, a in v)
            print(f"  {name:>12}: median {t[name]:7.3f} s   test acc mean "
                  f"{statistics.mean(a for _, a in v):.4f} ({accs})")
        print(f"  speed-up {t['scikit-learn'] / t['fastnn']:.1f}x")


if __name__ == "__main__":
    main()
