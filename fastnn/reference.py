"""Pure-NumPy twin of :mod:`fastnn.ops`: same op names, parameters, defaults and results.

It is both the oracle of the tests and the baseline of the benchmarks, so it is written the
way one would write fast NumPy: ufuncs with ``out=``, a few preallocated scratch arrays, no
Python loop per element. Validation is deliberately light (dtype, ndim, shapes, ``out``
buffers); the messages name the argument but need not match the compiled side word for word.

Every floating-point step runs under ``np.errstate(all="ignore")``: an overflow to +-inf
that the formulas expect (``row - max`` of ``[3e38, 0, -3e38]`` in float32 is ``-inf`` and
``exp(-inf) == 0``) must not warn, exactly like the compiled kernels.
"""
import math
import numbers

import numpy as np

from . import activations as _activations
from . import loss_registry as _loss_registry

__all__ = [name for e in _activations.REGISTRY for name in (e.name, e.backward_name)] + [
    "softmax",
    "log_softmax",
    *(e.op for e in _loss_registry.REGISTRY),
    "linear_forward",
    "linear_backward",
    "sgd_update",
    "gather_rows",
    "adam_update",
    "adamw_update",
]

SCALED_TANH_A = _activations.SCALED_TANH_A
SCALED_TANH_B = _activations.SCALED_TANH_B
ACTIVATIONS = _activations.ACTIVATIONS
REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------------------------
# Light validation
# --------------------------------------------------------------------------------------------

def _float_array(name, a, dtype=None):
    """``np.asarray(a)`` checked to be float32/float64 (and ``dtype`` when given)."""
    a = np.asarray(a)
    if a.dtype.char not in "fd":
        raise TypeError(f"{name}: expected a float32 or float64 array, got {a.dtype}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name}: expected {dtype} like the other arrays, got {a.dtype}")
    return a


def _require_ndim(name, a, ndim):
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {a.shape}")


def _require_shape(name, a, shape):
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")


def _is_exact_alias(a, b):
    return a is b or (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
        and a.shape == b.shape
    )


def _output(name, out, shape, dtype, inputs=(), alias_ok=False):
    """Return ``out`` checked against shape/dtype/layout/overlap, or a fresh array.

    ``inputs`` is a sequence of ``(name, array)``; ``alias_ok`` allows ``out`` to be exactly
    one of them (same memory, same strides), any other overlap is a ValueError.
    """
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name}: must be writeable")
    for input_name, a in inputs:
        if a is None:
            continue
        a = a if isinstance(a, np.ndarray) else np.asarray(a)  # a memoryview shares its memory
        if not np.may_share_memory(out, a):
            continue
        if alias_ok and _is_exact_alias(out, a):
            continue
        if np.shares_memory(out, a):
            raise ValueError(f"{name}: overlaps the input {input_name}")
    return out


# --------------------------------------------------------------------------------------------
# Elementwise activations: the NumPy twins of fastnn.activations, one pair per entry
# --------------------------------------------------------------------------------------------

def _forward(entry, x, out, param):
    x = _float_array("x", x)
    if x.ndim < 1:
        raise ValueError(f"x: expected an array with ndim >= 1, got shape {x.shape}")
    out = _output("out", out, x.shape, x.dtype, [("x", x)], alias_ok=True)
    with np.errstate(all="ignore"):
        return entry.forward_twin(x, out, param)


def _backward(entry, saved, grad, out, param):
    name = entry.saved
    saved = _float_array(name, saved)
    if saved.ndim < 1:
        raise ValueError(f"{name}: expected an array with ndim >= 1, got shape {saved.shape}")
    grad = _float_array("grad", grad, saved.dtype)
    _require_shape("grad", grad, saved.shape)
    out = _output("out", out, saved.shape, saved.dtype, [(name, saved), ("grad", grad)], alias_ok=True)
    with np.errstate(all="ignore"):
        return entry.backward_twin(saved, grad, out, param)


for _entry in _activations.REGISTRY:
    globals().update(zip((_entry.name, _entry.backward_name),
                         _activations.op_functions(_entry, _forward, _backward, __name__)))
del _entry


