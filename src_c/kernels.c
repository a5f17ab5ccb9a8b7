/* Instantiates kernels_impl.h per (type, SIMD path), picks the path at run time and splits work
 * across OpenMP threads. See kernels.h for the contracts. */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "direct_gemm.h"
#include "fastmath.h"
#include "kernels_internal.h"

#ifndef FASTNN_BUILD_FLAGS
#define FASTNN_BUILD_FLAGS "unknown"
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FNN_HAVE_AVX2_PATH 1
#else
#define FNN_HAVE_AVX2_PATH 0
#endif

/* ---- instantiation: kernels_impl.h for float and double, per SIMD path ---- */

#define FNN_TARGET
#define PATH generic
#define FNN_AVX2_INTRINSICS 0
#include "kernels_types.h"
#undef FNN_TARGET
#undef PATH
#undef FNN_AVX2_INTRINSICS

#if FNN_HAVE_AVX2_PATH
#include <immintrin.h>
#define FNN_TARGET __attribute__((target("avx2,fma")))
#define PATH avx2
#define FNN_AVX2_INTRINSICS 1 /* the few kernels GCC does not vectorise by itself */
#include "kernels_types.h"
#undef FNN_TARGET
#undef PATH
#undef FNN_AVX2_INTRINSICS
#endif

/* ---- dispatch tables (types in kernels_internal.h) ---- */

#define FNN_TABLE_INIT(SUF, PATH)                                                                  \
    {                                                                                              \
        act_forward_##SUF##_##PATH, act_backward_##SUF##_##PATH, bias_act_##SUF##_##PATH,          \
            act_grad_colsum_##SUF##_##PATH, softmax_xent_##SUF##_##PATH,                           \
            softmax_rows_##SUF##_##PATH, sgd_##SUF##_##PATH, adam_##SUF##_##PATH,                  \
            gather_u8_##SUF##_##PATH,                                                              \
            gather_##SUF##_##PATH, finite_range_##SUF##_##PATH, transpose_##SUF##_##PATH,          \
            dense_loss_##SUF##_##PATH, col_sums_##SUF##_##PATH, gemm_direct_##SUF##_##PATH,        \
            dg_nonzeros_##SUF##_##PATH, dg_sparse_rows_##SUF##_##PATH                              \
    }

static const fnn_table_f32 table_f32_generic = FNN_TABLE_INIT(f32, generic);
static const fnn_table_f64 table_f64_generic = FNN_TABLE_INIT(f64, generic);
#if FNN_HAVE_AVX2_PATH
static const fnn_table_f32 table_f32_avx2 = FNN_TABLE_INIT(f32, avx2);
static const fnn_table_f64 table_f64_avx2 = FNN_TABLE_INIT(f64, avx2);
#endif

static const fnn_table_f32 *T32 = &table_f32_generic;
static const fnn_table_f64 *T64 = &table_f64_generic;
static const char *current_path = "generic";

int fnn_simd_available(const char *name)
{
    if (strcmp(name, "generic") == 0) return 1;
#if FNN_HAVE_AVX2_PATH
    if (strcmp(name, "avx2_fma") == 0) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
#endif
    return 0;
}

int fnn_simd_select(const char *name)
{
    if (strcmp(name, "auto") == 0) name = fnn_simd_available("avx2_fma") ? "avx2_fma" : "generic";
    if (!fnn_simd_available(name)) return -1;
#if FNN_HAVE_AVX2_PATH
    if (strcmp(name, "avx2_fma") == 0) {
        T32 = &table_f32_avx2;
        T64 = &table_f64_avx2;
        current_path = "avx2_fma";
        return 0;
    }
#endif
    T32 = &table_f32_generic;
    T64 = &table_f64_generic;
    current_path = "generic";
    return 0;
}

const char *fnn_simd_current(void) { return current_path; }
int fnn_act_needs_input(int act) { return act == FNN_ACT_GELU; }
const fnn_table_f32 *fnn_table_f32_current(void) { return T32; }
const fnn_table_f64 *fnn_table_f64_current(void) { return T64; }
const char *fnn_build_flags(void) { return FASTNN_BUILD_FLAGS; }
int fnn_openmp_enabled(void) { return FASTNN_OPENMP; }

