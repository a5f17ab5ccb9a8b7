"""Optimizers against hand-written NumPy updates, state_dict, and learning-rate schedules."""
import math
import sys

import numpy as np
import pytest

from fastnn.optim import SGD, Adam, optimizer_from_state
from fastnn.schedules import CosineLR, ExponentialLR, StepLR


def problem(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal(3).astype(dtype)]
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in params] for _ in range(6)]
    return params, grads


def numpy_sgd(params, grads_per_step, lr, momentum, nesterov, weight_decay):
    params = [p.copy() for p in params]
    vel = [np.zeros_like(p) for p in params]
    for grads in grads_per_step:
        for p, g, v in zip(params, grads, vel):
            g = g + weight_decay * p
            if momentum:
                v *= momentum
                v += g
                step = g + momentum * v if nesterov else v
            else:
                step = g
            p -= lr * step
    return params


def numpy_adam(params, grads_per_step, lr, b1, b2, eps, weight_decay):
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g + weight_decay * p
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat = m[i] / (1 - b1 ** t)
            vhat = v[i] / (1 - b2 ** t)
            p -= lr * mhat / (np.sqrt(vhat) + eps)
    return params


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [
    (0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.5, False, 0.01), (0.8, True, 0.1),
    (0.0, False, 0.05),
])
def test_sgd_matches_numpy(momentum, nesterov, weight_decay):
    params, grads = problem()
    expected = numpy_sgd(params, grads, 0.1, momentum, nesterov, weight_decay)
    opt = SGD(lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for g in grads:
        opt.step(params, g)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_adam_matches_numpy(weight_decay, dtype, rtol):
    params, grads = problem(dtype)
    expected = numpy_adam([p.astype(np.float64) for p in params],
                          [[g.astype(np.float64) for g in gs] for gs in grads],
                          0.01, 0.9, 0.99, 1e-8, weight_decay)
    opt = Adam(lr=0.01, beta2=0.99, weight_decay=weight_decay)
    for g in grads:
        opt.step(params, g)
    assert opt.steps == len(grads)
    for p, e in zip(params, expected):
        assert p.dtype == dtype
        np.testing.assert_allclose(p, e, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("make", [
    lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda: Adam(lr=0.01),
], ids=["sgd", "adam"])
def test_state_dict_resumes_exactly(make):
    params, grads = problem()
    straight = [p.copy() for p in params]
    opt = make()
    for g in grads:
        opt.step(straight, g)

    resumed = [p.copy() for p in params]
    first = make()
    for g in grads[:3]:
        first.step(resumed, g)
    state = first.state_dict()
    first.step([p.copy() for p in resumed], grads[0])  # must not leak into the saved state
    second = optimizer_from_state(state)
    assert type(second) is type(first) and second.get_config() == first.get_config()
    for g in grads[3:]:
        second.step(resumed, g)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_state_mismatch_is_reported():
    params, grads = problem()
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step(params, grads[0])
    with pytest.raises(ValueError, match="momentum_buffer"):
        opt.step([np.zeros((2, 2))], [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="SGD state_dict"):
        opt.load_state_dict(Adam().state_dict())
    opt.reset()
    opt.step([np.zeros((2, 2))], [np.ones((2, 2))])  # fresh state after reset


@pytest.mark.parametrize("make, exc, match", [
    (lambda: SGD(lr=-0.1), ValueError, "lr"),
    (lambda: SGD(lr=float("nan")), ValueError, "lr"),
    (lambda: SGD(lr="0.1"), TypeError, "lr"),
    (lambda: SGD(momentum=1.0), ValueError, "momentum"),
    (lambda: SGD(momentum=-0.5), ValueError, "momentum"),
    (lambda: SGD(nesterov=True), ValueError, "nesterov.*momentum"),
    (lambda: SGD(momentum=0.9, nesterov="yes"), TypeError, "nesterov"),
    (lambda: SGD(weight_decay=-1e-4), ValueError, "weight_decay"),
    (lambda: Adam(beta1=1.0), ValueError, "beta1"),
    (lambda: Adam(beta2=-0.1), ValueError, "beta2"),
    (lambda: Adam(eps=0.0), ValueError, "eps"),
    (lambda: Adam(lr=float("inf")), ValueError, "lr"),
    (lambda: StepLR(0), ValueError, "step_size"),
    (lambda: StepLR(2, gamma=0.0), ValueError, "gamma"),
    (lambda: ExponentialLR(1.5), ValueError, "gamma"),
    (lambda: CosineLR(0), ValueError, "T_max"),
    (lambda: CosineLR(5, min_lr=-1.0), ValueError, "min_lr"),
])
def test_hyper_parameter_validation(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_lr_attribute_is_validated():
    opt = SGD(lr=0.1)
    opt.lr = 0.05
    assert opt.lr == 0.05 and opt.get_config()["lr"] == 0.05
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    assert repr(opt) == "SGD(lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.0)"


def test_schedule_values():
    step = StepLR(step_size=3, gamma=0.5)
    assert [step.lr_at(e, 0.8) for e in range(7)] == [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2]
    exp = ExponentialLR(0.9)
    assert exp.lr_at(0, 1.0) == 1.0 and exp.lr_at(3, 2.0) == pytest.approx(2 * 0.729)
    cos = CosineLR(T_max=4, min_lr=0.1)
    values = [cos.lr_at(e, 1.1) for e in range(6)]
    expected = [0.1 + 1.0 * (1 + math.cos(math.pi * min(e, 4) / 4)) / 2 for e in range(6)]
    assert values == pytest.approx(expected)
    assert values[0] == pytest.approx(1.1) and values[2] == pytest.approx(0.6) and values[5] == 0.1
    with pytest.raises(ValueError, match="epoch"):
        step.lr_at(-1, 0.1)


def test_cosine_schedule_of_the_largest_rates_stays_finite():
    largest = sys.float_info.max
    values = [CosineLR(T_max=4).lr_at(e, largest) for e in range(5)]
    assert values[0] == largest and values[4] == 0.0
    assert all(math.isfinite(v) for v in values) and values == sorted(values, reverse=True)


def test_sklearn_momentum_convention_rescales_the_velocity_when_lr_changes():
    # V = mu V - lr g, p += V (scikit-learn) against v = mu v + g, p -= lr v (PyTorch):
    # with momentum_convention="sklearn" a change of lr keeps -lr * v equal to V.
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(5) for _ in range(6)]
    rates = [0.1, 0.1, 0.05, 0.05, 0.02, 0.3]
    p_ref, big_v = np.ones(5), np.zeros(5)
    for lr, g in zip(rates, grads):
        big_v = 0.9 * big_v - lr * g
        p_ref = p_ref + big_v
    p = np.ones(5)
    opt = SGD(lr=rates[0], momentum=0.9, momentum_convention="sklearn")
    for lr, g in zip(rates, grads):
        opt.lr = lr
        opt.step([p], [g.copy()])
    np.testing.assert_allclose(p, p_ref, rtol=1e-13)
    pytorch = SGD(lr=rates[0], momentum=0.9)
    q = np.ones(5)
    for lr, g in zip(rates, grads):
        pytorch.lr = lr
        pytorch.step([q], [g.copy()])
    assert not np.allclose(q, p_ref)  # the conventions differ once lr changes
    assert SGD(momentum_convention="sklearn").get_config()["momentum_convention"] == "sklearn"
    with pytest.raises(ValueError, match="momentum_convention"):
        SGD(momentum_convention="keras")


@pytest.mark.parametrize("step", [2 ** 62, 2 ** 63, 10 ** 30])
def test_adam_update_takes_any_step_count_as_its_twin_does(step):
    """Beyond 2^62 steps the bias corrections are 1 in any float: the kernel (a C int64 step)
    gives the same result for every larger count, and its twin agrees."""
    from fastnn import ops, reference
    rng = np.random.default_rng(0)
    start = [rng.standard_normal(9).astype(np.float32), rng.standard_normal(9).astype(np.float32),
             rng.random(9).astype(np.float32), rng.random(9).astype(np.float32)]
    kernel, twin, at_limit = ([a.copy() for a in start] for _ in range(3))
    ops.adam_update(*kernel, step)
    reference.adam_update(*twin, step)
    ops.adam_update(*at_limit, 2 ** 62)
    np.testing.assert_array_equal(kernel[0], at_limit[0])
    np.testing.assert_allclose(kernel[0], twin[0], rtol=1e-6)


# -- step's arguments: counted, read once, checked before any update ------------------------------

@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1), lambda: SGD(lr=0.1, momentum=0.9),
                                  lambda: Adam(lr=0.1)], ids=["sgd", "momentum", "adam"])
