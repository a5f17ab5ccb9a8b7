"""The activations of fastnn: one entry each, from which everything else is derived.

An entry holds what every consumer needs: the name (``ops.<name>``, ``Linear`` blocks'
``activation=``, ``fastnn train --activation``), the integer code the compiled kernels dispatch
on (src_c/kernels.h), its parameter (name and default) if it has one, the NumPy twin of its
forward and backward pass, whether the derivative needs the input (otherwise it is computed
from the output), the default initialisation of the Linear before it, the layer class name,
scikit-learn's name for it where there is one, and its ONNX nodes. ``fastnn.ops``,
``fastnn.reference``, ``fastnn.layers``, the fused plan, the native training loop, the
inference plan, ONNX export, the CLI, the scikit-learn estimator and the tests read this table.

Adding an activation: one entry below with the next free code; in C, that code in the enum of
src_c/kernels.h (and FNN_ACT_COUNT), its pair of cases in src_c/kernels_impl.h (act_forward and
act_backward) and, when the derivative needs the input, fnn_act_needs_input in src_c/kernels.c;
and its row in tests/test_registry.py.
"""
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional


class _LazyNumpy:
    """numpy, imported on first use: ``fastnn.cli`` reads the names here before any heavy import."""

    def __getattr__(self, attr):
        import numpy
        globals()["np"] = numpy
        return getattr(numpy, attr)


np = _LazyNumpy()

SCALED_TANH_A = 1.7159
SCALED_TANH_B = 2.0 / 3.0
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class ActivationEntry:
    """One activation. The twins take ``param`` (the parameter's value, 0.0 when there is none)
    and write into ``out`` (which may be the input itself); ``backward_twin(saved, grad, out,
    param)`` gets the input x when ``needs_input`` and the output y otherwise."""

    name: str
    code: int
    layer: str
    doc: str
    backward_doc: str
    forward_twin: Callable
    backward_twin: Callable
    needs_input: bool = False
    init: str = "lecun"
    param: Optional[str] = None
    default: Optional[float] = None
    sklearn: Optional[str] = None
    onnx: Optional[Callable] = None  # (graph builder, x, param, dtype) -> output name

    @property
    def backward_name(self):
        return self.name + "_backward"

    @property
    def saved(self):
        """The name of the array the backward pass reads: "x" (the input) or "y" (the output)."""
        return "x" if self.needs_input else "y"

    def check_param(self, value):
        """``value`` as a float when it is a valid parameter, else TypeError/ValueError naming it."""
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{self.param}: expected a finite number >= 0, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer (or fraction) beyond float64: not finite
            number = math.inf
        if not (math.isfinite(number) and number >= 0.0):
            raise ValueError(f"{self.param}: expected a finite number >= 0, got {value!r}")
        return number

    def param_value(self, params):
        """The parameter from the keyword dict ``params`` (the default when absent), checked;
        0.0 for an activation without one. Unknown keywords are a TypeError."""
        params = dict(params)
        value = 0.0
        if self.param is not None:
            value = self.check_param(params.pop(self.param, self.default))
        if params:
            raise TypeError(f"{self.name} got an unexpected keyword argument {next(iter(params))!r}")
        return value


# -- NumPy twins (no validation; out may be the input itself) ----------------------------------

def _sigmoid(x, out, param):
    # e = exp(-|x|) never overflows; y = 1/(1+e) for x >= 0 and e/(1+e) otherwise.
    nonnegative = x >= 0
    np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    denominator = np.add(out, 1)
    np.copyto(out, 1, where=nonnegative)
    return np.divide(out, denominator, out=out)


def _sigmoid_backward(y, grad, out, param):
    one_minus_y = np.subtract(1, y)
    np.multiply(grad, y, out=out)
    return np.multiply(out, one_minus_y, out=out)


def _relu(x, out, param):
    return np.maximum(x, 0, out=out)


def _relu_backward(y, grad, out, param):
    return np.multiply(grad, y > 0, out=out)


def _tanh(x, out, param):
    return np.tanh(x, out=out)


def _tanh_backward(y, grad, out, param):
    factor = np.multiply(y, y)
    np.subtract(1, factor, out=factor)
    return np.multiply(grad, factor, out=out)


def _scaled_tanh(x, out, param):
    np.multiply(x, SCALED_TANH_B, out=out)
    np.tanh(out, out=out)
    return np.multiply(out, SCALED_TANH_A, out=out)