# --------------------------------------------------------------------------------------------
# Softmax family
# --------------------------------------------------------------------------------------------

def _logits_2d(logits):
    logits = _float_array("logits", logits)
    _require_ndim("logits", logits, 2)
    if logits.shape[1] == 0:
        raise ValueError(f"logits: expected at least one class (column), got shape {logits.shape}")
    return logits


def softmax(logits, out=None):
    """Row-wise softmax of logits (N, K) float32/float64; returns ``out`` (N, K), same dtype.

    The row sums are accumulated in float64.
    """
    logits = _logits_2d(logits)
    out = _output("out", out, logits.shape, logits.dtype, [("logits", logits)], alias_ok=True)
    with np.errstate(all="ignore"):
        row_max = logits.max(axis=1, keepdims=True)
        np.subtract(logits, row_max, out=out)
        np.exp(out, out=out)
        row_sum = out.sum(axis=1, dtype=np.float64, keepdims=True)
        np.divide(out, row_sum, out=out, casting="same_kind")
    return out


def log_softmax(logits, out=None):
    """Row-wise ``log(softmax(logits))`` of logits (N, K); returns ``out`` (N, K), same dtype."""
    logits = _logits_2d(logits)
    out = _output("out", out, logits.shape, logits.dtype, [("logits", logits)], alias_ok=True)
    with np.errstate(all="ignore"):
        row_max = logits.max(axis=1, keepdims=True)
        np.subtract(logits, row_max, out=out)
        row_sum = np.exp(out).sum(axis=1, dtype=np.float64, keepdims=True)
        np.subtract(out, np.log(row_sum), out=out, casting="same_kind")
    return out


def _labels_checked(labels, n_rows, n_classes):
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels: expected an integer array, got {labels.dtype}")
    _require_shape("labels", labels, (n_rows,))
    bad = labels >= n_classes
    if labels.dtype.kind == "i":
        bad |= labels < 0
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"labels[{index}] = {labels[index]} is out of range [0, {n_classes})"
        )
    return labels


def _weights_checked(sample_weight, n_rows, dtype):
    """sample_weight as a float64 (N,) array, after rounding to the logits' dtype."""
    weights = np.asarray(sample_weight)
    if weights.dtype.kind not in "iuf":
        raise TypeError(f"sample_weight: expected a real array, got {weights.dtype}")
    _require_shape("sample_weight", weights, (n_rows,))
    weights = weights.astype(dtype, copy=False).astype(np.float64)
    if not np.isfinite(weights).all():
        raise ValueError("sample_weight: must be finite")
    if (weights < 0).any():
        raise ValueError("sample_weight: must be >= 0")
    return weights


def _check_reduction(reduction):
    """Checked after the labels or targets and before the weights, in the compiled ops' order."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")


def _reduced(losses, grad, weights, reduction, n_rows):
    """Apply ``reduction`` to the per-row losses (float64 (N,)) and the unweighted per-row
    gradient ``grad`` (N, K) (scaled in place): (loss, grad) as the loss ops return them."""
    if weights is not None and reduction == "mean":
        if not weights.any():
            raise ValueError("sample_weight: the weights sum to zero, so the mean is undefined")
        # Divide by the sum first (by way of the largest weight): w * loss / sum(w) would
        # lose every bit of a subnormal weight, and 1/sum(w) can overflow.
        weights = weights / weights.max()
        weights /= weights.sum()
    if weights is not None:
        # The compiled kernels scale by the weights rounded to the outputs' dtype.
        weights = weights.astype(grad.dtype).astype(np.float64)
        losses *= weights
        np.multiply(grad, weights[:, None], out=grad, casting="same_kind")
    if reduction == "none":
        return losses, grad
    loss = float(losses.sum())
    if reduction == "mean" and weights is None:
        np.divide(grad, n_rows, out=grad, casting="same_kind")
        return loss / n_rows, grad
    return loss, grad


def _rows_and_columns(name, a, min_columns=1):
    a = _float_array(name, a)
    _require_ndim(name, a, 2)
    if 0 in a.shape:
        raise ValueError(f"{name}: expected at least one row and one column, got shape {a.shape}")
    if a.shape[1] < min_columns:  # a softmax over one class has a loss and gradient of exactly 0
        raise ValueError(f"{name}: expected at least {min_columns} columns (one per class), got "
                         f"shape {a.shape}; for one output unit use sigmoid_cross_entropy")
    return a


def _dense_targets(targets, outputs):
    """Real targets as a new array of the outputs' dtype, and the array given."""
    given = np.asarray(targets)
    if given.dtype.kind not in "biuf":
        raise TypeError(f"targets: expected real values, got dtype {given.dtype}")
    converted = given[:, None] if given.ndim == 1 and outputs.shape[1] == 1 else given
    _require_shape("targets", converted, outputs.shape)
    with np.errstate(over="ignore"):
        return converted.astype(outputs.dtype), given


