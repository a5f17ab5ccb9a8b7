/* Instantiates the MLP training loop (mlp_impl.h) for float and double. */
#include "mlp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernels_internal.h"

#define FNN_MLP_MAX_THREADS 256

static fnn_sgemm_fn blas_sgemm;
static fnn_dgemm_fn blas_dgemm;

void fnn_set_blas(fnn_sgemm_fn sgemm, fnn_dgemm_fn dgemm)
{
    blas_sgemm = sgemm;
    blas_dgemm = dgemm;
}

#define REAL float
#define SUF f32
#define SAME_KIND 1
#define TABLE_TYPE fnn_table_f32
#define TABLE_CURRENT fnn_table_f32_current
#define GEMM_FN blas_sgemm
#define GATHER_OTHER(x, rows, out, n, f, scale, shift, nt) \
    fnn_gather_f64_to_f32((const double *)(x), rows, out, n, f, scale, shift, nt)
#include "mlp_impl.h"
#undef REAL
#undef SUF
#undef SAME_KIND
#undef TABLE_TYPE
#undef TABLE_CURRENT
#undef GEMM_FN
#undef GATHER_OTHER

#define REAL double
#define SUF f64
#define SAME_KIND 2
#define TABLE_TYPE fnn_table_f64
#define TABLE_CURRENT fnn_table_f64_current
#define GEMM_FN blas_dgemm
#define GATHER_OTHER(x, rows, out, n, f, scale, shift, nt) \
    fnn_gather_f32_to_f64((const float *)(x), rows, out, n, f, scale, shift, nt)
#include "mlp_impl.h"
