"""MNIST epochs of fastnn.sklearn.MLPClassifier vs sklearn.neural_network.MLPClassifier.

Both estimators get the same settings (solver="sgd", Nesterov momentum, the same lr, alpha,
batch size, hidden layer and random_state) and the same float32 inputs scaled to [0, 1]. Each
fit is timed as a whole (input validation included) and followed by the test accuracy.

    python benchmarks/sklearn_epoch.py                 # 1 epoch, then 3 epochs
    python benchmarks/sklearn_epoch.py --epochs 1 --repeats 5

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
    return dict(hidden_layer_sizes=(args.hidden,), activation="relu", solver="sgd",
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
    parser.add_argument("--repeats", type=int, default=3, help="fastnn fits per setting (median)")
    parser.add_argument("--sklearn-repeats", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import sklearn
    from sklearn.neural_network import MLPClassifier as SkMLP

    import fastnn
    from fastnn.datasets import load_mnist
    from fastnn.sklearn import MLPClassifier as FastMLP

    (x_train, y_train), (x_test, y_test) = load_mnist()
    X = x_train.astype(np.float32) / np.float32(255)
    X_test = x_test.astype(np.float32) / np.float32(255)
    print(f"fastnn {fastnn.__version__}, scikit-learn {sklearn.__version__}, numpy "
          f"{np.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"MNIST {X.shape} float32 in [0, 1]; hidden=({args.hidden},) relu, sgd lr={args.lr} "
          f"momentum=0.9 nesterov, alpha=1e-4, batch={args.batch_size}, "
          f"random_state={args.seed}")
    for epochs in args.epochs:
        settings = _settings(args, epochs, args.seed)
        fast = [_run(lambda: FastMLP(**settings), X, y_train, X_test, y_test)
                for _ in range(args.repeats)]
        sk = [_run(lambda: SkMLP(**settings), X, y_train, X_test, y_test)
              for _ in range(args.sklearn_repeats)]
        t_fast = statistics.median(s for s, _ in fast)
        t_sk = statistics.median(s for s, _ in sk)
        print(f"{epochs} epoch(s): fastnn {t_fast:.3f} s (test acc {fast[0][1]:.4f}), "
              f"scikit-learn {t_sk:.3f} s (test acc {sk[0][1]:.4f}), "
              f"speed-up {t_sk / t_fast:.1f}x")


if __name__ == "__main__":
    main()