def _loss_gradient_buffer(grad_out, outputs, given):
    """grad_out checked (it may be the outputs exactly, never overlap the targets or weights
    given), or a new array."""
    grad = _output("grad_out", grad_out, outputs.shape, outputs.dtype, [("outputs", outputs)],
                   alias_ok=True)
    return _output("grad_out", grad, outputs.shape, outputs.dtype, given)


def softmax_cross_entropy(logits, labels, grad_out=None, reduction="mean", sample_weight=None):
    """Cross-entropy of softmax(logits) against integer labels, and its gradient.

    logits (N, K) float32/float64; labels (N,) integers in [0, K); sample_weight None or (N,).
    Returns ``(loss, grad)``: loss is a Python float for "mean"/"sum" and a float64 (N,) array
    for "none"; grad (N, K) has the logits' dtype (written to ``grad_out`` when given, which
    may be ``logits`` itself).
    """
    logits = _rows_and_columns("logits", logits, min_columns=2)
    n_rows, n_classes = logits.shape
    labels = _labels_checked(labels, n_rows, n_classes)
    _check_reduction(reduction)
    weights = None if sample_weight is None else _weights_checked(sample_weight, n_rows, logits.dtype)
    grad = _loss_gradient_buffer(grad_out, logits, [("labels", labels), ("sample_weight", sample_weight)])
    rows = np.arange(n_rows)
    with np.errstate(all="ignore"):
        # Read everything needed from logits before grad (possibly logits itself) is written.
        row_max = logits.max(axis=1)
        label_gap = logits[rows, labels].astype(np.float64)
        label_gap -= row_max  # in float64, so [3e38, 0, -3e38] gives a finite loss
        np.subtract(logits, row_max[:, None], out=grad)
        np.exp(grad, out=grad)
        row_sum = grad.sum(axis=1, dtype=np.float64)
        losses = np.log(row_sum)
        losses -= label_gap
        np.divide(grad, row_sum[:, None], out=grad, casting="same_kind")
        grad[rows, labels] -= 1
        return _reduced(losses, grad, weights, reduction, n_rows)


def sigmoid_cross_entropy(logits, targets, grad_out=None, reduction="mean", sample_weight=None):
    """Binary cross-entropy on K independent logits per row, and its gradient: the loss of a
    row is the sum over its outputs of max(z, 0) + log1p(exp(-|z|)) - t z (finite z), the
    gradient sigmoid(z) - t. logits (N, K); targets (N, K) (or (N,) when K = 1) in [0, 1],
    real; the rest as softmax_cross_entropy."""
    logits = _rows_and_columns("logits", logits)
    targets, given = _dense_targets(targets, logits)
    if not ((targets >= 0) & (targets <= 1)).all():
        raise ValueError("targets: expected values in [0, 1]")
    _check_reduction(reduction)
    weights = None if sample_weight is None else _weights_checked(sample_weight, len(logits), logits.dtype)
    grad = _loss_gradient_buffer(grad_out, logits, [("targets", given), ("sample_weight", sample_weight)])
    with np.errstate(all="ignore"):
        elementwise = np.maximum(logits, 0) + np.log1p(np.exp(-np.abs(logits))) - targets * logits
        losses = elementwise.sum(axis=1, dtype=np.float64)
        _activations.get("sigmoid").forward_twin(logits, grad, 0.0)
        grad -= targets
        return _reduced(losses, grad, weights, reduction, len(logits))


