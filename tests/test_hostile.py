"""Hostile input to every public entry point: fastnn.ops, Network.fit/evaluate/predict, the
dataset loaders and the command line.

Each case gets the documented exception (TypeError for a wrong kind of value, ValueError for a
wrong value, FileNotFoundError / DatasetError / ModelFormatError for files) with a message
naming the argument, or the right answer (checked against fastnn.reference or NumPy). The most
dangerous calls also run in a fresh interpreter, whose exit status must be 0.
(tests/test_validation.py covers the dtype and out-buffer checks of each op argument by argument.)
"""
import functools
import gzip
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn
import synthetic
from fastnn import (MSE, SGD, BinaryCrossEntropy, Linear, Network, ReLU, TrainingDivergedError,
                    activations, ops, reference)
from fastnn import _training
from fastnn.datasets import DatasetError, load_idx

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def names(argument):
    """A ``match=`` pattern: the message starts by naming the argument."""
    return rf"^{re.escape(argument)}\b"


# =============================================================================================
# fastnn.ops
# =============================================================================================

def valid_call(op, rng, dtype=np.float64):
    """Keyword arguments of a successful call of ``op`` (arrays of ``dtype``)."""
    def a(*shape):
        return rng.standard_normal(shape).astype(dtype)

    calls = {
        "sigmoid": lambda: {"x": a(3, 4)},
        "tanh": lambda: {"x": a(5)},
        "relu": lambda: {"x": a(2, 3, 2)},
        "scaled_tanh": lambda: {"x": a(3, 4)},
        "sigmoid_backward": lambda: {"y": a(3, 4), "grad": a(3, 4)},
        "relu_backward": lambda: {"y": a(3, 4), "grad": a(3, 4)},
        "softmax": lambda: {"logits": a(3, 4)},
        "log_softmax": lambda: {"logits": a(3, 4)},
        "softmax_cross_entropy": lambda: {"logits": a(3, 4), "labels": np.array([0, 3, 1]),
                                          "sample_weight": np.abs(a(3)) + 0.5},
        "sigmoid_cross_entropy": lambda: {"logits": a(3, 4), "targets": (a(3, 4) > 0).astype(dtype),
                                          "sample_weight": np.abs(a(3)) + 0.5},
        "mean_squared_error": lambda: {"outputs": a(3, 4), "targets": a(3, 4),
                                       "sample_weight": np.abs(a(3)) + 0.5},
        "linear_forward": lambda: {"x": a(3, 4), "w": a(4, 5), "b": a(5), "activation": "tanh"},
        "linear_backward": lambda: {"x": a(3, 4), "w": a(4, 5), "grad_out": a(3, 5),
                                    "y": np.tanh(a(3, 5)), "activation": "tanh"},
        "sgd_update": lambda: {"param": a(3, 4), "grad": a(3, 4), "velocity": a(3, 4),
                               "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
        "gather_rows": lambda: {"x": a(6, 4), "rows": np.array([5, 0, 0, 2]), "scale": 0.5,
                                "shift": 1.0},
    }
    for e in activations.REGISTRY:  # the other activation pairs of the registry
        calls.setdefault(e.name, lambda: {"x": a(3, 4)})
        calls.setdefault(e.backward_name, lambda e=e: {e.saved: a(3, 4), "grad": a(3, 4)})
    return calls[op]()


OPS = [name for e in activations.REGISTRY for name in (e.name, e.backward_name)] + [
    "softmax", "log_softmax", "softmax_cross_entropy", "sigmoid_cross_entropy", "mean_squared_error",
    "linear_forward", "linear_backward", "sgd_update", "gather_rows"]
# Arguments read, never written (sgd_update's param and velocity are updated in place).
INPUTS = {op: [k for k in valid_call(op, np.random.default_rng(0)) if k not in
               ("activation", "lr", "momentum", "weight_decay", "scale", "shift", "param", "velocity")]
          for op in OPS}


def run(impl, op, kwargs):
    """Call ``op`` of ``impl`` on copies of the arrays; returns (result, arrays after the call)."""
    kwargs = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    return getattr(impl, op)(**kwargs), kwargs


def as_list(result):
    return list(result) if isinstance(result, tuple) else [result]


def assert_same_result(got, expected, exact=True):
    for g, e in zip(as_list(got), as_list(expected)):
        if e is None:
            assert g is None
        elif exact:
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_allclose(g, e, rtol=2e-6, atol=1e-12, equal_nan=True)


def memmap_of(a, directory, writable=False):
    path = os.path.join(directory, f"m{len(os.listdir(directory))}.dat")
    m = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
    m[...] = a
    m.flush()
    return m if writable else np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


LAYOUTS = {
    "fortran": np.asfortranarray,
    "strided": lambda a, d: np.repeat(a, 2, axis=-1)[..., ::2],
    "negative_strides": lambda a, d: a[::-1].copy()[::-1],
    "read_only": lambda a, d: read_only(a),
    "memmap": memmap_of,
    "big_endian": lambda a, d: a.astype(a.dtype.newbyteorder(">")),
    "list": lambda a, d: a.tolist(),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op, argument", [(op, arg) for op in OPS for arg in INPUTS[op]])
def test_any_memory_layout_gives_the_same_result(op, argument, layout, tmp_path):
    """Fortran-order, non-contiguous, read-only, memory-mapped, big-endian arrays and lists."""
    kwargs = valid_call(op, np.random.default_rng(1))
    expected, _ = run(ops, op, kwargs)
    given = kwargs[argument]
    make = LAYOUTS[layout]
    kwargs[argument] = make(given) if layout == "fortran" else make(given, str(tmp_path))
    got = getattr(ops, op)(**kwargs)
    assert_same_result(got, expected)
    if layout == "read_only":
        assert not kwargs[argument].flags.writeable  # never written through


@pytest.mark.parametrize("layout", ["fortran", "strided", "read_only", "big_endian"])
@pytest.mark.parametrize("argument", ["param", "velocity"])
def test_sgd_state_must_be_updatable_in_place(argument, layout):
    kwargs = valid_call("sgd_update", np.random.default_rng(2))
    kwargs[argument] = LAYOUTS[layout](kwargs[argument]) if layout == "fortran" else \
        LAYOUTS[layout](kwargs[argument], None)
    before = {k: np.array(v) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    with pytest.raises((TypeError, ValueError), match=names(argument)):
        ops.sgd_update(**kwargs)
    for k, v in before.items():
        np.testing.assert_array_equal(kwargs[k], v)  # nothing half-updated


def test_sgd_updates_a_writable_memmap_in_place(tmp_path):
    kwargs = valid_call("sgd_update", np.random.default_rng(3))
    _, expected = run(reference, "sgd_update", kwargs)
    param = memmap_of(kwargs["param"], str(tmp_path), writable=True)
    velocity = memmap_of(kwargs["velocity"], str(tmp_path), writable=True)
    assert ops.sgd_update(**{**kwargs, "param": param, "velocity": velocity}) is param
    np.testing.assert_allclose(param, expected["param"], rtol=1e-12)
    np.testing.assert_allclose(velocity, expected["velocity"], rtol=1e-12)


def sprinkle(a, rng):
    """A copy of float array ``a`` with NaN, +Inf and -Inf at random places."""
    a = a.copy()
    flat = a.reshape(-1)
    places = rng.choice(flat.size, size=min(3, flat.size), replace=False)
    flat[places] = [np.nan, np.inf, -np.inf][:len(places)]
    return a


# Validated inputs (refused when not finite) are tested in test_bad_values_name_the_argument.
FLOAT_INPUTS = [(op, arg) for op in OPS for arg in INPUTS[op]
                if arg not in ("labels", "rows", "sample_weight")
                and (op, arg) != ("sigmoid_cross_entropy", "targets")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("op, argument", FLOAT_INPUTS)
def test_nan_and_inf_propagate_like_the_reference(op, argument, dtype):
    rng = np.random.default_rng(4)
    kwargs = valid_call(op, rng, dtype)
    kwargs[argument] = sprinkle(kwargs[argument], rng)
    with np.errstate(all="ignore"):
        got, _ = run(ops, op, kwargs)
        expected, _ = run(reference, op, kwargs)
    for g, e in zip(as_list(got), as_list(expected)):
        if e is not None:
            assert np.array_equal(np.isnan(g), np.isnan(e))
            assert np.array_equal(np.isposinf(g), np.isposinf(e))
    assert_same_result(got, expected, exact=False)


def test_nan_in_sgd_update_reaches_the_parameters_like_the_reference():
    kwargs = valid_call("sgd_update", np.random.default_rng(5))
    kwargs["grad"] = sprinkle(kwargs["grad"], np.random.default_rng(6))
    with np.errstate(all="ignore"):
        _, got = run(ops, "sgd_update", kwargs)
        _, expected = run(reference, "sgd_update", kwargs)
    np.testing.assert_allclose(got["param"], expected["param"], equal_nan=True)
    assert np.count_nonzero(~np.isfinite(got["param"])) == 3


def empty_cases():
    z = np.zeros
    return {
        "sigmoid (0,)": ("sigmoid", {"x": z(0)}),
        "tanh (0, 3)": ("tanh", {"x": z((0, 3))}),
        "relu (3, 0)": ("relu", {"x": z((3, 0))}),
        "relu_backward (0, 3)": ("relu_backward", {"y": z((0, 3)), "grad": z((0, 3))}),
        "softmax (0, 3)": ("softmax", {"logits": z((0, 3))}),
        "softmax (3, 0)": ("softmax", {"logits": z((3, 0))}),
        "log_softmax (0, 0)": ("log_softmax", {"logits": z((0, 0))}),
        "softmax_cross_entropy (0, 3)": ("softmax_cross_entropy", {"logits": z((0, 3)), "labels": z(0, int)}),
        "softmax_cross_entropy (3, 0)": ("softmax_cross_entropy", {"logits": z((3, 0)), "labels": z(3, int)}),
        "sigmoid_cross_entropy (0, 3)": ("sigmoid_cross_entropy", {"logits": z((0, 3)), "targets": z((0, 3))}),
        "sigmoid_cross_entropy (3, 0)": ("sigmoid_cross_entropy", {"logits": z((3, 0)), "targets": z((3, 0))}),
        "mean_squared_error (0, 3)": ("mean_squared_error", {"outputs": z((0, 3)), "targets": z((0, 3))}),
        "mean_squared_error (3, 0)": ("mean_squared_error", {"outputs": z((3, 0)), "targets": z((3, 0))}),
        "linear_forward batch 0": ("linear_forward", {"x": z((0, 3)), "w": z((3, 2)), "b": z(2)}),
        "linear_forward 0 features": ("linear_forward", {"x": z((3, 0)), "w": z((0, 2)), "b": np.ones(2)}),
        "linear_forward 0 outputs": ("linear_forward", {"x": z((3, 2)), "w": z((2, 0)), "b": z(0)}),
        "linear_backward batch 0": ("linear_backward", {"x": np.ones((0, 3)), "w": np.ones((3, 2)),
                                                        "grad_out": z((0, 2)), "y": z((0, 2)),
                                                        "activation": "relu"}),
        "linear_backward 0 features": ("linear_backward", {"x": z((3, 0)), "w": z((0, 2)),
                                                           "grad_out": np.ones((3, 2))}),
        "sgd_update (0,)": ("sgd_update", {"param": z(0), "grad": z(0), "velocity": z(0), "momentum": 0.5}),
        "gather_rows no rows": ("gather_rows", {"x": z((4, 3)), "rows": z(0, int)}),
        "gather_rows empty x": ("gather_rows", {"x": z((0, 3)), "rows": np.array([0])}),
        "gather_rows 0 features": ("gather_rows", {"x": z((4, 0), np.uint8), "rows": np.array([3, 1])}),
    }


@pytest.mark.parametrize("case", list(empty_cases()))
def test_empty_arrays_and_zero_features(case):
    """The reference's answer (zeros where a sum is empty), or the same ValueError naming the
    argument."""
    op, kwargs = empty_cases()[case]
    try:
        expected, _ = run(reference, op, kwargs)
    except ValueError as exc:
        argument = str(exc).split(":")[0]
        with pytest.raises(ValueError, match=names(argument)):
            run(ops, op, kwargs)
        return
    got, _ = run(ops, op, kwargs)
    assert_same_result(got, expected, exact=False)


@pytest.mark.parametrize("op, argument, value, error", [
    ("softmax_cross_entropy", "labels", np.array([0, 4, 1]), ValueError),
    ("softmax_cross_entropy", "labels", np.array([0, -1, 1]), ValueError),
    ("softmax_cross_entropy", "labels", np.array([0, 2 ** 62, 1]), ValueError),
    ("softmax_cross_entropy", "labels", np.array([0, 2 ** 64 - 1, 1], np.uint64), ValueError),
    ("softmax_cross_entropy", "labels", np.array([0.0, 1.0, 2.0]), TypeError),
    ("softmax_cross_entropy", "labels", np.array(["0", "1", "2"]), TypeError),
    ("softmax_cross_entropy", "labels", [0, 1, "2"], TypeError),
    ("softmax_cross_entropy", "labels", np.array([0, 1, 2], object), TypeError),
    ("softmax_cross_entropy", "labels", np.array([True, False, True]), TypeError),
    ("softmax_cross_entropy", "labels", np.array([0, 1]), ValueError),
    ("softmax_cross_entropy", "labels", np.array([[0, 1, 2]]), ValueError),
    ("softmax_cross_entropy", "sample_weight", np.array([1.0, np.nan, 1.0]), ValueError),
    ("softmax_cross_entropy", "sample_weight", np.array([1.0, -1.0, 1.0]), ValueError),
    ("softmax_cross_entropy", "sample_weight", np.ones(4), ValueError),
    ("sigmoid_cross_entropy", "targets", np.full((3, 4), 1.5), ValueError),
    ("sigmoid_cross_entropy", "targets", np.full((3, 4), -0.5), ValueError),
    ("sigmoid_cross_entropy", "targets", np.full((3, 4), np.nan), ValueError),
    ("sigmoid_cross_entropy", "targets", np.ones((3, 3)), ValueError),
    ("sigmoid_cross_entropy", "targets", np.array([["a"] * 4] * 3), TypeError),
    ("sigmoid_cross_entropy", "sample_weight", np.array([1.0, -1.0, 1.0]), ValueError),
    ("mean_squared_error", "targets", np.ones((4, 4)), ValueError),
    ("mean_squared_error", "targets", np.ones(3), ValueError),
    ("mean_squared_error", "targets", np.ones((3, 4), object), TypeError),
    ("mean_squared_error", "sample_weight", np.array([1.0, np.inf, 1.0]), ValueError),
    ("gather_rows", "rows", np.array([0, 6]), ValueError),
    ("gather_rows", "rows", np.array([-1]), ValueError),
    ("gather_rows", "rows", np.array([1.0]), TypeError),
    ("gather_rows", "rows", np.array([[1]]), ValueError),
    ("gather_rows", "x", np.zeros((6, 4), np.float16), TypeError),
    ("gather_rows", "x", np.zeros((6, 4), np.int64), TypeError),
    ("gather_rows", "x", np.zeros((6, 4), object), TypeError),
    ("gather_rows", "x", np.zeros(24), ValueError),
    ("gather_rows", "scale", float("nan"), ValueError),
    ("gather_rows", "shift", float("inf"), ValueError),
    ("gather_rows", "scale", "2", TypeError),
    ("linear_forward", "w", np.zeros((4, 5), np.float32), TypeError),
    ("linear_forward", "b", np.zeros(6), ValueError),
    ("linear_forward", "activation", "softplus", ValueError),
    ("sgd_update", "lr", -0.1, ValueError),
    ("sgd_update", "momentum", float("nan"), ValueError),
    ("sgd_update", "grad", np.zeros((4, 3)), ValueError),
], ids=str)
def test_bad_values_name_the_argument(op, argument, value, error):
    kwargs = valid_call(op, np.random.default_rng(7))
    kwargs[argument] = value
    with pytest.raises(error, match=names(argument)):
        getattr(ops, op)(**kwargs)


@pytest.mark.parametrize("weight", [1e-310, 5e-324])
def test_tiny_sample_weights_give_a_finite_gradient(weight):
    logits, labels = np.array([[0.0, 1.0, 2.0]]), np.array([1])
    loss, grad = ops.softmax_cross_entropy(logits, labels, sample_weight=np.array([weight]))
    want_loss, want_grad = reference.softmax_cross_entropy(logits, labels,
                                                          sample_weight=np.array([weight]))
    assert loss == pytest.approx(want_loss)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12)


@pytest.mark.parametrize("op, outputs", [
    ("sigmoid", [("out", "x")]), ("relu", [("out", "x")]),
    ("sigmoid_backward", [("out", "y"), ("out", "grad")]),
    ("relu_backward", [("out", "y"), ("out", "grad")]),
    ("softmax", [("out", "logits")]), ("log_softmax", [("out", "logits")]),
    ("softmax_cross_entropy", [("grad_out", "logits")]),
])
def test_out_may_be_an_input_itself(op, outputs):
    """In place: the same answer as into a new array."""
    for out, source in outputs:
        kwargs = valid_call(op, np.random.default_rng(8))
        expected, _ = run(ops, op, kwargs)
        got = getattr(ops, op)(**kwargs, **{out: kwargs[source]})
        assert (got[1] if isinstance(got, tuple) else got) is kwargs[source]
        assert_same_result(got, expected)


@pytest.mark.parametrize("op, source, out, shape, shift", [
    # in place is allowed for these, so only a partial overlap (shifted by one element) is wrong
    ("sigmoid", "x", "out", (3, 4), 1),
    ("relu_backward", "grad", "out", (3, 4), 1),
    ("softmax", "logits", "out", (3, 4), 1),
    ("softmax_cross_entropy", "logits", "grad_out", (3, 4), 1),
    # these never compute in place
    ("linear_forward", "x", "out", (3, 5), 0),
    ("linear_backward", "grad_out", "dx_out", (3, 4), 0),
    ("linear_backward", "w", "dw_out", (4, 5), 0),
    ("gather_rows", "x", "out", (4, 4), 0),
], ids=str)
def test_out_overlapping_an_input_is_refused(op, source, out, shape, shift):
    """A ValueError naming the out argument, and nothing written."""
    kwargs = valid_call(op, np.random.default_rng(9))
    given = kwargs[source]
    base = np.zeros(max(given.size, int(np.prod(shape))) + shift + 4)
    base[:given.size] = given.reshape(-1)
    kwargs[source] = base[:given.size].reshape(given.shape)
    before = base.copy()
    with pytest.raises(ValueError, match=names(out)):
        getattr(ops, op)(**kwargs, **{out: base[shift:shift + int(np.prod(shape))].reshape(shape)})
    np.testing.assert_array_equal(base, before)


# =============================================================================================
# Network.fit / evaluate / predict
# =============================================================================================

blobs = functools.partial(synthetic.blobs, n=200, f=6)


def small_net(seed=0, **kwargs):
    return Network([Linear(6, 8), ReLU(), Linear(8, 3)], seed=seed, **kwargs)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Bit-identical comparisons need one fixed thread count."""
    previous = fastnn.get_num_threads()
    fastnn.set_num_threads(1)
    yield
    fastnn.set_num_threads(previous)


def fitted(X, y, **kwargs):
    """Parameters after 2 epochs of a fixed network and seed on (X, y)."""
    net = small_net()
    net.fit(X, y, epochs=2, batch_size=16, progress=False, seed=0, **kwargs)
    return net.parameters()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict", "predict_proba", "validation"])
def test_nan_and_inf_in_data_are_refused_before_training_with_count_and_position(method, dtype, bad):
    X, y = blobs()
    X = X.astype(dtype)
    X[17, 4] = X[30, 0] = X[199, 5] = bad
    net = small_net()
    before = [p.copy() for p in net.parameters()]
    calls = {
        "fit": lambda: net.fit(X, y, epochs=1, progress=False),
        "evaluate": lambda: net.evaluate(X, y),
        "predict": lambda: net.predict(X),
        "predict_proba": lambda: net.predict_proba(X),
        "validation": lambda: net.fit(np.ones((10, 6)), np.zeros(10, int),
                                      validation_data=(X, y), progress=False),
    }
    argname = "validation_data[0]" if method == "validation" else "X"
    with pytest.raises(ValueError, match=re.escape(argname) +
                       r": 3 NaN/Inf value\(s\); the first at row 17, column 4"):
        calls[method]()
    assert all(np.array_equal(p, q) for p, q in zip(net.parameters(), before))


def test_non_finite_regression_targets_are_refused():
    X, _ = blobs()
    t = np.zeros((200, 2))
    t[5, 1] = np.nan
    t[9, 0] = np.inf
    with pytest.raises(ValueError, match=r"^y: 2 value\(s\) not finite in float32, the first y\[\(5, 1\)\] = nan"):
        Network([Linear(6, 2)], loss=MSE()).fit(X, t, progress=False)


def test_values_that_overflow_the_network_dtype_once_scaled_are_refused():
    X, y = blobs()
    X64 = X.astype(np.float64)
    X64[3, 2] = 1e39  # finite in float64, Inf in float32
    with pytest.raises(ValueError, match=r"^X: 1 value\(s\) overflow float32 once scaled.*row 3, "
                                         r"column 2"):
        small_net().fit(X64, y, progress=False)
    pixels = np.full((200, 6), 200, np.uint8)
    with pytest.raises(ValueError, match=r"^X: 1200 value\(s\) overflow float32"):
        small_net(input_scale=1e37).predict(pixels)
    with pytest.raises(ValueError, match="^input_scale"):
        small_net(input_scale=1e39)
    net64 = small_net(dtype="float64")
    assert net64.predict(X64).shape == (200,)  # fits float64


@pytest.mark.parametrize("y, error, match", [
    (np.full(200, 3), ValueError, r"^y: labels must be in \[0, 3\); y\[0\] = 3 \(200 out of range\)"),
    (np.r_[np.zeros(199, int), -1], ValueError, r"^y: labels must be in \[0, 3\); y\[199\] = -1"),
    (np.full(200, 2 ** 64 - 1, np.uint64), ValueError, r"^y: labels must be in"),
    (np.zeros(200), TypeError, "^y: expected integer class labels, got dtype float64"),
    (np.zeros(200, np.float16), TypeError, "^y: expected integer class labels"),
    (np.array(["1"] * 200), TypeError, "^y: expected integer class labels"),
    (np.zeros(200, object), TypeError, "^y: expected integer class labels, got dtype object"),
    (np.zeros(200, bool), TypeError, "^y: expected integer class labels, got dtype bool"),
    (np.zeros((200, 1), int), ValueError, r"^y: expected a 1-D array"),
    (np.zeros(150, int), ValueError, r"^y: expected 200 targets \(one per row of X\), got 150"),
    (np.zeros(250, int), ValueError, r"^y: expected 200 targets"),
], ids=["too-big", "negative", "uint64-max", "float", "float16", "string", "object", "bool",
        "2-D", "shorter", "longer"])
def test_bad_labels(y, error, match):
    X, _ = blobs()
    net = small_net()
    for call in (lambda: net.fit(X, y, progress=False), lambda: net.evaluate(X, y)):
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize("loss, y, match", [
    (BinaryCrossEntropy(), np.full(200, 2), r"^y: expected 0/1 labels; y\[0\] = 2"),
    (BinaryCrossEntropy(), np.full(200, np.nan), r"^y: expected 0/1 labels; y\[0\] = nan"),
    (MSE(), np.zeros((200, 3)), r"^y: expected targets of shape \(N, 1\)"),
])
def test_bad_targets_of_the_other_losses(loss, y, match):
    X, _ = blobs()
    with pytest.raises(ValueError, match=match):
        Network([Linear(6, 1)], loss=loss).fit(X, y, progress=False)


@pytest.mark.parametrize("X, error, match", [
    (np.zeros((0, 6), np.float32), ValueError, r"^X: expected at least one row, got shape \(0, 6\)"),
    (np.zeros((5, 0), np.float32), ValueError, r"^X: expected 6 features per row .*got 0"),
    (np.zeros(6, np.float32), ValueError, r"^X: expected a 2-D array \(n_samples, 6\)"),
    (np.zeros((5, 6, 1), np.float32), ValueError, r"^X: expected a 2-D array"),
    (np.zeros((5, 6), object), TypeError, "^X: expected a real-valued array, got dtype object"),
    (np.zeros((5, 6), complex), TypeError, "^X: expected a real-valued array, got dtype complex128"),
    (np.full((5, 6), "1"), TypeError, "^X: expected a real-valued array"),
    ([[1, 2, 3, 4, 5, 6], [1, 2]], ValueError, "^X: cannot be read as a 2-D array"),
    (np.zeros(5, [("a", float), ("b", int)]), ValueError, "^X: expected a 2-D array"),
], ids=["no-rows", "no-features", "1-D", "3-D", "object", "complex", "string", "ragged",
        "structured"])
def test_bad_inputs(X, error, match):
    net = small_net()
    for call in (lambda: net.fit(X, np.zeros(5, int), progress=False),
                 lambda: net.evaluate(X, np.zeros(5, int)), lambda: net.predict(X)):
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_size": 0}, ValueError, "^batch_size: expected a positive integer, got 0"),
    ({"batch_size": -5}, ValueError, "^batch_size: expected a positive integer, got -5"),
    ({"batch_size": 2.5}, TypeError, "^batch_size"),
    ({"batch_size": True}, TypeError, "^batch_size"),
    ({"batch_size": "32"}, TypeError, "^batch_size"),
    ({"epochs": 0}, ValueError, "^epochs"),
    ({"seed": -1}, ValueError, "^seed: expected None or a non-negative integer, got -1"),
    ({"seed": "1"}, TypeError, "^seed"),
    ({"seed": 1.5}, TypeError, "^seed"),
    ({"shuffle": "no"}, TypeError, "^shuffle: expected True or False"),
    ({"validation_split": float("nan")}, ValueError, "^validation_split"),
])
def test_bad_fit_arguments(kwargs, error, match):
    X, y = blobs()
    with pytest.raises(error, match=match):
        small_net().fit(X, y, progress=False, **kwargs)


@pytest.mark.parametrize("method", ["evaluate", "predict", "predict_proba"])
@pytest.mark.parametrize("batch_size, error", [(0, ValueError), (-1, ValueError), (1.0, TypeError)])
def test_bad_batch_size_for_inference(method, batch_size, error):
    X, y = blobs()
    args = (X, y) if method == "evaluate" else (X,)
    with pytest.raises(error, match="^batch_size"):
        getattr(small_net(), method)(*args, batch_size=batch_size)


def test_batch_size_larger_than_the_data_is_one_batch():
    X, y = blobs(n=50)
    whole = small_net()
    whole.fit(X, y, epochs=3, batch_size=50, progress=False, seed=0)
    huge = small_net()
    huge.fit(X, y, epochs=3, batch_size=10 ** 9, progress=False, seed=0)
    for p, q in zip(whole.parameters(), huge.parameters()):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(whole.predict(X, batch_size=10 ** 9), whole.predict(X))


@pytest.mark.parametrize("layout", ["fortran", "strided", "negative_strides", "read_only", "memmap",
                                    "big_endian", "list"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["uint8", "float32"])
def test_any_layout_of_training_data_trains_the_same(layout, dtype, tmp_path):
    X, y = blobs()
    if dtype == np.uint8:
        X = np.clip(X * 20 + 128, 0, 255).astype(np.uint8)
    make = LAYOUTS[layout]
    hostile_X = make(X) if layout == "fortran" else make(X, str(tmp_path))
    hostile_y = make(y) if layout == "fortran" else make(y, str(tmp_path))
    expected = fitted(X.astype(np.float32) if layout == "list" else X, y)
    for p, q in zip(fitted(hostile_X, hostile_y), expected):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("dtype", [np.float16, np.int8, np.int64, np.uint16, np.bool_])
def test_other_real_dtypes_train_as_their_float32_values(dtype):
    X, y = blobs()
    X = (X * 3).astype(dtype)
    for p, q in zip(fitted(X, y), fitted(X.astype(np.float32), y)):
        np.testing.assert_array_equal(p, q)


def test_float64_data_in_a_float32_network_is_rounded_like_astype():
    X, y = blobs()
    X64 = X.astype(np.float64) + 1e-9  # not exactly representable in float32
    for p, q in zip(fitted(X64, y), fitted(X64.astype(np.float32), y)):
        np.testing.assert_array_equal(p, q)


def test_failed_calls_leave_the_network_usable():
    X, y = blobs()
    net = small_net()
    reference_net = small_net()
    for bad in (np.full((200, 6), np.nan), np.zeros((0, 6)), np.zeros((200, 5))):
        with pytest.raises(ValueError):
            net.fit(bad, y, progress=False)
    net.fit(X, y, epochs=2, progress=False, seed=1)
    reference_net.fit(X, y, epochs=2, progress=False, seed=1)
    for p, q in zip(net.parameters(), reference_net.parameters()):
        np.testing.assert_array_equal(p, q)


# -- divergence -------------------------------------------------------------------------------

def diverging_fit(net, **kwargs):
    """ReLU MLP on standard-normal data with lr=1e3: the loss becomes NaN in epoch 1."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 20)).astype(np.float32)
    y = rng.integers(0, 3, 512)
    with pytest.raises(TrainingDivergedError) as info:
        net.fit(X, y, epochs=5, optimizer=SGD(lr=1e3), progress=False, seed=0, **kwargs)
    return info.value


def test_divergence_stops_at_the_first_non_finite_loss_with_the_last_finite_weights(monkeypatch):
    """Both training paths stop at the same step, with the weights from before it."""
    # One part: the native loop then makes the Python path's products, so the weights compare
    # bit for bit (its default split sums partial products in another order).
    monkeypatch.setattr("fastnn._fastpath.N_PARTS", 1)
    native = Network([Linear(20, 32), ReLU(), Linear(32, 3)], seed=0)
    error = diverging_fit(native, engine="compiled")
    assert (error.epoch, error.step) == (1, 9)
    assert re.fullmatch(r"training diverged at epoch 1, step 9: the loss or a gradient is not finite\. The "
                        r"weights from before this step are kept; try a lower learning rate "
                        r"\(lr=1000\)\.", str(error))

    python_path = Network([Linear(20, 32), ReLU(), Linear(32, 3)], seed=0)
    before_each_step = []
    real_step = _training.LayerEngine.step

    def recording_step(*args):
        before_each_step.append([p.copy() for p in python_path.parameters()])
        return real_step(*args)

    monkeypatch.setattr(_training.LayerEngine, "step", recording_step)
    error = diverging_fit(python_path, engine="layers")
    assert re.fullmatch(r"training diverged at epoch 1, step 9: the loss is not finite \(batch "
                        r"loss nan\)\. The weights from before this step are kept; try a lower "
                        r"learning rate \(lr=1000\)\.", str(error))
    assert (error.epoch, error.step) == (1, 9) and len(before_each_step) == 9
    for p, q, r in zip(native.parameters(), python_path.parameters(), before_each_step[-1]):
        assert np.isfinite(p).all()
        np.testing.assert_array_equal(p, r)
        np.testing.assert_array_equal(q, r)


def test_divergence_after_a_resume_names_the_global_epoch():
    net = Network([Linear(20, 32), ReLU(), Linear(32, 3)], seed=0)
    error = diverging_fit(net, initial_epoch=2)
    assert error.epoch == 3 and "epoch 3, step" in str(error)


# =============================================================================================
# Dataset loaders
# =============================================================================================

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]


def write_idx(path, array, type_code=0x08, compress=False):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    content = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        path, content = path + ".gz", gzip.compress(content)
    with open(path, "wb") as f:
        f.write(content)


def idx_dataset(directory, n_train=30, n_test=10, side=4, labels=None, images=None):
    """The four IDX files in ``directory``; ``labels``/``images`` replace the train split's."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        image = rng.integers(0, 256, (n, side, side)).astype(np.uint8)
        label = (np.arange(n) % 10).astype(np.uint8)
        if split == "train":
            image = image if images is None else images
            label = label if labels is None else labels
        write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte"), image,
                  0x0D if image.dtype == np.float32 else 0x08)
        write_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte"), label,
                  0x0C if label.dtype == np.int32 else 0x08)
    return str(directory)


def make_bad_directory(kind, tmp_path):
    if kind == "missing":
        return str(tmp_path / "nope")
    if kind == "a file":
        (tmp_path / "file").write_bytes(b"")
        return str(tmp_path / "file")
    if kind == "empty":
        return str(tmp_path)
    if kind == "directories named like the files":
        for name in IDX_NAMES:
            (tmp_path / name).mkdir()
        return str(tmp_path)
    if kind == "dangling symlinks":
        for name in IDX_NAMES:
            os.symlink(str(tmp_path / "nowhere"), tmp_path / name)
        return str(tmp_path)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "a file", "empty", "directories named like the files",
                                  "dangling symlinks"])
def test_load_idx_on_a_directory_without_the_files(kind, tmp_path):
    directory = make_bad_directory(kind, tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(f"found in {directory}")):
        load_idx(directory)


@pytest.mark.parametrize("change, match", [
    (lambda d: [open(os.path.join(d, n), "wb").close() for n in IDX_NAMES], "truncated header"),
    (lambda d: idx_dataset(d, labels=np.full(30, 10, np.uint8)), "label 10 at index 0 is outside 0..9"),
    (lambda d: idx_dataset(d, labels=np.arange(29, dtype=np.uint8) % 10), "count mismatch"),
    (lambda d: idx_dataset(d, images=np.zeros((30, 4, 4), np.float32)), "must be unsigned bytes"),
    (lambda d: idx_dataset(d, labels=np.zeros((30, 1), np.uint8)), "labels must be 1-D"),
])
def test_load_idx_on_bad_files(change, match, tmp_path):
    directory = str(tmp_path)
    change(directory)
    with pytest.raises(DatasetError, match=match) as info:
        load_idx(directory)
    assert str(tmp_path) in str(info.value)


def test_load_idx_names_a_directory_argument_of_the_wrong_type():
    with pytest.raises(TypeError, match="directory"):
        load_idx(None)


# =============================================================================================
# The command line
# =============================================================================================

def cli(*args, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT, env.get("PYTHONPATH", "")])
    env.pop("FASTNN_TEST_INTERRUPT_AFTER_EPOCH", None)
    return subprocess.run([sys.executable, "-m", "fastnn", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def constant_images(directory):
    return idx_dataset(directory, images=np.full((30, 4, 4), 7, np.uint8))


@pytest.mark.parametrize("make, options, fragments", [
    (lambda d: idx_dataset(d, n_train=0), [], ["no training images in"]),
    (lambda d: idx_dataset(d, n_test=0), [], ["no test images in"]),
    (lambda d: idx_dataset(d, n_train=1), ["--val-split", "0.5"],
     ["--val-split 0.5 leaves no training images out of 1"]),
    (constant_images, ["--scaling", "standardize"], ["--scaling standardize", "same value"]),
    (lambda d: idx_dataset(d, labels=np.full(30, 12, np.uint8)), [], ["label 12 at index 0"]),
    (lambda d: str(d / "no-such-dir"), [], ["--data-dir: no such directory"]),
    (lambda d: make_bad_directory("a file", d), [], ["--data-dir: no such directory"]),
    (lambda d: make_bad_directory("empty", d), [], ["train-images-idx3-ubyte"]),
], ids=["empty-train", "empty-test", "val-split-leaves-nothing", "standardize-constant",
        "label-out-of-range", "missing-dir", "file-as-dir", "empty-dir"])
def test_cli_refuses_unusable_data_in_one_line(make, options, fragments, tmp_path):
    data_dir = make(tmp_path)
    assert_one_line_error(cli("train", "--data-dir", data_dir, "--epochs", "1", *options),
                          *fragments)


def test_cli_evaluate_on_an_empty_test_set(tmp_path):
    model = tmp_path / "m.npz"
    Network([Linear(16, 10)], seed=0).save(model)
    data_dir = idx_dataset(tmp_path, n_test=0)
    assert_one_line_error(cli("evaluate", model, "--data-dir", data_dir), "no test images")


@pytest.mark.parametrize("options", [
    ["--hidden", "64", "--lr", "1000", "--momentum", "0", "--scaling", "standardize"],
    # Softmax regression stays finite up to lr ~1e35 (its loss grows linearly with the weights).
    ["--hidden", "0", "--lr", "1e38", "--scaling", "standardize"],
], ids=["relu-mlp", "softmax-regression"])
def test_cli_divergence_is_a_one_line_error_naming_epoch_and_step(options):
    proc = cli("train", *options, "--limit", "500", "--epochs", "2", "--batch-size", "32", "--schedule", "none",
               "--threads", "1")
    assert_one_line_error(proc, "training diverged at epoch 1, step", "try a lower learning rate")


# =============================================================================================
# The most dangerous calls, in a fresh interpreter
# =============================================================================================

HOSTILE_SCRIPT = textwrap.dedent("""
    import os, sys, tempfile
    import numpy as np
    import fastnn
    from fastnn import ops, Network, Linear, ReLU, Dropout

    def attempt(f, *args, allowed=(TypeError, ValueError), **kwargs):
        try:
            f(*args, **kwargs)
        except allowed:
            pass  # documented; anything else propagates and fails the run

    z, tmp = np.zeros, tempfile.mkdtemp()
    huge = np.broadcast_to(np.float32(1), (1 << 22, 4))          # 0-stride view, 64 MB logical
    mm = np.memmap(os.path.join(tmp, "m"), np.float32, "w+", shape=(64, 8))
    ro = np.memmap(os.path.join(tmp, "m"), np.float32, "r", shape=(64, 8))
    attempt(ops.sigmoid, huge[:1000])
    attempt(ops.sigmoid, z((64, 8), np.float32), out=ro)
    attempt(ops.sigmoid, mm, out=mm)
    attempt(ops.gather_rows, ro, np.array([63, 0, 2 ** 63 - 1]))
    attempt(ops.gather_rows, ro, np.array([63, -2 ** 63]))
    attempt(ops.gather_rows, ro, np.array([1, 2], np.uint64), out=z((2, 8), np.float32)[:, ::-1])
    attempt(ops.gather_rows, z((3, 4), np.uint8), np.array([0]), out=z((1, 4), np.uint8))
    attempt(ops.gather_rows, z((3, 4)), np.array([0]), out=z((1, 4), np.float16))
    attempt(ops.linear_forward, ro, z((8, 3), np.float32), z(3, np.float32), out=mm[:, :3])
    attempt(ops.linear_forward, z((4, 8)), z((8, 3)), z(3), out=np.broadcast_to(z(1), (4, 3)))
    attempt(ops.linear_backward, ro, z((8, 3), np.float32), z((64, 3), np.float32),
            dw_out=z((8, 3), np.float32), db_out=z((8, 3), np.float32)[:, 0])
    attempt(ops.softmax_cross_entropy, z((4, 3)), np.array([0, 1, 2, 2 ** 40]))
    attempt(ops.softmax_cross_entropy, z((4, 3)), np.array([0, 1, 2, 1]), grad_out=ro[:4, :3])
    attempt(ops.softmax_cross_entropy, z((4, 3)), np.array([0, 1, 2, 1]),
            sample_weight=np.full(4, np.inf))
    attempt(ops.softmax, np.full((2, 3), np.nan))
    attempt(ops.sgd_update, mm, mm, z((64, 8), np.float32), momentum=0.9)
    attempt(ops.sgd_update, mm, z((64, 8), np.float32), mm, momentum=0.9)
    attempt(ops.sgd_update, z(3), z(3), lr=1e308, weight_decay=1e308)

    net = Network([Linear(8, 16), ReLU(), Dropout(0.5), Linear(16, 3)], seed=0)
    attempt(net.fit, ro, np.zeros(64, int), epochs=1, batch_size=2 ** 62, progress=False)
    attempt(net.fit, ro, np.full(64, 2 ** 62), progress=False)
    attempt(net.fit, ro, np.zeros(64, int), validation_split=0.999, progress=False)
    attempt(net.fit, huge[:, :3], np.zeros(1 << 22, int), progress=False)
    attempt(net.predict, np.full((2, 8), 1e300))
    attempt(net.predict, np.zeros((2, 8), np.float64)[:, ::-1], batch_size=2 ** 62)
    attempt(net.forward, z((0, 8)))
    attempt(net.backward, z((5, 3)), allowed=RuntimeError)  # documented: forward() first
    native = Network([Linear(8, 16), ReLU(), Linear(16, 3)], seed=0)
    attempt(native.fit, mm, np.arange(64) % 3, epochs=1, batch_size=64, progress=False)
    attempt(native.fit, mm, np.arange(64) % 3, epochs=1, batch_size=1, progress=False)
    print("survived")
""")


def test_dangerous_calls_do_not_crash_the_interpreter():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", HOSTILE_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "survived"
