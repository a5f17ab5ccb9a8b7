/* Elementwise and row-wise kernels of fastnn, for float and double.
 *
 * Every entry point takes raw C-contiguous buffers whose sizes the caller (fastnn.ops, after
 * validation) guarantees, splits the work over up to n_threads OpenMP threads when it is large
 * enough to pay for them, and calls the SIMD path picked at run time (AVX2+FMA or generic).
 * None of them touches Python objects, so all run without the GIL.
 */
#ifndef FASTNN_KERNELS_H
#define FASTNN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

enum fnn_activation {
    FNN_ACT_NONE = 0,
    FNN_ACT_SIGMOID = 1,
    FNN_ACT_RELU = 2,
    FNN_ACT_TANH = 3,
    FNN_ACT_SCALED_TANH = 4,
    FNN_ACT_LEAKY_RELU = 5, /* param: the negative slope (>= 0, checked in Python) */
    FNN_ACT_GELU = 6
};
#define FNN_ACT_COUNT 7

/* The losses fnn_loss dispatches on (fastnn/loss_registry.py holds the same codes). */
enum fnn_loss {
    FNN_LOSS_SOFTMAX_XENT = 0, /* softmax cross-entropy on logits, int64 class labels */
    FNN_LOSS_BCE = 1,          /* binary cross-entropy on K logits, targets in [0, 1] */
    FNN_LOSS_MSE = 2           /* squared error averaged over the K outputs of a row */
};
#define FNN_LOSS_COUNT 3

/* 1 when the derivative of activation `act` needs its input z (the others derive it from the
   output y alone, and their backward accepts z == NULL). */
int fnn_act_needs_input(int act);

#define FNN_SCALED_TANH_A 1.7159
#define FNN_SCALED_TANH_B (2.0 / 3.0)

/* SIMD path: "avx2_fma" or "generic". select returns 0 on success, -1 if unavailable here. */
int fnn_simd_select(const char *name);
const char *fnn_simd_current(void);
int fnn_simd_available(const char *name);
const char *fnn_build_flags(void);
int fnn_openmp_enabled(void);
int fnn_openmp_max_threads(void);
/* Runs an OpenMP team of n threads and writes each member's Linux thread id (gettid) into
 * ids[thread number]; returns the team's size (at most n), or 0 without OpenMP or off Linux. */
int fnn_openmp_team_thread_ids(int n, long *ids);

/* The suffix _f32 / _f64 names the element type; each pair below has the same contract. */
#define FNN_DECLARE(REAL, SUF)                                                                    \
    /* Every activation entry point takes the code and one parameter (LeakyReLU's negative        \
       slope; ignored by the others). */                                                          \
    /* y = act(x), n elements (y may be x). */                                                    \
    void fnn_act_forward_##SUF(int act, double param, const REAL *x, REAL *y, ptrdiff_t n,        \
                               int n_threads);                                                    \
    /* out = grad * act'(z), from the input z and the output y = act(z); z may be NULL when       \
       fnn_act_needs_input(act) is 0 (out may alias z, y or grad exactly). */                     \
    void fnn_act_backward_##SUF(int act, double param, const REAL *z, const REAL *y,              \
                                const REAL *grad, REAL *out, ptrdiff_t n, int n_threads);         \
    /* z (rows, cols) in place: z = act(z + bias); bias may be NULL. */                           \
    void fnn_bias_act_##SUF(int act, double param, REAL *z, const REAL *bias, ptrdiff_t rows,     \
                            ptrdiff_t cols, int n_threads);                                       \
    /* dz = grad * act'(z) (from z and y as fnn_act_backward; dz may be NULL when act is NONE:    \
       then dz is grad itself) and db = column sums of dz, accumulated in double. */              \
    void fnn_act_grad_colsum_##SUF(int act, double param, const REAL *z, const REAL *y,           \
                                   const REAL *grad, REAL *dz, REAL *db, ptrdiff_t rows,          \
                                   ptrdiff_t cols, int n_threads);                                \
    /* The loss `loss` (enum fnn_loss) of each row i and its gradient, one pass per row:         \
       grad_i = scale * w_i * dl_i/dz_i; returns sum_i w_i * l_i; row_loss (may be NULL)          \
       receives w_i * l_i. labels (int64, in [0, k)) for FNN_LOSS_SOFTMAX_XENT, else targets      \
       (rows, k) (the other may be NULL); weights may be NULL (all ones); grad may alias z        \
       exactly. */                                                                                \
    double fnn_loss_##SUF(int loss, const REAL *z, const int64_t *labels, const REAL *targets,    \
                          const REAL *weights, REAL *grad, double *row_loss, ptrdiff_t rows,      \
                          ptrdiff_t k, double scale, int n_threads);                              \
    /* out = softmax(logits) or log_softmax(logits) row by row (out may alias logits). */         \
    void fnn_softmax_##SUF(const REAL *logits, REAL *out, ptrdiff_t rows, ptrdiff_t k, int log,   \
                           int n_threads);                                                        \
    /* In-place SGD step, PyTorch's convention (see fastnn.ops.sgd_update). v may be NULL when    \
       momentum is 0. */                                                                          \
    void fnn_sgd_##SUF(REAL *p, const REAL *g, REAL *v, ptrdiff_t n, double lr, double momentum,  \
                       double weight_decay, int nesterov, int n_threads);                         \
    /* out[i, :] = x[rows[i], :] * scale + shift, x of uint8 or of REAL. */                       \
    void fnn_gather_u8_##SUF(const uint8_t *x, const int64_t *rows, REAL *out, ptrdiff_t n_rows,  \
                             ptrdiff_t features, double scale, double shift, int n_threads);      \
    void fnn_gather_##SUF(const REAL *x, const int64_t *rows, REAL *out, ptrdiff_t n_rows,        \
                          ptrdiff_t features, double scale, double shift, int n_threads);         \
    /* 1 when x's n entries hold a NaN or an infinity, else 0; *lo, *hi: the least and        \
       greatest entries (+inf and -inf when n is 0; meaningless when 1 is returned). */           \
    int fnn_finite_range_##SUF(const REAL *x, ptrdiff_t n, double *lo, double *hi, int n_threads); \
    /* dst (cols, rows) = transpose of src (rows, cols); one thread. */                           \
    void fnn_transpose_##SUF(const REAL *src, REAL *dst, ptrdiff_t rows, ptrdiff_t cols);

FNN_DECLARE(float, f32)
FNN_DECLARE(double, f64)
#undef FNN_DECLARE

/* One Adam step in place at 1-based step `step` (fastnn.ops.adam_update / adamw_update):
   decoupled 0 adds weight_decay * p to the gradient (Adam), 1 first scales p by
   1 - lr * weight_decay (AdamW). */
void fnn_adam_f32(float *p, const float *g, float *m, float *v, ptrdiff_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, int decoupled, int64_t step, int n_threads);
void fnn_adam_f64(double *p, const double *g, double *m, double *v, ptrdiff_t n, double lr, double beta1,
                  double beta2, double eps, double weight_decay, int decoupled, int64_t step, int n_threads);

/* Gather between the two float types (x float64 -> out float32 and back). */
void fnn_gather_f64_to_f32(const double *x, const int64_t *rows, float *out, ptrdiff_t n_rows,
                           ptrdiff_t features, double scale, double shift, int n_threads);
void fnn_gather_f32_to_f64(const float *x, const int64_t *rows, double *out, ptrdiff_t n_rows,
                           ptrdiff_t features, double scale, double shift, int n_threads);

#endif
