"""Analytic gradients of the ops against central finite differences (float64)."""
import numpy as np
import pytest

from fastnn import activations, ops, reference
from fastnn.testing import check_grad, numerical_grad

IMPLEMENTATIONS = [pytest.param(ops, id="ops"), pytest.param(reference, id="reference")]
ACTIVATIONS = list(activations.NAMES)


def away_from_zero(a, margin=0.05):
    """Push entries out of (-margin, margin): relu has a kink at 0 that differences would straddle."""
    return np.where(a >= 0, a + margin, a - margin)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_activation_backward(impl, activation, rng):
    forward = getattr(impl, activation)
    backward = getattr(impl, activation + "_backward")
    x = away_from_zero(rng.standard_normal((5, 7)) * 2)
    upstream = rng.standard_normal((5, 7))

    def objective(a):
        return np.sum(upstream * forward(a))

    analytic = backward(x if activations.get(activation).needs_input else forward(x), upstream)
    check_grad(objective, x, analytic)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_softmax_cross_entropy(impl, reduction, weighted, rng):
    logits = rng.standard_normal((6, 5)) * 2
    labels = rng.integers(0, 5, 6)
    weights = rng.uniform(0.1, 2.0, 6) if weighted else None

    def objective(a):
        loss, _ = impl.softmax_cross_entropy(a, labels, reduction=reduction,
                                             sample_weight=weights)
        return np.sum(loss)  # "none": the per-row losses, whose gradient grad also holds

    _, analytic = impl.softmax_cross_entropy(logits, labels, reduction=reduction,
                                             sample_weight=weights)
    check_grad(objective, logits, analytic)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", reference.ACTIVATIONS, ids=str)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_forward_backward(impl, activation, with_bias, rng):
    n_batch, n_in, n_out = 4, 3, 5
    while True:  # for the ReLUs, redraw until no pre-activation sits near the kink at 0
        x = rng.standard_normal((n_batch, n_in))
        w = rng.standard_normal((n_in, n_out))
        b = rng.standard_normal(n_out) if with_bias else np.zeros(n_out)
        if np.abs(x @ w + b).min() > 1e-2:
            break
    upstream = rng.standard_normal((n_batch, n_out))

    def objective(x_, w_, b_):
        return np.sum(upstream * impl.linear_forward(x_, w_, b_ if with_bias else None, activation))

    z = np.empty((n_batch, n_out))
    y = impl.linear_forward(x, w, b if with_bias else None, activation, preactivation_out=z)
    dw, db, dx = impl.linear_backward(x, w, upstream, y if activation else None, activation, z=z)
    check_grad(lambda a: objective(x, a, b), w, dw)
    check_grad(lambda a: objective(a, w, b), x, dx)
    if with_bias:
        check_grad(lambda a: objective(x, w, a), b, db)
    else:  # db is still dL/dz summed over rows: the gradient of a zero bias
        bias = np.zeros(n_out)
        check_grad(lambda a: np.sum(upstream * impl.linear_forward(x, w, a, activation)),
                   bias, db)


# --------------------------------------------------------------------------------------------
# check_grad itself
# --------------------------------------------------------------------------------------------

def cubic_objective(a):
    return float(np.sum(a ** 3) + np.sum(np.sin(a)))


def cubic_gradient(a):
    return 3 * a ** 2 + np.cos(a)


def test_check_grad_passes_on_the_true_gradient(rng):
    x = rng.standard_normal((4, 3))
    error = check_grad(cubic_objective, x, cubic_gradient(x))
    assert 0 <= error < 1e-6


def test_check_grad_raises_on_a_gradient_one_percent_off(rng):
    x = rng.standard_normal((4, 3))
    with pytest.raises(AssertionError, match="relative error"):
        check_grad(cubic_objective, x, 1.01 * cubic_gradient(x))


def test_check_grad_names_the_worst_entry(rng):
    x = rng.standard_normal((4, 3))
    grad = cubic_gradient(x)
    grad[2, 1] += 0.5
    grad[0, 0] += 0.01
    with pytest.raises(AssertionError) as excinfo:
        check_grad(cubic_objective, x, grad)
    message = str(excinfo.value)
    assert "(2, 1)" in message
    assert repr(float(grad[2, 1])) in message


def test_check_grad_sampled_entries_only(rng):
    x = rng.standard_normal(50)
    grad = cubic_gradient(x)
    calls = []

    def counting(a):
        calls.append(1)
        return cubic_objective(a)

    check_grad(counting, x, grad, n_samples=5, seed=3)
    assert len(calls) == 2 * 5
    grad[:] = 0  # every entry wrong: any sample finds it
    with pytest.raises(AssertionError):
        check_grad(cubic_objective, x, grad, n_samples=5, seed=3)


def test_check_grad_restores_x_exactly(rng):
    x = rng.standard_normal((3, 4))[:, ::2]  # non-contiguous view: perturbed through the view
    before = x.copy()
    check_grad(cubic_objective, x, cubic_gradient(x))
    np.testing.assert_array_equal(x, before)


def test_check_grad_restores_x_when_f_raises():
    x = np.array([1.0, 2.0])

    def broken(a):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        check_grad(broken, x, np.zeros(2))
    np.testing.assert_array_equal(x, [1.0, 2.0])


def test_check_grad_treats_nan_as_failure():
    x = np.array([1.0, 2.0])
    with pytest.raises(AssertionError):
        check_grad(cubic_objective, x, np.array([np.nan, 1.0]))


def test_check_grad_float64_only():
    x32 = np.ones(3, np.float32)
    with pytest.raises(TypeError, match="x"):
        check_grad(cubic_objective, x32, np.ones(3))
    with pytest.raises(TypeError, match="grad"):
        check_grad(cubic_objective, np.ones(3), np.ones(3, np.float32))
    with pytest.raises(TypeError):
        numerical_grad(cubic_objective, x32)


def test_numerical_grad_matches_analytic(rng):
    x = rng.standard_normal((2, 3, 2))
    numeric = numerical_grad(cubic_objective, x)
    assert numeric.shape == x.shape and numeric.dtype == np.float64
    np.testing.assert_allclose(numeric, cubic_gradient(x), rtol=1e-7, atol=1e-9)
