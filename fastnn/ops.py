"""The compiled ops of fastnn, each validated here and computed in C without the GIL.

Every function has a pure-NumPy twin with the same signature in :mod:`fastnn.reference`.
Arrays are float32 or float64 (one dtype per call, never mixed); results keep that dtype.
Inputs that are not C-contiguous (or not in native byte order) are copied; ``out`` buffers are
never copied: they must be C-contiguous, writeable and of the exact shape and dtype, and the
result is written into them and returned. An ``out`` sharing an element with an input is a
ValueError (inputs of any kind: memoryviews and tensors are seen through np.asarray), unless it
is that input exactly where the op says so (in place). Threads: :func:`fastnn.set_num_threads`.
"""
import numpy as np

from . import _validate as v
from . import activations as _activations
from . import loss_registry as _loss_registry
from ._native import core as _core

__all__ = [name for e in _activations.REGISTRY for name in (e.name, e.backward_name)] + [
    "softmax", "log_softmax", *(e.op for e in _loss_registry.REGISTRY),
    "linear_forward", "linear_backward", "sgd_update", "gather_rows", "adam_update", "adamw_update",
]

SCALED_TANH_A = _activations.SCALED_TANH_A
SCALED_TANH_B = _activations.SCALED_TANH_B
ACTIVATIONS = _activations.ACTIVATIONS
_REDUCTIONS = ("mean", "sum", "none")
_SOFTMAX_XENT, _SIGMOID_XENT, _MSE = map(_loss_registry.get, ("cross_entropy", "bce", "mse"))


def _forward(entry, x, out, param):
    x_given = x
    x = v.float_array(x, "x")
    out = v.out_buffer(out, "out", x.shape, x.dtype, may_alias=(("x", x_given, x),))
    return _core.act_forward(entry.code, param, x, out)


def _backward(entry, saved, grad, out, param):
    """grad * act'(x) from the saved input x (entry.needs_input) or output y."""
    name = entry.saved
    saved_given, grad_given = saved, grad
    saved = v.float_array(saved, name)
    grad = v.float_array(grad, "grad", dtype=saved.dtype)
    v.check_shape(grad, "grad", saved.shape)
    out = v.out_buffer(out, "out", saved.shape, saved.dtype,
                       may_alias=((name, saved_given, saved), ("grad", grad_given, grad)))
    z, y = (saved, None) if entry.needs_input else (None, saved)
    return _core.act_backward(entry.code, param, z, y, grad, out)


# sigmoid, sigmoid_backward, relu, ...: one pair per registry entry (fastnn.activations).
for _entry in _activations.REGISTRY:
    globals().update(zip((_entry.name, _entry.backward_name),
                         _activations.op_functions(_entry, _forward, _backward, __name__)))
del _entry


def _softmax(logits, out, log):
    given = logits
    logits = v.float_array(logits, "logits", ndim=2)
    if logits.shape[1] == 0:
        raise ValueError("logits: expected at least one class (column), got shape " f"{logits.shape}")
    out = v.out_buffer(out, "out", logits.shape, logits.dtype, may_alias=(("logits", given, logits),))
    return _core.softmax(logits, out, log)


def softmax(logits, out=None):
    """Row-wise softmax of logits (N, K) -> (N, K), max-shifted, sums in float64."""
    return _softmax(logits, out, False)


def log_softmax(logits, out=None):
    """Row-wise log-softmax of logits (N, K) -> (N, K)."""
    return _softmax(logits, out, True)


def _class_labels(labels, n, k):
    labels = v.index_array(labels, "labels", length=n)
    bad = _core.first_out_of_range(labels, k)
    if bad >= 0:
        raise ValueError(f"labels: expected class indices in [0, {k}), got {labels[bad]} at index {bad}")
    return labels


