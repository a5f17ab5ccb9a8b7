"""Every validation path of the op contract: the documented error type, naming the argument."""
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastnn import activations, ops, reference

IMPLEMENTATIONS = [pytest.param(ops, id="ops"), pytest.param(reference, id="reference")]
ELEMENTWISE_FORWARD = list(activations.NAMES)
ELEMENTWISE_BACKWARD = [name + "_backward" for name in ELEMENTWISE_FORWARD]
# what each backward op reads beside grad: the output y, or the input x (fastnn.activations)
SAVED = {e.backward_name: e.saved for e in activations.REGISTRY}


def names(argument):
    """A ``match=`` pattern for a message that names the argument as a whole word."""
    return rf"\b{re.escape(argument)}\b"


def valid_call(op_name, dtype=np.float64):
    """Keyword arguments of a call of ``op_name`` that succeeds (float arrays of ``dtype``)."""
    rng = np.random.default_rng(0)

    def array(*shape):
        return rng.standard_normal(shape).astype(dtype)

    if op_name in ELEMENTWISE_FORWARD:
        return {"x": array(3, 4)}
    if op_name in ELEMENTWISE_BACKWARD:
        return {SAVED[op_name]: array(3, 4), "grad": array(3, 4)}
    if op_name in ("softmax", "log_softmax"):
        return {"logits": array(3, 4)}
    if op_name == "softmax_cross_entropy":
        return {"logits": array(3, 4), "labels": np.array([0, 1, 3]),
                "sample_weight": np.abs(array(3)) + 0.5}
    if op_name == "linear_forward":
        return {"x": array(3, 4), "w": array(4, 5), "b": array(5), "activation": "sigmoid"}
    if op_name == "linear_backward":
        return {"x": array(3, 4), "w": array(4, 5), "grad_out": array(3, 5), "y": array(3, 5),
                "activation": "tanh"}
    if op_name == "sgd_update":
        return {"param": array(3, 4), "grad": array(3, 4), "velocity": array(3, 4),
                "momentum": 0.9}
    raise AssertionError(op_name)


# The float array arguments of each op, the first one setting the dtype of the call.
FLOAT_ARGUMENTS = {
    **{name: ["x"] for name in ELEMENTWISE_FORWARD},
    **{name: [SAVED[name], "grad"] for name in ELEMENTWISE_BACKWARD},
    "softmax": ["logits"],
    "log_softmax": ["logits"],
    "softmax_cross_entropy": ["logits"],
    "linear_forward": ["x", "w", "b"],
    "linear_backward": ["x", "w", "grad_out", "y"],
    "sgd_update": ["param", "grad", "velocity"],
}
ALL_FLOAT_ARGUMENTS = [(op, arg) for op, args in FLOAT_ARGUMENTS.items() for arg in args]
LATER_FLOAT_ARGUMENTS = [(op, arg) for op, args in FLOAT_ARGUMENTS.items() for arg in args[1:]]
BAD_DTYPES = [np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex128, object]


@pytest.mark.parametrize("op_name", list(FLOAT_ARGUMENTS))
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_valid_calls_succeed(impl, op_name):
    # The baseline every error case below changes in exactly one argument.
    for dtype in (np.float32, np.float64):
        getattr(impl, op_name)(**valid_call(op_name, dtype))


