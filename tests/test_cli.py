"""The ``fastnn`` command line, run as ``python -m fastnn`` in a subprocess."""
import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--limit", "2000", "--epochs", "2", "--hidden", "64"]
REQUIRED_KEYS = {"test_accuracy", "test_loss", "epochs", "train_seconds", "seconds_per_epoch",
                 "parameters", "config"}


def run_cli(*args, cwd=None, extra_path=(), variables=None):
    """Run ``python -m fastnn *args``; returns the CompletedProcess (text output). ``variables``:
    environment variables to set (None: unset)."""
    env = dict(os.environ, **(variables or {}))
    for name in [name for name, value in (variables or {}).items() if value is None]:
        del env[name]
    env["PYTHONPATH"] = os.pathsep.join([*extra_path, REPO_ROOT, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "fastnn", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def last_json_line(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_user_error(proc, *fragments):
    """Exit status 2 and exactly one stderr line 'fastnn: error: ...' containing ``fragments``."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fastnn: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# -- a small IDX dataset written by the tests -----------------------------------------------------

def write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    content = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path, content = path + ".gz", gzip.compress(content)
    with open(path, "wb") as f:
        f.write(content)


def make_dataset(directory, compress, n_train=600, n_test=200, side=8, seed=7):
    """Ten classes of 8x8 images: a fixed random pattern per class plus pixel noise."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 2, size=(10, side, side)) * 200
    files = {}
    for split, count in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(count) % 10
        noise = rng.integers(0, 56, size=(count, side, side))
        files[split] = (patterns[labels] + noise, labels)
    write_idx(os.path.join(directory, "train-images-idx3-ubyte"), files["train"][0], compress)
    write_idx(os.path.join(directory, "train-labels-idx1-ubyte"), files["train"][1], compress)
    write_idx(os.path.join(directory, "t10k-images-idx3-ubyte"), files["t10k"][0], compress)
    write_idx(os.path.join(directory, "t10k-labels-idx1-ubyte"), files["t10k"][1], compress)
    return directory


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A model trained by the CLI on 2,000 MNIST images, and the JSON the training printed."""
    path = tmp_path_factory.mktemp("model") / "model.npz"
    result = last_json_line(run_cli("train", *QUICK, "--save", path, "--json"))
    return path, result


# -- help and usage -------------------------------------------------------------------------------

def test_help_lists_the_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("train", "evaluate", "info"):
        assert command in proc.stdout


def test_train_help_documents_options_and_schedules():
    proc = run_cli("train", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for option in ("--hidden", "--activation", "--init", "--schedule", "--plot", "--json",
                   "--limit", "--data-dir", "--early-stopping", "--threads", "--scaling"):
        assert option in text
    assert "halves the rate every third of the epochs" in text
    assert "cosine anneals it towards 0 over the epochs" in text


def test_no_command_is_one_error_line_listing_the_commands():
    assert_user_error(run_cli(), "a command is required: train, sweep, evaluate, predict, export, "
                                 "info or bench")


def test_main_returns_exit_status_in_process(capsys):
    from fastnn.cli import main

    assert main(["--help"]) == 0
    assert main([]) == 2
    assert main(["train", "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "fastnn: error: argument --epochs" in err


def test_importing_the_cli_does_not_load_numpy():
    code = "import sys, fastnn.cli; print(sorted(m for m in ('numpy', 'fastnn._core') if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# -- train ----------------------------------------------------------------------------------------

def test_train_prints_epoch_lines_and_final_accuracy():
    proc = run_cli("train", *QUICK, "--val-split", "0.1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert epoch_lines[0].startswith("epoch 1/2") and epoch_lines[1].startswith("epoch 2/2")
    for line in epoch_lines:
        assert re.search(r"loss \d+\.\d{4}  acc \d+\.\d\d%  val_loss \d+\.\d{4}  val_acc "
                         r"\d+\.\d\d%  lr \S+  \d+\.\d\d s$", line), line
    final = re.match(r"test accuracy (\d+\.\d\d)%  loss (\d+\.\d{4})", lines[-1])
    assert final, lines[-1]
    assert 80.0 < float(final.group(1)) <= 100.0
    assert 0.0 < float(final.group(2)) < 1.0


def test_train_json_is_the_last_stdout_line_with_sane_values():
    proc = run_cli("train", *QUICK, "--json")
    result = last_json_line(proc)
    assert REQUIRED_KEYS <= set(result)
    assert proc.stdout.strip().count("\n") == 0  # the human lines went to stderr
    assert "epoch 2/2" in proc.stderr and "test accuracy" in proc.stderr
    assert 0.8 < result["test_accuracy"] <= 1.0
    assert 0.0 < result["test_loss"] < 1.0
    assert result["epochs"] == 2
    assert result["parameters"] == 784 * 64 + 64 + 64 * 10 + 10
    assert result["train_samples"] == 2000 and result["test_samples"] == 10000
    assert result["train_seconds"] > 0
    assert result["seconds_per_epoch"] == pytest.approx(result["train_seconds"] / 2)
    config = result["config"]
    assert config["hidden"] == [64] and config["epochs"] == 2 and config["limit"] == 2000
    assert config["optimizer"] == "sgd" and config["seed"] == 0 and config["threads"] >= 1
    assert len(result["history"]["train_loss"]) == 2


def test_train_quiet_prints_only_the_result():
    proc = run_cli("train", *QUICK, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()]
    assert proc.stdout.startswith("test accuracy ")
    assert proc.stderr == ""


def test_an_exploding_loss_gives_one_warning_line_naming_the_learning_rate():
    proc = run_cli("train", "--lr", "1e3", "--activation", "relu", "--limit", "2000", "--epochs", "1",
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: warning: "), proc.stderr
    assert "lr=1000" in lines[0] and "too high" in lines[0]


def test_train_is_deterministic_with_the_default_seed():
    first = last_json_line(run_cli("train", "--limit", "1000", "--epochs", "1", "--hidden", "32",
                                   "--json", "--quiet"))
    second = last_json_line(run_cli("train", "--limit", "1000", "--epochs", "1", "--hidden", "32",
                                    "--json", "--quiet"))
    other_seed = last_json_line(run_cli("train", "--limit", "1000", "--epochs", "1", "--hidden",
                                        "32", "--seed", "5", "--json", "--quiet"))
    assert first["test_loss"] == second["test_loss"]
    assert first["test_loss"] != other_seed["test_loss"]


@pytest.mark.parametrize("options, config", [
    (["--hidden", "0"], {"hidden": []}),
    (["--hidden", "32", "16", "--activation", "tanh", "--init", "xavier"],
     {"hidden": [32, 16], "activation": "tanh", "init": "xavier"}),
    (["--optimizer", "adam", "--dropout", "0.2", "--dtype", "float64"],
     {"optimizer": "adam", "lr": 0.001, "momentum": None, "dropout": 0.2, "dtype": "float64"}),
    (["--activation", "scaled_tanh", "--nesterov", "--weight-decay", "1e-4", "--schedule", "step",
      "--scaling", "standardize", "--threads", "1"],
     {"nesterov": True, "weight_decay": 1e-4, "schedule": "step", "scaling": "standardize",
      "threads": 1}),
    (["--activation", "sigmoid", "--schedule", "exponential", "--batch-size", "64", "--lr", "0.2"],
     {"activation": "sigmoid", "schedule": "exponential", "batch_size": 64, "lr": 0.2,
      "adaptive_threads": True}),
    (["--threads", "auto", "--schedule", "none"], {"adaptive_threads": True, "schedule": "none"}),
    (["--optimizer", "adamw", "--weight-decay", "0.01", "--activation", "gelu"],
     {"optimizer": "adamw", "lr": 0.001, "weight_decay": 0.01, "activation": "gelu"}),
], ids=["softmax-regression", "two-hidden-tanh", "adam-dropout-float64", "nesterov-standardize",
        "sigmoid-exponential", "auto-threads", "adamw-gelu"])
def test_train_options_reach_the_run(options, config):
    result = last_json_line(run_cli("train", "--limit", "1000", "--epochs", "2", *options,
                                    "--json", "--quiet"))
    for key, value in config.items():
        assert result["config"][key] == value, key
    assert 0.6 < result["test_accuracy"] <= 1.0
    hidden = config.get("hidden", [256])
    widths = [784, *hidden, 10]
    assert result["parameters"] == sum(a * b + b for a, b in zip(widths, widths[1:]))


def test_early_stopping_stops_when_validation_loss_rises():
    result = last_json_line(run_cli("train", "--limit", "1000", "--epochs", "40", "--hidden", "64",
                                    "--schedule", "none", "--val-split", "0.3",
                                    "--early-stopping", "2", "--json", "--quiet"))
    assert result["stopped_early"] is True
    assert result["epochs"] < 40
    val_loss = result["history"]["val_loss"]
    assert len(val_loss) == result["epochs"]
    assert result["best_epoch"] == int(np.argmin(val_loss)) + 1


# -- save / evaluate ------------------------------------------------------------------------------

def test_evaluate_reports_exactly_what_train_reported(small_model):
    path, trained = small_model
    evaluated = last_json_line(run_cli("evaluate", path, "--json"))
    assert evaluated["test_accuracy"] == trained["test_accuracy"]
    assert evaluated["test_loss"] == trained["test_loss"]
    assert evaluated["test_samples"] == 10000


def test_evaluate_prints_accuracy_and_loss(small_model):
    path, trained = small_model
    proc = run_cli("evaluate", path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"test accuracy {100 * trained['test_accuracy']:.2f}%  "
                                  f"loss {trained['test_loss']:.4f}")


@pytest.mark.parametrize("compress", [True, False], ids=["gzipped", "plain"])
def test_train_and_evaluate_on_an_idx_directory(tmp_path, compress):
    data_dir = make_dataset(str(tmp_path), compress)
    model = tmp_path / "idx-model.npz"
    trained = last_json_line(run_cli("train", "--data-dir", data_dir, "--hidden", "32",
                                     "--epochs", "3", "--save", model, "--json", "--quiet"))
    assert trained["train_samples"] == 600 and trained["test_samples"] == 200
    assert trained["parameters"] == 64 * 32 + 32 + 32 * 10 + 10
    assert trained["test_accuracy"] >= 0.9
    evaluated = last_json_line(run_cli("evaluate", model, "--data-dir", data_dir, "--json"))
    assert (evaluated["test_accuracy"], evaluated["test_loss"]) == \
        (trained["test_accuracy"], trained["test_loss"])


# -- plot -----------------------------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib not installed")
def test_plot_writes_a_png(tmp_path):
    png = tmp_path / "curves.png"
    proc = run_cli("train", "--limit", "1000", "--epochs", "2", "--hidden", "32", "--val-split",
                   "0.2", "--plot", png, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["curves.png"]  # no temporary file left behind


def test_plot_without_matplotlib_fails_before_training(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "matplotlib.py").write_text("raise ImportError('simulated: no matplotlib')\n")
    png = tmp_path / "curves.png"
    proc = run_cli("train", "--limit", "1000", "--epochs", "1", "--plot", png,
                   extra_path=[str(shim)])
    assert_user_error(proc, 'pip install ".[plot]"')
    assert proc.stdout == ""  # not even the "training ..." line: nothing was trained
    assert not png.exists()


# -- info -----------------------------------------------------------------------------------------

def test_info_shows_the_configuration():
    proc = run_cli("info")
    assert proc.returncode == 0, proc.stderr
    for label in ("fastnn 0.1", "SIMD path:", "OpenMP:", "threads:", "build flags:", "BLAS"):
        assert label in proc.stdout


def test_info_json():
    import fastnn

    info = last_json_line(run_cli("info", "--json"))
    assert info["fastnn"] == fastnn.__version__
    assert info["simd_path"] in info["simd_paths_available"]
    assert isinstance(info["openmp"], bool)
    assert isinstance(info["threads"], int) and info["threads"] >= 1
    assert isinstance(info["build_flags"], str) and isinstance(info["blas_loaded"], list)


# -- user errors: one line, exit status 2, no traceback -------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--hidden", "-3"], "--hidden"),
    (["train", "--hidden", "0", "64"], "--hidden 0"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "-0.1"], "--lr"),
    (["train", "--threads", "0"], "--threads"),
    (["train", "--threads", "many"], "--threads"),
    (["evaluate", "model.npz", "--threads", "auto"], "--threads"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--activation", "swish"], "--activation"),
    (["train", "--init", "zeros"], "--init"),
    (["train", "--optimizer", "rmsprop"], "--optimizer"),
    (["train", "--momentum", "1.5"], "--momentum"),
    (["train", "--dropout", "1"], "--dropout"),
    (["train", "--val-split", "1"], "--val-split"),
    (["train", "--epochs", "two"], "--epochs"),
    (["train", "--optimizer", "adam", "--momentum", "0.5"], "--momentum"),
    (["train", "--momentum", "0", "--nesterov"], "--nesterov"),
    (["train", "--hidden", "0", "--dropout", "0.5"], "--dropout"),
    (["train", "--data-dir", "/nonexistent/fastnn-data"], "--data-dir"),
    (["train", "--save", "/nonexistent/dir/model.npz"], "--save"),
    (["train", "--limit", "60001", "--epochs", "1"], "--limit 60001"),
    (["train", "--unknown-option"], "unrecognized arguments"),
    (["evaluate"], "MODEL"),
    (["evaluate", "/nonexistent/model.npz"], "model file not found"),
    (["evaluate", "."], ". is a directory, not a model file"),
    (["predict", ".", "--data", "t.csv"], ". is a directory, not a model file"),
    (["export", ".", "--output", "m.onnx"], ". is a directory, not a model file"),
    (["train", "--data", "/nonexistent/t.csv", "--target", "y"],
     "--data: no such file or directory: /nonexistent/t.csv"),
    (["frobnicate"], "invalid choice"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_bad_arguments_are_one_line_errors(args, fragment):
    assert_user_error(run_cli(*args), fragment)


def test_diverged_training_is_a_user_error():
    proc = run_cli("train", "--hidden", "0", "--lr", "1e38", "--limit", "500", "--epochs", "1")
    assert_user_error(proc, "training diverged", "lower learning rate")


def test_save_to_a_directory_is_a_user_error(tmp_path):
    assert_user_error(run_cli("train", "--save", tmp_path), "is a directory")


def test_corrupted_model_files_are_user_errors(tmp_path, small_model):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a model" * 10)
    assert_user_error(run_cli("evaluate", garbage), "not a fastnn model file")

    truncated = tmp_path / "truncated.npz"
    content = small_model[0].read_bytes()
    truncated.write_bytes(content[: len(content) // 2])
    assert_user_error(run_cli("evaluate", truncated, "--json"), str(truncated))


def test_model_and_data_that_do_not_fit_are_a_user_error(tmp_path, small_model):
    data_dir = make_dataset(str(tmp_path), compress=True)
    assert_user_error(run_cli("evaluate", small_model[0], "--data-dir", data_dir),
                      "expects 784 inputs", "64 pixels")
    assert_user_error(run_cli("evaluate", small_model[0], "--data", tmp_path / "none.csv"),
                      "--data: no such file or directory")


def test_a_network_too_large_for_the_memory_is_a_user_error():
    # 784 x 1e11 weights: more bytes than a 64-bit process can address, whatever the machine.
    proc = run_cli("train", "--hidden", "100000000000", "--epochs", "1", "--limit", "100")
    assert_user_error(proc, "--hidden 100000000000: not enough memory",
                      "784-100000000000-10 network", "GiB in float32")


def test_running_out_of_memory_during_training_is_a_user_error(monkeypatch, capsys):
    import fastnn
    from fastnn.cli import main

    def fit(*args, **kwargs):
        raise MemoryError("Unable to allocate 9.00 GiB for an array with shape (1000, 1000000)")

    monkeypatch.setattr(fastnn.Network, "fit", fit)
    assert main(["train", "--limit", "100", "--epochs", "1", "--hidden", "8", "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "fastnn: error: not enough memory: Unable to allocate 9.00 GiB for an array with shape "
        "(1000, 1000000)"]


def test_corrupted_dataset_is_a_user_error(tmp_path):
    data_dir = make_dataset(str(tmp_path), compress=False)
    labels = os.path.join(data_dir, "t10k-labels-idx1-ubyte")
    with open(labels, "rb") as f:
        content = f.read()
    with open(labels, "wb") as f:
        f.write(content[:-5])
    assert_user_error(run_cli("train", "--data-dir", data_dir, "--epochs", "1"),
                      "t10k-labels-idx1-ubyte", "truncated")


def test_missing_dataset_file_is_a_user_error(tmp_path):
    data_dir = make_dataset(str(tmp_path), compress=True)
    os.remove(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    assert_user_error(run_cli("train", "--data-dir", data_dir, "--epochs", "1"),
                      "train-images-idx3-ubyte")


# -- the real target ------------------------------------------------------------------------------

@pytest.mark.slow
def test_default_training_reaches_98_percent_on_mnist():
    result = last_json_line(run_cli("train", "--json", "--quiet"))
    assert result["test_accuracy"] >= 0.98
    assert result["train_samples"] == 60000 and result["test_samples"] == 10000


def test_bench_prints_one_json_object_with_the_kernel_ratios():
    result = subprocess.run(
        [sys.executable, "-m", "fastnn", "bench", "--quick", "--only", "kernels", "--threads", "1",
         "--repeats", "1", "--no-torch", "--json"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 0
    assert report["machine"]["cores"] >= 1 and report["machine"]["simd_path"]
    rows = report["kernels"]
    assert {row["op"] for row in rows} >= {"sigmoid", "softmax_cross_entropy"}
    for row in rows:
        assert row["threads"] == 1
        assert row["fastnn"] > 0 and row["reference"] > 0
        assert row["ratio"] == pytest.approx(row["reference"] / row["fastnn"])
        if row["op"].startswith("linear_"):
            # The reference's products alone, timed in the same rounds, bound what is reachable.
            assert row["gemm_only"] > 0
            assert row["ceiling"] == pytest.approx(row["reference"] / row["gemm_only"])
        else:
            assert "ceiling" not in row


def test_bench_labels_its_rows_with_the_thread_count_used(cli_on_one_cpu):
    # --quick measures 2 threads; a process on one CPU is capped to 1
    report = cli_on_one_cpu("bench", "--quick", "--only", "kernels", "--repeats", "1", "--no-torch",
                            "--json", timeout=120).json
    assert report["machine"]["cores"] == 1 and list(report["blas"]) == ["1"]
    assert report["kernels"] and {row["threads"] for row in report["kernels"]} == {1}


def test_a_reader_that_leaves_early_does_not_stop_training(tmp_path):
    # fastnn train ... | head -1: the pipe breaks after the first line; the run still finishes
    # and saves its model.
    model = tmp_path / "m.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "train", "--limit", "2000", "--epochs", "3",
                             "--hidden", "16", "--save", str(model)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    first = proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert first.startswith(b"training ")
    assert model.exists()


@pytest.mark.parametrize("options, header, inits", [
    (["--hidden", "0"], "lecun init,", ["lecun"]),
    (["--hidden", "16"], "he init (lecun for the output layer),", ["he", "lecun"]),
    (["--hidden", "16", "--activation", "tanh"], "lecun init,", ["lecun", "lecun"]),
    (["--hidden", "16", "--init", "xavier"], "xavier init,", ["xavier", "xavier"]),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_the_run_header_names_the_initialisers_the_layers_were_drawn_with(tmp_path, options,
                                                                          header, inits):
    import fastnn
    from fastnn.layers import Linear
    model = tmp_path / "m.npz"
    proc = run_cli("train", *options, "--limit", "200", "--epochs", "1", "--save", model)
    assert proc.returncode == 0, proc.stderr
    assert header in proc.stdout.splitlines()[0]
    assert [layer.init_name for layer in fastnn.load(model).layers
            if isinstance(layer, Linear)] == inits


def test_a_network_without_hidden_layers_is_named_by_its_loss():
    import fastnn
    from fastnn.cli.describe import describe
    names = [describe(fastnn.Network([fastnn.Linear(4, k)], loss=loss, seed=0))
             for k, loss in ((3, fastnn.SoftmaxCrossEntropy()), (1, fastnn.BinaryCrossEntropy()),
                             (1, fastnn.MSE()))]
    assert names == ["4-3 softmax regression", "4-1 logistic regression", "4-1 linear regression"]
