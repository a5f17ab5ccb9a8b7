# The compiled training engine's state: an MLP (Linear + activation blocks, Dropout), its loss,
# per-sample weights and optimizer, checked once and kept as C pointers.
#
# At batch 32 a step of 784-128-10 has about 30 us of work besides its matrix products; calling
# the ops one by one from Python costs more than that, so whole runs of steps happen in C
# (mlp.c) without the GIL. fastnn._fastpath builds one TrainingEngine per fit; the checks here
# make sure that no call can read or write outside the arrays it holds.

cdef extern from "mlp.h" nogil:
    ctypedef void (*fnn_sgemm_fn)(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*,
                                  float*, float*, int*)
    ctypedef void (*fnn_dgemm_fn)(char*, char*, int*, int*, int*, double*, double*, int*, double*, int*,
                                  double*, double*, int*)
    void fnn_set_blas(fnn_sgemm_fn sgemm, fnn_dgemm_fn dgemm)
    ctypedef void (*fnn_sgemm64_fn)(char*, char*, int64_t*, int64_t*, int64_t*, float*, float*, int64_t*,
                                    float*, int64_t*, float*, float*, int64_t*)
    ctypedef void (*fnn_dgemm64_fn)(char*, char*, int64_t*, int64_t*, int64_t*, double*, double*, int64_t*,
                                    double*, int64_t*, double*, double*, int64_t*)
    void fnn_set_blas64(fnn_sgemm64_fn sgemm, fnn_dgemm64_fn dgemm)
    int fnn_blas64_enabled()
    ctypedef struct fnn_mlp:
        int n_layers
        const int *dims
        const int *acts
        const double *act_params
        const double *drop
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
        void **y
        void **mask
    ctypedef struct fnn_batch_source:
        const void *x
        int x_kind
        int loss
        const int64_t *labels
        const void *targets
        const void *weights
        const int64_t *order
        Py_ssize_t n_order
        int64_t *label_buf
        void *target_buf
        void *weight_buf
        const void *uniforms
        double scale
        double shift
        double x_bound
    ctypedef struct fnn_optimizer:
        int kind
        double lr
        double momentum
        double weight_decay
        int nesterov
        double beta1
        double beta2
        double eps
        int64_t steps_before
    ctypedef struct fnn_steps_result:
        double loss_sum
        double weight_sum
        Py_ssize_t correct
        Py_ssize_t seen
        Py_ssize_t failed_step
    int fnn_mlp_steps_f32(const fnn_mlp *m, const fnn_batch_source *src, const fnn_optimizer *opt,
                          Py_ssize_t first_step, Py_ssize_t stop_step, int batch, int n_parts, int n_threads,
                          fnn_steps_result *out)
    int fnn_mlp_steps_f64(const fnn_mlp *m, const fnn_batch_source *src, const fnn_optimizer *opt,
                          Py_ssize_t first_step, Py_ssize_t stop_step, int batch, int n_parts, int n_threads,
                          fnn_steps_result *out)

fnn_set_blas(<fnn_sgemm_fn>sgemm, <fnn_dgemm_fn>dgemm)


def set_blas64(size_t sgemm_address, size_t dgemm_address):
    """Call the ILP64 (64-bit integer) Fortran sgemm_/dgemm_ at these addresses for every BLAS
    product from now on (fastnn/_machine.py finds them in numpy's OpenBLAS); 0, 0 goes back to
    scipy's cython_blas. Both or neither: one address of 0 is taken as neither."""
    both = sgemm_address != 0 and dgemm_address != 0
    fnn_set_blas64(<fnn_sgemm64_fn>sgemm_address if both else NULL,
                   <fnn_dgemm64_fn>dgemm_address if both else NULL)


def blas64_enabled():
    return bool(fnn_blas64_enabled())

