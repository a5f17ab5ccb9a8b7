"""The estimators' output layers: scikit-learn's output activations as fastnn losses, the
scale between the two libraries' losses, and the Poisson loss the network lacks.

Each of scikit-learn's four output activations is the canonical link of its loss, so its
gradient with respect to the last Linear's outputs z is ``w * (act(z) - Y) / sum(w)``; fastnn's
losses give the same, except the MSE (see ``gradient_scale``).
"""
import numpy as np
from scipy.special import xlogy

from .. import loss_registry
from ..losses import LOSS_TYPES, Loss


def network_loss(kind):
    """The fastnn Loss that trains scikit-learn's output activation ``kind``: the registry's
    loss of that output ("softmax", "logistic", "identity"), or the Poisson deviance ("exp")."""
    entry = loss_registry.for_sklearn(kind)
    if entry is not None:
        return LOSS_TYPES[entry.loss_class]()
    if kind == "exp":
        return PoissonDeviance()
    raise ValueError(f"kind: expected an output activation of scikit-learn's MLP, got {kind!r}")


def gradient_scale(kind, n_outputs):
    """fastnn's output gradient over scikit-learn's: the network's MSE is the mean of the squared
    error over the outputs, scikit-learn's gradient is that of half its sum over the outputs."""
    return 2.0 / n_outputs if kind == "identity" else 1.0


def reported_scale(kind):
    """scikit-learn's reported loss over fastnn's: half the mean squared error for "identity"."""
    return 0.5 if kind == "identity" else 1.0


class PoissonDeviance(Loss):
    """Half the Poisson deviance with an exponential output, as scikit-learn's MLPRegressor(
    loss="poisson") defines it: outputs z (N, K) are log-means, targets y >= 0 (N, K);
    loss = mean over rows of sum over K of (y log(y / exp(z)) - y + exp(z)) (weighted mean
    with sample weights); dL/dz = (exp(z) - y) / N. ``predict`` gives exp(z)."""

    def has_accuracy(self, n_outputs):
        return False

    def prepare_targets(self, y, n_outputs, dtype, argname="y"):
        y = np.asarray(y)
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_outputs:
            raise ValueError(f"{argname}: expected targets of shape (N, {n_outputs}), "
                             f"got {y.shape}")
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
