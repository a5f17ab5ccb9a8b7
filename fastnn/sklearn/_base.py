"""What MLPClassifier and MLPRegressor share: parameters, the network, the fitted weights as
attributes, and the two solvers' entry points (stochastic here, lbfgs in _lbfgs.py)."""
import contextlib
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from .. import activations, layers
from ..layers import Linear, check_float_dtype
from .._threads import blas_threads_limited, get_num_threads, num_threads
from ..network import Network
from ..optim import SGD, Adam
from ._outputs import gradient_scale, network_loss, reported_scale

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _sk_validate_data(est, *args, ensure_all_finite=True, **kwargs):
        return est._validate_data(*args, force_all_finite=ensure_all_finite, **kwargs)

# activation name -> layer class (None: no layer, the Linear output is used as is)
_ACTIVATIONS = {"identity": None,
                **{e.sklearn or e.name: getattr(layers, e.layer) for e in activations.REGISTRY}}
_SOLVERS = ("lbfgs", "sgd", "adam")
_SCHEDULES = ("constant", "invscaling", "adaptive")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_SPARSE = ("csr", "csc", "coo")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and np.isfinite(v)


def _check(ok, name, expected, value):
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


@contextlib.contextmanager
def thread_count(n):
    """Run the block with the calling thread's fastnn work on ``n`` threads and BLAS on at most
    ``n`` (fastnn.num_threads: other threads keep their counts), then restore the previous one.

    n=None leaves the setting alone.
    """
    if n is None:
        yield
        return
    with num_threads(n):
        yield