def _scaled_tanh_backward(y, grad, out, param):
    # d/dx A tanh(Bx) = A B (1 - tanh^2) = A B - (B / A) y^2
    factor = np.multiply(y, y)
    np.multiply(factor, SCALED_TANH_B / SCALED_TANH_A, out=factor)
    np.subtract(SCALED_TANH_A * SCALED_TANH_B, factor, out=factor)
    return np.multiply(grad, factor, out=out)


def _leaky_relu(x, out, param):
    negative = x < 0
    scaled = np.multiply(x, np.asarray(param, x.dtype))
    np.copyto(out, x)
    np.copyto(out, scaled, where=negative)
    return out


def _leaky_relu_backward(y, grad, out, param):
    # The slope is >= 0, so y > 0 exactly where x > 0.
    factor = np.where(y > 0, np.ones((), y.dtype), np.asarray(param, y.dtype))
    return np.multiply(grad, factor, out=out)


def _erfc(x):
    from scipy.special import erfc
    return erfc(x)


def _gelu(x, out, param):
    # x Phi(x) = x erfc(-x / sqrt 2) / 2, in float64 (erfc: no cancellation for negative x).
    x64 = x.astype(np.float64)
    y = 0.5 * x64 * _erfc(x64 * -_INV_SQRT2)
    y[x64 < -40.0] = -0.0  # erfc underflows there; also -inf -> -0 rather than NaN
    out[...] = y
    return out


def _gelu_backward(x, grad, out, param):
    # Phi(x) + x phi(x)
    x64 = x.astype(np.float64)
    tail = x64 * np.exp(-0.5 * x64 * x64) * _INV_SQRT_2PI
    tail[np.abs(x64) > 40.0] = 0.0
    factor = (0.5 * _erfc(x64 * -_INV_SQRT2) + tail).astype(x.dtype)
    return np.multiply(grad, factor, out=out)


# -- ONNX nodes (g: fastnn.export_onnx's graph builder) ------------------------------------------

def _onnx_scaled_tanh(g, x, param, dtype):
    inner = g.node("Mul", [x, g.const("scaled_tanh_b", np.array(SCALED_TANH_B, dtype))], "scaled")
    t = g.node("Tanh", [inner], "tanh")
    return g.node("Mul", [t, g.const("scaled_tanh_a", np.array(SCALED_TANH_A, dtype))], "scaled_tanh")


def _onnx_gelu(g, x, param, dtype):
    # 0.5 x (1 + erf(x / sqrt 2)) with Erf (opset 9); Gelu itself needs opset 20. onnxruntime
    # (1.32) implements Erf for float32 only, so it cannot run the float64 graph.
    scaled = g.node("Mul", [x, g.const("inv_sqrt2", np.array(_INV_SQRT2, dtype))], "scaled")
    erf = g.node("Erf", [scaled], "erf")
    one_plus = g.node("Add", [erf, g.const("one", np.array(1.0, dtype))], "one_plus_erf")
    half_x = g.node("Mul", [x, g.const("half", np.array(0.5, dtype))], "half_x")
    return g.node("Mul", [half_x, one_plus], "gelu")


def _onnx_leaky_relu(g, x, param, dtype):
    # LeakyRelu's alpha is a float32 attribute: exact for float32 networks and for slopes that
    # float32 holds exactly; otherwise max(x, 0) + slope * min(x, 0) in the network's dtype.
    if np.dtype(dtype) == np.float32 or float(np.float32(param)) == param:
        return g.node("LeakyRelu", [x], "leaky", alpha=float(param))
    zero = g.const("zero", np.array(0.0, dtype))
    negative = g.node("Mul", [g.node("Min", [x, zero], "negative_part"),
                              g.const("negative_slope", np.array(param, dtype))], "scaled_negative")
    return g.node("Add", [g.node("Max", [x, zero], "positive_part"), negative], "leaky")


def _onnx_node(op):
    return lambda g, x, param, dtype: g.node(op, [x], op.lower())