def _loss(entry, outputs, labels, targets, grad_out, reduction, sample_weight, given):
    """The loss ``entry`` (fastnn.loss_registry) over checked outputs (N, K) and its gradient:
    (loss, grad) as the public loss ops return them. given: ((outputs' name, the caller's
    outputs), (labels' or targets' name, the caller's labels or targets)); grad_out may be the
    outputs exactly and must not overlap the rest."""
    n = outputs.shape[0]
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
    weights = v.check_sample_weight(sample_weight, n, outputs.dtype,
                                    require_positive=reduction == "mean", finite_sum=False)
    if weights is not None and reduction == "mean":
        weights = _normalized(weights)
    (outputs_name, outputs_given), (labels_name, labels_given) = given
    grad = v.out_buffer(grad_out, "grad_out", outputs.shape, outputs.dtype,
                        may_alias=((outputs_name, outputs_given, outputs),),
                        inputs=((labels_name, labels_given, labels, targets),
                                ("sample_weight", sample_weight, weights)))
    # For a weighted mean the weights arrive already divided by their sum (1/sum(w) itself can
    # overflow when the sum is tiny).
    scale = 1.0 / n if reduction == "mean" and weights is None else 1.0
    row_loss = np.empty(n, dtype=np.float64) if reduction == "none" else None
    total = _core.loss(entry.code, outputs, labels, targets, weights, grad, row_loss, scale)
    if reduction == "none":
        return row_loss, grad
    return (total / n if reduction == "mean" and weights is None else total), grad


def _logits_and_rows(logits, argname, min_columns=1):
    """logits as a checked 2-D float array with at least one row and ``min_columns`` columns
    (2 for a softmax over classes: one column would give a loss and a gradient of exactly 0)."""
    logits = v.float_array(logits, argname, ndim=2)
    if 0 in logits.shape:
        raise ValueError(f"{argname}: expected at least one row and one column, got shape {logits.shape}")
    if logits.shape[1] < min_columns:
        raise ValueError(f"{argname}: expected at least {min_columns} columns (one per class), got "
                         f"shape {logits.shape}; for one output unit use sigmoid_cross_entropy")
    return logits


def _dense_targets(targets, outputs, argname):
    """Real targets (bool, integer or float, any layout) as a C-contiguous array of the outputs'
    dtype and shape ((N,) is taken as one column when K = 1)."""
    given = np.asarray(targets)
    if given.dtype.kind not in "biuf":
        raise TypeError(f"{argname}: expected real values, got dtype {given.dtype}")
    if given.ndim == 1 and outputs.shape[1] == 1:
        given = given.reshape(-1, 1)
    v.check_shape(given, argname, outputs.shape)
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, as in the twin
        return np.ascontiguousarray(given, dtype=outputs.dtype)


def softmax_cross_entropy(logits, labels, grad_out=None, reduction="mean", sample_weight=None):
    """Cross-entropy of softmax(logits) against integer labels, and its gradient, in one pass.

    logits (N, K) float32/float64, K >= 2; labels (N,) integers in [0, K); sample_weight None or
    (N,) finite, >= 0. Returns ``(loss, grad)``: grad (N, K) in the logits' dtype, equal to
    w_i * (softmax_i - onehot_i), divided by sum(w) for reduction "mean" (the gradient of the
    reduced loss; for "none", of the sum of the row losses). loss is a float for "mean"
    (weighted average) and "sum", and a float64 array (N,) of w_i * loss_i for "none".
    grad_out may be logits itself (overwritten row by row). Errors: TypeError / ValueError
    naming the argument (a shape, dtype, label or weight that does not fit, fewer than two
    columns; all-zero weights for "mean").
    """
    given = (("logits", logits), ("labels", labels))
    logits = _logits_and_rows(logits, "logits", min_columns=2)
    labels = _class_labels(labels, logits.shape[0], logits.shape[1])
    return _loss(_SOFTMAX_XENT, logits, labels, None, grad_out, reduction, sample_weight, given)


def sigmoid_cross_entropy(logits, targets, grad_out=None, reduction="mean", sample_weight=None):
    """Binary cross-entropy on K independent logits per row (sigmoid outputs), and its gradient.

    logits (N, K) float32/float64, K >= 1; targets (N, K) (or (N,) when K = 1) in [0, 1]
    (0/1 labels, or probabilities; bool, integer or float, converted to the logits' dtype);
    sample_weight None or (N,) finite, >= 0. The loss of row i is l_i = sum over its K outputs of
    softplus(z) - t z = max(z, 0) + log1p(exp(-|z|)) - t z (stable for any finite z; the sum, not the
    mean, over the outputs: scikit-learn's multi-label convention, K times PyTorch's
    ``binary_cross_entropy_with_logits`` "mean"). grad = w_i * (sigmoid(z) - t), divided by
    sum(w) (or N) for "mean". Returns ``(loss, grad)`` as softmax_cross_entropy does.
    """
    given = (("logits", logits), ("targets", targets))
    logits = _logits_and_rows(logits, "logits")
    targets = _dense_targets(targets, logits, "targets")
    if not ((targets >= 0) & (targets <= 1)).all():
        bad = np.argwhere(~((targets >= 0) & (targets <= 1)))[0]
        raise ValueError(f"targets: expected values in [0, 1], got {targets[tuple(bad)]} at "
                         f"{tuple(int(i) for i in bad)}")
    return _loss(_SIGMOID_XENT, logits, None, targets, grad_out, reduction, sample_weight, given)


