"""Huge and tiny inputs: saturation, finite losses, no warnings, and accuracy of exp/tanh."""
import math
import warnings

import numpy as np
import pytest

from fastnn import ops, reference

IMPLEMENTATIONS = [pytest.param(ops, id="ops"), pytest.param(reference, id="reference")]


def no_warnings(call, *args, **kwargs):
    """Run the call with every warning (RuntimeWarning from NumPy included) raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# Saturating activations
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sigmoid_saturates_exactly(impl, dtype, simd_path):
    x = np.array([-3e38, -1e4, -1000.0, 1000.0, 1e4, 3e38], dtype)
    got = no_warnings(impl.sigmoid, x)
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(got, reference.sigmoid(x))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("name, limit", [("tanh", 1.0), ("scaled_tanh", reference.SCALED_TANH_A)])
def test_tanh_saturates_exactly(impl, name, limit, dtype, simd_path):
    x = np.array([-3e38, -1e4, 1e4, 3e38], dtype)
    got = no_warnings(getattr(impl, name), x)
    want = np.array([-limit, -limit, limit, limit], dtype)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, getattr(reference, name)(x))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_backward_of_saturated_outputs_is_zero(impl, dtype):
    x = np.array([-3e38, -1e4, 1e4, 3e38], dtype)
    grad = np.ones(4, dtype)
    for name in ("sigmoid", "tanh", "scaled_tanh"):
        y = getattr(impl, name)(x)
        got = no_warnings(getattr(impl, name + "_backward"), y, grad)
        np.testing.assert_allclose(got, 0.0, atol=1e-6 if dtype == np.float32 else 1e-15)


# --------------------------------------------------------------------------------------------
# Softmax cross-entropy of extreme logits
# --------------------------------------------------------------------------------------------

# Rows whose shifted exponentials are exactly 0 or 1, so the float64 loss is known exactly.
EXTREME_ROWS = [
    [3e38, 0.0, -3e38],
    [-3e38, 0.0, 3e38],
    [3e38, 3e38, 3e38],
    [7.0, 7.0, 7.0],
    [0.0, 3e38, 0.0],
    [1e4, -1e4, 0.0],
    [-1e4, -1e4, 1e4],
]


def float64_loss(row, label):
    """log(sum exp(row - m)) - (row[label] - m), all in float64 from the row's stored values."""
    row = [float(v) for v in row]
    m = max(row)
    total = math.fsum(math.exp(v - m) for v in row)
    return math.log(total) - (row[label] - m)


@pytest.mark.parametrize("label", [0, 1, 2])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_softmax_cross_entropy_of_extreme_rows(impl, label, dtype, simd_path):
    logits = np.array(EXTREME_ROWS, dtype)
    labels = np.full(len(EXTREME_ROWS), label)
    losses, grad = no_warnings(impl.softmax_cross_entropy, logits, labels, reduction="none")
    want = [float64_loss(row, label) for row in logits]
    assert np.all(np.isfinite(losses))
    np.testing.assert_allclose(losses, want, rtol=1e-15)
    assert np.all(np.isfinite(grad))
    _, want_grad = reference.softmax_cross_entropy(logits, labels, reduction="none")
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=0)

    mean, _ = no_warnings(impl.softmax_cross_entropy, logits, labels)
    assert math.isfinite(mean)
    assert mean == pytest.approx(math.fsum(want) / len(want), rel=1e-15)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_softmax_and_log_softmax_of_extreme_rows(impl, dtype, simd_path):
    logits = np.array(EXTREME_ROWS, dtype)
    probabilities = no_warnings(impl.softmax, logits)
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities, reference.softmax(logits), rtol=1e-6, atol=0)
    log_probabilities = no_warnings(impl.log_softmax, logits)
    # -inf is the right float32 answer for log p = -6e38; never NaN or +inf.
    assert not np.any(np.isnan(log_probabilities)) and np.all(log_probabilities <= 0)
    np.testing.assert_allclose(log_probabilities, reference.log_softmax(logits), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Accuracy of the compiled exp / tanh, measured through the ops
# --------------------------------------------------------------------------------------------

MAX_RELATIVE_ERROR = {np.dtype(np.float32): 4e-7, np.dtype(np.float64): 1e-14}


def exact_sigmoid(x):
    x = x.astype(np.longdouble)
    return 1 / (1 + np.exp(-x))


def exact_tanh(x):
    return np.tanh(x.astype(np.longdouble))


def max_relative_error(got, exact, dtype):
    """Largest |got - exact| / |exact| over results in the normal range of dtype.

    Results in the subnormal range carry fewer significant bits by nature: there the absolute
    error is only required to stay below the smallest normal number.
    """
    tiny = np.finfo(dtype).tiny
    error = np.abs(got.astype(np.longdouble) - exact)
    normal = np.abs(exact) >= tiny
    assert np.all(error[~normal] < tiny)
    return float(np.max(error[normal] / np.abs(exact[normal])))


needs_long_double = pytest.mark.skipif(
    np.finfo(np.longdouble).eps > 1e-18,
    reason="needs an extended-precision long double for the exact values",
)


def dense_grid(dtype):
    grid = np.linspace(-100, 100, 400_001).astype(dtype)
    tiny = np.geomspace(1e-30, 1e-1, 2001).astype(dtype)
    return np.concatenate([grid, tiny, -tiny, np.array([1e-8, -1e-8], dtype)])


@needs_long_double
@pytest.mark.parametrize("name, exact", [("sigmoid", exact_sigmoid), ("tanh", exact_tanh)])
def test_accuracy_on_a_dense_grid(name, exact, dtype, simd_path, threads):
    x = dense_grid(dtype)
    got = no_warnings(getattr(ops, name), x)
    error = max_relative_error(got, exact(x), dtype)
    print(f"{name} {dtype} [{simd_path}]: max relative error {error:.3g}")
    assert error < MAX_RELATIVE_ERROR[dtype]


@needs_long_double
def test_the_reference_meets_the_same_accuracy(dtype):
    # Calibrates the bound: NumPy's own functions stay inside it.
    x = dense_grid(dtype)
    for name, exact in (("sigmoid", exact_sigmoid), ("tanh", exact_tanh)):
        error = max_relative_error(getattr(reference, name)(x), exact(x), dtype)
        assert error < MAX_RELATIVE_ERROR[dtype], (name, error)
