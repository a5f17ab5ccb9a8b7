"""A native training epoch at 2 threads right after numpy BLAS work, against the same epoch after
a rest (target: at most 1.15x).

numpy's OpenBLAS keeps a worker spinning on a core for ~0.1 s after a multithreaded call; an
epoch that starts meanwhile shares the cores with it. MNIST 784-128-10 sigmoid, SGD momentum 0.9,
float32, batch 32 and 128; the two cases alternate, medians of --repeats.

    python benchmarks/after_numpy_epoch.py
    OPENBLAS_CORETYPE=Haswell python benchmarks/after_numpy_epoch.py   # the AVX2 kernels

Not a pytest file. Run it on a quiet machine.
"""
import argparse
import time

import numpy as np

import fastnn
from fastnn.datasets import load_mnist


def epoch(x, y, batch, after_numpy, a):
    net = fastnn.Network([fastnn.Linear(784, 128), fastnn.Sigmoid(), fastnn.Linear(128, 10)],
                         input_scale=1 / 255, seed=0)
    if after_numpy:
        for _ in range(3):
            a @ a  # numpy's OpenBLAS at 2 threads, as a notebook cell before the fit would
    else:
        time.sleep(0.3)  # its workers are asleep again
    started = time.perf_counter()
    net.fit(x, y, epochs=1, batch_size=batch, progress=False, seed=0,
            optimizer=fastnn.SGD(lr=0.1, momentum=0.9))
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    (x, y), _ = load_mnist()
    fastnn.set_num_threads(2)
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    for batch in (32, 128):
        solo, after = [], []
        for _ in range(args.repeats):
            solo.append(epoch(x, y, batch, False, a))
            after.append(epoch(x, y, batch, True, a))
        print(f"batch {batch}: alone {np.median(solo):.3f} s, right after numpy "
              f"{np.median(after):.3f} s, ratio {np.median(after) / np.median(solo):.2f} (target <= 1.15)")


if __name__ == "__main__":
    main()
