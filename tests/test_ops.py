"""Every op of fastnn.ops (compiled) against its NumPy twin in fastnn.reference."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastnn import activations, ops, reference

from fastnn.testing import TWIN_TOLERANCES as TOLERANCES

FORWARD_OPS = list(activations.NAMES)
BACKWARD_OPS = [name + "_backward" for name in FORWARD_OPS]
ELEMENTWISE_OPS = FORWARD_OPS + BACKWARD_OPS
ELEMENTWISE_SHAPES = [(1,), (1, 1), (7, 13), (3, 4, 5), (1000,)]
SOFTMAX_SHAPES = [(1, 1), (1, 7), (7, 13), (64, 2), (16, 1000), (5, 1)]
# (batch, n_in, n_out)
# (128, 784, 128) and (37, 999, 61) are cut into small BLAS calls (src_c/small_gemm.h), the second
# with ragged tiles and a ragged 8x8-block transpose of w.
LINEAR_SHAPES = [(1, 1, 1), (1, 7, 13), (7, 13, 5), (16, 1000, 2), (3, 2, 1000), (64, 33, 17),
                 (128, 784, 128), (37, 999, 61)]
REDUCTIONS = ["mean", "sum", "none"]


def assert_matches(got, want, tol, atol_scale=1.0):
    """Same type, shape and dtype, and values within the dtype's tolerance."""
    assert isinstance(got, np.ndarray)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * atol_scale)


def matmul_atol_scale(n_inner):
    # Rounding errors of a dot product grow about like sqrt(length) with any summation order.
    return max(1.0, float(np.sqrt(n_inner)))


def fill_nan(shape, dtype):
    return np.full(shape, np.nan, dtype)


# --------------------------------------------------------------------------------------------
# Elementwise
# --------------------------------------------------------------------------------------------

