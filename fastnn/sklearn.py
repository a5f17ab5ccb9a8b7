"""A scikit-learn classifier over fastnn.Network: ``fastnn.sklearn.MLPClassifier``.

Needs scikit-learn (``pip install ".[sklearn]"`` in the repository); ``import fastnn`` never imports it.

The estimator trains a Network of Linear [+ activation] blocks with SoftmaxCrossEntropy, so both
solvers ("sgd" and "adam") run through fastnn's native whole-epoch loop. How scikit-learn's parameters map:

* alpha: scikit-learn adds alpha * W / batch_size to each batch's coefficient gradient (its
  loss has + alpha/2 * ||W||^2 / batch_size), so fastnn gets weight_decay = alpha / batch_size.
  Differences: fastnn also decays the intercepts, and a short last batch gets the full-batch
  decay; both are second-order at the usual alpha (1e-4). With alpha=0 and shuffle=False,
  solver="sgd" in float64 reproduces scikit-learn's weights to rounding.
* loss_curve_ is the mean training loss of the epoch plus that penalty, as scikit-learn reports
  it (the penalty taken with the mean of the start- and end-of-epoch ||W||^2).
* Two classes use a softmax over 2 outputs (the native loop needs SoftmaxCrossEntropy), so the
  last coefs_ entry is (n_hidden, 2) where scikit-learn's is (n_hidden, 1); n_outputs_ counts
  output units (2 here, the number of classes otherwise). out_activation_ is always "softmax".
* Weights start as in scikit-learn: Glorot uniform, bound sqrt(6 / (fan_in + fan_out)) (2 instead
  of 6 for "logistic"), intercepts drawn the same way.
* Adam: beta_1, beta_2, epsilon -> fastnn.Adam(beta1, beta2, eps); fastnn adds eps to the
  bias-corrected sqrt(v) where scikit-learn adds it to the raw one (negligible at eps=1e-8).
* learning_rate "invscaling" / "adaptive" (solver="sgd") follow scikit-learn's rules, applied
  between epochs, with scikit-learn's momentum convention (the rate inside the velocity:
  ``fastnn.SGD(momentum_convention="sklearn")``), so that with alpha=0 and shuffle=False the
  weights follow scikit-learn's under every schedule, with and without Nesterov. solver="lbfgs" is refused at fit; max_fun (lbfgs only) is accepted unused.
* sample_weight is not supported (fastnn's losses have no per-sample weights).
"""
import contextlib
import numbers
import warnings

import numpy as np

from .errors import MissingExtra

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, unique_labels
    from sklearn.utils.validation import check_is_fitted
except ImportError as exc:
    raise MissingExtra("fastnn.sklearn needs scikit-learn", "sklearn") from exc

from . import activations, layers
from .layers import Linear, check_float_dtype
from .losses import SoftmaxCrossEntropy
from .network import Network
from .optim import SGD, Adam

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _sk_validate_data(est, *args, ensure_all_finite=True, **kwargs):
        return est._validate_data(*args, force_all_finite=ensure_all_finite, **kwargs)

__all__ = ["MLPClassifier"]

# activation name -> layer class (None: no layer, the Linear output is used as is)
_ACTIVATIONS = {"identity": None,
                **{e.sklearn or e.name: getattr(layers, e.layer) for e in activations.REGISTRY}}
_SOLVERS = ("sgd", "adam")
_SCHEDULES = ("constant", "invscaling", "adaptive")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and np.isfinite(v)


def _check(ok, name, expected, value):
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