@pytest.mark.parametrize("bad_dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op_name, argument", ALL_FLOAT_ARGUMENTS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_non_float_dtype_is_a_type_error(impl, op_name, argument, bad_dtype):
    kwargs = valid_call(op_name)
    kwargs[argument] = kwargs[argument].astype(bad_dtype)
    with pytest.raises(TypeError, match=names(argument)):
        getattr(impl, op_name)(**kwargs)


@pytest.mark.parametrize("base, other", [(np.float64, np.float32), (np.float32, np.float64)])
@pytest.mark.parametrize("op_name, argument", LATER_FLOAT_ARGUMENTS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_mixed_float_dtypes_are_a_type_error(impl, op_name, argument, base, other):
    kwargs = valid_call(op_name, base)
    kwargs[argument] = kwargs[argument].astype(other)
    with pytest.raises(TypeError, match=names(argument)):
        getattr(impl, op_name)(**kwargs)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_list_input_is_float64(impl):
    assert impl.sigmoid([0.0, 1.0]).dtype == np.float64
    with pytest.raises(TypeError, match=names("x")):
        impl.sigmoid([0, 1])  # a list of Python ints becomes int64


# --------------------------------------------------------------------------------------------
# ndim and shapes
# --------------------------------------------------------------------------------------------

WRONG_SHAPES = [
    # (op, argument, replacement shape)
    ("sigmoid", "x", ()),
    ("tanh_backward", "y", ()),
    ("relu_backward", "grad", (3, 5)),
    ("relu_backward", "grad", (4, 3)),
    ("sigmoid_backward", "grad", (12,)),
    ("softmax", "logits", (4,)),
    ("log_softmax", "logits", (2, 3, 4)),
    ("softmax_cross_entropy", "logits", (12,)),
    ("softmax_cross_entropy", "logits", (3, 4, 1)),
    ("linear_forward", "x", (4,)),
    ("linear_forward", "x", (3, 4, 1)),
    ("linear_forward", "w", (4,)),
    ("linear_forward", "w", (3, 5)),
    ("linear_forward", "w", (5, 4)),
    ("linear_forward", "b", (4,)),
    ("linear_forward", "b", (1, 5)),
    ("linear_backward", "w", (3, 5)),
    ("linear_backward", "grad_out", (3, 4)),
    ("linear_backward", "grad_out", (15,)),
    ("linear_backward", "y", (2, 5)),
    ("sgd_update", "grad", (4, 3)),
    ("sgd_update", "grad", (12,)),
    ("sgd_update", "velocity", (4, 3)),
]


@pytest.mark.parametrize("op_name, argument, shape", WRONG_SHAPES, ids=str)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_wrong_ndim_or_shape_is_a_value_error(impl, op_name, argument, shape):
    kwargs = valid_call(op_name)
    kwargs[argument] = np.ones(shape)
    with pytest.raises(ValueError, match=names(argument)):
        getattr(impl, op_name)(**kwargs)


@pytest.mark.parametrize("argument, value", [
    ("labels", np.array([0, 1])),
    ("labels", np.array([[0, 1, 3]])),
    ("sample_weight", np.ones(4)),
    ("sample_weight", np.ones((3, 1))),
])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_softmax_cross_entropy_side_arrays_shape(impl, argument, value):
    kwargs = valid_call("softmax_cross_entropy")
    kwargs[argument] = value
    with pytest.raises(ValueError, match=names(argument)):
        impl.softmax_cross_entropy(**kwargs)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_softmax_cross_entropy_without_rows(impl):
    with pytest.raises(ValueError, match=names("logits")):
        impl.softmax_cross_entropy(np.zeros((0, 4)), np.zeros(0, np.int64))


# --------------------------------------------------------------------------------------------
# Labels and sample weights
# --------------------------------------------------------------------------------------------

# K = 5; no first-bad index or value is 0 or 5, which the message may show as the range.
@pytest.mark.parametrize("labels, first_bad, value", [
    (np.array([0, 1, 2, 3, -1, 9]), 4, -1),
    (np.array([0, 6, 2, 3, -1, 1]), 1, 6),
    (np.array([0, 1, 2, 7, 0, 9], np.int32), 3, 7),
    (np.array([1, 1, 200, 3, 0, 1], np.uint8), 2, 200),
    (np.array([0, 1, 2, -128, 0, 1], np.int8), 3, -128),
], ids=["negative", "too_large", "int32", "uint8", "int8"])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_labels_out_of_range_name_the_first_bad_one(impl, labels, first_bad, value):
    logits = np.zeros((6, 5))  # K = 5
    with pytest.raises(ValueError, match=names("labels")) as excinfo:
        impl.softmax_cross_entropy(logits, labels)
    message = str(excinfo.value)
    assert re.search(rf"(?<![\d.-]){first_bad}(?![\d.])", message), message
    assert re.search(rf"(?<![\d.]){value}(?![\d.])", message), message


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_label_equal_to_k_is_out_of_range(impl):
    with pytest.raises(ValueError, match=names("labels")):
        impl.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))


@pytest.mark.parametrize("label_dtype", [np.float64, np.float32, np.bool_, object])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_non_integer_labels_are_a_type_error(impl, label_dtype):
    with pytest.raises(TypeError, match=names("labels")):
        impl.softmax_cross_entropy(np.zeros((3, 4)), np.array([0, 1, 1]).astype(label_dtype))


