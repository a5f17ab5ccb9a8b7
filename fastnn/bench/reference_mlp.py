"""The NumPy reference network: the baseline of ``fastnn bench`` and ``benchmarks/``, and the
oracle of the training tests. Built on the op twins of :mod:`fastnn.reference`, the NumPy twins
of the activation registry (:mod:`fastnn.activations`) and the losses' own conventions
(:mod:`fastnn.losses`)."""
import numpy as np

from .. import activations as _activations
from .. import loss_registry as _loss_registry
from .. import losses as _losses
from .. import reference as _reference
from .._fused import _draw_mask
from ..reference import SCALED_TANH_A, SCALED_TANH_B, _require_shape, adam_update, adamw_update

OPTIMIZERS = ("sgd", "adam", "adamw")


class ReferenceMLP:
    """A multilayer perceptron trained by SGD, Adam or AdamW on softmax cross-entropy, binary
    cross-entropy or MSE, with optional Dropout and sample weights, in NumPy.

    The same math as ``fastnn.Network`` training ``[Dropout ->] Linear -> activation [->
    Dropout] -> ... -> Linear`` with the loss and optimizer of the same names (PyTorch's
    conventions), written the way fast NumPy is written: every array of a step is allocated once
    per batch size, ufuncs run in place and the products go through ``np.matmul(..., out=)``
    (numpy's BLAS). It is the baseline of the benchmarks, so it is kept deliberately free of
    validation in the step itself; the default (softmax cross-entropy, SGD, the four original
    activations) is the path they time.

    weights: list of (in, out) arrays, biases: list of (out,) arrays, one pair per Linear
    (copied into one flat buffer of ``dtype``, default the first weight's float dtype).
    activations: one per Linear, each None, a name of :data:`fastnn.activations.ACTIVATIONS`
    (with its default parameter) or an activation layer such as ``fastnn.LeakyReLU(0.2)`` (its
    own); the last must be None (its outputs are the logits, or the predictions for "mse").
    Inputs are used as ``x * input_scale + input_shift`` per batch, so uint8 images train
    without a float copy of the data set (like ``Network(input_scale=1/255)``).

    loss: a name of :data:`fastnn.loss_registry.NAMES`: "cross_entropy"
    (``SoftmaxCrossEntropy``, at least 2 outputs, integer labels), "bce" (``BinaryCrossEntropy``
    over K >= 1 outputs, 0/1 targets) or "mse" (``MSE``, real targets); the targets are what
    those losses take, and the loss and its gradient are the entry's NumPy twin
    (``fastnn.reference.<op>``). dropout: None or
    one rate in [0, 1) per Linear, the Dropout applied to that Linear's input (dropout[0] on the
    network's input, dropout[l] after hidden layer l); the masks are drawn like the layer path's,
    per step and in layer order, from the generator given to ``step``/``epoch``. optimizer:
    "sgd" (lr, momentum, nesterov, weight_decay), "adam" or "adamw" (lr, beta1, beta2, eps,
    weight_decay): the steps of ``fastnn.SGD``, ``fastnn.Adam`` and ``fastnn.AdamW`` (the latter
    two by the twins ``fastnn.reference.adam_update`` / ``adamw_update``). Raises ValueError or
    TypeError naming a bad argument.

    Sigmoid is computed as ``1 / (1 + exp(-z))`` in place; ``exp`` overflowing to inf for
    z < -88 (float32) gives exactly 0, so the result is the stable one without the branch.
    """

    def __init__(self, weights, biases, activations, lr=0.1, momentum=0.9, weight_decay=0.0,
                 nesterov=False, input_scale=1.0, input_shift=0.0, dtype=None, *,
                 loss="cross_entropy", dropout=None, optimizer="sgd", beta1=0.9, beta2=0.999, eps=1e-8):
        weights = [np.asarray(w) for w in weights]
        biases = [np.asarray(b) for b in biases]
        activations = list(activations)
        if not weights or not (len(weights) == len(biases) == len(activations)):
            raise ValueError("weights, biases and activations: expected one of each per layer")
        self._acts = [_Activation(a, f"activations[{i}]") for i, a in enumerate(activations)]
        if activations[-1] is not None:
            raise ValueError("activations[-1]: the last layer gives the logits, expected None")
        dims = [weights[0].shape[0]] + [w.shape[1] for w in weights]
        for i, (w, b) in enumerate(zip(weights, biases)):
            _require_shape(f"weights[{i}]", w, (dims[i], dims[i + 1]))
            _require_shape(f"biases[{i}]", b, (dims[i + 1],))
        self.dtype = np.dtype(weights[0].dtype if dtype is None else dtype)
        if self.dtype.char not in "fd":
            raise TypeError(f"dtype: expected float32 or float64, got {self.dtype}")
        entry = _loss_registry.get(loss)
        self._loss = _losses.LOSS_TYPES[entry.loss_class]()  # its targets and accuracy
        self._loss.check_outputs(dims[-1])
        self._loss_twin = getattr(_reference, entry.op)
        self._labels = entry.targets == "labels"
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
        if optimizer == "sgd" and momentum == 0 and nesterov:
            raise ValueError("nesterov: requires momentum > 0")
        self.dims, self.activations, self.loss, self.optimizer = dims, activations, loss, optimizer
        self.dropout = _dropout_rates(dropout, len(weights))
        self.lr, self.momentum = float(lr), float(momentum)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.input_scale, self.input_shift = float(input_scale), float(input_shift)

        # Parameters, gradients and optimizer state are each one flat array with a view per
        # layer, so the optimizer step is a handful of ufunc calls over all parameters at once.
        self._params = np.empty(sum(w.size + b.size for w, b in zip(weights, biases)), self.dtype)
        self._grads = np.zeros_like(self._params)
        self._scratch = np.empty_like(self._params)
        if optimizer == "sgd":
            self._velocity = np.zeros_like(self._params)
            self._update = self._sgd_step
        else:
            self._exp_avg = np.zeros_like(self._params)
            self._exp_avg_sq = np.zeros_like(self._params)
            self._update = self._adam_step
        self._t = 0  # Adam's step count
        self.weights, self.biases = self._views(self._params)
        self.grad_weights, self.grad_biases = self._views(self._grads)
        for dst, src in zip(self.weights + self.biases, weights + biases):
            dst[...] = src
        self._workspaces = {}

    def _views(self, flat):
        ws, bs, offset = [], [], 0
        for n_in, n_out in zip(self.dims[:-1], self.dims[1:]):
            ws.append(flat[offset:offset + n_in * n_out].reshape(n_in, n_out))
            offset += n_in * n_out
            bs.append(flat[offset:offset + n_out])
            offset += n_out
        return ws, bs

    def parameters(self):
        """Live arrays [W0, b0, W1, b1, ...], the layout of ``fastnn.Network.parameters()``."""
        return [p for pair in zip(self.weights, self.biases) for p in pair]

    def _workspace(self, n, raw_dtype):
        key = (n, np.dtype(raw_dtype))
        ws = self._workspaces.get(key)
        if ws is None:
            dt, d = self.dtype, self.dims
            a = [np.empty((n, width), dt) for width in d]  # a[0] is the scaled input
            dropped = [np.empty((n, d[l]), dt) if p else None for l, p in enumerate(self.dropout)]
            ws = self._workspaces[key] = {
                "raw": np.empty((n, d[0]), raw_dtype),
                "targets": (np.empty(n, np.int64) if self._labels
                            else np.empty((n, d[-1]), dt)),
                "weights": np.empty(n, dt),
                "a": a,
                "inputs": [a[l] if x is None else x for l, x in enumerate(dropped)],  # of Linear l
                "drop_mask": [None if x is None else np.empty_like(x) for x in dropped],
                # Where Linear l's product goes: its own array when the activation's
                # derivative needs its input (kept for the backward pass), else a[l + 1]
                # (activated in place).
                "z": [np.empty_like(a[l + 1]) if h.keeps_input else a[l + 1]
                      for l, h in enumerate(self._acts)],
                "dz": [np.empty((n, width), dt) for width in d[1:]],
                "da": [None] + [np.empty((n, width), dt) for width in d[1:-1]],
                "mask": [np.empty((n, width), bool) for width in d[1:-1]],
                "pred": np.empty(n, np.intp),
                "hit": np.empty(n, bool),
            }
        return ws

    def step(self, x, labels, sample_weight=None, rng=None):
        """One optimizer step on a batch x (B, in) of any real dtype (scaled by
        input_scale/shift) and its targets: integer labels (B,) in [0, K) for "cross_entropy", what
        the loss takes otherwise. sample_weight: None or (B,) weights >= 0; rng: the
        ``np.random.Generator`` of the Dropout masks (required with dropout). Returns (mean
        loss, weighted by sample_weight, number of correct predictions)."""
        x = np.asarray(x)
        targets = self._targets(labels)
        ws = self._workspace(len(x), x.dtype)
        np.copyto(ws["raw"], x)
        ws["targets"][...] = targets
        weights = None
        if sample_weight is not None:
            weights = ws["weights"]
            weights[...] = sample_weight
        return self._train(ws, weights, rng)

    def epoch(self, X, y, order, batch_size, sample_weight=None, rng=None):
        """Train on the rows ``order`` of X (N, in) and y (the targets, as ``step`` takes them) in
        batches of ``batch_size`` (the last may be shorter); sample_weight and rng as ``step``
        takes them, sample_weight over all N rows. Returns (sum of batch loss * batch weight,
        the batch's row count without sample_weight; correct; rows seen): the epoch's loss as
        ``fit`` reports it is the first divided by the weight of the rows ``order``."""
        y = self._targets(y)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, self.dtype)
        total, correct = 0.0, 0
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ws = self._workspace(len(rows), X.dtype)
            np.take(X, rows, axis=0, out=ws["raw"])
            np.take(y, rows, axis=0, out=ws["targets"])
            weights = None
            if sample_weight is not None:
                weights = np.take(sample_weight, rows, out=ws["weights"])
            loss, hits = self._train(ws, weights, rng)
            total += loss * _losses.weight_sum(weights, len(rows))
            correct += hits
        return total, correct, len(order)

    def _targets(self, y):
        """The targets as the loss takes them (softmax labels unchecked: the benchmarks' path)."""
        if self._labels:
            return np.asarray(y)
        return self._loss.prepare_targets(y, self.dims[-1], self.dtype)

    def _train(self, ws, weights, rng):
        a = ws["a"]
        with np.errstate(all="ignore"):
            x = a[0]
            np.multiply(ws["raw"], self.dtype.type(self.input_scale), out=x, casting="unsafe")
            if self.input_shift:
                x += self.dtype.type(self.input_shift)
            self._forward(ws, rng)
            loss, hits = self._loss_and_grad(a[-1], ws, weights)
            self._backward(ws)
            self._update()
        return loss, hits

    def _forward(self, ws, rng):
        a, inputs, z = ws["a"], ws["inputs"], ws["z"]
        for l, p in enumerate(self.dropout):
            if p:
                if rng is None:
                    raise ValueError("rng: expected the np.random.Generator of the Dropout masks")
                _draw_mask(rng, ws["drop_mask"][l], p)
                np.multiply(a[l], ws["drop_mask"][l], out=inputs[l])
            np.matmul(inputs[l], self.weights[l], out=z[l])
            z[l] += self.biases[l]
            self._acts[l].forward(z[l], a[l + 1])

    def _loss_and_grad(self, outputs, ws, weights):
        """(batch loss, correct predictions), the loss's gradient in ws["dz"][-1]."""
        targets, grad = ws["targets"], ws["dz"][-1]
        if self._labels:
            np.argmax(outputs, axis=1, out=ws["pred"])
            hits = int(np.count_nonzero(np.equal(ws["pred"], targets, out=ws["hit"])))
        else:
            hits = self._loss.count_correct(outputs, targets)
        if weights is not None and not weights.any():  # losses.py: loss 0, zero gradient
            grad.fill(0)
            return 0.0, hits
        loss, _ = self._loss_twin(outputs, targets, grad_out=grad, sample_weight=weights)
        return loss, hits

    def _backward(self, ws):
        inputs, dz, da = ws["inputs"], ws["dz"], ws["da"]
        for l in range(len(self.weights) - 1, -1, -1):
            np.matmul(inputs[l].T, dz[l], out=self.grad_weights[l])
            np.add.reduce(dz[l], axis=0, dtype=np.float64, out=self.grad_biases[l])
            if l > 0:
                np.matmul(dz[l], self.weights[l].T, out=da[l])
                if self.dropout[l]:
                    da[l] *= ws["drop_mask"][l]
                self._acts[l - 1].backward(ws["z"][l - 1], da[l], dz[l - 1], ws["mask"][l - 1])

    def _sgd_step(self):
        # PyTorch's convention: g = grad + wd*p; v = mu*v + g; p -= lr * (g + mu*v or v).
        p, g, v, s = self._params, self._grads, self._velocity, self._scratch
        if self.weight_decay:
            np.multiply(p, self.weight_decay, out=s)
            g += s
        step = g
        if self.momentum:
            v *= self.momentum
            v += g
            step = v
            if self.nesterov:
                np.multiply(v, self.momentum, out=s)
                s += g
                step = s
        np.multiply(step, self.lr, out=s)
        p -= s

    def _adam_step(self):
        self._t += 1
        update = adamw_update if self.optimizer == "adamw" else adam_update
        update(self._params, self._grads, self._exp_avg, self._exp_avg_sq, self._t, lr=self.lr,
               beta1=self.beta1, beta2=self.beta2, eps=self.eps, weight_decay=self.weight_decay)


