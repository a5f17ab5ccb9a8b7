"""fastnn.ops against buffers that share memory, buffers that are not ndarrays, and the
hyper-parameters and shapes at the edges of what the ops take: each is refused with an error
naming the arguments, or computed as its NumPy twin computes it."""
import fractions
import re

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from fastnn import _validate, ops, reference

IMPLEMENTATIONS = [pytest.param(ops, id="ops"), pytest.param(reference, id="reference")]


def names(*arguments):
    """A ``match=`` pattern for a message that names every one of ``arguments`` as a word."""
    return "".join(rf"(?=.*\b{re.escape(a)}\b)" for a in arguments)


class ArrayLike:
    """Not an ndarray, but its ``__array__`` shares memory with the array it wraps."""

    def __init__(self, array):
        self.array = array

    def __array__(self, dtype=None, copy=None):
        return self.array


# --------------------------------------------------------------------------------------------
# gather_rows: out against rows, out's byte order
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wrap", [np.asarray, memoryview], ids=["ndarray", "memoryview"])
def test_gather_rows_out_sharing_memory_with_rows(wrap):
    storage = np.zeros(16, np.int64)
    out = storage.view(np.float64).reshape(4, 4)
    with pytest.raises(ValueError, match=names("out", "rows")):
        ops.gather_rows(np.ones((1, 4)), wrap(storage[:4]), out=out)
    np.testing.assert_array_equal(storage, 0)


def test_gather_rows_out_sharing_memory_with_rows_of_another_dtype():
    # rows gets converted to int64; the check still sees the caller's int32 buffer.
    storage = np.zeros(16, np.int32)
    with pytest.raises(ValueError, match=names("out", "rows")):
        ops.gather_rows(np.ones((1, 2)), storage[:4], out=storage[2:10].view(np.float32).reshape(4, 2))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_gather_rows_byte_swapped_out(impl):
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = np.zeros((2, 2), ">f4")
    with pytest.raises(TypeError, match=names("out")):
        impl.gather_rows(x, np.array([2, 0]), out=out)
    np.testing.assert_array_equal(out, 0)


# --------------------------------------------------------------------------------------------
# Inputs that are not ndarrays but share memory with out
# --------------------------------------------------------------------------------------------

WRAPPERS = [pytest.param(memoryview, id="memoryview"), pytest.param(ArrayLike, id="__array__")]