OPTIMIZER_KINDS = {"sgd": 0, "adam": 1, "adamw": 2}
_MAX_LAYERS = 256  # mlp.c's FNN_MLP_MAX_LAYERS
_MAX_PARTS = 256  # mlp.c's FNN_MLP_MAX_THREADS
_N_ACTIVATIONS = FNN_ACT_COUNT


cdef void** _pointer_array(list arrays, int n) except NULL:
    cdef void **p = <void**>calloc(n if n > 0 else 1, sizeof(void*))
    if p == NULL:
        raise MemoryError()
    for i in range(n):
        if arrays[i] is not None:
            p[i] = cnp.PyArray_DATA(<cnp.ndarray>arrays[i])
    return p


def _check_array(a, str name, tuple shape, dtype, bint writeable=True):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if a.dtype != dtype or a.shape != shape or not a.flags.c_contiguous \
            or (writeable and not a.flags.writeable):
        raise ValueError(f"{name}: expected a {'writeable ' if writeable else ''}C-contiguous {np.dtype(dtype).name} "
                         f"array of shape {shape}, got {a.dtype.name} {a.shape}"
                         f"{'' if a.flags.c_contiguous else ' (not C-contiguous)'}"
                         f"{'' if a.flags.writeable or not writeable else ' (read-only)'}")


def _check_list(value, str name, int n):
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ValueError(f"{name}: expected a list of {n} entries, got "
                         f"{len(value) if isinstance(value, (list, tuple)) else type(value).__name__}")
    return list(value)