def _dropout_rates(dropout, n_layers):
    if dropout is None:
        return [0.0] * n_layers
    rates = [float(p) for p in dropout]
    if len(rates) != n_layers:
        raise ValueError(f"dropout: expected one rate per Linear ({n_layers}), got {len(rates)}")
    for i, p in enumerate(rates):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout[{i}]: expected a rate in [0, 1), got {p}")
    return rates


class _Activation:
    """The activation after one Linear: forward(z, y) writes y = act(z) (z is y itself unless
    ``keeps_input``), backward(saved, da, dz, mask) writes dz = da * act'(...) from the saved
    array (y, or z when ``keeps_input``: the derivative needs the input, as GELU's). The four
    original activations run the in-place formulas below (what the benchmarks time); the
    others the registry's NumPy twins, with their parameter."""

    def __init__(self, activation, argname):
        entry, param = _activations.resolve(activation, argname)
        self.keeps_input = entry is not None and entry.needs_input
        name = None if entry is None else entry.name
        if name in _DERIVATIVE_IN_PLACE:
            activate = _ACTIVATE_IN_PLACE.get(name, _identity)
            self.forward = lambda z, y: activate(y)
            self.backward = _DERIVATIVE_IN_PLACE[name]
        else:
            self.forward = lambda z, y: entry.forward_twin(z, y, param)
            self.backward = lambda saved, da, dz, mask: entry.backward_twin(saved, da, dz, param)


