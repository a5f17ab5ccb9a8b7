"""Every entry of the activation registry (fastnn.activations), through every path that uses it:
the op pair against finite differences, an independent formula and its NumPy twin; the fused
Linear block; the native training loop against the layer-by-layer path; ONNX; save/load."""
import json
import math
import pathlib
import re
from decimal import Decimal, getcontext

import numpy as np
import pytest

import fastnn
from fastnn import activations, ops, reference
from fastnn.layers import LAYER_TYPES, Activation
from fastnn._native import core as _core
from fastnn.testing import TWIN_TOLERANCES

# One row per registry entry: the layer's keyword arguments (a non-default parameter where it
# has one) and the function written out independently of the package.
ROWS = {
    "sigmoid": ({}, lambda x: 1 / (1 + math.exp(-x))),
    "relu": ({}, lambda x: max(x, 0.0)),
    "tanh": ({}, math.tanh),
    "scaled_tanh": ({}, lambda x: 1.7159 * math.tanh(2 * x / 3)),
    "leaky_relu": ({"negative_slope": 0.2}, lambda x: x if x >= 0 else 0.2 * x),
    "gelu": ({}, lambda x: 0.5 * x * math.erfc(-x / math.sqrt(2))),
}
ENTRIES = [pytest.param(e, id=e.name) for e in activations.REGISTRY]
DTYPES = [np.float32, np.float64]
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _layer(entry):
    return getattr(fastnn, entry.layer)(**ROWS[entry.name][0])


def _points(n, dtype, seed=0):
    """n values in [-4, 4], none closer than 1e-3 to the kinks at 0, plus a few exact ones."""
    x = np.random.default_rng(seed).uniform(-4, 4, n)
    x[np.abs(x) < 1e-3] = 0.5
    return np.concatenate([x, [-30.0, -1.0, 1.0, 30.0]]).astype(dtype)


def _saved(entry, x, y):
    return x if entry.needs_input else y


def test_every_entry_has_a_row_and_a_layer():
    assert set(ROWS) == {e.name for e in activations.REGISTRY}
    codes = [e.code for e in activations.REGISTRY]
    assert codes == list(range(1, len(codes) + 1))  # 0 is the identity; the C side counts on them
    for e in activations.REGISTRY:
        assert e.layer in fastnn.__all__ and e.layer in LAYER_TYPES
        assert getattr(fastnn, e.layer).entry is e
        assert callable(getattr(ops, e.name)) and callable(getattr(ops, e.backward_name))
        assert e.name in ops.__all__ and e.backward_name in reference.__all__
        assert e.init in ("he", "lecun")
        assert _core.act_needs_input(e.code) == e.needs_input


@pytest.mark.parametrize("entry", ENTRIES)
def test_forward_matches_the_written_out_formula(entry):
    x = _points(300, np.float64)
    want = np.array([ROWS[entry.name][1](float(v)) for v in x])
    got = getattr(ops, entry.name)(x, **ROWS[entry.name][0])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-150)


@pytest.mark.parametrize("entry", ENTRIES)
def test_gradient_check_float64(entry):
    kwargs = ROWS[entry.name][0]
    forward = getattr(ops, entry.name)
    x = _points(200, np.float64, seed=1)
    g = np.random.default_rng(2).normal(size=x.shape)
    h = 1e-6
    numeric = g * (forward(x + h, **kwargs) - forward(x - h, **kwargs)) / (2 * h)
    y = forward(x, **kwargs)
    analytic = getattr(ops, entry.backward_name)(_saved(entry, x, y), g, **kwargs)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_twin_parity(entry, dtype):
    kwargs = ROWS[entry.name][0]
    tol = TWIN_TOLERANCES[np.dtype(dtype)]
    x = _points(496, dtype).reshape(20, 25)
    g = np.random.default_rng(3).normal(size=x.shape).astype(dtype)
    y = getattr(ops, entry.name)(x, **kwargs)
    np.testing.assert_allclose(y, getattr(reference, entry.name)(x, **kwargs), **tol)
    saved = _saved(entry, x, y)
    for module in (ops, reference):
        out = np.empty_like(x)
        got = getattr(module, entry.backward_name)(saved, g, out=out, **kwargs)
        assert got is out and got.dtype == dtype
    np.testing.assert_allclose(getattr(ops, entry.backward_name)(saved, g, **kwargs),
                               getattr(reference, entry.backward_name)(saved, g, **kwargs), **tol)
    # in place, as the layers use them
    inplace = x.copy()
    getattr(ops, entry.name)(inplace, out=inplace, **kwargs)
    np.testing.assert_array_equal(inplace, y)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_fused_linear_block_matches_its_twin(entry, dtype):
    rng = np.random.default_rng(4)
    x, w, b = (rng.normal(size=s).astype(dtype) for s in ((9, 7), (7, 5), (5,)))
    g = rng.normal(size=(9, 5)).astype(dtype)
    layer = _layer(entry)
    tol = TWIN_TOLERANCES[np.dtype(dtype)]
    results = []
    for module in (ops, reference):
        z = np.empty((9, 5), dtype)
        y = module.linear_forward(x, w, b, activation=layer, preactivation_out=z)
        np.testing.assert_allclose(z, x @ w + b, **tol)
        grads = module.linear_backward(x, w, g, y=y, activation=layer, z=z)
        results.append((y, *grads))
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("entry", [e for e in activations.REGISTRY if e.needs_input], ids=lambda e: e.name)
def test_an_activation_of_the_input_requires_z(entry):
    x, w, g = np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4))
    y = ops.linear_forward(x, w, None, activation=entry.name)
    with pytest.raises(ValueError, match="z"):
        ops.linear_backward(x, w, g, y=y, activation=entry.name)


