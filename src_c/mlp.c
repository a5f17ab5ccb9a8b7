/* Instantiates the training engine (mlp_impl.h) for float and double. */
#include "mlp.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernels_internal.h"
#include "direct_gemm.h"
#include "small_gemm.h"

#define FNN_MLP_MAX_THREADS 256
#define FNN_MLP_MAX_LAYERS 256 /* train.pxi refuses deeper networks */


#include <sched.h>

/* A barrier for the training loop's threads that spins only briefly and then yields the CPU.
 * OpenMP's barrier spins for long: when another process wants one of the cores, the thread we
 * wait for gets no CPU until the spinner's timeslice ends, and every step pays milliseconds per
 * barrier (measured: an epoch 50-100x slower beside one busy process). Yielding lets the late
 * thread run at once. */
typedef struct {
    int count;      /* arrivals in the current round */
    int generation; /* bumped when a round completes */
    int n;          /* threads taking part */
} fnn_barrier;

static inline void fnn_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#define FNN_BARRIER_SPINS 2000

static void fnn_barrier_wait(fnn_barrier *b)
{
    if (b->n <= 1) return;
    const int gen = __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->n) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->generation, gen + 1, __ATOMIC_RELEASE);
        return;
    }
    for (int spins = 0; __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) == gen; spins++) {
        if (spins < FNN_BARRIER_SPINS)
            fnn_cpu_relax();
        else
            sched_yield();
    }
}

/* The row index handed to the gather kernels when they copy one row from its own pointer. */
static const int64_t fnn_row_zero = 0;

/* The batch's rows are random rows of X, so each row gathered is a cache miss unless asked for
   earlier: the gather asks for the row this many ahead of the one it copies (one MNIST epoch
   at batch 32 and 128 ran 3-6 % faster at one thread, and as fast or up to 4 % faster at two,
   on both kinds of OpenBLAS kernels; 2 and 8 rows ahead gained less). */
#define FNN_GATHER_AHEAD 4

/* Prefetch the cache lines of the n elements of X (any x_kind) from element offset on. */
static inline void fnn_prefetch_x(const fnn_batch_source *src, ptrdiff_t offset, ptrdiff_t n)
{
#if defined(__GNUC__)
    const size_t item = src->x_kind == 0 ? 1 : (src->x_kind == 1 ? 4 : 8);
    const uintptr_t first = (uintptr_t)src->x + (size_t)offset * item, end = first + (size_t)n * item;
    for (uintptr_t line = first & ~(uintptr_t)63; line < end; line += 64) __builtin_prefetch((const void *)line);
#else
    (void)src, (void)offset, (void)n;
#endif
}

/* The bound of a weight gradient (mlp_impl.h) holds for sums of at most this many rows: each
   term and partial sum is then within (1 + 2^-23)^rows < 2 of the exact bound. */
#define FNN_BOUND_MAX_ROWS (1 << 22)

int fnn_small_gemm_enabled = 1;

void fnn_set_small_gemm(int enabled) { fnn_small_gemm_enabled = enabled != 0; }

/* The input layer's products are computed from the nonzero inputs (mlp_impl.h) only for layers of
   at least FNN_SPARSE_MIN_OUTPUTS outputs, for parts of at most FNN_SPARSE_MAX_ENTRIES entries per
   step (the lists of nonzeros take two ints per entry), and where at most a share
   5 n / (8 (FNN_SPARSE_COST_OUTPUTS + n)), and at most half, of a part's inputs are nonzero for
   a layer of n outputs: each nonzero costs a fixed part (listing it, twice) beside its n
   multiply-adds per product. On the avx2 path (one thread, batch 32) the dense products were as
   fast at shares of about 0.2 (64 outputs), 0.3 (128) and 0.4 (256) for zeros strewn at random,
   which the rule's 0.21, 0.31 and 0.42 follow; zeros in runs, as in MNIST's images (7.6, 28.7,
   28.4 and 11.8 % nonzero in its four parts), cost less to list and gain more. Below 64 outputs
   MNIST's epoch gained nothing, and counting the nonzeros cost 4-6 % (16-32 outputs). */
