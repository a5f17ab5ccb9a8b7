/* The compiled training engine: whole runs of training steps of an MLP (Linear + activation
 * blocks, Dropout, softmax / binary cross-entropy or squared error with optional per-sample
 * weights, SGD / Adam / AdamW), in one OpenMP region so that Python is not re-entered between
 * steps.
 *
 * Threading: the work of a step is cut into n_parts parts. Part p owns a block of rows of every
 * weight matrix (and of bias entries) and only its thread reads or writes them, so weights never
 * move between cores' caches; products a @ W are split along the shared dimension and summed,
 * elementwise work is split by batch rows. Threads take parts round-robin, and the parts do not
 * depend on how many threads run them: any n_threads <= n_parts gives the same bits. BLAS must
 * run with one thread meanwhile (fastnn._fastpath arranges it).
 *
 * The input layer's products of a part whose inputs are mostly zeros are computed from the
 * nonzero ones alone (fnn_sparse_input), with the bits of fastnn's dense kernels.
 */
#ifndef FASTNN_MLP_H
#define FASTNN_MLP_H

#include <stddef.h>
#include <stdint.h>

typedef void (*fnn_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, float *alpha,
                             float *a, int *lda, float *b, int *ldb, float *beta, float *c, int *ldc);
typedef void (*fnn_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k, double *alpha,
                             double *a, int *lda, double *b, int *ldb, double *beta, double *c,
                             int *ldc);

/* The same routines of a BLAS built with 64-bit integers (ILP64, such as numpy's OpenBLAS). */
typedef void (*fnn_sgemm64_fn)(char *transa, char *transb, int64_t *m, int64_t *n, int64_t *k, float *alpha,
                               float *a, int64_t *lda, float *b, int64_t *ldb, float *beta, float *c,
                               int64_t *ldc);
typedef void (*fnn_dgemm64_fn)(char *transa, char *transb, int64_t *m, int64_t *n, int64_t *k, double *alpha,
                               double *a, int64_t *lda, double *b, int64_t *ldb, double *beta, double *c,
                               int64_t *ldc);

/* The BLAS routines to call: scipy's (handed over by the Cython module at import), or, when
   fnn_set_blas64 was given a pair (not NULL), those (fastnn/_machine.py chooses). */
void fnn_set_blas(fnn_sgemm_fn sgemm, fnn_dgemm_fn dgemm);
void fnn_set_blas64(fnn_sgemm64_fn sgemm, fnn_dgemm64_fn dgemm);
/* 1 while fnn_set_blas64's pair is in use, else 0. */
int fnn_blas64_enabled(void);

/* C (m, n) = alpha op(A) op(B) + beta C for row-major operands (the one row-major product of
 * fastnn): with alpha 1 and beta 0, the small shapes direct_gemm.h picks run in fastnn's own
 * kernels; the others through those BLAS routines (BLAS is column-major, so it computes
 * C^T = op(B)^T op(A)^T). Leading dimensions below 1 are taken as 1 (BLAS refuses 0 even for
 * empty operands). */
void fnn_gemm_f32(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc);
void fnn_gemm_f64(int trans_a, int trans_b, int m, int n, int k, double alpha, const double *a, int lda,
                  const double *b, int ldb, double beta, double *c, int ldc);

/* C (m, n) = op(A) (m, k) @ B (k, n) for row-major operands (op(A) = A, or A's transpose when
 * trans_a): cut into small calls where small_gemm.h finds that faster, else one call. Each call
 * runs on one BLAS thread when BLAS is limited to one. */
void fnn_gemm_small_f32(int trans_a, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                        float *c, int ldc);
void fnn_gemm_small_f64(int trans_a, int m, int n, int k, const double *a, int lda, const double *b, int ldb,
                        double *c, int ldc);

/* 1: the steps compute the input layer's products from its nonzero inputs alone where few
 * enough of a part's inputs are nonzero (mlp.c has the rule); 0: always as dense products. Set
 * by fnn_set_sparse_input (mlp.c). */
extern int fnn_sparse_input;
void fnn_set_sparse_input(int enabled);

enum fnn_optimizer_kind { FNN_OPT_SGD = 0, FNN_OPT_ADAM = 1, FNN_OPT_ADAMW = 2 };

