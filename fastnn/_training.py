"""The training loop behind ``Network.fit``: argument checks, the epoch loop, resumable state
and the layer-by-layer engine.

Two engines train a network, both built once per fit and called the same way:
``engine.run_epoch(order, rng, bar, on_diverged) -> (loss_sum, weight_sum, correct, seen)``,
inside ``engine.blas_scope_for(network, batch_size)`` (the BLAS thread limit the engine trains
under, a context manager ``fit`` holds for the whole fit).
The compiled one (``CompiledEngine``) runs whole chunks of steps in C; ``LayerEngine`` runs one
Python step per batch through fastnn.ops, for every network (the reference).

The divergence rule, the same in both: a step whose loss, or any entry of whose gradients, is
NaN or Inf is not applied and stops training with TrainingDivergedError; the weights stay the
last finite ones. (Large finite gradients whose squares overflow do not stop training.)
"""
import copy
import functools
import math
import numbers
import time
import warnings

import numpy as np

from . import _fused, _range, _sparse, _validate, ops
from ._fastpath import CompiledEngine, unsupported_reason
from ._threads import blas_threads_limited, get_num_threads, kernels_on_calling_thread
from .errors import TrainingDivergedError, TrainingUnstableWarning
from .history import EarlyStopping, History
from .layers import check_positive_int, check_seed
from .losses import accuracy, weight_sum
from .optim import SGD, Optimizer, check_bool, check_real
from .optim import get as get_optimizer

ENGINES = ("auto", "compiled", "layers")


def _explosion_limits():
    """(EXPLOSION_FACTOR, EXPLOSION_SAMPLE), read from their public home, fastnn.network, when
    used (so that setting them there takes effect)."""
    from . import network
    return network.EXPLOSION_FACTOR, network.EXPLOSION_SAMPLE


# -- the layer-by-layer engine ------------------------------------------------------------------

class _NonFinite(Exception):
    """A training step produced a non-finite loss or gradient (nothing of it applied)."""

    def __init__(self, what, loss):
        super().__init__(what)
        self.what, self.loss = what, loss


class LayerEngine:
    """One Python step per batch through the network's fused plan (fastnn._fused) and fastnn.ops;
    trains every network the API builds. Same interface as CompiledEngine."""

    def __init__(self, network, optimizer, X, targets, sample_weight, batch_size):
        self.network, self.optimizer = network, optimizer
        self.X, self.targets, self.sample_weight = X, targets, sample_weight
        self.batch_size = batch_size
        self.params = network.parameters()

    @staticmethod
    def blas_scope_for(network, batch_size):
        """BLAS keeps its threads on this path, up to fastnn's count, for the whole fit (its
        elementwise kernels run on one thread; see kernels_on_calling_thread)."""
        return blas_threads_limited(get_num_threads())

    def run_epoch(self, order, rng, bar, on_diverged):
        """Train on rows ``order`` (int64) in batches; returns (sum of batch loss * batch
        weight, sum of weights, number correct, number seen). on_diverged(step, what, loss)
        builds the error raised at a non-finite step (1-based)."""
        total, wsum, correct, seen = 0.0, 0.0, 0, 0
        with kernels_on_calling_thread():
            for step, start in enumerate(range(0, len(order), self.batch_size), 1):
                rows = order[start:start + self.batch_size]
                try:
                    loss, c, w = self.step(rows, rng)
                except _NonFinite as exc:
                    raise on_diverged(step, exc.what, exc.loss) from None
                total, wsum = total + loss * w, wsum + w
                correct, seen = correct + c, seen + len(rows)
                if bar is not None:
                    bar.update(1)
                    if step % 25 == 0 and wsum > 0:
                        bar.set_postfix_str(f"loss={total / wsum:.4f}", refresh=False)
        return total, wsum, correct, seen

    def step(self, rows, rng):
        """One update on the given rows; returns (mean batch loss, number correct, batch
        weight). Raises _NonFinite before touching the parameters when the loss or a gradient
        is not finite."""
        net = self.network
        ws = net._ws_for(len(rows))
        xb = ops.gather_rows(self.X, rows, net.input_scale, net.input_shift, ws.x)
        yb = np.take(self.targets, rows, axis=0, out=ws.target_buffer(self.targets), mode="clip")
        wb = None
        if self.sample_weight is not None:
            wb = np.take(self.sample_weight, rows, out=ws.weights, mode="clip")
        out = _fused.forward(ws, xb, True, rng)
        loss, grad = net.loss.loss_and_grad(out, yb, ws.grad, wb)
        if not math.isfinite(loss):
            raise _NonFinite("loss", loss)
        correct = net.loss.count_correct(out, yb)
        _fused.backward(ws, grad)
        if not _all_finite(net._grad_flat):
            raise _NonFinite("gradient", loss)
        self.optimizer.step(self.params, net.gradients())
        return loss, correct, weight_sum(wb, len(rows))


