"""What the native loop's fixed split costs: one MNIST epoch (784-128-10 sigmoid, SGD momentum
0.9, float32, 1 thread) with the work cut into 1, 2 and 4 parts (fastnn._fastpath.N_PARTS; 4 is
the default, which makes the weights independent of the thread count). Medians of --repeats,
interleaved.

    python benchmarks/native_parts.py
    OPENBLAS_CORETYPE=Haswell python benchmarks/native_parts.py   # the AVX2 kernels
"""
import argparse
import time

import numpy as np

import fastnn
from fastnn import _fastpath
from fastnn.datasets import load_mnist


def epoch(x, y, parts, batch):
    _fastpath.N_PARTS = parts
    net = fastnn.Network([fastnn.Linear(784, 128), fastnn.Sigmoid(), fastnn.Linear(128, 10)],
                         input_scale=1 / 255, seed=0)
    started = time.perf_counter()
    net.fit(x, y, epochs=1, batch_size=batch, progress=False, seed=0,
            optimizer=fastnn.SGD(lr=0.1, momentum=0.9))
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    (x, y), _ = load_mnist()
    fastnn.set_num_threads(1)
    default = _fastpath.N_PARTS
    try:
        for batch in (32, 128):
            times = {parts: [] for parts in (1, 2, 4)}
            for _ in range(args.repeats):
                for parts, seconds in times.items():
                    seconds.append(epoch(x, y, parts, batch))
            print(f"batch {batch}: " + ", ".join(f"{parts} part(s) {np.median(v):.3f} s"
                                                  for parts, v in times.items()))
    finally:
        _fastpath.N_PARTS = default


if __name__ == "__main__":
    main()
