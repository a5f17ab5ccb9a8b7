"""The fused plan of a network: its layer list compiled into steps with preallocated buffers.

Each Linear, the activation right after it and a Dropout after that form one block (_Dense),
run as one ``ops.linear_forward(..., activation=)`` (+ mask) and one ``ops.linear_backward``.
Layers that cannot join a block (an activation first or after another activation, a Dropout
not following a Linear/activation pair) run on their own through the unfused ops (_Act,
_Drop: ``ops.sigmoid``/``ops.sigmoid_backward``, ...), so every order works. Buffers are
allocated once per batch size (_Workspace); a training step allocates no numpy arrays.

Each step has buffers(n, dtype) -> a _Bufs, forward(bufs, x, training, rng) -> output and
backward(bufs, grad) -> dL/dinput (None for the first block).
"""
import numpy as np

from . import activations, ops
from .layers import Activation, Dropout, Linear


class _Bufs:
    """Attribute bag of one step's arrays for one batch size."""


def _draw_mask(rng, mask, p):
    # Inverted dropout: keep with probability 1-p, scale survivors by 1/(1-p), all in place.
    rng.random(out=mask, dtype=mask.dtype)
    np.greater_equal(mask, p, out=mask)
    mask *= 1.0 / (1.0 - p)


class _Dense:
    """Linear + optional activation + optional dropout, fused.

    activation: None, a registry name or an activation layer (whose parameter is used). act is
    its name, act_code / act_param what the compiled loops take; an activation whose derivative
    needs its input (keeps_z) keeps the pre-activation z for the backward pass."""

    def __init__(self, linear, activation, p, need_dx, dw, db):
        entry, self.act_param = activations.resolve(activation)
        self.act = None if entry is None else entry.name
        self.act_code = 0 if entry is None else entry.code
        self.keeps_z = entry is not None and entry.needs_input
        # what the ops get: the name, or the layer itself when it carries a parameter
        self._activation = activation if entry is not None and entry.param is not None else self.act
        self.linear, self.p, self.need_dx = linear, p, need_dx
        self.dw, self.db = dw, db

    def buffers(self, n, dtype):
        b = _Bufs()
        b.x = None
        b.y = np.empty((n, self.linear.out_features), dtype)
        b.z = np.empty_like(b.y) if self.keeps_z else None
        b.dx = np.empty((n, self.linear.in_features), dtype) if self.need_dx else None
        b.dropped = False
        if self.p > 0:
            b.mask = np.empty_like(b.y)
            b.yd = np.empty_like(b.y)
            b.gm = np.empty_like(b.y)
        return b

    def forward(self, b, x, training, rng):
        b.x = x
        lin = self.linear
        y = ops.linear_forward(x, lin.W, lin.b, self._activation, b.y, preactivation_out=b.z)
        b.dropped = training and self.p > 0
        if b.dropped:
            _draw_mask(rng, b.mask, self.p)
            np.multiply(y, b.mask, out=b.yd)
            return b.yd
        return y

    def backward(self, b, grad):
        if b.dropped:
            np.multiply(grad, b.mask, out=b.gm)
            grad = b.gm
        ops.linear_backward(b.x, self.linear.W, grad, b.y if self.act else None, self._activation,
                            self.need_dx, self.dw, self.db, b.dx, z=b.z)
        return b.dx


class _Act:
    """An activation that could not be fused into a Linear block (it keeps its input when its
    derivative needs it)."""

    def __init__(self, layer, width):
        self.layer, self.name, self.width = layer, layer.name, width
        self.entry, self.param = layer.entry, layer.param

    def buffers(self, n, dtype):
        b = _Bufs()
        b.x = None
        b.y = np.empty((n, self.width), dtype)
        b.dx = np.empty((n, self.width), dtype)
        return b

    def forward(self, b, x, training, rng):
        b.x = x if self.entry.needs_input else None
        return self.layer.forward(x, b.y)

    def backward(self, b, grad):
        return self.layer.backward(b.y, grad, b.dx, x=b.x)


