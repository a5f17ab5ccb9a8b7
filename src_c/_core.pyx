# cython: language_level=3
"""Compiled core of fastnn.

The ``def`` functions here check nothing: :mod:`fastnn.ops` validates every argument first
(dtypes, shapes, contiguity, label ranges, aliasing) and only then calls them. The ``cdef``
functions run without the GIL; the native training loop itself is C (``mlp.c``), driven from
``train.pxi``.
"""
import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t
from libc.math cimport fabs
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport sgemm, dgemm

cnp.import_array()

cdef extern from "kernels.h" nogil:
    int fnn_simd_select(const char *name)
    const char *fnn_simd_current()
    int fnn_simd_available(const char *name)
    const char *fnn_build_flags()
    int fnn_openmp_enabled()
    int fnn_openmp_max_threads()
    int fnn_openmp_team_thread_ids(int n, long *ids)

    enum: FNN_ACT_COUNT
    int fnn_act_needs_input(int act)
    void fnn_act_forward_f32(int act, double param, const float *x, float *y, Py_ssize_t n, int nt)
    void fnn_act_forward_f64(int act, double param, const double *x, double *y, Py_ssize_t n, int nt)
    void fnn_act_backward_f32(int act, double param, const float *z, const float *y, const float *g,
                              float *out, Py_ssize_t n, int nt)
    void fnn_act_backward_f64(int act, double param, const double *z, const double *y, const double *g,
                              double *out, Py_ssize_t n, int nt)
    void fnn_bias_act_f32(int act, double param, float *z, const float *b, Py_ssize_t rows, Py_ssize_t cols,
                          int nt)
    void fnn_bias_act_f64(int act, double param, double *z, const double *b, Py_ssize_t rows, Py_ssize_t cols,
                          int nt)
    void fnn_act_grad_colsum_f32(int act, double param, const float *z, const float *y, const float *g,
                                 float *dz, float *db, Py_ssize_t rows, Py_ssize_t cols, int nt)
    void fnn_act_grad_colsum_f64(int act, double param, const double *z, const double *y, const double *g,
                                 double *dz, double *db, Py_ssize_t rows, Py_ssize_t cols, int nt)
    enum: FNN_LOSS_SOFTMAX_XENT, FNN_LOSS_BCE, FNN_LOSS_MSE, FNN_LOSS_COUNT
    double fnn_loss_f32(int loss, const float *z, const int64_t *labels, const float *targets, const float *w,
                        float *grad, double *row_loss, Py_ssize_t rows, Py_ssize_t k, double scale, int nt)
    double fnn_loss_f64(int loss, const double *z, const int64_t *labels, const double *targets,
                        const double *w, double *grad, double *row_loss, Py_ssize_t rows, Py_ssize_t k,
                        double scale, int nt)
    void fnn_softmax_f32(const float *logits, float *out, Py_ssize_t rows, Py_ssize_t k, int log_, int nt)
    void fnn_softmax_f64(const double *logits, double *out, Py_ssize_t rows, Py_ssize_t k, int log_, int nt)
    void fnn_sgd_f32(float *p, const float *g, float *v, Py_ssize_t n, double lr, double mu, double wd,
                     int nesterov, int nt)
    void fnn_sgd_f64(double *p, const double *g, double *v, Py_ssize_t n, double lr, double mu, double wd,
                     int nesterov, int nt)
    void fnn_gather_u8_f32(const uint8_t *x, const int64_t *rows, float *out, Py_ssize_t n_rows,
                           Py_ssize_t f, double scale, double shift, int nt)
    void fnn_gather_u8_f64(const uint8_t *x, const int64_t *rows, double *out, Py_ssize_t n_rows,
                           Py_ssize_t f, double scale, double shift, int nt)
    void fnn_gather_f32(const float *x, const int64_t *rows, float *out, Py_ssize_t n_rows,
                        Py_ssize_t f, double scale, double shift, int nt)
    void fnn_gather_f64(const double *x, const int64_t *rows, double *out, Py_ssize_t n_rows,
                        Py_ssize_t f, double scale, double shift, int nt)
    void fnn_transpose_f32(const float *src, float *dst, Py_ssize_t rows, Py_ssize_t cols)
    void fnn_transpose_f64(const double *src, double *dst, Py_ssize_t rows, Py_ssize_t cols)
    void fnn_adam_f32(float *p, const float *g, float *m, float *v, Py_ssize_t n, double lr, double beta1,
                      double beta2, double eps, double weight_decay, int decoupled, int64_t step, int nt)
    void fnn_adam_f64(double *p, const double *g, double *m, double *v, Py_ssize_t n, double lr, double beta1,
                      double beta2, double eps, double weight_decay, int decoupled, int64_t step, int nt)
    int fnn_finite_range_f32(const float *x, Py_ssize_t n, double *lo, double *hi, int nt)
    int fnn_finite_range_f64(const double *x, Py_ssize_t n, double *lo, double *hi, int nt)
    void fnn_gather_f64_to_f32(const double *x, const int64_t *rows, float *out, Py_ssize_t n_rows,
                               Py_ssize_t f, double scale, double shift, int nt)
    void fnn_gather_f32_to_f64(const float *x, const int64_t *rows, double *out, Py_ssize_t n_rows,
                               Py_ssize_t f, double scale, double shift, int nt)

