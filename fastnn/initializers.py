"""Weight initialisers for Linear layers: ``init_weights(name, fan_in, fan_out, rng, dtype)``."""
import math

import numpy as np

INITIALIZERS = ("lecun", "he", "xavier", "uniform")


def default_init(activation):
    """The initialiser used when a Linear has ``init=None``: the activation's registry default
    ("he" before the ReLU family, else "lecun"); "lecun" without an activation."""
    from .activations import get
    return "lecun" if activation is None else get(activation).init


def check_init(name, argname="init"):
    """Return ``name`` if it is a known initialiser, else raise ValueError listing the choices."""
    if name not in INITIALIZERS:
        raise ValueError(f"{argname}: expected one of {', '.join(map(repr, INITIALIZERS))}, got {name!r}")
    return name


def init_weights(name, fan_in, fan_out, rng, dtype):
    """Draw a (fan_in, fan_out) weight matrix of ``dtype``.

    lecun: normal, std 1/sqrt(fan_in); he: normal, std sqrt(2/fan_in);
    xavier: uniform on ±sqrt(6/(fan_in+fan_out)); uniform: uniform on ±1/sqrt(fan_in).
    Values are drawn in float64 and then cast, so a float32 and a float64 layer built from the same
    seed start from the same (rounded) weights. ``rng`` is a numpy Generator.
    """
    check_init(name)
    shape = (int(fan_in), int(fan_out))
    if name == "lecun":
        w = rng.standard_normal(shape) * (1.0 / math.sqrt(fan_in))
    elif name == "he":
        w = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    elif name == "xavier":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, shape)
    else:
        limit = 1.0 / math.sqrt(fan_in)
        w = rng.uniform(-limit, limit, shape)
    return np.ascontiguousarray(w, dtype=dtype)
