"""solver="lbfgs": scipy's L-BFGS-B on the full-batch loss, with the network's compiled forward
and backward passes giving the loss and its gradient.

The parameters travel as one float64 vector packed as scikit-learn packs them (every coefficient
matrix, then every intercept), so that its ``max_iter``, ``max_fun`` and ``tol`` (scipy's maxiter,
maxfun and gtol) mean the same thing here.
"""
import contextlib
import warnings

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from .. import _sparse
from .._threads import blas_threads_limited, kernels_on_calling_thread
from .._validate import check_sample_weight
from ..losses import weight_sum
from . import _outputs


class _Objective:
    """f(x) -> (loss, gradient) for scipy: x is unpacked into the network's parameters, the loss
    is the network's own (compiled where it has a kernel), on scikit-learn's scale."""

    def __init__(self, est, X, targets, sample_weight):
        self.net = net = est.network_
        self.est, self.X = est, net._check_X(X, "X")
        # A sparse X is passed in dense chunks of rows (fastnn._sparse), never densified whole.
        n = len(self.X)
        step = _sparse.rows_per_chunk(X.shape[1]) if _sparse.is_sparse(X) else n
        self.chunks = [np.arange(i, min(i + step, n)) for i in range(0, n, step)]
        self.loss = net.loss
        self.T = net.loss.prepare_targets(targets, net.n_outputs, net.dtype)
        self.sw = check_sample_weight(sample_weight, n, net.dtype)
        # scikit-learn's gradient is the network's over gradient_scale; its loss (for the
        # squared error, half the sum over the outputs) scales with it
        self.scale = 1.0 / _outputs.gradient_scale(est.out_activation_, est.n_outputs_)
        params = net.parameters()
        grads = net.gradients()
        self.n_coefs = len(params) // 2
        self.params = params[0::2] + params[1::2]
        self.grads = grads[0::2] + grads[1::2]
        bounds = np.cumsum([0] + [p.size for p in self.params])
        self.slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        self.flat_grad = np.empty(bounds[-1], np.float64)
        self.weight_sum = weight_sum(sample_weight, n)
        # each chunk's mean loss counts in proportion to its share of the weight
        total = weight_sum(self.sw, n)
        self.shares = [self.scale] if len(self.chunks) == 1 else [
            self.scale * weight_sum(None if self.sw is None else self.sw[rows], len(rows)) / total
            for rows in self.chunks]
        self.alpha = est.alpha
        self.parts = (np.nan, np.nan)  # (data loss, penalty) of the last call

    def pack(self):
        return np.concatenate([p.ravel() for p in self.params]).astype(np.float64)

    def unpack(self, x):
        for p, s in zip(self.params, self.slices):
            np.copyto(p, x[s].reshape(p.shape), casting="same_kind")

    def _chunk(self, rows):
        """(inputs, targets, weights) of the rows: X itself when they are all of a dense X."""
        if len(rows) == len(self.X) and not isinstance(self.X, _sparse.SparseRows):
            return self.X, self.T, self.sw
        X = self.X.dense_rows(rows) if isinstance(self.X, _sparse.SparseRows) else self.X[rows]
        return X, self.T[rows], None if self.sw is None else self.sw[rows]

    def __call__(self, x):
        self.unpack(x)
        self.flat_grad[...] = 0.0
        data = 0.0
        for rows, share in zip(self.chunks, self.shares):
            X, T, sw = self._chunk(rows)
            z = self.net.forward(X, training=False)
            part, delta = self.loss.loss_and_grad(z, T, z, sample_weight=sw)
            if share != 1.0:
                part *= share
                delta *= share
            data += part
            self.net.backward(delta)
            for g, s in zip(self.grads, self.slices):
                self.flat_grad[s] += g.ravel()
        sq = 0.0
        for i, (p, s) in enumerate(zip(self.params, self.slices)):
            out = self.flat_grad[s]
            if i < self.n_coefs and self.alpha:
                flat = p.ravel()
                sq += float(np.dot(flat, flat))
                out += (self.alpha / self.weight_sum) * flat
        penalty = 0.5 * self.alpha * sq / self.weight_sum
        self.parts = (data, penalty)
        return data + penalty, self.flat_grad.copy()


def fit_lbfgs(est, X, targets, sample_weight):
    """Minimise the estimator's loss over its network's parameters; sets n_iter_, loss_,
    loss_curve_ (the loss after each iteration) and best_loss_."""
    objective = _Objective(est, X, targets, sample_weight)
    # scikit-learn reports the squared error averaged over the outputs; the minimised sum
    # (whose gradient is scikit-learn's) differs from it by that factor in the data term.
    scale = 1.0 / est.n_outputs_ if est.out_activation_ == "identity" else 1.0
    curve = []
    bar = None
    if est.verbose:
        from .._training import _progress_bar  # the bar of Network.fit and the CLI

        bar = _progress_bar(est.max_iter, 1, 1)
        bar.set_description("L-BFGS")

    def record(intermediate_result):
        # L-BFGS-B's last evaluation is the accepted point of the iteration
        data, penalty = objective.parts
        curve.append(data * scale + penalty)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"loss={curve[-1]:.6g}", refresh=False)

    # The passes alternate fastnn's elementwise kernels with BLAS products, as the layer-by-layer
    # training path does (see kernels_on_calling_thread). BLAS also gets one thread unless
    # n_threads asks for more: on load_digits (hidden (100,)) its second thread made a fit 3-20x
    # slower while other processes ran, and choosing per call by timing cost more than it won.
    blas = blas_threads_limited() if est.n_threads is None else contextlib.nullcontext()
    try:
        with np.errstate(over="ignore", invalid="ignore"), kernels_on_calling_thread(), blas:
            result = scipy.optimize.minimize(
                objective, objective.pack(), method="L-BFGS-B", jac=True, callback=record,
                options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol})
    finally:
        if bar is not None:
            bar.close()
    if result.status != 0:
        warnings.warn(f"lbfgs stopped before converging after {result.nit} iterations: "
                      f"{result.message}. Raise max_iter or max_fun, or scale the data.",
                      ConvergenceWarning)
    objective(result.x)  # leaves the solution in the network
    data, penalty = objective.parts
    if not np.isfinite(data + penalty):
        raise ValueError("Solver produced non-finite parameter weights or loss. The input data "
                         "may contain large values and need to be preprocessed.")
    est.n_iter_ = min(int(result.nit), est.max_iter)
    est.loss_ = data * scale + penalty
    est.loss_curve_ = curve
    est.best_loss_ = min(curve + [est.loss_])
