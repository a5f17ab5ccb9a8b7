"""Network: a layer list compiled into fused blocks, trained with preallocated buffers.

The plan: each Linear, the activation right after it and a Dropout after that form one block,
run as one ``ops.linear_forward(..., activation=)`` (+ mask) and one ``ops.linear_backward``.
Layers that cannot join a block (an activation first or after another activation, a Dropout
not following a Linear/activation pair) run on their own through the unfused ops
(``ops.sigmoid``/``ops.sigmoid_backward``, ...), so every order works. Buffers are allocated
once per batch size; a training step allocates no numpy arrays.
"""
import copy
import math
import numbers
import time
import warnings
import weakref

import numpy as np

from . import _inference, _range, activations, ops
from ._native import core as _core
from ._threads import blas_threads_limited, kernels_on_calling_thread
from .history import EarlyStopping, History
from .initializers import default_init
from .layers import Activation, Dropout, Layer, Linear, check_float_dtype, check_positive_int
from .losses import Loss, SoftmaxCrossEntropy, accuracy
from .errors import TrainingDivergedError, TrainingUnstableWarning
from .optim import SGD, check_real
from .optim import get as get_optimizer

_INPUT_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))
_MAX_WORKSPACES = 6
# fit warns (TrainingUnstableWarning) when an epoch's training loss exceeds this many times the
# loss before training (measured on up to EXPLOSION_SAMPLE training rows) or 1, whichever is
# larger: a run resumed from a loss of 1e-4 may wander to 1e-3 without being unstable.
EXPLOSION_FACTOR = 10.0
EXPLOSION_SAMPLE = 1024
# Which network each layer belongs to (layer -> weakref to the network); a layer given to a
# second network is copied (see Network).
_LAYER_OWNERS = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------------------------
# Plan steps. Each has buffers(n, dtype) -> a _Bufs, forward(bufs, x, training, rng) -> output
# and backward(bufs, grad) -> dL/dinput (None for the first block).

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


class _NonFinite(Exception):
    """Internal: a training step produced a non-finite loss or gradient (no update applied)."""

    def __init__(self, what, loss):
        super().__init__(what)
        self.what, self.loss = what, loss


# ---------------------------------------------------------------------------------------------

