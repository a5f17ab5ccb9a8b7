"""Three implementations of every network the compiled engine trains agree in float64: the
compiled engine (fit(engine="compiled")), the layer path (fit(engine="layers")) and the NumPy
reference network (fastnn.bench.reference_mlp.ReferenceMLP), from the same weights on the same
batches and the same Dropout masks: the same weights and per-epoch losses to 1e-12."""
import numpy as np
import pytest

from fastnn import SGD, Adam, AdamW, Dropout, GELU, LeakyReLU, Linear, Network, ReLU, Tanh
from fastnn.bench.reference_mlp import ReferenceMLP
from fastnn import loss_registry
from fastnn.losses import LOSS_TYPES
from optimizer_cases import OPTIMIZERS

N, F, H, BATCH, EPOCHS = 150, 12, 16, 32, 2  # the last batch of an epoch is short (22 rows)
NET_SEED, FIT_SEED = 5, 11
TOL = {"rtol": 1e-12, "atol": 1e-12}

REFERENCE_OPTIMIZER = {SGD: "sgd", Adam: "adam", AdamW: "adamw"}


class Case:
    """One network: hidden activations (layer factories and what the reference takes), the
    Dropout rate of each Linear's input, the loss, the number of outputs, weighted or not."""

    def __init__(self, loss="cross_entropy", outputs=3, acts=((Tanh, "tanh"),), dropout=None,
                 weighted=False):
        self.loss, self.outputs, self.acts, self.weighted = loss, outputs, acts, weighted
        self.dropout = dropout or [0.0] * (len(acts) + 1)

    def layers(self):
        widths = [F] + [H] * len(self.acts) + [self.outputs]
        layers = []
        for l, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            if self.dropout[l]:
                layers.append(Dropout(self.dropout[l]))
            # Seeded Linears: the network's own generator draws nothing before fit.
            layers.append(Linear(n_in, n_out, init="lecun", dtype="float64", seed=100 + l))
            if l < len(self.acts):
                layers.append(self.acts[l][0]())
        return layers

    def network(self):
        loss = LOSS_TYPES[loss_registry.get(self.loss).loss_class]()
        return Network(self.layers(), loss=loss, dtype="float64", seed=NET_SEED)

    def data(self):
        rng = np.random.default_rng(7)
        X = rng.standard_normal((N, F))
        k = self.outputs
        if self.loss == "cross_entropy":
            y = np.argmax(X[:, :k], axis=1)
        elif self.loss == "bce":
            y = (X[:, :k] + X[:, k:2 * k] > 0).astype(np.float64)
            y = y[:, 0] if k == 1 else y
        else:
            y = 2 * X[:, :k] + np.sin(X[:, k:2 * k])
        w = None
        if self.weighted:
            w = rng.uniform(0, 3, N)
            w[::7] = 0
        return X, y, w


CASES = {
    "cross_entropy": Case(),
    "softmax_weighted": Case(weighted=True),
    "mse": Case("mse", outputs=3),
    "mse_weighted": Case("mse", outputs=3, weighted=True),
    "bce_binary": Case("bce", outputs=1),
    "bce_binary_weighted": Case("bce", outputs=1, weighted=True),
    "bce_multilabel": Case("bce", outputs=4),
    "bce_multilabel_weighted": Case("bce", outputs=4, weighted=True),
    "dropout": Case(dropout=[0.0, 0.2]),
    "input_dropout": Case(acts=((ReLU, "relu"), (Tanh, "tanh")), dropout=[0.1, 0.3, 0.2]),
    "dropout_bce_weighted": Case("bce", outputs=4, dropout=[0.0, 0.2], weighted=True),
    "leaky_relu": Case(acts=((lambda: LeakyReLU(0.2), LeakyReLU(0.2)),)),
    "gelu": Case(acts=((GELU, "gelu"),)),
    "gelu_leaky_relu_dropout_mse": Case("mse", outputs=2, dropout=[0.0, 0.2, 0.0],
                                        acts=((GELU, "gelu"), (LeakyReLU, "leaky_relu"))),
}


def _reference(case, net, optimizer):
    params = [p.copy() for p in net.parameters()]
    return ReferenceMLP(params[0::2], params[1::2], [name for _, name in case.acts] + [None],
                        loss=case.loss, dropout=case.dropout,
                        optimizer=REFERENCE_OPTIMIZER[type(optimizer)], **optimizer.get_config())


def _train_reference(ref, X, y, w, mask_seed=NET_SEED, shuffle=True):
    """Per-epoch losses of the reference on fit's batches: each epoch's row order drawn from
    np.random.default_rng(FIT_SEED) as fit draws it, the masks from a generator in the state
    of Network(seed=mask_seed)'s. Returns (losses, the masks' generator)."""
    order_rng, mask_rng = np.random.default_rng(FIT_SEED), np.random.default_rng(mask_seed)
    losses = []
    for _ in range(EPOCHS):
        order = order_rng.permutation(N) if shuffle else np.arange(N)
        total, _, seen = ref.epoch(X, y, order, BATCH, sample_weight=w, rng=mask_rng)
        assert seen == N
        losses.append(total / (N if w is None else w.sum()))
    return losses, mask_rng