@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
def test_gelu_at_the_ends_of_the_range(module):
    gelu = activations.get("gelu")
    x = np.array([-np.inf, -50.0, -40.5, 40.5, 50.0, np.inf, np.nan])
    y = getattr(module, gelu.name)(x)
    np.testing.assert_array_equal(y, [-0.0, -0.0, -0.0, 40.5, 50.0, np.inf, np.nan])
    assert np.signbit(y[:3]).all()
    dy = getattr(module, gelu.backward_name)(x, np.ones_like(x))
    np.testing.assert_array_equal(dy, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, np.nan])


# -- GELU's accuracy, against erf summed in decimals ------------------------------------------

def _gelu_decimal(x):
    """x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2 from erf's Taylor series in 140-digit
    decimals: enough for the series' cancellation up to |x| = 15 (terms up to e^(x^2/2))."""
    getcontext().prec = 140
    z = Decimal(x) / Decimal(2).sqrt()
    term, total, n = z, z, 0
    while abs(term) > Decimal(10) ** -80:
        n += 1
        term *= -z * z / n
        total += term / (2 * n + 1)
    pi = Decimal("3.14159265358979323846264338327950288419716939937510582097494459230781640628620899863")
    return Decimal(x) * (1 + 2 / pi.sqrt() * total) / 2


def test_gelu_is_accurate_in_both_dtypes():
    gelu = getattr(ops, activations.get("gelu").name)
    rng = np.random.default_rng(5)
    # float64: a few ulp (1e-15 is 5 ulp at worst), the far negative tail included
    x = np.concatenate([np.linspace(-15, 15, 301), rng.uniform(-15, 15, 60)])
    rel = [abs((Decimal(float(g)) - e) / e) for g, e in zip(gelu(x), map(_gelu_decimal, x)) if e != 0]
    assert max(rel) < Decimal("1e-15")
    # float32 (its own vectorised path): within one ulp of the correctly rounded value
    x32 = np.concatenate([np.linspace(-15, 15, 301), rng.uniform(-15, 15, 60)]).astype(np.float32)
    exact = np.array([float(_gelu_decimal(float(v))) for v in x32]).astype(np.float32)
    ulps = np.abs(gelu(x32).view(np.int32).astype(np.int64) - exact.view(np.int32).astype(np.int64))
    assert ulps.max() <= 1


# -- networks -----------------------------------------------------------------------------------

def _train(net, X, y, engine, epochs=2):
    """Train with the compiled loop ("compiled") or layer by layer ("layers")."""
    net.fit(X, y, epochs=epochs, batch_size=16, progress=False, seed=0,
            optimizer=fastnn.SGD(lr=0.05, momentum=0.9), engine=engine)
    return net


def _net(entry, dtype, n_in=10, hidden=12, k=3):
    return fastnn.Network([fastnn.Linear(n_in, hidden), _layer(entry), fastnn.Linear(hidden, hidden),
                           _layer(entry), fastnn.Linear(hidden, k)], dtype=dtype, seed=7)