@contextlib.contextmanager
def _thread_count(n):
    """Run the block with fastnn (and BLAS) on ``n`` threads, then restore the previous setting.

    n=None leaves the global setting alone.
    """
    if n is None:
        yield
        return
    from ._threads import num_threads

    with num_threads(n):
        yield


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier trained by fastnn, with scikit-learn's interface.

    Parameters mean what they mean in ``sklearn.neural_network.MLPClassifier`` (see the module
    docstring for the exact mapping), plus:

    dtype: "float32" (default) or "float64": the network's dtype (weights, arithmetic, the
    probabilities). float32, float64 and uint8 X are read as they are (each batch converted when
    gathered); other X is converted to ``dtype`` first.
    n_threads: int or None. When given, fit/predict run on that many threads (a process-wide
    setting while the call runs: fastnn.set_num_threads, then the previous setting is restored);
    None uses fastnn's current setting.

    Fitted attributes: classes_ (n_classes,), n_features_in_, feature_names_in_ (DataFrame
    input), coefs_ / intercepts_ (lists of the network's live weight arrays, (n_in, n_out) and
    (n_out,), in ``dtype``; assigning lists of arrays of those shapes sets the weights),
    loss_ (the last epoch's loss), loss_curve_, best_loss_ (None with early_stopping),
    validation_scores_ / best_validation_score_ / validation_loss_curve_ (the validation split's
    mean loss per epoch, beside scikit-learn's attributes; None without early_stopping), n_iter_ (epochs
    of the last fit call), t_ (training samples seen), n_layers_, n_outputs_, out_activation_,
    network_ (the fastnn.Network).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype="float32", n_threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.n_threads = n_threads

    # -- parameters ---------------------------------------------------------------------------

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if _is_int(sizes) else sizes
        try:
            sizes = list(sizes)
        except TypeError:
            sizes = None
        _check(sizes is not None and all(_is_int(s) and s >= 1 for s in sizes),
               "hidden_layer_sizes", "a positive int or a sequence of positive ints",
               self.hidden_layer_sizes)
        return [int(s) for s in sizes]

    def _check_params(self):
        """Validate the constructor arguments (at fit, as scikit-learn does)."""
        if self.solver == "lbfgs":
            raise ValueError("solver='lbfgs' is not supported by fastnn's MLPClassifier; "
                             "use solver='sgd' (fastest) or 'adam'")
        _check(self.solver in _SOLVERS, "solver", "'sgd' or 'adam'", self.solver)
        _check(self.activation in _ACTIVATIONS, "activation",
               f"one of {', '.join(map(repr, _ACTIVATIONS))}", self.activation)
        _check(self.learning_rate in _SCHEDULES, "learning_rate",
               "'constant', 'invscaling' or 'adaptive'", self.learning_rate)
        _check(_is_real(self.alpha) and self.alpha >= 0, "alpha", "a real >= 0", self.alpha)
        _check(self.batch_size == "auto" or (_is_int(self.batch_size) and self.batch_size >= 1),
               "batch_size", "'auto' or a positive int", self.batch_size)
        _check(_is_real(self.learning_rate_init) and self.learning_rate_init > 0,
               "learning_rate_init", "a real > 0", self.learning_rate_init)
        _check(_is_real(self.power_t) and self.power_t >= 0, "power_t", "a real >= 0",
               self.power_t)
        _check(_is_int(self.max_iter) and self.max_iter >= 1, "max_iter", "a positive int",
               self.max_iter)
        _check(_is_real(self.tol) and self.tol >= 0, "tol", "a real >= 0", self.tol)
        _check(_is_real(self.momentum) and 0 <= self.momentum < 1, "momentum",
               "a real in [0, 1) (fastnn's SGD refuses momentum=1)", self.momentum)
        _check(_is_real(self.validation_fraction) and 0 <= self.validation_fraction < 1,
               "validation_fraction", "a real in [0, 1)", self.validation_fraction)
        for name in ("beta_1", "beta_2"):
            v = getattr(self, name)
            _check(_is_real(v) and 0 <= v < 1, name, "a real in [0, 1)", v)
        _check(_is_real(self.epsilon) and self.epsilon > 0, "epsilon", "a real > 0",
               self.epsilon)
        n = self.n_iter_no_change
        _check((_is_int(n) and n >= 1) or n == np.inf, "n_iter_no_change",
               "a positive int or numpy.inf", n)
        _check(_is_int(self.max_fun) and self.max_fun >= 1, "max_fun", "a positive int",
               self.max_fun)
        _check(self.n_threads is None or (_is_int(self.n_threads) and self.n_threads >= 1),
               "n_threads", "None or a positive int", self.n_threads)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            v = getattr(self, name)
            _check(isinstance(v, (bool, np.bool_)), name, "True or False", v)
        try:
            dtype = check_float_dtype(self.dtype)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        return self._hidden_sizes(), dtype

    # -- data ---------------------------------------------------------------------------------

    # float32, float64 and uint8 inputs are used as they are: the network converts each batch
    # as it gathers it, which saves a copy of X (slow for large X). Others become ``dtype``.
    # NaN/Inf are left to the network, whose one compiled pass also finds X's range.
    @staticmethod
    def _input_dtypes(dtype):
        return [dtype] + [d for d in (np.float32, np.float64, np.uint8) if d != dtype]

    def _validate_X(self, X, reset, dtype):
        return _sk_validate_data(self, X, reset=reset, dtype=self._input_dtypes(dtype),
                                 ensure_all_finite=False, order="C")

    def _validate_Xy(self, X, y, reset, dtype):
        X, y = _sk_validate_data(self, X, y, reset=reset, dtype=self._input_dtypes(dtype),
                                 ensure_all_finite=False, order="C")
        check_classification_targets(y)
        return X, y

    # -- model --------------------------------------------------------------------------------

    def _build(self, hidden, dtype, n_features, rng):
        """A new Network with scikit-learn's initial weight distribution (rng: RandomState)."""
        n_out = len(self.classes_)
        units = [n_features] + hidden + [n_out]
        self._arch = (tuple(units), self.activation, dtype.name)
        # Drawn in scikit-learn's order (W then b, layer by layer), so a given random_state
        # starts from scikit-learn's own initial weights (3+ classes).
        factor = 2.0 if self.activation == "logistic" else 6.0
        start = []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            start.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
            start.append(rng.uniform(-bound, bound, fan_out))
        self._make_network(seed=int(rng.randint(2 ** 31)))
        for dst, src in zip(self.coefs_ + self.intercepts_, start[0::2] + start[1::2]):
            dst[...] = src
        self.n_layers_ = len(units)
        self.n_outputs_ = n_out
        self.out_activation_ = "softmax"
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.validation_loss_curve_ = []
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.validation_loss_curve_ = None
            self.best_loss_ = np.inf

    def _make_network(self, seed):
        """Build network_ for self._arch (coefs_ / intercepts_ are its weights)."""
        units, activation, dtype = self._arch
        act = _ACTIVATIONS[activation]
        layers = []
        for i in range(len(units) - 1):
            layers.append(Linear(units[i], units[i + 1], init="uniform", seed=0, dtype=dtype))
            if act is not None and i < len(units) - 2:
                layers.append(act())
        self.network_ = Network(layers, loss=SoftmaxCrossEntropy(), dtype=dtype, seed=seed)

    @property
    def coefs_(self):
        """The network's weight matrices, (n_in, n_out) each in ``dtype`` (a list of its live
        arrays: changing one in place changes the model). Assigning a list of arrays of the same
        shapes copies them into the network; other lengths, shapes or non-real dtypes are
        refused (ValueError / TypeError)."""
        return [layer.W for layer in self._linears()]

    @coefs_.setter
    def coefs_(self, values):
        self._assign(values, [layer.W for layer in self._linears()], "coefs_")

    @property
    def intercepts_(self):
        """The network's bias vectors, (n_out,) each; assignable as ``coefs_`` is."""
        return [layer.b for layer in self._linears()]

    @intercepts_.setter
    def intercepts_(self, values):
        self._assign(values, [layer.b for layer in self._linears()], "intercepts_")

    def _linears(self):
        network = self.__dict__.get("network_")
        if network is None:
            raise AttributeError("coefs_ and intercepts_ exist once the estimator is fitted")
        return [layer for layer in network.layers if isinstance(layer, Linear)]

    @staticmethod
    def _assign(values, targets, name):
        if not isinstance(values, (list, tuple)) or len(values) != len(targets):
            raise ValueError(f"{name}: expected a list of {len(targets)} arrays, got {values!r:.80}")
        arrays = []
        for i, (value, target) in enumerate(zip(values, targets)):
            a = np.asarray(value)
            if a.dtype.kind not in "iuf":
                raise TypeError(f"{name}[{i}]: expected real numbers, got dtype {a.dtype}")
            if a.shape != target.shape:
                raise ValueError(f"{name}[{i}]: expected shape {target.shape}, got {a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{name}[{i}]: contains NaN or infinity")
            arrays.append(a)
        for a, target in zip(arrays, targets):
            target[...] = a

    def __getstate__(self):
        # The network is rebuilt from coefs_ / intercepts_ on unpickling: its work buffers
        # (sized for the largest batch seen) can be many times larger than the weights.
        state = dict(super().__getstate__())
        if state.get("network_") is not None:
            state["coefs_"] = [a.copy() for a in self.coefs_]
            state["intercepts_"] = [a.copy() for a in self.intercepts_]
            state["network_"] = None
        return state

    def __setstate__(self, state):
        state = dict(state)
        coefs, intercepts = state.pop("coefs_", None), state.pop("intercepts_", None)
        super().__setstate__(state)
        if state.get("network_", False) is None and "_arch" in state:
            self._make_network(seed=None)
            self.coefs_, self.intercepts_ = coefs, intercepts

    def _new_optimizer(self, batch_size):
        wd = self.alpha / batch_size  # scikit-learn's per-batch gradient scale (module docstring)
        if self.solver == "sgd":
            return SGD(lr=self.learning_rate_init, momentum=self.momentum,
                       nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
                       momentum_convention="sklearn",
                       weight_decay=wd)
        return Adam(lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2,
                    eps=self.epsilon, weight_decay=wd)

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n} training "
                          "samples; it is clipped to that number", UserWarning)
        return min(self.batch_size, n)

    # -- training -----------------------------------------------------------------------------

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and class labels y (n_samples,); returns self."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over X, y, continuing from the current weights and optimizer state.

        classes: every label that may appear; required on the first call.
        """
        first = getattr(self, "classes_", None) is None
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            classes = unique_labels(classes)
            if not first and not np.array_equal(classes, self.classes_):
                raise ValueError(f"classes={classes!r} is not the same as on the first call "
                                 f"to partial_fit, was {self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=classes if first else None)

    def _fit(self, X, y, incremental, classes=None):
        hidden, dtype = self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        keep = (incremental and classes is None) or (self.warm_start and hasattr(self, "network_"))
        X, y = self._validate_Xy(X, y, reset=not keep, dtype=dtype)
        if keep:
            if self.network_.dtype != dtype:
                raise ValueError(f"dtype={self.dtype!r} differs from the fitted network's "
                                 f"{self.network_.dtype.name}; refit without warm_start")
            if not incremental and not np.array_equal(unique_labels(y), self.classes_):
                raise ValueError(f"warm_start needs y with the same classes as before "
                                 f"{self.classes_!r}, got {unique_labels(y)!r}")
            targets = _encode(self.classes_, y)
            if self.early_stopping and self.validation_scores_ is None:  # switched on since
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
                self.validation_loss_curve_ = []
        else:
            all_classes = classes if classes is not None else unique_labels(y)
            if len(all_classes) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; "
                                 f"got 1 class: {all_classes!r}")
            targets = _encode(all_classes, y)
            rs = check_random_state(self.random_state)
            self.classes_ = all_classes
            self._build(hidden, dtype, X.shape[1], rs)
            self._shuffle_rng = np.random.default_rng(rs.randint(2 ** 31))
            self._optimizer = None

        val = None
        if self.early_stopping:
            X, X_val, targets, t_val = train_test_split(
                X, targets, test_size=self.validation_fraction, stratify=targets,
                random_state=int(self._shuffle_rng.integers(2 ** 31)))
            if len(X_val) < 2:
                raise ValueError("the validation set is too small: raise validation_fraction "
                                 "or give more samples")
            val = (X_val, t_val)
        batch = self._batch_size(len(X))
        if not incremental or self._optimizer is None:
            self._optimizer = self._new_optimizer(batch)
        else:
            self._optimizer.weight_decay = self.alpha / batch

        self.n_iter_ = 0
        monitor = _EpochMonitor(self, len(X), batch, incremental)
        with _thread_count(self.n_threads):
            self.network_.fit(X, targets, epochs=1 if incremental else self.max_iter,
                              batch_size=batch, optimizer=self._optimizer,
                              validation_data=val, shuffle=self.shuffle,
                              seed=int(self._shuffle_rng.integers(2 ** 63)),
                              callbacks=[monitor], progress=False)
        # No warning about inputs outside the training range: scikit-learn's estimators give
        # none, and cross-validation folds meet such inputs as a matter of course.
        self.network_.input_range = None
        if self.early_stopping and monitor.best_weights is not None:
            for dst, src in zip(self.network_.parameters(), monitor.best_weights):
                np.copyto(dst, src)
        if not incremental and not monitor.converged and self.n_iter_ == self.max_iter:
            warnings.warn(f"MLPClassifier: max_iter={self.max_iter} epochs reached and the "
                          "optimization has not converged yet.", ConvergenceWarning)
        return self

    # -- prediction ---------------------------------------------------------------------------

    def _net_input(self, X):
        check_is_fitted(self)
        return self._validate_X(X, reset=False, dtype=self.network_.dtype)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes) in the network dtype, columns in
        classes_ order."""
        X = self._net_input(X)
        with _thread_count(self.n_threads):
            return self.network_.predict_proba(X)

    def predict_log_proba(self, X):
        """log(predict_proba(X)), (n_samples, n_classes)."""
        p = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(p, out=p)

    def predict(self, X):
        """Predicted labels (n_samples,), taken from classes_."""
        X = self._net_input(X)
        with _thread_count(self.n_threads):
            return self.classes_.take(self.network_.predict(X))


