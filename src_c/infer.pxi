# Inference in one compiled call: the whole forward pass of a network and its head, with the
# input checks of Network._check_X done in the same pass, and no BLAS. A few rows run on the
# calling thread (no OpenMP region); large batches are split among fastnn's threads by blocks of
# rows. Included by _core.pyx. Every output is computed by dense_rows.h, whose sums do not
# depend on the number of rows, so a row gives the same bits alone and inside any batch.

cdef extern from "dense_rows.h" nogil:
    void fnn_dense_rows_f32(const float *x, const float *w, float *out, int rows, int k, int n)
    void fnn_dense_rows_f64(const double *x, const double *w, double *out, int rows, int k, int n)

from cython.parallel cimport prange, threadid

# What infer returns: the outputs (N, n_outputs), softmax probabilities (N, K), argmax labels
# (N,) intp, sigmoid of the single output (N,), labels (N,) int64 where the single output > 0.
HEAD_OUTPUTS, HEAD_SOFTMAX, HEAD_ARGMAX, HEAD_SIGMOID, HEAD_POSITIVE = 0, 1, 2, 3, 4

cdef enum:
    _INFER_BLOCK = 64  # rows per pass through the layers: the activations stay in L1/L2

cdef int64_t _row_zero = 0  # one row at a time: the row pointer itself, index 0


cdef class InferencePlan:
    """A network's forward pass as C arrays: per step, W (n_in, n_out) and b (n_out,) of a Linear
    (or NULL for an activation on its own) and the activation code (and its parameter) that follows. Built by
    fastnn.network from validated parameters; keeps references to them, and ``current()`` says
    whether the layers still hold those very arrays."""
    cdef int n_steps, n_features, n_outputs, widest
    cdef bint f32
    cdef double scale, shift, limit
    cdef int *acts
    cdef double *params
    cdef int *widths
    cdef void **w
    cdef void **b
    cdef list layers
    cdef list arrays

    def __cinit__(self, list steps, int n_features, bint f32, double scale, double shift,
                  double limit, list layers):
        """steps: [(W or None, b or None, activation code, output width[, activation parameter])]
        (the parameter is 0 when left out); layers: the Linear
        layers whose W and b attributes current() compares with the arrays of steps."""
        cdef int i
        if not steps:
            raise ValueError("steps: expected at least one step")
        self.n_steps = len(steps)
        self.acts = <int*>malloc(sizeof(int) * (self.n_steps + 1))
        self.params = <double*>malloc(sizeof(double) * (self.n_steps + 1))
        self.widths = <int*>malloc(sizeof(int) * (self.n_steps + 1))
        self.w = <void**>malloc(sizeof(void*) * (self.n_steps + 1))
        self.b = <void**>malloc(sizeof(void*) * (self.n_steps + 1))
        if not (self.acts and self.params and self.widths and self.w and self.b):
            raise MemoryError()
        self.n_features, self.f32 = n_features, f32
        self.scale, self.shift, self.limit = scale, shift, limit
        self.widest = n_features
        self.arrays = []
        self.layers = layers
        for i, step in enumerate(steps):
            W, B, act, width = step[:4]
            if not 0 <= act < FNN_ACT_COUNT:
                raise ValueError(f"steps[{i}]: unknown activation code {act}")
            self.acts[i] = act
            self.params[i] = step[4] if len(step) > 4 else 0.0
            self.widths[i] = width
            self.w[i] = _ptr_or_null(W)
            self.b[i] = _ptr_or_null(B)
            self.arrays += [W, B]
            if width > self.widest:
                self.widest = width
        self.n_outputs = self.widths[self.n_steps - 1]

    def __dealloc__(self):
        free(self.acts)
        free(self.params)
        free(self.widths)
        free(self.w)
        free(self.b)

    def current(self, double scale, double shift):
        """True while the input scale and shift are still ``scale`` and ``shift`` and every layer
        holds the W and b arrays the plan was built from."""
        cdef Py_ssize_t i = 0
        if scale != self.scale or shift != self.shift:
            return False
        for layer in self.layers:
            while self.arrays[i] is None:
                i += 2
            if layer.W is not self.arrays[i] or layer.b is not self.arrays[i + 1]:
                return False
            i += 2
        return True


