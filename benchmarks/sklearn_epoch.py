"""fastnn.sklearn's estimators vs scikit-learn's, at the same settings, fits interleaved.

Three tasks (--task, default all):

* mnist: MLPClassifier, MNIST scaled to [0, 1] (float32 by default), solver="sgd" with Nesterov
  momentum (or --solver adam), hidden (100,) ReLU, batch 32; time per fit and test accuracy.
* regression: MLPRegressor, 10 epochs of Adam on 200,000 x 8 synthetic rows (a smooth
  nonlinear target plus noise, float64), hidden (100,), batch "auto" (200); time and the R^2
  of 20,000 held-out rows.
* lbfgs: MLPClassifier(solver="lbfgs") on load_digits / 16 (float64), hidden (100,),
  max_iter=200; time and the final loss_ (the two runs take the same iterations, so the
  losses agree to ~1e-12 relative).

Each fit is timed as a whole (input validation included). After an untimed warm-up fit of
each library, the runs alternate between the libraries (fastnn first for even seeds,
scikit-learn first for odd ones), so a change of load hits both; each fit starts 0.15 s after
the previous one ended, as in ``fastnn bench``, so that neither meets the other's spinning BLAS
workers (fastnn right after numpy BLAS work: BENCHMARKS.md, "Neighbours").

    python benchmarks/sklearn_epoch.py --task mnist --epochs 1 --seeds 0 1 2
    python benchmarks/sklearn_epoch.py --task regression --seeds 0 1 2
    python benchmarks/sklearn_epoch.py --task lbfgs --seeds 0 1 2
    python benchmarks/sklearn_epoch.py --task mnist --solver adam --lr 0.001 --epochs 1

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


POOL_IDLE_PAUSE = 0.15


def _fit(make):
    est = make()
    # As fastnn bench does (POOL_IDLE_PAUSE): the other library's BLAS workers spin on a core
    # for ~0.1 s after its fit; each fit starts after they have gone to sleep.
    time.sleep(POOL_IDLE_PAUSE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is the point here
        t0 = time.perf_counter()
        est.fit(*_fit.data)
        seconds = time.perf_counter() - t0
    return seconds, est


def _interleaved(libraries, settings, seeds, measure):
    """{name: [(seconds, figure) per seed]}; measure(est) -> the figure reported beside the time."""
    runs = {name: [] for name in libraries}
    for name, make in libraries.items():  # warm-up
        _fit(lambda: make(settings(seeds[0])))
    for i, seed in enumerate(seeds):
        names = list(libraries) if i % 2 == 0 else list(libraries)[::-1]
        for name in names:
            seconds, est = _fit(lambda: libraries[name](settings(seed)))
            runs[name].append((seconds, measure(est)))
    return runs


def _report(title, runs, figure, fmt):
    t = {k: statistics.median(s for s, _ in v) for k, v in runs.items()}
    print(title)
    for name, v in runs.items():
        figs = " ".join(fmt.format(f) for _, f in v)
        print(f"  {name:>12}: median {t[name]:7.3f} s   {figure} ({figs})")
    print(f"  speed-up {t['scikit-learn'] / t['fastnn']:.1f}x")
    return t


def _libraries(ours, theirs, extra):
    return {"fastnn": lambda settings: ours(**settings, **extra),
            "scikit-learn": lambda settings: theirs(**settings)}


def mnist(args, extra):
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastnn.datasets import load_mnist
    from fastnn.sklearn import MLPClassifier

    (x_train, y_train), (x_test, y_test) = load_mnist()
    dtype = np.dtype(args.input_dtype)
    X = x_train.astype(dtype) / dtype.type(255)
    X_test = x_test.astype(dtype) / dtype.type(255)
    print(f"mnist: {X.shape} {dtype.name} in [0, 1]; hidden=({args.hidden},) relu, "
          f"{args.solver} lr={args.lr}{' momentum=0.9 nesterov' if args.solver == 'sgd' else ''}"
          f", alpha=1e-4, batch={args.batch_size}")
    _fit.data = (X, y_train)
    for epochs in args.epochs:
        def settings(seed, epochs=epochs):
            return dict(hidden_layer_sizes=(args.hidden,), activation="relu", solver=args.solver,
                        alpha=1e-4, batch_size=args.batch_size, learning_rate_init=args.lr,
                        momentum=0.9, nesterovs_momentum=True, max_iter=epochs, shuffle=True,
                        random_state=seed, n_iter_no_change=10 ** 6)
        load = os.getloadavg()[0]
        runs = _interleaved(_libraries(MLPClassifier, SkMLP, extra), settings, args.seeds,
                            lambda est: float(est.score(X_test, y_test)))
        _report(f"  {epochs} epoch(s), load average {load:.2f}..{os.getloadavg()[0]:.2f}:",
                runs, "test accuracy", "{:.4f}")


def regression_data(n_train=200_000, n_test=20_000, seed=0):
    """(X, y, X_test, y_test): 8 standard normal features, y a smooth function of them + noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_train + n_test, 8))
    y = (np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + np.tanh(X[:, 3] - X[:, 4])
         + 0.3 * X[:, 5] ** 2 - 0.2 * X[:, 6] + 0.1 * rng.normal(size=len(X)))
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def regression(args, extra):
    from sklearn.neural_network import MLPRegressor as SkMLP

    from fastnn.sklearn import MLPRegressor

    X, y, X_test, y_test = regression_data()
    print(f"regression: {X.shape} float64 synthetic; hidden=(100,) relu, adam lr=0.001, "
          "alpha=1e-4, batch auto (200), 10 epochs")
    _fit.data = (X, y)

    def settings(seed):
        return dict(hidden_layer_sizes=(100,), solver="adam", max_iter=10, random_state=seed,
                    n_iter_no_change=10 ** 6)
    load = os.getloadavg()[0]
    runs = _interleaved(_libraries(MLPRegressor, SkMLP, extra), settings, args.seeds,
                        lambda est: float(est.score(X_test, y_test)))
    _report(f"  load average {load:.2f}..{os.getloadavg()[0]:.2f}:", runs, "test R^2",
            "{:.4f}")