def mean_squared_error(outputs, targets, grad_out=None, reduction="mean", sample_weight=None):
    """Squared error averaged over the K outputs of each row, and its gradient 2 (outputs -
    targets) / K. outputs (N, K); targets (N, K) (or (N,) when K = 1); the rest as
    softmax_cross_entropy."""
    outputs = _rows_and_columns("outputs", outputs)
    targets, given = _dense_targets(targets, outputs)
    _check_reduction(reduction)
    weights = None if sample_weight is None else _weights_checked(sample_weight, len(outputs), outputs.dtype)
    grad = _loss_gradient_buffer(grad_out, outputs, [("targets", given), ("sample_weight", sample_weight)])
    k = outputs.shape[1]
    with np.errstate(all="ignore"):
        np.subtract(outputs, targets, out=grad)
        losses = np.square(grad).mean(axis=1, dtype=np.float64)
        grad *= 2.0 / k
        return _reduced(losses, grad, weights, reduction, len(outputs))


# --------------------------------------------------------------------------------------------
# Linear layer
# --------------------------------------------------------------------------------------------

def linear_forward(x, w, b, activation=None, out=None, preactivation_out=None):
    """``act(x @ w + b)``: x (B, in), w (in, out), b (out,) or None -> out (B, out).

    All arrays float32 or all float64; ``out`` must not overlap x, w or b. activation: None, a
    name or an activation layer (its parameter). preactivation_out: None or (B, out), receives
    ``x @ w + b`` (must not overlap x, w, b or out).
    """
    entry, param = _activations.resolve(activation)
    given = (("x", x), ("w", w), ("b", b))  # the caller's arrays, which the outputs must not overlap
    x = _float_array("x", x)
    _require_ndim("x", x, 2)
    w = _float_array("w", w, x.dtype)
    _require_ndim("w", w, 2)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"w: expected shape ({x.shape[1]}, n_out), got {w.shape}")
    if b is not None:
        b = _float_array("b", b, x.dtype)
        _require_shape("b", b, (w.shape[1],))
    shape = (x.shape[0], w.shape[1])
    out = _output("out", out, shape, x.dtype, given)
    z_out = None
    if preactivation_out is not None:
        z_out = _output("preactivation_out", preactivation_out, shape, x.dtype, given + (("out", out),))
    with np.errstate(all="ignore"):
        np.matmul(x, w, out=out)
        if b is not None:
            np.add(out, b, out=out)
        if z_out is not None:
            np.copyto(z_out, out)
        if entry is not None:
            entry.forward_twin(out, out, param)
    return out


def linear_backward(x, w, grad_out, y=None, activation=None, need_dx=True,
                    dw_out=None, db_out=None, dx_out=None, z=None):
    """Gradients of a linear layer (+ activation) given dL/dy.

    x (B, in), w (in, out), grad_out (B, out) = dL/dy, y (B, out) the forward output (required
    with an activation), or z (B, out) the pre-activation instead for an activation whose
    derivative needs its input. Returns ``(dw, db, dx)``: dw (in, out) = x.T @ dz, db (out,) = dz
    summed over rows in float64, dx (B, in) = dz @ w.T or None when ``need_dx`` is False, where
    dz = grad_out * act'(z). grad_out is not modified. All in the dtype of x. dw_out, db_out,
    dx_out: None or buffers that overlap none of the inputs nor each other.
    """
    entry, param = _activations.resolve(activation)
    given = (("x", x), ("w", w), ("grad_out", grad_out))  # the outputs must not overlap these
    if entry is not None:
        given += (("z", z),) if entry.needs_input else (("y", y),)
    x = _float_array("x", x)
    _require_ndim("x", x, 2)
    w = _float_array("w", w, x.dtype)
    _require_ndim("w", w, 2)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"w: expected shape ({x.shape[1]}, n_out), got {w.shape}")
    n_batch, n_in = x.shape
    n_out = w.shape[1]
    grad_out = _float_array("grad_out", grad_out, x.dtype)
    _require_shape("grad_out", grad_out, (n_batch, n_out))
    saved = None
    if entry is not None:
        name, saved = ("z", z) if entry.needs_input else ("y", y)
        if saved is None:
            raise ValueError(f"{name}: required with activation {activation!r}")
        saved = _float_array(name, saved, x.dtype)
        _require_shape(name, saved, (n_batch, n_out))
    dw = _output("dw_out", dw_out, (n_in, n_out), x.dtype, given)
    db = _output("db_out", db_out, (n_out,), x.dtype, given + (("dw_out", dw),))
    dx = None
    if need_dx:
        dx = _output("dx_out", dx_out, (n_batch, n_in), x.dtype,
                     given + (("dw_out", dw), ("db_out", db)))

    with np.errstate(all="ignore"):
        if entry is None:
            dz = grad_out
        else:
            dz = entry.backward_twin(saved, grad_out, np.empty_like(grad_out, order="C"), param)
        np.matmul(x.T, dz, out=dw)
        np.add.reduce(dz, axis=0, dtype=np.float64, out=db)
        if need_dx:
            dx = np.matmul(dz, w.T, out=dx)
    return dw, db, dx


