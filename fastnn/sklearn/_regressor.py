"""fastnn.sklearn.MLPRegressor."""
import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import column_or_1d

from ._base import BaseMLP, thread_count
from ._classifier import _stochastic

_LOSSES = {"squared_error": "identity", "poisson": "exp"}


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor trained by fastnn, with scikit-learn's interface.

    Parameters mean what they mean in ``sklearn.neural_network.MLPRegressor`` (the mapping is
    in the package docstring, ``help(fastnn.sklearn)``): loss="squared_error" (an identity
    output, half the squared error) or "poisson" (an exponential output, half the Poisson
    deviance; y >= 0). Plus dtype (None: the input's, float32 or float64; other inputs
    float64) and n_threads, as in fastnn.sklearn.MLPClassifier.

    y: (n_samples,) or (n_samples, n_outputs) reals. predict returns (n_samples,) for one
    output, (n_samples, n_outputs) otherwise, in the network dtype. score is R^2.

    Fitted attributes: as MLPClassifier's (without classes_): coefs_ / intercepts_ (assignable),
    loss_, loss_curve_, best_loss_, validation_scores_ (R^2 of the validation split) /
    best_validation_score_ / validation_loss_curve_ with early_stopping, n_iter_, t_,
    n_layers_, n_outputs_, out_activation_ ("identity" or "exp"), network_.
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None):
        self.loss = loss
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            dtype=dtype, n_threads=n_threads)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and y (n_samples,) or (n_samples, n_outputs).
        sample_weight: None or (n_samples,) reals >= 0, not all zero. Returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over X, y, continuing from the current weights and optimizer state."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _validate_Xy(self, X, y, reset, dtype, **kwargs):
        return super()._validate_Xy(X, y, reset, dtype, y_numeric=True, **kwargs)

    def _targets(self, y, keep, classes, dtype, incremental):
        if self.loss not in _LOSSES:
            raise ValueError(f"loss: expected 'squared_error' or 'poisson', got {self.loss!r}")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        kind = _LOSSES[self.loss]
        if kind == "exp" and np.any(y < 0):
            raise ValueError("y: some values are negative, which the Poisson loss does not "
                             "allow (expected y >= 0)")
        t = np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype)
        return t, kind, t.shape[1]

    def _score_rows(self, X, y, sample_weight):
        pred = self._predict_checked(X)
        if not np.isfinite(pred).all():
            return np.nan
        return r2_score(y, pred, sample_weight=sample_weight)

    def _predict_checked(self, X):
        with thread_count(self.n_threads):
            out = self.network_.predict(X)
        out = out.reshape(X.shape[0], -1)
        return out.ravel() if out.shape[1] == 1 else out

    def predict(self, X):
        """Predictions (n_samples,) for one output, (n_samples, n_outputs) otherwise."""
        self._check_fitted_state()
        return self._predict_checked(self._validate_X(X, reset=False, dtype=self.network_.dtype))