cdef extern from "small_gemm.h" nogil:
    int fnn_small_gemm_tiles(int trans_a, int m, int n, int k, int *m_tile, int *n_tile)
    int fnn_small_gemm_enabled
    void fnn_set_small_gemm(int enabled)

cdef extern from "direct_gemm.h" nogil:
    int fnn_direct_gemm_form(int trans_a, int trans_b, int m, int n, int k, int lda, int ldb)
    int fnn_direct_gemm_class(int trans_a, int trans_b, int m, int n, int k)
    int fnn_direct_gemm_classes
    void fnn_set_direct_gemm(int classes)
    enum: FNN_DIRECT_TAKEN
    enum: FNN_DIRECT_ALL_CLASSES

cdef extern from "mlp.h" nogil:
    int fnn_sparse_input
    void fnn_set_sparse_input(int enabled)
    void fnn_gemm_f32(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc)
    void fnn_gemm_f64(int trans_a, int trans_b, int m, int n, int k, double alpha, const double *a, int lda,
                      const double *b, int ldb, double beta, double *c, int ldc)
    void fnn_gemm_small_f32(int trans_a, int m, int n, int k, const float *a, int lda, const float *b,
                            int ldb, float *c, int ldc)
    void fnn_gemm_small_f64(int trans_a, int m, int n, int k, const double *a, int lda, const double *b,
                            int ldb, double *c, int ldc)

ctypedef fused real:
    float
    double

# Threads for the elementwise kernels; BLAS threads are set separately (fastnn._threads).
cdef int _n_threads = 1
# Whether BLAS is held at one thread (fastnn._threads.blas_threads_limited): products are then cut
# by their shape alone, whatever _n_threads is.
cdef bint _blas_single = False

cdef extern from *:
    """
    /* A per-thread override of the kernels' thread count (0: none); see kernel_threads. */
    static __thread int fnn_calling_thread_kernel_threads = 0;
    """
    int fnn_calling_thread_kernel_threads


cdef inline int kernel_threads() noexcept nogil:
    """The thread count for the calling thread's kernels: its own override, else the process's."""
    if fnn_calling_thread_kernel_threads > 0:
        return fnn_calling_thread_kernel_threads
    return _n_threads

ACT_NONE, ACT_SIGMOID, ACT_RELU, ACT_TANH, ACT_SCALED_TANH = 0, 1, 2, 3, 4


def set_kernel_threads(int n):
    global _n_threads
    _n_threads = n if n > 0 else 1


def get_kernel_threads():
    return _n_threads


def set_calling_thread_kernel_threads(int n):
    """Run the calling thread's kernels on ``n`` threads (0: the process-wide count again);
    returns the previous override. Other threads, and the count the native loop is given, are
    not affected."""
    global fnn_calling_thread_kernel_threads
    previous = fnn_calling_thread_kernel_threads
    fnn_calling_thread_kernel_threads = n if n > 0 else 0
    return previous


def set_blas_single(bint single):
    """Tell the linear ops that BLAS runs one thread (True) or as configured (False)."""
    global _blas_single
    _blas_single = single


def openmp_enabled():
    return bool(fnn_openmp_enabled())


def openmp_max_threads():
    return fnn_openmp_max_threads()


def openmp_team_thread_ids(int n):
    """The Linux thread ids of an OpenMP team of ``n`` threads (the calling thread's first), as
    the kernels' parallel regions run them; an empty list without OpenMP or off Linux."""
    if n < 1:
        raise ValueError(f"n: expected a positive int, got {n}")
    cdef long *ids = <long*>malloc(<size_t>n * sizeof(long))
    if ids == NULL:
        raise MemoryError("openmp_team_thread_ids")
    cdef int count
    try:
        with nogil:
            count = fnn_openmp_team_thread_ids(n, ids)
        return [ids[i] for i in range(count)]
    finally:
        free(ids)