def _identity(z):
    pass


def _sigmoid_in_place(z):
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1
    np.reciprocal(z, out=z)


def _scaled_tanh_in_place(z):
    z *= SCALED_TANH_B
    np.tanh(z, out=z)
    z *= SCALED_TANH_A


_ACTIVATE_IN_PLACE = {
    "sigmoid": _sigmoid_in_place,
    "relu": lambda z: np.maximum(z, 0, out=z),
    "tanh": lambda z: np.tanh(z, out=z),
    "scaled_tanh": _scaled_tanh_in_place,
}


# dz = da * act'(from the saved output y); mask is a bool scratch of y's shape.
def _sigmoid_derivative(y, da, dz, mask):
    np.subtract(1, y, out=dz)
    dz *= y
    dz *= da


def _relu_derivative(y, da, dz, mask):
    np.greater(y, 0, out=mask)
    np.multiply(da, mask, out=dz)


def _tanh_derivative(y, da, dz, mask):
    np.multiply(y, y, out=dz)
    np.subtract(1, dz, out=dz)
    dz *= da


def _scaled_tanh_derivative(y, da, dz, mask):
    np.multiply(y, y, out=dz)
    dz *= -SCALED_TANH_B / SCALED_TANH_A
    dz += SCALED_TANH_A * SCALED_TANH_B
    dz *= da


def _identity_derivative(y, da, dz, mask):
    np.copyto(dz, da)


_DERIVATIVE_IN_PLACE = {
    None: _identity_derivative,
    "sigmoid": _sigmoid_derivative,
    "relu": _relu_derivative,
    "tanh": _tanh_derivative,
    "scaled_tanh": _scaled_tanh_derivative,
}
