"""Every entry of the loss registry (fastnn.loss_registry), through every path that uses it: its
compiled op against a written-out formula, finite differences and its NumPy twin; the Loss class;
the compiled engine against the layer path; the CLI's choices."""
import math

import numpy as np
import pytest

import fastnn
from fastnn import loss_registry, losses, ops, reference
from fastnn._native import core as _core
from fastnn.testing import TWIN_TOLERANCES


def _softmax_xent_row(z, label):
    top = max(z)
    return math.log(sum(math.exp(v - top) for v in z)) - (z[label] - top)


def _softplus(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


# One row per registry entry: targets for logits of shape (n, k), and the row's loss written out
# independently of the package.
ROWS = {
    "cross_entropy": (lambda rng, n, k: rng.integers(0, k, n), _softmax_xent_row),
    "bce": (lambda rng, n, k: (rng.random((n, k)) > 0.5).astype(np.float64),
            lambda z, t: sum(_softplus(v) - y * v for v, y in zip(z, t))),
    "mse": (lambda rng, n, k: rng.normal(size=(n, k)),
            lambda z, t: sum((v - y) ** 2 for v, y in zip(z, t)) / len(z)),
}
ENTRIES = [pytest.param(e, id=e.name) for e in loss_registry.REGISTRY]
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


def _case(entry, dtype, n=9, k=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n, k)).astype(dtype)
    targets = ROWS[entry.name][0](rng, n, k)
    if entry.targets == "dense":
        targets = targets.astype(dtype)
    weights = rng.uniform(0, 2, n)
    if n > 2:
        weights[2] = 0.0
    return z, targets, weights.astype(dtype)


def test_every_entry_has_a_row_a_class_and_ops():
    assert set(ROWS) == set(loss_registry.NAMES)
    assert [e.code for e in loss_registry.REGISTRY] == list(range(_core.LOSS_COUNT))
    assert (_core.LOSS_SOFTMAX_XENT, _core.LOSS_BCE, _core.LOSS_MSE) == tuple(
        loss_registry.get(name).code for name in ("cross_entropy", "bce", "mse"))
    for e in loss_registry.REGISTRY:
        cls = getattr(fastnn, e.loss_class)
        assert losses.LOSS_TYPES[e.loss_class] is cls and cls.entry is e
        assert losses.registry_entry(cls()) is e
        assert e.op in ops.__all__ and e.op in reference.__all__
        assert e.targets in ("labels", "dense")
        assert loss_registry.for_sklearn(e.sklearn) is e
        for head in e.heads:
            assert isinstance(getattr(_core, "HEAD_" + head.upper()), int)


def test_a_subclass_is_not_the_registry_loss():
    class Custom(fastnn.MSE):
        pass
    assert losses.registry_entry(Custom()) is None
    with pytest.raises(ValueError, match="loss: expected one of"):
        loss_registry.get("hinge")


@pytest.mark.parametrize("entry", ENTRIES)
def test_op_matches_the_written_out_formula(entry):
    z, t, w = _case(entry, np.float64)
    rows, _ = getattr(ops, entry.op)(z, t, reduction="none")
    want = np.array([ROWS[entry.name][1](list(zi), ti if entry.targets == "labels" else list(ti))
                     for zi, ti in zip(z, t)])
    np.testing.assert_allclose(rows, want, rtol=1e-13, atol=1e-15)
    mean, _ = getattr(ops, entry.op)(z, t, sample_weight=w)
    assert mean == pytest.approx(float(np.dot(w, want) / w.sum()), rel=1e-13)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_gradient_check_float64(entry, weighted):
    z, t, w = _case(entry, np.float64, seed=1)
    w = w if weighted else None
    op = getattr(ops, entry.op)
    _, analytic = op(z, t, sample_weight=w)
    numeric = np.empty_like(z)
    h = 1e-6
    for index in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (op(up, t, sample_weight=w)[0] - op(down, t, sample_weight=w)[0]) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("entry", ENTRIES)
