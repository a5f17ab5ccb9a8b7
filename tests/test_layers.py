"""Layers, initialisers and losses on their own (the Network is tested in test_network.py)."""
import math

import numpy as np
import pytest

from fastnn.initializers import INITIALIZERS, default_init, init_weights
from fastnn.layers import Dropout, Linear, ReLU, ScaledTanh, Sigmoid, Tanh, layer_from_config
from fastnn.losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from fastnn.network import Network


# -- initialisers -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected_std", [
    ("lecun", 1 / math.sqrt(400)),
    ("he", math.sqrt(2 / 400)),
    ("xavier", math.sqrt(6 / 700) / math.sqrt(3)),
    ("uniform", (1 / math.sqrt(400)) / math.sqrt(3)),
])
def test_init_weights_spread(name, expected_std):
    w = init_weights(name, 400, 300, np.random.default_rng(0), np.float64)
    assert w.shape == (400, 300) and w.dtype == np.float64 and w.flags.c_contiguous
    assert abs(w.std() / expected_std - 1) < 0.02
    assert abs(w.mean()) < 0.05 * expected_std


@pytest.mark.parametrize("name, limit", [("xavier", math.sqrt(6 / 50)), ("uniform", 1 / math.sqrt(30))])
def test_uniform_inits_stay_in_bounds(name, limit):
    w = init_weights(name, 30, 20, np.random.default_rng(1), np.float32)
    assert w.dtype == np.float32
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.9 * limit


def test_init_float32_is_rounded_float64():
    w64 = init_weights("lecun", 10, 5, np.random.default_rng(3), np.float64)
    w32 = init_weights("lecun", 10, 5, np.random.default_rng(3), np.float32)
    np.testing.assert_array_equal(w32, w64.astype(np.float32))


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init.*'glorot'"):
        init_weights("glorot", 3, 4, np.random.default_rng(0), np.float32)
    with pytest.raises(ValueError, match="init"):
        Linear(3, 4, init="glorot")
    assert set(INITIALIZERS) == {"lecun", "he", "xavier", "uniform"}


def test_default_init_follows_activation():
    assert default_init("relu") == "he"
    for act in (None, "sigmoid", "tanh", "scaled_tanh"):
        assert default_init(act) == "lecun"


# -- Linear -----------------------------------------------------------------------------------

def test_linear_shapes_and_parameters():
    layer = Linear(7, 3, init="xavier", seed=0)
    assert layer.W.shape == (7, 3) and layer.b.shape == (3,)
    assert layer.W.dtype == np.float32 and layer.dtype == np.float32
    assert not layer.b.any()
    params = layer.parameters()
    assert params[0] is layer.W and params[1] is layer.b
    assert repr(layer) == "Linear(7 -> 3, init='xavier')"
    assert Linear(784, 128, init="lecun", seed=0).__repr__() == "Linear(784 -> 128, init='lecun')"


def test_linear_same_seed_same_weights():
    a = Linear(5, 4, init="he", seed=11)
    b = Linear(5, 4, init="he", seed=11)
    c = Linear(5, 4, init="he", seed=12)
    np.testing.assert_array_equal(a.W, b.W)
    assert not np.array_equal(a.W, c.W)


def test_linear_forward_matches_numpy():
    layer = Linear(4, 3, init="lecun", dtype="float64", seed=2)
    layer.b[:] = [0.5, -1.0, 2.0]
    x = np.random.default_rng(0).standard_normal((6, 4))
    np.testing.assert_allclose(layer.forward(x), x @ layer.W + layer.b, rtol=1e-12)
    np.testing.assert_allclose(layer.forward(x, activation="tanh"), np.tanh(x @ layer.W + layer.b),
                               rtol=1e-12)


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((0, 3), {}, ValueError, "in_features"),
    ((3, -1), {}, ValueError, "out_features"),
    ((2.5, 3), {}, TypeError, "in_features"),
    ((True, 3), {}, TypeError, "in_features"),
    ((3, 3), {"dtype": "int32"}, TypeError, "dtype"),
    ((3, 3), {"dtype": "float16"}, TypeError, "dtype"),
])
def test_linear_rejects_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Linear(*args, **kwargs)


def test_network_picks_init_from_following_activation():
    relu_first = Linear(50, 40)
    sig_second = Linear(40, 30)
    explicit = Linear(30, 10, init="xavier")
    Network([relu_first, ReLU(), sig_second, Sigmoid(), explicit], seed=0)
    assert relu_first.init_name == "he" and sig_second.init_name == "lecun"
    assert explicit.init_name == "xavier"
    # "he" draws have std sqrt(2/fan_in); check the redraw really used it.
    assert abs(relu_first.W.std() / math.sqrt(2 / 50) - 1) < 0.1


def test_network_seed_controls_init_and_linear_seed_wins():
    nets = [Network([Linear(6, 5), Tanh(), Linear(5, 2)], seed=s) for s in (1, 1, 2)]
    np.testing.assert_array_equal(nets[0].layers[0].W, nets[1].layers[0].W)
    assert not np.array_equal(nets[0].layers[0].W, nets[2].layers[0].W)
    own = [Network([Linear(6, 5, init="lecun", seed=9), Linear(5, 2)], seed=s).layers[0].W for s in (1, 2)]
    np.testing.assert_array_equal(own[0], own[1])
    np.testing.assert_array_equal(own[0], Linear(6, 5, init="lecun", seed=9).W)


