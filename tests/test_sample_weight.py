"""Per-sample weights: the losses' weighted means, fit / evaluate with sample_weight."""
import numpy as np
import pytest

import fastnn
from fastnn import MSE, SGD, BinaryCrossEntropy, Linear, Network, ReLU, SoftmaxCrossEntropy, Tanh
from fastnn.testing import check_grad

from synthetic import blobs

N, K = 9, 3


def loss_case(name, rng):
    """(loss, raw targets) for N rows and K outputs."""
    if name == "softmax_ce":
        return SoftmaxCrossEntropy(), rng.integers(0, K, N)
    if name == "bce":
        return BinaryCrossEntropy(), rng.integers(0, 2, (N, K))
    return MSE(), rng.standard_normal((N, K))


def row_losses(name, z, y):
    """Each row's loss l_i computed directly with NumPy (float64)."""
    if name == "softmax_ce":
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -log_p[np.arange(len(y)), y]
    if name == "bce":
        return (np.logaddexp(0, z) - y * z).sum(axis=1)
    return ((z - y) ** 2).mean(axis=1)


LOSSES = ["softmax_ce", "bce", "mse"]


@pytest.mark.parametrize("name", LOSSES)
def test_weighted_loss_is_the_weighted_mean_of_the_row_losses(name):
    rng = np.random.default_rng(1)
    loss, y = loss_case(name, rng)
    z = rng.standard_normal((N, K)) * 2
    w = rng.random(N) * 3
    w[2] = 0.0
    expected = np.dot(w, row_losses(name, z, y)) / w.sum()
    assert loss.forward(z, y, sample_weight=w) == pytest.approx(expected, rel=1e-12)
    # No weights and equal weights: the plain mean.
    plain = row_losses(name, z, y).mean()
    assert loss.forward(z, y) == pytest.approx(plain, rel=1e-12)
    assert loss.forward(z, y, sample_weight=np.full(N, 7.0)) == pytest.approx(plain, rel=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_weighted_gradient_matches_finite_differences(name):
    rng = np.random.default_rng(2)
    loss, y = loss_case(name, rng)
    z = rng.standard_normal((N, K))
    w = rng.random(N) * 2
    w[0] = 0.0
    grad = loss.backward(z, y, sample_weight=w)
    assert np.all(grad[0] == 0)  # a row of weight 0 has no gradient
    check_grad(lambda _: loss.forward(z, y, sample_weight=w), z, grad, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("name", LOSSES)
def test_batch_of_zero_weight_has_zero_loss_and_gradient(name):
    rng = np.random.default_rng(3)
    loss, y = loss_case(name, rng)
    z = rng.standard_normal((N, K))
    prepared = loss.prepare_targets(y, K, z.dtype)
    value, grad = loss.loss_and_grad(z, prepared, sample_weight=np.zeros(N))
    assert value == 0.0 and not grad.any()


def make_net(loss=None, k=3, f=6, dtype="float64", seed=0):
    return Network([Linear(f, 8), Tanh(), Linear(8, k)], loss=loss, dtype=dtype, seed=seed)


def full_batch_fit(net, X, y, **kwargs):
    return net.fit(X, y, epochs=5, batch_size=len(X), optimizer=SGD(lr=0.1, momentum=0.9),
                   shuffle=False, progress=False, seed=0, engine="layers", **kwargs)


@pytest.mark.parametrize("name", LOSSES)
def test_weight_two_equals_the_row_given_twice(name):
    """Full-batch training: a row of weight 2 and the same row present twice give the same
    weights, bit for bit (float64)."""
    rng = np.random.default_rng(4)
    n = 7
    X = rng.standard_normal((n, 6))
    y = {"softmax_ce": rng.integers(0, 3, n), "bce": rng.integers(0, 2, (n, 3)),
         "mse": rng.standard_normal((n, 3))}[name]
    loss_type = {"softmax_ce": SoftmaxCrossEntropy, "bce": BinaryCrossEntropy, "mse": MSE}[name]
    w = np.ones(n)
    w[0] = 2.0
    weighted = make_net(loss_type())
    h1 = full_batch_fit(weighted, X, y, sample_weight=w)
    twice = make_net(loss_type())
    h2 = full_batch_fit(twice, np.concatenate([X[:1], X]), np.concatenate([y[:1], y]))
    for p, q in zip(weighted.parameters(), twice.parameters()):
        np.testing.assert_array_equal(p, q)
    assert h1.train_loss == pytest.approx(h2.train_loss, rel=1e-15)


def test_weights_change_what_is_learned():
    """Rows of class 0 weighted 0: the network no longer learns class 0."""
    X, y = blobs(600, 6, k=3, seed=5)
    w = np.where(y == 0, 0.0, 1.0)
    net = make_net(dtype="float32", seed=1)
    net.fit(X, y, epochs=10, progress=False, seed=0, sample_weight=w)
    pred = net.predict(X)
    assert (pred[y != 0] == y[y != 0]).mean() > 0.95
    assert (pred[y == 0] == 0).mean() < 0.1


def test_train_loss_is_the_weighted_mean_over_the_epoch():
    X, y = blobs(64, 6, seed=6)
    w = np.random.default_rng(6).random(64)
    net = make_net()
    h = net.fit(X, y, epochs=1, batch_size=64, optimizer=SGD(lr=0.0), progress=False, seed=0,
                sample_weight=w)
    assert h.train_loss[0] == pytest.approx(net.evaluate(X, y, sample_weight=w)[0], rel=1e-12)
    assert net.evaluate(X, y, sample_weight=w)[0] != pytest.approx(net.evaluate(X, y)[0])


def test_validation_split_keeps_the_weights_of_the_held_out_rows():
    X, y = blobs(200, 6, seed=7)
    w = np.random.default_rng(7).random(200) + 0.1
    net = make_net()
    seen = {}

    def record(epoch, logs, network):
        seen["val_loss"] = logs["val_loss"]
        seen["weights"] = [p.copy() for p in network.parameters()]

    net.fit(X, y, epochs=1, validation_split=0.25, progress=False, seed=3, sample_weight=w,
            callbacks=record)
    # The held-out rows: the first 50 of the split generator's permutation.
    held = np.sort(np.random.default_rng(3).permutation(200)[:50])
    expected = net.evaluate(X[held], y[held], sample_weight=w[held])[0]
    assert seen["val_loss"] == pytest.approx(expected, rel=1e-12)
    assert seen["val_loss"] != pytest.approx(net.evaluate(X[held], y[held])[0], rel=1e-6)


def test_validation_data_triple_carries_weights():
    X, y = blobs(120, 6, seed=8)
    w = np.random.default_rng(8).random(40) + 0.1
    net = make_net()
    h = net.fit(X[:80], y[:80], epochs=1, validation_data=(X[80:], y[80:], w), progress=False,
                seed=0)
    assert h.val_loss[0] == pytest.approx(net.evaluate(X[80:], y[80:], sample_weight=w)[0],
                                          rel=1e-12)


def test_early_stopping_follows_the_weighted_validation_loss():
    X, y = blobs(300, 6, seed=9)
    w = np.random.default_rng(9).random(300) + 0.05
    net = make_net(seed=2)
    h = net.fit(X, y, epochs=6, optimizer=SGD(lr=0.5, momentum=0.9), validation_split=0.3,
                early_stopping=fastnn.EarlyStopping(patience=2), progress=False, seed=1,
                sample_weight=w)
    held = np.sort(np.random.default_rng(1).permutation(300)[:90])
    assert h.best_epoch == int(np.argmin(h.val_loss)) + 1
    # The restored weights are those of the least weighted validation loss.
    restored = net.evaluate(X[held], y[held], sample_weight=w[held])[0]
    assert restored == pytest.approx(min(h.val_loss), rel=1e-12)


@pytest.mark.parametrize("weights, message", [
    (np.ones(5), r"sample_weight: expected shape \(40,\)"),
    (np.ones((40, 1)), r"sample_weight: expected shape \(40,\)"),
    (np.r_[np.ones(39), np.nan], r"sample_weight: expected finite weights; sample_weight\[39\] = nan"),
    (np.r_[np.ones(39), np.inf], r"sample_weight: expected finite weights"),
    (np.r_[-1.0, np.ones(39)], r"sample_weight: expected weights >= 0; sample_weight\[0\] = -1"),
    (np.zeros(40), r"sample_weight: all 40 weights are zero"),
    (np.r_[1e300, np.ones(39)], r"not finite in float32"),
])
def test_bad_weights_are_refused(weights, message):
    X, y = blobs(40, 6, seed=10)
    net = make_net(dtype="float32")
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(ValueError, match=message):
        net.fit(X, y, epochs=1, progress=False, sample_weight=weights)
    with pytest.raises(ValueError, match=message):
        net.evaluate(X, y, sample_weight=weights)
    for p, q in zip(net.parameters(), before):
        np.testing.assert_array_equal(p, q)


def test_non_real_weights_are_a_type_error():
    X, y = blobs(10, 6, seed=11)
    with pytest.raises(TypeError, match="sample_weight: expected real weights, got dtype str32"):
        make_net().fit(X, y, progress=False, sample_weight=np.array(list("abcdefghij")))


def test_a_split_that_leaves_only_zero_weights_is_refused():
    X, y = blobs(10, 6, seed=12)
    w = np.zeros(10)
    w[np.random.default_rng(0).permutation(10)[:2]] = 1.0  # only the two held-out rows count
    with pytest.raises(ValueError, match="sample_weight: the 8 training rows drawn by "
                                         "validation_split=0.2 all have weight 0"):
        make_net().fit(X, y, validation_split=0.2, progress=False, seed=0, sample_weight=w)


def test_weights_of_ones_change_nothing():
    X, y = blobs(100, 6, seed=13)
    a, b = make_net(), make_net()
    ha = a.fit(X, y, epochs=2, progress=False, seed=0, engine="layers")
    hb = b.fit(X, y, epochs=2, progress=False, seed=0, engine="layers", sample_weight=np.ones(100))
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)
    assert hb.train_loss == pytest.approx(ha.train_loss, rel=1e-12)


def test_regression_with_weights_fits_the_heavy_rows():
    """MSE: two conflicting targets for the same inputs; the weights decide the fit."""
    rng = np.random.default_rng(14)
    X = rng.standard_normal((200, 3))
    X = np.concatenate([X, X])
    y = np.concatenate([np.ones(200), -np.ones(200)])
    w = np.concatenate([np.full(200, 3.0), np.ones(200)])
    net = Network([Linear(3, 8), ReLU(), Linear(8, 1)], loss=MSE(), dtype="float64", seed=0)
    net.fit(X, y, epochs=150, batch_size=400, optimizer=SGD(lr=0.1, momentum=0.9), progress=False,
            seed=0, sample_weight=w)
    # The weighted least-squares answer is (3*1 + 1*(-1)) / 4 = 0.5 everywhere (0 unweighted).
    np.testing.assert_allclose(net.predict(X[:200])[:, 0], 0.5, atol=0.05)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_regression_with_mse_reaches_a_sane_r2(weighted):
    """Two smooth targets of 4 inputs; held-out R^2 of each output."""
    rng = np.random.default_rng(15)
    X = rng.uniform(-2, 2, (1500, 4)).astype(np.float32)
    Y = np.stack([np.sin(X[:, 0]) + 0.5 * X[:, 1], X[:, 2] * X[:, 3] / 2], axis=1)
    Y += rng.normal(0, 0.05, Y.shape)
    w = rng.uniform(0.2, 3.0, 1200) if weighted else None
    net = Network([Linear(4, 32), Tanh(), Linear(32, 2)], loss=MSE(), seed=0)
    net.fit(X[:1200], Y[:1200], epochs=40, optimizer=fastnn.Adam(lr=0.01), progress=False,
            seed=0, sample_weight=w)
    pred = net.predict(X[1200:])
    truth = Y[1200:]
    r2 = 1 - ((pred - truth) ** 2).sum(axis=0) / ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    assert r2.min() > 0.95, r2