cdef class TrainingEngine:
    """The state of the compiled training engine for one fit (built once, run per chunk of steps).

    TrainingEngine(weights, biases, activations, act_params, drop, x, loss, labels_or_targets,
                   sample_weight, batch_size, optimizer_kind, first_moments, second_moments)

    weights[l] (dims[l], dims[l+1]) and biases[l] (dims[l+1],): the live parameters (float32 or
    float64, one dtype), updated in place. activations[l]: the activation code after Linear l;
    act_params[l] its parameter. drop[j] in [0, 1): the Dropout probability on the input of
    Linear j (j = 0: the network's input; the last Linear's output has none). x (n, dims[0])
    uint8/float32/float64; loss: LOSS_SOFTMAX_XENT with int64 labels (n,) in [0, K), or
    LOSS_BCE / LOSS_MSE with targets (n, K) of the network dtype; sample_weight None or (n,) of
    the network dtype. optimizer_kind: "sgd", "adam" or "adamw"; first_moments: SGD's momentum
    buffers (None without momentum) or Adam's first moments, second_moments Adam's second (None
    for SGD), as lists [W0, b0, W1, b1, ...] of arrays shaped as the parameters, updated in place.
    Every argument is checked here (TypeError / ValueError naming it); the engine keeps
    references to all of them.
    """
    cdef fnn_mlp m
    cdef fnn_batch_source src
    cdef int kind, batch, n_layers
    cdef bint f32
    cdef int *dims_c
    cdef int *acts_c
    cdef double *params_c
    cdef double *drop_c
    cdef readonly object dtype
    cdef readonly list dims
    cdef readonly Py_ssize_t uniforms_per_row
    cdef list _keep
    cdef object _order
    cdef bint _running  # a run is in progress (in another thread): the arrays must stay

    def __cinit__(self):
        self.dims_c = NULL
        self.acts_c = NULL
        self.params_c = NULL
        self.drop_c = NULL
        self.m.w = self.m.b = self.m.vw = self.m.vb = self.m.sw = self.m.sb = NULL
        self.m.gw = self.m.gb = self.m.a = self.m.g = self.m.dz = self.m.y = self.m.mask = NULL

    def __dealloc__(self):
        free(self.dims_c)
        free(self.acts_c)
        free(self.params_c)
        free(self.drop_c)
        free(self.m.w); free(self.m.b); free(self.m.vw); free(self.m.vb); free(self.m.sw); free(self.m.sb)
        free(self.m.gw); free(self.m.gb); free(self.m.a); free(self.m.g); free(self.m.dz); free(self.m.y)
        free(self.m.mask)

    def __init__(self, weights, biases, activations, act_params, drop, x, int loss, labels_or_targets,
                 sample_weight, int batch_size, str optimizer_kind, first_moments, second_moments):
        if self.dims_c != NULL:
            raise RuntimeError("TrainingEngine: already initialised")
        if not isinstance(weights, (list, tuple)) or not 1 <= len(weights) <= _MAX_LAYERS:
            raise ValueError(f"weights: expected a list of 1 to {_MAX_LAYERS} arrays")
        cdef int L = len(weights), l
        weights = list(weights)
        if not all(isinstance(w, np.ndarray) and w.ndim == 2 for w in weights):
            raise TypeError("weights: expected 2-D numpy arrays")
        dtype = weights[0].dtype
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"weights: expected float32 or float64 arrays, got {dtype}")
        dims = [weights[0].shape[0]] + [w.shape[1] for w in weights]
        if any(not 1 <= dim <= 2 ** 30 for dim in dims):
            raise ValueError(f"weights: widths must be in [1, 2**30], got {dims}")
        biases = _check_list(biases, "biases", L)
        activations = _check_list(activations, "activations", L)
        act_params = _check_list(act_params, "act_params", L)
        drop = _check_list(drop, "drop", L)
        for l in range(L):
            _check_array(weights[l], f"weights[{l}]", (dims[l], dims[l + 1]), dtype)
            _check_array(biases[l], f"biases[{l}]", (dims[l + 1],), dtype)
            if not isinstance(activations[l], (int, np.integer)) or not 0 <= activations[l] < _N_ACTIVATIONS:
                raise ValueError(f"activations[{l}]: expected an activation code in [0, {_N_ACTIVATIONS}), "
                                 f"got {activations[l]!r}")
            if not isinstance(act_params[l], (int, float, np.integer, np.floating)) \
                    or not np.isfinite(act_params[l]):
                raise ValueError(f"act_params[{l}]: expected a finite number, got {act_params[l]!r}")
            if not isinstance(drop[l], (int, float, np.integer, np.floating)) or not 0.0 <= drop[l] < 1.0:
                raise ValueError(f"drop[{l}]: expected a probability in [0, 1), got {drop[l]!r}")
        if not 1 <= batch_size <= 2 ** 24:
            raise ValueError(f"batch_size: expected an integer in [1, 2**24], got {batch_size}")
        if max(dims) * <Py_ssize_t>batch_size > 2 ** 31 - 1:
            raise ValueError("batch_size: a batch of the widest layer exceeds what BLAS indexes")
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != dims[0] or x.shape[0] < 1 \
                or not x.flags.c_contiguous or x.dtype not in (np.dtype(np.uint8), np.dtype(np.float32),
                                                               np.dtype(np.float64)):
            raise ValueError(f"x: expected a C-contiguous uint8/float32/float64 array of shape (n, {dims[0]}), "
                             f"got {getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
        n = x.shape[0]
        K = dims[L]
        if loss == LOSS_SOFTMAX_XENT:
            _check_array(labels_or_targets, "labels", (n,), np.int64, writeable=False)
            if K < 2:
                raise ValueError(f"loss: softmax cross-entropy needs at least 2 outputs, got {K}")
            bad = first_out_of_range(labels_or_targets, K)
            if bad >= 0:
                raise ValueError(f"labels: expected class labels in [0, {K}), got {labels_or_targets[bad]} "
                                 f"at index {bad}")
        elif 0 <= loss < LOSS_COUNT:
            _check_array(labels_or_targets, "targets", (n, K), dtype, writeable=False)
        else:
            raise ValueError(f"loss: expected a loss code in [0, {LOSS_COUNT}), got {loss}")
        if sample_weight is not None:
            _check_array(sample_weight, "sample_weight", (n,), dtype, writeable=False)
            if not (np.isfinite(sample_weight).all() and (sample_weight >= 0).all()):
                raise ValueError("sample_weight: expected finite weights >= 0")
        if optimizer_kind not in OPTIMIZER_KINDS:
            raise ValueError(f"optimizer_kind: expected one of {sorted(OPTIMIZER_KINDS)}, got {optimizer_kind!r}")
        kind = OPTIMIZER_KINDS[optimizer_kind]
        shapes = [s for l in range(L) for s in ((dims[l], dims[l + 1]), (dims[l + 1],))]
        if first_moments is not None:
            first_moments = _check_list(first_moments, "first_moments", 2 * L)
            for i, a in enumerate(first_moments):
                _check_array(a, f"first_moments[{i}]", shapes[i], dtype)
        elif kind != 0:
            raise ValueError("first_moments: Adam and AdamW need their first moments")
        if kind != 0:
            second_moments = _check_list(second_moments, "second_moments", 2 * L)
            for i, a in enumerate(second_moments):
                _check_array(a, f"second_moments[{i}]", shapes[i], dtype)
        else:
            second_moments = None
        params = [p for l in range(L) for p in (weights[l], biases[l])]
        state = (first_moments or []) + (second_moments or [])
        for i, a in enumerate(state):
            if first_overlap(a, tuple(params + [s for s in state if s is not a])) >= 0:
                raise ValueError(f"optimizer state: buffer {i} shares memory with a parameter or another buffer")

        # Working buffers, owned here.
        acts = [np.empty((batch_size, dim), dtype) for dim in dims]
        grads = [None] + [np.empty((batch_size, dim), dtype) for dim in dims[1:]]
        dz = [np.empty((batch_size, dim), dtype) for dim in dims[1:]]
        kept = [np.empty((batch_size, dims[j]), dtype) if j > 0 and drop[j] > 0 else None for j in range(L)]
        masks = [np.empty((batch_size, dims[j]), dtype) if j > 0 and drop[j] > 0 else None for j in range(L)]
        grad_w = [np.empty_like(w) for w in weights]
        grad_b = [np.empty_like(b) for b in biases]
        label_buf = np.empty(batch_size, np.int64)
        target_buf = np.empty((batch_size, K), dtype)
        weight_buf = np.empty(batch_size, dtype)

        self.dims_c = <int*>malloc(sizeof(int) * (L + 1))
        self.acts_c = <int*>malloc(sizeof(int) * L)
        self.params_c = <double*>malloc(sizeof(double) * L)
        self.drop_c = <double*>malloc(sizeof(double) * L)
        if self.dims_c == NULL or self.acts_c == NULL or self.params_c == NULL or self.drop_c == NULL:
            raise MemoryError()
        for l in range(L + 1):
            self.dims_c[l] = dims[l]
        for l in range(L):
            self.acts_c[l] = activations[l]
            self.params_c[l] = act_params[l]
            self.drop_c[l] = drop[l]
        self.m.n_layers = L
        self.m.dims = self.dims_c
        self.m.acts = self.acts_c
        self.m.act_params = self.params_c
        self.m.drop = self.drop_c
        self.m.w = _pointer_array(weights, L)
        self.m.b = _pointer_array(biases, L)
        self.m.vw = _pointer_array(first_moments[0::2] if first_moments else [None] * L, L)
        self.m.vb = _pointer_array(first_moments[1::2] if first_moments else [None] * L, L)
        self.m.sw = _pointer_array(second_moments[0::2] if second_moments else [None] * L, L)
        self.m.sb = _pointer_array(second_moments[1::2] if second_moments else [None] * L, L)
        self.m.gw = _pointer_array(grad_w, L)
        self.m.gb = _pointer_array(grad_b, L)
        self.m.a = _pointer_array(acts, L + 1)
        self.m.g = _pointer_array(grads, L + 1)
        self.m.dz = _pointer_array(dz, L)
        self.m.y = _pointer_array(kept, L)
        self.m.mask = _pointer_array(masks, L)

        xt = cnp.PyArray_TYPE(<cnp.ndarray>x)
        self.src.x = cnp.PyArray_DATA(<cnp.ndarray>x)
        self.src.x_kind = 0 if xt == cnp.NPY_UINT8 else (1 if xt == cnp.NPY_FLOAT32 else 2)
        self.src.loss = loss
        self.src.labels = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>labels_or_targets) if loss == LOSS_SOFTMAX_XENT else NULL
        self.src.targets = NULL if loss == LOSS_SOFTMAX_XENT else cnp.PyArray_DATA(<cnp.ndarray>labels_or_targets)
        self.src.weights = NULL if sample_weight is None else cnp.PyArray_DATA(<cnp.ndarray>sample_weight)
        self.src.order = NULL
        self.src.n_order = 0
        self.src.label_buf = <int64_t*>cnp.PyArray_DATA(label_buf)
        self.src.target_buf = cnp.PyArray_DATA(target_buf)
        self.src.weight_buf = cnp.PyArray_DATA(weight_buf)
        self.src.uniforms = NULL
        self.src.scale = 1.0
        self.src.shift = 0.0
        self.src.x_bound = -1.0

        self.kind = kind
        self.batch = batch_size
        self.n_layers = L
        self.f32 = dtype == np.float32
        self.dtype = dtype
        self.dims = dims
        self.uniforms_per_row = sum(dims[j] for j in range(L) if drop[j] > 0)
        self._keep = [weights, biases, x, labels_or_targets, sample_weight, first_moments, second_moments,
                      acts, grads, dz, kept, masks, grad_w, grad_b, label_buf, target_buf, weight_buf]
        self._order = None

    def start_epoch(self, order, double input_scale, double input_shift, double input_bound=-1.0):
        """The rows of the next run of steps (int64 (n_order,) in [0, n)) and x's scale and shift.
        input_bound: at least every |x * input_scale + input_shift| of x (the caller's promise;
        it lets the steps prove the first layer's weight gradient finite without reading it),
        or -1 when unknown (fastnn._fastpath.CompiledEngine._input_bound gives it)."""
        if self._running:
            raise RuntimeError("TrainingEngine: a run is in progress in another thread")
        x = self._keep[2]
        if not isinstance(order, np.ndarray) or order.dtype != np.int64 or order.ndim != 1 \
                or not order.flags.c_contiguous or order.shape[0] == 0:
            raise ValueError(f"order: expected a non-empty C-contiguous 1-D int64 array, got "
                             f"{getattr(order, 'dtype', type(order).__name__)} {getattr(order, 'shape', '')}")
        bad = first_out_of_range(order, x.shape[0])
        if bad >= 0:
            raise ValueError(f"order: row {order[bad]} at index {bad} is outside x's {x.shape[0]} rows")
        if not (np.isfinite(input_scale) and np.isfinite(input_shift)):
            raise ValueError("input_scale, input_shift: expected finite numbers")
        if not (input_bound == -1.0 or (np.isfinite(input_bound) and input_bound >= 0)):
            raise ValueError(f"input_bound: expected a finite number >= 0 or -1, got {input_bound}")
        self._order = order
        self.src.order = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>order)
        self.src.n_order = order.shape[0]
        self.src.scale = input_scale
        self.src.shift = input_shift
        self.src.x_bound = input_bound

    def n_uniforms(self, Py_ssize_t first_step, Py_ssize_t stop_step):
        """How many Dropout uniforms steps [first_step, stop_step) of the epoch use."""
        if self._order is None:
            raise RuntimeError("start_epoch() first")
        cdef Py_ssize_t n = self.src.n_order
        rows = min(stop_step * <Py_ssize_t>self.batch, n) - min(first_step * <Py_ssize_t>self.batch, n)
        return max(rows, 0) * self.uniforms_per_row

    def run(self, Py_ssize_t first_step, Py_ssize_t stop_step, uniforms, double lr, double momentum=0.0,
            double weight_decay=0.0, bint nesterov=False, double beta1=0.9, double beta2=0.999,
            double eps=1e-8, int64_t steps_before=0, int n_parts=0, int n_threads=0):
        """Train steps [first_step, stop_step) of the epoch given to start_epoch; returns
        (loss_sum, weight_sum, correct, seen, failed_step): failed_step is -1, or the step whose
        loss or a gradient was not finite (nothing of that step was applied). uniforms: None
        without Dropout, else n_uniforms(first_step, stop_step) or more values in [0, 1) of the
        network dtype. RuntimeError while another thread runs this engine.
        steps_before: the optimizer's update steps so far (Adam's bias correction). n_parts: how
        the work is cut (the same parts give the same bits for any thread count); n_threads:
        threads to run them (at most n_parts). 0 means the kernel thread count for either."""
        if self._running:
            raise RuntimeError("TrainingEngine: a run is in progress in another thread")
        if self._order is None:
            raise RuntimeError("start_epoch() first")
        cdef Py_ssize_t n_steps = (self.src.n_order + self.batch - 1) // self.batch
        if not 0 <= first_step < stop_step <= n_steps:
            raise ValueError(f"first_step, stop_step: expected 0 <= first < stop <= {n_steps}, "
                             f"got {first_step}, {stop_step}")
        needed = self.n_uniforms(first_step, stop_step)
        if needed:
            if not isinstance(uniforms, np.ndarray) or uniforms.dtype != self.dtype or uniforms.ndim != 1 \
                    or not uniforms.flags.c_contiguous or uniforms.shape[0] < needed:
                raise ValueError(f"uniforms: expected a C-contiguous 1-D {self.dtype.name} array of at least "
                                 f"{needed} values")
            self.src.uniforms = cnp.PyArray_DATA(<cnp.ndarray>uniforms)
        else:
            self.src.uniforms = NULL
        if not (lr >= 0 and np.isfinite(lr) and 0 <= momentum < 1 and weight_decay >= 0
                and np.isfinite(weight_decay) and 0 <= beta1 < 1 and 0 <= beta2 < 1 and eps > 0
                and np.isfinite(eps) and steps_before >= 0):
            raise ValueError("run: hyper-parameters out of range (lr, weight_decay >= 0; momentum, beta1, "
                             "beta2 in [0, 1); eps > 0; steps_before >= 0)")
        if self.kind == 0 and momentum != 0 and self.m.vw[0] == NULL:
            raise ValueError("momentum: the engine was built without momentum buffers")
        cdef fnn_optimizer opt
        cdef fnn_steps_result res
        opt.kind = self.kind
        opt.lr = lr
        opt.momentum = momentum if self.kind == 0 else 0.0
        opt.weight_decay = weight_decay
        opt.nesterov = nesterov and self.kind == 0
        opt.beta1 = beta1
        opt.beta2 = beta2
        opt.eps = eps
        opt.steps_before = steps_before
        cdef int nt = n_threads if n_threads > 0 else _n_threads, status
        cdef int parts = n_parts if n_parts > 0 else nt
        if parts > _MAX_PARTS:
            parts = _MAX_PARTS
        self._running = True
        try:
            with nogil:
                if self.f32:
                    status = fnn_mlp_steps_f32(&self.m, &self.src, &opt, first_step, stop_step, self.batch,
                                               parts, nt, &res)
                else:
                    status = fnn_mlp_steps_f64(&self.m, &self.src, &opt, first_step, stop_step, self.batch,
                                               parts, nt, &res)
        finally:
            self._running = False
            self.src.uniforms = NULL
        if status != 0:
            raise MemoryError("TrainingEngine.run: could not allocate the per-thread partial products")
        return res.loss_sum, res.weight_sum, res.correct, res.seen, res.failed_step
