"""The compiled training engine (fastnn._fastpath.CompiledEngine -> _core.TrainingEngine) against
the layer-by-layer path, for every network, loss, weighting and optimizer it trains; its thread
independence; its refusals; the optimizers' public state."""
import numpy as np
import pytest

import fastnn
from fastnn import ops, reference
from fastnn._fastpath import CompiledEngine, unsupported_reason
from fastnn._native import core
from fastnn.errors import TrainingDivergedError
from fastnn.layers import Dropout, Linear, ReLU, Sigmoid, Tanh
from fastnn.losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from fastnn.network import Network
from fastnn.optim import SGD, Adam, AdamW, optimizer_from_state
from optimizer_cases import OPTIMIZERS

N, F, H, BATCH = 150, 12, 16, 32  # the last batch of an epoch is short (150 = 4 * 32 + 22)



def _layers(case):
    hidden = [Linear(F, H), Tanh()]
    if case == "dropout":
        return hidden + [Dropout(0.2), Linear(H, 4)]
    if case == "input_dropout":
        return [Dropout(0.1), Linear(F, H), ReLU(), Dropout(0.3), Linear(H, H), Sigmoid(), Linear(H, 4)]
    if case == "mse":
        return hidden + [Linear(H, 1)]
    if case == "bce":
        return hidden + [Linear(H, 1)]
    if case == "multilabel":
        return hidden + [Linear(H, 5)]
    return hidden + [Linear(H, 4)]  # softmax cross-entropy


LOSSES = {"mse": MSE, "bce": BinaryCrossEntropy, "multilabel": BinaryCrossEntropy}


def _problem(case, weighted, dtype=np.float64):
    """(two identical networks, X, prepared targets, sample weights or None)."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, F)).astype(dtype)
    loss = LOSSES.get(case, SoftmaxCrossEntropy)()
    nets = [Network(_layers(case), loss=loss, dtype=np.dtype(dtype).name, seed=3) for _ in range(2)]
    if case == "mse":
        targets = (X[:, :1] * 2 + np.sin(X[:, 1:2])).astype(dtype)
    elif case == "bce":
        targets = (X[:, :1] + X[:, 1:2] > 0).astype(dtype)
    elif case == "multilabel":
        targets = (X[:, :5] > 0.3).astype(dtype)
    else:
        targets = np.argmax(X[:, :4], axis=1).astype(np.int64)
    weights = rng.uniform(0, 3, N).astype(dtype) if weighted else None
    if weighted:
        weights[:40] = 0  # whole batches of zero weight (the first one, shuffled or not)
    return nets, X, targets, weights


# -- the layer path -------------------------------------------------------------------------

def _loss_and_grad(loss, z, t, w):
    """sum_i w_i l_i, and the gradient of the batch's weighted mean loss (NumPy)."""
    n = len(z)
    w = np.ones(n) if w is None else w.astype(np.float64)
    total = w.sum()
    scale = w / total if total > 0 else np.zeros(n)
    z64 = z.astype(np.float64)
    if isinstance(loss, SoftmaxCrossEntropy):
        shifted = z64 - z64.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        per_row = -log_p[np.arange(n), t]
        d = np.exp(log_p)
        d[np.arange(n), t] -= 1
    elif isinstance(loss, BinaryCrossEntropy):
        per_row = (np.maximum(z64, 0) + np.log1p(np.exp(-np.abs(z64))) - t * z64).sum(axis=1)
        d = 1 / (1 + np.exp(-z64)) - t
    else:
        per_row = ((z64 - t) ** 2).mean(axis=1)
        d = 2 * (z64 - t) / z.shape[1]
    return float((w * per_row).sum()), (d * scale[:, None]).astype(z.dtype), float(w.sum())