# --------------------------------------------------------------------------------------------
# Optimizer
# --------------------------------------------------------------------------------------------

def _finite_real(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float64
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value}")
    return value


def _check_hyper_parameter(name, value):
    value = _finite_real(name, value)
    if value < 0:
        raise ValueError(f"{name}: must be >= 0, got {value}")
    return value


def _param_checked(param, grad):
    """(param, grad as an array like it): param is updated in place, so it must be the caller's
    own float32/float64 ndarray in native byte order (never a copy; TypeError otherwise),
    C-contiguous and writeable; grad may be param itself but not overlap it otherwise
    (ValueError)."""
    if not isinstance(param, np.ndarray):
        raise TypeError(f"param: expected a numpy array (updated in place), got {type(param).__name__}")
    if param.dtype.char not in "fd" or not param.dtype.isnative:
        raise TypeError(f"param: expected a float32 or float64 array in native byte order, got "
                        f"{param.dtype}")
    if not param.flags.c_contiguous or not param.flags.writeable:
        raise ValueError("param: expected a C-contiguous, writeable array (it is updated in place)")
    grad_array = _float_array("grad", grad, param.dtype)
    _require_shape("grad", grad_array, param.shape)
    _output("param", param, param.shape, param.dtype, [("grad", grad)], alias_ok=True)  # overlap
    return param, grad_array


def _state_buffer(name, buffer, param, grad, others=()):
    """An optimizer state buffer (updated in place): an ndarray like param that overlaps none of
    param, the grad given and the ``others`` buffers (``(name, array)`` pairs)."""
    return _output(name, buffer, param.shape, param.dtype, (("param", param), ("grad", grad)) + others)


def sgd_update(param, grad, velocity=None, lr=0.01, momentum=0.0, weight_decay=0.0,
               nesterov=False):
    """One SGD step in place (PyTorch convention, dampening 0); returns ``param``.

    param, grad, velocity: same shape and float dtype; param and velocity native, C-contiguous
    and writeable ndarrays (both updated in place; velocity is checked whenever given, used only
    when momentum != 0); velocity overlaps neither param nor grad, grad may be param itself but
    not overlap it otherwise; grad any layout.
    """
    lr = _check_hyper_parameter("lr", lr)
    momentum = _check_hyper_parameter("momentum", momentum)
    weight_decay = _check_hyper_parameter("weight_decay", weight_decay)
    if nesterov and momentum == 0:
        raise ValueError("nesterov: requires momentum > 0")
    grad_given = grad
    param, grad = _param_checked(param, grad)
    if momentum != 0 and velocity is None:
        raise ValueError("velocity: required when momentum != 0")
    if velocity is not None:
        velocity = _state_buffer("velocity", velocity, param, grad_given)

    with np.errstate(all="ignore"):
        g = grad
        if weight_decay != 0:
            g = np.multiply(param, weight_decay)
            np.add(grad, g, out=g)
        if momentum != 0:
            np.multiply(velocity, momentum, out=velocity)
            np.add(velocity, g, out=velocity)
            if nesterov:
                step = np.multiply(velocity, momentum)
                np.add(g, step, out=step)
            else:
                step = velocity
        else:
            step = g
        # Scale into a scratch array we own; grad and velocity must keep their values.
        scratch = None if step is grad or step is velocity else step
        scaled = np.multiply(step, lr, out=scratch)
        np.subtract(param, scaled, out=param)
    return param


