"""fastnn.ops (compiled) and fastnn.reference (NumPy) expose the same ops, parameter for parameter."""
import inspect

import pytest

from fastnn import activations, loss_registry, ops, reference

CONTRACT_OPS = [name for e in activations.REGISTRY for name in (e.name, e.backward_name)] + [
    e.op for e in loss_registry.REGISTRY] + [
    "softmax", "log_softmax",
    "linear_forward", "linear_backward", "sgd_update", "gather_rows", "adam_update", "adamw_update",
]


def _public_functions(module):
    """Public callables defined in the module itself (not names it imported)."""
    return {
        name for name, obj in vars(module).items()
        if not name.startswith("_") and callable(obj) and not inspect.isclass(obj)
        and getattr(obj, "__module__", None) == module.__name__
    }


def test_reference_all_lists_exactly_the_contract_ops():
    assert sorted(reference.__all__) == sorted(CONTRACT_OPS)
    assert _public_functions(reference) == set(CONTRACT_OPS)


@pytest.mark.parametrize("name", CONTRACT_OPS)
def test_same_signature(name):
    ours = inspect.signature(getattr(reference, name))
    compiled = inspect.signature(getattr(ops, name))
    assert list(compiled.parameters) == list(ours.parameters)
    for parameter_name, expected in ours.parameters.items():
        got = compiled.parameters[parameter_name]
        assert got.kind == expected.kind, parameter_name
        assert got.default == expected.default, parameter_name
        assert type(got.default) is type(expected.default), parameter_name


def test_compiled_side_has_no_op_the_reference_lacks():
    compiled_ops = set(getattr(ops, "__all__", ())) | _public_functions(ops)
    assert compiled_ops - set(reference.__all__) == set()


def test_constants_agree():
    assert reference.SCALED_TANH_A == 1.7159
    assert reference.SCALED_TANH_B == 2 / 3
    assert reference.ACTIVATIONS[:5] == (None, "sigmoid", "relu", "tanh", "scaled_tanh")
    assert reference.ACTIVATIONS == (None,) + tuple(e.name for e in activations.REGISTRY)
    assert ops.SCALED_TANH_A == reference.SCALED_TANH_A
    assert ops.SCALED_TANH_B == reference.SCALED_TANH_B
    assert tuple(ops.ACTIVATIONS) == reference.ACTIVATIONS