def test_network_converts_linear_to_its_dtype():
    layer = Linear(4, 3, init="lecun", seed=0)
    w32 = layer.W.copy()
    net = Network([layer, Sigmoid(), Linear(3, 2)], dtype="float64")
    assert all(p.dtype == np.float64 for p in net.parameters())
    np.testing.assert_array_equal(layer.W, w32.astype(np.float64))


# -- activations and Dropout ------------------------------------------------------------------

@pytest.mark.parametrize("layer, f, df", [
    (Sigmoid(), lambda x: 1 / (1 + np.exp(-x)), lambda y: y * (1 - y)),
    (ReLU(), lambda x: np.maximum(x, 0), lambda y: (y > 0).astype(float)),
    (Tanh(), np.tanh, lambda y: 1 - y * y),
    (ScaledTanh(), lambda x: 1.7159 * np.tanh(2 * x / 3),
     lambda y: 1.7159 * (2 / 3) * (1 - (y / 1.7159) ** 2)),
])
def test_activation_layers(layer, f, df):
    x = np.random.default_rng(0).standard_normal((5, 4)) * 2
    y = layer.forward(x)
    np.testing.assert_allclose(y, f(x), rtol=1e-12, atol=1e-15)
    g = np.random.default_rng(1).standard_normal((5, 4))
    np.testing.assert_allclose(layer.backward(y, g), g * df(y), rtol=1e-10, atol=1e-15)
    assert repr(layer) == f"{type(layer).__name__}()"
    assert layer.parameters() == []


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match="p"):
        Dropout(p)


def test_dropout_repr_and_type_check():
    assert repr(Dropout(0.25)) == "Dropout(p=0.25)"
    with pytest.raises(TypeError, match="p"):
        Dropout("0.5")


def test_layer_from_config_round_trip():
    for layer in (Linear(3, 2, init="he", seed=0), Sigmoid(), Dropout(0.3), ScaledTanh()):
        again = layer_from_config(type(layer).__name__, layer.get_config())
        assert repr(again) == repr(layer)
    with pytest.raises(ValueError, match="unknown layer"):
        layer_from_config("Conv2d", {})


# -- losses -----------------------------------------------------------------------------------

def _logsumexp(z):
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def test_softmax_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((8, 5))
    y = rng.integers(0, 5, 8)
    loss = SoftmaxCrossEntropy()
    expected = np.mean(_logsumexp(z) - z[np.arange(8), y])
    assert loss.forward(z, y) == pytest.approx(expected, rel=1e-12)
    p = np.exp(z - _logsumexp(z)[:, None])
    onehot = np.eye(5)[y]
    np.testing.assert_allclose(loss.backward(z, y), (p - onehot) / 8, rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(loss.predict(z), z.argmax(axis=1))
    np.testing.assert_allclose(loss.predict_proba(z), p, rtol=1e-12)


def test_softmax_cross_entropy_label_checks():
    loss = SoftmaxCrossEntropy()
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"targets\[1\] = 4"):
        loss.forward(z, np.array([0, 4, 1]))
    with pytest.raises(TypeError, match="integer"):
        loss.forward(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="at least 2 outputs"):
        Network([Linear(3, 1)], loss=loss)


def test_binary_cross_entropy_matches_numpy_and_is_stable():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((10, 1)) * 3
    y = rng.integers(0, 2, 10)
    loss = BinaryCrossEntropy()
    p = 1 / (1 + np.exp(-z[:, 0]))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert loss.forward(z, y) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(loss.backward(z, y)[:, 0], (p - y) / 10, rtol=1e-10)
    np.testing.assert_array_equal(loss.predict(z), (p > 0.5).astype(int))
    np.testing.assert_allclose(loss.predict_proba(z), p, rtol=1e-12)
    # Far-out logits: exact asymptotes, no overflow or log(0).
    big = np.array([[800.0], [-800.0]])
    assert loss.forward(big, np.array([0, 1])) == pytest.approx(800.0)
    assert loss.forward(big, np.array([1, 0])) == pytest.approx(0.0, abs=1e-300)
    with pytest.raises(ValueError, match="0/1"):
        loss.forward(z[:3], np.array([0, 2, 1]))
    assert Network([Linear(3, 2)], loss=loss).n_outputs == 2  # multi-label


def test_mse_matches_numpy():
    rng = np.random.default_rng(2)
    out = rng.standard_normal((6, 3))
    t = rng.standard_normal((6, 3))
    loss = MSE()
    assert loss.forward(out, t) == pytest.approx(np.mean((out - t) ** 2), rel=1e-12)
    np.testing.assert_allclose(loss.backward(out, t), 2 * (out - t) / out.size, rtol=1e-12)
    labels = np.array([0, 2, 1, 1, 0, 2])
    assert loss.forward(out, labels) == pytest.approx(np.mean((out - np.eye(3)[labels]) ** 2))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        loss.forward(out, t[:, :2])
    bad = t.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"not finite in float64, the first targets\[\(2, 1\)\] = nan"):
        loss.forward(out, bad)


def test_an_activation_without_a_registry_entry_is_a_type_error():
    from fastnn.layers import Activation

    class Swish(Activation):
        pass

    with pytest.raises(TypeError, match="Swish: an Activation needs an entry of fastnn.activations"):
        Swish()
