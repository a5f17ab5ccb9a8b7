"""Four measurements of one native MNIST training epoch (784-128-10 sigmoid, SGD momentum 0.9,
float32), each interleaved, medians of --repeats:

* ``after-numpy``: an epoch at 2 threads right after numpy BLAS work (three 1024x1024 products at
  2 threads, as a notebook cell before the fit would run) against one after 0.3 s of rest
  (target: at most 1.15x). numpy's OpenBLAS keeps a worker spinning for ~0.1 s after a call;
  a threaded fit ends those idle workers when it starts (fastnn._blas_pools).
* ``parts``: an epoch at 1 thread with the work cut into 1, 2 and 4 parts
  (fastnn._fastpath.N_PARTS; 4, the default, makes the weights independent of the thread count).
* ``zero-inputs``: an epoch at 1 and 2 threads, batch 32 and 128, with the input layer's products
  made from the nonzero inputs alone (MNIST's pixels are mostly 0) and as dense products, and
  whether the weights came out the same.
* ``strategies``: an epoch at 1 and 2 threads, batch 32 and 128, with each product strategy
  (fastnn._machine, FASTNN_GEMM) the BLAS core allows: "blocked" against "direct" on kernels
  that pack every call, "tiled" against "direct" on the others.

    python benchmarks/native_epoch.py after-numpy
    OPENBLAS_CORETYPE=Haswell python benchmarks/native_epoch.py parts   # the AVX2 kernels
    OPENBLAS_CORETYPE=Haswell python benchmarks/native_epoch.py strategies --repeats 9
    python benchmarks/native_epoch.py strategies --pair tiled blocked
    OPENBLAS_CORETYPE=Haswell python benchmarks/native_epoch.py zero-inputs

Not a pytest file. Run it on a quiet machine.
"""
import argparse
import time

import numpy as np

import fastnn
from fastnn import _fastpath, _machine
from fastnn.datasets import load_mnist

GEMM_STRATEGIES = _machine.GEMM_CHOICES[1:]


def epoch(x, y, batch, before=None, keep=None):
    """Seconds of one epoch of a fresh network; ``before()`` runs first, untimed; ``keep``: a
    list that receives copies of the trained parameters."""
    net = fastnn.Network([fastnn.Linear(784, 128), fastnn.Sigmoid(), fastnn.Linear(128, 10)],
                         input_scale=1 / 255, seed=0)
    if before is not None:
        before()
    started = time.perf_counter()
    net.fit(x, y, epochs=1, batch_size=batch, progress=False, seed=0,
            optimizer=fastnn.SGD(lr=0.1, momentum=0.9))
    seconds = time.perf_counter() - started
    if keep is not None:
        keep.extend(p.copy() for p in net.parameters())
    return seconds


def after_numpy(x, y, repeats):
    fastnn.set_num_threads(2)
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    busy = lambda: [a @ a for _ in range(3)]  # noqa: E731
    rest = lambda: time.sleep(0.3)  # noqa: E731
    for batch in (32, 128):
        alone, after = [], []
        for _ in range(repeats):
            alone.append(epoch(x, y, batch, rest))
            after.append(epoch(x, y, batch, busy))
        print(f"batch {batch}: alone {np.median(alone):.3f} s, right after numpy "
              f"{np.median(after):.3f} s, ratio {np.median(after) / np.median(alone):.2f} (target <= 1.15)")


def parts(x, y, repeats):
    fastnn.set_num_threads(1)
    default = _fastpath.N_PARTS
    try:
        for batch in (32, 128):
            times = {n: [] for n in (1, 2, 4)}
            for _ in range(repeats):
                for n, seconds in times.items():
                    _fastpath.N_PARTS = n
                    seconds.append(epoch(x, y, batch))
            print(f"batch {batch}: " + ", ".join(f"{n} part(s) {np.median(v):.3f} s" for n, v in times.items()))
    finally:
        _fastpath.N_PARTS = default


def strategies(x, y, repeats, pair=None):
    from fastnn._native import core

    chosen, _ = _machine.gemm_strategy()
    pair = pair or ((chosen, "direct") if chosen != "direct" else ("direct", "plain"))
    print(f"BLAS core {[lib.get('architecture') for lib in _machine.blas_called()]}, "
          f"SIMD path {core.get_simd_path()}: {pair[0]} against {pair[1]}")
    try:
        for threads in (1, 2):
            fastnn.set_num_threads(threads)
            for batch in (32, 128):
                times = {name: [] for name in pair}
                for r in range(repeats):
                    for name in pair if r % 2 == 0 else pair[::-1]:
                        _machine.set_gemm_strategy(core, name)
                        time.sleep(0.15)  # the other run's idle BLAS workers go to sleep
                        times[name].append(epoch(x, y, batch))
                first, second = (np.median(times[name]) for name in pair)
                print(f"{threads} thread(s), batch {batch}: {pair[0]} {first:.3f} s, {pair[1]} {second:.3f} s, "
                      f"{pair[1]} / {pair[0]} {second / first:.2f}")
    finally:
        _machine.set_gemm_strategy(core, chosen)


def zero_inputs(x, y, repeats):
    """The input layer from the nonzero inputs alone against dense products, in the chosen
    strategy; the weights of the two must be the same bits wherever the dense products run in
    fastnn's own kernels (the blocked strategy at batch 32)."""
    from fastnn._native import core

    chosen, _ = _machine.gemm_strategy()
    print(f"BLAS core {[lib.get('architecture') for lib in _machine.blas_called()]}, "
          f"SIMD path {core.get_simd_path()}, strategy {chosen}; MNIST inputs "
          f"{np.count_nonzero(x) / x.size:.1%} nonzero")
    try:
        for threads in (1, 2):
            fastnn.set_num_threads(threads)
            for batch in (32, 128):
                times, weights = {True: [], False: []}, {}
                for r in range(repeats):
                    for sparse in (True, False) if r % 2 == 0 else (False, True):
                        core.set_sparse_input(sparse)
                        weights[sparse] = []
                        times[sparse].append(epoch(x, y, batch, keep=weights[sparse]))
                on, off = np.median(times[True]), np.median(times[False])
                same = all(np.array_equal(a, b) for a, b in zip(weights[True], weights[False]))
                print(f"{threads} thread(s), batch {batch}: nonzero inputs {on:.3f} s, dense {off:.3f} s, "
                      f"dense / nonzero {off / on:.2f}, same weights: {same}")
    finally:
        _machine.set_gemm_strategy(core, chosen)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measure", choices=("after-numpy", "parts", "strategies", "zero-inputs"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pair", nargs=2, choices=GEMM_STRATEGIES, metavar="STRATEGY",
                        help="strategies: the two product strategies to compare (default: the chosen one "
                             "against direct)")
    args = parser.parse_args()
    (x, y), _ = load_mnist()
    if args.measure == "strategies":
        strategies(x, y, args.repeats, args.pair)
    else:
        {"after-numpy": after_numpy, "parts": parts, "zero-inputs": zero_inputs}[args.measure](x, y, args.repeats)


if __name__ == "__main__":
    main()
