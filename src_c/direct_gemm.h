/* Which matrix products fastnn computes itself instead of calling BLAS (the kernels are in
 * direct_gemm_impl.h, compiled for each SIMD path), shared by fnn_gemm (mlp_impl.h), through
 * which the training engine and the linear ops (_core.pyx) make every product.
 *
 * THRESHOLDS_COMMENT
 *
 * The choice depends on the shape and the leading dimensions alone (never on timing), so one
 * shape always runs the same code on one SIMD path and gives the same bits.
 */
#ifndef FASTNN_DIRECT_GEMM_H
#define FASTNN_DIRECT_GEMM_H

enum { FNN_DIRECT_NONE = 0, FNN_DIRECT_ROWS = 1, FNN_DIRECT_COLS = 2, FNN_DIRECT_DOTS = 3 };

/* The shape classes, as bits: an outer product (k == 1), one output column (n == 1), one output
 * row (m == 1), a small shared dimension (2 <= k <= FNN_DIRECT_MAX_K; not with B transposed and A
 * not, whose short dot products are slow). A product belongs to the first that fits. */
enum { FNN_DIRECT_OUTER = 1, FNN_DIRECT_ONE_COLUMN = 2, FNN_DIRECT_ONE_ROW = 4, FNN_DIRECT_SMALL_K = 8 };
#define FNN_DIRECT_ALL_CLASSES 15
/* The classes taken (see the figures above). */
#define FNN_DIRECT_TAKEN FNN_DIRECT_ALL_CLASSES

/* Products of more multiply-adds than this always go to BLAS (which may also run threads). */
#define FNN_DIRECT_MAX_MNK (1 << 20)
#define FNN_DIRECT_MAX_K 16

/* The classes that run direct: FNN_DIRECT_TAKEN, or 0 (FASTNN_GEMM=plain: every product goes to
 * BLAS); tests and measurements set others. Set by fnn_set_direct_gemm (mlp.c). */
extern int fnn_direct_gemm_classes;
void fnn_set_direct_gemm(int classes);

/* The class of C (m, n) = op(A) (m, k) op(B) (k, n), or 0 for none. */
static inline int fnn_direct_gemm_class(int trans_a, int trans_b, int m, int n, int k)
{
    if (k == 1) return FNN_DIRECT_OUTER;
    if (n == 1) return FNN_DIRECT_ONE_COLUMN;
    if (m == 1) return FNN_DIRECT_ONE_ROW;
    if (k <= FNN_DIRECT_MAX_K && !(trans_b && !trans_a)) return FNN_DIRECT_SMALL_K;
    return 0;
}

/* The form C (m, n) = op(A) (m, k) op(B) (k, n) (row-major, leading dimensions lda, ldb) runs in
 * when fastnn computes it itself, else FNN_DIRECT_NONE (one BLAS call, or small_gemm.h's tiles).
 * ROWS: multiples of op(B)'s rows added into rows of C (op(B)'s rows contiguous); COLS: the same
 * for C^T = op(B)^T op(A)^T (op(A)'s columns contiguous); DOTS: dot products of A's rows and
 * op(B)'s columns (both contiguous). */
static inline int fnn_direct_gemm_form(int trans_a, int trans_b, int m, int n, int k, int lda, int ldb)
{
    if (m <= 0 || n <= 0 || (double)m * n * k > FNN_DIRECT_MAX_MNK) return FNN_DIRECT_NONE;
    if (!(fnn_direct_gemm_class(trans_a, trans_b, m, n, k) & fnn_direct_gemm_classes)) return FNN_DIRECT_NONE;
    const int b_rows_contiguous = !trans_b || (k == 1 && ldb == 1);
    if (!trans_a && (n == 1 || !b_rows_contiguous)) /* an A row against each column of op(B) */
        return trans_b || ldb == 1 ? (k == 1 && b_rows_contiguous ? FNN_DIRECT_ROWS : FNN_DIRECT_DOTS)
                                   : FNN_DIRECT_ROWS;
    if (b_rows_contiguous && !(trans_a && n < 8)) return FNN_DIRECT_ROWS;
    return trans_a ? FNN_DIRECT_COLS : FNN_DIRECT_ROWS;
}

#endif