def _data(n=100, f=10, k=3):
    rng = np.random.default_rng(8)
    return rng.normal(size=(n, f)), rng.integers(0, k, n)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_native_loop_matches_the_layer_path(entry, dtype, tol):
    X, y = _data()
    compiled = _train(_net(entry, dtype), X, y, "compiled")
    layers = _train(_net(entry, dtype), X, y, "layers")
    for a, b in zip(compiled.parameters(), layers.parameters()):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("entry", ENTRIES)
def test_unfused_activation_trains_like_the_fused_one(entry):
    # Linear, Dropout(0), act: the activation runs as a step of its own
    X, y = _data()
    fused = fastnn.Network([fastnn.Linear(10, 6), _layer(entry), fastnn.Linear(6, 3)], dtype="float64", seed=1)
    unfused = fastnn.Network([fastnn.Linear(10, 6), fastnn.Dropout(0.0), _layer(entry), fastnn.Linear(6, 3)],
                             dtype="float64", seed=1)
    for net in (fused, unfused):
        _train(net, X, y, "layers")
    for a, b in zip(fused.parameters(), unfused.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    # the inference plan runs the unfused step with the same code and parameter
    np.testing.assert_allclose(unfused.predict_proba(X), fused.predict_proba(X), rtol=1e-12, atol=1e-14)
    first = fastnn.Network([_layer(entry), fastnn.Linear(10, 3)], dtype="float64", seed=1)
    np.testing.assert_allclose(first.predict_proba(X), ops.softmax(_forward_by_ops(first, X)), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_predict_plan_and_save_load(entry, dtype, tmp_path):
    X, y = _data()
    net = _train(_net(entry, dtype), X, y, "compiled", epochs=1)
    Xd = X.astype(dtype)
    # the compiled inference plan against the layer-by-layer forward pass
    np.testing.assert_allclose(net.predict_proba(Xd), ops.softmax(_forward_by_ops(net, Xd)),
                               **TWIN_TOLERANCES[np.dtype(dtype)])
    path = tmp_path / "m.npz"
    net.save(path)
    loaded = fastnn.load(path)
    assert repr(loaded.layers) == repr(net.layers)
    np.testing.assert_array_equal(loaded.predict_proba(Xd), net.predict_proba(Xd))


def _forward_by_ops(net, X):
    """The network's outputs computed op by op with the public ops."""
    a = X
    for layer in net.layers:
        if isinstance(layer, fastnn.Linear):
            a = ops.linear_forward(a, layer.W, layer.b)
        elif isinstance(layer, Activation):
            a = layer.forward(a)
    return a


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_onnx_parity(entry, dtype):
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install ".[onnx]")')
    ort = pytest.importorskip("onnxruntime", reason='the onnx extra is not installed (pip install ".[onnx]")')
    from fastnn.export_onnx import to_onnx_model
    net = _net(entry, dtype)
    X = np.random.default_rng(9).normal(size=(40, 10)).astype(dtype) * 3
    model = to_onnx_model(net)
    try:
        runner = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        # onnxruntime has no float64 Erf (GELU's formula): ONNX's own evaluator runs the graph,
        # with an Erf in float64 (its own rounds to float32)
        if not (dtype == "float64" and "Erf" in str(exc)):
            raise
        from onnx.reference import ReferenceEvaluator
        from onnx.reference.op_run import OpRun
        from scipy.special import erf

        class Erf(OpRun):
            def _run(self, x):
                return (erf(x),)

        runner = ReferenceEvaluator(model, new_ops=[Erf])
    got = runner.run(["probabilities"], {"input": X})[0]
    np.testing.assert_allclose(got, net.predict_proba(X), rtol=0, atol={"float32": 1e-5, "float64": 1e-12}[dtype])


# -- LeakyReLU's parameter ----------------------------------------------------------------------

def test_leaky_relu_slope_is_checked_shown_and_saved(tmp_path):
    layer = fastnn.LeakyReLU(0.3)
    assert layer.negative_slope == 0.3 and repr(layer) == "LeakyReLU(negative_slope=0.3)"
    assert repr(fastnn.LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="negative_slope"):
            fastnn.LeakyReLU(bad)
        with pytest.raises(ValueError, match="negative_slope"):
            ops.leaky_relu(np.ones(3), negative_slope=bad)
    for bad in (True, "0.1", None):
        with pytest.raises(TypeError, match="negative_slope"):
            fastnn.LeakyReLU(bad)
    net = fastnn.Network([fastnn.Linear(4, 3), layer, fastnn.Linear(3, 2)], seed=0)
    net.save(tmp_path / "m.npz")
    assert fastnn.load(tmp_path / "m.npz").layers[1].negative_slope == 0.3


def test_activation_names_appear_in_at_most_four_files():
    """Adding an activation touches few files: its name may be spelt only in these many."""
    pattern = re.compile(r"leaky_relu|gelu")
    hits = sorted(str(p.relative_to(ROOT)) for folder in ("fastnn", "src_c") for p in (ROOT / folder).rglob("*")
                  if p.is_file() and p.suffix in (".py", ".pyx", ".pxi", ".pxd", ".h", ".c")
                  and p.name != "_core.c" and pattern.search(p.read_text(errors="replace")))
    assert len(hits) <= 4, hits


@pytest.mark.parametrize("slope, dtype, node", [(0.25, "float64", "LeakyRelu"), (0.01, "float64", "Max"),
                                                (0.01, "float32", "LeakyRelu")])
def test_leaky_relu_onnx_node_is_exact(slope, dtype, node):
    # LeakyRelu's alpha is a float32 attribute: used where it holds the slope exactly
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install ".[onnx]")')
    ort = pytest.importorskip("onnxruntime", reason='the onnx extra is not installed (pip install ".[onnx]")')
    from fastnn.export_onnx import to_onnx_model
    net = fastnn.Network([fastnn.Linear(5, 7), fastnn.LeakyReLU(slope), fastnn.Linear(7, 3)], dtype=dtype, seed=2)
    model = to_onnx_model(net)
    assert node in {n.op_type for n in model.graph.node}
    X = np.random.default_rng(10).normal(size=(30, 5)).astype(dtype) * 3
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"input": X})[0]
    np.testing.assert_allclose(got, net.predict_proba(X), rtol=0, atol={"float32": 1e-6, "float64": 1e-14}[dtype])