def build_flags():
    return fnn_build_flags().decode()


def simd_paths_available():
    """Names of the SIMD paths this CPU can run, fastest first."""
    return [name for name in ("avx2_fma", "generic") if fnn_simd_available(name.encode())]


def set_simd_path(str name):
    """Select "avx2_fma", "generic" or "auto" (the fastest available)."""
    if fnn_simd_select(name.encode()) != 0:
        raise ValueError(f"SIMD path {name!r} is not available on this CPU; "
                         f"available: {simd_paths_available()}")


def get_simd_path():
    return fnn_simd_current().decode()


def set_small_gemm(bint enabled):
    """Cut products into small BLAS calls (small_gemm.h) or make one call per product.
    Set once when the core loads (fastnn._machine.configure)."""
    fnn_set_small_gemm(enabled)


def small_gemm_enabled():
    return bool(fnn_small_gemm_enabled)


def set_sparse_input(bint enabled):
    """Compute the training loop's input-layer products from the nonzero inputs alone, where they
    are mostly zeros (True; the rule is in mlp.c), or always as dense products (False). The weights are
    the same bits either way where the dense products run in fastnn's own kernels (mlp_impl.h).
    Set when the core loads (fastnn._machine.configure)."""
    fnn_set_sparse_input(enabled)


def sparse_input_enabled():
    return bool(fnn_sparse_input)


# The shape classes of direct_gemm.h, as its bits.
DIRECT_GEMM_CLASSES = {"outer": 1, "one_column": 2, "one_row": 4, "small_k": 8, "blocked": 16}


def set_direct_gemm(object enabled):
    """Compute the small products direct_gemm.h takes in fastnn's own kernels (True) or send
    every product to BLAS (False); a set of class names (DIRECT_GEMM_CLASSES) runs those classes
    direct instead, for tests and measurements. Set once when the core loads
    (fastnn._machine.configure)."""
    if isinstance(enabled, bool):
        fnn_set_direct_gemm(FNN_DIRECT_TAKEN if enabled else 0)
    else:
        fnn_set_direct_gemm(sum(DIRECT_GEMM_CLASSES[name] for name in set(enabled)))


def direct_gemm_classes():
    """The names of the shape classes that run direct now (an empty set: none)."""
    return {name for name, bit in DIRECT_GEMM_CLASSES.items() if fnn_direct_gemm_classes & bit}


def direct_gemm_enabled():
    """Whether the classes direct_gemm.h takes run direct (the strategies other than "plain")."""
    return fnn_direct_gemm_classes != 0


def direct_gemm_taken():
    """The names of the small classes every strategy but "plain" takes (not "blocked", which
    the "blocked" strategy adds)."""
    return {name for name, bit in DIRECT_GEMM_CLASSES.items() if FNN_DIRECT_TAKEN & bit}


_DIRECT_FORMS = {0: None, 1: "rows", 2: "cols", 3: "dots"}


def direct_gemm_form(bint trans_a, bint trans_b, int m, int n, int k, int lda, int ldb):
    """The direct kernel's form ("rows", "cols" or "dots") that computes op(A) (m, k) @ op(B)
    (k, n) with those leading dimensions now, or None when it goes to BLAS."""
    return _DIRECT_FORMS[fnn_direct_gemm_form(trans_a, trans_b, m, n, k, lda, ldb)]


def direct_gemm_class(bint trans_a, bint trans_b, int m, int n, int k):
    """The shape class of op(A) (m, k) @ op(B) (k, n) (a DIRECT_GEMM_CLASSES name), or None."""
    cdef int bit = fnn_direct_gemm_class(trans_a, trans_b, m, n, k)
    return next((name for name, b in DIRECT_GEMM_CLASSES.items() if b == bit), None)


cdef enum:
    _INT_MAX = 2147483647


