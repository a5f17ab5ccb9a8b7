"""The estimators' output layers: scikit-learn's output activations, their losses on whole
arrays (for lbfgs and the validation loss), and the Poisson loss the network lacks.

Each of scikit-learn's four output activations is the canonical link of its loss, so the
gradient of the loss with respect to the last Linear's outputs z is ``w * (act(z) - Y) / sum(w)``
in every case.
"""
import numpy as np
from scipy.special import expit, xlogy

from ..losses import Loss


def activate(kind, z):
    """act(z) for the output activation ``kind`` ("identity", "exp", "logistic", "softmax"),
    (N, K) in z's dtype (a new array)."""
    if kind == "identity":
        return np.array(z, copy=True)
    if kind == "exp":
        with np.errstate(over="ignore"):
            return np.exp(z)
    if kind == "logistic":
        return expit(z)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def loss_and_delta(kind, z, Y, sample_weight):
    """scikit-learn's loss of raw outputs z (N, K) against dense targets Y (N, K), and its
    gradient with respect to z.

    sample_weight: None or (N,) >= 0 with a positive sum; the loss is the weighted mean over
    rows. Per row: softmax -log p_label; logistic sum over K of the logistic loss; identity
    half the squared error, summed over K (the gradient scikit-learn uses; it reports the mean
    over K, see ``reported``); exp the half Poisson deviance summed over K.
    Returns (loss as float, delta (N, K) float64).
    """
    z = np.asarray(z, dtype=np.float64)
    p = activate(kind, z)
    if kind == "softmax":
        shifted = z - z.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = -(Y * logp).sum(axis=1)
    elif kind == "logistic":
        rows = (np.logaddexp(0.0, z) - Y * z).sum(axis=1)
    elif kind == "identity":
        rows = 0.5 * ((z - Y) ** 2).sum(axis=1)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            rows = (xlogy(Y, Y) - Y * z - Y + p).sum(axis=1)
    delta = p - Y
    if sample_weight is None:
        total = float(len(z))
        loss = float(rows.sum()) / total
    else:
        total = float(sample_weight.sum())
        loss = float(rows @ sample_weight) / total
        delta *= sample_weight[:, None]
    delta /= total
    return loss, delta


def reported(kind, loss, n_outputs):
    """The loss as scikit-learn reports it: the squared error is averaged over the outputs."""
    return loss / n_outputs if kind == "identity" else loss


class PoissonDeviance(Loss):
    """Half the Poisson deviance with an exponential output, as scikit-learn's MLPRegressor(
    loss="poisson") defines it: outputs z (N, K) are log-means, targets y >= 0 (N, K);
    loss = mean over rows of sum over K of (y log(y / exp(z)) - y + exp(z)); dL/dz = (exp(z) -
    y) / N. ``predict`` gives exp(z)."""

    def has_accuracy(self, n_outputs):
        return False

    def prepare_targets(self, y, n_outputs, dtype, argname="y"):
        y = np.asarray(y)
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_outputs:
            raise ValueError(f"{argname}: expected targets of shape (N, {n_outputs}), got {y.shape}")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{argname}: expected real targets, got dtype {y.dtype.name}")
        t = np.ascontiguousarray(y, dtype=dtype)
        if not (np.isfinite(t).all() and (t >= 0).all()):
            raise ValueError(f"{argname}: expected finite targets >= 0 for the Poisson loss")
        return t

    def loss_and_grad(self, outputs, targets, grad_out=None, sample_weight=None):
        with np.errstate(over="ignore", invalid="ignore"):
            p = np.exp(outputs)
            rows = xlogy(targets, targets) - targets * outputs - targets + p
        if grad_out is None:
            grad_out = np.empty_like(outputs)
        np.subtract(p, targets, out=grad_out)
        if sample_weight is not None:
            return self._weighted(rows, grad_out, sample_weight, 1.0), grad_out
        loss = float(np.add.reduce(rows, axis=None, dtype=np.float64)) / outputs.shape[0]
        grad_out *= 1.0 / outputs.shape[0]
        return loss, grad_out

    def count_correct(self, outputs, targets):
        return 0

    def predict(self, outputs):
        """exp(outputs), (N, K)."""
        with np.errstate(over="ignore"):
            return np.exp(outputs)

    def predict_proba(self, outputs):
        return self.predict(outputs)
