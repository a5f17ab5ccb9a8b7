"""Optimizers: ``step(params, grads)`` updates parameter arrays in place.

SGD follows PyTorch's convention (dampening 0): g = grad + wd*p; v = mu*v + g;
p -= lr * (g + mu*v if nesterov else v). Adam is Kingma & Ba with bias correction and L2 weight
decay added to the gradient (PyTorch's ``Adam``); AdamW decays the weights apart from the
gradient (Loshchilov & Hutter, PyTorch's ``AdamW``). The updates run in the compiled kernels
(:func:`fastnn.ops.sgd_update`, :func:`fastnn.ops.adam_update`, :func:`fastnn.ops.adamw_update`).

State, with PyTorch's names: one buffer per parameter of each of ``state_names``
(SGD: "momentum_buffer" when momentum != 0; Adam and AdamW: "exp_avg", "exp_avg_sq"), created as
zeros on the first step, and ``steps``, the update steps taken with that state (Adam's bias
correction uses it). ``state_for(params)`` hands the live buffers to a caller that updates them
itself (the compiled training engine); ``state_dict()`` / ``load_state_dict()`` copy them out
and back in.
"""
import contextlib
import math
import numbers

import numpy as np

from . import _validate, ops


def check_bool(value, name):
    """Return ``value`` as bool if it is True or False (numpy's included), else TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_real(value, name, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as float if it is a finite real in the given range, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an integer (or fraction) beyond float64: not finite
        v = math.inf
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{name}: expected a finite number in {interval}, got {value!r}")
    return v


def _check_steps(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


class Optimizer:
    """Base class: ``lr`` (validated, changed by schedules), ``steps``, step, state_for,
    state_dict, load_state_dict.

    Every optimizer also takes ``learning_rate=`` (Keras' name) for ``lr``; giving both is a
    TypeError.
    """

    def __init__(self, lr, learning_rate=None, default_lr=None):
        if learning_rate is not None:
            if lr != default_lr:
                raise TypeError("give lr or learning_rate (the same setting), not both")
            lr = learning_rate
        self._state = {}
        self.steps = 0
        self.lr = lr

    @property
    def lr(self):
        """Learning rate (float >= 0)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_real(value, "lr", low=0.0)

    @property
    def state_names(self):
        """Names of the per-parameter state buffers this optimizer keeps (a tuple)."""
        return ()

    def step(self, params, grads):
        """Update each array of ``params`` in place from the aligned ``grads``.

        params and grads: sequences (or iterables) of arrays, as many grads as params. Every
        pair and its state buffers pass the update ops' own checks before any array changes, so
        an error (ValueError or TypeError) leaves the params, the state and ``steps`` as they
        were. Raises ValueError when the state was made for other parameters (``reset()``
        first)."""
        params, grads = _aligned(params, grads)
        state = self._checked_state(params, grads)
        self._update(params, grads, state, self.steps + 1)
        self.steps += 1

    def _checked_state(self, params, grads):
        """state_for(params), with every param, grad and state buffer checked as the update ops
        check them (the ops' own checks), so that step() fails before it changes anything."""
        for i, (p, g) in enumerate(zip(params, grads)):
            with _pair(i):
                ops._updated_param_and_grad(p, g)
        state = self.state_for(params)
        for i, (p, g) in enumerate(zip(params, grads)):
            with _pair(i):
                for name, buffers in state.items():
                    _validate.out_buffer(buffers[i], name, p.shape, p.dtype,
                                         inputs=(("param", p), ("grad", g)))
        return state

    def _update(self, params, grads, state, step):
        raise NotImplementedError

    def state_for(self, params):
        """{name: list of live buffers aligned with ``params``} for each of ``state_names``.

        Missing buffers are created as zeros (and ``steps`` restarts at 0); the caller may
        update them in place. Raises ValueError when the state was made (or loaded) for other
        parameters: another count, shape or dtype (``reset()`` first to start afresh)."""
        params = list(params)  # read once: params may be a generator
        for name in self.state_names:
            _check_state(self._state.get(name), params, name)
        state = {}
        for name in self.state_names:
            buffers = self._state.get(name)
            if buffers is None:
                buffers = self._state[name] = [np.zeros_like(p) for p in params]
                self.steps = 0
            state[name] = buffers
        return state

    def reset(self):
        """Forget the state (buffers and step count); the next step starts fresh."""
        self._state = {}
        self.steps = 0

    def get_config(self):
        """Hyper-parameters as a JSON-able dict (the constructor's keyword arguments)."""
        raise NotImplementedError

    def state_dict(self):
        """{"type": class name, "hyperparameters": get_config(), "steps": int,
        "state": {name: [copy of each buffer] or None}}: JSON-able but for the arrays."""
        return {"type": type(self).__name__, "hyperparameters": self.get_config(),
                "steps": self.steps,
                "state": {name: None if self._state.get(name) is None
                          else [np.array(a, copy=True) for a in self._state[name]]
                          for name in self.state_names}}

    def load_state_dict(self, state):
        """Restore hyper-parameters, steps and buffers from ``state_dict()`` output (or the
        {"config", "scalars", "arrays"} form of files saved by earlier versions). ValueError if
        the type or contents do not fit; the buffers are checked against the parameters at the
        next step."""
        state = _upgrade(state)
        if state.get("type") != type(self).__name__:
            raise ValueError(f"state: expected a {type(self).__name__} state_dict, got {state.get('type')!r}")
        hyper = state.get("hyperparameters", {})
        if not isinstance(hyper, dict):
            raise ValueError("state['hyperparameters']: expected a dict")
        fresh = type(self)(**hyper)  # validates the hyper-parameters
        buffers = state.get("state") or {}
        if not isinstance(buffers, dict) or set(buffers) - set(fresh.state_names):
            raise ValueError(f"state['state']: expected buffers named {fresh.state_names}, got "
                             f"{sorted(buffers) if isinstance(buffers, dict) else buffers!r}")
        lists = {}
        for name, arrays in buffers.items():
            if arrays is None:
                continue
            if not isinstance(arrays, (list, tuple)) or not all(isinstance(a, np.ndarray) for a in arrays):
                raise ValueError(f"state['state'][{name!r}]: expected a list of arrays or None")
            lists[name] = [np.ascontiguousarray(a).copy() for a in arrays]
        if len({len(a) for a in lists.values()}) > 1:
            raise ValueError("state['state']: the buffer lists have different lengths")
        fresh._state = lists
        fresh.steps = _check_steps(state.get("steps", 0), "state['steps']")
        self.__dict__.update(fresh.__dict__)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


# The state names of files saved before the PyTorch names (and their step count's name).
_OLD_STATE_NAMES = {"velocity": "momentum_buffer", "m": "exp_avg", "v": "exp_avg_sq"}


def _upgrade(state):
    """A state_dict in the current form, from either form (ValueError for anything else)."""
    if not isinstance(state, dict):
        raise ValueError(f"state: expected an optimizer state_dict, got {type(state).__name__}")
    if "hyperparameters" in state or "config" not in state:
        return state
    arrays = state.get("arrays", {})
    if not isinstance(arrays, dict):
        raise ValueError("state['arrays']: expected a dict")
    lists = {}
    for key, array in arrays.items():
        prefix, _, index = str(key).rpartition(".")
        if prefix not in _OLD_STATE_NAMES or not index.isdigit():
            raise ValueError(f"optimizer state: unknown buffer {key!r}")
        lists.setdefault(_OLD_STATE_NAMES[prefix], {})[int(index)] = array
    state_lists = {}
    for name, numbered in lists.items():
        if sorted(numbered) != list(range(len(numbered))):
            raise ValueError(f"optimizer state: {name} buffers are not numbered 0..n-1")
        state_lists[name] = [numbered[i] for i in range(len(numbered))]
    scalars = state.get("scalars", {})
    if not isinstance(scalars, dict):
        raise ValueError("state['scalars']: expected a dict")
    return {"type": state.get("type"), "hyperparameters": state["config"],
            "steps": scalars.get("t", 0), "state": state_lists}


def _aligned(params, grads):
    """params and grads as lists of one length (ValueError naming both counts otherwise)."""
    lists = []
    for name, arrays in (("params", params), ("grads", grads)):
        if isinstance(arrays, np.ndarray):
            raise TypeError(f"{name}: expected a list of arrays, got one array (pass [array])")
        try:
            lists.append(list(arrays))
        except TypeError:
            raise TypeError(f"{name}: expected a list of arrays, got {type(arrays).__name__}") from None
    params, grads = lists
    if len(params) != len(grads):
        raise ValueError(f"params and grads: expected one gradient per parameter, got "
                         f"{len(params)} params and {len(grads)} grads")
    _check_params_apart(params)
    return params, grads


def _check_params_apart(params):
    """ValueError when two of ``params`` share memory (one array given twice would be stepped
    twice). Their byte ranges are compared, sorted; entries that are not ndarrays are left to
    the update ops' checks."""
    spans = sorted((a.__array_interface__["data"][0], a.__array_interface__["data"][0] + a.nbytes, i)
                   for i, a in enumerate(params) if isinstance(a, np.ndarray) and a.nbytes)
    for (_, end, i), (start, _, j) in zip(spans, spans[1:]):
        if start < end:
            i, j = sorted((i, j))
            raise ValueError(f"params: params[{i}] and params[{j}] share memory; each parameter "
                             "must be its own array")


@contextlib.contextmanager
def _pair(i):
    """Add which pair of step()'s arguments an error of the update ops' checks is about."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{exc} (params[{i}], grads[{i}])") from None


def _check_state(buffers, params, what):
    """Raise ValueError if ``buffers`` exists but does not match the params."""
    if buffers is None:
        return
    if len(buffers) != len(params):
        raise ValueError(f"optimizer {what} has {len(buffers)} buffers for {len(params)} parameters")
    for i, (b, p) in enumerate(zip(buffers, params)):
        if b.shape != p.shape or b.dtype != p.dtype:
            raise ValueError(f"optimizer {what}[{i}] is {b.dtype.name}{b.shape}, "
                             f"parameter {i} is {p.dtype.name}{p.shape}: the state was made for "
                             f"other parameters (call reset() to start afresh)")


MOMENTUM_CONVENTIONS = ("pytorch", "sklearn")


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    lr >= 0, momentum in [0, 1), weight_decay >= 0; nesterov needs momentum > 0.

    The step is PyTorch's (``torch.optim.SGD``): v = momentum*v + g, p -= lr*v (Nesterov:
    p -= lr*(g + momentum*v)), with g = grad + weight_decay*p. scikit-learn's MLP (after
    Sutskever et al., 2013, "On the importance of initialization and momentum in deep
    learning") keeps the rate inside the velocity instead: V = momentum*V - lr*g, p += V. The two
    agree while lr is constant (V = -lr*v). momentum_convention="sklearn" keeps them agreeing when
    lr changes (a schedule): each change from lr_old to lr_new rescales the velocity by
    lr_old / lr_new, so that -lr*v stays scikit-learn's V (not for a change to or from 0). A
    change whose rescaled velocity would overflow its dtype (lr from 1.0 to 1e-300, say) is a
    ValueError that leaves lr and the velocity as they were.
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, *,
                 learning_rate=None, momentum_convention="pytorch"):
        if momentum_convention not in MOMENTUM_CONVENTIONS:
            raise ValueError(f"momentum_convention: expected 'pytorch' or 'sklearn', got "
                             f"{momentum_convention!r}")
        self.momentum_convention = momentum_convention
        super().__init__(lr, learning_rate, default_lr=0.01)
        self.momentum = check_real(momentum, "momentum", 0.0, 1.0, high_open=True)
        self.weight_decay = check_real(weight_decay, "weight_decay", low=0.0)
        nesterov = check_bool(nesterov, "nesterov")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0, got momentum=0")
        self.nesterov = nesterov

    @property
    def state_names(self):
        return ("momentum_buffer",) if self.momentum != 0.0 else ()

    @property
    def lr(self):
        """Learning rate (float >= 0); see the class docstring for what a change does to the
        velocity with momentum_convention="sklearn"."""
        return self._lr

    @lr.setter
    def lr(self, value):
        old, new = getattr(self, "_lr", None), check_real(value, "lr", low=0.0)
        velocity = self._state.get("momentum_buffer")
        if self.momentum_convention == "sklearn" and velocity is not None and old and new \
                and new != old:
            rescaled = [_rescaled_velocity(v, old, new) for v in velocity]  # all, then copy
            for v, r in zip(velocity, rescaled):
                np.copyto(v, r)
        self._lr = new

    def _update(self, params, grads, state, step):
        velocity = state.get("momentum_buffer") or [None] * len(params)
        for p, g, v in zip(params, grads, velocity):
            ops.sgd_update(p, g, v, self._lr, self.momentum, self.weight_decay, self.nesterov)

    def get_config(self):
        config = {"lr": self._lr, "momentum": self.momentum, "nesterov": self.nesterov,
                  "weight_decay": self.weight_decay}
        if self.momentum_convention != "pytorch":  # the default is left out, as in older files
            config["momentum_convention"] = self.momentum_convention
        return config


def _rescaled_velocity(v, old, new):
    """v * (old / new) (SGD's velocity when lr changes from old to new with
    momentum_convention="sklearn"), computed in float64 and rounded once; ValueError when a
    finite entry would not stay finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        rescaled = (v.astype(np.float64) * (old / new)).astype(v.dtype)
    if (np.isfinite(v) & ~np.isfinite(rescaled)).any():
        raise ValueError(f"lr: a change from {old!r} to {new!r} rescales the momentum buffer "
                         f"(momentum_convention='sklearn') by {old / new:.3g}, beyond "
                         f"{v.dtype.name}'s range; reset() the optimizer first or use "
                         "momentum_convention='pytorch'")
    return rescaled


def _betas(betas, beta1, beta2):
    if betas is None:
        return beta1, beta2
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
    if (beta1, beta2) != (0.9, 0.999):
        raise TypeError("give betas or beta1/beta2 (the same settings), not both")
    return betas


class Adam(Optimizer):
    """Adam: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
    p -= lr * (m / (1-b1**t)) / (sqrt(v / (1-b2**t)) + eps), with g = grad + weight_decay*p
    and t = ``steps``.

    lr >= 0, beta1 and beta2 in [0, 1) (or ``betas=(beta1, beta2)``, PyTorch's form), eps > 0,
    weight_decay >= 0.
    """

    _decoupled = False

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, *,
                 learning_rate=None, betas=None):
        super().__init__(lr, learning_rate, default_lr=1e-3)
        beta1, beta2 = _betas(betas, beta1, beta2)
        self.beta1 = check_real(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = check_real(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = check_real(eps, "eps", low=0.0, low_open=True)
        self.weight_decay = check_real(weight_decay, "weight_decay", low=0.0)

    @property
    def state_names(self):
        return ("exp_avg", "exp_avg_sq")

    def _update(self, params, grads, state, step):
        update = ops.adamw_update if self._decoupled else ops.adam_update
        for p, g, m, v in zip(params, grads, state["exp_avg"], state["exp_avg_sq"]):
            update(p, g, m, v, step, lr=self._lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                   weight_decay=self.weight_decay)

    def get_config(self):
        return {"lr": self._lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled weight decay
    regularization"; PyTorch's ``AdamW``): p -= lr*weight_decay*p, then Adam's step with the
    gradient alone. Arguments as Adam's; weight_decay defaults to 0.01."""

    _decoupled = True

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, *,
                 learning_rate=None, betas=None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, learning_rate=learning_rate, betas=betas)


OPTIMIZER_TYPES = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def optimizer_from_state(state):
    """Build an optimizer from ``state_dict()`` output (either form, see load_state_dict)."""
    state = _upgrade(state)
    if state.get("type") not in OPTIMIZER_TYPES:
        raise ValueError(f"unknown optimizer type {state.get('type')!r}")
    opt = OPTIMIZER_TYPES[state["type"]](**state.get("hyperparameters", {}))
    opt.load_state_dict(state)
    return opt


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get(identifier):
    """An Optimizer from an instance (returned as is) or a name (``"sgd"``, ``"adam"``,
    ``"adamw"``, in any case; the class's default hyper-parameters). Raises ValueError for an
    unknown name and TypeError for anything else."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = OPTIMIZERS.get(identifier.strip().lower())
        if cls is None:
            raise ValueError(f"optimizer: expected one of {', '.join(map(repr, OPTIMIZERS))} or an "
                             f"Optimizer such as SGD(lr=0.1), got {identifier!r}")
        return cls()
    raise TypeError(f"optimizer: expected an Optimizer such as SGD(...) or a name such as 'adam', "
                    f"got {identifier!r}")
