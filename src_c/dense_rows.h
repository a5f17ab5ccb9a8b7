/* out = x @ w computed so that every output is the same sum whatever the number of rows: for
 * inference, where one row alone and the same row inside a batch of thousands must give the
 * same bits. BLAS does not promise that (OpenBLAS picks other kernels, tiles and K blocks for
 * other shapes, and its results differ in the last bit), so these loops replace it there.
 *
 * Each out[r, j] starts at 0 and adds x[r, i] * w[i, j] for i = 0, 1, ..., k-1, one
 * multiply-add at a time (fused on the AVX2+FMA path: the compiler contracts vector and scalar
 * code alike, as in the other kernels). Rows are taken 4 at a time (each weight load serves 4
 * rows) or one at a time with wider column blocks (more independent sums in flight); neither
 * changes the order of any sum. */
#ifndef FASTNN_DENSE_ROWS_H
#define FASTNN_DENSE_ROWS_H

#include <stddef.h>
#include <string.h>

#include "kernels.h"

#define FNN_TARGET
#define PATH generic
#define DR_FMA 0
#include "dense_rows_types.h"
#undef FNN_TARGET
#undef PATH
#undef DR_FMA

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FNN_DR_HAVE_AVX2 1
#define FNN_TARGET __attribute__((target("avx2,fma")))
#define PATH avx2
#define DR_FMA 1
#include "dense_rows_types.h"
#undef FNN_TARGET
#undef PATH
#undef DR_FMA
#else
#define FNN_DR_HAVE_AVX2 0
#endif

/* The SIMD path fastnn selected (fnn_simd_current): its name starts with "avx2" for AVX2+FMA. */
static inline int fnn_dr_avx2(void)
{
    return FNN_DR_HAVE_AVX2 && fnn_simd_current()[0] == 'a';
}

static inline void fnn_dense_rows_f32(const float *x, const float *w, float *out, int rows, int k, int n)
{
#if FNN_DR_HAVE_AVX2
    if (fnn_dr_avx2()) {
        fnn_dense_rows_f32_avx2(x, w, out, rows, k, n);
        return;
    }
#endif
    fnn_dense_rows_f32_generic(x, w, out, rows, k, n);
}

static inline void fnn_dense_rows_f64(const double *x, const double *w, double *out, int rows, int k, int n)
{
#if FNN_DR_HAVE_AVX2
    if (fnn_dr_avx2()) {
        fnn_dense_rows_f64_avx2(x, w, out, rows, k, n);
        return;
    }
#endif
    fnn_dense_rows_f64_generic(x, w, out, rows, k, n);
}

#endif
