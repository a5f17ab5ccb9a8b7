/* Whole runs of SGD or Adam steps of a plain MLP (Linear + activation blocks, softmax cross-entropy),
 * in one OpenMP region so that Python is not re-entered between steps.
 *
 * Threading: the work of a step is cut into n_parts parts. Part p owns a block of rows of every
 * weight matrix (and of bias entries) and only its thread reads or writes them, so weights never
 * move between cores' caches; products a @ W are split along the shared dimension and summed,
 * elementwise work is split by batch rows. Threads take parts round-robin, and the parts do not
 * depend on how many threads run them: any n_threads <= n_parts gives the same bits. BLAS must
 * run with one thread meanwhile (fastnn._fastpath arranges it).
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

/* The BLAS routines to call (scipy's, handed over by the Cython module at import). */
void fnn_set_blas(fnn_sgemm_fn sgemm, fnn_dgemm_fn dgemm);

/* C (m, n) = op(A) (m, k) @ B (k, n) for row-major operands (op(A) = A, or A's transpose when
 * trans_a), through those BLAS routines: cut into small calls where small_gemm.h finds that
 * faster, else one call. Each call runs on one BLAS thread when BLAS is limited to one. */
void fnn_gemm_small_f32(int trans_a, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                        float *c, int ldc);
void fnn_gemm_small_f64(int trans_a, int m, int n, int k, const double *a, int lda, const double *b, int ldb,
                        double *c, int ldc);

typedef struct {
    int n_layers;
    const int *dims; /* n_layers + 1 widths */
    const int *acts; /* activation code after each Linear (the last is 0: logits) */
    const double *act_params; /* the parameter of each of those activations (kernels.h) */
    void **w, **b;   /* (dims[l], dims[l+1]) and (dims[l+1],) */
    void **vw, **vb; /* SGD's velocities (NULL entries without momentum), or Adam's first moments */
    void **sw, **sb; /* Adam's second moments (unused by SGD) */
    void **gw, **gb; /* gradient buffers of the same shapes */
    void **a;        /* a[l]: (batch, dims[l]); a[0] receives the batch */
    void **g;        /* g[l]: (batch, dims[l]) for l >= 1: dL/da[l] */
    void **dz;       /* dz[l]: (batch, dims[l+1]) scratch for the activation derivative; when
                        fnn_act_needs_input(acts[l]), the forward pass keeps the layer's
                        pre-activation z there and the backward turns it into dz in place */
} fnn_mlp;

typedef struct {
    const void *x;  /* (n, dims[0]) rows */
    int x_kind;     /* 0 uint8, 1 float32, 2 float64 */
    const int64_t *y;
    const int64_t *order; /* rows of this epoch, in order */
    ptrdiff_t n_order;
    int64_t *label_buf; /* (batch,) */
    double scale, shift; /* input = x * scale + shift */
} fnn_batch_source;

typedef struct {
    double lr, momentum, weight_decay, bias_weight_decay;
    int nesterov;
    int adam;                   /* 0: SGD (lr, momentum, nesterov); 1: Adam (lr, beta1, beta2, eps) */
    double beta1, beta2, eps;
    int64_t adam_steps_before;  /* Adam steps taken before first_step (its bias correction) */
} fnn_sgd_config;

typedef struct {
    double loss_sum;       /* sum of per-sample losses over the steps run */
    ptrdiff_t correct;     /* argmax(logits) == label count */
    ptrdiff_t seen;        /* samples trained on */
    ptrdiff_t failed_step; /* -1, or the step whose loss was not finite (not applied) */
} fnn_steps_result;

/* Returns 0, or -1 when scratch memory could not be allocated (nothing was run). */
int fnn_mlp_sgd_steps_f32(const fnn_mlp *m, const fnn_batch_source *src, const fnn_sgd_config *opt,
                           ptrdiff_t first_step, ptrdiff_t stop_step, int batch, int n_parts, int n_threads,
                           fnn_steps_result *out);
int fnn_mlp_sgd_steps_f64(const fnn_mlp *m, const fnn_batch_source *src, const fnn_sgd_config *opt,
                           ptrdiff_t first_step, ptrdiff_t stop_step, int batch, int n_parts, int n_threads,
                           fnn_steps_result *out);

#endif
