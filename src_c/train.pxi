# Native training loop for a plain MLP: Linear(+activation) blocks, softmax cross-entropy, SGD or
# Adam.
#
# At batch 32 a step of 784-128-10 has about 30 us of work besides its matrix products; calling
# the ops one by one from Python costs more than that, so whole runs of steps happen in C
# (mlp.c) without the GIL. fastnn.network builds every buffer; the checks here make sure that
# no call can read or write outside them.

cdef extern from "mlp.h" nogil:
    ctypedef void (*fnn_sgemm_fn)(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*,
                                  float*, float*, int*)
    ctypedef void (*fnn_dgemm_fn)(char*, char*, int*, int*, int*, double*, double*, int*, double*, int*,
                                  double*, double*, int*)
    void fnn_set_blas(fnn_sgemm_fn sgemm, fnn_dgemm_fn dgemm)
    ctypedef struct fnn_mlp:
        int n_layers
        const int *dims
        const int *acts
        const double *act_params
        void **w
        void **b
        void **vw
        void **vb
        void **sw
        void **sb
        void **gw
        void **gb
        void **a
        void **g
        void **dz
    ctypedef struct fnn_batch_source:
        const void *x
        int x_kind
        const int64_t *y
        const int64_t *order
        Py_ssize_t n_order
        int64_t *label_buf
        double scale
        double shift
    ctypedef struct fnn_sgd_config:
        double lr
        double momentum
        double weight_decay
        double bias_weight_decay
        int nesterov
        int adam
        double beta1
        double beta2
        double eps
        int64_t adam_steps_before
    ctypedef struct fnn_steps_result:
        double loss_sum
        Py_ssize_t correct
        Py_ssize_t seen
        Py_ssize_t failed_step
    int fnn_mlp_sgd_steps_f32(const fnn_mlp *m, const fnn_batch_source *src, const fnn_sgd_config *opt,
                               Py_ssize_t first_step, Py_ssize_t stop_step, int batch, int n_parts, int n_threads,
                               fnn_steps_result *out)
    int fnn_mlp_sgd_steps_f64(const fnn_mlp *m, const fnn_batch_source *src, const fnn_sgd_config *opt,
                               Py_ssize_t first_step, Py_ssize_t stop_step, int batch, int n_parts, int n_threads,
                               fnn_steps_result *out)

fnn_set_blas(<fnn_sgemm_fn>sgemm, <fnn_dgemm_fn>dgemm)


cdef void** _pointers(list arrays, int n, bint allow_none) except NULL:
    cdef void **p = <void**>malloc(sizeof(void*) * (n if n > 0 else 1))
    if p == NULL:
        raise MemoryError()
    for i in range(n):
        p[i] = NULL if (allow_none and arrays[i] is None) else cnp.PyArray_DATA(<cnp.ndarray>arrays[i])
    return p


cdef _require(cnp.ndarray a, str name, tuple shape, object dtype):
    if a.dtype != dtype or (<object>a).shape != shape or not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError(f"{name}: expected a writeable C-contiguous {dtype} array of shape {shape}, "
                         f"got {a.dtype} {(<object>a).shape}")