@pytest.mark.parametrize("weights", [
    np.array([1.0, -0.5, 1.0]),
    np.array([1.0, np.nan, 1.0]),
    np.array([np.inf, 1.0, 1.0]),
], ids=["negative", "nan", "inf"])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_bad_sample_weight_values(impl, weights):
    with pytest.raises(ValueError, match=names("sample_weight")):
        impl.softmax_cross_entropy(np.zeros((3, 4)), np.array([0, 1, 2]), sample_weight=weights)


@pytest.mark.parametrize("weight_dtype", [np.complex128, object, np.bool_])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_non_real_sample_weight_is_a_type_error(impl, weight_dtype):
    weights = np.ones(3).astype(weight_dtype)
    with pytest.raises(TypeError, match=names("sample_weight")):
        impl.softmax_cross_entropy(np.zeros((3, 4)), np.array([0, 1, 2]), sample_weight=weights)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_integer_sample_weight_is_converted(impl):
    logits = np.arange(12.0).reshape(3, 4)
    integer = impl.softmax_cross_entropy(logits, [0, 1, 2], sample_weight=np.array([1, 2, 3]))
    real = impl.softmax_cross_entropy(logits, [0, 1, 2], sample_weight=np.array([1.0, 2.0, 3.0]))
    assert integer[0] == real[0]
    np.testing.assert_array_equal(integer[1], real[1])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_float64_sample_weight_is_converted_for_float32_logits(impl):
    logits = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    weights = np.array([0.1, 0.2, 0.7])
    converted = impl.softmax_cross_entropy(logits, [0, 1, 2], sample_weight=weights)
    as_float32 = impl.softmax_cross_entropy(logits, [0, 1, 2],
                                            sample_weight=weights.astype(np.float32))
    assert converted[1].dtype == np.float32
    assert converted[0] == as_float32[0]
    np.testing.assert_array_equal(converted[1], as_float32[1])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_mean_over_zero_total_weight(impl):
    with pytest.raises(ValueError, match=names("sample_weight")):
        impl.softmax_cross_entropy(np.zeros((2, 3)), [0, 1], sample_weight=np.zeros(2))
    # "sum" and "none" are defined with zero weights: loss 0, gradient 0.
    loss, grad = impl.softmax_cross_entropy(np.zeros((2, 3)), [0, 1], reduction="sum",
                                            sample_weight=np.zeros(2))
    assert loss == 0 and not grad.any()


@pytest.mark.parametrize("reduction", ["avg", "MEAN", None, ""])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_bad_reduction(impl, reduction):
    with pytest.raises(ValueError, match=names("reduction")):
        impl.softmax_cross_entropy(np.zeros((3, 4)), np.array([0, 1, 2]), reduction=reduction)


# --------------------------------------------------------------------------------------------
# Output buffers
# --------------------------------------------------------------------------------------------

# (op, buffer argument, the buffer's required shape)
OUT_BUFFERS = (
    [(name, "out", (3, 4)) for name in ELEMENTWISE_FORWARD + ELEMENTWISE_BACKWARD]
    + [("softmax", "out", (3, 4)), ("log_softmax", "out", (3, 4)),
       ("softmax_cross_entropy", "grad_out", (3, 4)), ("linear_forward", "out", (3, 5)),
       ("linear_backward", "dw_out", (4, 5)), ("linear_backward", "db_out", (5,)),
       ("linear_backward", "dx_out", (3, 4))]
)


def non_contiguous(shape):
    if len(shape) == 1:
        return np.zeros(2 * shape[0])[::2]
    return np.zeros(shape[::-1]).T  # Fortran order


def read_only(shape):
    a = np.zeros(shape)
    a.setflags(write=False)
    return a


BAD_BUFFERS = {
    "wrong_shape": (ValueError, lambda shape: np.zeros(shape + (1,))),
    "same_size_other_shape": (ValueError, lambda shape: np.zeros(shape[::-1] if len(shape) > 1
                                                                  else (1,) + shape)),
    "float32": (TypeError, lambda shape: np.zeros(shape, np.float32)),
    "int64": (TypeError, lambda shape: np.zeros(shape, np.int64)),
    "non_contiguous": (ValueError, non_contiguous),
    "read_only": (ValueError, read_only),
}


@pytest.mark.parametrize("problem", BAD_BUFFERS)
@pytest.mark.parametrize("op_name, argument, shape", OUT_BUFFERS, ids=str)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_bad_out_buffer(impl, op_name, argument, shape, problem):
    error, make = BAD_BUFFERS[problem]
    kwargs = valid_call(op_name)
    kwargs[argument] = make(shape)
    with pytest.raises(error, match=names(argument)):
        getattr(impl, op_name)(**kwargs)