def elementwise_args(name, shape, dtype, rng):
    """Inputs of an elementwise op: (x,) for a forward op, (y, grad) for a backward one ((x, grad)
    when the derivative needs the input)."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if name in FORWARD_OPS:
        return (x,)
    entry = activations.get(name.removesuffix("_backward"))
    grad = rng.standard_normal(shape).astype(dtype)
    return (x if entry.needs_input else getattr(reference, entry.name)(x), grad)


@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_elementwise_matches_reference(name, shape, dtype, tol, threads, simd_path, rng):
    args = elementwise_args(name, shape, dtype, rng)
    copies = [a.copy() for a in args]
    got = getattr(ops, name)(*args)
    assert_matches(got, getattr(reference, name)(*copies), tol)
    for a, a0 in zip(args, copies):
        np.testing.assert_array_equal(a, a0)  # inputs untouched


@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_elementwise_large(name, dtype, tol, threads, simd_path, rng):
    args = elementwise_args(name, (4096, 1024), dtype, rng)
    assert_matches(getattr(ops, name)(*args), getattr(reference, name)(*args), tol)


@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_elementwise_out_buffer(name, dtype, tol, simd_path, rng):
    args = elementwise_args(name, (7, 13), dtype, rng)
    out = fill_nan((7, 13), dtype)
    result = getattr(ops, name)(*args, out=out)
    assert result is out
    assert_matches(out, getattr(reference, name)(*args), tol)


@pytest.mark.parametrize("shape", [(1,), (7, 13), (257, 33)], ids=str)
@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_elementwise_in_place(name, shape, dtype, tol, threads, simd_path, rng):
    args = elementwise_args(name, shape, dtype, rng)
    want = getattr(reference, name)(*args)
    for position in range(len(args)):  # out aliasing each input in turn
        inputs = [a.copy() for a in args]
        result = getattr(ops, name)(*inputs, out=inputs[position])
        assert result is inputs[position]
        assert_matches(result, want, tol)


@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_elementwise_read_only_inputs(name, dtype, tol, rng):
    args = elementwise_args(name, (7, 13), dtype, rng)
    for a in args:
        a.setflags(write=False)
    assert_matches(getattr(ops, name)(*args), getattr(reference, name)(*args), tol)


def strided_views(a):
    """Non-contiguous views holding the values of ``a`` (2-D): strided, transposed, reversed."""
    rows, cols = a.shape
    spaced = np.zeros((2 * rows, 3 * cols), a.dtype)
    spaced[::2, ::3] = a
    transposed = np.ascontiguousarray(a.T).T
    reversed_ = np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    views = [spaced[::2, ::3], transposed, reversed_]
    for v in views:
        assert not v.flags.c_contiguous
        np.testing.assert_array_equal(v, a)
    return views


@pytest.mark.parametrize("with_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("name", ELEMENTWISE_OPS)
def test_elementwise_non_contiguous_inputs(name, with_out, dtype, tol, simd_path, rng):
    args = elementwise_args(name, (7, 13), dtype, rng)
    want = getattr(reference, name)(*args)
    for view_index in range(3):
        views = [strided_views(a)[view_index] for a in args]
        out = fill_nan((7, 13), dtype) if with_out else None
        got = getattr(ops, name)(*views, out=out)
        if with_out:
            assert got is out
        assert_matches(got, want, tol)


@pytest.mark.parametrize("name", FORWARD_OPS)
def test_elementwise_list_input_becomes_float64(name):
    got = getattr(ops, name)([-2.0, 0.5, 3.0])
    assert got.dtype == np.float64
    assert_matches(got, getattr(reference, name)(np.array([-2.0, 0.5, 3.0])),
                   TOLERANCES[np.dtype(np.float64)])


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softmax"])
def test_non_native_byte_order_inputs(name, dtype, tol, rng):
    x = random_logits((5, 6), dtype, rng)
    swapped = x.astype(x.dtype.newbyteorder(">" if x.dtype.byteorder in "=<" else "<"))
    got = getattr(ops, name)(swapped)
    assert got.dtype == dtype  # native order out
    assert_matches(got, getattr(reference, name)(x), tol)


def test_relu_propagates_nan(dtype):
    x = np.array([np.nan, -1.0, 2.0], dtype)
    got = ops.relu(x)
    assert np.isnan(got[0])
    np.testing.assert_array_equal(got[1:], [0.0, 2.0])


# --------------------------------------------------------------------------------------------
# Softmax and log-softmax
# --------------------------------------------------------------------------------------------

def random_logits(shape, dtype, rng, scale=5.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_matches_reference(name, shape, dtype, tol, threads, simd_path, rng):
    logits = random_logits(shape, dtype, rng)
    copy = logits.copy()
    got = getattr(ops, name)(logits)
    assert_matches(got, getattr(reference, name)(copy), tol)
    np.testing.assert_array_equal(logits, copy)
    if name == "softmax":
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=10 * tol["rtol"])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_large(name, dtype, tol, threads, simd_path, rng):
    logits = random_logits((2048, 1000), dtype, rng)
    assert_matches(getattr(ops, name)(logits), getattr(reference, name)(logits), tol)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_out_buffer_aliasing_and_layouts(name, dtype, tol, simd_path, rng):
    logits = random_logits((7, 13), dtype, rng)
    want = getattr(reference, name)(logits)
    op = getattr(ops, name)

    out = fill_nan((7, 13), dtype)
    assert op(logits, out=out) is out
    assert_matches(out, want, tol)

    in_place = logits.copy()
    assert op(in_place, out=in_place) is in_place
    assert_matches(in_place, want, tol)

    read_only = logits.copy()
    read_only.setflags(write=False)
    assert_matches(op(read_only), want, tol)

    for view in strided_views(logits):
        assert_matches(op(view), want, tol)


# --------------------------------------------------------------------------------------------
# Softmax cross-entropy
# --------------------------------------------------------------------------------------------

def xent_inputs(shape, dtype, rng, label_dtype=np.int64):
    n_rows, n_classes = shape
    logits = random_logits(shape, dtype, rng)
    labels = rng.integers(0, n_classes, n_rows).astype(label_dtype)
    weights = rng.uniform(0.0, 2.0, n_rows).astype(dtype)
    return logits, labels, weights


def assert_xent_matches(got, want, reduction, tol, atol_scale=1.0):
    (loss, grad), (want_loss, want_grad) = got, want
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == np.float64
        np.testing.assert_allclose(loss, want_loss, rtol=tol["rtol"], atol=tol["atol"])
    else:
        assert type(loss) is float
        np.testing.assert_allclose(loss, want_loss, rtol=tol["rtol"], atol=tol["atol"])
    assert_matches(grad, want_grad, tol, atol_scale)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1, 2), (1, 5), (7, 13), (64, 2), (32, 1000)], ids=str)
def test_xent_matches_reference(shape, reduction, weighted, dtype, tol, threads, simd_path, rng):
    logits, labels, weights = xent_inputs(shape, dtype, rng)
    sample_weight = weights if weighted else None
    copy = logits.copy()
    got = ops.softmax_cross_entropy(logits, labels, reduction=reduction,
                                    sample_weight=sample_weight)
    want = reference.softmax_cross_entropy(copy, labels, reduction=reduction,
                                           sample_weight=sample_weight)
    assert_xent_matches(got, want, reduction, tol)
    np.testing.assert_array_equal(logits, copy)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64, np.uint8, np.int8, np.uint64])
def test_xent_label_dtypes(label_dtype, dtype, tol, rng):
    logits, labels, _ = xent_inputs((9, 13), dtype, rng, label_dtype)
    want = reference.softmax_cross_entropy(logits, labels.astype(np.int64))
    assert_xent_matches(ops.softmax_cross_entropy(logits, labels), want, "mean", tol)


def test_xent_labels_as_list(tol, rng):
    logits, labels, _ = xent_inputs((4, 3), np.float64, rng)
    want = reference.softmax_cross_entropy(logits, labels)
    assert_xent_matches(ops.softmax_cross_entropy(logits, labels.tolist()), want, "mean",
                        TOLERANCES[np.dtype(np.float64)])


def test_xent_large(dtype, tol, threads, simd_path, rng):
    logits, labels, weights = xent_inputs((4096, 1000), dtype, rng)
    got = ops.softmax_cross_entropy(logits, labels, sample_weight=weights)
    want = reference.softmax_cross_entropy(logits, labels, sample_weight=weights)
    assert_xent_matches(got, want, "mean", tol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_xent_grad_out_buffer_and_aliasing(reduction, dtype, tol, simd_path, rng):
    logits, labels, weights = xent_inputs((7, 13), dtype, rng)
    want = reference.softmax_cross_entropy(logits, labels, reduction=reduction,
                                           sample_weight=weights)

    grad_out = fill_nan((7, 13), dtype)
    got = ops.softmax_cross_entropy(logits, labels, grad_out=grad_out, reduction=reduction,
                                    sample_weight=weights)
    assert got[1] is grad_out
    assert_xent_matches(got, want, reduction, tol)

    in_place = logits.copy()
    got = ops.softmax_cross_entropy(in_place, labels, grad_out=in_place, reduction=reduction,
                                    sample_weight=weights)
    assert got[1] is in_place
    assert_xent_matches(got, want, reduction, tol)


def test_xent_read_only_and_non_contiguous(dtype, tol, rng):
    logits, labels, weights = xent_inputs((7, 13), dtype, rng)
    want = reference.softmax_cross_entropy(logits, labels, sample_weight=weights)
    for a in (logits, labels, weights):
        a.setflags(write=False)
    assert_xent_matches(ops.softmax_cross_entropy(logits, labels, sample_weight=weights),
                        want, "mean", tol)
    spaced_labels = np.repeat(labels, 2)[::2]
    spaced_weights = np.repeat(weights, 2)[::2]
    for view in strided_views(logits):
        got = ops.softmax_cross_entropy(view, spaced_labels, sample_weight=spaced_weights)
        assert_xent_matches(got, want, "mean", tol)


def test_xent_unit_weights_equal_no_weights(dtype, tol, rng):
    logits, labels, _ = xent_inputs((11, 6), dtype, rng)
    for reduction in REDUCTIONS:
        weighted = ops.softmax_cross_entropy(logits, labels, reduction=reduction,
                                             sample_weight=np.ones(11, dtype))
        plain = ops.softmax_cross_entropy(logits, labels, reduction=reduction)
        assert_xent_matches(weighted, plain, reduction, tol)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_rows", [1, 5])
def test_xent_refuses_one_column(n_rows, reduction, weighted, dtype, rng):
    """One class gives softmax 1 everywhere, so a loss and gradient of exactly 0: refused (as
    Network refuses SoftmaxCrossEntropy on one output) with an error naming logits, what was
    expected and the shape that came."""
    logits, _, weights = xent_inputs((n_rows, 3), dtype, rng)
    one_column = logits[:, :1]  # a strided view, as a user slices it
    labels = np.zeros(n_rows, np.int64)  # in range for K = 1: only the column count is wrong
    sample_weight = weights if weighted else None
    expected = rf"logits: expected at least 2 columns .*got shape \({n_rows}, 1\)"
    with pytest.raises(ValueError, match=expected):
        ops.softmax_cross_entropy(one_column, labels, reduction=reduction,
                                  sample_weight=sample_weight)
    column = np.ascontiguousarray(one_column)
    before = column.copy()
    with pytest.raises(ValueError, match=expected):  # refused before anything is written
        ops.softmax_cross_entropy(column, labels, grad_out=column, reduction=reduction)
    np.testing.assert_array_equal(column, before)


@pytest.mark.parametrize("module", [ops, reference], ids=["kernel", "twin"])
def test_xent_one_column_error_points_to_sigmoid_cross_entropy(module, rng):
    logits = random_logits((4, 1), np.float64, rng)
    with pytest.raises(ValueError, match=r"logits: expected at least 2 columns .*sigmoid_cross_entropy"):
        module.softmax_cross_entropy(logits, np.zeros(4, np.int64))


# --------------------------------------------------------------------------------------------
# Linear layer
# --------------------------------------------------------------------------------------------

def linear_inputs(shape, dtype, rng):
    n_batch, n_in, n_out = shape
    x = rng.standard_normal((n_batch, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", reference.ACTIVATIONS, ids=str)
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=str)
def test_linear_forward_matches_reference(shape, activation, with_bias, dtype, tol, threads,
                                          simd_path, rng):
    x, w, b = linear_inputs(shape, dtype, rng)
    b = b if with_bias else None
    got = ops.linear_forward(x, w, b, activation)
    want = reference.linear_forward(x, w, b, activation)
    assert_matches(got, want, tol, matmul_atol_scale(shape[1]))


@pytest.mark.parametrize("activation", reference.ACTIVATIONS, ids=str)
def test_linear_forward_out_read_only_and_layouts(activation, dtype, tol, simd_path, rng):
    x, w, b = linear_inputs((9, 13, 7), dtype, rng)
    want = reference.linear_forward(x, w, b, activation)

    out = fill_nan((9, 7), dtype)
    assert ops.linear_forward(x, w, b, activation, out=out) is out
    assert_matches(out, want, tol)

    for a in (x, w, b):
        a.setflags(write=False)
    assert_matches(ops.linear_forward(x, w, b, activation), want, tol)

    spaced_b = np.repeat(b, 2)[::2]
    for x_view, w_view in zip(strided_views(x), strided_views(w)):
        assert_matches(ops.linear_forward(x_view, w_view, spaced_b, activation), want, tol)


def test_linear_forward_large(dtype, tol, threads, simd_path, gemm_strategy, rng):
    x, w, b = linear_inputs((512, 256, 384), dtype, rng)
    got = ops.linear_forward(x, w, b, "sigmoid")
    assert_matches(got, reference.linear_forward(x, w, b, "sigmoid"), tol, matmul_atol_scale(256))


@pytest.mark.parametrize("with_buffers", [False, True], ids=["new", "buffers"])
@pytest.mark.parametrize("need_dx", [True, False], ids=["dx", "nodx"])
@pytest.mark.parametrize("activation", reference.ACTIVATIONS, ids=str)
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=str)
def test_linear_backward_matches_reference(shape, activation, need_dx, with_buffers, dtype, tol,
                                           threads, simd_path, rng):
    n_batch, n_in, n_out = shape
    x, w, b = linear_inputs(shape, dtype, rng)
    z = np.empty((n_batch, n_out), dtype)
    y = reference.linear_forward(x, w, b, activation, preactivation_out=z)
    grad_out = rng.standard_normal((n_batch, n_out)).astype(dtype)
    saved = [a.copy() for a in (x, w, y, grad_out)]
    buffers = {}
    if with_buffers:
        buffers = {"dw_out": fill_nan((n_in, n_out), dtype), "db_out": fill_nan(n_out, dtype),
                   "dx_out": fill_nan((n_batch, n_in), dtype) if need_dx else None}
    y_arg = y if activation is not None else None

    dw, db, dx = ops.linear_backward(x, w, grad_out, y_arg, activation, need_dx, z=z, **buffers)
    want_dw, want_db, want_dx = reference.linear_backward(x, w, grad_out, y_arg, activation,
                                                          need_dx, z=z)
    assert_matches(dw, want_dw, tol, matmul_atol_scale(n_batch))
    assert_matches(db, want_db, tol, matmul_atol_scale(n_batch))
    if need_dx:
        assert_matches(dx, want_dx, tol, matmul_atol_scale(n_out))
    else:
        assert dx is None
    if with_buffers:
        assert dw is buffers["dw_out"] and db is buffers["db_out"]
        if need_dx:
            assert dx is buffers["dx_out"]
    for a, a0 in zip((x, w, y, grad_out), saved):
        np.testing.assert_array_equal(a, a0)  # grad_out (and the rest) not modified


@pytest.mark.parametrize("shape", [(128, 784, 128), (37, 999, 61)], ids=str)
def test_linear_ops_match_reference_with_either_product_strategy(shape, dtype, tol, threads,
                                                                 gemm_strategy, rng):
    x, w, b = linear_inputs(shape, dtype, rng)
    y = ops.linear_forward(x, w, b, "sigmoid")
    assert_matches(y, reference.linear_forward(x, w, b, "sigmoid"), tol, matmul_atol_scale(shape[1]))
    grad_out = rng.standard_normal(y.shape).astype(dtype)
    got = ops.linear_backward(x, w, grad_out, y, "sigmoid")
    want = reference.linear_backward(x, w, grad_out, y, "sigmoid")
    for got_part, want_part, inner in zip(got, want, (shape[0], shape[0], shape[2])):
        assert_matches(got_part, want_part, tol, matmul_atol_scale(inner))


@pytest.mark.parametrize("activation", reference.ACTIVATIONS, ids=str)
def test_linear_backward_read_only_and_layouts(activation, dtype, tol, rng):
    x, w, b = linear_inputs((9, 13, 7), dtype, rng)
    z = np.empty((9, 7), dtype)
    y = reference.linear_forward(x, w, b, activation, preactivation_out=z)
    grad_out = rng.standard_normal((9, 7)).astype(dtype)
    y_arg = y if activation is not None else None
    want = reference.linear_backward(x, w, grad_out, y_arg, activation, z=z)
    for a in (x, w, y, z, grad_out):
        a.setflags(write=False)
    scales = (matmul_atol_scale(9), matmul_atol_scale(9), matmul_atol_scale(7))
    for got_part, want_part, scale in zip(
            ops.linear_backward(x, w, grad_out, y_arg, activation, z=z), want, scales):
        assert_matches(got_part, want_part, tol, scale)
    views = zip(strided_views(x), strided_views(w), strided_views(y), strided_views(z),
                strided_views(grad_out))
    for x_view, w_view, y_view, z_view, g_view in views:
        got = ops.linear_backward(x_view, w_view, g_view,
                                  y_view if activation is not None else None, activation, z=z_view)
        for got_part, want_part, scale in zip(got, want, scales):
            assert_matches(got_part, want_part, tol, scale)


def test_linear_backward_large(dtype, tol, threads, simd_path, gemm_strategy, rng):
    x, w, b = linear_inputs((512, 256, 384), dtype, rng)
    y = reference.linear_forward(x, w, b, "tanh")
    grad_out = rng.standard_normal(y.shape).astype(dtype)
    got = ops.linear_backward(x, w, grad_out, y, "tanh")
    want = reference.linear_backward(x, w, grad_out, y, "tanh")
    for got_part, want_part, inner in zip(got, want, (512, 512, 384)):
        assert_matches(got_part, want_part, tol, matmul_atol_scale(inner))


# --------------------------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------------------------

SGD_CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.01),
    "momentum_decay": dict(lr=0.1, momentum=0.5, weight_decay=0.01),
    "nesterov_decay": dict(lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True),
    "zero_lr": dict(lr=0.0, momentum=0.9),
}


def sgd_state(shape, dtype, rng, config):
    param = rng.standard_normal(shape).astype(dtype)
    velocity = rng.standard_normal(shape).astype(dtype) if config.get("momentum") else None
    return param, velocity


@pytest.mark.parametrize("shape", [(1,), (7, 13), (1000,)], ids=str)
@pytest.mark.parametrize("config_name", SGD_CONFIGS)
def test_sgd_several_steps_match_reference(config_name, shape, dtype, tol, threads, simd_path,
                                           rng):
    config = SGD_CONFIGS[config_name]
    param, velocity = sgd_state(shape, dtype, rng, config)
    twin_param = param.copy()
    twin_velocity = None if velocity is None else velocity.copy()
    for _ in range(5):
        grad = rng.standard_normal(shape).astype(dtype)
        grad_copy = grad.copy()
        result = ops.sgd_update(param, grad, velocity, **config)
        reference.sgd_update(twin_param, grad, twin_velocity, **config)
        assert result is param
        np.testing.assert_array_equal(grad, grad_copy)
        assert_matches(param, twin_param, tol)
        if velocity is not None:
            assert_matches(velocity, twin_velocity, tol)
    if config["lr"] == 0:
        np.testing.assert_array_equal(param, twin_param)


def test_sgd_large(dtype, tol, threads, simd_path, rng):
    config = SGD_CONFIGS["nesterov_decay"]
    param, velocity = sgd_state((4096, 256), dtype, rng, config)
    twin_param, twin_velocity = param.copy(), velocity.copy()
    grad = rng.standard_normal(param.shape).astype(dtype)
    ops.sgd_update(param, grad, velocity, **config)
    reference.sgd_update(twin_param, grad, twin_velocity, **config)
    assert_matches(param, twin_param, tol)
    assert_matches(velocity, twin_velocity, tol)


def test_sgd_velocity_untouched_without_momentum(dtype, rng):
    param = rng.standard_normal(10).astype(dtype)
    grad = rng.standard_normal(10).astype(dtype)
    velocity = rng.standard_normal(10).astype(dtype)
    velocity_before = velocity.copy()
    ops.sgd_update(param, grad, velocity, lr=0.1, weight_decay=0.01)
    np.testing.assert_array_equal(velocity, velocity_before)


@pytest.mark.parametrize("config_name", ["plain", "nesterov_decay"])
def test_sgd_non_contiguous_and_read_only_grad(config_name, dtype, tol, rng):
    config = SGD_CONFIGS[config_name]
    param, velocity = sgd_state((7, 13), dtype, rng, config)
    grad = rng.standard_normal((7, 13)).astype(dtype)
    twin_param = param.copy()
    twin_velocity = None if velocity is None else velocity.copy()
    reference.sgd_update(twin_param, grad, twin_velocity, **config)
    grad.setflags(write=False)
    ops.sgd_update(param, strided_views(grad)[0], velocity, **config)
    assert_matches(param, twin_param, tol)


def test_sgd_default_learning_rate(rng):
    param = rng.standard_normal(5)
    grad = rng.standard_normal(5)
    want = param - 0.01 * grad
    ops.sgd_update(param, grad)
    np.testing.assert_allclose(param, want, rtol=1e-15)


# --------------------------------------------------------------------------------------------
# Property-based
# --------------------------------------------------------------------------------------------

FLOAT_DTYPES = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])


@st.composite
def float_arrays(draw, min_dims=1, max_dims=3, max_side=17, max_magnitude=None):
    """Finite float32/float64 arrays, values anywhere in the finite range unless limited."""
    dtype = draw(FLOAT_DTYPES)
    width = 32 if dtype == np.float32 else 64
    elements = st.floats(allow_nan=False, allow_infinity=False, width=width,
                         min_value=None if max_magnitude is None else -max_magnitude,
                         max_value=max_magnitude)
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, max_side=max_side))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@given(float_arrays())
def test_property_sigmoid(x):
    got = ops.sigmoid(x)
    assert np.all((got >= 0) & (got <= 1))
    assert_matches(got, reference.sigmoid(x), TOLERANCES[x.dtype])


@given(float_arrays())
def test_property_tanh(x):
    got = ops.tanh(x)
    assert np.all(np.abs(got) <= 1)
    assert_matches(got, reference.tanh(x), TOLERANCES[x.dtype])


@given(float_arrays(min_dims=2, max_dims=2, max_side=9), st.data(),
       st.sampled_from(REDUCTIONS), st.booleans())
def test_property_softmax_cross_entropy(logits, data, reduction, weighted):
    n_rows, n_classes = logits.shape
    labels = np.array(data.draw(st.lists(st.integers(0, n_classes - 1), min_size=n_rows,
                                         max_size=n_rows)), dtype=np.int64)
    if n_classes == 1:  # one class: no softmax to learn, refused whatever the values
        with pytest.raises(ValueError, match="logits: expected at least 2 columns"):
            ops.softmax_cross_entropy(logits, labels, reduction=reduction)
        return
    weights = None
    if weighted:
        weights = np.array(data.draw(st.lists(st.floats(0, 10), min_size=n_rows,
                                              max_size=n_rows)), dtype=logits.dtype)
        if reduction == "mean" and weights.sum() == 0:
            weights[0] = 1
    got = ops.softmax_cross_entropy(logits, labels, reduction=reduction, sample_weight=weights)
    want = reference.softmax_cross_entropy(logits, labels, reduction=reduction,
                                           sample_weight=weights)
    assert_xent_matches(got, want, reduction, TOLERANCES[logits.dtype],
                        atol_scale=1.0 if weights is None else 10.0)


@given(float_arrays(max_magnitude=1e3), st.data())
def test_property_sgd_update(param, data):
    config = {
        "lr": data.draw(st.floats(0, 1)),
        "momentum": data.draw(st.sampled_from([0.0, 0.5, 0.9, 0.99])),
        "weight_decay": data.draw(st.sampled_from([0.0, 1e-4, 0.1])),
    }
    config["nesterov"] = config["momentum"] > 0 and data.draw(st.booleans())
    values = st.floats(-1e3, 1e3, width=32 if param.dtype == np.float32 else 64)
    grad = data.draw(hnp.arrays(param.dtype, param.shape, elements=values))
    velocity = None
    if config["momentum"] > 0:
        velocity = data.draw(hnp.arrays(param.dtype, param.shape, elements=values))
    twin_param = param.copy()
    twin_velocity = None if velocity is None else velocity.copy()
    ops.sgd_update(param, grad, velocity, **config)
    reference.sgd_update(twin_param, grad, twin_velocity, **config)
    # Values reach ~1e3, so the absolute tolerance scales with them.
    assert_matches(param, twin_param, TOLERANCES[param.dtype], atol_scale=1e3)
    if velocity is not None:
        assert_matches(velocity, twin_velocity, TOLERANCES[param.dtype], atol_scale=1e3)
