/* How fastnn cuts a matrix product into BLAS calls small enough for OpenBLAS's small-matrix
 * kernels, shared by the training loop (mlp_impl.h) and the linear ops (_core.pyx).
 *
 * OpenBLAS's AVX-512 kernels (SkylakeX, Cooperlake, SapphireRapids) run products of at most
 * 100^3 multiply-adds through kernels that skip packing the operands. At the shapes of small networks
 * (batch 16-128, a few hundred inputs) they are about 1.5x faster than one packed call, measured
 * with scipy's sgemm on this project's machine: 32x392x128 in 46 us, as two 32x392x64 calls in
 * 29 us; 128x784x128 in 275 us, as sixteen 32x784x32 calls in 232 us. Its AVX2 (Haswell) kernels
 * and other BLAS libraries pack every call, so there the split packs the shared operand once per
 * tile: the batch-128 MNIST epoch took 1.8x its products instead of 1.3x. The cut is therefore
 * switched on only for BLAS kernels that have the unpacked path (fastnn/_products.py decides,
 * once per process, from the BLAS core name).
 *
 * The cut is fixed by the shape alone and every output is still one BLAS dot product over the
 * whole shared dimension, so results do not depend on threads or timing.
 */
#ifndef FASTNN_SMALL_GEMM_H
#define FASTNN_SMALL_GEMM_H

#define FNN_SMALL_GEMM_MNK 1000000.0
/* Products above this many tiles run as one packed call: re-reading the operands for every
 * tile then costs more than packing them once (measured: batch 512 at 2 threads). */
#define FNN_SMALL_GEMM_MAX_TILES 16.0
#define FNN_SMALL_GEMM_MIN_SIDE 8

/* 1: cut products as below; 0: always one BLAS call. Set once by fnn_set_small_gemm (mlp.c). */
extern int fnn_small_gemm_enabled;
void fnn_set_small_gemm(int enabled);

/* Tile sizes for C (m, n) = op(A) (m, k) B (k, n): halves the longer of the two output sides
 * (neither below FNN_SMALL_GEMM_MIN_SIDE) until a tile does at most FNN_SMALL_GEMM_MNK
 * multiply-adds; with A not transposed (rows of A are contiguous) the columns count half, so
 * the tiles stay wide (128x784x128 as 16x64 tiles: 221 us; 32x32 tiles: 232 us; measured as
 * above). Returns 1 with the tile sizes when the product is worth cutting, else 0. */
static inline int fnn_small_gemm_tiles(int trans_a, int m, int n, int k, int *m_tile, int *n_tile)
{
    const double total = (double)m * n * k;
    if (!fnn_small_gemm_enabled) return 0;
    if (total <= FNN_SMALL_GEMM_MNK || total > FNN_SMALL_GEMM_MAX_TILES * FNN_SMALL_GEMM_MNK) return 0;
    int mt = m, nt = n;
    while ((double)mt * nt * k > FNN_SMALL_GEMM_MNK) {
        const int n_weight = trans_a ? nt : nt / 2;
        if (n_weight > mt && nt > FNN_SMALL_GEMM_MIN_SIDE)
            nt = (nt + 1) / 2;
        else if (mt > FNN_SMALL_GEMM_MIN_SIDE)
            mt = (mt + 1) / 2;
        else if (nt > FNN_SMALL_GEMM_MIN_SIDE)
            nt = (nt + 1) / 2;
        else
            return 0;
    }
    *m_tile = mt;
    *n_tile = nt;
    return 1;
}

#endif
