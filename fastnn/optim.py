"""Optimizers: ``step(params, grads)`` updates parameter arrays in place.

SGD follows PyTorch's convention (dampening 0): g = grad + wd*p; v = mu*v + g;
p -= lr * (g + mu*v if nesterov else v). Adam is Kingma & Ba with bias correction and L2 weight
decay added to the gradient (PyTorch's ``Adam``, not AdamW). State (velocity, moments) is
created on the first step, one buffer per parameter, and saved by ``state_dict()``.
"""
import math
import numbers

import numpy as np

from . import ops


def check_real(value, name, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as float if it is a finite real in the given range, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    v = float(value)
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


class Optimizer:
    """Base class: ``lr`` (validated, changed by schedules), step, state_dict, load_state_dict.

    Every optimizer also takes ``learning_rate=`` (Keras' name) for ``lr``; giving both is a
    TypeError.
    """

    def __init__(self, lr, learning_rate=None, default_lr=None):
        if learning_rate is not None:
            if lr != default_lr:
                raise TypeError("give lr or learning_rate (the same setting), not both")
            lr = learning_rate
        self.lr = lr

    @property
    def lr(self):
        """Learning rate (float >= 0)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_real(value, "lr", low=0.0)

    def step(self, params, grads):
        """Update each array of ``params`` in place from the aligned ``grads``."""
        raise NotImplementedError

    def reset(self):
        """Forget the state (velocity/moments); the next step starts fresh."""
        raise NotImplementedError

    def get_config(self):
        """Hyper-parameters as a JSON-able dict (the constructor's keyword arguments)."""
        raise NotImplementedError

    def _scalars(self):
        return {}

    def _arrays(self):
        return {}

    def _set_state(self, scalars, arrays):
        raise NotImplementedError

    def state_dict(self):
        """{"type", "config", "scalars" (JSON-able), "arrays" (name -> copy of each buffer)}."""
        return {"type": type(self).__name__, "config": self.get_config(),
                "scalars": self._scalars(),
                "arrays": {k: np.array(v, copy=True) for k, v in self._arrays().items()}}

    def load_state_dict(self, state):
        """Restore hyper-parameters and buffers from ``state_dict()`` output (ValueError if the
        type or contents do not fit; checked against the parameters at the next step)."""
        if not isinstance(state, dict) or state.get("type") != type(self).__name__:
            got = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state: expected a {type(self).__name__} state_dict, got {got!r}")
        fresh = type(self)(**state.get("config", {}))  # validates the hyper-parameters
        fresh._set_state(state.get("scalars", {}), state.get("arrays", {}))
        self.__dict__.update(fresh.__dict__)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _check_state(buffers, params, what):
    """True when ``buffers`` (list or None) matches the params; raise if it exists but differs."""
    if buffers is None:
        return False
    if len(buffers) != len(params):
        raise ValueError(f"optimizer {what} has {len(buffers)} buffers for {len(params)} parameters")
    for i, (b, p) in enumerate(zip(buffers, params)):
        if b.shape != p.shape or b.dtype != p.dtype:
            raise ValueError(f"optimizer {what}[{i}] is {b.dtype.name}{b.shape}, "
                             f"parameter {i} is {p.dtype.name}{p.shape}")
    return True


def _arrays_to_list(arrays, prefix):
    names = sorted((k for k in arrays if k.startswith(prefix + ".")),
                   key=lambda k: int(k.rsplit(".", 1)[1]))
    if [k.rsplit(".", 1)[1] for k in names] != [str(i) for i in range(len(names))]:
        raise ValueError(f"optimizer state: {prefix} buffers are not numbered 0..n-1")
    return [np.ascontiguousarray(arrays[k]).copy() for k in names] or None


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
    lr_old / lr_new, so that -lr*v stays scikit-learn's V (not for a change to or from 0).
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, *,
                 learning_rate=None, momentum_convention="pytorch"):
        if momentum_convention not in MOMENTUM_CONVENTIONS:
            raise ValueError(f"momentum_convention: expected 'pytorch' or 'sklearn', got "
                             f"{momentum_convention!r}")
        self.momentum_convention = momentum_convention
        self._velocity = None
        super().__init__(lr, learning_rate, default_lr=0.01)
        self.momentum = check_real(momentum, "momentum", 0.0, 1.0, high_open=True)
        self.weight_decay = check_real(weight_decay, "weight_decay", low=0.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0, got momentum=0")
        self.nesterov = bool(nesterov)

    @property
    def lr(self):
        """Learning rate (float >= 0); see the class docstring for what a change does to the
        velocity with momentum_convention="sklearn"."""
        return self._lr

    @lr.setter
    def lr(self, value):
        old, new = getattr(self, "_lr", None), check_real(value, "lr", low=0.0)
        if self.momentum_convention == "sklearn" and self._velocity is not None and old and new \
                and new != old:
            for v in self._velocity:
                v *= old / new
        self._lr = new

    def step(self, params, grads):
        if self.momentum == 0.0:
            for p, g in zip(params, grads):
                ops.sgd_update(p, g, None, self._lr, 0.0, self.weight_decay, False)
            return
        if not _check_state(self._velocity, params, "velocity"):
            self._velocity = [np.zeros_like(p) for p in params]
        for p, g, v in zip(params, grads, self._velocity):
            ops.sgd_update(p, g, v, self._lr, self.momentum, self.weight_decay, self.nesterov)

    def reset(self):
        self._velocity = None

    def get_config(self):
        config = {"lr": self._lr, "momentum": self.momentum, "nesterov": self.nesterov,
                  "weight_decay": self.weight_decay}
        if self.momentum_convention != "pytorch":  # the default is left out, as in older files
            config["momentum_convention"] = self.momentum_convention
        return config

    def _arrays(self):
        return {f"velocity.{i}": v for i, v in enumerate(self._velocity or [])}

    def _set_state(self, scalars, arrays):
        self._velocity = _arrays_to_list(arrays, "velocity")


class Adam(Optimizer):
    """Adam: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
    p -= lr * (m / (1-b1**t)) / (sqrt(v / (1-b2**t)) + eps), with g = grad + weight_decay*p.

    lr >= 0, beta1 and beta2 in [0, 1), eps > 0, weight_decay >= 0.
    """

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, *,
                 learning_rate=None):
        super().__init__(lr, learning_rate, default_lr=1e-3)
        self.beta1 = check_real(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = check_real(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = check_real(eps, "eps", low=0.0, low_open=True)
        self.weight_decay = check_real(weight_decay, "weight_decay", low=0.0)
        self.t = 0
        self._m = self._v = None
        self._scratch = None

    def step(self, params, grads):
        if not (_check_state(self._m, params, "m") and _check_state(self._v, params, "v")):
            self._m = [np.zeros_like(p) for p in params]
            self._v = [np.zeros_like(p) for p in params]
            self.t = 0
        if self._scratch is None or not _check_state_quiet(self._scratch, params):
            self._scratch = [(np.empty_like(p), np.empty_like(p)) for p in params]
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self._lr / (1.0 - b1 ** self.t)
        inv_sqrt_bc2 = 1.0 / math.sqrt(1.0 - b2 ** self.t)
        for p, g, m, v, (s, tmp) in zip(params, grads, self._m, self._v, self._scratch):
            if self.weight_decay:
                np.multiply(p, self.weight_decay, out=s)
                s += g
                g = s
            m *= b1
            np.multiply(g, 1.0 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp *= inv_sqrt_bc2
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp

    def reset(self):
        self._m = self._v = None
        self.t = 0

    def get_config(self):
        return {"lr": self._lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _scalars(self):
        return {"t": self.t}

    def _arrays(self):
        out = {f"m.{i}": a for i, a in enumerate(self._m or [])}
        out.update({f"v.{i}": a for i, a in enumerate(self._v or [])})
        return out

    def _set_state(self, scalars, arrays):
        t = scalars.get("t", 0)
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"optimizer state: t must be a non-negative integer, got {t!r}")
        self.t = t
        self._m = _arrays_to_list(arrays, "m")
        self._v = _arrays_to_list(arrays, "v")
        if (self._m is None) != (self._v is None) or (self._m and len(self._m) != len(self._v)):
            raise ValueError("optimizer state: m and v buffers do not match")


def _check_state_quiet(pairs, params):
    return len(pairs) == len(params) and all(
        s.shape == p.shape and s.dtype == p.dtype for (s, _), p in zip(pairs, params))


OPTIMIZER_TYPES = {"SGD": SGD, "Adam": Adam}


def optimizer_from_state(state):
    """Build an optimizer from ``state_dict()`` output."""
    if not isinstance(state, dict) or state.get("type") not in OPTIMIZER_TYPES:
        got = state.get("type") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"unknown optimizer type {got!r}")
    opt = OPTIMIZER_TYPES[state["type"]](**state.get("config", {}))
    opt.load_state_dict(state)
    return opt


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get(identifier):
    """An Optimizer from an instance (returned as is) or a name (``"sgd"``, ``"adam"``, in any
    case; the class's default hyper-parameters). Raises ValueError for an unknown name and
    TypeError for anything else."""
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
