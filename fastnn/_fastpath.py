"""The compiled training engine: whole runs of training steps in one native call.

Every network the API builds from fastnn's own layers (Linear + activation blocks, Dropout after
a block or on the input), with softmax cross-entropy, binary cross-entropy over K outputs or MSE,
optional per-sample weights, and SGD (momentum, Nesterov, weight decay), Adam or AdamW, trains
through ``_core.TrainingEngine``: the batch gather, forward, loss, backward and update of many
steps happen in C without returning to Python. ``unsupported_reason`` says when it cannot (a
user-defined layer or loss, another optimizer). The parameters and the optimizer's state
buffers (``Optimizer.state_for``) are the ones the layer-by-layer path uses, and the Dropout
masks come from the same generator in the same order, so the two engines give the same weights
up to rounding and can take turns (checkpoints do not care which one ran).
"""
import time
import weakref

import numpy as np

from . import layers as _layers
from ._native import core as _core
from ._threads import blas_threads_limited, get_num_threads, threads_pinned
from .layers import Dropout, Linear
from .losses import registry_entry
from .optim import SGD, Adam, AdamW

_OPTIMIZER_KINDS = {SGD: "sgd", Adam: "adam", AdamW: "adamw"}
_MAX_LINEARS = 256  # train.pxi's limit
_STEP_ELEMENTS = 1 << 23  # input values per native call: progress about every 0.05 s
_PROBE_STEPS = 16
_UNIFORMS = 1 << 20  # Dropout uniforms drawn per native call at most (but one step's at least)
# The parts each step's work is cut into (train.pxi's n_parts), whatever the thread count: the
# weights depend on the parts, not on the threads that run them, so a seed gives the same weights
# on any machine. Measured on 2 cores (784-128-10, batch 32 and 128) 1 and 2 threads run as fast
# with 4 parts as with one part per thread; see the README ("Threads and reproducibility").
N_PARTS = 4
# A step of fewer multiply-adds than this (batch x the weights) runs as one part, so on one
# thread: split four ways, its products become calls too small for BLAS and its partial sums
# cost more than the second core gives back. Measured on 2 cores (float64, Adam, one thread):
# 8-100-1 at batch 200 took 86 us per step in one part against 153 us in four, 64-64-64-10 at
# batch 32 51 against 59 us; 784-128-10 at batch 32 (3.3M) is the same either way at one
# thread and 1.7x faster on two. Like N_PARTS, it depends on the network, not the machine.
SMALL_STEP_MACS = 1 << 20


def n_parts(dims, batch_size):
    """The parts a step of a network of layer widths ``dims`` is cut into at ``batch_size``."""
    macs = batch_size * sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 1 if macs < SMALL_STEP_MACS else N_PARTS


def most_threads(dims, batch_size):
    """The most threads the loop runs for a network of layer widths ``dims`` at ``batch_size``
    (one per part at most; the ThreadChooser may run fewer)."""
    return min(get_num_threads(), n_parts(dims, batch_size))


# One ThreadChooser per network, kept across fits (what it measured still holds for the next).
_CHOOSERS = weakref.WeakKeyDictionary()


def _activation(layer):
    """(C code, parameter) of one of fastnn's activation layers (their fastnn.activations
    entry), or None for anything else (a subclass may compute something else)."""
    entry = getattr(type(layer), "entry", None)
    if entry is None or getattr(_layers, entry.layer, None) is not type(layer):
        return None
    return entry.code, float(layer.param)