cdef int _row_stride(cnp.ndarray x, str name) except -1:
    """The leading dimension (in elements) of a 2-D array whose rows are contiguous."""
    if cnp.PyArray_NDIM(x) != 2:
        raise ValueError(f"{name}: expected a 2-D array, got {cnp.PyArray_NDIM(x)}-D")
    if x.shape[0] > _INT_MAX or x.shape[1] > _INT_MAX:
        raise ValueError(f"{name}: expected sides below 2**31, got {(<object>x).shape}")
    if cnp.PyArray_SIZE(x) == 0:
        return <int>max(x.shape[1], 1)
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(x)
    cdef Py_ssize_t rs = cnp.PyArray_STRIDES(x)[0], cs = cnp.PyArray_STRIDES(x)[1]
    if ((x.shape[1] > 1 and cs != item) or rs % item != 0 or rs < 0 or rs // item > _INT_MAX
            or (x.shape[0] > 1 and rs < x.shape[1] * item)):
        raise ValueError(f"{name}: expected rows of contiguous elements at a positive stride below "
                         f"2**31 elements, got strides {(rs, cs)}")
    return <int>max(rs // item, 1)


def gemm(cnp.ndarray a, cnp.ndarray b, cnp.ndarray out, bint trans_a=False, bint trans_b=False):
    """out (m, n) = op(a) @ op(b) through the product fastnn's engine and ops make (fnn_gemm:
    direct kernel or BLAS, by direct_gemm.h's rule); op transposes when trans_a / trans_b.

    a, b, out: 2-D float32 or float64 arrays of one dtype whose rows are contiguous (views of
    larger arrays welcome: the leading dimensions are their row strides); out writeable and
    sharing no memory with a or b. Returns out. Raises ValueError naming the argument otherwise
    (other dtypes, layouts, shapes that do not match). For tests and measurements."""
    cdef int lda = _row_stride(a, "a"), ldb = _row_stride(b, "b"), ldc = _row_stride(out, "out")
    if not (a.dtype == b.dtype == out.dtype) or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"a, b, out: expected one dtype, float32 or float64, got {a.dtype}, {b.dtype}, "
                         f"{out.dtype}")
    cdef int m = <int>(a.shape[1] if trans_a else a.shape[0]), k = <int>(a.shape[0] if trans_a else a.shape[1])
    cdef int kb = <int>(b.shape[1] if trans_b else b.shape[0]), n = <int>(b.shape[0] if trans_b else b.shape[1])
    if kb != k or out.shape[0] != m or out.shape[1] != n:
        raise ValueError(f"a, b, out: shapes {(<object>a).shape}, {(<object>b).shape}, {(<object>out).shape} "
                         f"do not make out = op(a) @ op(b) (trans_a={bool(trans_a)}, trans_b={bool(trans_b)})")
    if not out.flags.writeable:
        raise ValueError("out: expected a writeable array, got a read-only one")
    if first_overlap(out, (a, b)) >= 0:
        raise ValueError("out: expected memory of its own, got an array that overlaps a or b")
    cdef bint f32 = _is_f32(a)
    cdef void *ap = _ptr(a)
    cdef void *bp = _ptr(b)
    cdef void *cp = _ptr(out)
    with nogil:
        if f32:
            fnn_gemm_f32(trans_a, trans_b, m, n, k, 1, <float*>ap, lda, <float*>bp, ldb, 0, <float*>cp, ldc)
        else:
            fnn_gemm_f64(trans_a, trans_b, m, n, k, 1, <double*>ap, lda, <double*>bp, ldb, 0, <double*>cp, ldc)
    return out


set_simd_path("auto")


cdef inline void* _ptr(cnp.ndarray a):
    return cnp.PyArray_DATA(a)


cdef inline bint _is_f32(cnp.ndarray a):
    return cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32


# ---- nogil building blocks (row-major arrays, BLAS is column-major: operands swap) ----