@pytest.mark.parametrize("entry", ENTRIES)
def test_cli_trains_with_every_activation(entry, capsys):
    from fastnn.cli import main
    assert main(["train", "--limit", "1000", "--epochs", "2", "--hidden", "16", "--activation", entry.name,
                 "--json", "--quiet"]) in (0, None)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["config"]["activation"] == entry.name
    assert result["test_accuracy"] > 0.3  # ten classes: it learnt


@pytest.mark.parametrize("entry", ENTRIES)
def test_sklearn_estimator_takes_every_activation(entry):
    pytest.importorskip("sklearn", reason='the sklearn extra is not installed (pip install ".[sklearn]")')
    from fastnn.sklearn import MLPClassifier
    X, y = _data()
    with pytest.warns(Warning):  # three iterations do not converge
        clf = MLPClassifier((8,), activation=entry.sklearn or entry.name, max_iter=3, random_state=0).fit(X, y)
    assert type(clf.network_.layers[1]).__name__ == entry.layer


@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
@pytest.mark.parametrize("op_name", ["linear_forward", "linear_backward"])
@pytest.mark.parametrize("value, error", [(-1.0, ValueError), (float("nan"), ValueError),
                                          (10 ** 400, ValueError), ("0.2", TypeError)],
                         ids=["negative", "nan", "huge_int", "str"])
def test_a_layer_whose_slope_was_changed_is_checked_again(module, op_name, value, error):
    """A layer passed as activation= is checked when used, not only when made."""
    layer = fastnn.LeakyReLU(0.2)
    layer.param = value
    x, w, y = np.array([[-1.0]]), np.eye(1), np.array([[-0.2]])
    args = (x, w, None, layer) if op_name == "linear_forward" else (x, w, y, y, layer)
    with pytest.raises(error, match="^activation: negative_slope: expected a finite number >= 0"):
        getattr(module, op_name)(*args)


@pytest.mark.parametrize("make", [lambda v: fastnn.LeakyReLU(v),
                                  lambda v: ops.leaky_relu(np.ones(3), negative_slope=v),
                                  lambda v: reference.leaky_relu(np.ones(3), negative_slope=v)],
                         ids=["layer", "ops", "reference"])
@pytest.mark.parametrize("value", [10 ** 400, -10 ** 400], ids=["huge", "minus_huge"])
def test_a_slope_beyond_float64_is_a_value_error(make, value):
    with pytest.raises(ValueError, match="^negative_slope: expected a finite number >= 0"):
        make(value)
