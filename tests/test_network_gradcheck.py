"""float64 finite-difference check of the whole network's gradients, over every parameter."""
import numpy as np
import pytest

from fastnn import activations, layers
from fastnn.layers import Dropout, Linear, ReLU, ScaledTanh, Sigmoid, Tanh
from fastnn.losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from fastnn.network import Network
from fastnn.testing import check_grad

ACTIVATIONS = {e.name: getattr(layers, e.layer) for e in activations.REGISTRY}
N, F = 7, 5


def make_targets(loss_name, n_out, rng):
    if loss_name == "softmax_ce":
        return SoftmaxCrossEntropy(), rng.integers(0, n_out, N)
    if loss_name == "bce":
        return BinaryCrossEntropy(), rng.integers(0, 2, N)
    return MSE(), rng.standard_normal((N, n_out))


def check_all_parameters(net, X, y, training_seed=None):
    """check_grad on every parameter array; training_seed fixes the dropout masks."""

    def forward():
        if training_seed is not None:
            net._rng = np.random.default_rng(training_seed)
        return net.forward(X, training=training_seed is not None)

    out = forward()
    grads = [g.copy() for g in net.backward(net.loss.backward(out, y))]
    for p, g in zip(net.parameters(), grads):
        assert np.any(g != 0)
        check_grad(lambda _: net.loss.forward(forward(), y), p, g, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("loss_name", ["softmax_ce", "bce", "mse"])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_gradients_every_activation_and_loss(act, loss_name):
    rng = np.random.default_rng(sum(map(ord, act + loss_name)))  # stable across runs
    n_out = 1 if loss_name == "bce" else 4
    loss, y = make_targets(loss_name, n_out, rng)
    Act = ACTIVATIONS[act]
    net = Network([Linear(F, 6), Act(), Linear(6, 5), Act(), Linear(5, n_out)], loss=loss,
                  dtype="float64", seed=1)
    for p in net.parameters()[1::2]:
        p[:] = rng.standard_normal(p.shape) * 0.3  # non-zero biases, so their gradients matter
    X = rng.standard_normal((N, F))
    check_all_parameters(net, X, y)


@pytest.mark.parametrize("layers", [
    lambda: [Tanh(), Linear(F, 6), Sigmoid(), ReLU(), Linear(6, 3), ScaledTanh()],
    lambda: [Linear(F, 4), Linear(4, 6), Tanh(), Tanh(), Linear(6, 3)],
], ids=["unfused-activations", "linear-linear"])
def test_gradients_unfused_orders(layers):
    rng = np.random.default_rng(5)
    net = Network(layers(), dtype="float64", seed=2)
    check_all_parameters(net, rng.standard_normal((N, F)), rng.integers(0, 3, N))


def test_gradients_with_dropout_masks_held_fixed():
    rng = np.random.default_rng(6)
    net = Network([Dropout(0.2), Linear(F, 8), Sigmoid(), Dropout(0.5), Linear(8, 6), Tanh(),
                   Dropout(0.3), Dropout(0.3), Linear(6, 3)], dtype="float64", seed=3)
    check_all_parameters(net, rng.standard_normal((N, F)), rng.integers(0, 3, N), training_seed=11)


def test_float32_gradients_agree_with_float64():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, F))
    y = rng.integers(0, 3, N)
    grads = {}
    for dtype in ("float32", "float64"):
        net = Network([Linear(F, 6), ReLU(), Linear(6, 3)], dtype=dtype, seed=4)
        out = net.forward(X)
        grads[dtype] = [g.copy() for g in net.backward(net.loss.backward(out, y))]
        assert all(g.dtype == np.dtype(dtype) for g in grads[dtype])
    for a, b in zip(grads["float32"], grads["float64"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
