"""Learning-rate schedules: ``lr_at(epoch, base_lr)`` with 0-based epochs.

``Network.fit(schedule=...)`` sets ``optimizer.lr = schedule.lr_at(epoch, base_lr)`` before each
epoch, base_lr being the optimizer's lr when fit starts, or, while that lr is still the one a
schedule of an earlier fit set, that schedule's base_lr (fastnn._training._schedule_base).
"""
import math

from .layers import check_positive_int
from .optim import check_real


class Schedule:
    """Base class."""

    def lr_at(self, epoch, base_lr):
        """Learning rate (float) for 0-based ``epoch``."""
        raise NotImplementedError

    def _check(self, epoch, base_lr):
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: expected a non-negative integer, got {epoch!r}")
        return check_real(base_lr, "base_lr", low=0.0)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class StepLR(Schedule):
    """base_lr * gamma ** (epoch // step_size); step_size >= 1, gamma in (0, 1]."""

    def __init__(self, step_size, gamma=0.1):
        self.step_size = check_positive_int(step_size, "step_size")
        self.gamma = check_real(gamma, "gamma", 0.0, 1.0, low_open=True)

    def lr_at(self, epoch, base_lr):
        return self._check(epoch, base_lr) * self.gamma ** (epoch // self.step_size)


class ExponentialLR(Schedule):
    """base_lr * gamma ** epoch; gamma in (0, 1]."""

    def __init__(self, gamma):
        self.gamma = check_real(gamma, "gamma", 0.0, 1.0, low_open=True)

    def lr_at(self, epoch, base_lr):
        return self._check(epoch, base_lr) * self.gamma ** epoch


class CosineLR(Schedule):
    """min_lr + (base_lr - min_lr) * (1 + cos(pi * min(epoch, T_max) / T_max)) / 2.

    T_max >= 1 epochs; min_lr >= 0 (stays there after T_max).
    """

    def __init__(self, T_max, min_lr=0.0):
        self.T_max = check_positive_int(T_max, "T_max")
        self.min_lr = check_real(min_lr, "min_lr", low=0.0)

    def lr_at(self, epoch, base_lr):
        base_lr = self._check(epoch, base_lr)
        frac = min(epoch, self.T_max) / self.T_max
        # halved before it is scaled, so that no intermediate overflows for a base_lr near the
        # largest float (the result lies between min_lr and base_lr)
        return self.min_lr + (base_lr - self.min_lr) * ((1.0 + math.cos(math.pi * frac)) / 2.0)
