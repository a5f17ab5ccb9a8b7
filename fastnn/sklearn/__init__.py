"""scikit-learn estimators over fastnn.Network: ``MLPClassifier`` and ``MLPRegressor``.

Needs scikit-learn (``pip install ".[sklearn]"`` in the repository); ``import fastnn`` never
imports it.

The estimators train a Network of Linear [+ activation] blocks whose output layer is
scikit-learn's: softmax cross-entropy for 3+ classes, one logistic unit for 2 classes, one
logistic unit per label for a multi-label indicator y, an identity output with the squared
error or an exponential one with the Poisson deviance for regression. How scikit-learn's
parameters map:

* solver "sgd" and "adam" train through ``Network.fit``; "lbfgs" runs scipy's L-BFGS-B on the
  full-batch loss (+ alpha/2 * ||W||^2 / the weight sum) with the gradient from the network's
  forward and backward passes; ``max_iter``, ``max_fun`` and ``tol`` are scipy's maxiter, maxfun
  and gtol as in scikit-learn. lbfgs sets loss_curve_ to the loss after each iteration (where
  scikit-learn sets none) and best_loss_ to its least value; partial_fit needs a stochastic
  solver.
* alpha: scikit-learn adds alpha * W / (the batch's weight sum) to each batch's coefficient
  gradient; fastnn gets weight_decay = alpha / (batch_size * the mean sample weight).
  Differences: fastnn also decays the intercepts, and a short last batch gets the full-batch
  decay; both are second-order at the usual alpha (1e-4). With alpha=0 and shuffle=False,
  solver="sgd" in float64 reproduces scikit-learn's weights to rounding under every schedule
  (``momentum_convention="sklearn"``: the rate inside the velocity), with and without Nesterov.
* The squared error: scikit-learn's gradient is that of half the squared error summed over the
  outputs while fastnn's MSE is the mean over them; the optimizer's rate (sgd) or epsilon and
  weight decay (adam) are scaled so that the steps are scikit-learn's.
* loss_curve_ is the mean training loss of the epoch plus the L2 penalty, as scikit-learn
  reports it (the penalty taken with the mean of the start- and end-of-epoch ||W||^2). With
  sample weights the epoch's loss is the weighted mean over all its rows, where scikit-learn
  averages the batches' weighted means by their row counts: the two differ when the batches'
  weight sums differ (the weights trained do not).
* Weights start as in scikit-learn: Glorot uniform, bound sqrt(6 / (fan_in + fan_out)) (2 instead
  of 6 for "logistic"), intercepts drawn the same way, in scikit-learn's order (a given
  random_state gives scikit-learn's initial weights).
* Adam: beta_1, beta_2, epsilon -> fastnn.Adam(beta1, beta2, eps); fastnn adds eps to the
  bias-corrected sqrt(v) where scikit-learn adds it to the raw one (negligible at eps=1e-8).
* learning_rate "invscaling" / "adaptive" (solver="sgd") follow scikit-learn's rules, applied
  between epochs.
* sample_weight (fit and partial_fit of both, every solver) weighs each row's loss: the loss is
  sum(w * loss) / sum(w), so a weight of 2 counts a row twice (exactly, in full-batch training);
  all-zero weights are refused. class_weight (classifier) multiplies them by the class's weight.
* verbose: a progress bar per epoch (tqdm, as the CLI's) and scikit-learn's lines.
"""
from ..errors import MissingExtra

try:
    import sklearn  # noqa: F401
except ImportError as exc:
    raise MissingExtra("fastnn.sklearn needs scikit-learn", "sklearn") from exc

from ._classifier import MLPClassifier  # noqa: E402
from ._regressor import MLPRegressor  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor"]