def _blocks(layers):
    """(linears, (code, param) of the activation after each Linear, Dropout probability on each
    Linear's input), or the reason why the layers are not Linear [activation] [Dropout] blocks
    (with an optional Dropout on the input)."""
    linears, acts, drop = [], [], []
    pending, previous = 0.0, None  # Dropout on the next Linear's input; the last layer's kind
    for i, layer in enumerate(layers):
        kind = type(layer)
        if kind is Linear:
            linears.append(layer)
            acts.append((0, 0.0))
            drop.append(pending)
            pending, previous = 0.0, "linear"
        elif kind is Dropout:
            if previous == "dropout":
                return f"layers[{i}] (Dropout) follows another Dropout"
            pending, previous = layer.p, "dropout"
        elif _activation(layer) is not None:
            if previous != "linear":
                return f"layers[{i}] ({kind.__name__}) does not follow a Linear"
            acts[-1] = _activation(layer)
            previous = "activation"
        else:
            return f"layers[{i}] is a user-defined Layer ({kind.__name__})"
    if previous == "dropout":
        return "a Dropout after the last Linear has no compiled step"
    if len(linears) > _MAX_LINEARS:
        return f"more than {_MAX_LINEARS} Linear layers"
    return linears, acts, drop


def unsupported_reason(network, optimizer, sample_weight):
    """None when the compiled engine trains ``network`` with ``optimizer`` (and per-sample weights
    or None), else one short phrase saying why not."""
    loss = network.loss
    if registry_entry(loss) is None:
        return f"loss {type(loss).__name__} has no compiled kernel"
    if optimizer is not None and type(optimizer) not in _OPTIMIZER_KINDS:
        return f"optimizer {type(optimizer).__name__} has no compiled step"
    blocks = _blocks(network.layers)
    if isinstance(blocks, str):
        return blocks
    if sample_weight is not None and np.ndim(sample_weight) != 1:
        return "sample_weight is not one weight per row"
    return None