cdef void gemm_rowmajor(bint trans_a, bint trans_b, int m, int n, int k, real alpha,
                        const real *a, int lda, const real *b, int ldb, real beta,
                        real *c, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) @ op(B) + beta * C with C-ordered operands (mlp.h's fnn_gemm)."""
    if real is float:
        fnn_gemm_f32(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        fnn_gemm_f64(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef void bias_act(int act, double param, real *z, const real *b, Py_ssize_t rows, Py_ssize_t cols,
                   int nt) noexcept nogil:
    if real is float:
        fnn_bias_act_f32(act, param, z, b, rows, cols, nt)
    else:
        fnn_bias_act_f64(act, param, z, b, rows, cols, nt)


cdef void act_forward_rows(int act, double param, const real *x, real *y, Py_ssize_t n) noexcept nogil:
    if real is float:
        fnn_act_forward_f32(act, param, x, y, n, 1)
    else:
        fnn_act_forward_f64(act, param, x, y, n, 1)


# Output blocks above this many bytes are produced in row blocks, so that bias and activation
# are applied while each block is still in cache.
cdef enum:
    _BLOCK_BYTES = 1 << 20


cdef bint small_tiles(bint trans_a, int m, int n, int k, int *m_tile, int *n_tile) noexcept nogil:
    """Whether to cut C = op(A) @ B into small BLAS calls (small_gemm.h): only when BLAS runs one
    thread (the calling thread's kernels run on one thread, or BLAS is held at one as in predict
    and evaluate). Small calls run on one thread each, and calls made from several threads at once
    into an OpenBLAS that has its own threads are many times slower (measured: 10 ms instead of
    0.5), so with more threads one multithreaded BLAS call does better. The cut changes the last bits of a product
    (OpenBLAS's small-matrix kernels round differently from its packed ones), so where BLAS is
    held at one thread the results do not depend on the thread count."""
    return (kernel_threads() == 1 or _blas_single) and fnn_small_gemm_tiles(trans_a, m, n, k, m_tile, n_tile)


cdef void gemm_small(bint trans_a, int m, int n, int k, const real *a, int lda, const real *b, int ldb,
                     real *c, int ldc) noexcept nogil:
    """C (m, n) = op(A) @ B, as small BLAS calls where small_tiles says so, else as one call."""
    cdef int m_tile, n_tile
    if not small_tiles(trans_a, m, n, k, &m_tile, &n_tile):
        gemm_rowmajor(trans_a, False, m, n, k, <real>1, a, lda, b, ldb, <real>0, c, ldc)
    elif real is float:
        fnn_gemm_small_f32(trans_a, m, n, k, a, lda, b, ldb, c, ldc)
    else:
        fnn_gemm_small_f64(trans_a, m, n, k, a, lda, b, ldb, c, ldc)


cdef void linear_forward_impl(const real *x, const real *w, const real *b, real *out,
                              int batch, int n_in, int n_out, int act, double param,
                              real *z_out) noexcept nogil:
    """out = act(x @ w + b); z_out (NULL, or (batch, n_out)) receives x @ w + b."""
    cdef int start = 0, rows = batch, m_tile, n_tile
    cdef Py_ssize_t row_bytes = <Py_ssize_t>n_out * sizeof(real)
    if small_tiles(False, batch, n_out, n_in, &m_tile, &n_tile):
        rows = m_tile  # bias and activation follow each block of m_tile rows
    elif row_bytes > 0 and <Py_ssize_t>batch * row_bytes > _BLOCK_BYTES:
        rows = <int>((_BLOCK_BYTES // 2) // row_bytes)
        if rows < 128:
            rows = 128
    while start < batch:
        if rows > batch - start:
            rows = batch - start
        gemm_small(False, rows, n_out, n_in, x + <Py_ssize_t>start * n_in, n_in, w, n_out,
                   out + <Py_ssize_t>start * n_out, n_out)
        # One thread: the pass is small next to the product, and OpenMP threads still spinning
        # after it would take a core from BLAS's own threads in the next product.
        if z_out == NULL:
            bias_act(act, param, out + <Py_ssize_t>start * n_out, b, rows, n_out, 1)
        else:
            bias_act(0, 0.0, out + <Py_ssize_t>start * n_out, b, rows, n_out, 1)
            memcpy(z_out + <Py_ssize_t>start * n_out, out + <Py_ssize_t>start * n_out,
                   <size_t>rows * n_out * sizeof(real))
            act_forward_rows(act, param, out + <Py_ssize_t>start * n_out, out + <Py_ssize_t>start * n_out,
                             <Py_ssize_t>rows * n_out)
        start += rows


cdef int linear_backward_impl(const real *x, const real *w, const real *g, const real *z, const real *y,
                              int act, double param, real *dw, real *db, real *dx,
                              int batch, int n_in, int n_out) noexcept nogil:
    """dz = g * act'(z) (from y, or from the pre-activation z, which may be NULL when the
    activation does not need it); db = colsum(dz); dw = x^T dz; dx = dz w^T (dx may be NULL).

    With an activation, dz needs a (batch, n_out) scratch buffer, allocated here (g is never
    written). Returns -1 when that allocation fails, 0 otherwise.
    """
    cdef real *dz = <real*>g
    if act != 0:
        dz = <real*>malloc(<size_t>batch * <size_t>n_out * sizeof(real) + 1)
        if dz == NULL:
            return -1
    # One thread, as in linear_forward_impl: BLAS threads do the heavy part next.
    if real is float:
        fnn_act_grad_colsum_f32(act, param, z, y, g, dz if act != 0 else NULL, db, batch, n_out, 1)
    else:
        fnn_act_grad_colsum_f64(act, param, z, y, g, dz if act != 0 else NULL, db, batch, n_out, 1)
    gemm_small(True, n_in, n_out, batch, x, n_in, dz, n_out, dw, n_out)
    if dx != NULL:
        input_gradient(dz, w, dx, batch, n_in, n_out)
    if act != 0:
        free(dz)
    return 0


cdef void input_gradient(const real *dz, const real *w, real *dx, int batch, int n_in, int n_out) noexcept nogil:
    """dx (batch, n_in) = dz (batch, n_out) @ w.T. OpenBLAS's small kernels are slow for a
    transposed first operand, so when the product is cut into tiles w.T is first written out
    (an 8x8-block transpose costs 11 us for 784x128 floats against 40 us gained)."""
    cdef int m_tile, n_tile
    cdef real *w_t = NULL
    if small_tiles(False, batch, n_in, n_out, &m_tile, &n_tile):
        w_t = <real*>malloc(<size_t>n_in * <size_t>n_out * sizeof(real))
    if w_t == NULL:  # one packed call (also when the scratch cannot be allocated)
        gemm_rowmajor(False, True, batch, n_in, n_out, <real>1, dz, n_out, w, n_out, <real>0, dx, n_in)
        return
    if real is float:
        fnn_transpose_f32(w, w_t, n_in, n_out)
    else:
        fnn_transpose_f64(w, w_t, n_in, n_out)
    gemm_small(False, batch, n_in, n_out, dz, n_out, w_t, n_in, dx, n_in)
    free(w_t)


# ---- raw entry points for fastnn.ops (arguments already validated) ----

cdef inline void* _ptr_or_null(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


def act_needs_input(int act):
    """Whether the derivative of activation ``act`` needs its input (else it comes from the output)."""
    return bool(fnn_act_needs_input(act))


def act_forward(int act, double param, cnp.ndarray x, cnp.ndarray y):
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef int nt = kernel_threads()
    cdef bint f32 = _is_f32(x)
    cdef void *xp = _ptr(x)
    cdef void *yp = _ptr(y)
    with nogil:
        if f32:
            fnn_act_forward_f32(act, param, <float*>xp, <float*>yp, n, nt)
        else:
            fnn_act_forward_f64(act, param, <double*>xp, <double*>yp, n, nt)
    return y


def act_backward(int act, double param, object z, object y, cnp.ndarray g, cnp.ndarray out):
    """out = g * act'(z); z or y may be None where the activation does not read it."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(g)
    cdef int nt = kernel_threads()
    cdef bint f32 = _is_f32(g)
    cdef void *zp = _ptr_or_null(z)
    cdef void *yp = _ptr_or_null(y)
    cdef void *gp = _ptr(g)
    cdef void *op = _ptr(out)
    with nogil:
        if f32:
            fnn_act_backward_f32(act, param, <float*>zp, <float*>yp, <float*>gp, <float*>op, n, nt)
        else:
            fnn_act_backward_f64(act, param, <double*>zp, <double*>yp, <double*>gp, <double*>op, n, nt)
    return out


def softmax(cnp.ndarray logits, cnp.ndarray out, bint log):
    cdef Py_ssize_t rows = logits.shape[0], k = logits.shape[1]
    cdef int nt = kernel_threads()
    cdef bint f32 = _is_f32(logits)
    cdef void *xp = _ptr(logits)
    cdef void *op = _ptr(out)
    with nogil:
        if f32:
            fnn_softmax_f32(<float*>xp, <float*>op, rows, k, log, nt)
        else:
            fnn_softmax_f64(<double*>xp, <double*>op, rows, k, log, nt)
    return out


LOSS_SOFTMAX_XENT, LOSS_BCE, LOSS_MSE = FNN_LOSS_SOFTMAX_XENT, FNN_LOSS_BCE, FNN_LOSS_MSE
LOSS_COUNT = FNN_LOSS_COUNT


def loss(int code, cnp.ndarray z, object labels, object targets, object weights, cnp.ndarray grad,
         object row_loss, double scale):
    """Returns sum_i w_i loss_i of loss `code` (kernels.h's enum fnn_loss): labels int64 (rows,)
    for LOSS_SOFTMAX_XENT, else targets (rows, k) of z's dtype; weights None or z's dtype,
    row_loss None or float64. The caller (fastnn.ops) has checked every shape and value."""
    if not 0 <= code < FNN_LOSS_COUNT:
        raise ValueError(f"code: expected a loss code in [0, {FNN_LOSS_COUNT}), got {code}")
    if (labels is None) != (code != FNN_LOSS_SOFTMAX_XENT) or (targets is None) == (labels is None):
        raise ValueError("labels, targets: expected labels for softmax cross-entropy, targets otherwise")
    cdef Py_ssize_t rows = z.shape[0], k = z.shape[1]
    cdef int nt = kernel_threads()
    cdef bint f32 = _is_f32(z)
    cdef void *zp = _ptr(z)
    cdef int64_t *lp = <int64_t*>_ptr_or_null(labels)
    cdef void *tp = _ptr_or_null(targets)
    cdef void *wp = _ptr_or_null(weights)
    cdef void *gp = _ptr(grad)
    cdef double *rl = <double*>_ptr_or_null(row_loss)
    cdef double total
    with nogil:
        if f32:
            total = fnn_loss_f32(code, <float*>zp, lp, <float*>tp, <float*>wp, <float*>gp, rl, rows, k, scale, nt)
        else:
            total = fnn_loss_f64(code, <double*>zp, lp, <double*>tp, <double*>wp, <double*>gp, rl, rows, k, scale,
                                 nt)
    return total


def linear_forward(cnp.ndarray x, cnp.ndarray w, object b, int act, cnp.ndarray out, double param=0.0,
                   object z_out=None):
    cdef int batch = <int>x.shape[0], n_in = <int>x.shape[1], n_out = <int>w.shape[1]
    cdef bint f32 = _is_f32(x)
    cdef void *zp = _ptr_or_null(z_out)
    cdef void *xp = _ptr(x)
    cdef void *wp = _ptr(w)
    cdef void *bp = _ptr_or_null(b)
    cdef void *op = _ptr(out)
    with nogil:
        if f32:
            linear_forward_impl[float](<float*>xp, <float*>wp, <float*>bp, <float*>op,
                                       batch, n_in, n_out, act, param, <float*>zp)
        else:
            linear_forward_impl[double](<double*>xp, <double*>wp, <double*>bp, <double*>op,
                                        batch, n_in, n_out, act, param, <double*>zp)
    return out


def linear_backward(cnp.ndarray x, cnp.ndarray w, cnp.ndarray g, object y, int act,
                    cnp.ndarray dw, cnp.ndarray db, object dx, double param=0.0, object z=None):
    cdef int batch = <int>x.shape[0], n_in = <int>x.shape[1], n_out = <int>w.shape[1]
    cdef int status
    cdef bint f32 = _is_f32(x)
    cdef void *xp = _ptr(x)
    cdef void *wp = _ptr(w)
    cdef void *gp = _ptr(g)
    cdef void *yp = _ptr_or_null(y)
    cdef void *zp = _ptr_or_null(z)
    cdef void *dwp = _ptr(dw)
    cdef void *dbp = _ptr(db)
    cdef void *dxp = _ptr_or_null(dx)
    with nogil:
        if f32:
            status = linear_backward_impl[float](<float*>xp, <float*>wp, <float*>gp, <float*>zp, <float*>yp,
                                                 act, param, <float*>dwp, <float*>dbp, <float*>dxp,
                                                 batch, n_in, n_out)
        else:
            status = linear_backward_impl[double](<double*>xp, <double*>wp, <double*>gp, <double*>zp,
                                                  <double*>yp, act, param, <double*>dwp, <double*>dbp, <double*>dxp,
                                                  batch, n_in, n_out)
    if status != 0:
        raise MemoryError("linear_backward: could not allocate the (batch, out) scratch buffer")


def sgd(cnp.ndarray p, cnp.ndarray g, object v, double lr, double momentum, double weight_decay,
        bint nesterov):
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    cdef int nt = kernel_threads()
    cdef bint f32 = _is_f32(p)
    cdef void *pp = _ptr(p)
    cdef void *gp = _ptr(g)
    cdef void *vp = _ptr_or_null(v)
    with nogil:
        if f32:
            fnn_sgd_f32(<float*>pp, <float*>gp, <float*>vp, n, lr, momentum, weight_decay, nesterov, nt)
        else:
            fnn_sgd_f64(<double*>pp, <double*>gp, <double*>vp, n, lr, momentum, weight_decay, nesterov, nt)
    return p


def adam(cnp.ndarray p, cnp.ndarray g, cnp.ndarray m, cnp.ndarray v, int64_t step, double lr,
         double beta1, double beta2, double eps, double weight_decay, bint decoupled):
    cdef Py_ssize_t n = cnp.PyArray_SIZE(p)
    cdef int nt = kernel_threads()
    cdef bint f32 = _is_f32(p)
    cdef void *pp = _ptr(p)
    cdef void *gp = _ptr(g)
    cdef void *mp = _ptr(m)
    cdef void *vp = _ptr(v)
    with nogil:
        if f32:
            fnn_adam_f32(<float*>pp, <float*>gp, <float*>mp, <float*>vp, n, lr, beta1, beta2, eps,
                         weight_decay, decoupled, step, nt)
        else:
            fnn_adam_f64(<double*>pp, <double*>gp, <double*>mp, <double*>vp, n, lr, beta1, beta2, eps,
                         weight_decay, decoupled, step, nt)
    return p


def gather(cnp.ndarray x, cnp.ndarray rows, cnp.ndarray out, double scale, double shift):
    """out[i] = x[rows[i]] * scale + shift; x uint8/float32/float64, out float32/float64, rows int64."""
    cdef Py_ssize_t n_rows = rows.shape[0], f = x.shape[1]
    cdef int nt = kernel_threads()
    cdef int xt = cnp.PyArray_TYPE(x)
    cdef bint out32 = _is_f32(out)
    cdef const int64_t *r = <int64_t*>_ptr(rows)
    cdef void *xp = _ptr(x)
    cdef void *op = _ptr(out)
    with nogil:
        if xt == cnp.NPY_UINT8:
            if out32:
                fnn_gather_u8_f32(<uint8_t*>xp, r, <float*>op, n_rows, f, scale, shift, nt)
            else:
                fnn_gather_u8_f64(<uint8_t*>xp, r, <double*>op, n_rows, f, scale, shift, nt)
        elif xt == cnp.NPY_FLOAT32:
            if out32:
                fnn_gather_f32(<float*>xp, r, <float*>op, n_rows, f, scale, shift, nt)
            else:
                fnn_gather_f32_to_f64(<float*>xp, r, <double*>op, n_rows, f, scale, shift, nt)
        else:
            if out32:
                fnn_gather_f64_to_f32(<double*>xp, r, <float*>op, n_rows, f, scale, shift, nt)
            else:
                fnn_gather_f64(<double*>xp, r, <double*>op, n_rows, f, scale, shift, nt)
    return out


def finite_range(cnp.ndarray x):
    """(whether the C-contiguous float32/float64 array ``x`` holds NaN or inf, its least entry,
    its greatest entry), in one pass; (False, inf, -inf) when empty."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef int bad
    cdef double lo = 0.0, hi = 0.0
    cdef int nt = kernel_threads()
    cdef bint f32 = _is_f32(x)
    cdef void *xp = _ptr(x)
    with nogil:
        if f32:
            bad = fnn_finite_range_f32(<float*>xp, n, &lo, &hi, nt)
        else:
            bad = fnn_finite_range_f64(<double*>xp, n, &lo, &hi, nt)
    return bool(bad), lo, hi


cdef bint _extent(object obj, Py_ssize_t *low, Py_ssize_t *high):
    """[low, high) bytes spanned by the ndarray ``obj``; False for non-arrays and empty arrays."""
    if not isinstance(obj, cnp.ndarray):
        return False
    cdef cnp.ndarray a = <cnp.ndarray>obj
    if cnp.PyArray_SIZE(a) == 0:
        return False
    cdef Py_ssize_t start = <Py_ssize_t>cnp.PyArray_DATA(a), lo = start, hi = start, span
    cdef int i
    for i in range(cnp.PyArray_NDIM(a)):
        span = cnp.PyArray_STRIDES(a)[i] * (cnp.PyArray_DIMS(a)[i] - 1)
        if span < 0:
            lo += span
        else:
            hi += span
    low[0] = lo
    high[0] = hi + cnp.PyArray_ITEMSIZE(a)
    return True


def first_overlap(object out, tuple others):
    """Index of the first entry of ``others`` whose memory bounds overlap the ndarray ``out``'s
    (entries that are not ndarrays are skipped), or -1: numpy.may_share_memory's bounds test,
    for many arrays in one call."""
    cdef Py_ssize_t lo, hi, olo, ohi, i
    if not _extent(out, &lo, &hi):
        return -1
    for i in range(len(others)):
        if _extent(others[i], &olo, &ohi) and olo < hi and lo < ohi:
            return i
    return -1


def first_out_of_range(cnp.ndarray idx, int64_t upper):
    """Index of the first entry of the int64 array ``idx`` outside [0, upper), or -1."""
    cdef const int64_t *p = <int64_t*>_ptr(idx)
    cdef Py_ssize_t i, n = cnp.PyArray_SIZE(idx)
    cdef Py_ssize_t bad = -1
    with nogil:
        for i in range(n):
            if p[i] < 0 or p[i] >= upper:
                bad = i
                break
    return bad


include "train.pxi"
include "infer.pxi"