def mean_squared_error(outputs, targets, grad_out=None, reduction="mean", sample_weight=None):
    """Squared error averaged over the K outputs of each row, and its gradient.

    outputs (N, K) float32/float64; targets (N, K) (or (N,) when K = 1) real (bool, integer or
    float), converted to the outputs' dtype; sample_weight None or (N,) finite, >= 0. The loss of row i is
    l_i = mean over k of (outputs - targets)^2, so "mean" is PyTorch's ``mse_loss`` "mean" (the
    mean over all elements) when no weights are given. grad = w_i * 2 (outputs - targets) / K,
    divided by sum(w) (or N) for "mean". Returns ``(loss, grad)`` as softmax_cross_entropy does.
    """
    given = (("outputs", outputs), ("targets", targets))
    outputs = _logits_and_rows(outputs, "outputs")
    targets = _dense_targets(targets, outputs, "targets")
    return _loss(_MSE, outputs, None, targets, grad_out, reduction, sample_weight, given)


def _normalized(weights):
    """weights / sum(weights) in the weights' dtype, computed without overflow (float64, by way
    of the largest weight); check_sample_weight(require_positive=True) has refused all-zero
    weights."""
    relative = weights.astype(np.float64) / float(weights.max())
    return (relative / relative.sum()).astype(weights.dtype)


def linear_forward(x, w, b, activation=None, out=None, preactivation_out=None):
    """act(x @ w + b): x (B, in), w (in, out), b (out,) or None -> (B, out), one dtype.

    The product runs through BLAS; bias and activation follow in one pass over each block of
    the output while it is in cache. activation: None, a name of ``ACTIVATIONS`` (with its
    default parameter) or an activation layer such as ``fastnn.LeakyReLU(0.2)`` (with its own).
    preactivation_out: None, or a (B, out) array that receives z = x @ w + b before the
    activation (what ``linear_backward(z=...)`` needs for an activation whose derivative comes
    from its input, such as GELU).
    """
    entry, param = _activations.resolve(activation)
    code = 0 if entry is None else entry.code
    x_given, w_given, b_given = x, w, b
    x = v.float_array(x, "x", ndim=2)
    w = v.float_array(w, "w", ndim=2, dtype=x.dtype)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"w: expected {x.shape[1]} rows to match x's {x.shape[1]} columns, got shape {w.shape}")
    if b is not None:
        b = v.float_array(b, "b", ndim=1, dtype=x.dtype)
        v.check_shape(b, "b", (w.shape[1],))
    v.blas_dims(batch=x.shape[0], in_features=x.shape[1], out_features=w.shape[1])
    inputs = (("x", x_given, x), ("w", w_given, w), ("b", b_given, b))
    out = v.out_buffer(out, "out", (x.shape[0], w.shape[1]), x.dtype, inputs=inputs)
    z_out = None
    if preactivation_out is not None:
        z_out = v.out_buffer(preactivation_out, "preactivation_out", out.shape, x.dtype,
                             inputs=inputs + (("out", out),))
    return _core.linear_forward(x, w, b, code, out, param, z_out)