typedef struct {
    int n_layers;
    const int *dims;          /* n_layers + 1 widths */
    const int *acts;          /* activation code after each Linear */
    const double *act_params; /* its parameter (LeakyReLU's slope; 0 for the others) */
    const double *drop;       /* drop[j], j < n_layers: Dropout probability on a[j] (0: none); a[0]
                                 is the input, a[j] the output of block j - 1 */
    void **w, **b;            /* (dims[l], dims[l+1]) and (dims[l+1],) */
    void **vw, **vb;          /* SGD's momentum buffers (NULL entries without momentum), or Adam's
                                 first moments */
    void **sw, **sb;          /* Adam's second moments (unused by SGD) */
    void **gw, **gb;          /* gradient buffers of the same shapes */
    void **a;                 /* a[l]: (batch, dims[l]); a[0] receives the batch; the input of
                                 Linear l, after its Dropout */
    void **g;                 /* g[l]: (batch, dims[l]) for l >= 1: dL/da[l] */
    void **dz;                /* dz[l]: (batch, dims[l+1]): dL/dz of Linear l's output z; holds z
                                 itself during the forward pass when the activation needs it */
    void **y;                 /* y[j] for 1 <= j < n_layers with drop[j] > 0: (batch, dims[j]), the
                                 activation's output before the Dropout (else NULL) */
    void **mask;              /* mask[j] likewise: (batch, dims[j]) of 0 and 1 / (1 - drop[j]) */
} fnn_mlp;

typedef struct {
    const void *x;          /* (n, dims[0]) rows */
    int x_kind;             /* 0 uint8, 1 float32, 2 float64 */
    int loss;               /* enum fnn_loss (kernels.h) */
    const int64_t *labels;  /* (n,) class labels, softmax cross-entropy */
    const void *targets;    /* (n, K) targets in the network type, the other losses */
    const void *weights;    /* (n,) per-sample weights in the network type, or NULL */
    const int64_t *order;   /* rows of this epoch, in order */
    ptrdiff_t n_order;
    int64_t *label_buf;     /* (batch,) */
    void *target_buf;       /* (batch, K) (the losses with targets) */
    void *weight_buf;       /* (batch,) (with weights) */
    /* Dropout uniforms in [0, 1), network type, for steps first_step.. of the call: per step,
       per Dropout in layer order, (rows, width) of them. NULL without Dropout. */
    const void *uniforms;
    double scale, shift;    /* input = x * scale + shift */
    double x_bound;         /* at least every |x * scale + shift| of X, or -1 when unknown */
} fnn_batch_source;

typedef struct {
    int kind;               /* enum fnn_optimizer_kind */
    double lr, momentum, weight_decay;
    int nesterov;           /* SGD */
    double beta1, beta2, eps;
    int64_t steps_before;   /* update steps taken before first_step (Adam's bias correction) */
} fnn_optimizer;

typedef struct {
    double loss_sum;       /* sum of weighted per-sample losses over the steps run */
    double weight_sum;     /* sum of their weights (the samples' count without weights) */
    ptrdiff_t correct;     /* samples predicted right (see fnn_mlp_steps) */
    ptrdiff_t seen;        /* samples trained on */
    ptrdiff_t failed_step; /* -1, or the step whose loss or a gradient was not finite (not applied) */
} fnn_steps_result;

/* Steps [first_step, stop_step) of an epoch: step s trains on rows order[s*batch, (s+1)*batch).
 * Per batch the loss is sum_i w_i l_i / sum_i w_i (0 with a zero gradient when the weights sum
 * to 0). "correct": argmax == label (softmax), every output's sign right (binary
 * cross-entropy), argmax == argmax of the targets (squared error over K >= 2 outputs; none for
 * K = 1). Returns 0, or -1 when scratch memory could not be allocated (nothing was run). */
int fnn_mlp_steps_f32(const fnn_mlp *m, const fnn_batch_source *src, const fnn_optimizer *opt,
                      ptrdiff_t first_step, ptrdiff_t stop_step, int batch, int n_parts, int n_threads,
                      fnn_steps_result *out);
int fnn_mlp_steps_f64(const fnn_mlp *m, const fnn_batch_source *src, const fnn_optimizer *opt,
                      ptrdiff_t first_step, ptrdiff_t stop_step, int batch, int n_parts, int n_threads,
                      fnn_steps_result *out);

#endif