cdef int _input_rows(InferencePlan p, int xt, const void *x, Py_ssize_t r0, int rows, void *dst) noexcept nogil:
    """Rows [r0, r0+rows) of x as x * scale + shift in the plan's dtype, into dst; the same
    gather kernels (and so the same bits) as training."""
    cdef Py_ssize_t f = p.n_features, r
    for r in range(rows):
        if p.f32:
            if xt == cnp.NPY_UINT8:
                fnn_gather_u8_f32(<const uint8_t*>x + (r0 + r) * f, &_row_zero, <float*>dst + r * f, 1, f, p.scale, p.shift, 1)
            elif xt == cnp.NPY_FLOAT32:
                fnn_gather_f32(<const float*>x + (r0 + r) * f, &_row_zero, <float*>dst + r * f, 1, f, p.scale, p.shift, 1)
            else:
                fnn_gather_f64_to_f32(<const double*>x + (r0 + r) * f, &_row_zero, <float*>dst + r * f, 1, f, p.scale, p.shift, 1)
        else:
            if xt == cnp.NPY_UINT8:
                fnn_gather_u8_f64(<const uint8_t*>x + (r0 + r) * f, &_row_zero, <double*>dst + r * f, 1, f, p.scale, p.shift, 1)
            elif xt == cnp.NPY_FLOAT32:
                fnn_gather_f32_to_f64(<const float*>x + (r0 + r) * f, &_row_zero, <double*>dst + r * f, 1, f, p.scale, p.shift, 1)
            else:
                fnn_gather_f64(<const double*>x + (r0 + r) * f, &_row_zero, <double*>dst + r * f, 1, f, p.scale, p.shift, 1)
    return 0


cdef void _layers(InferencePlan p, const void *x, int rows, void *buf0, void *buf1, void **last) noexcept nogil:
    """Run every step on rows (n_features wide at x); last: the buffer holding the outputs."""
    cdef const void *a = x
    cdef void *dst = buf0
    cdef int i, width = p.n_features
    for i in range(p.n_steps):
        if p.w[i] != NULL:
            if p.f32:
                fnn_dense_rows_f32(<const float*>a, <const float*>p.w[i], <float*>dst, rows, width, p.widths[i])
                fnn_bias_act_f32(p.acts[i], p.params[i], <float*>dst, <const float*>p.b[i], rows, p.widths[i], 1)
            else:
                fnn_dense_rows_f64(<const double*>a, <const double*>p.w[i], <double*>dst, rows, width, p.widths[i])
                fnn_bias_act_f64(p.acts[i], p.params[i], <double*>dst, <const double*>p.b[i], rows, p.widths[i], 1)
        elif p.f32:
            fnn_act_forward_f32(p.acts[i], p.params[i], <const float*>a, <float*>dst, <Py_ssize_t>rows * p.widths[i], 1)
        else:
            fnn_act_forward_f64(p.acts[i], p.params[i], <const double*>a, <double*>dst, <Py_ssize_t>rows * p.widths[i], 1)
        width = p.widths[i]
        a = dst
        dst = buf1 if dst == buf0 else buf0
    last[0] = <void*>a


cdef void _head(InferencePlan p, int head, const void *z, int rows, void *out) noexcept nogil:
    cdef int k = p.n_outputs, r, c, best
    cdef double v, top = 0.0
    cdef Py_ssize_t size = 4 if p.f32 else 8
    if head == 0:
        memcpy(out, z, <size_t>rows * k * size)
    elif head == 1:
        if p.f32:
            fnn_softmax_f32(<const float*>z, <float*>out, rows, k, 0, 1)
        else:
            fnn_softmax_f64(<const double*>z, <double*>out, rows, k, 0, 1)
    elif head == 2:  # argmax: the first of equal maxima, or the first NaN (as np.argmax)
        for r in range(rows):
            best = 0
            for c in range(k):
                v = (<const float*>z)[r * k + c] if p.f32 else (<const double*>z)[r * k + c]
                if v != v:
                    best = c
                    break
                if c == 0 or v > top:
                    best, top = c, v
            (<Py_ssize_t*>out)[r] = best
    elif head == 3:  # the single output column is contiguous
        if p.f32:
            fnn_act_forward_f32(1, 0.0, <const float*>z, <float*>out, rows, 1)
        else:
            fnn_act_forward_f64(1, 0.0, <const double*>z, <double*>out, rows, 1)
    else:
        for r in range(rows):
            if p.f32:
                (<int64_t*>out)[r] = (<const float*>z)[r] > 0
            else:
                (<int64_t*>out)[r] = (<const double*>z)[r] > 0