def linear_backward(x, w, grad_out, y=None, activation=None, need_dx=True,
                    dw_out=None, db_out=None, dx_out=None, z=None):
    """Gradients of a linear layer (and its activation) in one call.

    x (B, in), w (in, out), grad_out (B, out) = dL/dy; with an activation (as for
    linear_forward), dz = grad_out * act'(z), computed from the saved output y (B, out), or,
    for an activation whose derivative needs its input (GELU), from the pre-activation z
    (B, out) that ``linear_forward(preactivation_out=...)`` kept; without one, dz = grad_out
    (grad_out is never modified). Returns (dw (in, out), db (out,), dx (B, in) or None when
    need_dx is False), with dw = x.T @ dz, db = dz.sum(0) accumulated in float64, dx = dz @ w.T.
    """
    entry, param = _activations.resolve(activation)
    code = 0 if entry is None else entry.code
    needs_z = entry is not None and entry.needs_input
    given = {"x": x, "w": w, "grad_out": grad_out, "y": y if code != 0 and not needs_z else None,
             "z": z if needs_z else None}
    x = v.float_array(x, "x", ndim=2)
    w = v.float_array(w, "w", ndim=2, dtype=x.dtype)
    batch, n_in = x.shape
    if w.shape[0] != n_in:
        raise ValueError(f"w: expected {n_in} rows to match x's {n_in} columns, got shape {w.shape}")
    n_out = w.shape[1]
    grad_out = v.float_array(grad_out, "grad_out", ndim=2, dtype=x.dtype)
    v.check_shape(grad_out, "grad_out", (batch, n_out))
    if needs_z:
        if z is None:
            raise ValueError(f"z: the saved pre-activation is required with activation={activation!r}")
        z = v.float_array(z, "z", ndim=2, dtype=x.dtype)
        v.check_shape(z, "z", (batch, n_out))
        y = None
    elif code != 0:
        if y is None:
            raise ValueError(f"y: the saved output is required with activation={activation!r}")
        y = v.float_array(y, "y", ndim=2, dtype=x.dtype)
        v.check_shape(y, "y", (batch, n_out))
        z = None
    else:
        y = z = None
    v.blas_dims(batch=batch, in_features=n_in, out_features=n_out)
    inputs = tuple((name, given[name], converted) for name, converted in
                   (("x", x), ("w", w), ("grad_out", grad_out), ("y", y), ("z", z)))
    dw = v.out_buffer(dw_out, "dw_out", (n_in, n_out), x.dtype, inputs=inputs)
    db = v.out_buffer(db_out, "db_out", (n_out,), x.dtype, inputs=inputs + (("dw_out", dw),))
    dx = None
    if need_dx:
        dx = v.out_buffer(dx_out, "dx_out", (batch, n_in), x.dtype,
                          inputs=inputs + (("dw_out", dw), ("db_out", db)))
    _core.linear_backward(x, w, grad_out, y, code, dw, db, dx, param, z)
    return dw, db, dx


def _updated_param_and_grad(param, grad):
    """Check param (a float array updated in place, any shape) and return grad as an array like
    it. grad may be param itself (same memory, shape and strides) but must not overlap it
    otherwise (ValueError)."""
    if not isinstance(param, np.ndarray):
        raise TypeError(f"param: expected a numpy array (updated in place), got {type(param).__name__}")
    if param.dtype.char not in "fd" or not param.dtype.isnative:
        raise TypeError(f"param: expected a float32 or float64 array, got {param.dtype}")
    if not param.flags.c_contiguous or not param.flags.writeable:
        raise ValueError("param: expected a C-contiguous, writeable array (it is updated in place)")
    grad_given = grad
    grad = v.float_array(grad, "grad", dtype=param.dtype, shape=param.shape)
    v.check_overlap(param, "param", may_alias=(("grad", grad_given, grad),))
    return grad


