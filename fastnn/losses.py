"""Losses: each turns network outputs (N, out) and targets into a mean loss and its gradient.

Training calls ``prepare_targets`` once (validation + conversion of the whole label array) and
then ``loss_and_grad`` / ``count_correct`` per batch with preallocated buffers, so the step
allocates no arrays. ``forward``/``backward`` are the convenient (validating) public forms.
"""
import math

import numpy as np

from . import ops


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


class Loss:
    """Base class; subclasses implement prepare_targets, loss_and_grad, count_correct, predict*."""

    def __init__(self):
        self._buffers = {}

    def __getstate__(self):  # scratch buffers are rebuilt on use, never pickled
        return {**self.__dict__, "_buffers": {}}

    def _buf(self, key, shape, dtype):
        # Per-shape scratch arrays, allocated once.
        k = (key, shape, dtype)
        b = self._buffers.get(k)
        if b is None:
            if len(self._buffers) > 32:
                self._buffers.clear()
            b = self._buffers[k] = np.empty(shape, dtype)
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

    def loss_and_grad(self, outputs, targets, grad_out=None):
        """(mean loss as float, dL/doutputs (N, out) in the outputs' dtype); prepared targets."""
        raise NotImplementedError

    def count_correct(self, outputs, targets):
        """Number of rows predicted correctly (int); prepared targets."""
        raise NotImplementedError

    def forward(self, outputs, targets):
        """Mean loss (float) of outputs (N, out) against raw targets."""
        outputs = np.asarray(outputs)
        t = self.prepare_targets(targets, outputs.shape[1], outputs.dtype, "targets")
        return self.loss_and_grad(outputs, t)[0]

    def backward(self, outputs, targets):
        """Gradient of the mean loss w.r.t. outputs, (N, out), outputs' dtype."""
        outputs = np.asarray(outputs)
        t = self.prepare_targets(targets, outputs.shape[1], outputs.dtype, "targets")
        return self.loss_and_grad(outputs, t)[1]

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

    def loss_and_grad(self, outputs, targets, grad_out=None):
        return ops.softmax_cross_entropy(outputs, targets, grad_out=grad_out)

    def count_correct(self, outputs, targets):
        pred = self._buf("pred", targets.shape, np.intp)
        eq = self._buf("eq", targets.shape, np.bool_)
        np.argmax(outputs, axis=1, out=pred)
        np.equal(pred, targets, out=eq)
        return int(np.count_nonzero(eq))

    def predict(self, outputs):
        """Class labels (N,) intp: argmax of the logits."""
        return np.argmax(outputs, axis=1)

    def predict_proba(self, outputs):
        """Softmax probabilities (N, K)."""
        return ops.softmax(np.ascontiguousarray(outputs))


class BinaryCrossEntropy(Loss):
    """Logistic loss on one logit per row: outputs (N, 1), labels (N,) or (N, 1) of 0/1.

    loss = mean(softplus(z) - y*z), computed as max(z, 0) + log1p(exp(-|z|)) - y*z (stable).
    """

    def check_outputs(self, n_outputs):
        if n_outputs != 1:
            raise ValueError(f"BinaryCrossEntropy needs exactly 1 output unit, got {n_outputs}")

    def prepare_targets(self, y, n_outputs, dtype, argname="y"):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{argname}: expected labels of shape (N,) or (N, 1), got {y.shape}")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{argname}: expected 0/1 labels, got dtype {y.dtype.name}")
        bad = np.flatnonzero((y != 0) & (y != 1))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{argname}: expected 0/1 labels; {argname}[{i}] = {y[i]} "
                             f"({bad.size} not 0 or 1)")
        return np.ascontiguousarray(y.reshape(-1, 1), dtype=dtype)

    def loss_and_grad(self, outputs, targets, grad_out=None):
        n = outputs.shape[0]
        a = self._buf("a", outputs.shape, outputs.dtype)
        b = self._buf("b", outputs.shape, outputs.dtype)
        np.abs(outputs, out=a)
        np.negative(a, out=a)
        np.exp(a, out=a)
        np.log1p(a, out=a)
        np.maximum(outputs, 0, out=b)
        a += b
        np.multiply(targets, outputs, out=b)
        a -= b
        loss = float(np.add.reduce(a, axis=None, dtype=np.float64)) / n
        grad = ops.sigmoid(outputs, out=grad_out)
        np.subtract(grad, targets, out=grad)
        grad *= 1.0 / n
        return loss, grad

    def count_correct(self, outputs, targets):
        p = self._buf("p", outputs.shape, np.bool_)
        t = self._buf("t", outputs.shape, np.bool_)
        np.greater(outputs, 0, out=p)
        np.greater(targets, 0.5, out=t)
        np.equal(p, t, out=p)
        return int(np.count_nonzero(p))

    def predict(self, outputs):
        """Labels (N,) int64: 1 where the logit is > 0 (probability > 0.5)."""
        return (np.asarray(outputs)[:, 0] > 0).astype(np.int64)

    def predict_proba(self, outputs):
        """Probability of class 1, (N,) = sigmoid(logit)."""
        return ops.sigmoid(np.ascontiguousarray(np.asarray(outputs)[:, 0]))


class MSE(Loss):
    """Mean squared error over all elements: mean((outputs - targets)**2), targets float (N, out).

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
        t = np.ascontiguousarray(y, dtype=dtype)
        n_bad = t.size - int(np.count_nonzero(np.isfinite(t)))
        if n_bad:
            i = np.argwhere(~np.isfinite(t))[0]
            raise ValueError(f"{argname}: {n_bad} non-finite value(s), the first at {tuple(int(v) for v in i)}")
        return t

    def loss_and_grad(self, outputs, targets, grad_out=None):
        if grad_out is None:
            grad_out = np.empty_like(outputs)
        np.subtract(outputs, targets, out=grad_out)
        sq = self._buf("sq", outputs.shape, outputs.dtype)
        with np.errstate(over="ignore"):  # an overflowing loss is reported by fit as divergence
            np.multiply(grad_out, grad_out, out=sq)
        loss = float(np.add.reduce(sq, axis=None, dtype=np.float64)) / outputs.size
        grad_out *= 2.0 / outputs.size
        return loss, grad_out

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


LOSS_TYPES = {cls.__name__: cls for cls in (SoftmaxCrossEntropy, BinaryCrossEntropy, MSE)}


def accuracy(correct, seen, loss, n_outputs):
    """correct/seen as float, NaN when the loss has no accuracy or nothing was seen."""
    if not loss.has_accuracy(n_outputs) or seen == 0:
        return math.nan
    return correct / seen