/* One part's lists of its nonzero inputs (dg_nonzeros), in the steps' workspace: row_start
   (batch + 1) and row_cols (batch x part_width), col_start (part_width + 1), col_next
   (part_width, scratch) and col_rows (batch x part_width). */
typedef struct {
    int *row_start, *row_cols, *col_start, *col_next, *col_rows;
} fnn_nonzero_lists;

static inline ptrdiff_t fnn_nonzero_lists_ints(int batch, ptrdiff_t part_width)
{
    return 2 * (ptrdiff_t)batch * part_width + batch + 1 + 2 * part_width + 1;
}

static inline fnn_nonzero_lists fnn_part_lists(int *workspace, int part, int batch, ptrdiff_t part_width)
{
    fnn_nonzero_lists l;
    l.row_start = workspace + part * fnn_nonzero_lists_ints(batch, part_width);
    l.row_cols = l.row_start + batch + 1;
    l.col_start = l.row_cols + (ptrdiff_t)batch * part_width;
    l.col_next = l.col_start + part_width + 1;
    l.col_rows = l.col_next + part_width;
    return l;
}

#define FNN_SPARSE_MIN_OUTPUTS 64
#define FNN_SPARSE_MAX_ENTRIES (1 << 22)
#define FNN_SPARSE_COST_OUTPUTS 128

int fnn_sparse_input = 1;

void fnn_set_sparse_input(int enabled) { fnn_sparse_input = enabled != 0; }

int fnn_direct_gemm_classes = FNN_DIRECT_TAKEN;

void fnn_set_direct_gemm(int classes) { fnn_direct_gemm_classes = classes & FNN_DIRECT_ALL_CLASSES; }

static fnn_sgemm_fn blas_sgemm;
static fnn_dgemm_fn blas_dgemm;

void fnn_set_blas(fnn_sgemm_fn sgemm, fnn_dgemm_fn dgemm)
{
    blas_sgemm = sgemm;
    blas_dgemm = dgemm;
}

static fnn_sgemm64_fn blas_sgemm64;
static fnn_dgemm64_fn blas_dgemm64;

void fnn_set_blas64(fnn_sgemm64_fn sgemm, fnn_dgemm64_fn dgemm)
{
    const int both = sgemm != NULL && dgemm != NULL;
    blas_sgemm64 = both ? sgemm : NULL;
    blas_dgemm64 = both ? dgemm : NULL;
}

int fnn_blas64_enabled(void) { return blas_sgemm64 != NULL; }

#define REAL float
#define REAL_MAX FLT_MAX
#define SUF f32
#define SAME_KIND 1
#define TABLE_TYPE fnn_table_f32
#define TABLE_CURRENT fnn_table_f32_current
#define GEMM_FN blas_sgemm
#define GEMM64_FN blas_sgemm64
#define GATHER_OTHER(x, offset, out, width, scale, shift) \
    fnn_gather_f64_to_f32((const double *)(x) + (offset), &fnn_row_zero, out, 1, width, scale, shift, 1)
#include "mlp_impl.h"
#undef REAL
#undef REAL_MAX
#undef SUF
#undef SAME_KIND
#undef TABLE_TYPE
#undef TABLE_CURRENT
#undef GEMM_FN
#undef GEMM64_FN
#undef GATHER_OTHER

#define REAL double
#define REAL_MAX DBL_MAX
#define SUF f64
#define SAME_KIND 2
#define TABLE_TYPE fnn_table_f64
#define TABLE_CURRENT fnn_table_f64_current
#define GEMM_FN blas_dgemm
#define GEMM64_FN blas_dgemm64
#define GATHER_OTHER(x, offset, out, width, scale, shift) \
    fnn_gather_f32_to_f64((const float *)(x) + (offset), &fnn_row_zero, out, 1, width, scale, shift, 1)
#include "mlp_impl.h"