def test_step_refuses_params_and_grads_of_different_counts(make):
    params, grads = problem()
    before = [p.copy() for p in params]
    opt = make()
    for short in (grads[0][:1], grads[0] + grads[0][:1]):
        with pytest.raises(ValueError, match=rf"params and grads.*2 params and {len(short)} grads"):
            opt.step(params, short)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)
    assert opt.steps == 0


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1, momentum=0.9), lambda: Adam(lr=0.1)],
                         ids=["momentum", "adam"])
def test_step_takes_generators(make):
    params, grads = problem()
    from_lists = [p.copy() for p in params]
    with_lists, with_generators = make(), make()
    for g in grads[:3]:
        with_lists.step(from_lists, g)
        with_generators.step((p for p in params), (a for a in g))
    for p, q in zip(params, from_lists):
        np.testing.assert_array_equal(p, q)
    assert with_generators.steps == 3


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1, momentum=0.9), lambda: Adam(lr=0.1)],
                         ids=["momentum", "adam"])
@pytest.mark.parametrize("spoil, error", [
    (lambda p, g: (p, g[:1]), ValueError),                      # grad of another shape
    (lambda p, g: (p, g.astype(np.float32)), TypeError),        # grad of another dtype
    (lambda p, g: (np.repeat(p, 2)[::2], g), ValueError),       # param not C-contiguous
], ids=["shape", "dtype", "layout"])
def test_a_bad_pair_leaves_every_param_and_the_state_unchanged(make, spoil, error):
    """The last pair fails the update's checks: the first was not stepped, and a retry with
    good arguments gives exactly the step of an optimizer that never saw the bad call."""
    params, grads = problem()
    opt, clean = make(), make()
    good = [p.copy() for p in params]
    opt.step(params, grads[0])
    clean.step(good, grads[0])
    before = [p.copy() for p in params]
    bad_param, bad_grad = spoil(params[1].copy(), grads[1][1])
    with pytest.raises(error, match=r"params\[1\], grads\[1\]"):
        opt.step([params[0], bad_param], [grads[1][0], bad_grad])
    np.testing.assert_array_equal(params[0], before[0])
    assert opt.steps == 1
    opt.step(params, grads[1])
    clean.step(good, grads[1])
    for p, q in zip(params, good):
        np.testing.assert_array_equal(p, q)


