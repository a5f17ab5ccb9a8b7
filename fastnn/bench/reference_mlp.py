"""The NumPy reference network: the baseline of ``fastnn bench`` and ``benchmarks/``, and the
oracle of the training tests. Built on the op twins of :mod:`fastnn.reference`."""
import numpy as np

from ..reference import SCALED_TANH_A, SCALED_TANH_B, _require_shape, softmax_cross_entropy


class ReferenceMLP:
    """A multilayer perceptron trained by SGD on softmax cross-entropy, in NumPy only.

    The same math as ``fastnn.Network`` training ``Linear -> activation -> ... -> Linear`` with
    ``SoftmaxCrossEntropy`` and ``fastnn.SGD`` (PyTorch's convention), written the way fast NumPy
    is written: every array of a step is allocated once per batch size, ufuncs run in place and
    the products go through ``np.matmul(..., out=)`` (numpy's BLAS). It is the baseline of the
    benchmarks, so it is kept deliberately free of validation in the step itself.

    weights: list of (in, out) arrays, biases: list of (out,) arrays, one pair per Linear
    (copied into one flat buffer of ``dtype``, default the first weight's float dtype).
    activations: one per Linear, each in ACTIVATIONS; the last must be None (its outputs are
    the logits). Inputs are used as ``x * input_scale + input_shift`` per batch, so uint8
    images train without a float copy of the data set (like ``Network(input_scale=1/255)``).

    Sigmoid is computed as ``1 / (1 + exp(-z))`` in place; ``exp`` overflowing to inf for
    z < -88 (float32) gives exactly 0, so the result is the stable one without the branch.
    """

    def __init__(self, weights, biases, activations, lr=0.1, momentum=0.9, weight_decay=0.0,
                 nesterov=False, input_scale=1.0, input_shift=0.0, dtype=None):
        weights = [np.asarray(w) for w in weights]
        biases = [np.asarray(b) for b in biases]
        activations = list(activations)
        if not weights or not (len(weights) == len(biases) == len(activations)):
            raise ValueError("weights, biases and activations: expected one of each per layer")
        for a in activations:
            if not (a is None or (isinstance(a, str) and a in _ACTIVATE_IN_PLACE)):
                raise ValueError(f"activations: expected None or one of {tuple(_ACTIVATE_IN_PLACE)}, got {a!r}")
        if activations[-1] is not None:
            raise ValueError("activations[-1]: the last layer gives the logits, expected None")
        dims = [weights[0].shape[0]] + [w.shape[1] for w in weights]
        for i, (w, b) in enumerate(zip(weights, biases)):
            _require_shape(f"weights[{i}]", w, (dims[i], dims[i + 1]))
            _require_shape(f"biases[{i}]", b, (dims[i + 1],))
        self.dtype = np.dtype(weights[0].dtype if dtype is None else dtype)
        if self.dtype.char not in "fd":
            raise TypeError(f"dtype: expected float32 or float64, got {self.dtype}")
        if momentum == 0 and nesterov:
            raise ValueError("nesterov: requires momentum > 0")
        self.dims, self.activations = dims, activations
        self.lr, self.momentum = float(lr), float(momentum)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)
        self.input_scale, self.input_shift = float(input_scale), float(input_shift)

        # Parameters, gradients and velocity are each one flat array with a view per layer, so
        # the optimizer step is a handful of ufunc calls over all parameters at once.
        self._params = np.empty(sum(w.size + b.size for w, b in zip(weights, biases)), self.dtype)
        self._grads = np.zeros_like(self._params)
        self._velocity = np.zeros_like(self._params)
        self._scratch = np.empty_like(self._params)
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
            ws = self._workspaces[key] = {
                "raw": np.empty((n, d[0]), raw_dtype),
                "labels": np.empty(n, np.int64),
                "a": [np.empty((n, width), dt) for width in d],  # a[0] is the scaled input
                "dz": [np.empty((n, width), dt) for width in d[1:]],
                "da": [None] + [np.empty((n, width), dt) for width in d[1:-1]],
                "mask": [np.empty((n, width), bool) for width in d[1:-1]],
                "pred": np.empty(n, np.intp),
                "hit": np.empty(n, bool),
            }
        return ws

    def step(self, x, labels):
        """One SGD step on a batch x (B, in) of any real dtype (scaled by input_scale/shift) and
        integer labels (B,) in [0, K). Returns (mean loss, number of correct predictions)."""
        x = np.asarray(x)
        labels = np.asarray(labels)
        ws = self._workspace(len(x), x.dtype)
        np.copyto(ws["raw"], x)
        ws["labels"][...] = labels
        return self._train(ws)

    def epoch(self, X, y, order, batch_size):
        """Train on the rows ``order`` of X (N, in) and y (N,) in batches of ``batch_size`` (the
        last may be shorter). Returns (sum of batch loss * batch size, correct, rows seen)."""
        total, correct = 0.0, 0
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ws = self._workspace(len(rows), X.dtype)
            np.take(X, rows, axis=0, out=ws["raw"])
            np.take(y, rows, out=ws["labels"])
            loss, hits = self._train(ws)
            total += loss * len(rows)
            correct += hits
        return total, correct, len(order)

    def _train(self, ws):
        a, dz, da = ws["a"], ws["dz"], ws["da"]
        labels, n_layers = ws["labels"], len(self.weights)
        with np.errstate(all="ignore"):
            x = a[0]
            np.multiply(ws["raw"], self.dtype.type(self.input_scale), out=x, casting="unsafe")
            if self.input_shift:
                x += self.dtype.type(self.input_shift)
            for l in range(n_layers):
                z = a[l + 1]
                np.matmul(a[l], self.weights[l], out=z)
                z += self.biases[l]
                if self.activations[l] is not None:
                    _ACTIVATE_IN_PLACE[self.activations[l]](z)

            logits = a[-1]
            np.argmax(logits, axis=1, out=ws["pred"])
            hits = int(np.count_nonzero(np.equal(ws["pred"], labels, out=ws["hit"])))
            loss, _ = softmax_cross_entropy(logits, labels, grad_out=dz[-1])

            for l in range(n_layers - 1, -1, -1):
                np.matmul(a[l].T, dz[l], out=self.grad_weights[l])
                np.add.reduce(dz[l], axis=0, dtype=np.float64, out=self.grad_biases[l])
                if l > 0:
                    np.matmul(dz[l], self.weights[l].T, out=da[l])
                    _DERIVATIVE_IN_PLACE[self.activations[l - 1]](a[l], da[l], dz[l - 1],
                                                                  ws["mask"][l - 1])
            self._sgd_step()
        return loss, hits

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
