"""Training end to end: accuracy, determinism, validation, early stopping, callbacks, divergence."""
import functools
import re

import numpy as np
import pytest

import synthetic
from fastnn import _training
from fastnn.errors import TrainingDivergedError
from fastnn.history import EarlyStopping, History
from fastnn.layers import Dropout, Linear, ReLU, Sigmoid, Tanh
from fastnn.losses import MSE, BinaryCrossEntropy
from fastnn.network import Network
from fastnn.optim import SGD, Adam
from fastnn.schedules import StepLR

try:
    from fastnn import get_num_threads, set_num_threads
except ImportError:  # the top-level package does not export them yet
    set_num_threads = get_num_threads = None


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-identical results need a fixed thread count; one thread also keeps timings steady."""
    if set_num_threads is None:
        yield
        return
    previous = get_num_threads()
    set_num_threads(1)
    try:
        yield
    finally:
        set_num_threads(previous)


blobs = functools.partial(synthetic.blobs, n=600, f=20)


def mlp(seed=0, **kwargs):
    return Network([Linear(20, 16), Tanh(), Linear(16, 3)], seed=seed, **kwargs)


# -- learning ---------------------------------------------------------------------------------

def test_separable_data_is_learned():
    X_all, y_all = blobs(n=900)
    X, y, Xt, yt = X_all[:600], y_all[:600], X_all[600:], y_all[600:]
    net = mlp()
    history = net.fit(X, y, epochs=5, batch_size=32, progress=False, seed=0)
    assert history.train_loss[-1] < history.train_loss[0] / 3
    assert history.train_accuracy[-1] >= 0.97
    assert net.evaluate(Xt, yt)[1] >= 0.95


def test_logistic_regression_with_bce():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 5))
    y = (X @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]) > 0).astype(int)
    net = Network([Linear(5, 1)], loss=BinaryCrossEntropy(), dtype="float64", seed=0)
    net.fit(X, y, epochs=20, batch_size=20, optimizer=Adam(lr=0.05), progress=False)
    assert net.evaluate(X, y)[1] >= 0.95
    assert np.mean(net.predict(X) == y) >= 0.95


def test_regression_with_mse():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 4))
    t = X @ rng.standard_normal((4, 2)) + 0.5
    net = Network([Linear(4, 2)], loss=MSE(), dtype="float64", seed=0)
    history = net.fit(X, t, epochs=30, batch_size=10, optimizer=SGD(lr=0.05), progress=False)
    assert history.train_loss[-1] < 1e-3 * history.train_loss[0]


def test_mnist_subset_reaches_sane_accuracy():
    datasets = pytest.importorskip("fastnn.datasets")
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist()
    net = Network([Linear(784, 128), Sigmoid(), Linear(128, 10)], input_scale=1 / 255, seed=0)
    net.fit(x_train[:2000], y_train[:2000], epochs=8, batch_size=32, progress=False, seed=0)
    loss, acc = net.evaluate(x_test, y_test)
    assert acc >= 0.85, f"test accuracy {acc:.3f} after 8 epochs on 2,000 training images"


# -- determinism ------------------------------------------------------------------------------

def _run(net_seed, fit_seed):
    X, y = blobs()
    net = Network([Linear(20, 16), ReLU(), Dropout(0.2), Linear(16, 3)], seed=net_seed)
    history = net.fit(X, y, epochs=3, batch_size=16, validation_split=0.2, progress=False,
                      seed=fit_seed)
    return net.parameters(), history.as_dict()


def test_same_seed_gives_bit_identical_weights():
    a, ha = _run(7, 3)
    b, hb = _run(7, 3)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)
    ha.pop("seconds"), hb.pop("seconds")
    assert ha == hb
    c, _ = _run(7, 4)
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))
    d, _ = _run(8, None)
    e, _ = _run(8, None)  # fit seed derived from the network seed
    for p, q in zip(d, e):
        np.testing.assert_array_equal(p, q)


# -- validation, history, schedules, callbacks ------------------------------------------------

class EpochSpy:
    """An engine that records the rows of each epoch, then trains with the real one."""

    def __init__(self, engine, orders):
        self.engine, self.orders = engine, orders

    def blas_scope_for(self, network, batch_size):
        return self.engine.blas_scope_for(network, batch_size)

    def run_epoch(self, order, *rest):
        self.orders.append(np.array(order))
        return self.engine.run_epoch(order, *rest)


def test_validation_split_holds_rows_out(monkeypatch):
    X, y = blobs(n=1000)
    net = mlp()
    orders = []
    real = _training.make_engine
    monkeypatch.setattr(_training, "make_engine", lambda *a: EpochSpy(real(*a), orders))
    history = net.fit(X, y, epochs=3, validation_split=0.2, progress=False, seed=0)
    assert [len(o) for o in orders] == [800, 800, 800]
    assert all(set(o) == set(orders[0]) for o in orders)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled each epoch
    held_out = np.setdiff1d(np.arange(1000), orders[0])
    assert len(held_out) == 200
    loss, acc = net.evaluate(X[held_out], y[held_out])
    assert history.val_loss[-1] == pytest.approx(loss, rel=1e-6)
    assert history.val_accuracy[-1] == pytest.approx(acc)


def test_validation_data_and_history_fields():
    X, y = blobs()
    Xv, yv = blobs(n=100, seed=0)
    net = mlp()
    history = net.fit(X, y, epochs=4, optimizer=SGD(lr=0.2), validation_data=(Xv, yv),
                      schedule=StepLR(step_size=2, gamma=0.5), progress=False)
    assert isinstance(history, History) and history.epochs == 4
    for name in History.FIELDS:
        values = getattr(history, name)
        assert len(values) == 4 and all(np.isfinite(values)), name
    assert history.lr == [0.2, 0.2, 0.1, 0.1]
    assert all(s > 0 for s in history.seconds)
    assert history.val_loss[-1] == pytest.approx(net.evaluate(Xv, yv)[0], rel=1e-6)
    d = history.as_dict()
    assert d["epochs"] == 4 and d["best_epoch"] == int(np.argmin(history.val_loss)) + 1
    assert d["stopped_early"] is False and d["train_loss"] == history.train_loss
    no_val = mlp().fit(X, y, epochs=2, progress=False)
    assert no_val.val_loss == [] and no_val.val_accuracy == [] and len(no_val.train_loss) == 2
    assert "History(epochs=2" in repr(no_val)


def test_callbacks_called_and_stop_honoured():
    X, y = blobs()
    seen = []

    def callback(epoch_index, logs, network):
        seen.append((epoch_index, sorted(logs), network))
        return "stop" if epoch_index == 1 else None

    net = mlp()
    history = net.fit(X, y, epochs=10, callbacks=[callback], progress=False)
    assert [s[0] for s in seen] == [0, 1]
    assert seen[0][1] == ["epoch", "lr", "seconds", "train_accuracy", "train_loss"]
    assert seen[0][2] is net
    assert history.epochs == 2 and history.stopped_early


def test_early_stopping_restores_best_weights():
    X, y = blobs()
    # Validation labels unrelated to the inputs: validation loss rises as training fits X.
    yv = np.random.default_rng(9).permutation(y)[:200]
    snapshots = []
    net = mlp()
    stopper = EarlyStopping(patience=2)
    history = net.fit(X, y, epochs=30, batch_size=16, validation_data=(X[:200], yv),
                      early_stopping=stopper,
                      callbacks=[lambda e, logs, n: snapshots.append([p.copy() for p in n.parameters()])],
                      progress=False)
    assert history.stopped_early and history.epochs < 30
    best = history.best_epoch
    assert best == stopper.best_epoch == int(np.argmin(history.val_loss)) + 1
    assert best < history.epochs
    for p, q in zip(net.parameters(), snapshots[best - 1]):
        np.testing.assert_array_equal(p, q)
    assert not all(np.array_equal(p, q) for p, q in zip(net.parameters(), snapshots[-1]))


def test_early_stopping_patience_int_and_monitor_checks():
    X, y = blobs()
    history = mlp().fit(X, y, epochs=3, early_stopping=5, progress=False)
    assert history.best_epoch == int(np.argmin(history.train_loss)) + 1
    with pytest.raises(ValueError, match="needs validation"):
        mlp().fit(X, y, early_stopping=EarlyStopping(monitor="val_accuracy"), progress=False)
    with pytest.raises(ValueError, match="monitor"):
        EarlyStopping(monitor="loss")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
def test_a_validation_monitor_is_built_first_and_checked_by_fit(monitor):
    """EarlyStopping(monitor="val_...") is made before fit knows of validation data: fit with a
    validation split watches it; fit without one refuses before changing the network."""
    X, y = blobs()
    stopper = EarlyStopping(patience=2, monitor=monitor)
    assert stopper.monitored == monitor
    history = mlp().fit(X, y, epochs=3, validation_split=0.25, early_stopping=stopper,
                        progress=False)
    values = getattr(history, monitor)
    best = int(np.argmin(values) if monitor == "val_loss" else np.argmax(values)) + 1
    assert history.best_epoch == stopper.best_epoch == best
    net = mlp()
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(ValueError, match=rf"EarlyStopping\(monitor='{monitor}'\) needs validation_data"):
        net.fit(X, y, epochs=2, early_stopping=EarlyStopping(monitor=monitor), progress=False)
    assert all(np.array_equal(p, q) for p, q in zip(net.parameters(), before))


def test_restore_best_weights_takes_true_or_false_only():
    with pytest.raises(TypeError, match="restore_best_weights: expected True or False, got 'no'"):
        EarlyStopping(restore_best_weights="no")
    assert EarlyStopping(restore_best_weights=np.bool_(False)).restore_best_weights is False


def test_a_callback_returning_anything_but_stop_is_ignored():
    """Only the string "stop" stops; an array (whose == is elementwise), None or a number does not."""
    X, y = blobs(n=100)
    returns = iter([np.arange(3), None, 0, "go on", "stop"])
    history = mlp().fit(X, y, epochs=8, callbacks=[lambda e, logs, n: next(returns)], progress=False)
    assert history.epochs == 5 and history.stopped_early


@pytest.mark.parametrize("seed, error", [(-1, ValueError), ("a", TypeError), (1.5, TypeError),
                                         (True, TypeError)])
def test_a_linear_layer_names_a_bad_seed(seed, error):
    with pytest.raises(error, match="seed: expected None or a non-negative integer"):
        Linear(4, 2, seed=seed)


def test_progress_bar(capsys):
    X, y = blobs(n=100)
    mlp().fit(X, y, epochs=2, batch_size=10, progress=True)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "10/10" in err and "loss=" in err


# -- the optimizer fit uses by default --------------------------------------------------------

def test_a_fresh_network_fits_with_sgd_and_momentum_by_default():
    X, y = blobs(n=100)
    net = mlp()
    net.fit(X, y, epochs=1, batch_size=10, progress=False)
    opt = net.optimizer
    assert type(opt) is SGD
    assert (opt.lr, opt.momentum, opt.nesterov, opt.weight_decay) == (0.1, 0.9, False, 0.0)
    assert opt.steps == 10


def test_a_second_fit_without_an_optimizer_continues_the_first_ones():
    X, y = blobs(n=100)
    straight = mlp()
    straight.fit(X, y, epochs=2, batch_size=10, optimizer=Adam(lr=0.01), shuffle=False,
                 progress=False)
    adam = Adam(lr=0.01)
    net = mlp()
    net.fit(X, y, epochs=1, batch_size=10, optimizer=adam, shuffle=False, progress=False)
    net.fit(X, y, epochs=1, batch_size=10, shuffle=False, progress=False)
    assert net.optimizer is adam and adam.steps == 20 and adam.lr == 0.01
    # The same Adam state (moments and step count) as one fit of two epochs: the same weights.
    for a, b in zip(net.parameters(), straight.parameters()):
        np.testing.assert_array_equal(a, b)
    sgd = SGD(lr=0.05)
    net.fit(X, y, epochs=1, batch_size=10, optimizer=sgd, progress=False)
    assert net.optimizer is sgd  # an optimizer given still replaces it


def test_a_continued_fit_scales_the_same_base_learning_rate():
    """fit(initial_epoch=k) after a scheduled fit continues the schedule from the first fit's
    base lr, a second scheduled fit starts again from it, and an lr set by hand since is the
    new base."""
    X, y = blobs(n=100)
    straight = mlp().fit(X, y, epochs=8, schedule=StepLR(2, 0.5), progress=False)
    net = mlp()
    first = net.fit(X, y, epochs=4, schedule=StepLR(2, 0.5), progress=False)
    rest = net.fit(X, y, epochs=8, initial_epoch=4, schedule=StepLR(2, 0.5), progress=False)
    assert first.history["lr"] + rest.history["lr"] == straight.history["lr"]
    again = net.fit(X, y, epochs=2, schedule=StepLR(1, 0.5), progress=False)
    assert again.history["lr"] == [0.1, 0.05]
    net.optimizer.lr = 0.01
    by_hand = net.fit(X, y, epochs=2, schedule=StepLR(1, 0.5), progress=False)
    assert by_hand.history["lr"] == [0.01, 0.005]


@pytest.mark.parametrize("value", [42, "adam"])
def test_a_network_optimizer_that_is_not_one_is_named(value):
    X, y = blobs(n=100)
    net = mlp()
    net.optimizer = value
    with pytest.raises(TypeError, match=r"^net\.optimizer: expected an Optimizer"):
        net.fit(X, y, epochs=1, progress=False)


# -- divergence -------------------------------------------------------------------------------

@pytest.mark.parametrize("layers, loss", [
    (lambda: [Linear(20, 32), ReLU(), Linear(32, 3)], None),
    (lambda: [Linear(20, 32), Sigmoid(), Linear(32, 3)], MSE()),
], ids=["relu-softmax-ce", "sigmoid-mse"])
def test_divergence_raises_and_keeps_finite_weights(layers, loss):
    X, y = blobs(n=512)
    net = Network(layers(), loss=loss, seed=0)
    with pytest.raises(TrainingDivergedError) as info:
        net.fit(X, y, epochs=5, optimizer=SGD(lr=1e3), progress=False, seed=0)
    err = info.value
    assert isinstance(err, ValueError)
    assert re.search(rf"epoch {err.epoch}, step {err.step}\b", str(err))
    assert err.epoch >= 1 and err.step >= 1
    assert "lower learning rate" in str(err) and "lr=1000" in str(err)
    assert all(np.isfinite(p).all() for p in net.parameters())


def test_divergence_keeps_the_weights_from_before_the_failing_step(monkeypatch):
    X, y = blobs(n=512)
    net = Network([Linear(20, 32), ReLU(), Linear(32, 3)], seed=0)
    before = []
    real_step = _training.LayerEngine.step

    def recording_step(*args):
        before[:] = [p.copy() for p in net.parameters()]
        return real_step(*args)

    monkeypatch.setattr(_training.LayerEngine, "step", recording_step)
    with pytest.raises(TrainingDivergedError):
        net.fit(X, y, epochs=5, optimizer=SGD(lr=1e3), progress=False, seed=0, engine="layers")
    assert before, "no step was recorded"
    for p, q in zip(net.parameters(), before):
        np.testing.assert_array_equal(p, q)