def sgd_update(param, grad, velocity=None, lr=0.01, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One SGD step in place, PyTorch's convention (dampening 0); returns param.

    g = grad + weight_decay * param; with momentum: velocity = momentum * velocity + g and
    step = g + momentum * velocity (nesterov) or velocity; without: step = g.
    param -= lr * step. param and velocity: C-contiguous, writeable, one shape and dtype with grad.
    velocity is checked whenever given (used only when momentum > 0). Overlaps (ValueError):
    grad may be param itself but not overlap it otherwise; velocity overlaps neither.
    """
    lr = v.finite_number(lr, "lr", minimum=0.0)
    momentum = v.finite_number(momentum, "momentum", minimum=0.0)
    weight_decay = v.finite_number(weight_decay, "weight_decay", minimum=0.0)
    if nesterov and momentum == 0:
        raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
    grad_given = grad
    grad = _updated_param_and_grad(param, grad)
    if momentum != 0 and velocity is None:
        raise ValueError("velocity: a buffer (zeros at the start) is required when momentum > 0")
    if velocity is not None:
        velocity = v.out_buffer(velocity, "velocity", param.shape, param.dtype,
                                inputs=(("param", param), ("grad", grad_given, grad)))
    return _core.sgd(param, grad, velocity if momentum != 0 else None, lr, momentum, weight_decay,
                     bool(nesterov))


def gather_rows(x, rows, scale=1.0, shift=0.0, out=None):
    """out[i] = x[rows[i]] * scale + shift, in one pass (for batches of data kept as uint8).

    x (N, F) uint8/float32/float64; rows (n,) integers in [0, N); out (n, F) float32/float64,
    float32 by default for uint8 x, else x's dtype.
    """
    x_given, rows_given = x, rows
    if type(x) is not np.ndarray:
        x = np.asarray(x)
    if x.dtype.char not in "Bfd":
        raise TypeError(f"x: expected a uint8, float32 or float64 array, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D array, got shape {x.shape}")
    if not x.flags.c_contiguous or not x.dtype.isnative:
        x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))
    rows = v.index_array(rows, "rows")
    bad = _core.first_out_of_range(rows, x.shape[0])
    if bad >= 0:
        raise ValueError(f"rows: expected indices in [0, {x.shape[0]}), got {rows[bad]} at index {bad}")
    scale = v.finite_number(scale, "scale")
    shift = v.finite_number(shift, "shift")
    default = np.dtype(np.float32) if x.dtype.char == "B" else x.dtype
    dtype = out.dtype if isinstance(out, np.ndarray) and out.dtype.char in "fd" else default
    out = v.out_buffer(out, "out", (rows.shape[0], x.shape[1]), dtype,
                       inputs=(("x", x_given, x), ("rows", rows_given, rows)))
    return _core.gather(x, rows, out, scale, shift)


def _adam_checked(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    lr = v.finite_number(lr, "lr", minimum=0.0)
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        if not 0.0 <= v.finite_number(value, name) < 1.0:
            raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    eps = v.finite_number(eps, "eps")
    if eps <= 0:
        raise ValueError(f"eps: expected a number > 0, got {eps!r}")
    weight_decay = v.finite_number(weight_decay, "weight_decay", minimum=0.0)
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step: expected the 1-based step count (an integer >= 1), got {step!r}")
    # The kernel takes a C int64. Beyond 2^62 steps beta**step is 0 in any float for beta < 1,
    # so the bias corrections are those of 2^62 steps: the same result, as the twin gives it.
    step = min(int(step), 2 ** 62)
    grad_given = grad
    grad = _updated_param_and_grad(param, grad)
    exp_avg = v.out_buffer(exp_avg, "exp_avg", param.shape, param.dtype,
                           inputs=(("param", param), ("grad", grad_given, grad)))
    exp_avg_sq = v.out_buffer(exp_avg_sq, "exp_avg_sq", param.shape, param.dtype,
                              inputs=(("param", param), ("grad", grad_given, grad), ("exp_avg", exp_avg)))
    return (param, grad, exp_avg, exp_avg_sq, int(step), lr, float(beta1), float(beta2), eps,
            weight_decay)


def adam_update(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0):
    """One Adam step in place (PyTorch's ``Adam``: L2 weight decay in the gradient); returns param.

    g = grad + weight_decay * param; exp_avg = beta1 * exp_avg + (1 - beta1) * g;
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g;
    param -= lr / (1 - beta1**step) * exp_avg / (sqrt(exp_avg_sq / (1 - beta2**step)) + eps).
    param, exp_avg, exp_avg_sq: C-contiguous, writeable, updated in place; grad of the same shape
    and dtype (float32 or float64). step: the 1-based count of this step (int >= 1).
    lr, weight_decay >= 0; beta1, beta2 in [0, 1); eps > 0 (ValueError otherwise). Overlaps
    (ValueError): grad may be param itself but not overlap it otherwise; exp_avg and exp_avg_sq
    overlap none of param, grad and each other.
    """
    args = _adam_checked(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)
    return _core.adam(*args[:4], args[4], *args[5:], False)


def adamw_update(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.01):
    """One AdamW step in place (decoupled weight decay, PyTorch's ``AdamW``); returns param.

    param *= 1 - lr * weight_decay, then adam_update's step with weight_decay 0. Arguments as
    adam_update's.
    """
    args = _adam_checked(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)
    return _core.adam(*args[:4], args[4], *args[5:], True)

