"""The native whole-epoch loop: reproducibility, divergence, and the adaptive thread choice."""
import numpy as np
import pytest

import fastnn
from fastnn._fastpath import ThreadChooser
from fastnn._training import unsupported_reason
from fastnn.errors import TrainingDivergedError


def _data(seed=0, n=600):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, 20), dtype=np.uint8)
    y = (X[:, :5].sum(axis=1) > 5 * 127).astype(np.int64) + 2 * (X[:, 5] > 127)
    return X, y


def _train(threads, seed=3):
    fastnn.set_num_threads(threads)
    net = fastnn.Network([fastnn.Linear(20, 16), fastnn.Tanh(), fastnn.Linear(16, 4)],
                         input_scale=1 / 255, seed=seed)
    X, y = _data()
    net.fit(X, y, epochs=3, batch_size=32, optimizer=fastnn.SGD(lr=0.1, momentum=0.9),
            progress=False, seed=seed)
    return [p.copy() for p in net.parameters()]


@pytest.mark.parametrize("n", [1, 2])
def test_same_seed_and_thread_count_repeat_bit_for_bit(n, threads, four_parts):
    first, second = _train(n), _train(n)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)


def test_one_and_two_threads_agree_to_rounding(threads, four_parts):
    for a, b in zip(_train(1), _train(2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _native_run(kernel_threads, parts):
    """Three epochs straight through _core.TrainingEngine with the work cut into ``parts``."""
    from fastnn._native import core
    rng = np.random.default_rng(5)
    X, y = _data()
    dims = [20, 24, 16, 4]
    w = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32) for a, b in zip(dims, dims[1:])]
    b = [np.zeros(n, np.float32) for n in dims[1:]]
    velocity = [np.zeros_like(a) for pair in zip(w, b) for a in pair]
    engine = core.TrainingEngine(w, b, [1, 2, 0], [0.0] * 3, [0.0] * 3, X, core.LOSS_SOFTMAX_XENT,
                                 y.astype(np.int64), None, 32, "sgd", velocity, None)
    previous = core.get_kernel_threads()
    core.set_kernel_threads(kernel_threads)
    try:
        for epoch in range(3):
            engine.start_epoch(rng.permutation(len(X)).astype(np.int64), 1 / 255, 0.0)
            engine.run(0, -(-len(X) // 32), None, lr=0.1, momentum=0.9, weight_decay=1e-4, n_parts=parts)
    finally:
        core.set_kernel_threads(previous)
    return w + b


@pytest.mark.parametrize("parts", [2, 3])
def test_the_parts_not_the_threads_decide_the_bits(parts):
    one = _native_run(1, parts)
    for threads in range(2, parts + 1):
        for a, b in zip(one, _native_run(threads, parts)):
            assert np.array_equal(a, b)


def test_native_loop_stops_at_a_non_finite_loss():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=600)
    X = (rng.standard_normal((3, 20)) * 3)[y] + rng.standard_normal((600, 20))
    net = fastnn.Network([fastnn.Linear(20, 32), fastnn.ReLU(), fastnn.Linear(32, 3)], seed=0)
    assert unsupported_reason(net, fastnn.SGD(lr=1e3), None) is None
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+, step \d+.*lower learning rate"):
        net.fit(X, y, epochs=5, batch_size=32, optimizer=fastnn.SGD(lr=1e3, momentum=0.9),
                progress=False, seed=0)
    assert all(np.isfinite(p).all() for p in net.parameters())


def _overflowing_net(layer):
    """256-256-256-3 ReLU (float32) whose loss on inputs up to 255 is finite but whose weight
    gradient of Linear ``layer`` (0 or 1) overflows float32, all other gradients finite: tiny
    weights after that layer keep the logits finite, the large ones of the output layer make dz
    huge (the logits differ by class, so dz does not cancel)."""
    net = fastnn.Network([fastnn.Linear(256, 256), fastnn.ReLU(), fastnn.Linear(256, 256), fastnn.ReLU(),
                          fastnn.Linear(256, 3)], seed=0)
    linears = [layer_ for layer_ in net.layers if isinstance(layer_, fastnn.Linear)]
    scales = {0: (1e-30, 10.0), 1: (1e10, 1e-30)}[layer]
    linears[0].W[...] = scales[0]
    linears[1].W[...] = scales[1]
    linears[2].W[...] = 1e33 * np.arange(1, 4, dtype=np.float32)
    return net


@pytest.mark.parametrize("x_dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("layer", [0, 1])
def test_native_loop_stops_at_a_weight_gradient_that_overflows_under_a_finite_loss(layer, x_dtype):
    """Where reading them is cheaper, the loop proves a weight gradient finite from a bound (the
    batch rows times the largest input and the largest dz; X's extremes give the input layer's)
    instead of reading it. Here that bound fails, and the step must still stop, nothing
    applied: for the first layer (whose bound comes from X's extremes, for uint8 X from its
    type) and for the second (whose bound reads its input rows)."""
    rng = np.random.default_rng(0)
    X = rng.integers(1, 256, size=(64, 256)).astype(x_dtype)
    y = rng.integers(0, 2, size=64)  # never the largest logit's class: dz stays large
    net = _overflowing_net(layer)
    loss, _ = net.evaluate(X[:32], y[:32])
    assert np.isfinite(loss)
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 1: the loss or a gradient is not finite"):
        net.fit(X, y, epochs=1, batch_size=32, optimizer=fastnn.SGD(lr=1e-3), shuffle=False,
                progress=False, seed=0, engine="compiled")
    for p, q in zip(net.parameters(), before):
        np.testing.assert_array_equal(p, q)


def test_the_same_layers_with_ordinary_weights_train_on_through_the_bounds():
    """The control of the test above: the same network and data with its initial weights
    trains without a divergence (the bounds hold, so no gradient is read, and the weights move)."""
    rng = np.random.default_rng(0)
    X = rng.integers(1, 256, size=(64, 256)).astype(np.float32)
    y = rng.integers(0, 2, size=64)
    net = fastnn.Network([fastnn.Linear(256, 256), fastnn.ReLU(), fastnn.Linear(256, 256), fastnn.ReLU(),
                          fastnn.Linear(256, 3)], input_scale=1 / 255, seed=0)
    before = [p.copy() for p in net.parameters()]
    net.fit(X, y, epochs=2, batch_size=32, optimizer=fastnn.SGD(lr=0.1), shuffle=False, progress=False,
            seed=0, engine="compiled")
    assert all(np.isfinite(p).all() and not np.array_equal(p, q) for p, q in zip(net.parameters(), before))


def test_pinned_thread_count_is_always_used():
    chooser = ThreadChooser()
    chooser.start(2, pinned=True)
    for _ in range(5):
        assert chooser.next() == (2, False)
        chooser.record(2, 1.0)


def _measure_both(chooser, two, one):
    """Feed the chooser's first probes: a warm-up and a measurement for each count."""
    for expected, seconds in ((2, 1.0), (2, two), (1, 1.0), (1, one)):
        assert chooser.next() == (expected, True)
        chooser.record(expected, seconds)


def test_chooser_measures_both_then_keeps_the_faster():
    chooser = ThreadChooser()
    chooser.start(2, pinned=False)
    _measure_both(chooser, two=10e-6, one=18e-6)  # the 1.0 s warm-ups are not counted
    assert chooser.next() == (2, False)  # two threads measured faster


@pytest.mark.parametrize("one, expected", [(9e-6, 2), (8e-6, 1)], ids=["10%-faster", "25%-faster"])
def test_chooser_leaves_the_configured_count_only_for_a_clear_win(one, expected):
    chooser = ThreadChooser()
    chooser.start(2, pinned=False)
    _measure_both(chooser, two=10e-6, one=one)
    assert chooser.next() == (expected, False)


def test_chooser_falls_back_to_one_thread_when_two_are_slow_and_backs_off():
    chooser = ThreadChooser()
    chooser.start(2, pinned=False)
    _measure_both(chooser, two=5e-3, one=2e-4)  # 2 threads under contention
    assert chooser.next() == (1, False)
    probes, calls = [], 0
    while len(probes) < 3:
        threads, probing = chooser.next()
        if probing:
            probes.append(calls)
            chooser.record(threads, 5e-3)  # the probe of 2 threads loses again
        else:
            assert threads == 1
            chooser.record(threads, 2e-4)
        calls += 1
    gaps = np.diff(probes)
    assert gaps[1] > gaps[0]  # the interval between probes grows


def test_chooser_switches_back_when_the_probe_wins():
    chooser = ThreadChooser()
    chooser.start(2, pinned=False)
    _measure_both(chooser, two=5e-3, one=2e-4)
    while True:
        threads, probing = chooser.next()
        if probing:
            chooser.record(threads, 1e-4)  # contention gone: 2 threads win
            break
        chooser.record(threads, 2e-4)
    assert chooser.next() == (2, False)


def _adam_fit(dtype, paths, weight_decay=1e-3):
    """Train one epoch per entry of ``paths`` ("native" or "python") with one Adam; returns the
    parameters, the epoch losses and the optimizer."""
    X, y = _data()
    net = fastnn.Network([fastnn.Linear(20, 24), fastnn.Tanh(), fastnn.Linear(24, 4)],
                         input_scale=1 / 255, seed=3, dtype=dtype)
    optimizer = fastnn.Adam(lr=0.01, weight_decay=weight_decay)
    losses = []
    for epoch, path in enumerate(paths):
        engine = "compiled" if path == "native" else "layers"
        history = net.fit(X, y, epochs=1, batch_size=32, optimizer=optimizer, seed=epoch,
                          progress=False, engine=engine)
        losses += history.train_loss
    return net.parameters(), losses, optimizer


ADAM_TOLERANCE = {np.float32: {"rtol": 1e-4, "atol": 1e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_adam_on_the_native_loop_matches_the_layer_by_layer_path(dtype, threads):
    native, native_losses, native_opt = _adam_fit(dtype, ["native"] * 2)
    python, python_losses, python_opt = _adam_fit(dtype, ["python"] * 2)
    assert native_opt.steps == python_opt.steps == 2 * 19  # 600 rows in batches of 32, twice
    np.testing.assert_allclose(native_losses, python_losses, **ADAM_TOLERANCE[dtype])
    native_state, python_state = native_opt.state_dict()["state"], python_opt.state_dict()["state"]
    for a, b in zip(native + native_state["exp_avg"] + native_state["exp_avg_sq"],
                    python + python_state["exp_avg"] + python_state["exp_avg_sq"]):
        np.testing.assert_allclose(a, b, **ADAM_TOLERANCE[dtype])


def test_adam_state_carries_over_between_the_two_paths(threads):
    # One epoch natively then one layer by layer (and the reverse) equals two of either: the
    # moments and the step count (Adam's bias correction) are shared.
    mixed, _, opt = _adam_fit(np.float64, ["native", "python"])
    reverse, _, _ = _adam_fit(np.float64, ["python", "native"])
    python, _, _ = _adam_fit(np.float64, ["python", "python"])
    assert opt.steps == 38
    for a, b, c in zip(mixed, reverse, python):
        np.testing.assert_allclose(a, c, **ADAM_TOLERANCE[np.float64])
        np.testing.assert_allclose(b, c, **ADAM_TOLERANCE[np.float64])


def _train_by_layers(threads, seed=3):
    """A network with Dropout, trained on the layer-by-layer path."""
    fastnn.set_num_threads(threads)
    net = fastnn.Network([fastnn.Linear(20, 300), fastnn.ReLU(), fastnn.Dropout(0.2),
                          fastnn.Linear(300, 4)], input_scale=1 / 255, seed=seed)
    X, y = _data(n=2000)
    net.fit(X, y, epochs=2, batch_size=256, optimizer=fastnn.SGD(lr=0.1, momentum=0.9),
            progress=False, seed=seed, engine="layers")
    return [p.copy() for p in net.parameters()]


def test_layer_by_layer_path_gives_the_same_bits_at_any_thread_count(threads):
    # Its elementwise kernels run on the calling thread (fastnn._threads.kernels_on_calling_thread),
    # so no partial sum is split by the thread count; BLAS results do not depend on it either.
    one, many = _train_by_layers(1), _train_by_layers(2)
    for a, b in zip(one, many):
        assert np.array_equal(a, b)


def test_calling_thread_override_stays_on_its_thread():
    import threading

    from fastnn._native import core
    from fastnn._threads import kernels_on_calling_thread

    fastnn.set_num_threads(2)
    seen = {}
    inside = threading.Event()
    release = threading.Event()

    def worker():
        with kernels_on_calling_thread():
            inside.set()
            release.wait(10)
        seen["after"] = core.set_calling_thread_kernel_threads(0)

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(10)
    seen["other thread"] = core.set_calling_thread_kernel_threads(0)  # this thread: no override
    release.set()
    t.join()
    assert seen == {"other thread": 0, "after": 0}
    assert fastnn.get_num_threads() == 2


def test_small_steps_run_in_one_part_and_large_ones_in_four():
    from fastnn._fastpath import N_PARTS, SMALL_STEP_MACS, n_parts
    assert n_parts([8, 100, 1], 200) == 1  # 180,000 multiply-adds per step
    assert n_parts([784, 128, 10], 32) == N_PARTS  # 3.3 million
    just_below = [SMALL_STEP_MACS // 64 - 1, 1]
    assert n_parts(just_below, 64) == 1 and n_parts([SMALL_STEP_MACS // 64, 1], 64) == N_PARTS