class BaseMLP(BaseEstimator):
    """The parameters and fitted state common to fastnn's MLPClassifier and MLPRegressor.

    Subclasses give ``_targets`` (y -> network targets and the output layer), ``_score_rows``
    (the early-stopping score) and the prediction methods.
    """

    def __init__(self, hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                 learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose,
                 warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
                 beta_1, beta_2, epsilon, n_iter_no_change, max_fun, dtype, n_threads):
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
        """Validate the constructor arguments (at fit, as scikit-learn does); returns the hidden
        sizes and the forced dtype (None: the input's)."""
        _check(self.solver in _SOLVERS, "solver", "'lbfgs', 'sgd' or 'adam'", self.solver)
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
        _check(_is_int(self.verbose) or isinstance(self.verbose, (bool, np.bool_)), "verbose",
               "a bool or an int", self.verbose)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            v = getattr(self, name)
            _check(isinstance(v, (bool, np.bool_)), name, "True or False", v)
        dtype = None
        if self.dtype is not None:
            try:
                dtype = check_float_dtype(self.dtype)
            except TypeError as exc:
                raise ValueError(str(exc)) from None
        return self._hidden_sizes(), dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- data ---------------------------------------------------------------------------------

    # float32, float64 and uint8 inputs are used as they are: the network converts each batch
    # as it gathers it, which saves a copy of X (slow for large X). Others become ``dtype``
    # (float64 when the dtype follows the input). NaN/Inf are left to the network, whose one
    # compiled pass also finds X's range.
    @staticmethod
    def _input_dtypes(dtype):
        dtype = np.dtype(np.float64) if dtype is None else dtype
        return [dtype] + [d for d in (np.float32, np.float64, np.uint8) if d != dtype]

    # Sparse X (CSR, CSC, COO) stays sparse: the network gathers the rows of each batch into a
    # dense buffer (fastnn._sparse) and never densifies the whole matrix.
    def _validate_X(self, X, reset, dtype):
        return _sk_validate_data(self, X, reset=reset, dtype=self._input_dtypes(dtype),
                                 ensure_all_finite=False, order="C", accept_sparse=_SPARSE)

    def _validate_Xy(self, X, y, reset, dtype, **kwargs):
        return _sk_validate_data(self, X, y, reset=reset, dtype=self._input_dtypes(dtype),
                                 ensure_all_finite=False, order="C", multi_output=True,
                                 accept_sparse=_SPARSE, **kwargs)

    # -- model --------------------------------------------------------------------------------

    def _build(self, hidden, dtype, n_features, n_outputs, kind, rng):
        """A new Network with scikit-learn's initial weight distribution (rng: RandomState)."""
        units = [n_features] + hidden + [n_outputs]
        self._arch = (tuple(units), self.activation, dtype.name, kind)
        # Drawn in scikit-learn's order (W then b, layer by layer), so a given random_state
        # starts from scikit-learn's own initial weights.
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
        self.n_outputs_ = n_outputs
        self.out_activation_ = kind
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self._optimizer = None
        self._shuffle_rng = np.random.default_rng(rng.randint(2 ** 31))
        if self.early_stopping and self.solver != "lbfgs":
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.validation_loss_curve_ = []
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.validation_loss_curve_ = None
            self.best_loss_ = np.inf

    def _make_network(self, seed):
        """Build network_ for self._arch (coefs_ / intercepts_ are its weights)."""
        units, activation, dtype, kind = self._arch
        act = _ACTIVATIONS[activation]
        layers = []
        for i in range(len(units) - 1):
            layers.append(Linear(units[i], units[i + 1], init="uniform", seed=0, dtype=dtype))
            if act is not None and i < len(units) - 2:
                layers.append(act())
        self.network_ = Network(layers, loss=network_loss(kind), dtype=dtype, seed=seed)
        # No warning about inputs outside the training range: scikit-learn's estimators give
        # none, and cross-validation folds meet such inputs as a matter of course.
        self.network_.track_input_range = False

    @property
    def coefs_(self):
        """The network's weight matrices, (n_in, n_out) each in the network dtype (a list of its
        live arrays: changing one in place changes the model). Assigning a list of arrays of the
        same shapes, or one array to an item (``coefs_[i] = W``), copies them into the network
        (converted to its dtype); other lengths, shapes or non-real dtypes are refused
        (ValueError / TypeError), and so is changing the list's length."""
        return _LayerArrays("coefs_", [layer.W for layer in self._linears()])

    @coefs_.setter
    def coefs_(self, values):
        _assign(values, [layer.W for layer in self._linears()], "coefs_")

    @property
    def intercepts_(self):
        """The network's bias vectors, (n_out,) each; assignable as ``coefs_`` is."""
        return _LayerArrays("intercepts_", [layer.b for layer in self._linears()])

    @intercepts_.setter
    def intercepts_(self, values):
        _assign(values, [layer.b for layer in self._linears()], "intercepts_")

    def _linears(self):
        network = self.__dict__.get("network_")
        if network is None:
            raise AttributeError("coefs_ and intercepts_ exist once the estimator is fitted")
        return [layer for layer in network.layers if isinstance(layer, Linear)]

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

    def _check_fitted_state(self):
        check_is_fitted(self, "network_")

    # -- training -----------------------------------------------------------------------------

    def _sample_weight(self, sample_weight, X, y):
        """(N,) float64 weights >= 0 (ValueError when all are zero), or None; the classifier
        multiplies in class_weight."""
        if sample_weight is None:
            return None
        return _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)

    def _fit(self, X, y, sample_weight=None, incremental=False, classes=None):
        hidden, forced = self._check_params()
        fitted = self.__dict__.get("network_") is not None
        keep = fitted and (incremental or self.warm_start)
        dtype = forced if forced is not None else (self.network_.dtype if keep else None)
        X, y = self._validate_Xy(X, y, reset=not keep, dtype=dtype)
        if hasattr(y, "toarray"):  # a sparse target matrix (n_samples x outputs) trains dense
            y = y.toarray()
        if dtype is None:
            dtype = X.dtype if X.dtype in _FLOATS else np.dtype(np.float64)
        if keep and self.network_.dtype != dtype:
            raise ValueError(f"dtype={self.dtype!r} differs from the fitted network's "
                             f"{self.network_.dtype.name}; refit without warm_start")
        sw = self._sample_weight(sample_weight, X, y)
        targets, kind, n_outputs = self._targets(y, keep, classes, dtype, incremental)
        if keep:
            if (kind, n_outputs) != (self.out_activation_, self.n_outputs_):
                raise ValueError(f"y gives {n_outputs} output(s) ({kind}) where the fitted "
                                 f"network has {self.n_outputs_} ({self.out_activation_}); "
                                 "refit without warm_start")
        else:
            rs = check_random_state(self.random_state)
            self._build(hidden, dtype, X.shape[1], n_outputs, kind, rs)
        if self.solver == "lbfgs":
            from ._lbfgs import fit_lbfgs

            # The solver's BLAS products run on at most fastnn's thread count (the default
            # from FASTNN_NUM_THREADS or a cgroup quota included).
            with thread_count(self.n_threads), blas_threads_limited(get_num_threads()):
                fit_lbfgs(self, X, targets, sw)
        else:
            self._fit_stochastic(X, y, targets, sw, incremental)
        return self

    def _new_optimizer(self, batch_size, decay):
        """scikit-learn's optimizer for the network's gradient, which is gradient_scale times
        scikit-learn's: SGD with lr / scale and Adam with eps * scale take the same steps."""
        scale = gradient_scale(self.out_activation_, self.n_outputs_)
        if self.solver == "sgd":
            return SGD(lr=self.learning_rate_init / scale, momentum=self.momentum,
                       nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
                       momentum_convention="sklearn", weight_decay=decay * scale)
        return Adam(lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2,
                    eps=self.epsilon * scale, weight_decay=decay * scale)

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n} training "
                          "samples; it is clipped to that number", UserWarning)
        return min(self.batch_size, n)

    def _fit_stochastic(self, X, y, targets, sw, incremental):
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if self.early_stopping and self.validation_scores_ is None:  # switched on since
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.validation_loss_curve_ = []
            self.best_loss_ = None
        if not self.early_stopping and self.best_loss_ is None:  # switched off since
            self.best_loss_ = np.inf
        val = None
        if self.early_stopping:
            stratify = self._stratify(y)
            parts = [a for a in (X, y, targets, sw) if a is not None]
            split = train_test_split(*parts, test_size=self.validation_fraction,
                                     stratify=stratify,
                                     random_state=int(self._shuffle_rng.integers(2 ** 31)))
            X, X_val, y, y_val, targets, t_val = split[:6]
            sw, sw_val = (split[6], split[7]) if sw is not None else (None, None)
            if X_val.shape[0] < 2:
                raise ValueError("the validation set is too small: raise validation_fraction "
                                 "or give more samples")
            if sw_val is not None and not sw_val.any():
                raise ValueError("sample_weight: every row drawn for the validation split "
                                 f"(validation_fraction={self.validation_fraction}) has weight "
                                 "zero; use another random_state or more rows of weight > 0")
            val = (X_val, y_val, t_val, sw_val)
        batch = self._batch_size(X.shape[0])
        # scikit-learn's L2 gradient is alpha * W / (the batch's weight sum): the mean batch's.
        mean_w = 1.0 if sw is None else float(sw.mean())
        if mean_w == 0:
            raise ValueError("sample_weight: every row left for training after the validation "
                             "split has weight zero")
        decay = self.alpha / (batch * mean_w)
        if not incremental or self._optimizer is None:
            self._optimizer = self._new_optimizer(batch, decay)
        else:
            self._optimizer.weight_decay = decay * gradient_scale(self.out_activation_,
                                                                  self.n_outputs_)

        self.n_iter_ = 0
        monitor = _EpochMonitor(self, X.shape[0], batch, sw, val, incremental)
        kwargs = {} if sw is None else {"sample_weight": sw.astype(self.network_.dtype)}
        with thread_count(self.n_threads):
            self.network_.fit(X, targets, epochs=1 if incremental else self.max_iter,
                              batch_size=batch, optimizer=self._optimizer, shuffle=self.shuffle,
                              seed=int(self._shuffle_rng.integers(2 ** 63)),
                              callbacks=[monitor], progress=bool(self.verbose), **kwargs)
        if self.early_stopping and monitor.best_weights is not None:
            for dst, src in zip(self.network_.parameters(), monitor.best_weights):
                np.copyto(dst, src)
        if not incremental and not monitor.converged and self.n_iter_ == self.max_iter:
            warnings.warn(f"{type(self).__name__}: max_iter={self.max_iter} epochs reached and "
                          "the optimization has not converged yet.", ConvergenceWarning)

    def _stratify(self, y):
        return None

    def _validation_loss(self, X, targets, sw):
        loss = self.network_.evaluate(X, targets, sample_weight=sw)[0]
        return loss * reported_scale(self.out_activation_)

    def _penalty(self):
        """0.5 * alpha * sum of the squared coefficients (scikit-learn's L2 term, before it is
        divided by the weight sum)."""
        return 0.5 * self.alpha * sum(float(np.dot(w.ravel(), w.ravel())) for w in self.coefs_)

    def _learning_rate(self):
        """scikit-learn's current learning rate of the stochastic solver."""
        scale = gradient_scale(self.out_activation_, self.n_outputs_)
        return self._optimizer.lr * (scale if self.solver == "sgd" else 1.0)

    def _set_learning_rate(self, lr):
        scale = gradient_scale(self.out_activation_, self.n_outputs_)
        self._optimizer.lr = lr / (scale if self.solver == "sgd" else 1.0)