def _train_three(case, opt_name, shuffle=True, data=None):
    X, y, w = case.data() if data is None else data
    fitted = {}
    for engine in ("compiled", "layers"):
        net, optimizer = case.network(), OPTIMIZERS[opt_name]()
        history = net.fit(X, y, epochs=EPOCHS, batch_size=BATCH, optimizer=optimizer, seed=FIT_SEED,
                          sample_weight=w, shuffle=shuffle, progress=False, engine=engine)
        fitted[engine] = net, history.train_loss
    ref = _reference(case, case.network(), OPTIMIZERS[opt_name]())
    ref_losses, mask_rng = _train_reference(ref, X, y, w, shuffle=shuffle)
    return fitted, ref, ref_losses, mask_rng


def _assert_all_agree(fitted, ref, ref_losses, mask_rng):
    (compiled, compiled_losses), (layered, layer_losses) = fitted["compiled"], fitted["layers"]
    assert len(compiled_losses) == len(layer_losses) == EPOCHS
    np.testing.assert_allclose(compiled_losses, layer_losses, **TOL)
    np.testing.assert_allclose(ref_losses, layer_losses, **TOL)
    for c, l, r in zip(compiled.parameters(), layered.parameters(), ref.parameters()):
        np.testing.assert_allclose(c, l, **TOL)
        np.testing.assert_allclose(r, l, **TOL)
    # All three drew the same numbers for their Dropout masks (none without Dropout).
    for net in (compiled, layered):
        assert net.training_state()["network_rng"] == mask_rng.bit_generator.state


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("case_name", list(CASES))
def test_compiled_layers_and_reference_train_the_same(case_name, opt_name):
    _assert_all_agree(*_train_three(CASES[case_name], opt_name))


@pytest.mark.parametrize("case_name", ["softmax_weighted", "bce_multilabel_weighted",
                                       "mse_weighted"])
def test_batches_of_zero_weight_agree(case_name):
    # In order, the first two batches weigh nothing: loss 0, a zero gradient, a step all the
    # same (momentum and weight decay still move the weights).
    case = CASES[case_name]
    X, y, w = case.data()
    w[:2 * BATCH] = 0
    _assert_all_agree(*_train_three(case, "weight_decay", shuffle=False, data=(X, y, w)))


def _largest_gap(ref, net):
    return max(np.abs(a - b).max() for a, b in zip(ref.parameters(), net.parameters()))


def test_the_comparisons_can_fail():
    # Other Dropout masks, or another LeakyReLU slope, give weights far from the network's.
    case = CASES["dropout"]
    fitted, _, _, _ = _train_three(case, "momentum")
    other_masks = _reference(case, case.network(), OPTIMIZERS["momentum"]())
    _train_reference(other_masks, *case.data(), mask_seed=NET_SEED + 1)
    assert _largest_gap(other_masks, fitted["layers"][0]) > 1e-4

    case = CASES["leaky_relu"]
    fitted, _, _, _ = _train_three(case, "sgd")
    params = [p.copy() for p in case.network().parameters()]
    default_slope = ReferenceMLP(params[0::2], params[1::2], ["leaky_relu", None], lr=0.1,
                                 momentum=0.0)
    _train_reference(default_slope, *case.data())
    assert _largest_gap(default_slope, fitted["layers"][0]) > 1e-6


def test_step_is_one_batch_of_epoch_with_weights_and_dropout():
    case = CASES["dropout_bce_weighted"]
    X, y, w = case.data()
    by_step, by_epoch = (_reference(case, case.network(), AdamW(lr=0.01)) for _ in range(2))
    rows = np.arange(20, 52)
    loss, correct = by_step.step(X[rows], y[rows], sample_weight=w[rows],
                                 rng=np.random.default_rng(1))
    total, correct_sum, _ = by_epoch.epoch(X, y, rows, 32, sample_weight=w,
                                           rng=np.random.default_rng(1))
    assert loss * w[rows].sum() == pytest.approx(total, rel=1e-14)
    assert correct == correct_sum
    for a, b in zip(by_step.parameters(), by_epoch.parameters()):
        np.testing.assert_array_equal(a, b)


def _small_reference(**kwargs):
    w0, b0, w1, b1 = np.zeros((4, 3)), np.zeros(3), np.zeros((3, 2)), np.zeros(2)
    return ReferenceMLP([w0, w1], [b0, b1], kwargs.pop("activations", ["relu", None]), **kwargs)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(loss="hinge"), ValueError, "loss: expected one of"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer: expected one of"),
    (dict(dropout=[0.2]), ValueError, r"dropout: expected one rate per Linear \(2\), got 1"),
    (dict(dropout=[0.0, 1.0]), ValueError, r"dropout\[1\]: expected a rate in \[0, 1\)"),
    (dict(activations=["swish", None]), ValueError, r"activations\[0\]: expected one of"),
    (dict(activations=[LeakyReLU(0.2), "gelu"]), ValueError, "last layer"),
])
def test_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        _small_reference(**kwargs)


def test_rejects_a_loss_that_does_not_fit_the_outputs_and_dropout_without_generator():
    w0, b0, w1, b1 = np.zeros((4, 3)), np.zeros(3), np.zeros((3, 1)), np.zeros(1)
    with pytest.raises(ValueError, match="at least 2 outputs"):
        ReferenceMLP([w0, w1], [b0, b1], ["relu", None])
    ref = _small_reference(dropout=[0.5, 0.0])
    with pytest.raises(ValueError, match="rng: expected the np.random.Generator"):
        ref.step(np.zeros((2, 4)), np.zeros(2, np.int64))