def _all_finite(flat):
    """True when every entry of ``flat`` is finite. One BLAS dot decides in the common case;
    only when it is not finite (some entry is, or the squares overflow) are the entries
    looked at one by one."""
    return math.isfinite(float(np.dot(flat, flat))) or bool(np.isfinite(flat).all())


def make_engine(network, optimizer, X, targets, sample_weight, batch_size, engine, x_extremes=None):
    """The engine object fit trains with: "compiled" (ValueError with the reason when it cannot
    train this network), "layers", or "auto" (compiled when it can). x_extremes: None or X's
    (least, greatest) entry, which the compiled engine uses (see CompiledEngine)."""
    reason = unsupported_reason(network, optimizer, sample_weight)
    if engine == "compiled" and reason is not None:
        raise ValueError(f"engine: 'compiled' cannot train this network: {reason}; use "
                         "engine='auto' or 'layers'")
    cls = CompiledEngine if engine != "layers" and reason is None else LayerEngine
    if isinstance(X, _sparse.SparseRows):
        return _sparse.ChunkedEngine(cls, network, optimizer, X, targets, sample_weight, batch_size)
    if cls is CompiledEngine:
        return cls(network, optimizer, X, targets, sample_weight, batch_size, x_extremes)
    return cls(network, optimizer, X, targets, sample_weight, batch_size)


def diverged_error(epoch, step, optimizer, what=None, loss=None):
    """The TrainingDivergedError of a non-finite step; what: "loss", "gradient" or None when
    the engine does not say."""
    subject = "the loss or a gradient" if what is None else f"the {what}"
    detail = "" if loss is None else f" (batch loss {loss})"
    return TrainingDivergedError(
        f"training diverged at epoch {epoch}, step {step}: {subject} is not finite{detail}. The "
        f"weights from before this step are kept; try a lower learning rate "
        f"(lr={optimizer.lr:g}).", epoch=epoch, step=step,
        loss=math.nan if loss is None else loss)


# -- fit ----------------------------------------------------------------------------------------

class _Run:
    """One fit call: its checked arguments, data, generators and engine."""


def fit(network, X, y, *, epochs, batch_size, optimizer, validation_data, validation_split,
        early_stopping, shuffle, seed, callbacks, progress, schedule, initial_epoch, resume,
        verbose, sample_weight, engine):
    """Network.fit (documented there)."""
    run = _check_arguments(network, X, y, epochs, batch_size, optimizer, validation_split,
                           early_stopping, shuffle, seed, callbacks, progress, schedule,
                           initial_epoch, resume, verbose, sample_weight, engine)
    _prepare(network, run, validation_data, resume)
    history = History(initial_epoch=run.initial_epoch)
    last_epoch = run.initial_epoch if run.stopped else run.epochs  # a stopped run has nothing left
    # One BLAS limit for the whole fit: set and restored once, not around every epoch and
    # evaluation (a restored limit restarts the OpenBLAS workers the compiled loop ends).
    with run.engine.blas_scope_for(network, run.batch_size):
        run.loss_before = _loss_before_training(network, run) if last_epoch > run.initial_epoch else None
        for e in range(run.initial_epoch, last_epoch):
            logs = _train_epoch(network, run, e)
            history.append(logs)
            if _after_epoch(network, run, e, logs):
                history.stopped_early = e + 1 < run.epochs
                break
    if run.stopped:
        history.stopped_early = run.initial_epoch < run.epochs
    if run.stopper is not None:
        run.stopper.restore(network)
        history._best_epoch = run.stopper.best_epoch
    return history


def _check_arguments(network, X, y, epochs, batch_size, optimizer, validation_split,
                     early_stopping, shuffle, seed, callbacks, progress, schedule, initial_epoch,
                     resume, verbose, sample_weight, engine):
    run = _Run()
    run.epochs = check_positive_int(epochs, "epochs")
    run.batch_size = check_positive_int(batch_size, "batch_size")
    run.shuffle = check_bool(shuffle, "shuffle")
    seed = check_seed(seed, "seed")
    _check_resume(resume, seed)
    run.initial_epoch = _check_initial_epoch(initial_epoch, resume, run.epochs)
    run.engine = _check_engine(engine)
    run.X, run.x_extremes = network._check_X_extremes(X, "X")
    run.Y = network._check_targets(y, len(run.X), "y", "X")
    run.W = _validate.check_sample_weight(sample_weight, len(run.X), network.dtype)
    run.split = check_real(validation_split, "validation_split", 0.0, 1.0, high_open=True)
    if optimizer is None and network.optimizer is not None:
        # continue with the network's optimizer (the last fit's or a loaded one)
        if not isinstance(network.optimizer, Optimizer):
            raise TypeError(f"net.optimizer: expected an Optimizer to continue with (or pass "
                            f"optimizer=), got {network.optimizer!r}")
        optimizer = network.optimizer
    run.optimizer = SGD(lr=0.1, momentum=0.9) if optimizer is None else get_optimizer(optimizer)
    run.progress, run.epoch_lines = _check_verbose(verbose, progress)
    run.stopper = _as_early_stopping(early_stopping)
    if resume is not None and (resume["early_stopping"] is None) != (run.stopper is None):
        raise ValueError("resume: the state was saved from a run "
                         f"{'with' if run.stopper is None else 'without'} early stopping; "
                         "give the same early_stopping")
    run.callbacks = _as_callbacks(callbacks)
    if schedule is not None and not callable(getattr(schedule, "lr_at", None)):
        raise TypeError(f"schedule: expected an object with lr_at(epoch, base_lr), got {schedule!r}")
    run.schedule = schedule
    if resume is not None:
        run.seed = resume["seed"]
    else:
        run.seed = int(network._rng.integers(2 ** 63)) if seed is None else seed
    return run


def _prepare(network, run, validation_data, resume):
    """Split the rows, build the engine and restore a resumed state: what fit does before
    its first epoch."""
    run.rng = np.random.default_rng(run.seed)
    run.train_rows, run.val = _validation_rows(network, run, validation_data)
    run.n_train = len(run.X) if run.train_rows is None else len(run.train_rows)
    run.batch_size = min(run.batch_size, run.n_train)
    run.engine = make_engine(network, run.optimizer, run.X, run.Y, run.W, run.batch_size,
                             run.engine, run.x_extremes)
    if run.stopper is not None:
        run.stopper.reset(has_validation=run.val is not None)
    run.base_lr, run.stopped = _schedule_base(run.optimizer), False
    if resume is not None:
        _set_generator_state(run.rng, resume["shuffle_rng"], "shuffle_rng")
        _set_generator_state(network._rng, resume["network_rng"], "network_rng")
        run.base_lr, run.stopped = resume["base_lr"], resume["stopped"]
        if run.stopper is not None:
            run.stopper.load_state_dict(resume["early_stopping"])
    # The network changes from here on: every refusal came before.
    if getattr(network, "track_input_range", True):  # networks pickled before it existed: True
        network.input_range = _range.union(
            network.input_range, _range.observed_range(run.X, network.input_scale, network.input_shift))
    network.optimizer = run.optimizer
    run.params = network.parameters()
    run.state = network._fit_state = _FitState(run.seed, run.rng, run.base_lr, run.stopper)
    run.state.capture(network, run.initial_epoch, run.stopped)
    # Safety net for a pathological overflow inside the update itself (the per-step checks
    # stop any update computed from a non-finite loss or gradient).
    run.snapshot = [np.empty_like(p) for p in run.params]