cdef void _block(InferencePlan p, int head, int xt, const void *x, bint direct, Py_ssize_t r0,
                 int rows, char *scratch, char *out, Py_ssize_t out_row) noexcept nogil:
    """Rows [r0, r0+rows) of x through the layers and the head, into their rows of out;
    scratch: _scratch_bytes(p, direct, x's width) bytes."""
    cdef Py_ssize_t item = 4 if p.f32 else 8, f = p.n_features
    cdef char *buf1 = scratch + <size_t>_INFER_BLOCK * item * p.widest
    cdef char *xin = buf1 + <size_t>_INFER_BLOCK * item * p.widest
    cdef void *last
    if direct:
        _layers(p, <const char*>x + r0 * f * item, rows, scratch, buf1, &last)
    else:
        _input_rows(p, xt, x, r0, rows, xin)
        _layers(p, xin, rows, scratch, buf1, &last)
    _head(p, head, last, rows, out + r0 * out_row)


cdef inline size_t _scratch_bytes(InferencePlan p, bint direct) noexcept nogil:
    return <size_t>_INFER_BLOCK * (4 if p.f32 else 8) * (2 * p.widest + (0 if direct else p.n_features))


# Batches of at least this many blocks of rows are shared among fastnn's threads (a few rows
# always run on the calling thread alone: waking a thread team costs more than they take).
cdef enum:
    _PARALLEL_BLOCKS = 8


def infer_parallel_rows():
    """The fewest rows an infer call shares among fastnn's threads (_PARALLEL_BLOCKS blocks)."""
    return (_PARALLEL_BLOCKS - 1) * _INFER_BLOCK + 1


def infer(InferencePlan p, cnp.ndarray x, int head):
    """The head's result for x (N, n_features) C-contiguous uint8/float32/float64 (checked by
    the caller), or None when x holds NaN/Inf or overflows the dtype once scaled (the caller
    then reports it). Rows are independent, so splitting a large batch among threads changes
    no bit."""
    cdef Py_ssize_t n = x.shape[0], f = x.shape[1], blk
    cdef Py_ssize_t n_blocks = (n + _INFER_BLOCK - 1) // _INFER_BLOCK
    cdef int xt = cnp.PyArray_TYPE(x), status = 0, tid
    cdef int threads = kernel_threads() if n_blocks >= _PARALLEL_BLOCKS else 1
    cdef const void *xp = _ptr(x)
    cdef double lo = 0.0, hi = 255.0
    cdef bint direct = (xt == (cnp.NPY_FLOAT32 if p.f32 else cnp.NPY_FLOAT64)
                        and p.scale == 1.0 and p.shift == 0.0)
    cdef Py_ssize_t item = 4 if p.f32 else 8
    cdef cnp.npy_intp dims[2]
    cdef cnp.ndarray out
    cdef char *op
    cdef char *scratch = NULL
    cdef size_t per_thread = _scratch_bytes(p, direct)
    cdef Py_ssize_t out_row
    dims[0] = n
    dims[1] = p.n_outputs
    if head == 0 or head == 1:
        out = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32 if p.f32 else cnp.NPY_FLOAT64, 0)
        out_row = p.n_outputs * item
    elif head == 3:
        out = cnp.PyArray_EMPTY(1, dims, cnp.NPY_FLOAT32 if p.f32 else cnp.NPY_FLOAT64, 0)
        out_row = item
    else:
        out = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INTP if head == 2 else cnp.NPY_INT64, 0)
        out_row = 8
    op = <char*>_ptr(out)
    if threads > n_blocks:
        threads = <int>n_blocks
    with nogil:
        if xt != cnp.NPY_UINT8:
            if (fnn_finite_range_f32(<const float*>xp, n * f, &lo, &hi, threads) if xt == cnp.NPY_FLOAT32
                    else fnn_finite_range_f64(<const double*>xp, n * f, &lo, &hi, threads)):
                status = 1
        if status == 0 and not direct:
            if not (fabs(lo * p.scale + p.shift) <= p.limit and fabs(hi * p.scale + p.shift) <= p.limit):
                status = 1
        if status == 0:
            scratch = <char*>malloc(per_thread * threads)
            if scratch == NULL:
                status = 2
        if status == 0 and threads == 1:
            for blk in range(n_blocks):
                _block(p, head, xt, xp, direct, blk * _INFER_BLOCK,
                       <int>(n - blk * _INFER_BLOCK if n - blk * _INFER_BLOCK < _INFER_BLOCK else _INFER_BLOCK),
                       scratch, op, out_row)
        elif status == 0:
            for blk in prange(n_blocks, num_threads=threads, schedule="static"):
                tid = threadid()
                _block(p, head, xt, xp, direct, blk * _INFER_BLOCK,
                       <int>(n - blk * _INFER_BLOCK if n - blk * _INFER_BLOCK < _INFER_BLOCK else _INFER_BLOCK),
                       scratch + per_thread * tid, op, out_row)
        free(scratch)
    if status == 2:
        raise MemoryError("infer: could not allocate the activation buffers")
    return None if status else out
