"""How close the BLAS products of one MNIST training step come to this core's arithmetic peak.

Prints the single-thread float32 peak of fused multiply-adds, measured by a loop of ten
independent AVX2 FMA chains compiled with the system C compiler (``cc``, x86-64 only), and
for each product of a 784-128-10 step at batch 32 and 128, made by numpy's matmul (numpy's
OpenBLAS, the library fastnn's products call), its GFLOP/s and its share of that peak. Beside the
peak, the rate of one 6x16 register block of multiply-adds over operands packed in L1 (the best
case of an AVX2 product kernel, whose loads come with its FMAs). The peak, the block and every
product are measured once per round, interleaved, and the shares are medians over the rounds, so
a slow phase of a shared machine hits all sides. The products' share of the register block's rate
bounds what any AVX2 product kernel can still win at one thread.

    python benchmarks/product_peak.py
    OPENBLAS_CORETYPE=Haswell python benchmarks/product_peak.py   # the AVX2 kernels

Not a pytest file. Run it on a quiet machine.
"""
import argparse
import ctypes
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

FMA_LOOP = r"""
#include <immintrin.h>
__attribute__((target("avx2,fma"))) float fma_chains(long iters)
{
    /* Distinct starting values: chains that start alike compute alike, and the compiler would
       merge them into one (latency-bound) chain. */
    __m256 a0 = _mm256_set1_ps(0.0f), a1 = _mm256_set1_ps(0.1f), a2 = _mm256_set1_ps(0.2f),
           a3 = _mm256_set1_ps(0.3f), a4 = _mm256_set1_ps(0.4f), a5 = _mm256_set1_ps(0.5f),
           a6 = _mm256_set1_ps(0.6f), a7 = _mm256_set1_ps(0.7f), a8 = _mm256_set1_ps(0.8f),
           a9 = _mm256_set1_ps(0.9f), x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (long t = 0; t < iters; t++) {
        a0 = _mm256_fmadd_ps(a0, x, y); a1 = _mm256_fmadd_ps(a1, x, y); a2 = _mm256_fmadd_ps(a2, x, y);
        a3 = _mm256_fmadd_ps(a3, x, y); a4 = _mm256_fmadd_ps(a4, x, y); a5 = _mm256_fmadd_ps(a5, x, y);
        a6 = _mm256_fmadd_ps(a6, x, y); a7 = _mm256_fmadd_ps(a7, x, y); a8 = _mm256_fmadd_ps(a8, x, y);
        a9 = _mm256_fmadd_ps(a9, x, y);
    }
    return (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9)[0];
}

/* A product kernel's best case: one register block of C (6 rows x 2 vectors, the shape of
   fastnn's direct kernels and of OpenBLAS's Haswell sgemm kernels) over operands already packed
   in the nearest cache (A 6 x 256, B 256 x 16: 22 KB), so that only the loads the block itself
   needs (6 broadcasts and 2 vectors per step of the shared dimension) come with the FMAs. */
#define BLOCK_K 256
static float block_a[6 * BLOCK_K] __attribute__((aligned(64))), block_b[16 * BLOCK_K] __attribute__((aligned(64)));
#define ROW(r, s0, s1) { const __m256 a = _mm256_broadcast_ss(block_a + 6 * p + r); \
                         s0 = _mm256_fmadd_ps(a, b0, s0); s1 = _mm256_fmadd_ps(a, b1, s1); }
__attribute__((target("avx2,fma"), noinline)) static void block(float *c)
{
    __m256 s00 = _mm256_setzero_ps(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00,
           s31 = s00, s40 = s00, s41 = s00, s50 = s00, s51 = s00;
    for (int p = 0; p < BLOCK_K; p++) {
        const __m256 b0 = _mm256_load_ps(block_b + 16 * p), b1 = _mm256_load_ps(block_b + 16 * p + 8);
        ROW(0, s00, s01) ROW(1, s10, s11) ROW(2, s20, s21) ROW(3, s30, s31) ROW(4, s40, s41) ROW(5, s50, s51)
    }
    const __m256 sums[12] = {s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51};
    for (int i = 0; i < 12; i++) _mm256_storeu_ps(c + 8 * i, sums[i]);
}
__attribute__((target("avx2,fma"))) float register_blocks(long reps)
{
    float c[96] = {0}, total = 0;
    for (int i = 0; i < 6 * BLOCK_K; i++) block_a[i] = 1e-3f * (i % 7);
    for (int i = 0; i < 16 * BLOCK_K; i++) block_b[i] = 1e-3f * (i % 5);
    for (long t = 0; t < reps; t++) {
        block(c);
        total += c[t % 96];
    }
    return total;
}
"""
CHAINS, LANES = 10, 8
BLOCK_FLOPS = 2 * 6 * 16 * 256  # one register_blocks repetition


def compiled_loops():
    """The FMA loop and the register-block loop, compiled: two callables f(iterations) -> seconds."""
    tmp = tempfile.mkdtemp()
    source, library = os.path.join(tmp, "peak.c"), os.path.join(tmp, "peak.so")
    with open(source, "w") as f:
        f.write(FMA_LOOP)
    subprocess.run(["cc", "-O3", "-shared", "-fPIC", "-o", library, source], check=True)
    loops = []
    for name in ("fma_chains", "register_blocks"):
        loop = getattr(ctypes.CDLL(library), name)
        loop.argtypes, loop.restype = [ctypes.c_long], ctypes.c_float
        loops.append(lambda iters, loop=loop: _seconds(lambda: loop(iters)))
    return loops


def _seconds(f):
    started = time.perf_counter()
    f()
    return time.perf_counter() - started


def mean_seconds(f, calls=20):
    return _seconds(lambda: [f() for _ in range(calls)]) / calls


def step_products(batch, rng):
    """(name, flops, callable) of the products of one 784-128-10 step as the reference makes them."""
    x = rng.random((batch, 784), dtype=np.float32)
    w1, w2 = rng.random((784, 128), dtype=np.float32), rng.random((128, 10), dtype=np.float32)
    h, dz1 = rng.random((batch, 128), dtype=np.float32), rng.random((batch, 128), dtype=np.float32)
    dz2 = rng.random((batch, 10), dtype=np.float32)
    out1, out2 = np.empty((batch, 128), np.float32), np.empty((batch, 10), np.float32)
    gw1, gw2, gx2 = np.empty_like(w1), np.empty_like(w2), np.empty((batch, 128), np.float32)
    return [
        (f"x @ W1        ({batch}x784 @ 784x128)", 2 * batch * 784 * 128, lambda: np.matmul(x, w1, out=out1)),
        (f"x.T @ dz1     (784x{batch} @ {batch}x128)", 2 * batch * 784 * 128, lambda: np.matmul(x.T, dz1, out=gw1)),
        (f"h @ W2        ({batch}x128 @ 128x10)", 2 * batch * 128 * 10, lambda: np.matmul(h, w2, out=out2)),
        (f"h.T @ dz2     (128x{batch} @ {batch}x10)", 2 * batch * 128 * 10, lambda: np.matmul(h.T, dz2, out=gw2)),
        (f"dz2 @ W2.T    ({batch}x10 @ 10x128)", 2 * batch * 128 * 10, lambda: np.matmul(dz2, w2.T, out=gx2)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    if platform.machine() not in ("x86_64", "AMD64"):
        sys.exit("product_peak.py measures the AVX2 FMA peak: x86-64 only")
    threadpool_limits(1)
    blas = [f"{i['internal_api']} {i['version']} {i.get('architecture')}" for i in threadpool_info()
            if i.get("user_api") == "blas" and "numpy" in i.get("filepath", "")]
    (loop, blocks), iters, reps = compiled_loops(), 2_000_000, 20_000
    rng = np.random.default_rng(0)
    products = {batch: step_products(batch, rng) for batch in (32, 128)}
    peaks, block_rates = [], []
    shares = {(b, name): [] for b, rows in products.items() for name, _, _ in rows}
    totals = {b: [] for b in products}
    for _ in range(args.rounds):  # the peak and every product once per round, so a slow phase hits all
        peak = iters * CHAINS * LANES * 2 / loop(iters) / 1e9
        peaks.append(peak)
        block_rates.append(reps * BLOCK_FLOPS / blocks(reps) / 1e9 / peak)
        for batch, rows in products.items():
            flops = seconds = 0.0
            for name, f, product in rows:
                t = mean_seconds(product)
                shares[batch, name].append(f / t / 1e9 / peak)
                flops, seconds = flops + f, seconds + t
            totals[batch].append(flops / seconds / 1e9 / peak)
    print(f"1 thread; numpy's BLAS: {', '.join(blas) or 'unknown'}; medians of {args.rounds} rounds")
    print(f"float32 AVX2 FMA peak, one core: {np.median(peaks):.1f} GFLOP/s")
    block = float(np.median(block_rates))
    print(f"one 6x16 register block over operands in L1 (a product kernel's best case): "
          f"{block * np.median(peaks):.1f} GFLOP/s, {100 * block:.1f} % of peak")
    for batch, rows in products.items():
        for name, f, _ in rows:
            share = float(np.median(shares[batch, name]))
            print(f"  {name:40s} {share * np.median(peaks):6.1f} GFLOP/s  {100 * share:5.1f} % of peak")
        total = float(np.median(totals[batch]))
        print(f"  batch {batch}, the five products together: {100 * total:.1f} % of peak, "
              f"{100 * total / block:.1f} % of the register block's rate")


if __name__ == "__main__":
    main()