def test_step_refuses_a_grad_that_is_a_state_buffer():
    params, grads = problem()
    opt = Adam(lr=0.1)
    opt.step(params, grads[0])
    before = [p.copy() for p in params]
    exp_avg = opt.state_for(params)["exp_avg"]
    with pytest.raises(ValueError, match=r"exp_avg.*grad.*params\[0\]"):
        opt.step(params, exp_avg)
    np.testing.assert_array_equal(params[0], before[0])
    assert opt.steps == 1


def test_step_refuses_one_array_or_a_non_iterable():
    p = np.ones((2, 3))
    with pytest.raises(TypeError, match="params"):
        SGD().step(p, [np.ones((2, 3))])
    with pytest.raises(TypeError, match="grads"):
        SGD().step([p], 5)


@pytest.mark.parametrize("make", [
    lambda: SGD(lr=10 ** 400), lambda: SGD(momentum=-10 ** 400), lambda: Adam(eps=10 ** 400),
    lambda: Adam(weight_decay=10 ** 400),
], ids=["lr", "momentum", "eps", "weight_decay"])
def test_huge_integer_hyper_parameters_are_value_errors(make):
    with pytest.raises(ValueError, match=r"^(lr|momentum|eps|weight_decay): expected a finite"):
        make()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sklearn_convention_refuses_an_lr_change_whose_rescaled_velocity_overflows(dtype):
    opt = SGD(lr=1.0, momentum=0.9, momentum_convention="sklearn")
    p = np.ones(3, dtype)
    opt.step([p], [np.full(3, 1e10, dtype)])
    velocity = opt.state_dict()["state"]["momentum_buffer"][0]
    with pytest.raises(ValueError, match=r"lr: .*1e-300.*momentum"):
        opt.lr = 1e-300
    assert opt.lr == 1.0
    np.testing.assert_array_equal(opt.state_dict()["state"]["momentum_buffer"][0], velocity)
    opt.lr = 0.5  # a change the buffer holds still rescales it
    np.testing.assert_array_equal(opt.state_dict()["state"]["momentum_buffer"][0], velocity * 2)
    opt.step([p], [np.ones(3, dtype)])
    assert np.isfinite(p).all()


@pytest.mark.parametrize("second", ["same", "view"])
def test_step_refuses_params_that_share_memory(second):
    p = np.ones(6, np.float32)
    other = p if second == "same" else p[3:]
    before = p.copy()
    with pytest.raises(ValueError, match=r"params\[0\] and params\[1\] share memory"):
        SGD(lr=0.1).step([p, other], [np.ones(6, np.float32), np.ones(other.shape, np.float32)])
    np.testing.assert_array_equal(p, before)
