"""The range of the inputs a network was trained on, and the warning when prediction inputs lie
far from it.

Ranges are taken per model input after ``x * input_scale + input_shift`` (what the first Linear
sees), so that the same rule serves uint8 pixels and standardised table columns. An input batch
is "far" from training when either

- some value lies beyond the training range of its input by more than that range's width,
  taken as at least the median width over all inputs (so that inputs nearly constant in
  training, such as the border pixels of MNIST, do not warn at the first stroke there), or
- every value of the batch is smaller in magnitude than ``SHRUNK`` times the largest magnitude
  seen in training (e.g. pixels divided by 255 given to a model that scales them by 1/255 itself).
"""
import warnings

import numpy as np

SHRUNK = 0.01


def observed_range(X, scale, shift):
    """(n_features, 2) float64: the least and greatest x * scale + shift of each column of X."""
    X = _extremes(X)
    lo = X.min(axis=0).astype(np.float64) * scale + shift
    hi = X.max(axis=0).astype(np.float64) * scale + shift
    return np.stack([np.minimum(lo, hi), np.maximum(lo, hi)], axis=1)


def union(a, b):
    """The range covering both ranges (either may be None)."""
    if a is None or b is None:
        return b if a is None else a
    return np.stack([np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])], axis=1)


def check_range(input_range, n_features):
    """``input_range`` as a finite float64 (n_features, 2) array with min <= max, or ValueError."""
    r = np.array(input_range, dtype=np.float64)
    if r.shape != (n_features, 2) or not np.isfinite(r).all() or (r[:, 0] > r[:, 1]).any():
        raise ValueError(f"input_range: expected finite (min, max) pairs for {n_features} inputs, "
                         f"got shape {r.shape}")
    return r


class RangeCheck:
    """The bounds of ``input_range`` turned back into raw input units once, so that checking a
    batch costs a few comparisons (no scaled copy of it)."""

    def __init__(self, input_range, scale, shift):
        self.source, self.scale, self.shift = input_range, scale, shift
        lo, hi = input_range[:, 0], input_range[:, 1]
        widths = hi - lo
        tolerance = np.maximum(widths, np.median(widths))
        self.trained = float(np.abs(input_range).max())
        # Raw bounds: x * scale + shift stays in [lo - tol, hi + tol] iff x in [raw_lo, raw_hi].
        a, b = _raw(lo - tolerance, scale, shift), _raw(hi + tolerance, scale, shift)
        self.raw_lo, self.raw_hi = np.minimum(a, b), np.maximum(a, b)
        # A batch whose extremes lie within every input's bounds needs no check per input.
        self.lo_max, self.hi_min = float(self.raw_lo.max()), float(self.raw_hi.min())
        # And every |x * scale + shift| < SHRUNK * trained iff x lies within (small_lo, small_hi).
        a, b = _raw(-SHRUNK * self.trained, scale, shift), _raw(SHRUNK * self.trained, scale, shift)
        self.small_lo, self.small_hi = min(a, b), max(a, b)

    def fits(self, network):
        return (self.source is network.input_range and self.scale == network.input_scale
                and self.shift == network.input_shift)

    def message(self, X, argname="X"):
        """Why X (raw inputs) is far from the training range, or None when it is not."""
        X = _extremes(X)
        bottom, top = float(X.min()), float(X.max())
        if self.trained > 0 and self.small_lo < bottom and top < self.small_hi:
            largest = float(np.abs(observed_range(X, self.scale, self.shift)).max())
            return (f"{argname}: every input is at most {largest:.4g} in magnitude against "
                    f"{self.trained:.4g} in training (after input_scale={self.scale:.4g}, "
                    f"input_shift={self.shift:.4g}); was the data scaled already? The model "
                    "scales its inputs itself")
        if (self.lo_max <= bottom and top <= self.hi_min) or not (
                (X < self.raw_lo).any() or (X > self.raw_hi).any()):
            return None
        seen = observed_range(X, self.scale, self.shift)
        outside = (X < self.raw_lo).any(axis=0) | (X > self.raw_hi).any(axis=0)
        j = int(np.argmax(outside))
        lo, hi = self.source[j]
        return (f"{argname}: {int(outside.sum())} of {len(outside)} inputs lie far outside the "
                f"range seen in training (input {j}: {seen[j, 0]:.4g} .. {seen[j, 1]:.4g} against "
                f"{lo:.4g} .. {hi:.4g} in training, after input scaling); the predictions there "
                "are extrapolations")


def _extremes(X):
    """X itself, or for a sparse input (fastnn._sparse.SparseRows) the two rows of its columns'
    least and greatest values: everything here depends on X only through those."""
    extremes = getattr(X, "column_extremes", None)
    return X if extremes is None else extremes()


def _raw(value, scale, shift):
    if scale == 0:  # every input maps to shift: no raw value is out of range
        return np.copysign(np.inf, value - shift)
    return (value - shift) / scale


def far_message(X, input_range, scale, shift, argname="X"):
    """Why X (raw inputs) is far from ``input_range`` (one sentence), or None when it is not."""
    return RangeCheck(np.asarray(input_range, np.float64), scale, shift).message(X, argname)


def warn_if_far(network, X, argname="X", stacklevel=4):
    """One RuntimeWarning when X is far from ``network.input_range`` (the bounds are kept on the
    network until its range or scaling changes)."""
    check = network.__dict__.get("_range_check")
    if check is None or not check.fits(network):
        check = network._range_check = RangeCheck(network.input_range, network.input_scale,
                                                  network.input_shift)
    message = check.message(X, argname)
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)