int fnn_openmp_max_threads(void)
{
#if FASTNN_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int fnn_openmp_team_thread_ids(int n, long *ids)
{
#if FASTNN_OPENMP && defined(__linux__)
    int count = 0;
    if (n < 1) n = 1;
#pragma omp parallel num_threads(n)
    {
        const int t = omp_get_thread_num();
        if (t < n) ids[t] = (long)syscall(SYS_gettid);
#pragma omp single
        count = omp_get_num_threads();
    }
    return count < n ? count : n;
#else
    (void)n;
    (void)ids;
    return 0;
#endif
}

/* ---- threading ---- */

/* Below this many elements per thread, starting another thread costs more than it saves. */
#define FNN_MIN_WORK_PER_THREAD 32768

static int threads_for(ptrdiff_t work, int n_threads)
{
#if FASTNN_OPENMP
    ptrdiff_t useful = work / FNN_MIN_WORK_PER_THREAD;
    if (useful < 1) useful = 1;
    if (n_threads < 1) n_threads = 1;
    return useful < n_threads ? (int)useful : n_threads;
#else
    (void)work;
    (void)n_threads;
    return 1;
#endif
}

/* Runs STMT for each thread's share [b, e) of n items. */
#define FNN_SPLIT(n, nt, align, STMT)                                                               \
    do {                                                                                           \
        if ((nt) <= 1) {                                                                           \
            ptrdiff_t b = 0, e = (n);                                                              \
            STMT;                                                                                  \
        } else {                                                                                   \
            FNN_PARALLEL(nt)                                                                       \
            {                                                                                      \
                ptrdiff_t b, e;                                                                    \
                split_range((n), FNN_THREAD_COUNT(), FNN_THREAD_ID(), (align), &b, &e);           \
                if (b < e) { STMT; }                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* ---- public entry points ---- */

#define FNN_DEFINE(REAL, SUF, T)                                                                   \
    void fnn_act_forward_##SUF(int act, double param, const REAL *x, REAL *y, ptrdiff_t n,         \
                               int n_threads)                                                      \
    {                                                                                              \
        int nt = threads_for(n, n_threads);                                                        \
        FNN_SPLIT(n, nt, 16, T->act_forward(act, param, x + b, y + b, e - b));                     \
    }                                                                                              \
    void fnn_act_backward_##SUF(int act, double param, const REAL *z, const REAL *y,               \
                                const REAL *grad, REAL *out, ptrdiff_t n, int n_threads)           \
    {                                                                                              \
        int nt = threads_for(n, n_threads);                                                        \
        FNN_SPLIT(n, nt, 16,                                                                       \
                  T->act_backward(act, param, z ? z + b : NULL, y ? y + b : NULL, grad + b,        \
                                  out + b, e - b));                                                \
    }                                                                                              \
    void fnn_bias_act_##SUF(int act, double param, REAL *z, const REAL *bias, ptrdiff_t rows,      \
                            ptrdiff_t cols, int n_threads)                                         \
    {                                                                                              \
        int nt = threads_for(rows * cols, n_threads);                                              \
        FNN_SPLIT(rows, nt, 1, T->bias_act(act, param, z + b * cols, bias, e - b, cols));          \
    }                                                                                              \
    void fnn_act_grad_colsum_##SUF(int act, double param, const REAL *z, const REAL *y,            \
                                   const REAL *grad, REAL *dz, REAL *db, ptrdiff_t rows,           \
                                   ptrdiff_t cols, int n_threads)                                  \
    {                                                                                              \
        int nt = threads_for(rows * cols, n_threads);                                              \
        double stack_acc[1024];                                                                    \
        double *acc = stack_acc;                                                                   \
        if ((ptrdiff_t)nt * cols > 1024) {                                                         \
            acc = (double *)malloc(sizeof(double) * (size_t)nt * (size_t)cols);                    \
            if (!acc) { nt = 1; acc = NULL; }                                                      \
        }                                                                                          \
        if (acc == NULL) { /* out of memory: one column block at a time, serially */               \
            double part[1024];                                                                     \
            for (ptrdiff_t c0 = 0; c0 < cols; c0 += 1024) {                                        \
                ptrdiff_t w = cols - c0 < 1024 ? cols - c0 : 1024;                                 \
                memset(part, 0, sizeof(double) * (size_t)w);                                       \
                for (ptrdiff_t r = 0; r < rows; r++)                                               \
                    T->act_grad_colsum(act, param, z ? z + r * cols + c0 : NULL,                   \
                                       y ? y + r * cols + c0 : NULL, grad + r * cols + c0,         \
                                       dz ? dz + r * cols + c0 : NULL, part, 1, w);                \
                for (ptrdiff_t c = 0; c < w; c++) db[c0 + c] = (REAL)part[c];                      \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        memset(acc, 0, sizeof(double) * (size_t)nt * (size_t)cols);                               \
        if (nt <= 1) {                                                                             \
            T->act_grad_colsum(act, param, z, y, grad, dz, acc, rows, cols);                       \
        } else {                                                                                   \
            FNN_PARALLEL(nt)                                                                       \
            {                                                                                      \
                ptrdiff_t b, e;                                                                    \
                int tid = FNN_THREAD_ID();                                                         \
                split_range(rows, FNN_THREAD_COUNT(), tid, 1, &b, &e);                             \
                if (b < e)                                                                         \
                    T->act_grad_colsum(act, param, z ? z + b * cols : NULL,                        \
                                       y ? y + b * cols : NULL, grad + b * cols,                   \
                                       dz ? dz + b * cols : NULL, acc + (ptrdiff_t)tid * cols,     \
                                       e - b, cols);                                               \
            }                                                                                      \
        }                                                                                          \
        for (ptrdiff_t c = 0; c < cols; c++) {                                                     \
            double s = 0.0;                                                                        \
            for (int t = 0; t < nt; t++) s += acc[(ptrdiff_t)t * cols + c];                        \
            db[c] = (REAL)s;                                                                       \
        }                                                                                          \
        if (acc != stack_acc) free(acc);                                                           \
    }                                                                                              \
    double fnn_loss_##SUF(int loss, const REAL *z, const int64_t *labels, const REAL *targets,     \
                          const REAL *weights, REAL *grad, double *row_loss, ptrdiff_t rows,       \
                          ptrdiff_t k, double scale, int n_threads)                                \
    {                                                                                              \
        int nt = threads_for(rows * k, n_threads);                                                 \
        if (nt <= 1)                                                                               \
            return fnn_loss_rows_##SUF(T, loss, z, labels, targets, weights, grad, row_loss, rows, \
                                       k, scale);                                                  \
        double partial[256] = {0};                                                                 \
        if (nt > 256) nt = 256;                                                                    \
        FNN_PARALLEL(nt)                                                                           \
        {                                                                                          \
            ptrdiff_t b, e;                                                                        \
            int tid = FNN_THREAD_ID();                                                             \
            split_range(rows, FNN_THREAD_COUNT(), tid, 1, &b, &e);                                 \
            if (b < e)                                                                             \
                partial[tid] = fnn_loss_rows_##SUF(T, loss, z + b * k, labels ? labels + b : NULL, \
                                                   targets ? targets + b * k : NULL,               \
                                                   weights ? weights + b : NULL, grad + b * k,     \
                                                   row_loss ? row_loss + b : NULL, e - b, k,       \
                                                   scale);                                         \
        }                                                                                          \
        double total = 0.0;                                                                        \
        for (int t = 0; t < nt; t++) total += partial[t];                                          \
        return total;                                                                              \
    }                                                                                              \
    void fnn_softmax_##SUF(const REAL *logits, REAL *out, ptrdiff_t rows, ptrdiff_t k, int log_,   \
                           int n_threads)                                                          \
    {                                                                                              \
        int nt = threads_for(rows * k, n_threads);                                                 \
        FNN_SPLIT(rows, nt, 1, T->softmax_rows(logits + b * k, out + b * k, e - b, k, log_));      \
    }                                                                                              \
    void fnn_sgd_##SUF(REAL *p, const REAL *g, REAL *v, ptrdiff_t n, double lr, double momentum,   \
                       double weight_decay, int nesterov, int n_threads)                           \
    {                                                                                              \
        int nt = threads_for(n, n_threads);                                                        \
        FNN_SPLIT(n, nt, 16,                                                                       \
                  T->sgd(p + b, g + b, v ? v + b : NULL, e - b, (REAL)lr, (REAL)momentum,          \
                         (REAL)weight_decay, nesterov));                                           \
    }                                                                                              \
    void fnn_gather_u8_##SUF(const uint8_t *x, const int64_t *rows, REAL *out, ptrdiff_t n_rows,   \
                             ptrdiff_t features, double scale, double shift, int n_threads)        \
    {                                                                                              \
        int nt = threads_for(n_rows * features, n_threads);                                        \
        FNN_SPLIT(n_rows, nt, 1,                                                                   \
                  T->gather_u8(x, rows + b, out + b * features, e - b, features, (REAL)scale,      \
                               (REAL)shift));                                                      \
    }                                                                                              \
    void fnn_gather_##SUF(const REAL *x, const int64_t *rows, REAL *out, ptrdiff_t n_rows,         \
                          ptrdiff_t features, double scale, double shift, int n_threads)           \
    {                                                                                              \
        int nt = threads_for(n_rows * features, n_threads);                                        \
        FNN_SPLIT(n_rows, nt, 1,                                                                   \
                  T->gather(x, rows + b, out + b * features, e - b, features, (REAL)scale,         \
                            (REAL)shift));                                                         \
    }                                                                                              \
    int fnn_finite_range_##SUF(const REAL *x, ptrdiff_t n, double *lo, double *hi, int n_threads)   \
    {                                                                                              \
        int nt = threads_for(n, n_threads);                                                        \
        int bad[256] = {0};                                                                        \
        REAL mn[256], mx[256];                                                                     \
        if (nt > 256) nt = 256;                                                                    \
        for (int t = 0; t < nt; t++) {                                                             \
            mn[t] = (REAL)(1.0 / 0.0);                                                             \
            mx[t] = -mn[t];                                                                        \
        }                                                                                          \
        if (nt <= 1) {                                                                             \
            bad[0] = T->finite_range(x, n, &mn[0], &mx[0]);                                        \
        } else {                                                                                   \
            FNN_PARALLEL(nt)                                                                       \
            {                                                                                      \
                ptrdiff_t b, e;                                                                    \
                int tid = FNN_THREAD_ID();                                                         \
                split_range(n, FNN_THREAD_COUNT(), tid, 16, &b, &e);                               \
                if (b < e) bad[tid] = T->finite_range(x + b, e - b, &mn[tid], &mx[tid]);           \
            }                                                                                      \
        }                                                                                          \
        int any_bad = 0;                                                                           \
        *lo = (double)mn[0];                                                                       \
        *hi = (double)mx[0];                                                                       \
        for (int t = 0; t < nt; t++) {                                                             \
            any_bad |= bad[t];                                                                     \
            *lo = (double)mn[t] < *lo ? (double)mn[t] : *lo;                                       \
            *hi = (double)mx[t] > *hi ? (double)mx[t] : *hi;                                       \
        }                                                                                          \
        return any_bad;                                                                            \
    }                                                                                              \
    void fnn_transpose_##SUF(const REAL *src, REAL *dst, ptrdiff_t rows, ptrdiff_t cols)           \
    {                                                                                              \
        T->transpose(src, dst, rows, cols);                                                        \
    }                                                                                              \
    void fnn_adam_##SUF(REAL *p, const REAL *g, REAL *m, REAL *v, ptrdiff_t n, double lr,          \
                        double beta1, double beta2, double eps, double weight_decay, int decoupled, \
                        int64_t step, int n_threads)                                               \
    {                                                                                              \
        double step_size, inv_sqrt_bc2;                                                            \
        int nt = threads_for(n, n_threads);                                                        \
        fnn_adam_factors(lr, beta1, beta2, step, &step_size, &inv_sqrt_bc2);                       \
        const REAL wd = decoupled ? (REAL)0 : (REAL)weight_decay;                                  \
        const REAL decay = decoupled ? (REAL)(1.0 - lr * weight_decay) : (REAL)1;                  \
        FNN_SPLIT(n, nt, 16,                                                                       \
                  T->adam(p + b, g + b, m + b, v + b, e - b, (REAL)step_size, (REAL)inv_sqrt_bc2,  \
                          beta1, beta2, (REAL)eps, wd, decay));                        \
    }

FNN_DEFINE(float, f32, T32)
FNN_DEFINE(double, f64, T64)

/* Rare conversions between the float types: plain loops are enough. */
void fnn_gather_f64_to_f32(const double *x, const int64_t *rows, float *out, ptrdiff_t n_rows,
                           ptrdiff_t features, double scale, double shift, int n_threads)
{
    (void)n_threads;
    for (ptrdiff_t i = 0; i < n_rows; i++)
        for (ptrdiff_t c = 0; c < features; c++)
            out[i * features + c] = (float)(x[rows[i] * features + c] * scale + shift);
}

void fnn_gather_f32_to_f64(const float *x, const int64_t *rows, double *out, ptrdiff_t n_rows,
                           ptrdiff_t features, double scale, double shift, int n_threads)
{
    (void)n_threads;
    for (ptrdiff_t i = 0; i < n_rows; i++)
        for (ptrdiff_t c = 0; c < features; c++)
            out[i * features + c] = (double)x[rows[i] * features + c] * scale + shift;
}