class CompiledEngine:
    """The compiled training engine for one fit (see the module docstring).

    network: a Network that ``unsupported_reason`` accepts with ``optimizer``; X as
    ``Network._check_X`` returns it (uint8/float32/float64, C-contiguous, (N, n_features));
    targets as ``network.loss.prepare_targets`` returns them (labels (N,) for softmax
    cross-entropy, (N, K) of the network dtype for the others); sample_weight None or (N,) finite
    and >= 0; batch_size >= 1; x_extremes None or X's (least, greatest) entry, which must hold
    (``Network._check_X_extremes`` gives them): the steps then prove the first layer's weight
    gradient finite from a bound instead of reading it (src_c/mlp_impl.h). Raises ValueError
    when the network or optimizer is unsupported or an argument does not fit.
    """

    def __init__(self, network, optimizer, X, targets, sample_weight, batch_size, x_extremes=None):
        reason = unsupported_reason(network, optimizer, sample_weight)
        if reason is not None:
            raise ValueError(f"the compiled engine cannot train this network: {reason}")
        self.network, self.optimizer, self.batch_size = network, optimizer, int(batch_size)
        self.linears, self.acts, self.drop = _blocks(network.layers)
        dtype = network.dtype
        entry = registry_entry(network.loss)
        self.loss_kind = entry.code
        if entry.targets == "labels":
            targets = np.ascontiguousarray(targets, dtype=np.int64)
        else:
            targets = np.ascontiguousarray(targets, dtype=dtype).reshape(len(targets), -1)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)
        self.X, self.targets, self.sample_weight = X, targets, sample_weight
        self.x_extremes = x_extremes
        self.threads = _CHOOSERS.setdefault(network, ThreadChooser())
        self._uniforms = None
        self._engine, self._held = None, None
        self._current_engine()  # checks the arrays now

    @staticmethod
    def blas_scope_for(network, batch_size):
        """The BLAS limit for training ``network`` at ``batch_size`` on this engine (a context
        manager; ``fit`` holds it for the whole fit): BLAS on one thread, since the loop's own
        threads split the work, and OpenBLAS's workers ended if they spin when the loop may
        run more than one thread (they would spin on its cores; see fastnn._blas_pools)."""
        linears = _blocks(network.layers)[0]
        dims = [linears[0].W.shape[0]] + [layer.W.shape[1] for layer in linears]
        return blas_threads_limited(1, stop_workers=most_threads(dims, batch_size) > 1)

    def _current_engine(self):
        """The TrainingEngine over the current parameter and state arrays (rebuilt when the
        optimizer's state buffers or the layers' arrays were replaced since the last epoch)."""
        params = [p for layer in self.linears for p in (layer.W, layer.b)]
        state = self.optimizer.state_for(params)
        held = params + [a for name in sorted(state) for a in state[name]]
        if self._held is None or len(held) != len(self._held) or any(a is not b for a, b in zip(held, self._held)):
            first = state.get("momentum_buffer") or state.get("exp_avg")
            self._engine = _core.TrainingEngine(
                params[0::2], params[1::2], [a[0] for a in self.acts], [a[1] for a in self.acts], self.drop,
                self.X, self.loss_kind, self.targets, self.sample_weight, self.batch_size,
                _OPTIMIZER_KINDS[type(self.optimizer)], first, state.get("exp_avg_sq"))
            self._held = held
        return self._engine

    def _input_bound(self):
        """max |x * input_scale + input_shift| over X (the map is monotonic, so X's extremes
        give it; uint8 X lies within its type's range), or -1 when X's extremes are unknown."""
        extremes = self.x_extremes
        if extremes is None and self.X.dtype == np.uint8:
            extremes = (0, np.iinfo(np.uint8).max)
        if extremes is None:
            return -1.0
        scale, shift = self.network.input_scale, self.network.input_shift
        return max(abs(v * scale + shift) for v in extremes)

    def _hyperparameters(self):
        opt = self.optimizer
        if type(opt) is SGD:
            return {"lr": opt.lr, "momentum": opt.momentum, "weight_decay": opt.weight_decay,
                    "nesterov": opt.nesterov}
        return {"lr": opt.lr, "weight_decay": opt.weight_decay, "beta1": opt.beta1, "beta2": opt.beta2,
                "eps": opt.eps}

    def run_epoch(self, order, rng, bar, on_diverged):
        """Train on rows ``order`` in batches of batch_size; returns (loss_sum, weight_sum,
        correct, seen): the weighted sum of the per-sample losses and of the weights (the row
        count without weights), the rows predicted right (argmax == label for softmax
        cross-entropy; every output on the right side of 0 for binary cross-entropy; argmax ==
        the target's argmax for MSE over K >= 2 outputs, none for K = 1) and the rows trained on.
        Reads the optimizer's hyper-parameters (lr, ...) now. rng: the generator of the Dropout
        masks; bar: None or a tqdm bar; on_diverged(step) returns the exception raised when a
        loss or gradient is not finite (1-based step; nothing of that step is applied)."""
        engine = self._current_engine()
        net, opt = self.network, self.optimizer
        order = np.ascontiguousarray(order, dtype=np.int64)
        engine.start_epoch(order, net.input_scale, net.input_shift, self._input_bound())
        batch = self.batch_size
        n_steps = -(-len(order) // batch)
        chunk = max(1, _STEP_ELEMENTS // (batch * engine.dims[0]))
        if engine.uniforms_per_row:  # the chunk's Dropout uniforms stay a few MB
            chunk = min(chunk, max(1, _UNIFORMS // (batch * engine.uniforms_per_row)))
        if engine.uniforms_per_row and (self._uniforms is None or len(self._uniforms) < chunk * batch * engine.uniforms_per_row):
            self._uniforms = np.empty(chunk * batch * engine.uniforms_per_row, engine.dtype)
        totals = [0.0, 0.0, 0, 0]
        parts = n_parts(engine.dims, batch)
        self.threads.start(most_threads(engine.dims, batch), pinned=threads_pinned())
        with blas_threads_limited(1):  # the loop's own threads split the work
            first = 0
            while first < n_steps:
                threads, probing = self.threads.next()
                # A probe needs only a few steps: under contention a slow choice costs ms per step.
                stop = min(first + (min(chunk, _PROBE_STEPS) if probing else chunk), n_steps)
                uniforms = None
                needed = engine.n_uniforms(first, stop)
                if needed:  # the layer path's draws: per step, per Dropout in layer order
                    uniforms = self._uniforms[:needed]
                    rng.random(out=uniforms, dtype=engine.dtype)
                t0 = time.perf_counter()
                loss_sum, weight_sum, correct, seen, failed = engine.run(
                    first, stop, uniforms, steps_before=opt.steps, n_parts=parts, n_threads=threads,
                    **self._hyperparameters())
                opt.steps += (failed if failed >= 0 else stop) - first  # a failed step applies nothing
                self.threads.record(threads, (time.perf_counter() - t0) / (stop - first))
                for i, value in enumerate((loss_sum, weight_sum, correct, seen)):
                    totals[i] += value
                if failed >= 0:
                    raise on_diverged(failed + 1)
                if bar is not None:
                    bar.update(stop - first)
                    if totals[1] > 0:
                        bar.set_postfix_str(f"loss={totals[0] / totals[1]:.4f}", refresh=False)
                first = stop
        return tuple(totals)


class ThreadChooser:
    """Picks the thread count of each native call from measured time per step.

    Several threads meet at barriers several times per step; when another process wants a
    core, each meeting waits for the scheduler and one thread is then many times faster. So,
    unless the count was pinned with fastnn.set_num_threads, the loop times each call, uses
    the faster of ``configured`` and 1 thread (the other count must be SWITCH_MARGIN times
    faster to be taken), and tries the other again after a number of calls that doubles each
    time it loses (back to the minimum when it wins). The first call
    with each count only warms up (thread start, first touch of the buffers) and is not counted.
    """

    MIN_INTERVAL, MAX_INTERVAL = 8, 256
    SWITCH_MARGIN = 1.2

    def __init__(self):
        self.configured, self.pinned = 1, True
        self.per_step, self.warmed = {}, set()
        self.current, self.interval, self.since_probe = 1, self.MIN_INTERVAL, 0

    def start(self, configured, pinned):
        if (configured, pinned) != (self.configured, self.pinned):
            self.configured, self.pinned = configured, pinned
            self.per_step, self.warmed = {}, set()
            self.current, self.interval, self.since_probe = configured, self.MIN_INTERVAL, 0

    def next(self):
        """(threads for the next call, whether that call is a probe)."""
        if self.pinned or self.configured == 1:
            return self.configured, False
        for candidate in (self.configured, 1):  # measure both once
            if candidate not in self.per_step:
                return candidate, True
        if self.since_probe >= self.interval:
            return (1 if self.current != 1 else self.configured), True
        return self.current, False

    def record(self, threads, seconds_per_step):
        if self.pinned or self.configured == 1:
            return
        if threads not in self.warmed:
            self.warmed.add(threads)
            return
        previous = self.per_step.get(threads)
        # A probe's figure replaces the old one (the load may have changed since); the count in
        # use is smoothed.
        if previous is None or threads != self.current:
            self.per_step[threads] = seconds_per_step
        else:
            self.per_step[threads] = 0.5 * (previous + seconds_per_step)
        if len(self.per_step) < 2:
            return
        other = next(t for t in self.per_step if t != self.current)
        # The other count must win clearly: a probe is a few ms, and one slow moment of it
        # (a page fault, a timer tick) must not send a whole fit to the slower count. Another
        # process on a core makes the configured count many times slower, not 20 %.
        other_wins = self.per_step[other] * self.SWITCH_MARGIN < self.per_step[self.current]
        if threads != self.current:  # a probe of the other count
            self.since_probe = 0
            if other_wins:
                self.current, self.interval = threads, self.MIN_INTERVAL
            else:
                self.interval = min(2 * self.interval, self.MAX_INTERVAL)
        else:
            self.since_probe += 1
            if other_wins:
                self.current = other