class _EpochMonitor:
    """Network.fit callback: scikit-learn's per-epoch bookkeeping and stopping rule."""

    def __init__(self, est, n_train, batch_size, sw, val, incremental):
        self.est, self.val, self.incremental, self.n_train = est, val, incremental, n_train
        n_batches = -(-n_train // batch_size)
        # scikit-learn adds alpha/2 * ||W||^2 / (the batch's weight sum) to each batch's loss
        self.penalty_per_sq = n_batches / (n_train if sw is None else float(sw.sum()))
        self.loss_scale = reported_scale(est.out_activation_)
        self.converged = False
        self.best_weights = None
        self.sq_start = est._penalty()

    def __call__(self, epoch, logs, network):
        est = self.est
        # The penalty of each batch, with that batch's W, is stood in for by the mean of the
        # start- and end-of-epoch values.
        sq_end = est._penalty()
        sq, self.sq_start = 0.5 * (self.sq_start + sq_end), sq_end
        loss = logs["train_loss"] * self.loss_scale + sq * self.penalty_per_sq
        est.loss_curve_.append(loss)
        est.loss_ = loss
        est.n_iter_ += 1
        est.t_ += self.n_train
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if est.early_stopping:
            X_val, y_val, t_val, sw_val = self.val
            score = float(est._score_rows(X_val, y_val, sw_val))
            est.validation_scores_.append(score)
            est.validation_loss_curve_.append(est._validation_loss(X_val, t_val, sw_val))
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

        if est.solver == "sgd" and est.learning_rate == "invscaling":
            est._set_learning_rate(est.learning_rate_init / (est.t_ + 1) ** est.power_t)
        if est._no_improvement_count > est.n_iter_no_change:
            lr = est._learning_rate()
            if est.solver == "sgd" and est.learning_rate == "adaptive" and lr > 1e-6:
                est._set_learning_rate(lr / 5.0)
                est._no_improvement_count = 0
                if est.verbose:
                    print(f"No improvement for {est.n_iter_no_change} epochs; "
                          f"lr = {lr / 5.0:f}")
            elif not self.incremental:
                self.converged = True
                if est.verbose:
                    what = "Validation score" if est.early_stopping else "Training loss"
                    print(f"{what} did not improve more than tol={est.tol:f} for "
                          f"{est.n_iter_no_change} consecutive epochs. Stopping.")
                return "stop"
        return None


def _checked_array(value, target, where):
    """``value`` as an array that may be copied into ``target`` (real, finite, same shape)."""
    a = np.asarray(value)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{where}: expected real numbers, got dtype {a.dtype}")
    if a.shape != target.shape:
        raise ValueError(f"{where}: expected shape {target.shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{where}: contains NaN or infinity")
    return a


def _assign(values, targets, name):
    """Copy the arrays ``values`` into the network's ``targets``, all checked before any copy."""
    if not isinstance(values, (list, tuple)) or len(values) != len(targets):
        raise ValueError(f"{name}: expected a list of {len(targets)} arrays, got {values!r:.80}")
    arrays = [_checked_array(v, t, f"{name}[{i}]") for i, (v, t) in enumerate(zip(values, targets))]
    for a, target in zip(arrays, targets):
        target[...] = a


class _LayerArrays(list):
    """coefs_ / intercepts_: the network's live arrays, one per layer. An item assigned is
    copied into the network (``est.coefs_[1] = W``, as scikit-learn users write it); the list's
    length is the network's depth and cannot change."""

    def __init__(self, name, arrays):
        super().__init__(arrays)
        self._name = name

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            targets = list.__getitem__(self, index)
            _assign(value if isinstance(value, (list, tuple)) else list(value), targets,
                    f"{self._name}[{index.start}:{index.stop}]")
            return
        target = list.__getitem__(self, index)
        target[...] = _checked_array(value, target, f"{self._name}[{index}]")

    def _fixed_length(self, *args, **kwargs):
        raise TypeError(f"{self._name} has one array per layer: assign arrays of the same shapes "
                        "to its items, or a list of them to the attribute")

    append = extend = insert = pop = remove = clear = sort = reverse = _fixed_length
    __delitem__ = __iadd__ = __imul__ = _fixed_length

    def __reduce__(self):  # copies and pickles are plain lists (of copies, for deepcopy)
        return list, (list(self),)
