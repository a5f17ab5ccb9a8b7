"""One tiny network step worked out on paper, checked on both implementations (float64).

    x = [[1, 2]]        w = [[0.5, -1  ],        b = [0, 0.5]
                             [0.25, 0.5]]

Every expected number below follows from the comment above it; constants like e^-0.5 are
written to 16+ significant digits.
"""
import numpy as np
import pytest

from fastnn import ops, reference

IMPLEMENTATIONS = [pytest.param(ops, id="ops"), pytest.param(reference, id="reference")]
RTOL = 1e-12

# sigmoid(1)   = 1 / (1 + e^-1)   = 1 / (1 + 0.36787944117144233) = 0.7310585786300049
# sigmoid(0.5) = 1 / (1 + e^-0.5) = 1 / (1 + 0.6065306597126334)  = 0.6224593312018546
SIGMOID_1 = 0.7310585786300049
SIGMOID_HALF = 0.6224593312018546
# softmax([1, 0.5]) for label 0: p0 = e^1 / (e^1 + e^0.5) = 1 / (1 + e^-0.5) = sigmoid(0.5)
P0 = SIGMOID_HALF
P1 = 0.3775406687981454  # 1 - p0


def inputs():
    x = np.array([[1.0, 2.0]])
    w = np.array([[0.5, -1.0], [0.25, 0.5]])
    b = np.array([0.0, 0.5])
    return x, w, b


def assert_exact(got, want):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_forward(impl):
    x, w, b = inputs()
    # z0 = 1*0.5  + 2*0.25 + 0   = 1.0
    # z1 = 1*(-1) + 2*0.5  + 0.5 = 0.5
    assert_exact(impl.linear_forward(x, w, b), [[1.0, 0.5]])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sigmoid(impl):
    x, w, b = inputs()
    assert_exact(impl.sigmoid(np.array([1.0, 0.5])), [SIGMOID_1, SIGMOID_HALF])
    assert_exact(impl.linear_forward(x, w, b, "sigmoid"), [[SIGMOID_1, SIGMOID_HALF]])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_softmax_cross_entropy(impl):
    logits = np.array([[1.0, 0.5]])
    # p = [0.6224593312018546, 0.3775406687981454]
    assert_exact(impl.softmax(logits), [[P0, P1]])
    # loss = -log p0 = log(1 + e^-0.5) = log(1.6065306597126334) = 0.4740769841801067
    # grad = p - onehot(0) = [p0 - 1, p1] = [-0.3775406687981454, 0.3775406687981454]
    loss, grad = impl.softmax_cross_entropy(logits, np.array([0]))
    assert loss == pytest.approx(0.4740769841801067, rel=RTOL)
    assert_exact(grad, [[-P1, P1]])
    # Same row twice, second weighted 3 with label 1: -log p1 = 0.5 + 0.4740769841801067.
    # mean = (1 * 0.4740769841801067 + 3 * 0.9740769841801067) / 4 = 0.8490769841801067
    loss, grad = impl.softmax_cross_entropy(np.array([[1.0, 0.5], [1.0, 0.5]]), np.array([0, 1]),
                                            sample_weight=np.array([1.0, 3.0]))
    assert loss == pytest.approx(0.8490769841801067, rel=RTOL)
    # rows: (1/4) * [-p1, p1] and (3/4) * [p0, p1 - 1] = (3/4) * [p0, -p0]
    assert_exact(grad, [[-0.25 * P1, 0.25 * P1], [0.75 * P0, -0.75 * P0]])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_backward_without_activation(impl):
    x, w, _ = inputs()
    g = np.array([[-P1, P1]])  # the cross-entropy gradient above
    dw, db, dx = impl.linear_backward(x, w, g)
    # dw = x.T @ g = [[1 * -p1, 1 * p1], [2 * -p1, 2 * p1]], 2 p1 = 0.7550813375962908
    assert_exact(dw, [[-P1, P1], [-0.7550813375962908, 0.7550813375962908]])
    assert_exact(db, [-P1, P1])
    # dx = g @ w.T = [-p1*0.5 + p1*(-1), -p1*0.25 + p1*0.5] = [-1.5 p1, 0.25 p1]
    assert_exact(dx, [[-0.5663110031972181, 0.09438516719953636]])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_backward_through_sigmoid(impl):
    x, w, b = inputs()
    y = np.array([[SIGMOID_1, SIGMOID_HALF]])
    # dz = 1 * y (1 - y): 0.7310585786300049 * 0.2689414213699951 = 0.19661193324148185
    #                     0.6224593312018546 * 0.3775406687981454 = 0.23500371220159449
    dz0, dz1 = 0.19661193324148185, 0.23500371220159449
    dw, db, dx = impl.linear_backward(x, w, np.ones((1, 2)), y, "sigmoid")
    assert_exact(dw, [[dz0, dz1], [2 * dz0, 2 * dz1]])
    assert_exact(db, [dz0, dz1])
    # dx = [0.5 dz0 - dz1, 0.25 dz0 + 0.5 dz1] = [-0.13669774558085356, 0.16665483941116771]
    assert_exact(dx, [[-0.13669774558085356, 0.16665483941116771]])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_two_sgd_steps_with_momentum(impl):
    _, w, _ = inputs()
    dw = np.array([[-P1, P1], [-0.7550813375962908, 0.7550813375962908]])
    velocity = np.zeros((2, 2))
    # step 1: v = 0.9 * 0 + dw = dw;  w = w - 0.1 dw
    #   [[0.5 + 0.1 p1, -1 - 0.1 p1], [0.25 + 0.2 p1, 0.5 - 0.2 p1]]
    assert impl.sgd_update(w, dw, velocity, lr=0.1, momentum=0.9) is w
    assert_exact(velocity, dw)
    assert_exact(w, [[0.5377540668798145, -1.0377540668798145],
                     [0.3255081337596291, 0.4244918662403709]])
    # step 2 (same gradient): v = 0.9 dw + dw = 1.9 dw;  w = w - 0.19 dw = w0 - 0.29 dw
    impl.sgd_update(w, dw, velocity, lr=0.1, momentum=0.9)
    assert_exact(velocity, [[-0.7173272707164763, 0.7173272707164763],
                            [-1.4346545414329526, 1.4346545414329526]])
    assert_exact(w, [[0.6094867939514622, -1.1094867939514622],
                     [0.4689735879029243, 0.2810264120970757]])