@pytest.mark.parametrize("argument", ["param", "velocity"])
@pytest.mark.parametrize("make", [non_contiguous, read_only], ids=["non_contiguous", "read_only"])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sgd_state_must_be_contiguous_and_writeable(impl, argument, make):
    kwargs = valid_call("sgd_update")
    kwargs[argument] = make((3, 4))
    with pytest.raises(ValueError, match=names(argument)):
        impl.sgd_update(**kwargs)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_forward_out_must_not_overlap_its_inputs(impl):
    x = np.ones((4, 4))
    w = np.eye(4)
    with pytest.raises(ValueError, match=names("out")):
        impl.linear_forward(x, w, None, out=x)
    with pytest.raises(ValueError, match=names("out")):
        impl.linear_forward(x, w, None, out=w)
    b = np.zeros(8)
    with pytest.raises(ValueError, match=names("out")):
        impl.linear_forward(np.ones((1, 4)), np.ones((4, 4)), b[:4], out=b[2:6].reshape(1, 4))


@pytest.mark.parametrize("op_name", ELEMENTWISE_FORWARD)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_elementwise_out_partially_overlapping_the_input(impl, op_name):
    storage = np.linspace(-1, 1, 11)
    with pytest.raises(ValueError, match=names("out")):
        getattr(impl, op_name)(storage[:10], out=storage[1:])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_out_overlapping_a_non_contiguous_input(impl):
    # The overlap is a property of the caller's arrays, whether or not the input gets copied.
    storage = np.linspace(-1, 1, 20)
    with pytest.raises(ValueError, match=names("out")):
        impl.sigmoid(storage[::2], out=storage[1:11])
    x = np.ones((4, 4))
    with pytest.raises(ValueError, match=names("out")):
        impl.linear_forward(x.T, np.eye(4), None, out=x)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_backward_out_partially_overlapping_an_input(impl):
    storage = np.linspace(-0.9, 0.9, 11)
    with pytest.raises(ValueError, match=names("out")):
        impl.tanh_backward(storage[:10], np.ones(10), out=storage[1:])
    with pytest.raises(ValueError, match=names("out")):
        impl.tanh_backward(np.zeros(10), storage[1:], out=storage[:10])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_softmax_cross_entropy_grad_out_partially_overlapping_logits(impl):
    storage = np.zeros((4, 3))
    with pytest.raises(ValueError, match=names("grad_out")):
        impl.softmax_cross_entropy(storage[:3], np.array([0, 1, 2]), grad_out=storage[1:])


# --------------------------------------------------------------------------------------------
# Activations, y, SGD hyper-parameters
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["softmax", "Sigmoid", "", 1, "none"])
@pytest.mark.parametrize("op_name", ["linear_forward", "linear_backward"])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_bad_activation(impl, op_name, activation):
    kwargs = valid_call(op_name)
    kwargs["activation"] = activation
    with pytest.raises(ValueError, match=names("activation")):
        getattr(impl, op_name)(**kwargs)


@pytest.mark.parametrize("activation", ELEMENTWISE_FORWARD)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_backward_needs_y_with_an_activation(impl, activation):
    kwargs = valid_call("linear_backward")
    kwargs.update(y=None, activation=activation)
    with pytest.raises(ValueError, match=names("z" if activations.get(activation).needs_input else "y")):
        impl.linear_backward(**kwargs)


@pytest.mark.parametrize("argument, value", [
    ("lr", -0.1), ("lr", np.nan), ("lr", np.inf),
    ("momentum", -0.5), ("momentum", np.inf), ("momentum", np.nan),
    ("weight_decay", -1e-4), ("weight_decay", np.nan), ("weight_decay", -np.inf),
], ids=str)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_bad_sgd_hyper_parameter(impl, argument, value):
    kwargs = valid_call("sgd_update")
    kwargs[argument] = value
    with pytest.raises(ValueError, match=names(argument)):
        impl.sgd_update(**kwargs)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sgd_momentum_needs_velocity(impl):
    kwargs = valid_call("sgd_update")
    kwargs["velocity"] = None
    with pytest.raises(ValueError, match=names("velocity")):
        impl.sgd_update(**kwargs)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sgd_nesterov_needs_momentum(impl):
    kwargs = valid_call("sgd_update")
    kwargs.update(momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match=names("nesterov")):
        impl.sgd_update(**kwargs)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_failed_validation_leaves_arrays_untouched(impl):
    kwargs = valid_call("sgd_update")
    before = {name: a.copy() for name, a in kwargs.items() if isinstance(a, np.ndarray)}
    with pytest.raises(ValueError):
        impl.sgd_update(**kwargs, lr=-1.0)
    for name, a in before.items():
        np.testing.assert_array_equal(kwargs[name], a)
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError):
        impl.softmax_cross_entropy(logits, np.array([0, 1, 4]), grad_out=logits)
    np.testing.assert_array_equal(logits, 0.0)


