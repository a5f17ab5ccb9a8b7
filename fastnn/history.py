"""Training records and epoch-end callbacks: History and EarlyStopping."""
import math

import numpy as np

from .layers import check_positive_int
from .optim import check_bool, check_real

_MONITORS = ("val_loss", "train_loss", "val_accuracy", "train_accuracy")


class History:
    """Per-epoch lists filled by ``Network.fit``.

    train_loss, train_accuracy, lr, seconds: one float per epoch run. val_loss, val_accuracy: one
    per epoch when validation data was used, else empty. Accuracy is NaN when the loss defines
    none (MSE with one output). ``best_epoch``: 1-based epoch with the best monitored value (set
    by early stopping, else the lowest val_loss or train_loss); ``stopped_early``: True when
    early stopping or a callback ended training before ``epochs``. ``initial_epoch``: epochs
    completed before the first one recorded here (``fit(initial_epoch=...)``, a resumed run).
    """

    FIELDS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")

    def __init__(self, initial_epoch=0):
        for name in self.FIELDS:
            setattr(self, name, [])
        self.stopped_early = False
        self._best_epoch = None
        self.initial_epoch = initial_epoch

    @property
    def epochs(self):
        """Number of epochs run (int)."""
        return len(self.train_loss)

    @property
    def best_epoch(self):
        """1-based epoch with the best monitored value, or None before any epoch."""
        if self._best_epoch is not None:
            return self._best_epoch
        losses = self.val_loss or self.train_loss
        finite = [(v, i) for i, v in enumerate(losses) if math.isfinite(v)]
        return self.initial_epoch + min(finite)[1] + 1 if finite else None

    @property
    def history(self):
        """The per-epoch lists under Keras' names, as a dict: ``loss``, ``accuracy``, ``lr`` and,
        when validation data was used, ``val_loss`` and ``val_accuracy`` (the lists themselves,
        not copies)."""
        d = {"loss": self.train_loss, "accuracy": self.train_accuracy}
        if self.val_loss:
            d.update(val_loss=self.val_loss, val_accuracy=self.val_accuracy)
        d["lr"] = self.lr
        return d

    def append(self, logs):
        """Record one epoch from a logs dict with the FIELDS keys (val_* optional)."""
        for name in self.FIELDS:
            if name in logs:
                getattr(self, name).append(float(logs[name]))

    def as_dict(self):
        """Plain dict: the per-epoch lists plus epochs, best_epoch and stopped_early (and
        initial_epoch when it is not 0)."""
        d = {name: list(getattr(self, name)) for name in self.FIELDS}
        d.update(epochs=self.epochs, best_epoch=self.best_epoch, stopped_early=self.stopped_early)
        if self.initial_epoch:
            d["initial_epoch"] = self.initial_epoch
        return d

    @classmethod
    def from_dict(cls, d):
        """The History that ``as_dict()`` described (ValueError if ``d`` is not such a dict)."""
        if not isinstance(d, dict):
            raise TypeError(f"history: expected a dict from History.as_dict(), got {type(d).__name__}")
        history = cls(initial_epoch=d.get("initial_epoch", 0))
        if isinstance(history.initial_epoch, bool) or not isinstance(history.initial_epoch, int):
            raise ValueError(f"history: initial_epoch must be an integer, got {history.initial_epoch!r}")
        n = len(d.get("train_loss", []))
        for name in cls.FIELDS:
            values = d.get(name, [])
            if not isinstance(values, list) or len(values) not in ((0, n) if name.startswith("val_") else (n,)):
                raise ValueError(f"history: {name} must be a list of {n} numbers")
            # JSON turns NaN into null (fastnn.cli writes it that way).
            setattr(history, name, [math.nan if v is None else float(v) for v in values])
        history.stopped_early = bool(d.get("stopped_early", False))
        best = d.get("best_epoch")
        history._best_epoch = best if isinstance(best, int) and not isinstance(best, bool) else None
        return history

    def extend(self, later):
        """Append the epochs of ``later``, the History of the run that continued this one
        (its initial_epoch must be this one's last epoch); its stopped_early and best epoch win."""
        if later.initial_epoch != self.initial_epoch + self.epochs:
            raise ValueError(f"history: the continuation starts after epoch {later.initial_epoch}, "
                             f"this history ends at epoch {self.initial_epoch + self.epochs}")
        best_before = self.best_epoch
        for name in self.FIELDS:
            getattr(self, name).extend(getattr(later, name))
        self.stopped_early = later.stopped_early
        # Without early stopping best_epoch is recomputed over all epochs.
        self._best_epoch = later._best_epoch if later._best_epoch is not None else (
            None if later.epochs else best_before)
        return self

    def __repr__(self):
        last = f", last train_loss={self.train_loss[-1]:.4g}" if self.train_loss else ""
        return f"History(epochs={self.epochs}{last})"


class EarlyStopping:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    monitor: "val_loss", "train_loss", "val_accuracy", "train_accuracy", or None (val_loss when
    validation data is given, else train_loss). Losses improve downwards, accuracies upwards.
    With restore_best_weights (default) the network gets the parameters of the best epoch back
    when training ends. One object can be reused; ``fit`` calls ``reset`` at the start.
    """

    def __init__(self, patience=5, min_delta=0.0, monitor=None, restore_best_weights=True):
        self.patience = check_positive_int(patience, "patience")
        self.min_delta = check_real(min_delta, "min_delta", low=0.0)
        if monitor is not None and monitor not in _MONITORS:
            raise ValueError(f"monitor: expected None or one of {', '.join(_MONITORS)}, got {monitor!r}")
        self.monitor = monitor
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights")
        self._key = monitor or "train_loss"  # fit resolves None by calling reset
        self._forget()

    def reset(self, has_validation):
        """Forget previous runs; resolve monitor=None from ``has_validation``. ValueError for a
        validation monitor without validation data."""
        self._key = self.monitor or ("val_loss" if has_validation else "train_loss")
        if self._key.startswith("val_") and not has_validation:
            raise ValueError(f"EarlyStopping(monitor={self._key!r}) needs validation_data or validation_split")
        self._forget()

    def _forget(self):
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self._best_weights = None

    @property
    def monitored(self):
        """The logs key being watched."""
        return self._key

    def _improved(self, value):
        if self.best is None:
            return math.isfinite(value)
        if self._key.endswith("accuracy"):
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch_index, logs, network):
        """Record the end of 0-based ``epoch_index``; return True when training should stop."""
        value = float(logs[self._key])
        if self._improved(value):
            self.best = value
            self.best_epoch = epoch_index + 1
            self.wait = 0
            if self.restore_best_weights:
                params = network.parameters()
                if self._best_weights is None or len(self._best_weights) != len(params):
                    self._best_weights = [np.array(p, copy=True) for p in params]
                else:
                    for dst, src in zip(self._best_weights, params):
                        np.copyto(dst, src)
            return False
        self.wait += 1
        return self.wait >= self.patience

    def state_dict(self):
        """The record so far: {"monitor", "best", "best_epoch", "wait", "best_weights" (copies of
        the best parameters, or None)}; all JSON-able except the weights."""
        weights = None
        if self._best_weights is not None:
            weights = [np.array(w, copy=True) for w in self._best_weights]
        return {"monitor": self._key, "best": self.best, "best_epoch": self.best_epoch,
                "wait": self.wait, "best_weights": weights}

    def load_state_dict(self, state):
        """Continue from ``state_dict()`` output (after ``reset``, which resolves the monitor)."""
        if not isinstance(state, dict):
            raise TypeError(f"early stopping state: expected a dict, got {type(state).__name__}")
        if state.get("monitor") != self._key:
            raise ValueError(f"early stopping state: it monitors {state.get('monitor')!r}, this "
                             f"EarlyStopping monitors {self._key!r}")
        best, best_epoch, wait = state.get("best"), state.get("best_epoch"), state.get("wait")
        if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))):
            raise ValueError(f"early stopping state: best must be a number or None, got {best!r}")
        for name, value in (("best_epoch", best_epoch), ("wait", wait)):
            if name == "best_epoch" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"early stopping state: {name} must be an integer >= 0, got {value!r}")
        weights = state.get("best_weights")
        if weights is not None:
            weights = [np.array(w, copy=True) for w in weights]
        self.best = None if best is None else float(best)
        self.best_epoch, self.wait = best_epoch, wait
        self._best_weights = weights

    @property
    def should_stop(self):
        """True when the last ``update`` asked training to stop."""
        return self.wait >= self.patience

    def restore(self, network):
        """Copy the best epoch's parameters back into ``network`` (no-op if none recorded)."""
        if self.restore_best_weights and self._best_weights is not None:
            for dst, src in zip(network.parameters(), self._best_weights):
                np.copyto(dst, src)

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
                f"monitor={self.monitor!r}, restore_best_weights={self.restore_best_weights})")
