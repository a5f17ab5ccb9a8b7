"""Interrupting and resuming training: Network.fit(initial_epoch=, resume=), training_state(),
checkpoints written by the CLI on Ctrl-C / SIGTERM, and `fastnn train --resume`.

The promise: a run interrupted after epoch k and resumed ends with bit-identical weights to a run
that was never interrupted (same seed, same thread count).
"""
import functools
import gzip
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

import fastnn
import synthetic
from fastnn import (EarlyStopping, History, Linear, Network, ReLU, SGD, Adam, CosineLR, Dropout,
                    StepLR, Tanh)
from fastnn._cpulimits import available_cores
from fastnn.serialization import load_checkpoint

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-identical runs need one fixed thread count."""
    previous = fastnn.get_num_threads()
    fastnn.set_num_threads(1)
    yield
    fastnn.set_num_threads(previous)


blobs = functools.partial(synthetic.blobs, n=300, f=10)


def same_parameters(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# -- the Python API ---------------------------------------------------------------------------

RUNS = {
    # native fast path: plain MLP + SGD with momentum
    "native-sgd": dict(layers=lambda: [Linear(10, 16), ReLU(), Linear(16, 3)],
                       optimizer=lambda: SGD(lr=0.1, momentum=0.9), seed=5, early_stopping=None),
    # Python path: dropout draws from the network's generator, Adam has a step count
    "dropout-adam-early-stopping": dict(
        layers=lambda: [Linear(10, 16), ReLU(), Dropout(0.3), Linear(16, 3)],
        optimizer=lambda: Adam(lr=0.02), seed=None, early_stopping=2),
    "nesterov-tanh": dict(layers=lambda: [Linear(10, 12), Tanh(), Linear(12, 3)],
                          optimizer=lambda: SGD(lr=0.05, momentum=0.9, nesterov=True), seed=1,
                          early_stopping=3),
}


def fit_run(run, net, optimizer, epochs=6, **kwargs):
    X, y = blobs()
    return net.fit(X, y, epochs=epochs, batch_size=16, optimizer=optimizer, validation_split=0.2,
                   schedule=CosineLR(epochs), seed=run["seed"], progress=False,
                   early_stopping=run["early_stopping"], **kwargs)


@pytest.mark.parametrize("name", RUNS)
def test_fit_resumed_from_a_saved_checkpoint_matches_the_uninterrupted_run(name, tmp_path):
    run = RUNS[name]
    straight = Network(run["layers"](), seed=3)
    full = fit_run(run, straight, run["optimizer"]())

    path = tmp_path / "ckpt.npz"

    def checkpoint_and_stop(epoch_index, logs, net):
        if epoch_index == 2:
            net.save(path, include_optimizer=True, extra={"state": net.training_state()})
            return "stop"

    fit_run(run, Network(run["layers"](), seed=3), run["optimizer"](),
            callbacks=[checkpoint_and_stop])
    net, optimizer, extra = load_checkpoint(path)
    assert extra["state"]["epoch"] == 3
    rest = fit_run(run, net, optimizer, resume=extra["state"])

    assert same_parameters(net, straight)
    assert rest.initial_epoch == 3
    assert rest.train_loss == full.train_loss[3:]
    assert rest.lr == full.lr[3:]
    assert rest.stopped_early == full.stopped_early


def test_initial_epoch_continues_the_schedule_and_numbering():
    X, y = blobs()
    seen = []
    history = Network([Linear(10, 3)], seed=0).fit(
        X, y, epochs=4, optimizer=SGD(lr=0.8), schedule=StepLR(1, gamma=0.5), initial_epoch=2,
        callbacks=[lambda e, logs, net: seen.append((e, logs["epoch"]))], progress=False)
    assert history.lr == [0.2, 0.1]
    assert seen == [(2, 3), (3, 4)]
    assert history.initial_epoch == 2 and history.epochs == 2


def test_initial_epoch_equal_to_epochs_trains_nothing():
    X, y = blobs()
    net = Network([Linear(10, 3)], seed=0)
    before = [p.copy() for p in net.parameters()]
    history = net.fit(X, y, epochs=3, initial_epoch=3, progress=False)
    assert history.epochs == 0
    assert all(np.array_equal(p, q) for p, q in zip(net.parameters(), before))


def test_training_state_is_json_able_and_captured_per_epoch():
    X, y = blobs()
    net = Network([Linear(10, 8), ReLU(), Dropout(0.2), Linear(8, 3)], seed=0)
    states = []
    net.fit(X, y, epochs=3, seed=7, progress=False,
            callbacks=[lambda e, logs, n: states.append(n.training_state())])
    assert [s["epoch"] for s in states] == [1, 2, 3]
    assert all(s["seed"] == 7 and s["early_stopping"] is None for s in states)
    assert states[0]["network_rng"] != states[1]["network_rng"]  # dropout drew from it
    assert json.loads(json.dumps(states[-1])) == states[-1]
    assert net.training_state() == states[-1]


def test_training_state_before_any_fit():
    with pytest.raises(RuntimeError, match="fit"):
        Network([Linear(2, 2)]).training_state()


def test_a_stopped_state_only_restores_the_best_weights():
    X, y = blobs()
    yv = np.random.default_rng(1).permutation(y)  # validation labels unrelated to X
    net = Network([Linear(10, 16), ReLU(), Linear(16, 3)], seed=0)
    states, weights = [], []

    def record(e, logs, n):
        states.append(n.training_state())
        weights.append([p.copy() for p in n.parameters()])

    history = net.fit(X, y, epochs=30, validation_data=(X, yv), early_stopping=1,
                      optimizer=SGD(lr=0.5), callbacks=[record], progress=False, seed=0)
    assert history.stopped_early and states[-1]["stopped"]
    best = states[-1]["early_stopping"]["best_weights"]
    assert all(np.array_equal(p, q) for p, q in zip(net.parameters(), best))

    again = Network([Linear(10, 16), ReLU(), Linear(16, 3)], seed=0)
    for dst, src in zip(again.parameters(), weights[-1]):
        np.copyto(dst, src)
    rest = again.fit(X, y, epochs=30, validation_data=(X, yv), early_stopping=1,
                     optimizer=SGD(lr=0.5), resume=states[-1], progress=False)
    assert rest.epochs == 0 and rest.stopped_early
    assert same_parameters(again, net)


def valid_state():
    X, y = blobs()
    net = Network([Linear(10, 3)], seed=0)
    net.fit(X, y, epochs=1, seed=4, progress=False)
    return net.training_state()


@pytest.mark.parametrize("change, kwargs, error, match", [
    (lambda s: s.pop("shuffle_rng"), {}, TypeError, "resume: expected the dict"),
    (lambda s: s.update(seed=-1), {}, ValueError, r"resume\['seed'\]"),
    (lambda s: None, {"seed": 5}, ValueError, "seed: 5 differs from the resumed run's seed 4"),
    (lambda s: s.update(epoch=9), {}, ValueError, r"initial_epoch: .*\[0, epochs=3\], got 9"),
    (lambda s: None, {"initial_epoch": 2}, ValueError, "initial_epoch: 2 differs"),
    (lambda s: s.update(base_lr=float("nan")), {}, ValueError, r"resume\['base_lr'\]"),
    (lambda s: s.update(stopped="no"), {}, TypeError, r"resume\['stopped'\]"),
    (lambda s: s.update(network_rng={"bit_generator": "MT19937"}), {}, ValueError,
     r"resume\['network_rng'\]"),
    (lambda s: None, {"early_stopping": 2}, ValueError, "without early stopping"),
], ids=["missing-key", "bad-seed", "other-seed", "epoch-beyond", "initial-epoch", "base-lr",
        "stopped", "generator", "early-stopping"])
def test_bad_resume_arguments(change, kwargs, error, match):
    state = valid_state()
    change(state)
    X, y = blobs()
    net = Network([Linear(10, 3)], seed=0)
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(error, match=match):
        net.fit(X, y, epochs=3, progress=False, resume=state, **kwargs)
    assert all(np.array_equal(p, q) for p, q in zip(net.parameters(), before))


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.0, TypeError), (True, TypeError)])
def test_bad_initial_epoch(value, error):
    X, y = blobs()
    with pytest.raises(error, match="initial_epoch"):
        Network([Linear(10, 3)]).fit(X, y, epochs=3, initial_epoch=value, progress=False)


def test_early_stopping_state_round_trip():
    stopper = EarlyStopping(patience=3, monitor="train_loss")
    stopper.reset(has_validation=False)
    net = Network([Linear(2, 2)], seed=0)
    stopper.update(0, {"train_loss": 1.0}, net)
    stopper.update(1, {"train_loss": 2.0}, net)
    state = stopper.state_dict()
    other = EarlyStopping(patience=3, monitor="train_loss")
    other.reset(has_validation=False)
    other.load_state_dict(state)
    assert (other.best, other.best_epoch, other.wait) == (1.0, 1, 1)
    wrong = EarlyStopping(patience=3)
    wrong.reset(has_validation=True)  # monitors val_loss
    with pytest.raises(ValueError, match="it monitors 'train_loss'"):
        wrong.load_state_dict(state)


def test_history_from_dict_and_extend():
    first = History()
    for loss in (3.0, 1.0):
        first.append({"train_loss": loss, "train_accuracy": 0.5, "lr": 0.1, "seconds": 1.0})
    again = History.from_dict(json.loads(json.dumps(first.as_dict())))
    assert again.as_dict() == first.as_dict()
    later = History(initial_epoch=2)
    later.append({"train_loss": 0.5, "train_accuracy": 0.9, "lr": 0.1, "seconds": 1.0})
    assert later.best_epoch == 3
    again.extend(later)
    assert again.train_loss == [3.0, 1.0, 0.5] and again.best_epoch == 3
    with pytest.raises(ValueError, match="continuation"):
        again.extend(History(initial_epoch=1))


# -- the command line -------------------------------------------------------------------------

NATIVE = ["--limit", "3000", "--epochs", "4", "--hidden", "32", "--threads", "1"]
PYTHON_PATH = ["--limit", "2000", "--epochs", "5", "--hidden", "32", "--threads", "1",
               "--dropout", "0.2", "--optimizer", "adam", "--val-split", "0.2",
               "--early-stopping", "2", "--schedule", "step"]
# ~0.15 s per epoch: the epochs after the first leave the signal of the test below more than a
# second to land in even on a loaded machine
SLOW_EPOCHS = ["--epochs", "10", "--hidden", "64", "--threads", "1"]


def cli_env(interrupt_after=None, **variables):
    env = dict(os.environ, **variables)
    for name in [name for name, value in variables.items() if value is None]:
        del env[name]
    env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT, env.get("PYTHONPATH", "")])
    env.pop("FASTNN_TEST_INTERRUPT_AFTER_EPOCH", None)
    if interrupt_after is not None:
        env["FASTNN_TEST_INTERRUPT_AFTER_EPOCH"] = str(interrupt_after)
    return env


def cli(*args, interrupt_after=None, **variables):
    """Run ``python -m fastnn *args``; ``variables``: environment variables to set (None: unset)."""
    return subprocess.run([sys.executable, "-m", "fastnn", *map(str, args)],
                          env=cli_env(interrupt_after, **variables), capture_output=True, text=True,
                          timeout=300)


def assert_interrupted(proc, path, epoch, status=130):
    """Exit status 130 and one line saying what was saved and how to resume."""
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"checkpoint of epoch {epoch}/" in lines[0], lines[0]
    assert f"fastnn train --resume {path}" in lines[0], lines[0]


def final_json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory):
    """Uninterrupted runs: {options name: (model path, JSON result)}."""
    directory = tmp_path_factory.mktemp("straight")
    runs = {}
    for name, options in (("native", NATIVE), ("python", PYTHON_PATH), ("slow", SLOW_EPOCHS)):
        path = directory / f"{name}.npz"
        runs[name] = path, final_json(cli("train", *options, "--save", path, "--json", "--quiet"))
    return runs


def assert_same_model(path_a, path_b):
    a, b = fastnn.load(path_a), fastnn.load(path_b)
    assert repr(a) == repr(b)
    assert same_parameters(a, b)


def test_interrupted_and_resumed_run_ends_with_the_same_weights(straight_runs, tmp_path):
    path = tmp_path / "B.npz"
    proc = cli("train", *NATIVE, "--save", path, interrupt_after=2)
    assert_interrupted(proc, path, epoch=2)
    checkpoint = fastnn.load(path)  # a checkpoint is a model file like any other
    assert checkpoint.optimizer is not None and checkpoint.extra["checkpoint"]["state"]["epoch"] == 2

    resumed = final_json(cli("train", "--resume", path, "--json", "--quiet"))
    straight_path, straight = straight_runs["native"]
    assert_same_model(straight_path, path)
    assert resumed["resumed_from_epoch"] == 2
    assert resumed["test_loss"] == straight["test_loss"]
    assert resumed["history"]["train_loss"] == straight["history"]["train_loss"]
    assert resumed["config"]["epochs"] == 4 and resumed["epochs"] == 4


def test_a_run_interrupted_twice_resumes_exactly(straight_runs, tmp_path):
    """Python training path (dropout, Adam, validation split, early stopping, step schedule)."""
    path = tmp_path / "B.npz"
    assert_interrupted(cli("train", *PYTHON_PATH, "--save", path, interrupt_after=2), path, 2)
    # Options equal to the saved ones may be repeated.
    again = cli("train", "--resume", path, "--epochs", "5", "--dropout", "0.2", interrupt_after=3)
    assert_interrupted(again, path, epoch=3)
    assert "resuming" in again.stdout and "after epoch 2/5" in again.stdout
    resumed = final_json(cli("train", "--resume", path, "--json", "--quiet"))
    straight_path, straight = straight_runs["python"]
    assert_same_model(straight_path, path)
    for key in ("test_loss", "best_epoch", "stopped_early", "epochs"):
        assert resumed[key] == straight[key], key
    assert resumed["history"]["val_loss"] == straight["history"]["val_loss"]


def test_a_resumed_run_extended_to_more_epochs_equals_a_longer_run(tmp_path):
    # With a constant learning rate nothing depends on the total: resuming epoch 2 of 3 with
    # --epochs 5 gives the weights of 5 epochs straight.
    options = ["--limit", "2000", "--hidden", "32", "--threads", "1", "--schedule", "none"]
    straight = tmp_path / "straight.npz"
    final_json(cli("train", *options, "--epochs", "5", "--save", straight, "--json", "--quiet"))
    path = tmp_path / "B.npz"
    assert_interrupted(cli("train", *options, "--epochs", "3", "--save", path, interrupt_after=2), path, 2)
    resumed = cli("train", "--resume", path, "--epochs", "5", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "5 epochs, 3 of them in this run" in resumed.stdout
    assert_same_model(straight, path)
    assert_interrupted(cli("train", *options, "--epochs", "3", "--save", path, interrupt_after=2), path, 2)
    fewer = cli("train", "--resume", path, "--epochs", "1")
    assert fewer.returncode == 2 and "--epochs 1 is fewer than the 2 epochs" in fewer.stderr


@pytest.mark.skipif(available_cores()[0] < 2, reason="the interrupted run needs 2 cores")
@pytest.mark.parametrize("threads", [[], ["--threads", "2"]], ids=["auto", "pinned"])
def test_a_resumed_run_keeps_to_the_thread_count_its_environment_sets(tmp_path, threads):
    path = tmp_path / "B.npz"
    options = ["--limit", "2000", "--epochs", "3", "--hidden", "32", *threads, "--save", path]
    interrupted = cli("train", *options, interrupt_after=1, FASTNN_NUM_THREADS=None,
                      OMP_NUM_THREADS=None)
    assert_interrupted(interrupted, path, epoch=1)
    assert fastnn.load(path).extra["checkpoint"]["threads"] == 2

    resumed = cli("train", "--resume", path, "--json", "--quiet", FASTNN_NUM_THREADS=None,
                  OMP_NUM_THREADS="1")
    config = final_json(resumed)["config"]
    assert config["threads"] == 1 and config["adaptive_threads"] == (not threads)
    lines = resumed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: warning: --resume: "), lines
    assert "trained on 2 threads; this run uses 1 (limited by OMP_NUM_THREADS)" in lines[0]


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_real_signal_after_the_first_epoch(straight_runs, tmp_path, signum, status):
    path = tmp_path / "B.npz"
    # SIGINT as a terminal delivers it, even where the tests themselves run with it ignored (a
    # shell's background job): a process started with SIGINT ignored keeps ignoring it
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "train", *SLOW_EPOCHS, "--save",
                             str(path)], env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:
            if re.match(r"epoch +1/", line):
                proc.send_signal(signum)
                break
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    saved = re.search(r"checkpoint of epoch (\d+)/10", err)
    assert saved, err
    assert 1 <= int(saved.group(1)) <= 10  # the signal may land in any later epoch
    assert ("terminated" if signum == signal.SIGTERM else "interrupted") in err
    assert cli("train", "--resume", path, "--quiet").returncode == 0
    assert_same_model(straight_runs["slow"][0], path)


def test_interrupt_without_save_says_nothing_was_saved(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastnn", "train", *NATIVE], cwd=tmp_path,
                          env=cli_env(1), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130
    assert proc.stderr.strip().splitlines() == [
        "fastnn: interrupted; nothing saved (with --save PATH an interrupted run saves a "
        "checkpoint to resume)"]
    assert os.listdir(tmp_path) == []


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path + ".gz", "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def other_dataset(directory):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3000), ("t10k", 100)):
        write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte"), rng.integers(0, 256, (n, 28, 28)))
        write_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte"), np.arange(n) % 10)
    return directory


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "B.npz"
    assert_interrupted(cli("train", *NATIVE, "--save", path, interrupt_after=1), path, 1)
    return path


@pytest.mark.parametrize("make_args, fragment", [
    (lambda d, c, s: ["--resume", d / "missing.npz"], "checkpoint not found"),
    (lambda d, c, s: ["--resume", s], "not a training checkpoint"),
    (lambda d, c, s: ["--resume", c, "--lr", "0.5"], "--lr 0.5 differs from the checkpoint's"),
    (lambda d, c, s: ["--resume", c, "--hidden", "64"], "--hidden 64 differs from the checkpoint's 32"),
    (lambda d, c, s: ["--resume", c, "--data-dir", other_dataset(str(d))], "training data differs"),
    (lambda d, c, s: ["--resume", truncated(c, d)], "damaged or truncated"),
], ids=["missing", "plain-model", "other-lr", "other-hidden", "other-data", "truncated"])
def test_resume_errors_are_one_line(tmp_path, checkpoint, straight_runs, make_args, fragment):
    before = checkpoint.read_bytes()
    proc = cli("train", *make_args(tmp_path, checkpoint, straight_runs["native"][0]))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: error: ") and fragment in lines[0], lines
    assert checkpoint.read_bytes() == before


def truncated(path, directory):
    out = directory / "truncated.npz"
    out.write_bytes(path.read_bytes()[:-100])
    return out


def test_a_checkpoint_can_be_evaluated(checkpoint):
    proc = cli("evaluate", checkpoint, "--json")
    assert proc.returncode == 0, proc.stderr
    assert 0.0 < json.loads(proc.stdout.strip().splitlines()[-1])["test_accuracy"] <= 1.0


# -- checkpoint storage: arrays inside Network.save(extra=...) ----------------------------------

def test_arrays_inside_extra_round_trip(tmp_path):
    path = tmp_path / "m.npz"
    extra = {"a": np.arange(4.0), "nested": [{"b": np.ones((2, 3), np.int32)}],
             "scalar": np.float32(1.5), "text": "kept"}
    Network([Linear(3, 2)], seed=0).save(path, extra=extra)
    loaded = fastnn.load(path).extra
    assert loaded["a"].dtype == np.float64 and np.array_equal(loaded["a"], extra["a"])
    b = loaded["nested"][0]["b"]
    assert b.dtype == np.int32 and b.shape == (2, 3) and (b == 1).all()
    assert loaded["scalar"] == 1.5 and loaded["text"] == "kept"


def test_object_arrays_in_extra_are_refused(tmp_path):
    with pytest.raises(TypeError, match=r"^extra\['x'\]\[0\]: arrays in extra must be numeric"):
        Network([Linear(3, 2)]).save(tmp_path / "m.npz", extra={"x": [np.array([{}], object)]})
    assert os.listdir(tmp_path) == []


def test_a_reference_to_a_missing_array_is_a_format_error(tmp_path):
    path = tmp_path / "m.npz"
    Network([Linear(3, 2)], seed=0).save(path, extra={"a": np.arange(3)})
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("__header__").tobytes())
    header["extra"]["a"] = {"__ndarray__": "layers.0.W"}  # not an extra array
    with open(path, "wb") as f:
        np.savez(f, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    with pytest.raises(fastnn.ModelFormatError, match="missing array 'layers.0.W'"):
        fastnn.load(path)