def layer_path_epoch(net, optimizer, X, targets, sample_weight, order, batch_size):
    """One epoch on the layer-by-layer path (the network's forward / backward ops, Dropout masks
    from net's generator, the optimizer's step): (loss_sum, weight_sum). When fit takes
    sample_weight and engine="layers", this is fit(..., engine="layers") for one epoch."""
    loss_sum = weight_sum = 0.0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        out = net.forward(X[rows], training=True)
        w = None if sample_weight is None else sample_weight[rows]
        batch_loss, grad, batch_weight = _loss_and_grad(net.loss, out, targets[rows], w)
        grads = net.backward(grad)
        optimizer.step(net.parameters(), grads)
        loss_sum += batch_loss
        weight_sum += batch_weight
    return loss_sum, weight_sum


def _never(step):
    return AssertionError(f"diverged at step {step}")


def _train_both(case, opt_name, weighted, epochs=2, dtype=np.float64):
    (compiled, layered), X, targets, weights = _problem(case, weighted, dtype)
    opt_c, opt_l = OPTIMIZERS[opt_name](), OPTIMIZERS[opt_name]()
    engine = CompiledEngine(compiled, opt_c, X, targets, weights, BATCH)
    shuffle = np.random.default_rng(11)
    results = []
    for _ in range(epochs):
        order = shuffle.permutation(N)
        c = engine.run_epoch(order, compiled._rng, None, _never)
        layer_sum, layer_weight = layer_path_epoch(layered, opt_l, X, targets, weights, order, BATCH)
        results.append((c, (layer_sum, layer_weight)))
    return compiled, layered, opt_c, opt_l, results


CASES = ["dropout", "input_dropout", "mse", "bce", "multilabel", "softmax"]


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("case, weighted", [(c, False) for c in CASES] + [
    ("softmax", True), ("bce", True), ("multilabel", True), ("mse", True), ("dropout", True)])
def test_compiled_engine_matches_the_layer_path(case, weighted, opt_name):
    compiled, layered, opt_c, opt_l, results = _train_both(case, opt_name, weighted)
    for (loss_sum, weight_sum, correct, seen), (layer_sum, layer_weight) in results:
        assert seen == N
        np.testing.assert_allclose(weight_sum, layer_weight, rtol=1e-12)
        np.testing.assert_allclose(loss_sum, layer_sum, rtol=1e-12)
    for a, b in zip(compiled.parameters(), layered.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    state_c, state_l = opt_c.state_dict(), opt_l.state_dict()
    assert state_c["steps"] == state_l["steps"] == 2 * 5
    assert state_c["state"].keys() == state_l["state"].keys()
    for name, buffers in state_c["state"].items():
        for a, b in zip(buffers, state_l["state"][name]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # the generators of the Dropout masks drew the same numbers
    assert compiled._rng.bit_generator.state == layered._rng.bit_generator.state


@pytest.mark.parametrize("case", ["dropout", "multilabel"])
def test_float32_engine_matches_the_layer_path_to_rounding(case):
    compiled, layered, *_ = _train_both(case, "adam", True, dtype=np.float32)
    for a, b in zip(compiled.parameters(), layered.parameters()):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-5)], ids=["float64", "float32"])
def test_the_dropout_masks_are_the_layer_paths(dtype, rtol):
    # One step of plain SGD with lr 0 changes nothing but draws the masks: the outputs the
    # engine trained on give the loss the layer path computes with the same generator.
    (compiled, layered), X, targets, _ = _problem("input_dropout", False, dtype)
    engine = CompiledEngine(compiled, SGD(lr=0.0), X, targets, None, N)
    order = np.arange(N)
    loss_sum, *_ = engine.run_epoch(order, compiled._rng, None, _never)
    layer_sum, _ = layer_path_epoch(layered, SGD(lr=0.0), X, targets, None, order, N)
    no_dropout = layered.evaluate(X, targets)[0] * N
    np.testing.assert_allclose(loss_sum, layer_sum, rtol=rtol)
    assert abs(loss_sum - no_dropout) > 1e-3  # the masks mattered


