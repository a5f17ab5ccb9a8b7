"""Network: the model. Its layers, loss and dtype, the parameters, forward/backward, predict,
evaluate, save and ONNX export.

The layer list is compiled into a fused plan (fastnn._fused) with buffers per batch size;
``fit`` delegates to the training loop (fastnn._training).
"""
import copy
import math
import threading
import weakref

import numpy as np

from . import _fused, _inference, _range, _sparse, _training, _validate, ops
from ._native import core as _core
from ._threads import blas_threads_limited
from .initializers import default_init
from .layers import Activation, Dropout, Layer, Linear, check_float_dtype, check_positive_int
from .losses import Loss, SoftmaxCrossEntropy, accuracy, weight_sum
from .optim import check_real

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


class _ThreadWorkspaces(threading.local):
    """One thread's workspaces of a network (batch size -> _fused._Workspace, at most
    _MAX_WORKSPACES) and the one its last forward() filled, for backward()."""

    def __init__(self):
        self.by_size = {}
        self.last = None


class Network:
    """A feed-forward network: layers, a loss, a dtype; ``fit`` trains it (fastnn._training).

    layers: sequence of Layer objects with at least one Linear (each object used once; widths
    must chain). loss: a Loss, default SoftmaxCrossEntropy(). dtype: "float32" (default) or
    "float64"; every Linear is converted to it. Inputs are used as x*input_scale + input_shift
    (e.g. uint8 images with input_scale=1/255). seed: int or None; drives weight initialisation,
    dropout masks and (unless fit gets its own seed) shuffling.

    Every layer order is supported: Linear [+ activation] [+ Dropout] runs fused, anything else
    (an activation first or after another one, Dropout first, ...) through the unfused ops.

    A layer belongs to one network: layers that already belong to another one are copied (with
    their current weights), so that network keeps its own, in its own dtype. ``net.layers``
    holds the layers this network uses. ``net(x)`` is ``net.forward(x)``. Several threads may
    run forward, evaluate, predict and predict_proba on one network at once: each thread
    computes in buffers of its own (a fit in another thread changes the weights they read).

    ``input_range`` ((n_features, 2) float64 or None): the least and greatest scaled inputs fit
    has seen; predict warns about inputs far from it (fastnn._range). Setting
    ``track_input_range = False`` makes fit skip that pass over X and leaves predict silent (the
    scikit-learn estimators do so); save and fastnn.load keep the setting.
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
        self.seed = _training.check_seed(seed, "seed")
        self._rng = np.random.default_rng(seed)
        self.optimizer = None  # the last optimizer used by fit (or loaded)
        self.extra = None  # the 'extra' dict of a loaded file
        # (n_features, 2) least and greatest scaled input seen by fit; predict warns far from it.
        self.input_range = None
        self.track_input_range = True
        self.preprocessor = None  # a fastnn.tabular.TablePreprocessor for a model of a table
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
        for name in ("_thread_ws", "_steps", "_grad_flat", "_grads", "_fit_params", "_plan"):
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
        """Build the fused plan and the gradient buffers (one flat array, a view per parameter)."""
        linears = [l for l in self.layers if isinstance(l, Linear)]
        self._grad_flat, self._grads = _fused.gradient_buffers(linears, self.dtype)
        self._steps, self._first_dense = _fused.build_steps(self.layers, self._widths, self._grads)
        self._thread_ws = _ThreadWorkspaces()
        self._plan = None  # the compiled inference plan (fastnn._inference), built on first use

    def _ws_for(self, n):
        """The calling thread's workspace for batches of n rows. Every layer-by-layer pass
        (forward, evaluate, predict without a compiled plan, fit's layer engine) takes its
        buffers here, so threads sharing a network never write into each other's activations
        (the compiled predict needs none: its scratch is per call)."""
        workspaces = self._thread_ws.by_size
        ws = workspaces.get(n)
        if ws is None:
            if len(workspaces) >= _MAX_WORKSPACES:
                workspaces.pop(next(iter(workspaces)))
            ws = workspaces[n] = _fused._Workspace(
                n, self._steps, self._first_dense, self.n_features, self.n_outputs, self.dtype)
        return ws

    @property
    def _last_ws(self):
        """The workspace of the calling thread's last forward() (None before one)."""
        return self._thread_ws.last

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
        return _fused.forward(ws, x, training, self._rng)

    def _gather(self, X, rows, ws):
        if isinstance(X, _sparse.SparseRows):
            if self.input_scale == 1.0 and self.input_shift == 0.0 and X.dtype == self.dtype:
                return X.dense_rows(rows, ws.x)
            X, rows = X.dense_rows(rows), np.arange(len(rows))
        return ops.gather_rows(X, rows, self.input_scale, self.input_shift, ws.x)

    def _batch_for(self, X, batch_size):
        """batch_size, or fewer rows for a sparse X, whose rows are densified one batch at a time."""
        if isinstance(X, _sparse.SparseRows):
            return min(batch_size, _sparse.rows_per_chunk(self.n_features))
        return batch_size

    def forward(self, x, training=False):
        """Outputs (N, n_outputs) in the network dtype for inputs x (N, n_features) (a copy).

        training=True applies dropout. The activations are kept for a following backward().
        """
        x = self._check_X(x, "x")
        ws = self._ws_for(len(x))
        out = self._forward_ws(ws, self._gather(x, np.arange(len(x)), ws), bool(training))
        self._thread_ws.last = ws
        return out.copy()

    def __call__(self, x):
        """The forward pass in inference mode: ``forward(x)`` (outputs before the loss's own
        transform, e.g. logits for softmax cross-entropy; ``predict_proba`` gives probabilities)."""
        return self.forward(x)

    def backward(self, grad_outputs):
        """Fill gradients() from dL/doutputs (N, n_outputs) of the last forward() of the calling
        thread; returns them.

        Call it right after forward(): evaluate/predict/fit with the same batch size on the same
        thread reuse the buffers holding the saved activations.
        """
        ws = self._last_ws
        if ws is None:
            raise RuntimeError("backward() needs a forward() first")
        g = np.asarray(grad_outputs)
        if g.shape != (ws.n, self.n_outputs):
            raise ValueError(f"grad_outputs: expected shape {(ws.n, self.n_outputs)}, got {g.shape}")
        _fused.backward(ws, np.ascontiguousarray(g, dtype=self.dtype))
        return self.gradients()

    # -- training -----------------------------------------------------------------------------

    def fit(self, X, y, epochs=10, batch_size=32, optimizer=None, validation_data=None,
            validation_split=0.0, early_stopping=None, shuffle=True, seed=None, callbacks=(),
            progress=True, schedule=None, initial_epoch=0, resume=None, verbose=None,
            sample_weight=None, engine="auto"):
        """Train on X (N, n_features) uint8/float and targets y; returns a History.

        y: class labels (N,) for SoftmaxCrossEntropy; 0/1 labels (N, K) for BinaryCrossEntropy
        over K outputs ((N,) when K = 1); real targets (N, K) for MSE.
        batch_size larger than the training set is clamped to it; the last batch of an epoch may
        be smaller. optimizer: an Optimizer, or a name ("sgd", "adam": that class's defaults),
        kept as ``self.optimizer``. None (default): ``self.optimizer`` when the network has one
        (an earlier fit's, or the one ``fastnn.load`` restored from a file saved with
        include_optimizer=True), continued with its state, step count and lr (as the last fit
        or schedule left it; a schedule given again scales the earlier schedule's base lr);
        else a new SGD(lr=0.1, momentum=0.9). TypeError when ``self.optimizer`` is set to
        something other than an Optimizer.
        validation_data=(X_val, y_val) or (X_val, y_val, sample_weight_val), or validation_split
        in [0, 1): that fraction of the rows (drawn with the fit seed) is held out.
        early_stopping: patience (int) or EarlyStopping. callbacks: callables
        f(epoch_index, logs, network), epoch_index 0-based; returning "stop" ends training after
        that epoch. schedule: sets optimizer.lr per epoch. seed: shuffling and split RNG
        (default: drawn from the network's RNG). progress: a tqdm bar per epoch. verbose
        (Keras' setting, overrides progress when given): 0 silent, 1 a progress bar per epoch,
        2 one line per epoch on stdout.

        sample_weight: None or (N,) real weights, finite, >= 0, not all zero. Each batch's loss
        is then the weighted mean sum w_i l_i / sum w_i (see fastnn.losses), train_loss and
        val_loss the weighted means over the epoch's rows; the rows validation_split holds out
        keep their weights (early stopping follows the weighted val_loss). Accuracies count
        rows, unweighted.

        engine: "auto" (default: the compiled loop when it can train this network with this
        optimizer and these arguments, else layer by layer), "compiled" (ValueError saying why
        when it cannot) or "layers" (one Python step per batch through fastnn.ops: the
        reference, and what user-defined layers run). The engine does not change the weights
        beyond rounding.

        initial_epoch: epochs already done; training runs epochs initial_epoch+1 .. epochs (the
        schedule, the logs and the History count from there). resume: ``training_state()`` of an
        earlier fit (taken after one of its epochs, e.g. saved in a checkpoint with the
        optimizer): continues that run exactly, with its shuffling and dropout generators,
        schedule position and early-stopping record; give it the same data, arguments and the
        saved optimizer (optimizer=None takes it from a network ``fastnn.load`` read).
        initial_epoch then defaults to the state's epoch.

        Divergence (both engines): a step whose loss or gradient is not finite is not applied;
        training stops with TrainingDivergedError (naming the epoch, the step and the learning
        rate) and the weights are the last finite ones. Fit also warns (TrainingUnstableWarning,
        a RuntimeWarning) once when an epoch's training loss exceeds EXPLOSION_FACTOR (10) times
        the loss before training (measured on up to 1024 training rows) or 10, whichever is
        larger: the learning rate is then most likely too high.

        Raises ValueError / TypeError naming the argument for bad arguments (sample_weight of
        another shape, NaN/Inf, negative or all zero; an engine name not listed above).
        """
        return _training.fit(
            self, X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
            validation_data=validation_data, validation_split=validation_split,
            early_stopping=early_stopping, shuffle=shuffle, seed=seed, callbacks=callbacks,
            progress=progress, schedule=schedule, initial_epoch=initial_epoch, resume=resume,
            verbose=verbose, sample_weight=sample_weight, engine=engine)

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

    # -- inference ----------------------------------------------------------------------------

    def _evaluate_prepared(self, X, Y, rows, batch_size, W=None):
        """(weighted mean loss over the rows, accuracy); the loss is NaN when their weights
        sum to 0."""
        n = len(X) if rows is None else len(rows)
        batch_size = self._batch_for(X, batch_size)
        total, wsum, correct = 0.0, 0.0, 0
        with blas_threads_limited():  # see _outputs
            for start in range(0, n, batch_size):
                r = np.arange(start, min(start + batch_size, n)) if rows is None else rows[start:start + batch_size]
                ws = self._ws_for(len(r))
                out = self._forward_ws(ws, self._gather(X, r, ws), False)
                yb = np.take(Y, r, axis=0, out=ws.target_buffer(Y), mode="clip")
                wb = None if W is None else np.take(W, r, out=ws.target_buffer(W), mode="clip")
                loss, _ = self.loss.loss_and_grad(out, yb, ws.grad, wb)
                correct += self.loss.count_correct(out, yb)
                w = weight_sum(wb, len(r))
                total += loss * w
                wsum += w
        mean = total / wsum if wsum > 0 else math.nan
        return mean, accuracy(correct, n, self.loss, self.n_outputs)

    def evaluate(self, X, y, batch_size=1024, sample_weight=None):
        """(mean loss, accuracy) as floats over X (N, n_features) and targets y; accuracy is NaN
        when the loss defines none. sample_weight: None or (N,) weights (as fit takes them):
        the loss is then the weighted mean; the accuracy counts rows."""
        batch_size = check_positive_int(batch_size, "batch_size")
        X = self._check_X(X, "X")
        Y = self._check_targets(y, len(X), "y", "X")
        W = _validate.check_sample_weight(sample_weight, len(X), self.dtype)
        return self._evaluate_prepared(X, Y, None, batch_size, W)

    def _outputs(self, X, batch_size):
        """Outputs (N, n_outputs) for X as _check_X returns it, layer by layer."""
        result = np.empty((len(X), self.n_outputs), self.dtype)
        batch_size = self._batch_for(X, batch_size)
        # One BLAS thread: beside fastnn's own threads a multithreaded OpenBLAS made prediction
        # 4x slower here (MNIST test set, 784-100-10: 80 ms against 20 ms).
        with blas_threads_limited():
            for start in range(0, len(X), batch_size):
                r = np.arange(start, min(start + batch_size, len(X)))
                ws = self._ws_for(len(r))
                result[start:start + len(r)] = self._forward_ws(ws, self._gather(X, r, ws), False)
        return result

    def _infer(self, X, batch_size, method):
        """loss.<method> of the outputs for X, in one compiled call (fastnn._inference)."""
        batch_size = check_positive_int(batch_size, "batch_size")
        plan = self._plan
        if plan is None or not plan.current(self.input_scale, self.input_shift):
            plan = self._plan = _inference.build_plan(self)
        if plan is None:
            X = self._check_X(X, "X")
            self._warn_if_far(X)
            return getattr(self.loss, method)(self._outputs(X, batch_size))
        # The checks of _check_X in a few attribute reads; anything else goes through it.
        if not (type(X) is np.ndarray and X.ndim == 2 and X.shape[1] == self.n_features
                and X.shape[0] and X.dtype in _INPUT_DTYPES and X.flags.c_contiguous):
            X = self._check_X(X, "X")
        head = _inference.head(self.loss, method, self.n_outputs)
        head_code = _core.HEAD_OUTPUTS if head is None else head
        if isinstance(X, _sparse.SparseRows):  # dense chunks of rows, one compiled call each
            step = _sparse.rows_per_chunk(self.n_features)
            _inference.before_call(min(step, len(X)))
            out = np.concatenate([_core.infer(plan, X.dense_rows(np.arange(i, min(i + step, len(X)))),
                                              head_code) for i in range(0, len(X), step)])
        else:
            _inference.before_call(len(X))
            out = _core.infer(plan, X, head_code)
        if out is None:  # NaN/Inf or overflow once scaled: _check_X says where
            self._check_X(X, "X")
            raise AssertionError("infer refused an input that _check_X accepts")
        self._warn_if_far(X)
        return getattr(self.loss, method)(out) if head is None else out

    def _warn_if_far(self, X):
        """The RuntimeWarning of predict/predict_proba (called from _infer) when X lies far
        from the inputs fit saw; none without input_range or with track_input_range off."""
        if self.input_range is not None and getattr(self, "track_input_range", True):
            _range.warn_if_far(self, X, stacklevel=5)  # the caller of predict

    def predict(self, X, batch_size=1024):
        """Predictions for X (N, n_features): class labels (N,) for SoftmaxCrossEntropy and for
        BinaryCrossEntropy with one output, a 0/1 int64 matrix (N, K) for BinaryCrossEntropy
        over K > 1 outputs (multi-label), outputs (N, n_outputs) for MSE.

        The whole forward pass runs in one compiled call, in blocks of 64 rows (batch_size is
        checked but no longer needed): on the calling thread, or for 449 rows and more shared
        among fastnn's threads. A row's result does not depend on the other rows: it has the
        same bits alone as in any batch. X: uint8, float32 or float64
        (other real dtypes are converted). Raises ValueError for a wrong shape, NaN/Inf or values
        that overflow the network dtype once scaled, TypeError for a non-real dtype. Emits one
        RuntimeWarning when X lies far from the inputs ``fit`` saw (``input_range``; the rule is
        in fastnn._range), none while ``track_input_range`` is False."""
        return self._infer(X, batch_size, "predict")

    def predict_proba(self, X, batch_size=1024):
        """Probabilities: softmax (N, K) for SoftmaxCrossEntropy, P(class 1) (N,) for
        BinaryCrossEntropy with one output and the K sigmoids (N, K) with K > 1, the outputs for
        MSE; computed (and warned about) as predict() is."""
        return self._infer(X, batch_size, "predict_proba")

    # -- validation ---------------------------------------------------------------------------

    def _check_X(self, X, argname):
        return self._check_X_extremes(X, argname)[0]

    def _check_X_extremes(self, X, argname):
        """(X checked as the inputs of this network, (its least entry, its greatest entry)); the
        extremes are None for sparse X."""
        if isinstance(X, _sparse.SparseRows):
            return X, None
        if _sparse.is_sparse(X):
            return _sparse.check(X, self.n_features, self.dtype, self.input_scale,
                                 self.input_shift, argname), None
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as exc:  # ragged nested lists and the like
            raise ValueError(f"{argname}: cannot be read as a 2-D array ({exc})") from None
        _validate.network_input(X, self.n_features, argname)
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
        return X, (float(lo), float(hi))

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