def test_twin_parity(entry, dtype, weighted, reduction):
    z, t, w = _case(entry, dtype, seed=2)
    w = w if weighted else None
    tol = TWIN_TOLERANCES[np.dtype(dtype)]
    got = getattr(ops, entry.op)(z, t, reduction=reduction, sample_weight=w)
    want = getattr(reference, entry.op)(z, t, reduction=reduction, sample_weight=w)
    assert got[1].dtype == dtype and want[1].dtype == dtype
    np.testing.assert_allclose(got[0], want[0], **tol)
    np.testing.assert_allclose(got[1], want[1], **tol)
    # In place, as the training loop uses them: the gradient written over the outputs.
    for module in (ops, reference):
        inplace = z.copy()
        loss, grad = getattr(module, entry.op)(inplace, t, grad_out=inplace, reduction=reduction,
                                               sample_weight=w)
        assert grad is inplace
        np.testing.assert_allclose(grad, got[1], **tol)


@pytest.mark.parametrize("entry", ENTRIES)
def test_loss_class_uses_its_op(entry):
    z, t, w = _case(entry, np.float64, seed=3)
    loss = losses.LOSS_TYPES[entry.loss_class]()
    prepared = loss.prepare_targets(t, z.shape[1], z.dtype)
    for weights in (None, w):
        got = loss.loss_and_grad(z, prepared, sample_weight=weights)
        want = getattr(ops, entry.op)(z, t, sample_weight=weights)
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[1], want[1])
    zero_loss, zero_grad = loss.loss_and_grad(z, prepared, sample_weight=np.zeros(len(z)))
    assert zero_loss == 0.0 and not zero_grad.any()


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_engine_matches_the_layer_path(entry, dtype, tol):
    k = 3
    z, t, w = _case(entry, np.float64, n=80, k=k, seed=4)
    X = np.random.default_rng(5).normal(size=(80, 6))

    def trained(engine):
        net = fastnn.Network([fastnn.Linear(6, 8), fastnn.Tanh(), fastnn.Linear(8, k)],
                             loss=losses.LOSS_TYPES[entry.loss_class](), dtype=dtype, seed=6)
        history = net.fit(X, t, sample_weight=w, epochs=2, batch_size=16, progress=False, seed=0,
                          optimizer=fastnn.SGD(lr=0.05, momentum=0.9), engine=engine)
        return net, history

    (compiled, h1), (layers, h2) = trained("compiled"), trained("layers")
    for a, b in zip(compiled.parameters(), layers.parameters()):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=tol)


def test_cli_loss_choices_are_the_registry_names():
    from fastnn.cli.train import _train_parser
    parser = _train_parser()
    action = next(a for a in parser._actions if "--loss" in a.option_strings)
    assert tuple(action.choices) == loss_registry.NAMES


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_cross_entropy_at_extreme_logits(dtype):
    z = np.array([[-1e30, -100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0, 1e30]], dtype)
    for t in (np.zeros_like(z), np.ones_like(z)):
        rows, grad = ops.sigmoid_cross_entropy(z.T, t.T, reduction="none")
        want_rows, want_grad = reference.sigmoid_cross_entropy(z.T, t.T, reduction="none")
        assert np.isfinite(rows).all() and np.isfinite(grad).all()
        np.testing.assert_allclose(rows, want_rows, **TWIN_TOLERANCES[np.dtype(dtype)])
        np.testing.assert_allclose(grad, want_grad, **TWIN_TOLERANCES[np.dtype(dtype)])
    # exact where the formula is exact: softplus(0) = log 2, a wrong sign costs |z|
    rows, _ = ops.sigmoid_cross_entropy(z.T, np.zeros_like(z.T), reduction="none")
    assert rows[4] == pytest.approx(math.log(2), rel=1e-7) and rows[-1] == pytest.approx(1e30, rel=1e-7)
    assert rows[0] == 0.0


@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
@pytest.mark.parametrize("entry", [e for e in loss_registry.REGISTRY if e.targets == "dense"], ids=lambda e: e.name)
def test_dense_targets_of_any_real_dtype_are_converted(entry, module):
    op = getattr(module, entry.op)
    z = np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)
    want = op(z, np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    for targets in ([[1, 0], [0, 1]], np.array([[True, False], [False, True]]),
                    np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1, 0], [0, 1]], np.uint8)):
        loss, grad = op(z, targets)
        assert loss == want[0] and grad.dtype == np.float32
        np.testing.assert_array_equal(grad, want[1])
    with pytest.raises(TypeError, match="^targets: expected real values"):
        op(z, np.array([["1", "0"], ["0", "1"]]))
    t = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="^grad_out"):
        op(z, t, grad_out=t)


