/* Which matrix products fastnn computes itself instead of calling BLAS (the kernels are in
 * direct_gemm_impl.h, compiled for each SIMD path), shared by fnn_gemm (mlp_impl.h), through
 * which the training engine and the linear ops (_core.pyx) make every product.
 *
 * Where one BLAS call costs more than the arithmetic: OpenBLAS's AVX2 (Haswell) kernels pack both
 * operands of every call, and for a product with one output column, one output row, or a short
 * shared dimension the packing and the call cost several times the multiply-adds. Measured with
 * benchmarks/direct_gemm.py (microseconds of CPU time per call, the Python call included, medians
 * of 11; 2 vCPUs of an AMD EPYC shared with other jobs, so noisy), direct / BLAS:
 *
 *   class       product (row-major, m x n x k)       Haswell kernels     SkylakeX kernels
 *   one_column  200x1x100 f64 (x @ W, one output)     2.6 / 13.2 us       1.83 / 1.84 us
 *               100x1x200 f64 (x^T @ dz)              2.8 / 21.0          2.09 / 2.10
 *               128x1x784 f32, 784x1x128 f32 (x^T)    3.8 / 18.2, 4.9 / 37.7   3.9 / 4.2, 4.2 / 4.3
 *   outer       200x100x1 f64 (dz @ W^T, W one row)   3.9 / 7.4           2.4 / 4.5
 *               128x784x1 f32                         5.5 / 9.2           5.7 / 11.0
 *   one_row     1x128x784 f32, A or A^T               4.7 / 62.9, 5.2 / 63.0   4.2 / 4.1, 4.8 / 5.1
 *   small_k     200x100x8 f64                         9.2 / 12.6          7.0 / 6.9
 *               128x128x4 f32, 128x128x16 f32         1.8 / 2.9, 5.1 / 7.4     1.8 / 1.8, 5.1 / 5.1
 *               128x128x16 f64                        11.0 / 13.8         10.6 / 10.3
 *
 * On the SkylakeX (AVX-512) kernels, whose small-matrix path does not pack, the classes tie
 * (0.97-1.07x, within the noise) except outer products (1.9x); no class loses on either kind, so
 * all four are taken. Not taken: a transposed B with 2 <= k <= 16 and A not transposed (short
 * dot products: 32x25x10 f32 took 2.0 us direct against 0.7 us in BLAS).
 * The regressor of benchmarks/sklearn_epoch.py (8-100-1, batch 200, float64), whose five products
 * per step all have a tiny side, fits in 0.70-0.75 s instead of 0.96-1.13 s on the Haswell kernels
 * (benchmarks/direct_gemm.py --part fits; BENCHMARKS.md has the rest).
 *
 * The "blocked" class, the other products up to FNN_DIRECT_MAX_MNK, runs the register
 * blocks of dg_rows (6 rows x 2 vectors of sums, no packing) where BLAS packs every call; fastnn's
 * strategy of that name takes it on the Haswell-type kernels with the avx2_fma path. Measured as
 * above with BLAS held at one thread (2026-11-30), direct / BLAS, Haswell kernels: the batch-32
 * step of 784-128-10 in 4 parts, 32x128x196 f32 14.5 / 17.1 us and its x^T @ dz, 196x128x32 with
 * A transposed, 14.7 / 17.0; 32x100x196 f32 16.8 / 18.5; 32x128x196 f64 29.1 / 35.3. Its batch-32
 * MNIST epoch at one thread then took 0.342 s against 0.398 s. Larger products lose: 128x128x196
 * f32 (batch 128) ties alone and made the epoch 1.1x slower; 128x128x784 took 253 / 248 us. On
 * the SkylakeX kernels the class loses (32x128x196 f32 22.0 / 16.1 us), so "tiled" leaves it out.
 * Above that limit BLAS may run threads and its packing costs little.
 *
 * All of this holds on the avx2 path. The generic path's build of the same kernels (GCC's
 * portable 32-byte vectors on SSE2) ran 2-30x slower than OpenBLAS (FASTNN_SIMD=generic, Haswell
 * kernels: 200x100x8 f64 266 / 11 us, 128x1x784 f32 12.6 / 18.9, 1x128x784 42 / 23), so there
 * fastnn/_machine.py makes one BLAS call per product ("plain"); the generic kernels still run
 * when a test forces their classes.
 *
 * The choice depends on the shape and the leading dimensions alone (never on timing), so one
 * shape always runs the same code on one SIMD path and gives the same bits.
 */
#ifndef FASTNN_DIRECT_GEMM_H
#define FASTNN_DIRECT_GEMM_H

enum { FNN_DIRECT_NONE = 0, FNN_DIRECT_ROWS = 1, FNN_DIRECT_COLS = 2, FNN_DIRECT_DOTS = 3 };

/* The shape classes, as bits, of the products up to FNN_DIRECT_MAX_MNK multiply-adds: an outer
 * product (k == 1), one output column (n == 1), one output row (m == 1), a small shared dimension
 * (2 <= k <= FNN_DIRECT_MAX_K; not with B transposed and A not, whose short dot products are
 * slow), and the others, again not with B transposed and A not ("blocked": the register blocks
 * of dg_rows, see above). A product belongs to the first that fits. */
enum { FNN_DIRECT_OUTER = 1, FNN_DIRECT_ONE_COLUMN = 2, FNN_DIRECT_ONE_ROW = 4, FNN_DIRECT_SMALL_K = 8,
       FNN_DIRECT_BLOCKED = 16 };
#define FNN_DIRECT_ALL_CLASSES 31
/* The classes every strategy but "plain" takes (see the figures above); "blocked" is taken by the
 * strategy of that name alone (fastnn/_machine.py). */
#define FNN_DIRECT_TAKEN 15

/* Products of more multiply-adds than this always go to BLAS (which may also run threads). */
#define FNN_DIRECT_MAX_MNK (1 << 20)
#define FNN_DIRECT_MAX_K 16

/* The classes that run direct: FNN_DIRECT_TAKEN, with FNN_DIRECT_BLOCKED for the "blocked"
 * strategy, or 0 (FASTNN_GEMM=plain: every product goes to BLAS); tests and measurements set
 * others. Set by fnn_set_direct_gemm (mlp.c). */
extern int fnn_direct_gemm_classes;
void fnn_set_direct_gemm(int classes);

/* The class of C (m, n) = op(A) (m, k) op(B) (k, n), or 0 for none. */
static inline int fnn_direct_gemm_class(int trans_a, int trans_b, int m, int n, int k)
{
    const int short_dots = trans_b && !trans_a;
    if ((double)m * n * k > FNN_DIRECT_MAX_MNK) return 0;
    if (k == 1) return FNN_DIRECT_OUTER;
    if (n == 1) return FNN_DIRECT_ONE_COLUMN;
    if (m == 1) return FNN_DIRECT_ONE_ROW;
    if (short_dots) return 0;
    return k <= FNN_DIRECT_MAX_K ? FNN_DIRECT_SMALL_K : FNN_DIRECT_BLOCKED;
}

/* The form C (m, n) = op(A) (m, k) op(B) (k, n) (row-major, leading dimensions lda, ldb) runs in
 * when fastnn computes it itself, else FNN_DIRECT_NONE (one BLAS call, or small_gemm.h's tiles).
 * ROWS: multiples of op(B)'s rows added into rows of C (op(B)'s rows contiguous); COLS: the same
 * for C^T = op(B)^T op(A)^T (op(A)'s columns contiguous); DOTS: dot products of A's rows and
 * op(B)'s columns (both contiguous). */
static inline int fnn_direct_gemm_form(int trans_a, int trans_b, int m, int n, int k, int lda, int ldb)
{
    if (m <= 0 || n <= 0) return FNN_DIRECT_NONE;
    if (!(fnn_direct_gemm_class(trans_a, trans_b, m, n, k) & fnn_direct_gemm_classes)) return FNN_DIRECT_NONE;
    const int b_rows_contiguous = !trans_b || (k == 1 && ldb == 1);
    if (!trans_a && (n == 1 || !b_rows_contiguous)) /* an A row against each column of op(B) */
        return trans_b || ldb == 1 ? (k == 1 && b_rows_contiguous ? FNN_DIRECT_ROWS : FNN_DIRECT_DOTS)
                                   : FNN_DIRECT_ROWS;
    if (b_rows_contiguous && !(trans_a && n < 8)) return FNN_DIRECT_ROWS;
    return trans_a ? FNN_DIRECT_COLS : FNN_DIRECT_ROWS;
}

#endif
