/* Internal to the compiled core: the per-SIMD-path kernel tables and threading helpers shared by
 * kernels.c and mlp.c. Not part of the Python-facing contract. */
#ifndef FASTNN_KERNELS_INTERNAL_H
#define FASTNN_KERNELS_INTERNAL_H

#include <stddef.h>
#include <math.h>
#include <stdint.h>

#include "kernels.h"

#if FASTNN_OPENMP
#include <omp.h>
#define FNN_PARALLEL(nt) _Pragma("omp parallel num_threads(nt)")
#define FNN_BARRIER() _Pragma("omp barrier")
#define FNN_THREAD_ID() omp_get_thread_num()
#define FNN_THREAD_COUNT() omp_get_num_threads()
#else
#define FNN_PARALLEL(nt)
#define FNN_BARRIER()
#define FNN_THREAD_ID() 0
#define FNN_THREAD_COUNT() 1
#endif

/* Serial kernels of one SIMD path; each works on a contiguous range. */
#define FNN_TABLE(REAL, SUF)                                                                       \
    typedef struct {                                                                               \
        void (*act_forward)(int, double, const REAL *, REAL *, ptrdiff_t);                         \
        void (*act_backward)(int, double, const REAL *, const REAL *, const REAL *, REAL *,        \
                             ptrdiff_t);                                                           \
        void (*bias_act)(int, double, REAL *, const REAL *, ptrdiff_t, ptrdiff_t);                 \
        void (*act_grad_colsum)(int, double, const REAL *, const REAL *, const REAL *, REAL *,     \
                                double *, ptrdiff_t, ptrdiff_t);                                   \
        double (*softmax_xent)(const REAL *, const int64_t *, const REAL *, REAL *, double *,      \
                               ptrdiff_t, ptrdiff_t, double);                                      \
        void (*softmax_rows)(const REAL *, REAL *, ptrdiff_t, ptrdiff_t, int);                     \
        void (*sgd)(REAL *, const REAL *, REAL *, ptrdiff_t, REAL, REAL, REAL, int);               \
        void (*adam)(REAL *, const REAL *, REAL *, REAL *, ptrdiff_t, REAL, REAL, double, double,  \
                     REAL, REAL, REAL);                                                            \
        void (*gather_u8)(const uint8_t *, const int64_t *, REAL *, ptrdiff_t, ptrdiff_t, REAL,   \
                          REAL);                                                                   \
        void (*gather)(const REAL *, const int64_t *, REAL *, ptrdiff_t, ptrdiff_t, REAL, REAL);  \
        int (*finite_range)(const REAL *, ptrdiff_t, REAL *, REAL *);                              \
        void (*transpose)(const REAL *, REAL *, ptrdiff_t, ptrdiff_t);                             \
        double (*dense_loss)(int, const REAL *, const REAL *, const REAL *, REAL *, double *,    \
                             ptrdiff_t, ptrdiff_t, double);                                        \
        void (*col_sums)(const REAL *, ptrdiff_t, double *, ptrdiff_t, ptrdiff_t);                 \
        void (*gemm_direct)(int, int, int, int, int, int, const REAL *, int, const REAL *, int,    \
                            REAL *, int);                                                          \
        ptrdiff_t (*nonzeros)(const REAL *, ptrdiff_t, int, int, ptrdiff_t, int *, int *, int *,     \
                              int *, int *);                                                       \
        void (*sparse_rows)(int, int, const int *, const int *, const REAL *, ptrdiff_t, ptrdiff_t, \
                            const REAL *, ptrdiff_t, int, REAL *, ptrdiff_t);                      \
    } fnn_table_##SUF;

FNN_TABLE(float, f32)
FNN_TABLE(double, f64)

/* One loss (enum fnn_loss in kernels.h) over rows, on the calling thread: the switch both the
   ops (kernels.c) and the training engine (mlp_impl.h) dispatch through. Arguments as fnn_loss. */
#define FNN_LOSS_ROWS(REAL, SUF)                                                                   \
    static inline double fnn_loss_rows_##SUF(const fnn_table_##SUF *T, int loss, const REAL *z,   \
                                             const int64_t *labels, const REAL *targets,           \
                                             const REAL *w, REAL *grad, double *row_loss,          \
                                             ptrdiff_t rows, ptrdiff_t k, double scale)            \
    {                                                                                              \
        switch (loss) {                                                                            \
        case FNN_LOSS_SOFTMAX_XENT:                                                                \
            return T->softmax_xent(z, labels, w, grad, row_loss, rows, k, scale);                  \
        case FNN_LOSS_BCE:                                                                         \
        case FNN_LOSS_MSE:                                                                         \
            return T->dense_loss(loss, z, targets, w, grad, row_loss, rows, k, scale);             \
        default: /* a code without its case here: a NaN loss, which training reports */           \
            return NAN;                                                                            \
        }                                                                                          \
    }

FNN_LOSS_ROWS(float, f32)
FNN_LOSS_ROWS(double, f64)
#undef FNN_LOSS_ROWS

/* The tables of the SIMD path selected now. */
const fnn_table_f32 *fnn_table_f32_current(void);
const fnn_table_f64 *fnn_table_f64_current(void);

/* [begin, end) of part `tid` of `parts` over n items, boundaries on multiples of `align`. */
static inline void split_range(ptrdiff_t n, int parts, int tid, ptrdiff_t align, ptrdiff_t *begin,
                               ptrdiff_t *end)
{
    ptrdiff_t chunk = (n + parts - 1) / parts;
    chunk = (chunk + align - 1) / align * align;
    *begin = chunk * tid < n ? chunk * tid : n;
    *end = *begin + chunk < n ? *begin + chunk : n;
}

/* Adam's bias corrections at 1-based step t: step_size = lr / (1 - b1^t) and
   inv_sqrt_bc2 = 1 / sqrt(1 - b2^t) (what the table's adam kernel takes). */
static inline void fnn_adam_factors(double lr, double b1, double b2, int64_t t, double *step_size,
                                    double *inv_sqrt_bc2)
{
    *step_size = lr / (1.0 - pow(b1, (double)t));
    *inv_sqrt_bc2 = 1.0 / sqrt(1.0 - pow(b2, (double)t));
}

#endif