def test_zero_weight_batches_contribute_nothing():
    (net, _), X, targets, weights = _problem("softmax", True)
    weights[:] = 0
    weights[-1] = 1.0
    before = [p.copy() for p in net.parameters()]
    engine = CompiledEngine(net, SGD(lr=0.1), X, targets, weights, BATCH)
    loss_sum, weight_sum, _, seen = engine.run_epoch(np.arange(N - 1), net._rng, None, _never)
    assert (loss_sum, weight_sum, seen) == (0.0, 0.0, N - 1)
    for a, b in zip(before, net.parameters()):
        np.testing.assert_array_equal(a, b)


def _thread_run(threads):
    fastnn.set_num_threads(threads)
    try:
        compiled, *_ = _train_both("dropout", "adamw", True, epochs=2, dtype=np.float32)
    finally:
        fastnn.set_num_threads(1)
    return compiled.parameters()


def test_one_and_two_threads_give_the_same_bits(four_parts):
    for a, b in zip(_thread_run(1), _thread_run(2)):
        assert np.array_equal(a, b)


def test_a_non_finite_loss_stops_before_its_step():
    _, X, targets, _ = _problem("mse", False)
    net = Network([Linear(F, H), ReLU(), Linear(H, 1)], loss=MSE(), dtype="float64", seed=3)
    X[100] = 1e200  # its squared error overflows
    engine = CompiledEngine(net, SGD(lr=0.01), X, targets, None, BATCH)
    order = np.arange(N)
    with pytest.raises(TrainingDivergedError) as info:
        engine.run_epoch(order, net._rng, None,
                         lambda step: TrainingDivergedError(f"step {step}", epoch=1, step=step, loss=np.nan))
    assert info.value.step == 4  # row 100 is in the fourth batch of 32
    assert all(np.isfinite(p).all() for p in net.parameters())


# -- what the engine refuses ----------------------------------------------------------------

class Custom(ReLU):
    """A user's own activation (a subclass: the engine does not know its derivative)."""


class Scaled(SoftmaxCrossEntropy):
    pass


class RMSprop(SGD):
    pass


@pytest.mark.parametrize("layers, loss, optimizer, match", [
    (lambda: [Linear(4, 3), Custom(), Linear(3, 2)], SoftmaxCrossEntropy, SGD, r"layers\[1\] is a user-defined"),
    (lambda: [Linear(4, 3), Scaled()], Scaled, SGD, "loss Scaled has no compiled kernel"),
    (lambda: [Linear(4, 2)], SoftmaxCrossEntropy, RMSprop, "optimizer RMSprop has no compiled step"),
    (lambda: [Linear(4, 3), ReLU(), Tanh(), Linear(3, 2)], SoftmaxCrossEntropy, SGD,
     r"layers\[2\] \(Tanh\) does not follow a Linear"),
    (lambda: [Linear(4, 2), Dropout(0.5)], SoftmaxCrossEntropy, SGD, "Dropout after the last Linear"),
    (lambda: [Dropout(0.1), Dropout(0.1), Linear(4, 2)], SoftmaxCrossEntropy, SGD, "follows another Dropout"),
])
def test_unsupported_networks_are_named(layers, loss, optimizer, match):
    if loss is Scaled:
        net = Network([Linear(4, 2)], loss=Scaled())
    else:
        net = Network(layers(), loss=loss())
    reason = unsupported_reason(net, optimizer(), None)
    assert reason is not None and __import__("re").search(match, reason)
    with pytest.raises(ValueError, match="compiled engine cannot train"):
        CompiledEngine(net, optimizer(), np.zeros((4, 4)), np.zeros(4, np.int64), None, 2)
    assert unsupported_reason(Network([Dropout(0.2), Linear(4, 3), ReLU(), Dropout(0.5), Linear(3, 2)]),
                              AdamW(), np.ones(3)) is None


def _engine_args(**changes):
    rng = np.random.default_rng(0)
    args = dict(weights=[rng.standard_normal((4, 3)), rng.standard_normal((3, 2))],
                biases=[np.zeros(3), np.zeros(2)], activations=[2, 0], act_params=[0.0, 0.0],
                drop=[0.0, 0.0], x=rng.standard_normal((10, 4)), loss=core.LOSS_SOFTMAX_XENT,
                labels_or_targets=rng.integers(0, 2, 10), sample_weight=None, batch_size=4,
                optimizer_kind="sgd", first_moments=None, second_moments=None)
    args.update(changes)
    return args


