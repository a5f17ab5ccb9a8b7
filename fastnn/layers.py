"""Layers: Linear holds the parameters; activations and Dropout are markers the Network fuses.

A Network compiles its layer list into fused blocks (see ``fastnn.network``); the layers
themselves only hold configuration and parameters, so they stay tiny.
"""
import numbers

import numpy as np

from . import activations, ops
from .initializers import check_init, init_weights

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_dtype(dtype, argname="dtype"):
    """Return np.dtype(dtype) if it is float32 or float64, else raise (TypeError/ValueError)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{argname}: expected 'float32' or 'float64', got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{argname}: expected 'float32' or 'float64', got {dt.name}")
    return dt


def check_seed(seed, argname):
    """None or a non-negative integer (what np.random.default_rng takes as a plain seed)."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{argname}: expected None or a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{argname}: expected None or a non-negative integer, got {seed}")
    return int(seed)


def check_positive_int(value, argname):
    """Return ``value`` as an int if it is an integer >= 1 (bool refused), else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argname}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{argname}: expected a positive integer, got {value}")
    return int(value)


class Layer:
    """Base class. ``parameters()`` lists the layer's arrays (live, updated in place)."""

    def parameters(self):
        """List of parameter arrays (empty for layers without parameters)."""
        return []

    def get_config(self):
        """JSON-able constructor arguments (used by save/load)."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Linear(Layer):
    """Fully connected layer: z = x @ W + b, W (in_features, out_features), b (out_features,).

    init: "lecun", "he", "xavier", "uniform" or None (the Network then picks "he" before a ReLU,
    else "lecun"). seed: int, numpy Generator or None. Weights are drawn at construction; a layer
    built with ``seed=None`` or ``init=None`` is redrawn once when it joins a Network, from the
    Network's seeded RNG (or its own seed) with the resolved initialiser and the Network's dtype.
    Bias starts at zero. Change weights in place (``layer.W[...] = ...``).
    """

    def __init__(self, in_features, out_features, init=None, dtype="float32", seed=None):
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.init = None if init is None else check_init(init)
        dtype = check_float_dtype(dtype)
        self.seed = seed if isinstance(seed, np.random.Generator) else check_seed(seed, "seed")
        self._resolved_init = init or "lecun"
        self.W = init_weights(self._resolved_init, self.in_features, self.out_features,
                              np.random.default_rng(seed), dtype)
        self.b = np.zeros(self.out_features, dtype)
        self._pending_init = seed is None or init is None

    @property
    def dtype(self):
        """dtype of the parameters (float32 or float64)."""
        return self.W.dtype

    @property
    def init_name(self):
        """The initialiser the weights were drawn with."""
        return self._resolved_init

    def reset_parameters(self, rng=None, init=None, dtype=None):
        """Redraw W with ``init`` (default: the current one) from ``rng``; zero b."""
        self._resolved_init = check_init(init) if init is not None else self._resolved_init
        dtype = self.dtype if dtype is None else check_float_dtype(dtype)
        rng = np.random.default_rng(self.seed if rng is None else rng)
        self.W = init_weights(self._resolved_init, self.in_features, self.out_features, rng, dtype)
        self.b = np.zeros(self.out_features, dtype)
        self._pending_init = False

    def parameters(self):
        return [self.W, self.b]

    def forward(self, x, activation=None, out=None):
        """(B, in) -> (B, out) of the parameters' dtype, through ops.linear_forward."""
        return ops.linear_forward(x, self.W, self.b, activation=activation, out=out)

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "init": self._resolved_init}

    def __repr__(self):
        return f"Linear({self.in_features} -> {self.out_features}, init={self._resolved_init!r})"


class Activation(Layer):
    """Elementwise activation, one class per entry of :mod:`fastnn.activations` (``entry``):
    Sigmoid, ReLU, Tanh, ScaledTanh, LeakyReLU(negative_slope=0.01), GELU. ``name`` is the ops
    kernel (and the fused ``activation=`` value); ``param`` the parameter's value (0.0 when the
    activation has none)."""

    entry = None
    name = None

    def __init__(self, *args, **kwargs):
        if self.entry is None:
            raise TypeError(f"{type(self).__name__}: an Activation needs an entry of "
                            "fastnn.activations' registry; subclass one of fastnn's activation "
                            "layers instead")
        bound = self.__signature__.bind(*args, **kwargs)
        self.param = self.entry.param_value(bound.arguments)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        from inspect import Parameter, Signature
        params = []
        if cls.entry is not None and cls.entry.param is not None:
            params.append(Parameter(cls.entry.param, Parameter.POSITIONAL_OR_KEYWORD,
                                    default=cls.entry.default))
        cls.__signature__ = Signature(params)

    def _param_kwargs(self):
        return {} if self.entry.param is None else {self.entry.param: self.param}

    def get_config(self):
        return self._param_kwargs()

    def forward(self, x, out=None):
        """y = f(x), any shape, float32/float64."""
        return getattr(ops, self.name)(x, out=out, **self._param_kwargs())

    def backward(self, y, grad, out=None, x=None):
        """dL/dx from dL/dy ``grad`` and the saved output y, or, when ``entry.needs_input``
        (GELU), the saved input x (required then; y is not read)."""
        saved = y
        if self.entry.needs_input:
            if x is None:
                raise ValueError(f"x: {type(self).__name__}.backward needs the saved input x")
            saved = x
        return getattr(ops, self.entry.backward_name)(saved, grad, out=out, **self._param_kwargs())


def _activation_class(entry):
    attrs = {"entry": entry, "name": entry.name, "__module__": __name__,
             "__doc__": f"y = {entry.doc}\n\nThe layer of ``fastnn.ops.{entry.name}``."}
    if entry.param is not None:  # the parameter under its own name too (layer.negative_slope)
        attrs[entry.param] = property(lambda self: self.param)
    return type(entry.layer, (Activation,), attrs)


ACTIVATION_LAYERS = tuple(_activation_class(e) for e in activations.REGISTRY)
globals().update({cls.__name__: cls for cls in ACTIVATION_LAYERS})


class Dropout(Layer):
    """Inverted dropout: in training each unit is zeroed with probability p and the survivors
    scaled by 1/(1-p); identity in evaluation. p in [0, 1)."""

    def __init__(self, p=0.5):
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
            raise TypeError(f"p: expected a number in [0, 1), got {p!r}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p: expected a number in [0, 1), got {p!r}")
        self.p = float(p)

    def get_config(self):
        return {"p": self.p}


LAYER_TYPES = {cls.__name__: cls for cls in (Linear, *ACTIVATION_LAYERS, Dropout)}


def layer_from_config(type_name, config):
    """Rebuild a layer from ``type(layer).__name__`` and ``layer.get_config()``."""
    if type_name not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {type_name!r}")
    return LAYER_TYPES[type_name](**config)
