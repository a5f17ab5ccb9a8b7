"""Losses: each turns network outputs (N, out) and targets into a mean loss and its gradient.

Training calls ``prepare_targets`` once (validation + conversion of the whole label array) and
then ``loss_and_grad`` / ``count_correct`` per batch with preallocated buffers, so the step
allocates no arrays. ``forward``/``backward`` are the convenient (validating) public forms.

Sample weights (scikit-learn's convention): with per-row weights w_i the loss of a batch is the
weighted mean sum_i w_i l_i / sum_i w_i and its gradient the gradient of that; a batch whose
weights sum to 0 has loss 0 and a zero gradient. Without weights every w_i is 1. l_i is
-log p_label for SoftmaxCrossEntropy, the sum over the K outputs of the logistic loss for
BinaryCrossEntropy and the mean over the K outputs of the squared error for MSE.

These three are the entries of :mod:`fastnn.loss_registry` (``LOSS_TYPES``, each class's
``entry``): their loss and gradient are the compiled ops ``fastnn.ops.softmax_cross_entropy``,
``sigmoid_cross_entropy`` and ``mean_squared_error`` (NumPy twins in :mod:`fastnn.reference`),
the same row kernels the compiled training engine runs.
"""
import math
import threading

import numpy as np

from . import loss_registry as _registry
from . import ops
from ._validate import check_sample_weight


def _int_labels(y, n_classes, argname):
    """Validate integer class labels (N,) in [0, n_classes); returns an intp array."""
    y = np.asarray(y)
    if y.dtype == np.bool_ or y.dtype.kind not in "iu":
        raise TypeError(f"{argname}: expected integer class labels, got dtype {y.dtype.name}")
    if y.ndim != 1:
        raise ValueError(f"{argname}: expected a 1-D array of labels, got shape {y.shape}")
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{argname}: labels must be in [0, {n_classes}); {argname}[{i}] = {y[i]} "
                         f"({bad.size} out of range)")
    return np.ascontiguousarray(y, dtype=np.intp)


def weight_sum(sample_weight, n):
    """Total weight of a batch of n rows (float): n without weights."""
    if sample_weight is None:
        return float(n)
    return float(np.add.reduce(sample_weight, dtype=np.float64))


def _matrix(outputs):
    """outputs as an array of shape (N, K), one row per sample (what a network outputs), else
    ValueError naming it."""
    outputs = np.asarray(outputs)
    if outputs.ndim != 2:
        raise ValueError(f"outputs: expected a 2-D array of shape (N, K), one row of network "
                         f"outputs per sample, got shape {outputs.shape}")
    return outputs