def _encode(classes, y):
    """Indices (N,) int64 of labels y in the sorted array classes (ValueError for unknown ones)."""
    try:
        idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        unknown = classes[idx] != y
    except TypeError:  # labels not comparable with the classes (e.g. str and int)
        raise ValueError(f"y has labels of another type than classes_ {classes!r}") from None
    if np.any(unknown):
        raise ValueError(f"y has classes not in classes_ {classes!r}: "
                         f"{np.unique(np.asarray(y)[unknown])!r}")
    return idx.astype(np.int64)


class _EpochMonitor:
    """Network.fit callback: scikit-learn's per-epoch bookkeeping and stopping rule."""

    def __init__(self, est, n_train, batch_size, incremental):
        self.est, self.n_train, self.incremental = est, n_train, incremental
        self.n_batches = -(-n_train // batch_size)
        self.converged = False
        self.best_weights = None
        self.sq_start = self._sq_norm()

    def _sq_norm(self):
        return sum(float(np.dot(w.ravel(), w.ravel())) for w in self.est.coefs_)

    def __call__(self, epoch, logs, network):
        est = self.est
        # scikit-learn adds alpha/2 * ||W||^2 / batch_size to each batch's loss with that
        # batch's W; the mean of the start and end of epoch values stands in for them.
        sq_end = self._sq_norm()
        sq, self.sq_start = 0.5 * (self.sq_start + sq_end), sq_end
        loss = logs["train_loss"] + 0.5 * est.alpha * sq * self.n_batches / self.n_train
        est.loss_curve_.append(loss)
        est.loss_ = loss
        est.n_iter_ += 1
        est.t_ += self.n_train
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if est.early_stopping:
            score = float(logs["val_accuracy"])
            est.validation_scores_.append(score)
            est.validation_loss_curve_.append(float(logs["val_loss"]))
            if est.verbose:
                print(f"Validation score: {score:f}")
            improved = score >= est.best_validation_score_ + est.tol
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best_weights = [p.copy() for p in network.parameters()]
        else:
            improved = loss <= est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, loss)
        est._no_improvement_count = 0 if improved else est._no_improvement_count + 1

        opt = network.optimizer
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            opt.lr = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            if est.solver == "sgd" and est.learning_rate == "adaptive" and opt.lr > 1e-6:
                opt.lr = opt.lr / 5.0
                est._no_improvement_count = 0
                if est.verbose:
                    print(f"No improvement for {est.n_iter_no_change} epochs; lr = {opt.lr:f}")
            elif not self.incremental:
                self.converged = True
                if est.verbose:
                    what = "Validation score" if est.early_stopping else "Training loss"
                    print(f"{what} did not improve more than tol={est.tol:f} for "
                          f"{est.n_iter_no_change} consecutive epochs. Stopping.")
                return "stop"
        return None