def gather_rows(x, rows, scale=1.0, shift=0.0, out=None):
    """out[i] = x[rows[i]] * scale + shift: x (N, F) uint8/float32/float64, rows (n,) ints in
    [0, N); out (n, F), float32 by default for uint8 x, else x's dtype."""
    x = np.asarray(x)
    if x.dtype.char not in "Bfd":
        raise TypeError(f"x: expected a uint8, float32 or float64 array, got {x.dtype}")
    _require_ndim("x", x, 2)
    x_given, x = x, x.astype(x.dtype.newbyteorder("="), copy=False)
    rows_given, rows = rows, np.asarray(rows)
    if rows.dtype.kind not in "iu":
        raise TypeError(f"rows: expected an integer array, got {rows.dtype}")
    _require_ndim("rows", rows, 1)
    bad = np.flatnonzero((rows < 0) | (rows >= x.shape[0]))
    if bad.size:
        raise ValueError(f"rows: expected indices in [0, {x.shape[0]}), got {rows[bad[0]]} at index {bad[0]}")
    scale, shift = _finite_real("scale", scale), _finite_real("shift", shift)
    default = np.dtype(np.float32) if x.dtype.char == "B" else x.dtype
    native_out = isinstance(out, np.ndarray) and out.dtype.char in "fd" and out.dtype.isnative
    dtype = out.dtype if native_out else default
    out = _output("out", out, (rows.shape[0], x.shape[1]), dtype, inputs=(("x", x_given), ("rows", rows_given)))
    # In the wider of x's and out's types (float64 x into float32 out: in float64, rounded once
    # into out), as the kernels compute it.
    work = out if np.result_type(x.dtype, dtype) == dtype else np.empty(out.shape, np.float64)
    with np.errstate(all="ignore"):
        np.take(x, rows, axis=0, out=work) if x.dtype == work.dtype else np.copyto(work, x[rows])
        work *= work.dtype.type(scale)
        work += work.dtype.type(shift)
        if work is not out:
            np.copyto(out, work, casting="same_kind")
    return out


def _adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
               decoupled):
    for name, value in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
        _check_hyper_parameter(name, value)
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        if not 0 <= _check_hyper_parameter(name, value) < 1:
            raise ValueError(f"{name}: must be in [0, 1), got {value}")
    if eps <= 0:
        raise ValueError(f"eps: must be > 0, got {eps}")
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"step: must be an integer >= 1, got {step!r}")
    grad_given = grad
    param, grad = _param_checked(param, grad)
    exp_avg = _state_buffer("exp_avg", exp_avg, param, grad_given)
    exp_avg_sq = _state_buffer("exp_avg_sq", exp_avg_sq, param, grad_given, (("exp_avg", exp_avg),))
    real = param.dtype.type
    with np.errstate(all="ignore"):
        if decoupled:
            param *= real(1.0 - lr * weight_decay)
        elif weight_decay:
            grad = param * real(weight_decay) + grad
        exp_avg *= real(beta1)
        exp_avg += grad * real(1.0 - beta1)
        exp_avg_sq *= real(beta2)
        exp_avg_sq += grad * grad * real(1.0 - beta2)
        denom = np.sqrt(exp_avg_sq) * real(1.0 / math.sqrt(1.0 - beta2 ** step)) + real(eps)
        param -= exp_avg / denom * real(lr / (1.0 - beta1 ** step))
    return param


def adam_update(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0):
    """One Adam step in place (L2 weight decay in the gradient); returns ``param``."""
    return _adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, False)


def adamw_update(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.01):
    """One AdamW step in place: param *= 1 - lr * weight_decay, then Adam without decay."""
    return _adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, True)