@pytest.mark.parametrize("changes, error, match", [
    (dict(weights=[np.zeros((4, 3), np.float32), np.zeros((3, 2), np.float32)]), ValueError, r"biases\[0\]"),
    (dict(weights=[np.zeros((4, 3), np.int64), np.zeros((3, 2))]), TypeError, "float32 or float64"),
    (dict(weights=[np.zeros((4, 3)), np.zeros((4, 2))]), ValueError, r"weights\[1\]"),
    (dict(weights=[]), ValueError, "weights"),
    (dict(biases=[np.zeros(3)]), ValueError, "biases: expected a list of 2"),
    (dict(activations=[9, 0]), ValueError, r"activations\[0\]"),
    (dict(drop=[1.0, 0.0]), ValueError, r"drop\[0\]"),
    (dict(act_params=[float("nan"), 0.0]), ValueError, r"act_params\[0\]"),
    (dict(x=np.zeros((10, 5))), ValueError, "x: expected"),
    (dict(x=np.zeros((10, 8))[:, ::2]), ValueError, "x: expected"),
    (dict(labels_or_targets=np.full(10, 2)), ValueError, r"labels: expected class labels in \[0, 2\)"),
    (dict(labels_or_targets=np.zeros(9, np.int64)), ValueError, "labels"),
    (dict(loss=core.LOSS_MSE, labels_or_targets=np.zeros((10, 3))), ValueError, "targets"),
    (dict(loss=7), ValueError, "loss"),
    (dict(sample_weight=-np.ones(10)), ValueError, "sample_weight"),
    (dict(sample_weight=np.ones(10, np.float32)), ValueError, "sample_weight"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(optimizer_kind="rmsprop"), ValueError, "optimizer_kind"),
    (dict(optimizer_kind="adam"), ValueError, "first_moments"),
    (dict(first_moments=[np.zeros((4, 3))]), ValueError, "first_moments"),
])
def test_the_extension_type_refuses_bad_arguments(changes, error, match):
    with pytest.raises(error, match=match):
        core.TrainingEngine(**_engine_args(**changes))


def test_the_extension_type_refuses_bad_runs():
    args = _engine_args(drop=[0.5, 0.0])
    engine = core.TrainingEngine(**args)
    with pytest.raises(RuntimeError, match="start_epoch"):
        engine.run(0, 1, None, lr=0.1)
    for order, match in ((np.array([0, 10]), "outside"), (np.array([-1]), "outside"),
                         (np.arange(3, dtype=np.int32), "int64"), (np.zeros(0, np.int64), "non-empty")):
        with pytest.raises(ValueError, match=match):
            engine.start_epoch(order.astype(np.int64) if match == "outside" else order, 1.0, 0.0)
    for bound in (float("nan"), float("inf"), -2.0, -0.5):
        with pytest.raises(ValueError, match=r"input_bound: expected a finite number >= 0 or -1, got"):
            engine.start_epoch(np.arange(10), 1.0, 0.0, bound)
    engine.start_epoch(np.arange(10), 1.0, 0.0)
    assert engine.n_uniforms(0, 3) == 10 * 4
    with pytest.raises(ValueError, match="uniforms"):
        engine.run(0, 3, None, lr=0.1)
    with pytest.raises(ValueError, match="uniforms"):
        engine.run(0, 3, np.zeros(39), lr=0.1)
    with pytest.raises(ValueError, match="first_step, stop_step"):
        engine.run(0, 4, np.zeros(40), lr=0.1)
    with pytest.raises(ValueError, match="hyper-parameters"):
        engine.run(0, 3, np.zeros(40), lr=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        engine.run(0, 3, np.zeros(40), lr=0.1, momentum=0.9)
    assert engine.run(0, 3, np.full(40, 0.7), lr=0.1)[3] == 10
    w = np.zeros((4, 3))
    with pytest.raises(ValueError, match="shares memory"):
        core.TrainingEngine(**_engine_args(weights=[w, np.zeros((3, 2))], optimizer_kind="sgd",
                                           first_moments=[w, np.zeros(3), np.zeros((3, 2)), np.zeros(2)]))


# -- the optimizers' public state -----------------------------------------------------------

@pytest.mark.parametrize("opt_name", ["momentum", "nesterov", "adam", "adamw"])
def test_state_dict_round_trip_continues_exactly(opt_name):
    (straight, resumed), X, targets, _ = _problem("dropout", False)
    order = np.random.default_rng(1).permutation(N)
    opt = OPTIMIZERS[opt_name]()
    engine = CompiledEngine(straight, opt, X, targets, None, BATCH)
    for _ in range(2):
        engine.run_epoch(order, straight._rng, None, _never)
    first = OPTIMIZERS[opt_name]()
    CompiledEngine(resumed, first, X, targets, None, BATCH).run_epoch(order, resumed._rng, None, _never)
    state = first.state_dict()
    assert set(state) == {"type", "hyperparameters", "steps", "state"} and state["steps"] == 5
    again = optimizer_from_state(state)
    assert again.get_config() == first.get_config() and type(again) is type(first)
    CompiledEngine(resumed, again, X, targets, None, BATCH).run_epoch(order, resumed._rng, None, _never)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a, b)