@pytest.mark.parametrize("dtype, weight", [(np.float32, 1e38), (np.float32, 1e-45), (np.float64, 1e308),
                                           (np.float64, 5e-324)], ids=["f32-huge", "f32-subnormal",
                                                                       "f64-huge", "f64-subnormal"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_extreme_weights_give_the_twins_gradient(entry, dtype, weight):
    # Outputs and targets whose gradient entries are at most 1 in size: w * gradient fits (one
    # output for the dense losses, where MSE's factor 2 / K is largest).
    rng = np.random.default_rng(6)
    k = 3 if entry.targets == "labels" else 1
    z = rng.uniform(-0.25, 0.25, (2, k)).astype(dtype)
    t = rng.integers(0, 3, 2) if entry.targets == "labels" else rng.uniform(0, 0.5, (2, k)).astype(dtype)
    w = np.array([weight, 1.0])
    tiny = np.finfo(dtype).smallest_subnormal
    for reduction in ("sum", "none", "mean"):
        got = getattr(ops, entry.op)(z, t, reduction=reduction, sample_weight=w)
        want = getattr(reference, entry.op)(z, t, reduction=reduction, sample_weight=w)
        assert np.isfinite(got[1]).all()
        np.testing.assert_allclose(got[1], want[1], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=4 * tiny)


@pytest.mark.parametrize("value, message", [(-1.0, r"sample_weight\[1\] = -1.0 \(1 negative\)"),
                                            (np.nan, r"sample_weight\[1\] = nan \(1 not finite"),
                                            (1e39, r"sample_weight\[1\] = 1e\+39 \(1 not finite in float32\)")])
def test_op_weight_errors_name_the_index_and_value(value, message):
    z, t, _ = _case(loss_registry.get("mse"), np.float32, n=3, k=2)
    with pytest.raises(ValueError, match=message):
        ops.mean_squared_error(z, t, sample_weight=np.array([1.0, value, 1.0]))
    with pytest.raises(ValueError, match=r"all 2 weights are zero \(or underflow to zero in float32\)"):
        ops.mean_squared_error(z[:2], t[:2], sample_weight=np.array([1e-300, 1e-300]))
    zero = ops.mean_squared_error(z[:2], t[:2], reduction="sum", sample_weight=np.zeros(2))
    assert zero[0] == 0.0 and not zero[1].any()


def test_softmax_cross_entropy_class_needs_two_outputs():
    with pytest.raises(ValueError, match="at least 2 outputs"):
        fastnn.SoftmaxCrossEntropy().forward(np.zeros((5, 1)), np.zeros(5, int))


def test_weights_whose_sum_overflows_are_refused_by_fit():
    X = np.random.default_rng(0).normal(size=(64, 4))
    y = np.arange(64) % 3
    net = fastnn.Network([fastnn.Linear(4, 3)], seed=0, dtype="float64")
    with pytest.raises(ValueError, match="^sample_weight: the weights sum to more than float64 holds"):
        net.fit(X, y, epochs=1, sample_weight=np.full(64, 1e307), progress=False)
    with pytest.raises(ValueError, match="^sample_weight: the weights sum to more than float64 holds"):
        net.evaluate(X, y, sample_weight=np.full(64, 1e308))


@pytest.mark.parametrize("loss", [fastnn.BinaryCrossEntropy(), fastnn.SoftmaxCrossEntropy()],
                         ids=["bce", "cross_entropy"])
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
@pytest.mark.parametrize("shape", [(3,), (), (2, 3, 1)], ids=str)
def test_predict_takes_outputs_of_shape_n_by_k_only(loss, method, shape):
    """As a network hands them over: one output is a column (N, 1), never a vector."""
    with pytest.raises(ValueError, match=r"^outputs: expected a 2-D array of shape \(N, K\).*got shape"):
        getattr(loss, method)(np.zeros(shape))
    assert getattr(loss, method)(np.zeros((4, 2))).shape[0] == 4