@pytest.mark.parametrize("wrap", WRAPPERS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_elementwise_input_wrapping_out_partially(impl, wrap):
    storage = np.arange(8.0)
    with pytest.raises(ValueError, match=names("out")):
        impl.relu(wrap(storage[:-1]), out=storage[1:])
    with pytest.raises(ValueError, match=names("out")):
        impl.tanh_backward(np.zeros(7), wrap(storage[:-1]), out=storage[1:])
    with pytest.raises(ValueError, match=names("out")):
        impl.softmax(wrap(storage[:6].reshape(3, 2)), out=storage[2:].reshape(3, 2))
    np.testing.assert_array_equal(storage, np.arange(8.0))


@pytest.mark.parametrize("wrap", WRAPPERS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_elementwise_input_wrapping_out_exactly_runs_in_place(impl, wrap):
    storage = np.linspace(-1, 1, 8)
    want = np.maximum(storage, 0)
    got = impl.relu(wrap(storage), out=storage)
    assert got is storage
    np.testing.assert_array_equal(storage, want)


@pytest.mark.parametrize("wrap", WRAPPERS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_linear_input_wrapping_out(impl, wrap):
    x = np.random.default_rng(0).standard_normal((4, 4))
    with pytest.raises(ValueError, match=names("out", "x")):
        impl.linear_forward(wrap(x), 2 * np.eye(4), None, out=x)
    w = np.eye(4)
    with pytest.raises(ValueError, match=names("dw_out", "w")):
        impl.linear_backward(np.ones((2, 4)), wrap(w), np.ones((2, 4)), dw_out=w)


def test_linear_forward_torch_tensor_sharing_out():
    torch = pytest.importorskip("torch")
    t = torch.ones((3, 3), dtype=torch.float64)
    for impl in (ops, reference):
        with pytest.raises(ValueError, match=names("out", "x")):
            impl.linear_forward(t, np.eye(3), None, out=t.numpy())


@pytest.mark.parametrize("wrap", WRAPPERS)
def test_optimizer_state_sharing_a_wrapped_grad(wrap):
    storage = np.zeros(6)
    with pytest.raises(ValueError, match=names("velocity", "grad")):
        ops.sgd_update(np.ones(3), wrap(storage[:3]), storage[1:4], momentum=0.9)
    with pytest.raises(ValueError, match=names("exp_avg", "grad")):
        ops.adam_update(np.ones(3), wrap(storage[:3]), storage[2:5], np.zeros(3), 1)
    np.testing.assert_array_equal(storage, 0)


# --------------------------------------------------------------------------------------------
# The losses: grad_out against the caller's targets, labels and weights (copied or not)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_loss_grad_out_sharing_memory_with_copied_targets(impl):
    # targets strided (so the op copies them), interleaved with grad_out's elements.
    storage = np.zeros(12)
    grad_out = storage[:6].reshape(3, 2)
    targets = storage[::2].reshape(3, 2)
    for op in (impl.mean_squared_error, impl.sigmoid_cross_entropy):
        with pytest.raises(ValueError, match=names("grad_out", "targets")):
            op(np.ones((3, 2)), targets, grad_out=grad_out)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_loss_grad_out_sharing_memory_with_copied_weights(impl):
    storage = np.ones(6)
    grad_out = storage.reshape(3, 2)
    weights = storage[::2]  # strided: the op copies (and scales) them
    with pytest.raises(ValueError, match=names("grad_out", "sample_weight")):
        impl.mean_squared_error(np.ones((3, 2)), np.zeros((3, 2)), grad_out=grad_out,
                                sample_weight=weights)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_loss_grad_out_sharing_memory_with_labels_of_another_dtype(impl):
    storage = np.zeros(12, np.int32)
    labels = storage[:3]  # converted to int64 by the op
    grad_out = storage[2:10].view(np.float32).reshape(4, 2)[:3]
    with pytest.raises(ValueError, match=names("grad_out", "labels")):
        impl.softmax_cross_entropy(np.ones((3, 2), np.float32), labels, grad_out=grad_out)


# --------------------------------------------------------------------------------------------
# Optimizers: grad against param, velocity whenever given, 0-d params, real numbers
# --------------------------------------------------------------------------------------------

OPTIMIZER_OPS = ["sgd_update", "adam_update", "adamw_update"]


def state(name, shape):
    """The arguments after grad of a step of the update op ``name`` from zero state."""
    return () if name == "sgd_update" else (np.zeros(shape), np.zeros(shape), 1)


@pytest.mark.parametrize("name", OPTIMIZER_OPS)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_update_grad_partially_overlapping_param(impl, name):
    storage = np.arange(1.0, 41.0)
    update = getattr(impl, name)
    with pytest.raises(ValueError, match=names("param", "grad")):
        update(storage[1:33], storage[:32], *state(name, 32))
    with pytest.raises(ValueError, match=names("param", "grad")):
        update(storage[:32], memoryview(storage)[1:33], *state(name, 32))
    np.testing.assert_array_equal(storage, np.arange(1.0, 41.0))


@pytest.mark.parametrize("name", OPTIMIZER_OPS)
def test_update_with_grad_being_param_matches_the_twin(name):
    param, twin = np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)
    getattr(ops, name)(param, param, *state(name, 5))
    getattr(reference, name)(twin, twin, *state(name, 5))
    assert not np.array_equal(param, np.linspace(-1, 1, 5))
    np.testing.assert_allclose(param, twin, rtol=1e-12)


@pytest.mark.parametrize("velocity, error", [("abc", TypeError), (np.ones(4), ValueError),
                                             (np.ones(3, np.float32), TypeError)],
                         ids=["str", "shape", "dtype"])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sgd_velocity_checked_without_momentum(impl, velocity, error):
    param = np.ones(3)
    with pytest.raises(error, match=names("velocity")):
        impl.sgd_update(param, np.ones(3), velocity, lr=0.5)
    np.testing.assert_array_equal(param, 1)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_sgd_velocity_sharing_param_without_momentum(impl):
    param = np.ones(3)
    with pytest.raises(ValueError, match=names("velocity", "param")):
        impl.sgd_update(param, np.ones(3), param, lr=0.5)


@pytest.mark.parametrize("name", OPTIMIZER_OPS)
def test_update_of_a_0d_param_matches_the_twin(name):
    param, twin = np.array(0.5), np.array(0.5)
    getattr(ops, name)(param, np.array(0.25), *state(name, ()))
    getattr(reference, name)(twin, np.array(0.25), *state(name, ()))
    assert param.shape == () and param != 0.5
    np.testing.assert_allclose(param, twin, rtol=1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_update_of_a_0d_param_with_a_1d_grad_names_grad(impl):
    with pytest.raises(ValueError, match=names("grad")):
        impl.sgd_update(np.array(1.0), np.ones(1))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_fraction_hyper_parameters(impl):
    param = np.ones(3)
    impl.sgd_update(param, np.ones(3), lr=fractions.Fraction(1, 10))
    np.testing.assert_allclose(param, 0.9)
    out = impl.gather_rows(np.ones((2, 2)), [1], scale=fractions.Fraction(1, 4))
    np.testing.assert_allclose(out, 0.25)


@pytest.mark.parametrize("call, argument", [
    (lambda impl, big: impl.sgd_update(np.ones(3), np.ones(3), lr=big), "lr"),
    (lambda impl, big: impl.sgd_update(np.ones(3), np.ones(3), np.zeros(3), momentum=big), "momentum"),
    (lambda impl, big: impl.adam_update(np.ones(3), np.ones(3), np.zeros(3), np.zeros(3), 1, eps=big),
     "eps"),
    (lambda impl, big: impl.adamw_update(np.ones(3), np.ones(3), np.zeros(3), np.zeros(3), 1,
                                         beta1=-big), "beta1"),
    (lambda impl, big: impl.gather_rows(np.ones((2, 2)), [0], scale=big), "scale"),
    (lambda impl, big: impl.gather_rows(np.ones((2, 2)), [0], shift=fractions.Fraction(big)), "shift"),
], ids=["lr", "momentum", "eps", "beta1", "scale", "shift"])
@pytest.mark.parametrize("big", [10**400, 10**5000], ids=["1e400", "1e5000"])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_integers_beyond_float_range(impl, call, argument, big):
    with pytest.raises(ValueError, match=names(argument)):
        call(impl, big)


# --------------------------------------------------------------------------------------------
# Overlap means shared elements, not overlapping bounds
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_disjoint_out_inside_an_inputs_bounds(impl):
    big = np.arange(70.0).reshape(5, 14)
    w = big[:, :7]
    want = np.ones((1, 5)) @ w
    out = impl.linear_forward(np.ones((1, 5)), w, None, out=big[2:3, 7:14])
    np.testing.assert_array_equal(out, want)
    storage = np.linspace(-1, 1, 10)
    x = storage[0:10:9]
    want = np.tanh(x)
    np.testing.assert_allclose(impl.tanh(x, out=storage[3:5]), want, rtol=1e-15)


def test_undecided_overlap_is_refused(monkeypatch):
    # out is disjoint from w's elements, which numpy proves with an effort of 2 but not of 1.
    storage = np.zeros(400)
    w = as_strided(storage, (4, 6), (54 * 8, 39 * 8))
    out = storage[255:261].reshape(1, 6)
    ops.linear_forward(np.ones((1, 4)), w, None, out=out)
    monkeypatch.setattr(_validate, "SHARES_MEMORY_MAX_WORK", 1)
    with pytest.raises(ValueError, match=names("out", "w")):
        ops.linear_forward(np.ones((1, 4)), w, None, out=out)