class _Drop:
    """A Dropout that could not be fused into a Linear block."""

    def __init__(self, p, width):
        self.p, self.width = p, width

    def buffers(self, n, dtype):
        b = _Bufs()
        b.dropped = False
        if self.p > 0:
            b.mask = np.empty((n, self.width), dtype)
            b.y = np.empty((n, self.width), dtype)
            b.dx = np.empty((n, self.width), dtype)
        return b

    def forward(self, b, x, training, rng):
        b.dropped = training and self.p > 0
        if not b.dropped:
            return x
        _draw_mask(rng, b.mask, self.p)
        return np.multiply(x, b.mask, out=b.y)

    def backward(self, b, grad):
        if not b.dropped:
            return grad
        return np.multiply(grad, b.mask, out=b.dx)


class _Workspace:
    """All buffers for one batch size n."""

    def __init__(self, n, steps, first_dense, n_features, n_outputs, dtype):
        self.n = n
        self.x = np.empty((n, n_features), dtype)
        self.grad = np.empty((n, n_outputs), dtype)
        self.weights = np.empty(n, dtype)  # a batch's sample weights
        bufs = [s.buffers(n, dtype) for s in steps]
        self.fwd = list(zip(steps, bufs))
        # Steps before the first Linear act on the raw input: no gradient needed through them.
        self.bwd = self.fwd[first_dense:][::-1]
        self.targets = {}

    def target_buffer(self, targets):
        key = (targets.dtype, targets.shape[1:])
        buf = self.targets.get(key)
        if buf is None:
            buf = self.targets[key] = np.empty((self.n,) + targets.shape[1:], targets.dtype)
        return buf


def gradient_buffers(linears, dtype):
    """(one flat zeroed array, a view of it per parameter [dW0, db0, dW1, ...]) for the Linear
    layers: one BLAS dot over the flat array tells whether every gradient is finite."""
    sizes = [(l.in_features * l.out_features, l.out_features) for l in linears]
    flat = np.zeros(sum(a + b for a, b in sizes), dtype)
    grads, offset = [], 0
    for l, (nw, nb) in zip(linears, sizes):
        grads.append(flat[offset:offset + nw].reshape(l.in_features, l.out_features))
        grads.append(flat[offset + nw:offset + nw + nb])
        offset += nw + nb
    return flat, grads


def build_steps(layers, widths, grads):
    """(the plan's steps, index of the first _Dense) for a layer list whose layer i outputs
    widths[i] columns; grads as gradient_buffers returns them."""
    steps, i, k = [], 0, 0
    first_dense = None
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Linear):
            j, act, p = i + 1, None, 0.0
            if j < len(layers) and isinstance(layers[j], Activation):
                act, j = layers[j], j + 1
            if j < len(layers) and isinstance(layers[j], Dropout):
                p, j = layers[j].p, j + 1
            if first_dense is None:
                first_dense = len(steps)
            need_dx = first_dense != len(steps)
            steps.append(_Dense(layer, act, p, need_dx, grads[2 * k], grads[2 * k + 1]))
            k, i = k + 1, j
        elif isinstance(layer, Activation):
            steps.append(_Act(layer, widths[i]))
            i += 1
        elif isinstance(layer, Dropout):
            steps.append(_Drop(layer.p, widths[i]))
            i += 1
        else:
            raise TypeError(f"layers[{i}]: unsupported layer type {type(layer).__name__}")
    return steps, first_dense


def forward(ws, x, training, rng):
    """Run the steps of workspace ``ws`` on the gathered batch x; returns the outputs (a buffer
    of ws). training applies Dropout with masks drawn from ``rng``."""
    for step, b in ws.fwd:
        x = step.forward(b, x, training, rng)
    return x


def backward(ws, grad):
    """Back-propagate dL/doutputs through the steps of ``ws`` into the gradient buffers."""
    for step, b in ws.bwd:
        grad = step.backward(b, grad)
