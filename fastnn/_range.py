"""The range of the inputs a network was trained on, and the warning when prediction inputs lie
far from it.

Ranges are taken per model input after ``x * input_scale + input_shift`` (what the first Linear
sees), so that the same rule serves uint8 pixels and standardised table columns. An input batch
is "far" from training when either

- some value lies beyond the training range of its input by more than that range's width
  (taken as at least half the widest input range, so that inputs constant in training, such as
  the border pixels of MNIST, do not warn at the slightest value), or
- every value of the batch is smaller in magnitude than ``SHRUNK`` times the largest magnitude
  seen in training (e.g. pixels divided by 255 given to a model that scales them by 1/255 itself).
"""
import warnings

import numpy as np

SHRUNK = 0.01
MIN_WIDTH_SHARE = 0.5


def observed_range(X, scale, shift):
    """(n_features, 2) float64: the least and greatest x * scale + shift of each column of X."""
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


def far_message(X, input_range, scale, shift, argname="X"):
    """Why X is far from ``input_range`` (one sentence), or None when it is not."""
    seen = observed_range(X, scale, shift)
    lo, hi = input_range[:, 0], input_range[:, 1]
    widths = hi - lo
    tolerance = np.maximum(widths, MIN_WIDTH_SHARE * widths.max())
    outside = (seen[:, 0] < lo - tolerance) | (seen[:, 1] > hi + tolerance)
    if outside.any():
        j = int(np.argmax(outside))
        return (f"{argname}: {int(outside.sum())} of {len(lo)} inputs lie far outside the range "
                f"seen in training (input {j}: {seen[j, 0]:.4g} .. {seen[j, 1]:.4g} against "
                f"{lo[j]:.4g} .. {hi[j]:.4g} in training, after input scaling); the predictions "
                "there are extrapolations")
    trained = float(np.abs(input_range).max())
    largest = float(np.abs(seen).max())
    if trained > 0 and largest < SHRUNK * trained:
        return (f"{argname}: every input is at most {largest:.4g} in magnitude against {trained:.4g} "
                f"in training (after input_scale={scale:.4g}, input_shift={shift:.4g}); was the "
                "data scaled already? The model scales its inputs itself")
    return None


def warn_if_far(X, input_range, scale, shift, argname="X", stacklevel=4):
    """One RuntimeWarning when X is far from the training range."""
    message = far_message(X, input_range, scale, shift, argname)
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)