def mlp_sgd_steps(list weights, list biases, list vel_w, list vel_b, list grad_w, list grad_b,
                  list acts, list grads, list dz, object activations,
                  cnp.ndarray x, cnp.ndarray y, cnp.ndarray order, cnp.ndarray label_buf,
                  Py_ssize_t first_step, Py_ssize_t stop_step, int batch_size,
                  double scale, double shift, double lr, double momentum, double weight_decay,
                  bint nesterov, int n_parts=0, int n_threads=0, double bias_weight_decay=-1.0,
                  list adam_second_w=None, list adam_second_b=None, double beta1=0.0, double beta2=0.0,
                  double eps=0.0, Py_ssize_t adam_steps_before=-1, object activation_params=None):
    """Run SGD steps [first_step, stop_step) of an epoch over the rows ``order`` of (x, y).

    adam_steps_before >= 0 makes the steps Adam's (beta1, beta2, eps; lr and weight_decay as for
    SGD; momentum and nesterov unused): vel_w / vel_b then hold the first moments and
    adam_second_w / adam_second_b the second, and adam_steps_before counts the Adam steps taken
    before first_step.

    Step s trains on rows order[s*batch_size:(s+1)*batch_size] (the last batch may be short).
    Returns (loss_sum, correct, seen, failed_step): failed_step is -1, or the step whose loss
    was not finite (nothing of that step was applied). bias_weight_decay < 0: weight_decay.
    n_parts: how the work is cut (the same parts give the same bits for any thread count);
    n_threads: threads to run them (at most n_parts). 0 means the kernel thread count for either.
    activations: the activation code after each Linear; activation_params: None (all 0) or the
    parameter of each (kernels.h).
    """
    cdef int L = len(weights), l
    cdef list dims = [weights[0].shape[0]] + [w.shape[1] for w in weights] if L else []
    if L == 0 or len(biases) != L or len(grad_w) != L or len(grad_b) != L or len(dz) != L:
        raise ValueError("mlp_sgd_steps: one weight, bias, gradient and scratch buffer per layer")
    if len(acts) != L + 1 or len(grads) != L + 1 or len(activations) != L:
        raise ValueError("mlp_sgd_steps: acts and grads need n_layers + 1 entries")
    dtype = weights[0].dtype
    if dtype.char not in "fd":
        raise TypeError("mlp_sgd_steps: float32 or float64 weights expected")
    cdef bint adam = adam_steps_before >= 0
    use_velocity = momentum != 0 or adam
    if use_velocity and (len(vel_w) != L or len(vel_b) != L):
        raise ValueError("mlp_sgd_steps: velocities are required with momentum (first moments with Adam)")
    if adam:
        if adam_second_w is None or adam_second_b is None or len(adam_second_w) != L or len(adam_second_b) != L:
            raise ValueError("mlp_sgd_steps: Adam needs second moments for every layer")
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0 and eps > 0.0):
            raise ValueError("mlp_sgd_steps: Adam needs beta1, beta2 in [0, 1) and eps > 0")
    for l in range(L):
        _require(weights[l], "weights", (dims[l], dims[l + 1]), dtype)
        _require(biases[l], "biases", (dims[l + 1],), dtype)
        _require(grad_w[l], "grad_w", (dims[l], dims[l + 1]), dtype)
        _require(grad_b[l], "grad_b", (dims[l + 1],), dtype)
        _require(dz[l], "dz", (batch_size, dims[l + 1]), dtype)
        if use_velocity:
            _require(vel_w[l], "vel_w", (dims[l], dims[l + 1]), dtype)
            _require(vel_b[l], "vel_b", (dims[l + 1],), dtype)
        if adam:
            _require(adam_second_w[l], "adam_second_w", (dims[l], dims[l + 1]), dtype)
            _require(adam_second_b[l], "adam_second_b", (dims[l + 1],), dtype)
        if not 0 <= activations[l] < FNN_ACT_COUNT:
            raise ValueError("mlp_sgd_steps: unknown activation code")
    if activation_params is None:
        activation_params = [0.0] * L
    if len(activation_params) != L or not all(np.isfinite(activation_params)):
        raise ValueError("mlp_sgd_steps: activation_params needs one finite value per layer")
    for l in range(L + 1):
        _require(acts[l], "acts", (batch_size, dims[l]), dtype)
        if l > 0:
            _require(grads[l], "grads", (batch_size, dims[l]), dtype)
    if x.ndim != 2 or x.shape[1] != dims[0] or not x.flags.c_contiguous or x.dtype.char not in "Bfd":
        raise ValueError("mlp_sgd_steps: x must be C-contiguous uint8/float32/float64 (n, features)")
    cdef Py_ssize_t n = x.shape[0]
    if y.dtype != np.int64 or y.ndim != 1 or y.shape[0] != n or not y.flags.c_contiguous:
        raise ValueError("mlp_sgd_steps: y must be C-contiguous int64 of x's length")
    if order.dtype != np.int64 or order.ndim != 1 or not order.flags.c_contiguous:
        raise ValueError("mlp_sgd_steps: order must be C-contiguous int64")
    _require(label_buf, "label_buf", (batch_size,), np.dtype(np.int64))
    if batch_size < 1 or first_step < 0 or stop_step * <Py_ssize_t>batch_size > order.shape[0] + batch_size - 1:
        raise ValueError("mlp_sgd_steps: steps outside the epoch")
    if first_out_of_range(order, n) >= 0:
        raise ValueError("mlp_sgd_steps: order holds a row outside x")
    if first_out_of_range(y, dims[L]) >= 0:
        raise ValueError("mlp_sgd_steps: a label is outside [0, n_classes)")

    cdef fnn_mlp m
    cdef fnn_batch_source src
    cdef fnn_sgd_config opt
    cdef fnn_steps_result res
    cdef int *dim_arr = <int*>malloc(sizeof(int) * (L + 1))
    cdef int *act_arr = <int*>malloc(sizeof(int) * L)
    cdef double *param_arr = <double*>malloc(sizeof(double) * L)
    cdef int nt = n_threads if n_threads > 0 else _n_threads, status = 0
    cdef int parts = n_parts if n_parts > 0 else nt
    cdef bint f32 = dtype.char == "f"
    cdef int xt = cnp.PyArray_TYPE(x)
    m.n_layers = L
    m.dims = dim_arr
    m.acts = act_arr
    m.act_params = param_arr
    m.w = m.b = m.vw = m.vb = m.sw = m.sb = m.gw = m.gb = m.a = m.g = m.dz = NULL
    src.x = cnp.PyArray_DATA(x)
    src.x_kind = 0 if xt == cnp.NPY_UINT8 else (1 if xt == cnp.NPY_FLOAT32 else 2)
    src.y = <int64_t*>cnp.PyArray_DATA(y)
    src.order = <int64_t*>cnp.PyArray_DATA(order)
    src.n_order = order.shape[0]
    src.label_buf = <int64_t*>cnp.PyArray_DATA(label_buf)
    src.scale = scale
    src.shift = shift
    opt.lr = lr
    opt.momentum = momentum
    opt.weight_decay = weight_decay
    opt.bias_weight_decay = weight_decay if bias_weight_decay < 0 else bias_weight_decay
    opt.nesterov = nesterov
    opt.adam = adam
    opt.beta1 = beta1
    opt.beta2 = beta2
    opt.eps = eps
    opt.adam_steps_before = adam_steps_before if adam else 0
    try:
        if dim_arr == NULL or act_arr == NULL or param_arr == NULL:
            raise MemoryError()
        for l in range(L + 1):
            dim_arr[l] = dims[l]
        for l in range(L):
            act_arr[l] = activations[l]
            param_arr[l] = activation_params[l]
        m.w = _pointers(weights, L, False)
        m.b = _pointers(biases, L, False)
        m.vw = _pointers(vel_w if use_velocity else [None] * L, L, True)
        m.vb = _pointers(vel_b if use_velocity else [None] * L, L, True)
        m.sw = _pointers(adam_second_w if adam else [None] * L, L, True)
        m.sb = _pointers(adam_second_b if adam else [None] * L, L, True)
        m.gw = _pointers(grad_w, L, False)
        m.gb = _pointers(grad_b, L, False)
        m.a = _pointers(acts, L + 1, False)
        m.g = _pointers([None] + grads[1:], L + 1, True)
        m.dz = _pointers(dz, L, False)
        with nogil:
            if f32:
                status = fnn_mlp_sgd_steps_f32(&m, &src, &opt, first_step, stop_step, batch_size, parts, nt, &res)
            else:
                status = fnn_mlp_sgd_steps_f64(&m, &src, &opt, first_step, stop_step, batch_size, parts, nt, &res)
    finally:
        free(dim_arr)
        free(act_arr)
        free(param_arr)
        free(m.w); free(m.b); free(m.vw); free(m.vb); free(m.sw); free(m.sb); free(m.gw); free(m.gb)
        free(m.a); free(m.g); free(m.dz)
    if status != 0:
        raise MemoryError("mlp_sgd_steps: could not allocate the per-thread partial products")
    return res.loss_sum, res.correct, res.seen, res.failed_step
