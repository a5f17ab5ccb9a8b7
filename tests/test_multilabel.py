"""BinaryCrossEntropy over K independent outputs (multi-label), and K = 1 as before."""
import numpy as np
import pytest

from fastnn import SGD, Adam, BinaryCrossEntropy, Linear, Network, ReLU

K, F = 4, 8


def multilabel_data(n, seed):
    """X float32 (n, F) and labels (n, K) of 0/1: label k is 1 where a fixed linear function
    of the row is positive (learnable, about half of each label set)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, F)).astype(np.float32)
    A = np.random.default_rng(100).standard_normal((F, K))
    return X, (X @ A > 0).astype(np.int64)


def make_net(dtype="float32", seed=0):
    return Network([Linear(F, 32), ReLU(), Linear(32, K)], loss=BinaryCrossEntropy(),
                   dtype=dtype, seed=seed)


def test_multilabel_training_reaches_a_sane_subset_accuracy():
    X, Y = multilabel_data(1200, 0)
    Xt, Yt = multilabel_data(400, 1)
    net = make_net()
    h = net.fit(X, Y, epochs=15, optimizer=Adam(lr=0.01), progress=False, seed=0)
    assert h.train_loss[-1] < h.train_loss[0] / 3
    pred = net.predict(Xt)
    assert pred.shape == (400, K) and pred.dtype == np.int64
    subset = np.mean(np.all(pred == Yt, axis=1))
    assert subset > 0.8
    assert np.mean(pred == Yt) > 0.93  # per label
    loss, acc = net.evaluate(Xt, Yt)
    assert acc == pytest.approx(subset)
    assert 0 < loss < h.train_loss[0]


def test_predict_proba_is_the_sigmoid_of_each_output():
    X, Y = multilabel_data(50, 2)
    net = make_net(dtype="float64")
    proba = net.predict_proba(X)
    assert proba.shape == (50, K) and proba.dtype == np.float64
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-net.forward(X))), rtol=1e-12)
    np.testing.assert_array_equal(net.predict(X), (proba > 0.5).astype(np.int64))


def test_loss_is_the_sum_over_outputs_averaged_over_rows():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, K))
    y = rng.integers(0, 2, (6, K))
    expected = np.mean(np.sum(np.logaddexp(0, z) - y * z, axis=1))
    loss = BinaryCrossEntropy()
    assert loss.forward(z, y) == pytest.approx(expected, rel=1e-12)
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(loss.backward(z, y), (p - y) / 6, rtol=1e-12)


def test_accuracy_counts_rows_with_every_label_right():
    loss = BinaryCrossEntropy()
    z = np.array([[1.0, -1.0, 2.0], [1.0, 1.0, -2.0], [-1.0, -1.0, -1.0]])
    y = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 0]], dtype=np.float64)
    assert loss.count_correct(z, y) == 2  # the middle row has one label wrong


def test_one_output_keeps_labels_of_shape_n():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((200, 3)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    net = Network([Linear(3, 1)], loss=BinaryCrossEntropy(), seed=0)
    net.fit(X, y, epochs=20, optimizer=SGD(lr=0.5), progress=False, seed=0)
    assert net.predict(X).shape == (200,) and net.predict_proba(X).shape == (200,)
    assert np.mean(net.predict(X) == y) > 0.95
    net.fit(X, y.reshape(-1, 1), epochs=1, progress=False, seed=0)  # (N, 1) is accepted too


@pytest.mark.parametrize("targets, error, message", [
    (np.zeros(10, int), ValueError, r"y: expected 0/1 labels of shape \(N, 4\), one column per "
                                    r"output, got \(10,\)"),
    (np.zeros((10, 3), int), ValueError, r"y: expected 0/1 labels of shape \(N, 4\)"),
    (np.full((10, K), 2), ValueError, r"y: expected 0/1 labels; y\[\(0, 0\)\] = 2 \(40 not 0 or 1\)"),
    (np.full((10, K), "a"), TypeError, "y: expected 0/1 labels, got dtype"),
])
def test_bad_multilabel_targets_are_refused(targets, error, message):
    X, _ = multilabel_data(10, 5)
    with pytest.raises(error, match=message):
        make_net().fit(X, targets, progress=False)


def test_save_and_load_keep_a_multilabel_network(tmp_path):
    import fastnn
    X, Y = multilabel_data(30, 6)
    net = make_net()
    net.fit(X, Y, epochs=1, progress=False, seed=0)
    net.save(tmp_path / "m.npz")
    loaded = fastnn.load(tmp_path / "m.npz")
    assert isinstance(loaded, Network) and loaded.n_outputs == K
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