class Loss:
    """Base class; subclasses implement prepare_targets, count_correct, predict* and, unless
    they are one of the registry's losses (``entry``), loss_and_grad."""

    entry = None  # the fastnn.loss_registry entry of fastnn's own losses

    def __init__(self):
        self._scratch = threading.local()

    def __getstate__(self):  # scratch buffers are rebuilt on use, never pickled
        return {k: v for k, v in self.__dict__.items() if k not in ("_scratch", "_buffers")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.pop("_buffers", None)  # pickled before the scratch was per thread
        self._scratch = threading.local()

    def _buf(self, key, shape, dtype):
        # Per-shape scratch arrays, allocated once per thread: one loss may serve networks (or
        # an evaluate beside a fit) in several threads.
        buffers = getattr(self._scratch, "buffers", None)
        if buffers is None:
            buffers = self._scratch.buffers = {}
        k = (key, shape, dtype)
        b = buffers.get(k)
        if b is None:
            if len(buffers) > 32:
                buffers.clear()
            b = buffers[k] = np.empty(shape, dtype)
        return b

    def check_outputs(self, n_outputs):
        """Raise ValueError if this loss cannot use ``n_outputs`` output units."""

    def has_accuracy(self, n_outputs):
        """True when count_correct gives a meaningful accuracy for ``n_outputs`` outputs."""
        return True

    def prepare_targets(self, y, n_outputs, dtype, argname="y"):
        """Validate and convert all targets once; returns the array the per-batch calls expect."""
        raise NotImplementedError

    def target_buffer(self, targets, batch_size):
        """An empty array for a batch of prepared targets (filled with np.take)."""
        return np.empty((batch_size,) + targets.shape[1:], targets.dtype)

    def loss_and_grad(self, outputs, targets, grad_out=None, sample_weight=None):
        """(mean loss as float, dL/doutputs (N, out) in the outputs' dtype) for prepared targets.

        sample_weight: None or (N,) weights, finite and >= 0 (as check_sample_weight returns
        them): the loss is then the weighted mean (module docstring), and 0 with a zero
        gradient when they sum to 0. grad_out: None or a (N, out) buffer of the outputs' dtype
        to write the gradient into. fastnn's own losses compute both with their compiled op
        (``fastnn.ops.<entry.op>``); other subclasses override this.
        """
        if sample_weight is not None and weight_sum(sample_weight, len(outputs)) == 0.0:
            grad = np.zeros_like(outputs) if grad_out is None else grad_out
            grad.fill(0)
            return 0.0, grad
        return getattr(ops, self.entry.op)(outputs, targets, grad_out=grad_out,
                                           sample_weight=sample_weight)

    def _weighted(self, elementwise, grad, sample_weight, divisor):
        """For losses written in NumPy: turn the elementwise loss (N, K) and the unscaled
        gradient (N, K) into the weighted mean loss of rows whose loss is
        sum_k elementwise / divisor; scales grad in place (zero when the weights sum to 0)."""
        n = elementwise.shape[0]
        total = weight_sum(sample_weight, n)
        if total == 0.0:
            grad.fill(0)
            return 0.0
        exact = self._buf("exact", (n,), np.float64)
        np.divide(sample_weight, divisor * total, out=exact)
        column = self._buf("factors", (n, 1), grad.dtype)
        column[:, 0] = exact
        rows = self._buf("rows", (n,), np.float64)
        np.add.reduce(elementwise, axis=1, dtype=np.float64, out=rows)
        grad *= column
        return float(np.dot(rows, exact))

    def count_correct(self, outputs, targets):
        """Number of rows predicted correctly (int); prepared targets."""
        raise NotImplementedError

    def _checked(self, outputs, targets, sample_weight):
        outputs = np.asarray(outputs)
        if outputs.dtype.char not in "fd":
            raise TypeError(f"outputs: expected a float32 or float64 array, got {outputs.dtype.name}")
        outputs = np.ascontiguousarray(_matrix(outputs))
        self.check_outputs(outputs.shape[1])
        t = self.prepare_targets(targets, outputs.shape[1], outputs.dtype, "targets")
        if len(t) != len(outputs):
            raise ValueError(f"targets: expected {len(outputs)} rows like outputs, got {len(t)}")
        w = check_sample_weight(sample_weight, len(outputs), outputs.dtype)
        return self.loss_and_grad(outputs, t, sample_weight=w)

    def forward(self, outputs, targets, sample_weight=None):
        """Mean loss (float) of outputs (N, out) against raw targets; weighted mean when
        sample_weight (N,) is given."""
        return self._checked(outputs, targets, sample_weight)[0]

    def backward(self, outputs, targets, sample_weight=None):
        """Gradient of the (weighted) mean loss w.r.t. outputs, (N, out), outputs' dtype."""
        return self._checked(outputs, targets, sample_weight)[1]

    def predict(self, outputs):
        """Predictions from outputs (N, out)."""
        raise NotImplementedError

    def predict_proba(self, outputs):
        """Probabilities (or raw outputs) from outputs (N, out)."""
        raise NotImplementedError

    def get_config(self):
        return {}

    def __repr__(self):
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    """Softmax + cross-entropy on logits (N, K), K >= 2, with integer labels (N,) in [0, K)."""

    def check_outputs(self, n_outputs):
        if n_outputs < 2:
            raise ValueError(f"SoftmaxCrossEntropy needs at least 2 outputs, got {n_outputs}; "
                             "use BinaryCrossEntropy for one output unit")

    def prepare_targets(self, y, n_outputs, dtype, argname="y"):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == n_outputs:
            raise ValueError(f"{argname}: expected class indices of shape (N,), got shape {y.shape}; "
                             f"for one-hot targets pass {argname}.argmax(axis=1)")
        return _int_labels(y, n_outputs, argname)

    def count_correct(self, outputs, targets):
        pred = self._buf("pred", targets.shape, np.intp)
        eq = self._buf("eq", targets.shape, np.bool_)
        np.argmax(outputs, axis=1, out=pred)
        np.equal(pred, targets, out=eq)
        return int(np.count_nonzero(eq))

    def predict(self, outputs):
        """Class labels (N,) intp: argmax of the logits (N, K)."""
        return np.argmax(_matrix(outputs), axis=1)

    def predict_proba(self, outputs):
        """Softmax probabilities (N, K) of the logits (N, K)."""
        return ops.softmax(np.ascontiguousarray(_matrix(outputs)))


class BinaryCrossEntropy(Loss):
    """Logistic loss on K >= 1 independent logits per row (binary or multi-label).

    Targets: 0/1 of shape (N, K); (N,) is accepted when K = 1. The loss of a row is the sum over
    its K outputs of softplus(z) - y*z, computed as max(z, 0) + log1p(exp(-|z|)) - y*z (stable);
    the loss of a batch is the mean over its rows. Accuracy counts a row as right when all of
    its K labels are (scikit-learn's subset accuracy).
    """

    def check_outputs(self, n_outputs):
        if n_outputs < 1:
            raise ValueError(f"BinaryCrossEntropy needs at least 1 output unit, got {n_outputs}")

    def prepare_targets(self, y, n_outputs, dtype, argname="y"):
        y = np.asarray(y)
        if n_outputs == 1 and y.ndim == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_outputs:
            shapes = "(N,) or (N, 1)" if n_outputs == 1 else f"(N, {n_outputs}), one column per output"
            raise ValueError(f"{argname}: expected 0/1 labels of shape {shapes}, got {y.shape}")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{argname}: expected 0/1 labels, got dtype {y.dtype.name}")
        bad = np.argwhere((y != 0) & (y != 1))
        if len(bad):
            at = int(bad[0][0]) if n_outputs == 1 else tuple(int(v) for v in bad[0])
            raise ValueError(f"{argname}: expected 0/1 labels; {argname}[{at}] = {y[tuple(bad[0])]} "
                             f"({len(bad)} not 0 or 1)")
        return np.ascontiguousarray(y, dtype=dtype)

    def count_correct(self, outputs, targets):
        p = self._buf("p", outputs.shape, np.bool_)
        t = self._buf("t", outputs.shape, np.bool_)
        np.greater(outputs, 0, out=p)
        np.greater(targets, 0.5, out=t)
        np.equal(p, t, out=p)
        if outputs.shape[1] == 1:
            return int(np.count_nonzero(p))
        row = self._buf("row", outputs.shape[:1], np.bool_)
        np.logical_and.reduce(p, axis=1, out=row)
        return int(np.count_nonzero(row))

    def predict(self, outputs):
        """Labels int64 where the logit is > 0 (probability > 0.5): (N,) for one output, the
        0/1 matrix (N, K) for K > 1; outputs (N, K)."""
        outputs = _matrix(outputs)
        labels = (outputs > 0).astype(np.int64)
        return labels[:, 0] if outputs.shape[1] == 1 else labels

    def predict_proba(self, outputs):
        """sigmoid(logits): P(class 1) (N,) for one output, (N, K) for K > 1; outputs (N, K)."""
        outputs = _matrix(outputs)
        if outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        return ops.sigmoid(np.ascontiguousarray(outputs))


class MSE(Loss):
    """Mean squared error over all elements: mean((outputs - targets)**2), targets float (N, out)
    (with sample weights: the weighted mean over rows of each row's mean over its outputs).

    Integer labels (N,) with out >= 2 are accepted and one-hot encoded; 1-D float targets with
    out == 1 are taken as a column. Accuracy is argmax(outputs) == argmax(targets) when out >= 2
    and not defined (NaN) for one output.
    """

    def has_accuracy(self, n_outputs):
        return n_outputs >= 2

    def prepare_targets(self, y, n_outputs, dtype, argname="y"):
        y = np.asarray(y)
        if y.ndim == 1 and y.dtype.kind in "iu" and n_outputs >= 2:
            labels = _int_labels(y, n_outputs, argname)
            t = np.zeros((len(labels), n_outputs), dtype)
            t[np.arange(len(labels)), labels] = 1
            return t
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_outputs:
            raise ValueError(f"{argname}: expected targets of shape (N, {n_outputs}), got {y.shape}")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{argname}: expected real targets, got dtype {y.dtype.name}")
        with np.errstate(over="ignore"):  # beyond the dtype's range: refused just below
            t = np.ascontiguousarray(y, dtype=dtype)
        n_bad = t.size - int(np.count_nonzero(np.isfinite(t)))
        if n_bad:
            i = tuple(int(v) for v in np.argwhere(~np.isfinite(t))[0])
            raise ValueError(f"{argname}: {n_bad} value(s) not finite in {np.dtype(dtype).name}, "
                             f"the first {argname}[{i}] = {y[i]}")
        return t

    def count_correct(self, outputs, targets):
        if outputs.shape[1] < 2:
            return 0
        n = outputs.shape[0]
        a = self._buf("a", (n,), np.intp)
        b = self._buf("b", (n,), np.intp)
        eq = self._buf("eq", (n,), np.bool_)
        np.argmax(outputs, axis=1, out=a)
        np.argmax(targets, axis=1, out=b)
        np.equal(a, b, out=eq)
        return int(np.count_nonzero(eq))

    def predict(self, outputs):
        """The outputs themselves (regression)."""
        return np.array(outputs, copy=True)

    def predict_proba(self, outputs):
        """The outputs themselves (MSE has no probabilistic reading)."""
        return np.array(outputs, copy=True)


LOSS_TYPES = {e.loss_class: globals()[e.loss_class] for e in _registry.REGISTRY}
"""The Loss class of each registry entry by its name (the ``type`` saved models record)."""
for _entry in _registry.REGISTRY:
    LOSS_TYPES[_entry.loss_class].entry = _entry
del _entry


def registry_entry(loss):
    """The registry entry of ``loss`` when it is exactly one of fastnn's losses (not a subclass,
    which may compute something else), else None."""
    entry = getattr(type(loss), "entry", None)
    return entry if entry is not None and LOSS_TYPES.get(entry.loss_class) is type(loss) else None


def accuracy(correct, seen, loss, n_outputs):
    """correct/seen as float, NaN when the loss has no accuracy or nothing was seen."""
    if not loss.has_accuracy(n_outputs) or seen == 0:
        return math.nan
    return correct / seen