class Network:
    """A feed-forward network: layers, a loss, and the training loop.

    layers: sequence of Layer objects with at least one Linear (each object used once; widths
    must chain). loss: a Loss, default SoftmaxCrossEntropy(). dtype: "float32" (default) or
    "float64"; every Linear is converted to it. Inputs are used as x*input_scale + input_shift
    (e.g. uint8 images with input_scale=1/255). seed: int or None; drives weight initialisation,
    dropout masks and (unless fit gets its own seed) shuffling.

    Every layer order is supported: Linear [+ activation] [+ Dropout] runs fused, anything else
    (an activation first or after another one, Dropout first, ...) through the unfused ops.

    A layer belongs to one network: layers that already belong to another one are copied (with
    their current weights), so that network keeps its own, in its own dtype. ``net.layers``
    holds the layers this network uses. ``net(x)`` is ``net.forward(x)``.
    """

    def __init__(self, layers, loss=None, dtype="float32", input_scale=1.0, input_shift=0.0,
                 seed=None):
        layers = list(layers) if isinstance(layers, (list, tuple)) else None
        if layers is None:
            raise TypeError("layers: expected a list of Layer objects")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}]: expected a Layer, got {type(layer).__name__}")
            if any(layer is other for other in layers[:i]):
                raise ValueError(f"layers[{i}]: the same {type(layer).__name__} object appears twice")
        if not any(isinstance(layer, Linear) for layer in layers):
            raise ValueError("layers: expected at least one Linear layer")
        layers = [self._claim(layer) for layer in layers]
        loss = SoftmaxCrossEntropy() if loss is None else loss
        if not isinstance(loss, Loss):
            raise TypeError(f"loss: expected a Loss such as SoftmaxCrossEntropy(), got {loss!r}")
        self.layers = tuple(layers)
        self.loss = loss
        self.dtype = check_float_dtype(dtype)
        self.input_scale = check_real(input_scale, "input_scale")
        self.input_shift = check_real(input_shift, "input_shift")
        limit = float(np.finfo(self.dtype).max)
        for name, value in (("input_scale", self.input_scale), ("input_shift", self.input_shift)):
            if abs(value) > limit:
                raise ValueError(f"{name}: {value!r} does not fit {self.dtype.name}")
        self.seed = _check_seed(seed, "seed")
        self._rng = np.random.default_rng(seed)
        self.optimizer = None  # the last optimizer used by fit (or loaded)
        self.extra = None  # the 'extra' dict of a loaded file
        # (n_features, 2) least and greatest scaled input seen by fit; predict warns far from it.
        self.input_range = None
        self.preprocessor = None  # a fastnn.tabular.TablePreprocessor for a model of a table
        self._epoch = 0
        self._fit_state = None

        self._widths = self._check_widths()
        self.n_features = next(l for l in layers if isinstance(l, Linear)).in_features
        self.n_outputs = self._widths[-1]
        loss.check_outputs(self.n_outputs)
        self._init_linears()
        self._compile()

    # -- construction -------------------------------------------------------------------------

    def _claim(self, layer):
        """The layer itself when it belongs to no other network, else a copy of it."""
        owner = _LAYER_OWNERS.get(layer)
        if owner is not None and owner() is not None and owner() is not self:
            layer = copy.deepcopy(layer)
        _LAYER_OWNERS[layer] = weakref.ref(self)
        return layer

    def __getstate__(self):
        # Working buffers (per-batch-size workspaces, gradients, the compiled plan) are rebuilt
        # on use: a pickle holds the model, not the memory its last predict() used.
        state = dict(self.__dict__)
        for name in ("_workspaces", "_last_ws", "_steps", "_native_epoch", "_grad_flat", "_grads",
                     "_fit_params", "_plan", "_engine"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for layer in self.layers:
            _LAYER_OWNERS[layer] = weakref.ref(self)
        self._compile()

    def _check_widths(self):
        widths, width, source = [], None, None
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Linear):
                if width is not None and layer.in_features != width:
                    raise ValueError(f"layers[{i}]: {layer!r} expects {layer.in_features} inputs but "
                                     f"layers[{source}] gives {width}")
                width, source = layer.out_features, i
            widths.append(width)
        first = next(i for i, l in enumerate(self.layers) if isinstance(l, Linear))
        return [self.layers[first].in_features if w is None else w for w in widths]

    def _init_linears(self):
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Linear):
                continue
            nxt = next((l for l in self.layers[i + 1:] if not isinstance(l, Dropout)), None)
            act = nxt.name if isinstance(nxt, Activation) else None
            if layer._pending_init:
                rng = self._rng if layer.seed is None else layer.seed
                layer.reset_parameters(rng, layer.init or default_init(act), self.dtype)
            elif layer.dtype != self.dtype:
                layer.W = layer.W.astype(self.dtype)
                layer.b = layer.b.astype(self.dtype)

    def _compile(self):
        """Build the step plan and the gradient buffers (one flat array, a view per parameter)."""
        linears = [l for l in self.layers if isinstance(l, Linear)]
        sizes = [(l.in_features * l.out_features, l.out_features) for l in linears]
        self._grad_flat = np.zeros(sum(a + b for a, b in sizes), self.dtype)
        grads, offset = [], 0
        for l, (nw, nb) in zip(linears, sizes):
            grads.append(self._grad_flat[offset:offset + nw].reshape(l.in_features, l.out_features))
            grads.append(self._grad_flat[offset + nw:offset + nw + nb])
            offset += nw + nb
        self._grads = grads

        steps, i, k, layers = [], 0, 0, self.layers
        self._first_dense = None
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, Linear):
                j, act, p = i + 1, None, 0.0
                if j < len(layers) and isinstance(layers[j], Activation):
                    act, j = layers[j], j + 1
                if j < len(layers) and isinstance(layers[j], Dropout):
                    p, j = layers[j].p, j + 1
                if self._first_dense is None:
                    self._first_dense = len(steps)
                need_dx = self._first_dense != len(steps)
                steps.append(_Dense(layer, act, p, need_dx, grads[2 * k], grads[2 * k + 1]))
                k, i = k + 1, j
            elif isinstance(layer, Activation):
                steps.append(_Act(layer, self._widths[i]))
                i += 1
            elif isinstance(layer, Dropout):
                steps.append(_Drop(layer.p, self._widths[i]))
                i += 1
            else:
                raise TypeError(f"layers[{i}]: unsupported layer type {type(layer).__name__}")
        self._steps = steps
        from ._fastpath import unsupported_reason

        # True when the compiled engine may train this network (None: the layer-by-layer path).
        self._native_epoch = True if unsupported_reason(self, None, None) is None else None
        self._engine = None
        self._workspaces = {}
        self._last_ws = None
        self._plan = None  # the compiled inference plan (fastnn._inference), built on first use

    def _ws_for(self, n):
        ws = self._workspaces.get(n)
        if ws is None:
            if len(self._workspaces) >= _MAX_WORKSPACES:
                self._workspaces.pop(next(iter(self._workspaces)))
            ws = self._workspaces[n] = _Workspace(n, self._steps, self._first_dense, self.n_features,
                                                  self.n_outputs, self.dtype)
        return ws

    # -- parameters ---------------------------------------------------------------------------

    def parameters(self):
        """Live parameter arrays [W0, b0, W1, b1, ...] (W (in, out), b (out,), network dtype)."""
        return [p for layer in self.layers for p in layer.parameters()]

    def gradients(self):
        """Gradient arrays aligned with parameters(), overwritten by each backward()."""
        return list(self._grads)

    def n_parameters(self):
        """Total number of scalar parameters (int)."""
        return sum(p.size for p in self.parameters())

    # -- forward / backward -------------------------------------------------------------------

    def _forward_ws(self, ws, x, training):
        rng = self._rng
        for step, b in ws.fwd:
            x = step.forward(b, x, training, rng)
        return x

    def _backward_ws(self, ws, grad):
        for step, b in ws.bwd:
            grad = step.backward(b, grad)

    def _gather(self, X, rows, ws):
        return ops.gather_rows(X, rows, self.input_scale, self.input_shift, ws.x)

    def forward(self, x, training=False):
        """Outputs (N, n_outputs) in the network dtype for inputs x (N, n_features) (a copy).

        training=True applies dropout. The activations are kept for a following backward().
        """
        x = self._check_X(x, "x")
        ws = self._ws_for(len(x))
        out = self._forward_ws(ws, self._gather(x, np.arange(len(x)), ws), bool(training))
        self._last_ws = ws
        return out.copy()

    def __call__(self, x):
        """The forward pass in inference mode: ``forward(x)`` (outputs before the loss's own
        transform, e.g. logits for softmax cross-entropy; ``predict_proba`` gives probabilities)."""
        return self.forward(x)

    def backward(self, grad_outputs):
        """Fill gradients() from dL/doutputs (N, n_outputs) of the last forward(); returns them.

        Call it right after forward(): evaluate/predict/fit with the same batch size reuse the
        buffers holding the saved activations.
        """
        ws = self._last_ws
        if ws is None:
            raise RuntimeError("backward() needs a forward() first")
        g = np.asarray(grad_outputs)
        if g.shape != (ws.n, self.n_outputs):
            raise ValueError(f"grad_outputs: expected shape {(ws.n, self.n_outputs)}, got {g.shape}")
        self._backward_ws(ws, np.ascontiguousarray(g, dtype=self.dtype))
        return self.gradients()

    # -- training -----------------------------------------------------------------------------

    def _train_step(self, xb, yb, optimizer):
        """One SGD step on a gathered batch; returns (mean batch loss, number correct).

        Raises _NonFinite before touching the parameters when the loss or a gradient is not
        finite, so the weights stay the last finite ones.
        """
        ws = self._ws_for(len(xb))
        out = self._forward_ws(ws, xb, True)
        loss, grad = self.loss.loss_and_grad(out, yb, ws.grad)
        if not math.isfinite(loss):
            raise _NonFinite("loss", loss)
        correct = self.loss.count_correct(out, yb)
        self._backward_ws(ws, grad)
        # One BLAS dot over all gradients: non-finite iff some gradient is (or is ~1e19+).
        if not math.isfinite(float(np.dot(self._grad_flat, self._grad_flat))):
            raise _NonFinite("gradient", loss)
        optimizer.step(self._fit_params, self._grads)
        return loss, correct

    def _run_epoch(self, X, y, order, batch_size, optimizer, bar):
        """Train on the rows ``order`` (a permutation) in batches; returns (sum of batch loss *
        batch size, number correct, number seen).

        Networks the compiled engine supports (fastnn._fastpath.unsupported_reason) run whole
        chunks of steps in one native call; anything else goes step by step below.
        """
        from ._fastpath import CompiledEngine, unsupported_reason

        if self._native_epoch is not None and unsupported_reason(self, optimizer, None) is None:
            engine = self._engine
            if engine is None or engine.optimizer is not optimizer or engine.batch_size != batch_size \
                    or engine.inputs[0] is not X or engine.inputs[1] is not y:
                engine = self._engine = CompiledEngine(self, optimizer, X, y, None, batch_size)
            loss_sum, _, correct, seen = engine.run_epoch(
                order, self._rng, bar,
                lambda step: self._diverged(step, _NonFinite("loss", float("nan")), optimizer))
            return loss_sum, correct, seen
        with kernels_on_calling_thread():
            return self._run_epoch_by_layers(X, y, order, batch_size, optimizer, bar)

    def _run_epoch_by_layers(self, X, y, order, batch_size, optimizer, bar):
        total, correct, seen, step = 0.0, 0, 0, 0
        scale, shift = self.input_scale, self.input_shift
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ws = self._ws_for(len(rows))
            xb = ops.gather_rows(X, rows, scale, shift, ws.x)
            yb = np.take(y, rows, axis=0, out=ws.target_buffer(y), mode="clip")
            step += 1
            try:
                loss, c = self._train_step(xb, yb, optimizer)
            except _NonFinite as exc:
                raise self._diverged(step, exc, optimizer) from None
            total += loss * len(rows)
            correct += c
            seen += len(rows)
            if bar is not None:
                bar.update(1)
                if step % 25 == 0:
                    bar.set_postfix_str(f"loss={total / seen:.4f}", refresh=False)
        return total, correct, seen

    def _diverged(self, step, exc, optimizer):
        return TrainingDivergedError(
            f"training diverged at epoch {self._epoch}, step {step}: the {exc.what} is not finite "
            f"(batch loss {exc.loss}). The weights from before this step are kept; try a lower "
            f"learning rate (lr={optimizer.lr:g}).", epoch=self._epoch, step=step, loss=exc.loss)

    def fit(self, X, y, epochs=10, batch_size=32, optimizer=None, validation_data=None,
            validation_split=0.0, early_stopping=None, shuffle=True, seed=None, callbacks=(),
            progress=True, schedule=None, initial_epoch=0, resume=None, verbose=None):
        """Train on X (N, n_features) uint8/float and targets y; returns a History.

        batch_size larger than the training set is clamped to it; the last batch of an epoch may
        be smaller. optimizer: an Optimizer, or a name ("sgd", "adam": that class's defaults);
        default SGD(lr=0.1, momentum=0.9) (kept as ``self.optimizer``).
        validation_data=(X_val, y_val), or validation_split in [0, 1): that fraction of the rows
        (drawn with the fit seed) is held out. early_stopping: patience (int) or EarlyStopping.
        callbacks: callables f(epoch_index, logs, network), epoch_index 0-based; returning "stop"
        ends training after that epoch. schedule: sets optimizer.lr per epoch. seed: shuffling
        and split RNG (default: drawn from the network's RNG). progress: a tqdm bar per epoch.
        verbose (Keras' setting, overrides progress when given): 0 silent, 1 a progress bar per
        epoch, 2 one line per epoch on stdout.

        initial_epoch: epochs already done; training runs epochs initial_epoch+1 .. epochs (the
        schedule, the logs and the History count from there). resume: ``training_state()`` of an
        earlier fit (taken after one of its epochs, e.g. saved in a checkpoint with the
        optimizer): continues that run exactly, with its shuffling and dropout generators,
        schedule position and early-stopping record; give it the same data, arguments and the
        saved optimizer. initial_epoch then defaults to the state's epoch.
        Raises TrainingDivergedError when the loss or a gradient becomes non-finite, and warns
        (TrainingUnstableWarning, a RuntimeWarning) once when an epoch's training loss exceeds
        EXPLOSION_FACTOR (10) times the loss before training (measured on up to 1024 training
        rows) or 10, whichever is larger: the learning rate is then most likely too high.
        """
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        shuffle = _check_bool(shuffle, "shuffle")
        seed = _check_seed(seed, "seed")
        resume = _check_resume(resume, seed)
        initial_epoch = _check_initial_epoch(initial_epoch, resume, epochs)
        X = self._check_X(X, "X")
        Y = self._check_targets(y, len(X), "y", "X")
        self.input_range = _range.union(
            self.input_range, _range.observed_range(X, self.input_scale, self.input_shift))
        split = check_real(validation_split, "validation_split", 0.0, 1.0, high_open=True)
        optimizer = SGD(lr=0.1, momentum=0.9) if optimizer is None else get_optimizer(optimizer)
        progress, epoch_lines = _check_verbose(verbose, progress)
        stopper = _as_early_stopping(early_stopping)
        if resume is not None and (resume["early_stopping"] is None) != (stopper is None):
            raise ValueError("resume: the state was saved from a run "
                             f"{'with' if stopper is None else 'without'} early stopping; "
                             "give the same early_stopping")
        callbacks = _as_callbacks(callbacks)
        if schedule is not None and not callable(getattr(schedule, "lr_at", None)):
            raise TypeError(f"schedule: expected an object with lr_at(epoch, base_lr), got {schedule!r}")
        if resume is not None:
            fit_seed = resume["seed"]
        else:
            fit_seed = int(self._rng.integers(2 ** 63)) if seed is None else seed
        rng = np.random.default_rng(fit_seed)

        train_rows, val = self._validation_rows(X, Y, validation_data, split, rng)
        n_train = len(X) if train_rows is None else len(train_rows)
        batch_size = min(batch_size, n_train)
        if stopper is not None:
            stopper.reset(has_validation=val is not None)
        base_lr = optimizer.lr
        stopped = False
        if resume is not None:
            _set_generator_state(rng, resume["shuffle_rng"], "shuffle_rng")
            _set_generator_state(self._rng, resume["network_rng"], "network_rng")
            base_lr, stopped = resume["base_lr"], resume["stopped"]
            if stopper is not None:
                stopper.load_state_dict(resume["early_stopping"])

        self.optimizer = optimizer
        self._fit_params = self.parameters()
        state = self._fit_state = _FitState(fit_seed, rng, base_lr, stopper)
        state.capture(self, initial_epoch, stopped)
        history = History(initial_epoch=initial_epoch)
        n_steps = -(-n_train // batch_size)
        # Safety net for a pathological overflow inside the update itself (the per-step checks
        # stop any update computed from a non-finite loss or gradient).
        snapshot = [np.empty_like(p) for p in self._fit_params]
        last_epoch = initial_epoch if stopped else epochs  # a stopped run has nothing left
        loss_before = self._loss_before_training(X, Y, train_rows) if last_epoch > initial_epoch else None
        for e in range(initial_epoch, last_epoch):
            self._epoch = e + 1
            if schedule is not None:
                optimizer.lr = schedule.lr_at(e, base_lr)
            if shuffle:
                order = rng.permutation(n_train)
                if train_rows is not None:
                    order = train_rows[order]
            else:
                order = np.arange(n_train) if train_rows is None else train_rows
            t0 = time.perf_counter()
            for dst, src in zip(snapshot, self._fit_params):
                np.copyto(dst, src)
            bar = _progress_bar(n_steps, e + 1, epochs) if progress else None
            try:
                try:
                    # Overflow is caught by the divergence checks; no RuntimeWarning on the way.
                    with np.errstate(over="ignore", invalid="ignore"):
                        total, correct, seen = self._run_epoch(X, Y, order, batch_size, optimizer, bar)
                except TrainingDivergedError:
                    if not all(np.isfinite(p).all() for p in self._fit_params):
                        for dst, src in zip(self._fit_params, snapshot):
                            np.copyto(dst, src)
                    raise
                logs = {"epoch": e + 1, "train_loss": total / seen,
                        "train_accuracy": accuracy(correct, seen, self.loss, self.n_outputs),
                        "lr": optimizer.lr}
                if val is not None:
                    logs["val_loss"], logs["val_accuracy"] = self._evaluate_prepared(*val, 1024)
                logs["seconds"] = time.perf_counter() - t0
                if bar is not None:
                    bar.set_postfix_str(_format_logs(logs), refresh=True)
            finally:
                if bar is not None:
                    bar.close()
            history.append(logs)
            if epoch_lines:
                print(f"Epoch {e + 1}/{epochs} - {_format_logs(logs)} ({logs['seconds']:.2f} s)", flush=True)
            if loss_before is not None and logs["train_loss"] > EXPLOSION_FACTOR * max(loss_before, 1.0):
                warnings.warn(f"the training loss grew from {loss_before:.4g} before training to "
                              f"{logs['train_loss']:.4g} at epoch {e + 1} (more than "
                              f"{EXPLOSION_FACTOR:g}x): the learning rate (lr={optimizer.lr:g}) is "
                              "probably too high", TrainingUnstableWarning, stacklevel=2)
                loss_before = None  # once per fit
            # Early stopping records this epoch before the callbacks run, so that a callback
            # saving training_state() saves the whole epoch.
            stop = stopper is not None and stopper.update(e, logs, self)
            state.capture(self, e + 1, stop)
            for cb in callbacks:
                if cb(e, dict(logs), self) == "stop":
                    stop = True
            if stop:
                history.stopped_early = e + 1 < epochs
                break
        if stopped:
            history.stopped_early = initial_epoch < epochs
        if stopper is not None:
            stopper.restore(self)
            history._best_epoch = stopper.best_epoch
        return history

    def _loss_before_training(self, X, Y, train_rows):
        """Mean loss of the current weights on the first EXPLOSION_SAMPLE training rows (None
        when it is not finite: the divergence checks handle that)."""
        rows = np.arange(min(len(X), EXPLOSION_SAMPLE)) if train_rows is None else train_rows[:EXPLOSION_SAMPLE]
        with np.errstate(over="ignore", invalid="ignore"):
            loss = self._evaluate_prepared(X, Y, rows, EXPLOSION_SAMPLE)[0]
        return loss if math.isfinite(loss) and loss > 0 else None

    def training_state(self):
        """Where the current (or last) fit stands after its last completed epoch, for
        ``fit(resume=...)``: {"epoch" (epochs done), "seed" (of the shuffling and split
        generator), "shuffle_rng" and "network_rng" (bit-generator states; the network's drives
        dropout), "base_lr" (what the schedule scales), "stopped" (early stopping ended the run
        at that epoch), "early_stopping" (None or EarlyStopping.state_dict(), holding copies of
        the best weights as arrays)}. Everything but those arrays is JSON-able; Network.save(
        extra=...) stores the arrays too. Call it from a callback or after fit.
        """
        if self._fit_state is None:
            raise RuntimeError("training_state() needs a fit() first (call it from a callback "
                               "or after fit)")
        return self._fit_state.as_dict()

    def _validation_rows(self, X, Y, validation_data, split, rng):
        """(training row indices or None for all rows, (X_val, Y_val, val rows or None) or None)."""
        if validation_data is not None:
            if split:
                raise ValueError("give validation_data or validation_split, not both")
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a pair (X_val, y_val)")
            Xv = self._check_X(validation_data[0], "validation_data[0]")
            Yv = self._check_targets(validation_data[1], len(Xv), "validation_data[1]",
                                     "validation_data[0]")
            return None, (Xv, Yv, None)
        if not split:
            return None, None
        n_val = max(1, int(len(X) * split))
        if n_val >= len(X):
            raise ValueError(f"validation_split={split} leaves no training rows out of {len(X)}")
        perm = rng.permutation(len(X))
        return np.sort(perm[n_val:]), (X, Y, np.sort(perm[:n_val]))

    # -- inference ----------------------------------------------------------------------------

    def _evaluate_prepared(self, X, Y, rows, batch_size):
        n = len(X) if rows is None else len(rows)
        total, correct = 0.0, 0
        with blas_threads_limited():  # see _outputs
            for start in range(0, n, batch_size):
                r = np.arange(start, min(start + batch_size, n)) if rows is None else rows[start:start + batch_size]
                ws = self._ws_for(len(r))
                out = self._forward_ws(ws, self._gather(X, r, ws), False)
                yb = np.take(Y, r, axis=0, out=ws.target_buffer(Y), mode="clip")
                loss, _ = self.loss.loss_and_grad(out, yb, ws.grad)
                total += loss * len(r)
                correct += self.loss.count_correct(out, yb)
        return total / n, accuracy(correct, n, self.loss, self.n_outputs)

    def evaluate(self, X, y, batch_size=1024):
        """(mean loss, accuracy) as floats over X (N, n_features) and targets y; accuracy is NaN
        when the loss defines none."""
        batch_size = check_positive_int(batch_size, "batch_size")
        X = self._check_X(X, "X")
        return self._evaluate_prepared(X, self._check_targets(y, len(X), "y", "X"), None, batch_size)

    def _outputs(self, X, batch_size):
        batch_size = check_positive_int(batch_size, "batch_size")
        X = self._check_X(X, "X")
        if self.input_range is not None:
            _range.warn_if_far(self, X)
        result = np.empty((len(X), self.n_outputs), self.dtype)
        # One BLAS thread: beside fastnn's own threads a multithreaded OpenBLAS made prediction
        # 4x slower here (MNIST test set, 784-100-10: 80 ms against 20 ms), and its workers keep
        # spinning on a core for ~0.1 s afterwards, which a fit that follows would pay for.
        with blas_threads_limited():
            for start in range(0, len(X), batch_size):
                r = np.arange(start, min(start + batch_size, len(X)))
                ws = self._ws_for(len(r))
                result[start:start + len(r)] = self._forward_ws(ws, self._gather(X, r, ws), False)
        return result

    def _infer(self, X, batch_size, method):
        """loss.<method> of the outputs for X, in one compiled call (fastnn._inference)."""
        check_positive_int(batch_size, "batch_size")
        plan = self._plan
        if plan is None or not plan.current(self.input_scale, self.input_shift):
            plan = self._plan = _inference.build_plan(self)
        if plan is None:
            return getattr(self.loss, method)(self._outputs(X, batch_size))
        # The checks of _check_X in a few attribute reads; anything else goes through it.
        if not (type(X) is np.ndarray and X.ndim == 2 and X.shape[1] == self.n_features
                and X.shape[0] and X.dtype in _INPUT_DTYPES and X.flags.c_contiguous):
            X = self._check_X(X, "X")
        head = _inference.head(self.loss, method)
        out = _core.infer(plan, X, _core.HEAD_OUTPUTS if head is None else head)
        if out is None:  # NaN/Inf or overflow once scaled: _check_X says where
            self._check_X(X, "X")
            raise AssertionError("infer refused an input that _check_X accepts")
        if self.input_range is not None:
            _range.warn_if_far(self, X)
        return getattr(self.loss, method)(out) if head is None else out

    def predict(self, X, batch_size=1024):
        """Predictions for X (N, n_features): class labels (N,) for the cross-entropy losses,
        outputs (N, n_outputs) for MSE.

        The whole forward pass runs in one compiled call, in blocks of 64 rows (batch_size is
        checked but no longer needed): on the calling thread, or for 512 rows and more shared
        among fastnn's threads. A row's result does not depend on the other rows: it has the
        same bits alone as in any batch. X: uint8, float32 or float64
        (other real dtypes are converted). Raises ValueError for a wrong shape, NaN/Inf or values
        that overflow the network dtype once scaled, TypeError for a non-real dtype. Emits one
        RuntimeWarning when X lies far from the inputs ``fit`` saw (``input_range``; the rule is
        in fastnn._range)."""
        return self._infer(X, batch_size, "predict")

    def predict_proba(self, X, batch_size=1024):
        """Probabilities: softmax (N, K) for SoftmaxCrossEntropy, P(class 1) (N,) for
        BinaryCrossEntropy, the outputs for MSE; computed (and warned about) as predict() is."""
        return self._infer(X, batch_size, "predict_proba")

    # -- validation ---------------------------------------------------------------------------

    def _check_X(self, X, argname):
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as exc:  # ragged nested lists and the like
            raise ValueError(f"{argname}: cannot be read as a 2-D array ({exc})") from None
        if X.ndim != 2:
            raise ValueError(f"{argname}: expected a 2-D array (n_samples, {self.n_features}), "
                             f"got shape {X.shape}")
        if X.shape[1] != self.n_features:
            raise ValueError(f"{argname}: expected {self.n_features} features per row (the first "
                             f"Linear's in_features), got {X.shape[1]}")
        if X.shape[0] == 0:
            raise ValueError(f"{argname}: expected at least one row, got shape {X.shape}")
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{argname}: expected a real-valued array, got dtype {X.dtype.name}")
        if X.dtype not in _INPUT_DTYPES:
            X = X.astype(self.dtype)
        X = np.ascontiguousarray(X)
        if X.dtype == np.uint8:
            lo, hi = 0.0, 255.0
        else:  # one compiled pass for NaN/Inf and the extremes
            nonfinite, lo, hi = _core.finite_range(X)
            if nonfinite:
                _check_finite(X, argname)  # raises, naming the count and the first position
        self._check_scaled_range(X, argname, lo, hi)
        return X

    def _check_scaled_range(self, X, argname, lo, hi):
        """Raise ValueError when x * input_scale + input_shift overflows the network dtype for
        some x of X, whose least and greatest entries are lo and hi (e.g. float64 data beyond
        float32's range): that would reach training as Inf and look like divergence."""
        scale, shift = self.input_scale, self.input_shift
        if X.dtype == self.dtype and scale == 1.0 and shift == 0.0:
            return
        limit = float(np.finfo(self.dtype).max)
        # x * scale + shift is monotonic in x, so the extremes of X give the extremes of it.
        if all(abs(v * scale + shift) <= limit for v in (lo, hi)):
            return
        flat = X.reshape(-1)
        n_bad, first, chunk = 0, None, 1 << 22
        for start in range(0, flat.size, chunk):
            with np.errstate(over="ignore", invalid="ignore"):
                scaled = flat[start:start + chunk].astype(np.float64) * scale + shift
            bad = ~(np.abs(scaled) <= limit)
            count = int(np.count_nonzero(bad))
            if count and first is None:
                first = start + int(np.argmax(bad))
            n_bad += count
        row, col = divmod(first, X.shape[1])
        raise ValueError(f"{argname}: {n_bad} value(s) overflow {self.dtype.name} once scaled "
                         f"(x * input_scale + input_shift); the first at row {row}, column {col}")

    def _check_targets(self, y, n, argname, xname):
        t = self.loss.prepare_targets(y, self.n_outputs, self.dtype, argname)
        if len(t) != n:
            raise ValueError(f"{argname}: expected {n} targets (one per row of {xname}), got {len(t)}")
        return t

    # -- description --------------------------------------------------------------------------

    def summary(self):
        """Table of layers with output shape and parameter count, plus the total (str)."""
        rows = [(repr(l), f"(N, {w})", sum(p.size for p in l.parameters()))
                for l, w in zip(self.layers, self._widths)]
        w0 = max(len("Layer"), *(len(r[0]) for r in rows))
        w1 = max(len("Output"), *(len(r[1]) for r in rows))
        lines = [f"Network: {self.n_features} inputs -> {self.n_outputs} outputs, {self.dtype.name}, "
                 f"loss {self.loss!r}",
                 f"{'Layer':<{w0}}  {'Output':<{w1}}  {'Params':>10}"]
        lines += [f"{a:<{w0}}  {b:<{w1}}  {c:>10,}" for a, b, c in rows]
        lines.append(f"Total parameters: {self.n_parameters():,}")
        return "\n".join(lines)

    def __repr__(self):
        extra = ""
        if self.input_scale != 1.0 or self.input_shift != 0.0:
            extra = f", input_scale={self.input_scale!r}, input_shift={self.input_shift!r}"
        layers = ", ".join(map(repr, self.layers))
        return f"Network([{layers}], loss={self.loss!r}, dtype={self.dtype.name!r}{extra})"

    # -- files --------------------------------------------------------------------------------

    def save(self, path, include_optimizer=False, *, optimizer=None, extra=None):
        """Write the network to ``path`` (.npz + JSON header, atomically). include_optimizer
        stores the state of ``optimizer`` (default: the one of the last fit); extra: a JSON-able
        dict stored as is (checkpoint info, e.g. ``{"state": self.training_state()}``); numpy
        arrays inside it are stored as arrays and come back as arrays."""
        from .serialization import save
        save(self, path, include_optimizer=include_optimizer, optimizer=optimizer, extra=extra)

    def to_onnx(self, path):
        """Write the network as an ONNX graph to ``path`` (atomically); returns the path.

        Inputs and outputs are described in :mod:`fastnn.export_onnx`. Needs the onnx extra
        (``pip install ".[onnx]"``; an ImportError saying so otherwise).
        """
        from .export_onnx import save_onnx
        return save_onnx(self, path)


def _check_finite(X, argname, chunk=1 << 22):
    """Raise ValueError with the count and first (row, column) of NaN/Inf values in X."""
    flat = X.reshape(-1)
    n_bad, first = 0, None
    for start in range(0, flat.size, chunk):
        finite = np.isfinite(flat[start:start + chunk])
        bad = finite.size - int(np.count_nonzero(finite))
        if bad and first is None:
            first = start + int(np.argmin(finite))
        n_bad += bad
    if n_bad:
        row, col = divmod(first, X.shape[1])
        raise ValueError(f"{argname}: {n_bad} NaN/Inf value(s); the first at row {row}, column {col}")


class _FitState:
    """The resumable state of a fit, captured at the start and after every epoch."""

    def __init__(self, seed, rng, base_lr, stopper):
        self.seed, self.rng, self.base_lr, self.stopper = seed, rng, base_lr, stopper
        self.captured = None

    def capture(self, network, epoch, stopped):
        # Generator states only change inside an epoch, so this is exact for "after epoch".
        self.captured = {"epoch": epoch, "seed": self.seed,
                         "shuffle_rng": self.rng.bit_generator.state,
                         "network_rng": network._rng.bit_generator.state,
                         "base_lr": self.base_lr, "stopped": bool(stopped)}

    def as_dict(self):
        d = copy.deepcopy(self.captured)
        # The stopper only changes at epoch ends (update) and after the loop (restore, which
        # leaves its record alone), so its current record belongs to the captured epoch.
        d["early_stopping"] = None if self.stopper is None else self.stopper.state_dict()
        return d


_RESUME_KEYS = ("epoch", "seed", "shuffle_rng", "network_rng", "base_lr", "stopped", "early_stopping")


def _check_resume(resume, seed):
    """Validate a training_state() dict (None passes); returns it."""
    if resume is None:
        return None
    if not isinstance(resume, dict) or any(k not in resume for k in _RESUME_KEYS):
        raise TypeError("resume: expected the dict of Network.training_state() with keys "
                        f"{', '.join(_RESUME_KEYS)}")
    _check_seed(resume["seed"], "resume['seed']")
    if resume["seed"] is None:
        raise ValueError("resume['seed']: expected a non-negative integer, got None")
    if seed is not None and seed != resume["seed"]:
        raise ValueError(f"seed: {seed} differs from the resumed run's seed {resume['seed']}")
    check_real(resume["base_lr"], "resume['base_lr']", low=0.0)
    if not isinstance(resume["stopped"], bool):
        raise TypeError(f"resume['stopped']: expected True or False, got {resume['stopped']!r}")
    for key in ("shuffle_rng", "network_rng"):
        if not isinstance(resume[key], dict):
            raise TypeError(f"resume['{key}']: expected a bit-generator state dict")
    return resume


def _check_initial_epoch(initial_epoch, resume, epochs):
    if isinstance(initial_epoch, (bool, np.bool_)) or not isinstance(initial_epoch, numbers.Integral):
        raise TypeError(f"initial_epoch: expected a non-negative integer, got {initial_epoch!r}")
    initial_epoch = int(initial_epoch)
    if resume is not None:
        done = resume["epoch"]
        if isinstance(done, bool) or not isinstance(done, int) or done < 0:
            raise ValueError(f"resume['epoch']: expected a non-negative integer, got {done!r}")
        if initial_epoch not in (0, done):
            raise ValueError(f"initial_epoch: {initial_epoch} differs from the resumed state's "
                             f"epoch {done}")
        initial_epoch = done
    if not 0 <= initial_epoch <= epochs:
        raise ValueError(f"initial_epoch: expected an integer in [0, epochs={epochs}], got {initial_epoch}")
    return initial_epoch


def _set_generator_state(rng, state, name):
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"resume['{name}']: not a state of this {type(rng.bit_generator).__name__} "
                         f"generator ({exc})") from None