def test_state_names_are_pytorchs_and_state_for_gives_live_buffers():
    params = [np.ones((2, 3)), np.ones(3)]
    assert SGD(lr=0.1).state_for(params) == {}
    sgd = SGD(lr=0.1, momentum=0.9)
    buffers = sgd.state_for(params)["momentum_buffer"]
    assert buffers is sgd.state_for(params)["momentum_buffer"]  # the same live arrays
    buffers[0][:] = 5
    assert sgd.state_dict()["state"]["momentum_buffer"][0][0, 0] == 5
    adam = AdamW()
    state = adam.state_for(params)
    assert sorted(state) == ["exp_avg", "exp_avg_sq"] and adam.steps == 0
    adam.step(params, [np.ones((2, 3)), np.ones(3)])
    assert adam.steps == 1
    with pytest.raises(ValueError, match="exp_avg has 2 buffers for 1 parameters"):
        adam.state_for([np.ones((4, 4), np.float32)])  # other parameters: refused, not reset
    with pytest.raises(ValueError, match=r"exp_avg\[0\] is float64\(2, 3\), parameter 0 is float32"):
        adam.state_for([np.ones((2, 3), np.float32), np.ones(3, np.float32)])
    assert adam.steps == 1
    adam.reset()
    other = adam.state_for([np.ones((4, 4), np.float32)])  # after reset(): fresh zeros
    assert other["exp_avg"][0].dtype == np.float32 and adam.steps == 0
    assert fastnn.optim.get("AdamW").weight_decay == 0.01
    assert Adam(betas=(0.8, 0.99)).get_config()["beta2"] == 0.99
    with pytest.raises(TypeError, match="betas"):
        Adam(betas=(0.8, 0.99), beta1=0.5)


def test_state_dicts_of_the_earlier_form_still_load():
    m, v = [np.full((2, 2), 0.5), np.full(2, 0.25)], [np.full((2, 2), 0.1), np.full(2, 0.2)]
    old = {"type": "Adam", "config": {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.0},
           "scalars": {"t": 7}, "arrays": {"m.0": m[0], "m.1": m[1], "v.0": v[0], "v.1": v[1]}}
    opt = optimizer_from_state(old)
    state = opt.state_dict()
    assert state["steps"] == 7 and opt.lr == 0.01
    for a, b in zip(state["state"]["exp_avg"] + state["state"]["exp_avg_sq"], m + v):
        np.testing.assert_array_equal(a, b)
    sgd = optimizer_from_state({"type": "SGD", "config": {"lr": 0.1, "momentum": 0.9, "nesterov": False,
                                                          "weight_decay": 0.0},
                                "scalars": {}, "arrays": {"velocity.0": m[1]}})
    np.testing.assert_array_equal(sgd.state_dict()["state"]["momentum_buffer"][0], m[1])
    with pytest.raises(ValueError, match="unknown buffer"):
        optimizer_from_state({**old, "arrays": {"q.0": m[0]}})