def _validation_rows(network, run, validation_data):
    """(training row indices or None for all rows, (X_val, Y_val, val rows or None,
    W_val or None) or None)."""
    X, Y, W, split = run.X, run.Y, run.W, run.split
    if validation_data is not None:
        if split:
            raise ValueError("give validation_data or validation_split, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError("validation_data: expected a pair (X_val, y_val) or a triple "
                            "(X_val, y_val, sample_weight_val)")
        Xv = network._check_X(validation_data[0], "validation_data[0]")
        Yv = network._check_targets(validation_data[1], len(Xv), "validation_data[1]",
                                    "validation_data[0]")
        Wv = None
        if len(validation_data) == 3:
            Wv = _validate.check_sample_weight(validation_data[2], len(Xv), network.dtype, "validation_data[2]")
        return None, (Xv, Yv, None, Wv)
    if not split:
        return None, None
    n_val = max(1, int(len(X) * split))
    if n_val >= len(X):
        raise ValueError(f"validation_split={split} leaves no training rows out of {len(X)}")
    perm = run.rng.permutation(len(X))
    train, held = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    if W is not None:
        for rows, what in ((train, "training"), (held, "validation")):
            if not W[rows].any():
                raise ValueError(f"sample_weight: the {len(rows)} {what} rows drawn by "
                                 f"validation_split={split} all have weight 0")
    return train, (X, Y, held, W)


def _loss_before_training(network, run):
    """Weighted mean loss of the current weights on the first EXPLOSION_SAMPLE training rows
    (None when it is not finite, or 0: the divergence checks handle the former)."""
    sample = _explosion_limits()[1]
    rows = np.arange(min(len(run.X), sample)) if run.train_rows is None else run.train_rows[:sample]
    with np.errstate(over="ignore", invalid="ignore"):
        loss = network._evaluate_prepared(run.X, run.Y, rows, sample, run.W)[0]
    return loss if math.isfinite(loss) and loss > 0 else None


def _schedule_base(optimizer):
    """The lr a schedule scales in this fit: the base of the last schedule that set
    optimizer.lr, while lr is still what that schedule set (so that fit(initial_epoch=k), or a
    second fit with a schedule, scales the same base as the first fit did, as PyTorch's
    schedulers keep ``initial_lr``); else the optimizer's lr now (set by hand since, or never
    scheduled)."""
    base, scheduled_lr = getattr(optimizer, "_scheduled", (None, None))
    return base if base is not None and optimizer.lr == scheduled_lr else optimizer.lr


def _epoch_order(run):
    if run.shuffle:
        order = run.rng.permutation(run.n_train)
        return order if run.train_rows is None else run.train_rows[order]
    return np.arange(run.n_train) if run.train_rows is None else run.train_rows


