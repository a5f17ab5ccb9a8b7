"""What users of Keras and PyTorch reach for, and the mistakes the API must catch: net(x),
optimizers by name, learning_rate=, History.history, fit(verbose=), one-hot targets, layers
shared between networks, pickles without working buffers, and the exploding-loss warning."""
import pickle
import warnings

import numpy as np
import pytest

import fastnn
from fastnn.errors import TrainingUnstableWarning
from synthetic import blobs


def _net(dtype="float32", seed=0):
    return fastnn.Network([fastnn.Linear(8, 16), fastnn.ReLU(), fastnn.Linear(16, 3)], dtype=dtype, seed=seed)


def _data(n=300):
    return blobs(n, 8, k=3, seed=1)


def test_calling_the_network_is_its_forward_pass():
    net = _net()
    X, _ = _data()
    np.testing.assert_array_equal(net(X[:5]), net.forward(X[:5]))


@pytest.mark.parametrize("name, cls", [("adam", fastnn.Adam), ("SGD", fastnn.SGD)])
def test_optimizers_by_name(name, cls):
    net = _net()
    X, y = _data()
    net.fit(X, y, epochs=1, optimizer=name, progress=False, seed=0)
    assert type(net.optimizer) is cls
    assert net.optimizer.get_config() == cls().get_config()


def test_unknown_optimizer_name_is_refused_with_the_choices():
    net = _net()
    X, y = _data()
    with pytest.raises(ValueError, match="'sgd', 'adam'.*'rmsprop'"):
        net.fit(X, y, epochs=1, optimizer="rmsprop", progress=False)
    with pytest.raises(TypeError, match="optimizer"):
        net.fit(X, y, epochs=1, optimizer=3, progress=False)


@pytest.mark.parametrize("cls", [fastnn.SGD, fastnn.Adam])
def test_learning_rate_is_accepted_as_the_name_of_lr(cls):
    assert cls(learning_rate=0.05).lr == 0.05
    with pytest.raises(TypeError, match="not both"):
        cls(lr=0.2, learning_rate=0.05)
    with pytest.raises(ValueError, match="lr"):
        cls(learning_rate=-1.0)


def test_history_history_is_a_dict_of_lists_under_keras_names():
    net = _net()
    X, y = _data()
    h = net.fit(X, y, epochs=3, validation_split=0.2, progress=False, seed=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert h.history["loss"] == h.train_loss and len(h.history["val_accuracy"]) == 3
    h = _net().fit(X, y, epochs=2, progress=False, seed=0)
    assert set(h.history) == {"loss", "accuracy", "lr"}


def test_verbose_zero_is_silent_and_two_prints_a_line_per_epoch(capsys):
    X, y = _data()
    _net().fit(X, y, epochs=2, verbose=0, seed=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    _net().fit(X, y, epochs=2, verbose=2, seed=0)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]
    assert all("loss=" in line for line in lines)
    with pytest.raises(ValueError, match="verbose"):
        _net().fit(X, y, epochs=1, verbose=3)


def test_one_hot_targets_for_softmax_cross_entropy_say_how_to_convert():
    X, y = _data()
    with pytest.raises(ValueError, match=r"y.argmax\(axis=1\)"):
        _net().fit(X, np.eye(3)[y], epochs=1, progress=False)


def test_layers_of_another_network_are_copied_and_the_source_keeps_working():
    X, y = _data()
    source = _net(dtype="float64")
    source.fit(X, y, epochs=1, progress=False, seed=0)
    before = [p.copy() for p in source.parameters()]
    second = fastnn.Network(list(source.layers), dtype="float32")
    assert all(a is not b for a, b in zip(second.layers, source.layers))
    assert all(p.dtype == np.float64 for p in source.parameters())
    for p, b in zip(second.parameters(), before):
        np.testing.assert_allclose(p, b, rtol=1e-6)
    second.fit(X, y, epochs=1, progress=False, seed=0)
    for p, b in zip(source.parameters(), before):
        np.testing.assert_array_equal(p, b)
    source.predict_proba(X)
    source.fit(X, y, epochs=1, progress=False, seed=0)


def test_a_pickle_holds_the_model_not_the_working_buffers():
    X, y = _data(3000)
    net = fastnn.Network([fastnn.Linear(8, 256), fastnn.ReLU(), fastnn.Linear(256, 3)], seed=0)
    net.fit(X, y, epochs=1, progress=False, seed=0)  # parameters: 12 KB; predict's buffers: 3 MB
    small = len(pickle.dumps(net))
    net.predict_proba(X)
    assert len(pickle.dumps(net)) < small * 1.1
    copy = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(copy.predict_proba(X), net.predict_proba(X))
    copy.fit(X, y, epochs=1, progress=False, seed=0)


def test_an_exploding_loss_warns_naming_the_learning_rate():
    X, y = _data()
    net = fastnn.Network([fastnn.Linear(8, 64), fastnn.ReLU(), fastnn.Linear(64, 3)], seed=0)
    with pytest.warns(TrainingUnstableWarning, match=r"lr=3\b"):
        try:
            net.fit(X, y, epochs=3, optimizer=fastnn.SGD(lr=3.0), progress=False, seed=0)
        except fastnn.TrainingDivergedError:
            pytest.fail("diverged to non-finite before the warning could be checked")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingUnstableWarning)
        _net().fit(X, y, epochs=3, progress=False, seed=0)  # a sane run does not warn