def lbfgs(args, extra):
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastnn.sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    print(f"lbfgs: load_digits {X.shape} float64 / 16; hidden=(100,) relu, max_iter=200")
    _fit.data = (X, y)

    def settings(seed):
        return dict(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=200, random_state=seed)
    load = os.getloadavg()[0]
    runs = _interleaved(_libraries(MLPClassifier, SkMLP, extra), settings, args.seeds,
                        lambda est: (float(est.loss_), est.n_iter_))
    _report(f"  load average {load:.2f}..{os.getloadavg()[0]:.2f}:", runs,
            "final loss_ (n_iter_)", "{0[0]:.10g} ({0[1]})")
    gaps = [abs(a[1][0] - b[1][0]) / b[1][0] for a, b in zip(runs["fastnn"], runs["scikit-learn"])]
    print(f"  fastnn's final loss vs scikit-learn's: largest relative gap {max(gaps):.2e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["mnist", "regression", "lbfgs", "all"], default="all")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3],
                        help="mnist: epochs per fit (one series per value)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="one timed fit of each library per seed")
    parser.add_argument("--hidden", type=int, default=100, help="mnist: hidden units")
    parser.add_argument("--batch-size", type=int, default=32, help="mnist: batch size")
    parser.add_argument("--solver", choices=["sgd", "adam"], default="sgd", help="mnist: solver")
    parser.add_argument("--lr", type=float, default=0.01, help="mnist: learning_rate_init")
    parser.add_argument("--input-dtype", choices=["float32", "float64"], default="float32",
                        help="mnist: dtype of the scaled images given to both estimators")
    parser.add_argument("--fastnn-dtype", choices=["float32", "float64"], default=None,
                        help="fastnn's dtype (default: the input's, as scikit-learn)")
    parser.add_argument("--n-threads", type=int, default=None,
                        help="fastnn's n_threads (default: fastnn's own setting)")
    args = parser.parse_args(argv)

    import sklearn

    import fastnn

    extra = dict(dtype=args.fastnn_dtype, n_threads=args.n_threads)
    print(f"fastnn {fastnn.__version__}, scikit-learn {sklearn.__version__}, numpy "
          f"{np.__version__}, {os.cpu_count()} CPUs; fastnn {extra}; seeds {args.seeds}")
    tasks = {"mnist": mnist, "regression": regression, "lbfgs": lbfgs}
    for name, task in tasks.items():
        if args.task in (name, "all"):
            task(args, extra)


if __name__ == "__main__":
    main()