# --------------------------------------------------------------------------------------------
# Hostile calls never crash the interpreter
# --------------------------------------------------------------------------------------------

HOSTILE_SCRIPT = textwrap.dedent("""
    import numpy as np
    from fastnn import ops

    def attempt(f, *args, **kwargs):
        try:
            f(*args, **kwargs)
        except (TypeError, ValueError, OverflowError, MemoryError, IndexError):
            pass

    z = np.zeros
    attempt(ops.sigmoid, z(0))
    attempt(ops.sigmoid, z((0, 3)))
    attempt(ops.sigmoid, np.broadcast_to(z(1), (1 << 20,)))
    attempt(ops.sigmoid, z(5), out=np.broadcast_to(z(1), (5,)))
    attempt(ops.sigmoid, z((4, 4))[::-1, ::-2])
    attempt(ops.sigmoid, z((1,) * 32))
    attempt(ops.sigmoid, "not an array")
    attempt(ops.sigmoid, None)
    attempt(ops.sigmoid, [[1.0], [1.0, 2.0]])
    attempt(ops.sigmoid, memoryview(b"abcd"))
    attempt(ops.sigmoid, z(4, ">f8"))
    attempt(ops.sigmoid, z(4), out="out")
    attempt(ops.tanh_backward, z(3), z(3), out=z(3)[::-1])
    attempt(ops.relu_backward, z(3), z(4))
    attempt(ops.softmax, z((3, 0)))
    attempt(ops.softmax, z((0, 3)))
    attempt(ops.log_softmax, z((2, 3)), out=z((3, 2)))
    attempt(ops.softmax_cross_entropy, z((3, 4)), np.array([0, 1, 2 ** 62]))
    attempt(ops.softmax_cross_entropy, z((3, 4)), np.array([0, 1, 2 ** 64 - 1], np.uint64))
    attempt(ops.softmax_cross_entropy, z((3, 4)), np.array([-2 ** 63, 0, 0]))
    attempt(ops.softmax_cross_entropy, z((3, 0)), np.array([0, 0, 0]))
    attempt(ops.softmax_cross_entropy, z((3, 4)), np.array([0, 1, 2]), sample_weight=z(3))
    attempt(ops.softmax_cross_entropy, z((3, 4)), np.array([0, 1, 2]), grad_out=z((4, 3)).T)
    attempt(ops.softmax_cross_entropy, z((3, 4)), [0, 1, "2"])
    attempt(ops.linear_forward, z((0, 3)), z((3, 2)), None)
    attempt(ops.linear_forward, z((3, 0)), z((0, 2)), None)
    attempt(ops.linear_forward, z((2, 3)), z((3, 0)), z(0))
    attempt(ops.linear_forward, z((2, 2)), z((2, 2)), None, out=z((2, 2)).T)
    attempt(ops.linear_forward, z((2, 3)), z((3, 2)), None, activation=["relu"])
    attempt(ops.linear_backward, z((0, 3)), z((3, 2)), z((0, 2)))
    attempt(ops.linear_backward, z((2, 3)), z((3, 2)), z((2, 2)), need_dx=False, dx_out="x")
    attempt(ops.linear_backward, z((2, 3)), z((3, 2)), z((2, 2)), z((2, 2)), "relu",
            dw_out=z((3, 2)), db_out=z((3, 2))[0], dx_out=z((2, 3)))
    attempt(ops.sgd_update, z(0), z(0))
    attempt(ops.sgd_update, z(5), z(5), z(5), lr=1e308, momentum=1e308)
    p = z(5)
    attempt(ops.sgd_update, p, p, p, momentum=0.9)
    attempt(ops.sgd_update, p, z(5), None, lr="0.1")
    print("survived")
""")


def test_hostile_calls_do_not_crash_the_interpreter():
    result = subprocess.run([sys.executable, "-c", HOSTILE_SCRIPT], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout
