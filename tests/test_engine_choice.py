"""fit(engine="auto" | "compiled" | "layers"): the choice, the refusals and the agreement."""
import numpy as np
import pytest

from fastnn import (MSE, SGD, Adam, BinaryCrossEntropy, Dropout, Linear, Network, ReLU, Sigmoid,
                    Tanh, TrainingDivergedError)
import fastnn
from fastnn import _training
from fastnn._fastpath import CompiledEngine

from synthetic import blobs


def plain(dtype="float64", seed=0):
    return Network([Linear(6, 16), Tanh(), Linear(16, 8), ReLU(), Linear(8, 3)], dtype=dtype,
                   seed=seed)


@pytest.fixture
def native_calls(monkeypatch):
    """The number of calls of the compiled loop made so far (a list growing with each)."""
    calls = []
    real = CompiledEngine.run_epoch
    monkeypatch.setattr(CompiledEngine, "run_epoch", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


@pytest.mark.parametrize("optimizer", [SGD(lr=0.1, momentum=0.9), Adam(lr=0.01)],
                         ids=["sgd", "adam"])
def test_auto_and_layers_give_the_same_weights(optimizer, native_calls):
    X, y = blobs(300, 6, seed=1)
    nets = {}
    for engine in ("auto", "layers"):
        nets[engine] = plain()
        opt = type(optimizer)(**optimizer.get_config())
        h = nets[engine].fit(X, y, epochs=3, batch_size=32, optimizer=opt, progress=False,
                             seed=2, engine=engine)
        if engine == "auto":
            assert native_calls  # auto chose the compiled loop
            native_calls.clear()
            auto_loss = h.train_loss
        else:
            assert not native_calls
            np.testing.assert_allclose(h.train_loss, auto_loss, rtol=1e-12)
    for a, b in zip(nets["auto"].parameters(), nets["layers"].parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert not all(np.array_equal(a, b) for a, b in zip(nets["auto"].parameters(), plain().parameters()))


def test_compiled_is_the_choice_of_auto_when_it_can(native_calls):
    X, y = blobs(64, 6, seed=3)
    plain().fit(X, y, epochs=1, progress=False, seed=0, engine="compiled")
    assert native_calls


class _MyMSE(MSE):
    """A user's loss: a subclass may compute anything, so it trains layer by layer."""


class _MySGD(SGD):
    """A user's optimizer: its step may do anything, so it trains layer by layer."""


UNSUPPORTED = [
    ("two activations", lambda: Network([Linear(6, 8), ReLU(), Sigmoid(), Linear(8, 3)], seed=0),
     {}, r"layers\[2\] \(Sigmoid\) does not follow a Linear"),
    ("dropout last", lambda: Network([Linear(6, 3), Dropout(0.2)], seed=0), {},
     "a Dropout after the last Linear"),
    ("user loss", lambda: Network([Linear(6, 3)], loss=_MyMSE(), seed=0), {},
     "loss _MyMSE has no compiled kernel"),
    ("user optimizer", lambda: plain("float32"), {"optimizer": _MySGD(lr=0.1)},
     "optimizer _MySGD has no compiled step"),
]


@pytest.mark.parametrize("make, kwargs, reason", [u[1:] for u in UNSUPPORTED],
                         ids=[u[0] for u in UNSUPPORTED])
def test_compiled_refuses_with_the_reason(make, kwargs, reason, native_calls):
    X, y = blobs(40, 6, seed=4)
    net = make()
    Y = np.eye(3)[y] if isinstance(net.loss, (MSE, BinaryCrossEntropy)) else y
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(ValueError, match=rf"engine: 'compiled' cannot train this network: .*{reason}"):
        net.fit(X, Y, epochs=1, progress=False, engine="compiled", **kwargs)
    for p, q in zip(net.parameters(), before):
        np.testing.assert_array_equal(p, q)
    assert net.input_range is None and net.optimizer is None  # the refused fit changed nothing
    # auto trains it layer by layer instead.
    net.fit(X, Y, epochs=1, progress=False, engine="auto", **kwargs)
    assert not native_calls
    assert not all(np.array_equal(p, q) for p, q in zip(net.parameters(), before))


def test_compiled_refuses_an_optimizer_without_a_compiled_step():
    class MySGD(SGD):
        pass

    X, y = blobs(40, 6, seed=5)
    with pytest.raises(ValueError, match="optimizer MySGD has no compiled step"):
        plain().fit(X, y, optimizer=MySGD(lr=0.1), progress=False, engine="compiled")


@pytest.mark.parametrize("engine", ["fast", "", None, 1, "Layers"])
def test_unknown_engine_is_refused(engine):
    X, y = blobs(20, 6, seed=6)
    with pytest.raises(ValueError, match=r"engine: expected one of 'auto', 'compiled', 'layers', got"):
        plain().fit(X, y, progress=False, engine=engine)


def test_both_engines_stop_at_the_same_non_finite_step_with_finite_weights():
    X, y = blobs(256, 6, seed=7)
    X = X * 50  # gradients whose squares overflow float32 before the loss does: not a stop
    errors = {}
    for engine in ("compiled", "layers"):
        net = plain("float32")
        with pytest.raises(TrainingDivergedError) as info:
            net.fit(X, y, epochs=20, optimizer=SGD(lr=1e4, momentum=0.9), progress=False, seed=0,
                    engine=engine)
        errors[engine] = info.value
        assert all(np.isfinite(p).all() for p in net.parameters())
    assert (errors["compiled"].epoch, errors["compiled"].step) == \
        (errors["layers"].epoch, errors["layers"].step)
    assert "the loss is not finite" in str(errors["layers"])


def test_layer_engine_checks_the_gradient_too(monkeypatch):
    """A finite loss with a non-finite gradient stops the layer engine before the update."""
    X, y = blobs(64, 6, seed=8)
    net = plain()
    before = [p.copy() for p in net.parameters()]
    real_backward = _training._fused.backward

    def poisoned(ws, grad):
        real_backward(ws, grad)
        net.gradients()[0][0, 0] = np.inf

    monkeypatch.setattr(_training._fused, "backward", poisoned)
    with pytest.raises(TrainingDivergedError,
                       match=r"epoch 1, step 1: the gradient is not finite \(batch loss \d"):
        net.fit(X, y, epochs=1, progress=False, seed=0, engine="layers")
    for p, q in zip(net.parameters(), before):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("engine", ["compiled", "layers"])
def test_both_engines_warn_past_the_explosion_factor_set_on_fastnn_network(engine, monkeypatch):
    X, y = blobs(64, 6, seed=9)
    monkeypatch.setattr("fastnn.network.EXPLOSION_FACTOR", 0.0)  # any loss is "too large"
    with pytest.warns(fastnn.TrainingUnstableWarning, match=r"more than 0x\): the learning rate"):
        plain().fit(X, y, epochs=1, progress=False, seed=0, engine=engine)


@pytest.mark.parametrize("engine", ["layers", "compiled"])
def test_a_finite_loss_with_a_non_finite_gradient_stops_at_that_step(engine):
    """Inputs of zero reach the output through tanh(0) = 0, so the loss is log(3); the weights
    of the last layer are so large that dL/dh overflows float32, and 0 * inf makes dW1 NaN."""
    net = Network([Linear(2, 3), Tanh(), Linear(3, 3)], seed=0)
    first, last = net.layers[0], net.layers[2]
    first.W[...], first.b[...] = 1.0, 0.0
    last.W[...], last.b[...] = np.array([-3e38, 3e38, 3e38], np.float32), 0.0
    X, y = np.zeros((4, 2), np.float32), np.zeros(4, int)
    assert net.evaluate(X, y)[0] == pytest.approx(np.log(3))
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(TrainingDivergedError) as info:
        net.fit(X, y, epochs=1, batch_size=1, optimizer=SGD(lr=0.1), shuffle=False,
                progress=False, seed=0, engine=engine)
    assert (info.value.epoch, info.value.step) == (1, 1)
    for p, q in zip(net.parameters(), before):
        np.testing.assert_array_equal(p, q)
