"""The buffers the linear, optimizer and gather ops write into, the order of the loss ops' checks,
and gather_rows' rounding: the compiled ops and their NumPy twins (fastnn.reference) refuse the
same arguments with the same error type and agree on the results."""
import warnings

import numpy as np
import pytest

from fastnn import ops, reference

IMPLEMENTATIONS = [pytest.param(ops, id="ops"), pytest.param(reference, id="reference")]


def _linear(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((3, 3)), rng.standard_normal((3, 3)), rng.standard_normal((3, 3))


# (name of the buffer that must be refused, keyword arguments of linear_backward given x, w,
# grad_out and y, all of shape (3, 3))
BACKWARD_OVERLAPS = {
    "dw_is_dx": ("dx_out", lambda x, w, g, y, d: {"dw_out": d, "dx_out": d}),
    "dw_is_x": ("dw_out", lambda x, w, g, y, d: {"dw_out": x}),
    "dw_is_w": ("dw_out", lambda x, w, g, y, d: {"dw_out": w}),
    "dx_is_grad_out": ("dx_out", lambda x, w, g, y, d: {"dx_out": g}),
    "dx_is_y": ("dx_out", lambda x, w, g, y, d: {"dx_out": y, "activation": "tanh"}),
    "db_in_dw": ("db_out", lambda x, w, g, y, d: {"dw_out": d, "db_out": d[1]}),
}


@pytest.mark.parametrize("case", BACKWARD_OVERLAPS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_backward_buffers_must_not_overlap(impl, case):
    x, w, g = _linear()
    y = np.tanh(g)
    name, make = BACKWARD_OVERLAPS[case]
    kwargs = {"y": y, **make(x, w, g, y, np.zeros((3, 3)))}
    before = [a.copy() for a in (x, w, g, y)]
    with pytest.raises(ValueError, match=rf"^{name}: "):
        impl.linear_backward(x, w, g, **kwargs)
    for a, b in zip((x, w, g, y), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_forward_preactivation_must_not_overlap(impl):
    x, w, _ = _linear()
    out = np.zeros((3, 3))
    for buffer in (x, w, out):
        with pytest.raises(ValueError, match="^preactivation_out: "):
            impl.linear_forward(x, w, None, "gelu", out=out, preactivation_out=buffer)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_buffers_apart_give_the_twins_result(impl):
    x, w, g = _linear()
    y = np.tanh(g)
    dw, db, dx = np.empty((3, 3)), np.empty(3), np.empty((3, 3))
    got = impl.linear_backward(x, w, g, y, "tanh", dw_out=dw, db_out=db, dx_out=dx)
    assert got[0] is dw and got[1] is db and got[2] is dx
    dz = g * (1 - y * y)
    np.testing.assert_allclose(dw, x.T @ dz, rtol=1e-12)
    np.testing.assert_allclose(dx, dz @ w.T, rtol=1e-12)


# -- the optimizer ops' param and state buffers ---------------------------------------------------

def _sgd(impl, param, grad, velocity):
    return impl.sgd_update(param, grad, velocity, lr=0.1, momentum=0.9)


def _adam(impl, param, grad, exp_avg, exp_avg_sq=None):
    exp_avg_sq = np.zeros(param.shape, param.dtype) if exp_avg_sq is None else exp_avg_sq
    return impl.adam_update(param, grad, exp_avg, exp_avg_sq, 1, lr=0.1)


# name -> (the call, given an implementation and fresh param p and grad g; the error type)
BAD_STATE = {
    "velocity_is_param": (lambda impl, p, g: _sgd(impl, p, g, p), ValueError),
    "velocity_is_grad": (lambda impl, p, g: _sgd(impl, p, g, g), ValueError),
    "velocity_is_a_list": (lambda impl, p, g: _sgd(impl, p, g, [0.0] * len(p)), TypeError),
    "exp_avg_is_param": (lambda impl, p, g: _adam(impl, p, g, p), ValueError),
    "exp_avg_is_grad": (lambda impl, p, g: _adam(impl, p, g, g), ValueError),
    "exp_avg_is_exp_avg_sq": (lambda impl, p, g: _adam(impl, p, g, *[np.zeros_like(p)] * 2),
                              ValueError),
    "exp_avg_sq_in_param": (lambda impl, p, g: _adam(impl, p, g, np.zeros_like(p), p), ValueError),
    "exp_avg_is_a_list": (lambda impl, p, g: _adam(impl, p, g, [0.0] * len(p)), TypeError),
    "sgd_byte_swapped_param": (lambda impl, p, g: _sgd(impl, p.astype(">f8"), g, np.zeros_like(p)),
                               TypeError),
    "adam_byte_swapped_param": (lambda impl, p, g: _adam(impl, p.astype(">f8"), g, np.zeros_like(p)),
                                TypeError),
    "param_is_a_list": (lambda impl, p, g: _sgd(impl, list(p), g, None), TypeError),
}


@pytest.mark.parametrize("case", BAD_STATE)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_optimizer_state_buffers_are_refused_alike(impl, case):
    call, error = BAD_STATE[case]
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(5), rng.standard_normal(5)
    before = p.copy()
    with pytest.raises(error):
        call(impl, p, g)
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sgd_checks_a_velocity_given_without_momentum_and_leaves_it(impl):
    p, velocity = np.ones(3), np.full(3, 7.0)
    with pytest.raises(TypeError, match="^velocity: "):
        impl.sgd_update(p, np.ones(3), velocity=[1.0, 2.0, 3.0], lr=0.5)
    impl.sgd_update(p, np.ones(3), velocity=velocity, lr=0.5)
    np.testing.assert_array_equal(p, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(velocity, [7.0, 7.0, 7.0])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_grad_may_be_param_itself_but_not_overlap_it_otherwise(impl):
    p = np.arange(1.0, 5.0)
    impl.sgd_update(p, p, lr=0.5)
    np.testing.assert_array_equal(p, np.arange(1.0, 5.0) / 2)
    storage = np.arange(1.0, 6.0)
    with pytest.raises(ValueError, match="^param: "):
        impl.sgd_update(storage[1:], storage[:4], lr=1.0)
    np.testing.assert_array_equal(storage, np.arange(1.0, 6.0))


# -- gather_rows: float64 x into float32 out ----------------------------------------------------

@pytest.mark.parametrize("scale, shift", [(1e-300, 0.0), (1e-30, 1.0), (3.0, -1e-8)])
def test_gather_rows_float64_into_float32_rounds_once_like_the_kernel(scale, shift):
    x = np.array([[1e300, 3.0], [1e-30, 1.0 + 2 ** -40], [1e40, -1e40]])
    rows = np.array([0, 1, 2, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the twin runs under errstate(all="ignore") as well
        kernel = ops.gather_rows(x, rows, scale, shift, out=np.empty((4, 2), np.float32))
        twin = reference.gather_rows(x, rows, scale, shift, out=np.empty((4, 2), np.float32))
    with np.errstate(over="ignore"):  # beyond float32: inf, in both
        expected = (x[rows] * scale + shift).astype(np.float32)
    np.testing.assert_array_equal(twin, expected)
    np.testing.assert_array_equal(kernel, twin)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_gather_rows_out_must_not_overlap_rows(impl):
    storage = np.zeros(8, np.int64)
    storage[:2] = [1, 0]
    out = storage[1:5].view(np.float64).reshape(2, 2)  # its first element is rows[1]
    with pytest.raises(ValueError, match="^out: .*rows"):
        impl.gather_rows(np.ones((3, 2)), storage[:2], out=out)


# -- the loss ops check the reduction after the labels or targets, before the weights ----------

@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_loss_ops_check_labels_then_reduction_then_weights(impl):
    logits = np.zeros((3, 2))
    with pytest.raises(TypeError, match="^labels: "):
        impl.softmax_cross_entropy(logits, np.zeros(3), reduction="avg")
    for op, targets in ((impl.sigmoid_cross_entropy, np.zeros((3, 2))),
                        (impl.mean_squared_error, np.zeros((3, 2)))):
        with pytest.raises(TypeError, match="^targets: "):
            op(logits, targets.astype(complex), reduction="avg")
        with pytest.raises(ValueError, match="^reduction: "):
            op(logits, targets, reduction="avg", sample_weight=np.ones(3, bool))
    with pytest.raises(ValueError, match="^reduction: "):
        impl.softmax_cross_entropy(logits, np.zeros(3, int), reduction="avg",
                                   sample_weight=np.ones(3, bool))