def test_files_saved_with_the_earlier_optimizer_form_still_load(tmp_path):
    from tests.test_serialization import members, write
    from fastnn.serialization import load

    (net, _), X, targets, _ = _problem("softmax", False)
    net.fit(X, targets, epochs=1, batch_size=BATCH, optimizer=Adam(lr=0.01), progress=False, seed=0)
    path = tmp_path / "new.npz"
    net.save(path, include_optimizer=True)
    header, arrays = members(path)
    state = header["optimizer"]
    old_arrays = {}
    for name, old_name in (("exp_avg", "m"), ("exp_avg_sq", "v")):
        for i, array_name in enumerate(state["state"][name]):
            arrays[f"optimizer.{old_name}.{i}"] = arrays.pop(array_name)
            header["arrays"][f"optimizer.{old_name}.{i}"] = header["arrays"].pop(array_name)
            old_arrays[f"{old_name}.{i}"] = f"optimizer.{old_name}.{i}"
    header["optimizer"] = {"type": "Adam", "config": state["hyperparameters"], "scalars": {"t": state["steps"]},
                           "arrays": old_arrays}
    write(tmp_path / "old.npz", header, arrays)
    new, old = load(path).optimizer.state_dict(), load(tmp_path / "old.npz").optimizer.state_dict()
    assert new["steps"] == old["steps"] == 5 and new["hyperparameters"] == old["hyperparameters"]
    for a, b in zip(new["state"]["exp_avg_sq"], old["state"]["exp_avg_sq"]):
        np.testing.assert_array_equal(a, b)


# -- ops.adam_update / adamw_update and their twins -----------------------------------------

@pytest.mark.parametrize("update", ["adam_update", "adamw_update"])
def test_adam_ops_match_their_twins(update, dtype, tol):
    rng = np.random.default_rng(2)
    p = rng.standard_normal((7, 9)).astype(dtype)
    mine = [p.copy(), np.zeros_like(p), np.zeros_like(p)]
    twin = [p.copy(), np.zeros_like(p), np.zeros_like(p)]
    for step in range(1, 5):
        g = rng.standard_normal(p.shape).astype(dtype)
        out = getattr(ops, update)(mine[0], g, mine[1], mine[2], step, lr=0.05, weight_decay=0.1)
        assert out is mine[0]
        getattr(reference, update)(twin[0], g, twin[1], twin[2], step, lr=0.05, weight_decay=0.1)
    for a, b in zip(mine, twin):
        np.testing.assert_allclose(a, b, **tol)
    assert not np.allclose(mine[0], p)


