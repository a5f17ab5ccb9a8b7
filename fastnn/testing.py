"""Finite-difference gradient checks for tests of analytic gradients (float64 only)."""
import numpy as np

__all__ = ["check_grad", "numerical_grad"]


# rtol/atol for comparing the compiled ops with their NumPy twins, per dtype. atol covers values
# near zero (cancellation in 1 - y*y, different but equally valid rounding orders).
TWIN_TOLERANCES = {
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
    np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-13},
}

def _require_float64(name, a):
    if not isinstance(a, np.ndarray) or a.dtype != np.float64:
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name}: expected a float64 numpy array, got {got}")


def _central_difference(f, x, index, eps):
    """(f(x + eps e_i) - f(x - eps e_i)) / (2 eps), x perturbed in place and restored exactly."""
    original = x[index]
    try:
        x[index] = original + eps
        f_plus = float(f(x))
        x[index] = original - eps
        f_minus = float(f(x))
    finally:
        x[index] = original
    return (f_plus - f_minus) / (2.0 * eps)


def numerical_grad(f, x, eps=1e-6):
    """Central-difference gradient of a scalar function.

    f: callable taking the float64 array x (any shape, any layout) and returning a scalar.
    x: float64 array, perturbed in place one entry at a time and restored.
    Returns a float64 array with the shape of x.
    """
    _require_float64("x", x)
    if not x.flags.writeable:
        raise ValueError("x: must be writeable (it is perturbed in place)")
    grad = np.empty(x.shape, np.float64)
    for index in np.ndindex(x.shape):
        grad[index] = _central_difference(f, x, index, eps)
    return grad


def _indices_to_check(shape, n_samples, seed):
    size = int(np.prod(shape))
    if n_samples is None or n_samples >= size:
        return list(np.ndindex(shape))
    if n_samples < 1:
        raise ValueError(f"n_samples: expected a positive count or None, got {n_samples}")
    flat = np.random.default_rng(seed).choice(size, size=n_samples, replace=False)
    flat.sort()
    return [np.unravel_index(i, shape) for i in flat]


def check_grad(f, x, grad, *, eps=1e-6, rtol=1e-5, atol=1e-8, n_samples=None, seed=0):
    """Compare an analytic gradient with central finite differences.

    f: callable of the float64 array x returning a scalar. x: float64 array of any shape,
    perturbed in place entry by entry (restored). grad: float64 array with the shape of x, the
    analytic gradient df/dx. Only ``n_samples`` entries picked at random (``seed``) are checked
    when given. An entry passes when |numeric - analytic| <= atol + rtol * |analytic|.

    Raises AssertionError naming the worst entry (index, numeric and analytic values, relative
    error) when any entry fails; otherwise returns the largest relative error
    |numeric - analytic| / max(|numeric|, |analytic|) over the checked entries (0 when both are 0).
    """
    _require_float64("x", x)
    _require_float64("grad", grad)
    if grad.shape != x.shape:
        raise ValueError(f"grad: expected shape {x.shape}, got {grad.shape}")
    if not x.flags.writeable:
        raise ValueError("x: must be writeable (it is perturbed in place)")

    max_rel_error = 0.0
    worst = None  # (excess over tolerance, index, numeric, analytic, relative error)
    for index in _indices_to_check(x.shape, n_samples, seed):
        numeric = _central_difference(f, x, index, eps)
        analytic = float(grad[index])
        diff = abs(numeric - analytic)
        scale = max(abs(numeric), abs(analytic))
        rel_error = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
        if not np.isfinite(numeric) or not np.isfinite(analytic):
            rel_error = float("inf")  # infinite or NaN gradients never pass
        max_rel_error = max(max_rel_error, rel_error)
        excess = diff / (atol + rtol * abs(analytic))
        # "not <=" so that a NaN on either side counts as a failure.
        if not diff <= atol + rtol * abs(analytic):
            if np.isnan(excess):
                excess = float("inf")
            if worst is None or excess > worst[0]:
                worst = (excess, tuple(int(i) for i in index), numeric, analytic, rel_error)
    if worst is not None:
        _, index, numeric, analytic, rel_error = worst
        raise AssertionError(
            f"gradient mismatch at index {index}: numeric {numeric!r} vs analytic {analytic!r}, "
            f"relative error {rel_error:.3g} (rtol={rtol}, atol={atol})"
        )
    return max_rel_error
