"""Training records and epoch-end callbacks: History and EarlyStopping."""
import math

import numpy as np

from .layers import check_positive_int
from .optim import check_real

_MONITORS = ("val_loss", "train_loss", "val_accuracy", "train_accuracy")


class History:
    """Per-epoch lists filled by ``Network.fit``.

    train_loss, train_accuracy, lr, seconds: one float per epoch run. val_loss, val_accuracy: one
    per epoch when validation data was used, else empty. Accuracy is NaN when the loss defines
    none (MSE with one output). ``best_epoch``: 1-based epoch with the best monitored value (set
    by early stopping, else the lowest val_loss or train_loss); ``stopped_early``: True when
    early stopping or a callback ended training before ``epochs``.
    """

    FIELDS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")

    def __init__(self):
        for name in self.FIELDS:
            setattr(self, name, [])
        self.stopped_early = False
        self._best_epoch = None

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
        return min(finite)[1] + 1 if finite else None

    def append(self, logs):
        """Record one epoch from a logs dict with the FIELDS keys (val_* optional)."""
        for name in self.FIELDS:
            if name in logs:
                getattr(self, name).append(float(logs[name]))

    def as_dict(self):
        """Plain dict: the per-epoch lists plus epochs, best_epoch and stopped_early."""
        d = {name: list(getattr(self, name)) for name in self.FIELDS}
        d.update(epochs=self.epochs, best_epoch=self.best_epoch, stopped_early=self.stopped_early)
        return d

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
        self.restore_best_weights = bool(restore_best_weights)
        self.reset(has_validation=False)

    def reset(self, has_validation):
        """Forget previous runs; resolve monitor=None from ``has_validation``."""
        self._key = self.monitor or ("val_loss" if has_validation else "train_loss")
        if self._key.startswith("val_") and not has_validation:
            raise ValueError(f"EarlyStopping(monitor={self._key!r}) needs validation_data or validation_split")
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

    def restore(self, network):
        """Copy the best epoch's parameters back into ``network`` (no-op if none recorded)."""
        if self.restore_best_weights and self._best_weights is not None:
            for dst, src in zip(network.parameters(), self._best_weights):
                np.copyto(dst, src)

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
                f"monitor={self.monitor!r}, restore_best_weights={self.restore_best_weights})")