def _train_epoch(network, run, e):
    """Epoch e + 1: its steps and the validation; returns its logs."""
    if run.schedule is not None:
        run.optimizer.lr = run.schedule.lr_at(e, run.base_lr)
        run.optimizer._scheduled = (run.base_lr, run.optimizer.lr)
    order = _epoch_order(run)
    t0 = time.perf_counter()
    for dst, src in zip(run.snapshot, run.params):
        np.copyto(dst, src)
    n_steps = -(-run.n_train // run.batch_size)
    bar = _progress_bar(n_steps, e + 1, run.epochs) if run.progress else None

    def on_diverged(step, what=None, loss=None):
        return diverged_error(e + 1, step, run.optimizer, what, loss)

    try:
        try:
            # Overflow is caught by the divergence checks; no RuntimeWarning on the way.
            with np.errstate(over="ignore", invalid="ignore"):
                total, wsum, correct, seen = run.engine.run_epoch(
                    np.ascontiguousarray(order, dtype=np.int64), network._rng, bar, on_diverged)
        except TrainingDivergedError:
            if not all(np.isfinite(p).all() for p in run.params):
                for dst, src in zip(run.params, run.snapshot):
                    np.copyto(dst, src)
            raise
        logs = _epoch_logs(network, run, e, total / wsum, correct, seen)
        logs["seconds"] = time.perf_counter() - t0
        if bar is not None:
            bar.set_postfix_str(_format_logs(logs), refresh=True)
    finally:
        if bar is not None:
            bar.close()
    return logs


def _epoch_logs(network, run, e, train_loss, correct, seen):
    logs = {"epoch": e + 1, "train_loss": train_loss,
            "train_accuracy": accuracy(correct, seen, network.loss, network.n_outputs),
            "lr": run.optimizer.lr}
    if run.val is not None:
        Xv, Yv, rows, Wv = run.val
        logs["val_loss"], logs["val_accuracy"] = network._evaluate_prepared(Xv, Yv, rows, 1024, Wv)
    return logs


def _after_epoch(network, run, e, logs):
    """Report, warn, record and call back after epoch e + 1; True when training stops."""
    if run.epoch_lines:
        print(f"Epoch {e + 1}/{run.epochs} - {_format_logs(logs)} ({logs['seconds']:.2f} s)",
              flush=True)
    factor = _explosion_limits()[0]
    if run.loss_before is not None and logs["train_loss"] > factor * max(run.loss_before, 1.0):
        warnings.warn(f"the training loss grew from {run.loss_before:.4g} before training to "
                      f"{logs['train_loss']:.4g} at epoch {e + 1} (more than "
                      f"{factor:g}x): the learning rate (lr={run.optimizer.lr:g}) is "
                      "probably too high", TrainingUnstableWarning, stacklevel=4)
        run.loss_before = None  # once per fit
    # Early stopping records this epoch before the callbacks run, so that a callback saving
    # training_state() saves the whole epoch.
    stop = run.stopper is not None and run.stopper.update(e, logs, network)
    run.state.capture(network, e + 1, stop)
    for cb in run.callbacks:
        if _says_stop(cb(e, dict(logs), network)):
            stop = True
    return stop


# -- resumable state ----------------------------------------------------------------------------

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
    check_seed(resume["seed"], "resume['seed']")
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


# -- argument checks ----------------------------------------------------------------------------

def _check_engine(engine):
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    return engine


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


# -- output -------------------------------------------------------------------------------------

def _format_logs(logs):
    parts = [f"loss={logs['train_loss']:.4f}"]
    if not math.isnan(logs["train_accuracy"]):
        parts.append(f"acc={logs['train_accuracy']:.4f}")
    if "val_loss" in logs:
        parts.append(f"val_loss={logs['val_loss']:.4f}")
        if not math.isnan(logs["val_accuracy"]):
            parts.append(f"val_acc={logs['val_accuracy']:.4f}")
    return " ".join(parts)


@functools.lru_cache(maxsize=None)
def _bar_class():
    from tqdm.auto import tqdm

    class Bar(tqdm):
        # No monitor thread: the training loop ends OpenBLAS's idle workers only while it is the
        # process's only thread beside its pools (see fastnn._blas_pools).
        monitor_interval = 0

    return Bar


def _progress_bar(total, epoch, epochs):
    return _bar_class()(total=total, desc=f"Epoch {epoch}/{epochs}", unit="step", leave=True,
                        dynamic_ncols=True)


def _says_stop(returned):
    """A callback stops training by returning "stop"; any other value (an array, None) is ignored."""
    return isinstance(returned, str) and returned == "stop"