REGISTRY = (
    ActivationEntry(
        "sigmoid", 1, "Sigmoid",
        "1 / (1 + exp(-x)), elementwise; any shape, float32/float64. Saturates to exactly 0 and 1.",
        "grad * y * (1 - y) from the saved output y = sigmoid(x); y and grad of one shape and dtype.",
        _sigmoid, _sigmoid_backward, sklearn="logistic", onnx=_onnx_node("Sigmoid")),
    ActivationEntry(
        "relu", 2, "ReLU",
        "max(x, 0), elementwise; NaN stays NaN.",
        "grad * (y > 0) from the saved output y = relu(x).",
        _relu, _relu_backward, init="he", sklearn="relu", onnx=_onnx_node("Relu")),
    ActivationEntry(
        "tanh", 3, "Tanh",
        "tanh(x), elementwise; any shape, float32/float64.",
        "grad * (1 - y**2) from the saved output y = tanh(x).",
        _tanh, _tanh_backward, sklearn="tanh", onnx=_onnx_node("Tanh")),
    ActivationEntry(
        "scaled_tanh", 4, "ScaledTanh",
        "1.7159 * tanh(2x/3) (LeCun's scaled tanh), elementwise.",
        "grad * (A*B - (B/A) * y**2), A = 1.7159, B = 2/3, from the saved output y = scaled_tanh(x).",
        _scaled_tanh, _scaled_tanh_backward, onnx=_onnx_scaled_tanh),
    ActivationEntry(
        "leaky_relu", 5, "LeakyReLU",
        "x where x >= 0, negative_slope * x below (PyTorch's LeakyReLU); negative_slope: a finite "
        "number >= 0 (ValueError otherwise). NaN stays NaN.",
        "grad * (1 where y > 0, else negative_slope) from the saved output y = leaky_relu(x).",
        _leaky_relu, _leaky_relu_backward, init="he", param="negative_slope", default=0.01,
        onnx=_onnx_leaky_relu),
    ActivationEntry(
        "gelu", 6, "GELU",
        "x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (exact GELU, Hendrycks & Gimpel), elementwise; "
        "computed in double and rounded once (within a few ulp).",
        "grad * (Phi(x) + x phi(x)) from the input x of gelu (not its output y).",
        _gelu, _gelu_backward, needs_input=True, onnx=_onnx_gelu),
)

ACTIVATIONS = (None,) + tuple(e.name for e in REGISTRY)
"""The ``activation=`` values: None (identity) and the registry's names, in code order."""

NAMES = ACTIVATIONS[1:]
"""The names alone (``fastnn train --activation`` choices)."""

_BY_NAME = {e.name: e for e in REGISTRY}


def get(name, argname="activation"):
    """The entry called ``name``; ValueError listing the choices otherwise."""
    return lookup(_BY_NAME, name, argname, ACTIVATIONS)


def lookup(entries, name, argname, choices):
    """``entries[name]`` (a registry's entries by name), or a ValueError naming ``argname`` and
    listing ``choices``; shared with :mod:`fastnn.loss_registry`."""
    try:
        return entries[name]
    except (KeyError, TypeError):
        raise ValueError(f"{argname}: expected one of {choices}, got {name!r}") from None


def resolve(activation, argname="activation"):
    """(entry or None, parameter) for an ``activation=`` argument: None, a registry name (its
    default parameter), or an activation layer such as ``fastnn.LeakyReLU(0.2)`` (its own, checked
    again here: the layer's ``param`` attribute may have been changed since)."""
    if activation is None:
        return None, 0.0
    if isinstance(activation, str):
        entry = get(activation, argname)
        return entry, (0.0 if entry.param is None else entry.default)
    entry = getattr(activation, "entry", None)
    if not isinstance(entry, ActivationEntry):
        raise ValueError(f"{argname}: expected None, one of the names {ACTIVATIONS[1:]} or an "
                         f"activation layer, got {activation!r}")
    if entry.param is None:
        return entry, 0.0
    try:
        return entry, entry.check_param(activation.param)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{argname}: {exc}") from None


# -- the public op functions of fastnn.ops and fastnn.reference ----------------------------------

def op_functions(entry, forward, backward, module):
    """The public pair ``<name>(x[, param], out=None)`` and ``<name>_backward(y or x, grad[,
    param], out=None)`` of ``module``, calling ``forward(entry, x, out, param)`` and
    ``backward(entry, saved, grad, out, param)`` with the parameter checked. Written out as
    source so that they have their real signatures and cost no argument binding per call."""
    param = f"{entry.param}={entry.default!r}, " if entry.param else ""
    value = f"entry.check_param({entry.param})" if entry.param else "0.0"
    source = (f"def {entry.name}(x, {param}out=None):\n"
              f"    return forward(entry, x, out, {value})\n"
              f"def {entry.backward_name}({entry.saved}, grad, {param}out=None):\n"
              f"    return backward(entry, {entry.saved}, grad, out, {value})\n")
    namespace = {"entry": entry, "forward": forward, "backward": backward}
    exec(source, namespace)  # the source above, built from the registry's own names
    pair = namespace[entry.name], namespace[entry.backward_name]
    for f, doc in zip(pair, (entry.doc, entry.backward_doc)):
        f.__module__ = module
        f.__doc__ = doc
    return pair