def test_adamw_decays_apart_from_the_gradient():
    p = np.full(3, 4.0)
    ops.adamw_update(p, np.zeros(3), np.zeros(3), np.zeros(3), 1, lr=0.1, weight_decay=0.5)
    np.testing.assert_array_equal(p, np.full(3, 4.0 * (1 - 0.05)))  # zero gradient: decay only
    q = np.full(3, 4.0)
    ops.adam_update(q, np.zeros(3), np.zeros(3), np.zeros(3), 1, lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(q, np.full(3, 4.0 - 0.1))  # Adam's decay goes through the moments


@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(step=0), ValueError, "step"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(beta1=1.0), ValueError, "beta1"),
    (dict(eps=0.0), ValueError, "eps"),
    (dict(grad=np.zeros(4)), ValueError, "grad"),
    (dict(exp_avg=np.zeros(4)), ValueError, "exp_avg"),
    (dict(exp_avg_sq=np.zeros(3, np.float32)), (TypeError, ValueError), "exp_avg_sq"),
])
def test_adam_ops_refuse_bad_arguments(module, kwargs, error, match):
    args = dict(param=np.zeros(3), grad=np.zeros(3), exp_avg=np.zeros(3), exp_avg_sq=np.zeros(3), step=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        module.adam_update(**args)


# -- activations with a parameter or whose derivative needs the input (codes of kernels.h) --

def _numpy_step(x, labels, weights, biases, code, slope, u, p, lr):
    """One plain SGD step of x -> Linear -> activation -> Dropout(p) with the uniforms u ->
    Linear -> softmax cross-entropy, in NumPy."""
    from scipy.special import erfc

    z = x @ weights[0] + biases[0]
    if code == 5:
        h, dh_dz = np.where(z < 0, slope * z, z), np.where(z > 0, 1.0, slope)
    else:
        h = 0.5 * z * erfc(-z / np.sqrt(2))
        dh_dz = 0.5 * erfc(-z / np.sqrt(2)) + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    mask = np.where(u >= p, 1 / (1 - p), 0.0) if p else np.ones_like(h)
    a = h * mask
    out = a @ weights[1] + biases[1]
    prob = np.exp(out - out.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    prob[np.arange(len(x)), labels] -= 1
    d_out = prob / len(x)
    dz = (d_out @ weights[1].T) * mask * dh_dz
    grads = [x.T @ dz, dz.sum(axis=0), a.T @ d_out, d_out.sum(axis=0)]
    return [p_ - lr * g for p_, g in zip([weights[0], biases[0], weights[1], biases[1]], grads)]


@pytest.mark.parametrize("code, slope", [(5, 0.1), (5, 0.0), (6, 0.0)], ids=["leaky_relu", "leaky0", "gelu"])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_engine_trains_parametrised_and_input_derivative_activations(code, slope, p):
    rng = np.random.default_rng(4)
    n = 24
    x = rng.standard_normal((n, 6))
    labels = rng.integers(0, 3, n)
    weights = [rng.standard_normal((6, 8)), rng.standard_normal((8, 3))]
    biases = [rng.standard_normal(8) * 0.1, np.zeros(3)]
    u = rng.random((n, 8))
    expected = _numpy_step(x, labels, weights, biases, code, slope, u, p, lr=0.5)
    mine = [a.copy() for a in weights], [a.copy() for a in biases]
    engine = core.TrainingEngine(mine[0], mine[1], [code, 0], [slope, 0.0], [0.0, p], x,
                                 core.LOSS_SOFTMAX_XENT, labels.astype(np.int64), None, n, "sgd", None, None)
    engine.start_epoch(np.arange(n, dtype=np.int64), 1.0, 0.0)
    engine.run(0, 1, u.reshape(-1) if p else None, lr=0.5, n_parts=3, n_threads=1)
    for a, b in zip([mine[0][0], mine[1][0], mine[0][1], mine[1][1]], expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("layer", [lambda: fastnn.LeakyReLU(0.2), fastnn.GELU], ids=["leaky_relu", "gelu"])
@pytest.mark.parametrize("opt_name", ["momentum", "adamw"])
def test_compiled_engine_matches_the_layer_path_with_new_activations(layer, opt_name, monkeypatch):
    monkeypatch.setitem(globals(), "_layers", lambda case: [Linear(F, H), layer(), Dropout(0.2), Linear(H, 4)])
    compiled, layered, *_ = _train_both("softmax", opt_name, True)
    for a, b in zip(compiled.parameters(), layered.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_a_non_finite_gradient_under_a_finite_loss_stops_before_its_step():
    # logits (1e8, -1e8): a finite loss of 2e8, but dL/dh = 1e308 + 1e308 overflows.
    weights = [np.ones((1, 1)), np.array([[1e308, -1e308]])]
    biases = [np.zeros(1), np.zeros(2)]
    before = [a.copy() for a in weights + biases]
    engine = core.TrainingEngine(weights, biases, [0, 0], [0.0, 0.0], [0.0, 0.0], np.full((1, 1), 1e-300),
                                 core.LOSS_SOFTMAX_XENT, np.ones(1, np.int64), None, 1, "sgd", None, None)
    engine.start_epoch(np.zeros(1, np.int64), 1.0, 0.0)
    loss_sum, weight_sum, correct, seen, failed = engine.run(0, 1, None, lr=0.1, n_parts=2)
    assert failed == 0 and seen == 0
    for a, b in zip(weights + biases, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("steps_per_call", [1, 2])
@pytest.mark.parametrize("case", ["dropout", "input_dropout"])
def test_dropout_uniforms_line_up_across_native_calls(case, steps_per_call, monkeypatch):
    import fastnn._fastpath as fastpath
    monkeypatch.setattr(fastpath, "_STEP_ELEMENTS", steps_per_call * BATCH * F)
    monkeypatch.setattr(fastpath, "_PROBE_STEPS", steps_per_call)
    compiled, layered, *_ = _train_both(case, "momentum", False)
    for a, b in zip(compiled.parameters(), layered.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert compiled._rng.bit_generator.state == layered._rng.bit_generator.state


def test_the_engine_checks_its_arrays_when_built():
    (net, _), X, targets, weights = _problem("softmax", True)
    with pytest.raises(ValueError, match="sample_weight"):
        CompiledEngine(net, SGD(lr=0.1), X, targets, weights[:-1], BATCH)
    with pytest.raises(ValueError, match="labels"):
        CompiledEngine(net, SGD(lr=0.1), X, targets + 4, None, BATCH)
    with pytest.raises(ValueError, match="x: expected"):
        CompiledEngine(net, SGD(lr=0.1), X[:, :-1], targets, None, BATCH)


def _fit(engine, case, optimizer):
    """Two epochs of Network.fit on the compiled engine or the layer path."""
    (net, _), X, targets, _ = _problem(case, False)
    history = net.fit(X, targets, epochs=2, batch_size=BATCH, optimizer=optimizer, seed=5, progress=False,
                      validation_split=0.2, engine=engine)
    return net, history


@pytest.mark.parametrize("case, opt_name", [("dropout", "adam"), ("input_dropout", "nesterov"), ("mse", "adamw"),
                                            ("bce", "weight_decay")])
def test_fit_trains_compiled_and_agrees_with_the_layer_path(case, opt_name, monkeypatch):
    import fastnn._fastpath as fastpath
    runs = []
    real = fastpath.CompiledEngine.run_epoch
    monkeypatch.setattr(fastpath.CompiledEngine, "run_epoch", lambda *a, **k: runs.append(1) or real(*a, **k))
    compiled, h_compiled = _fit("compiled", case, OPTIMIZERS[opt_name]())
    assert runs == [1, 1]
    layered, h_layered = _fit("layers", case, OPTIMIZERS[opt_name]())
    assert runs == [1, 1]
    np.testing.assert_allclose(h_compiled.train_loss, h_layered.train_loss, rtol=1e-12)
    np.testing.assert_allclose(h_compiled.val_loss, h_layered.val_loss, rtol=1e-12)
    for a, b in zip(compiled.parameters(), layered.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert compiled._rng.bit_generator.state == layered._rng.bit_generator.state


def test_weights_do_not_depend_on_threads_with_dropout_gelu_and_adamw(monkeypatch, four_parts):
    import warnings

    from fastnn import _cpulimits
    monkeypatch.setattr(_cpulimits, "available_cores", lambda: (8, "test"))  # more than this machine
    weights = []
    for threads in (1, 3, 4, 8):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with fastnn.num_threads(threads):
                _, X, targets, _ = _problem("dropout", False, np.float32)
                net = Network([Dropout(0.1), Linear(F, 40), fastnn.GELU(), Dropout(0.3), Linear(40, 4)], seed=3)
                net.fit(X, targets, epochs=2, batch_size=BATCH, optimizer=AdamW(lr=0.01), seed=1, progress=False)
        weights.append(net.parameters())
    for other in weights[1:]:
        for a, b in zip(weights[0], other):
            assert np.array_equal(a, b)