def _check_verbose(verbose, progress):
    """(progress bar?, one line per epoch?) from fit's verbose and progress arguments."""
    if verbose is None:
        return bool(progress), False
    if isinstance(verbose, (bool, np.bool_)):
        verbose = int(verbose)
    if not isinstance(verbose, numbers.Integral) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose: expected 0 (silent), 1 (progress bar) or 2 (one line per "
                         f"epoch), got {verbose!r}")
    return verbose == 1, verbose == 2


def _check_bool(value, argname):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argname}: expected True or False, got {value!r}")
    return bool(value)


def _check_seed(seed, argname):
    """None or a non-negative integer (what np.random.default_rng takes as a plain seed)."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{argname}: expected None or a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{argname}: expected None or a non-negative integer, got {seed}")
    return int(seed)


def _as_early_stopping(value):
    if value is None or isinstance(value, EarlyStopping):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"early_stopping: expected None, a patience (int) or EarlyStopping, got {value!r}")
    return EarlyStopping(patience=value)


def _as_callbacks(callbacks):
    if callbacks is None:
        return []
    if callable(callbacks):
        callbacks = [callbacks]
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"callbacks[{i}]: expected a callable f(epoch_index, logs, network), got {cb!r}")
    return callbacks


def _format_logs(logs):
    parts = [f"loss={logs['train_loss']:.4f}"]
    if not math.isnan(logs["train_accuracy"]):
        parts.append(f"acc={logs['train_accuracy']:.4f}")
    if "val_loss" in logs:
        parts.append(f"val_loss={logs['val_loss']:.4f}")
        if not math.isnan(logs["val_accuracy"]):
            parts.append(f"val_acc={logs['val_accuracy']:.4f}")
    return " ".join(parts)


def _progress_bar(total, epoch, epochs):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"Epoch {epoch}/{epochs}", unit="step", leave=True,
                dynamic_ncols=True)
