"""The ``fastnn`` command line: ``train``, ``sweep``, ``evaluate``, ``predict``, ``export``, ``info`` and ``bench``.

Arguments are parsed and checked with the standard library only; numpy and the compiled core
are imported afterwards, so ``fastnn --help`` and argument errors answer at once. User errors
(bad values, missing or damaged files, diverged training) print one line starting with
``fastnn: error:`` to stderr and exit with status 2; anything else is a bug and keeps its traceback.

Interrupting ``fastnn train --save PATH`` (Ctrl-C, SIGINT or SIGTERM) writes a checkpoint of the
last completed epoch to PATH and exits with status 130 (143 for SIGTERM); ``fastnn train --resume
PATH`` continues it and, with the same thread count, ends with the weights of an uninterrupted run.
"""
import argparse
import contextlib
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import warnings

from ._argtypes import (non_negative_float, non_negative_int, positive_float, positive_int,
                        unit_interval)

PROG = "fastnn"
from .activations import NAMES as ACTIVATIONS  # the --activation choices (no numpy import)
INITS = ("lecun", "he", "xavier", "uniform")
SCHEDULES = ("none", "step", "exponential", "cosine")
SCALINGS = ("unit", "standardize")
LOSSES = ("cross_entropy", "bce", "mse")
TASKS = ("classification", "regression")
MISSING = ("drop", "mean")
NUM_CLASSES = 10
DEFAULT_TEST_SPLIT = 0.2  # for --data tables without --test-data

# The defaults of `fastnn train`: 98.34 % MNIST test accuracy (seed 0, any thread count; seeds 0-3:
# 98.23-98.44 %) in about 4 s start to exit on 2 cores, with AVX-512 or AVX2 BLAS kernels. Chosen
# with `fastnn sweep --hidden 128 192 256 --epochs 8 10 --batch-size 32 64 --lr 0.05 0.1` run with
# OPENBLAS_CORETYPE=Haswell: batch 64 halves the steps of batch 32 at the same accuracy.
# Plain SGD with momentum on a Linear+ReLU MLP keeps Network.fit on its native fast path.
DEFAULTS = {
    "hidden": [256],
    "activation": "relu",
    "epochs": 8,
    "batch_size": 64,
    "sgd_lr": 0.1,
    "sgd_mse_lr": 0.01,  # MSE's gradient is not bounded like cross-entropy's: 0.05 diverges
    "adam_lr": 1e-3,
    "momentum": 0.9,
    "schedule": "cosine",
    "scaling": "unit",
    "seed": 0,
}
STEP_GAMMA = 0.5  # --schedule step halves the rate ...
STEP_FRACTION = 3  # ... every third of the epochs
EXPONENTIAL_GAMMA = 0.9  # --schedule exponential: x0.9 per epoch
AUTO_THREADS = "auto"
CHECKPOINT_FORMAT = "fastnn-train-checkpoint"
CHECKPOINT_VERSION = 1
# The options of `fastnn train` a checkpoint records; `--resume` runs with them again.
RUN_OPTIONS = ("dataset", "data_dir", "limit", "val_split", "scaling", "hidden", "activation",
               "init", "dropout", "dtype", "epochs", "batch_size", "optimizer", "lr", "momentum",
               "nesterov", "weight_decay", "schedule", "early_stopping", "seed")
# Options added later, with the value a checkpoint that lacks them was trained with.
LATER_RUN_OPTIONS = {"data": None, "target": None, "ignore": None, "task": None, "missing": "drop",
                     "test_split": None, "test_data": None, "loss": "cross_entropy"}
# Paths: a resumed run may find its files elsewhere (the data fingerprint is checked).
PATH_OPTIONS = ("data_dir", "data", "test_data")
# For the tests only: raise KeyboardInterrupt at the end of this (1-based) epoch, as a Ctrl-C would.
TEST_INTERRUPT_ENV = "FASTNN_TEST_INTERRUPT_AFTER_EPOCH"


class UserError(Exception):
    """A problem with what the user asked for: reported as one line, exit status 2."""


class Interrupted(KeyboardInterrupt):
    """Training was interrupted; ``message`` says what was saved, ``status`` is the exit status."""

    def __init__(self, message, status=130):
        super().__init__(message)
        self.message, self.status = message, status


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that it is handled like Ctrl-C."""


# -- argument types: each returns the value or raises ArgumentTypeError ---------------------------

def thread_count(text):
    """A positive integer, or "auto"."""
    return AUTO_THREADS if text == AUTO_THREADS else positive_int(text)


# -- the parser ----------------------------------------------------------------------------------

class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where there is a default worth showing."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are the one-line ``fastnn: error: ...`` (subparsers inherit this)."""

    def error(self, message):
        _print_error(f"{message} (see '{self.prog} --help')")
        self.exit(2)


class _RaisingParser(_Parser):
    """A parser whose errors raise UserError (for the trials of a sweep)."""

    def error(self, message):
        raise UserError(message)


def build_parser(parser_class=_Parser):
    parser = parser_class(prog=PROG, description="Small neural networks on the CPU, fast.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(commands)
    _add_sweep(commands)
    _add_evaluate(commands)
    _add_predict(commands)
    _add_export(commands)
    _add_info(commands)
    _add_bench(commands)
    return parser


def parse_train_options(options):
    """The checked args of ``fastnn train OPTIONS`` (a list of str); UserError when one is bad."""
    argv = ["train", *options]
    args = build_parser(_RaisingParser).parse_args(argv)
    args.given = _given_options(argv)
    check_train_args(args)
    return args


def _add_train(commands):
    d = DEFAULTS
    p = commands.add_parser(
        "train", help="train an MLP on MNIST, an IDX dataset or a table (CSV, TSV, Parquet, NPZ) "
                      "and test it",
        description="Train an MLP and report its test accuracy (RMSE, MAE and R^2 for a "
                    "regression). With no options: "
                    f"{_arch_text(d['hidden'])} {d['activation']} MLP, SGD (lr {d['sgd_lr']}, "
                    f"momentum {d['momentum']}), batch {d['batch_size']}, {d['epochs']} epochs, "
                    f"{d['schedule']} schedule, seed {d['seed']}: about 98.3 % on the MNIST test "
                    "set in about 4 s on 2 cores.",
        formatter_class=_HelpFormatter)
    groups = add_run_options(p)
    groups["training"].add_argument(
        "--threads", type=thread_count, metavar="N",
        help="use exactly N threads for fastnn's kernels and BLAS (at most the cores this process "
             "may use: more is capped with a warning). The default, 'auto', takes "
             "$FASTNN_NUM_THREADS, $OMP_NUM_THREADS or the cores this process may use, and lets "
             "training drop to one thread while the machine is busy. Either way a run repeats "
             "bit for bit for the same --seed, on any thread count")

    output = p.add_argument_group("output")
    output.add_argument("--save", metavar="PATH",
                        help="save the trained model (fastnn.load reads it); if the run is "
                             "interrupted (Ctrl-C), a checkpoint of the last completed epoch is "
                             "saved there instead, for --resume")
    output.add_argument("--resume", metavar="CHECKPOINT",
                        help="continue the interrupted run saved in CHECKPOINT with its own options "
                             "(only --data-dir, --data, --test-data, --threads, --save, --plot, "
                             "--json and --quiet may be given, and --epochs to extend the run; "
                             "other options must match); the model is saved to CHECKPOINT unless "
                             "--save says otherwise")
    output.add_argument("--plot", metavar="PATH",
                        help="write loss and accuracy curves as a PNG (needs matplotlib)")
    _add_output_flags(output, "the result (test accuracy, loss, timings, the configuration)")


def add_run_options(p):
    """The options of one training run (data, model, training), shared by ``train`` and ``sweep``
    (which takes several values of each); returns the argument groups by title."""
    d = DEFAULTS
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=("mnist",), default="mnist",
                      help="built-in dataset (the MNIST copy shipped with fastnn)")
    data.add_argument("--data-dir", metavar="DIR",
                      help="read the four IDX files of MNIST's layout (train-images-idx3-ubyte, "
                           "..., optionally .gz) from DIR instead; labels 0..9")
    data.add_argument("--data", metavar="FILE",
                      help="train on a table: .csv, .tsv, .parquet, or .npz (arrays X and y); "
                           "a directory is read as --data-dir. Numeric columns are standardised, "
                           "text columns one-hot encoded (needs pandas and pyarrow for CSV, TSV "
                           "and Parquet: pip install \".[tables]\")")
    data.add_argument("--target", metavar="COLUMN",
                      help="the column to predict (required for CSV, TSV and Parquet; y for .npz)")
    data.add_argument("--ignore", nargs="+", metavar="COLUMN",
                      help="columns of the table that are not inputs (identifiers, free text)")
    data.add_argument("--task", choices=TASKS,
                      help="default: classification for a text or bool target or one of at most "
                           "20 distinct integers, else regression")
    data.add_argument("--missing", choices=MISSING, default="drop",
                      help="rows with a missing value: drop them, or replace a missing number by "
                           "the training mean and a missing category by no category")
    data.add_argument("--test-split", type=unit_interval, metavar="F",
                      help=f"hold out this fraction of the table's rows for the test (seeded, "
                           f"stratified for a classification; default {DEFAULT_TEST_SPLIT})")
    data.add_argument("--test-data", metavar="FILE",
                      help="test on this table instead of a split of --data")
    data.add_argument("--limit", type=positive_int, metavar="N",
                      help="train on the first N training images only (an error if there are "
                           "fewer than N)")
    data.add_argument("--val-split", type=unit_interval, default=0.0, metavar="F",
                      help="hold out this fraction of the training images for validation")
    data.add_argument("--scaling", choices=SCALINGS, default=d["scaling"],
                      help="pixel scaling: unit maps 0..255 to [0, 1], standardize to mean 0 and "
                           "variance 1 over the training pixels")

    model = p.add_argument_group("model")
    model.add_argument("--hidden", type=non_negative_int, nargs="+", default=d["hidden"],
                       metavar="N", help="hidden layer widths, e.g. --hidden 256 128; "
                                         "--hidden 0 for none (softmax regression)")
    model.add_argument("--activation", choices=ACTIVATIONS, default=d["activation"],
                       help="activation after each hidden layer")
    model.add_argument("--init", choices=INITS,
                       help="weight initialiser for every Linear layer (default: he before "
                            "relu, else lecun)")
    model.add_argument("--dropout", type=unit_interval, default=0.0, metavar="P",
                       help="dropout probability after each hidden activation (slower path)")
    model.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="parameter and computation dtype")
    model.add_argument("--loss", choices=LOSSES,
                       help="default: cross_entropy for a classification, mse for a regression; "
                            "bce is one sigmoid output for a target with two classes")

    training = p.add_argument_group("training")
    training.add_argument("--epochs", type=positive_int, default=d["epochs"], metavar="N",
                          help="passes over the training images")
    training.add_argument("--batch-size", type=positive_int, default=d["batch_size"], metavar="N",
                          help="examples per gradient step")
    training.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                          help="both run in the compiled training loop (networks with Dropout, MSE or binary cross-entropy train layer by layer)")
    training.add_argument("--lr", type=positive_float, metavar="LR",
                          help=f"learning rate (default: {d['sgd_lr']} for sgd, "
                               f"{d['sgd_mse_lr']} for sgd with --loss mse, "
                               f"{d['adam_lr']} for adam)")
    training.add_argument("--momentum", type=unit_interval, metavar="M",
                          help=f"SGD momentum (default: {d['momentum']})")
    training.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    training.add_argument("--weight-decay", type=non_negative_float, default=0.0, metavar="L2",
                          help="L2 penalty added to the gradients")
    training.add_argument("--schedule", choices=SCHEDULES, default=d["schedule"],
                          help="learning-rate schedule per epoch: step halves the rate every "
                               f"third of the epochs; exponential multiplies it by "
                               f"{EXPONENTIAL_GAMMA} each epoch; cosine anneals it towards 0 "
                               "over the epochs")
    training.add_argument("--early-stopping", type=positive_int, metavar="PATIENCE",
                          help="stop after PATIENCE epochs without a lower validation loss "
                               "(training loss without --val-split) and keep the best weights")
    training.add_argument("--seed", type=non_negative_int, default=d["seed"],
                          help="seed of weight initialisation, shuffling and dropout")
    return {"data": data, "model": model, "training": training}


def _add_evaluate(commands):
    p = commands.add_parser(
        "evaluate", help="test a saved model",
        description="Load a model saved by 'fastnn train --save' (or Network.save) and report "
                    "its accuracy and loss on the test set (RMSE, MAE and R^2 for a "
                    "regression).")
    p.add_argument("model", metavar="MODEL", help="model file")
    p.add_argument("--data-dir", metavar="DIR",
                   help="use the test files of the IDX dataset in DIR instead of MNIST's")
    p.add_argument("--data", metavar="FILE",
                   help="test on this table (.csv, .tsv, .parquet or .npz with the target "
                        "column; required for a model trained on a table)")
    _add_threads_option(p)
    _add_output_flags(p, "test_accuracy and test_loss (test_rmse, test_mae, test_r2 and "
                         "test_loss for a regression)")


def _add_threads_option(p):
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="threads for fastnn's kernels and BLAS (default: $FASTNN_NUM_THREADS, "
                        "$OMP_NUM_THREADS or the cores this process may use)")


def _add_predict(commands):
    p = commands.add_parser(
        "predict", help="predict the rows of a table with a saved model",
        description="Load a model saved by 'fastnn train --save' and write one prediction per "
                    "input row, in order, as CSV: the label names of a classifier, the values of "
                    "a regression. A model of a table reads its raw columns (the target column "
                    "may be there or not); other models read an .npz (array X) or the test "
                    "images of an IDX directory.")
    p.add_argument("model", metavar="MODEL", help="model file")
    p.add_argument("--data", metavar="FILE", required=True,
                   help="the rows to predict: .csv, .tsv, .parquet, .npz or an IDX directory")
    p.add_argument("--output", metavar="OUT.csv",
                   help="write the predictions here (atomically) instead of to stdout")
    p.add_argument("--proba", action="store_true",
                   help="add one column of probabilities per class (classifiers)")
    _add_threads_option(p)


def _add_export(commands):
    p = commands.add_parser(
        "export", help="write a saved model as an ONNX graph",
        description="Convert a model saved by 'fastnn train --save' (or Network.save) to ONNX: "
                    "the input scaling, the layers and the loss's head (softmax probabilities and "
                    "the label for classifiers). Needs the onnx extra: pip install \".[onnx]\".")
    p.add_argument("model", metavar="MODEL", help="model file")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format")
    p.add_argument("--output", required=True, metavar="PATH", help="file to write (atomically)")


def _add_info(commands):
    p = commands.add_parser(
        "info", help="show the version, build, SIMD path, threads and BLAS",
        description="Show what fastnn runs on: version, build flags, SIMD path, OpenMP, "
                    "threads and BLAS libraries.")
    p.add_argument("--json", action="store_true", help="print the configuration as one JSON object")


def _add_bench(commands):
    from . import bench  # standard library only at import: --help stays instant

    p = commands.add_parser(
        "bench", help="time fastnn against its NumPy twins, a NumPy network and PyTorch")
    bench.add_arguments(p)


def _add_sweep(commands):
    from . import sweep  # standard library only at import: --help stays instant

    p = commands.add_parser(
        "sweep", help="train a grid of configurations (any train option with several values)",
        description="Run 'fastnn train' for every combination of the values given (--hidden 32 "
                    "64 --lr 0.01 0.1 is four trials), in this process, in --jobs N local "
                    "processes or on a Dask cluster (--scheduler), and show them in a table "
                    "sorted by --sort-by. Each trial gives what 'fastnn train' gives with its "
                    "options; a trial that fails is reported and the others go on.",
        formatter_class=_HelpFormatter)
    sweep.add_arguments(p)


def run_sweep(args, started):
    from . import sweep

    with _sigterm_as_interrupt():
        return sweep.run(args, started)


def run_bench(args, started):
    from . import bench

    return bench.run(args)


def _add_output_flags(group, what):
    group.add_argument("--json", action="store_true",
                       help=f"print {what} as one JSON object on the last line of stdout "
                            "(human-readable lines go to stderr)")
    group.add_argument("--quiet", action="store_true",
                       help="no progress bar or per-epoch lines, only the result")


def _arch_text(hidden):
    return "-".join(str(n) for n in [784, *hidden, NUM_CLASSES] if n)


# -- checks that need more than one option --------------------------------------------------------

def check_train_args(args):
    """Resolve option defaults that depend on other options; raise UserError on conflicts."""
    if 0 in args.hidden and args.hidden != [0]:
        raise UserError("--hidden 0 (no hidden layer) cannot be combined with other widths")
    args.hidden = [] if args.hidden == [0] else args.hidden
    if args.dropout and not args.hidden:
        raise UserError("--dropout needs at least one hidden layer (--hidden 0 has none)")
    _check_table_args(args)
    args.default_lr = args.lr is None
    set_default_lr(args)
    if args.optimizer == "adam":
        if args.momentum is not None or args.nesterov:
            raise UserError("--momentum and --nesterov apply to --optimizer sgd only")
    else:
        args.momentum = DEFAULTS["momentum"] if args.momentum is None else args.momentum
        if args.nesterov and args.momentum == 0:
            raise UserError("--nesterov needs --momentum > 0")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UserError(f"--data-dir: no such directory: {args.data_dir}")
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        if path is not None:
            _check_writable_location(option, path)


def set_default_lr(args):
    """The learning rate of the optimizer and loss, unless --lr was given (the loss of a table is
    known once it has been read: this runs again then)."""
    if args.default_lr:
        args.lr = DEFAULTS["adam_lr"] if args.optimizer == "adam" else \
            DEFAULTS["sgd_mse_lr"] if args.loss == "mse" else DEFAULTS["sgd_lr"]


def _check_table_args(args):
    """The options of --data tables: a directory is an IDX dataset, the others need a table."""
    given = getattr(args, "given", set())
    if args.data is not None:
        if args.data_dir is not None:
            raise UserError("give --data or --data-dir, not both")
        if "dataset" in given:
            raise UserError("give --data or --dataset, not both")
        if os.path.isdir(args.data):
            args.data_dir, args.data = args.data, None
    table_only = [name for name in ("target", "ignore", "task", "test_split", "test_data")
                  if getattr(args, name) is not None]
    table_only += ["missing"] if "missing" in given else []
    if args.data is None:
        if table_only:
            raise UserError(f"--{table_only[0].replace('_', '-')} applies to tables (--data FILE)")
        if args.loss == "bce":
            raise UserError("--loss bce needs a target with two classes; MNIST and IDX datasets "
                            "have ten (use cross_entropy or mse)")
        args.loss = args.loss or "cross_entropy"
        return
    for name in ("limit", "scaling"):
        if name in given:
            raise UserError(f"--{name} applies to MNIST and IDX datasets, not to tables (a table's "
                            "numeric columns are standardised)")
    if args.test_split is not None and args.test_data is not None:
        raise UserError("give --test-split or --test-data, not both")
    if args.test_split is not None and args.test_split == 0:
        raise UserError("--test-split must be more than 0 (or give --test-data FILE)")
    if args.test_data is None and args.test_split is None:
        args.test_split = DEFAULT_TEST_SPLIT


def _check_writable_location(option, path):
    # Checked before training so a typo does not cost a whole run.
    if os.path.isdir(path):
        raise UserError(f"{option}: {path} is a directory; give a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"{option}: the directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UserError(f"{option}: cannot write to the directory {directory}")


# -- commands -------------------------------------------------------------------------------------

def run_train(args, started):
    resumed = _prepare_resume(args) if args.resume else None
    check_train_args(args)
    if args.plot:
        from .plotting import require_matplotlib  # fail before training, not after
        require_matplotlib()
    human = _human_stream(args)
    with _sigterm_as_interrupt():
        result, line = train(args, started, human, resumed)
    _report(args, result, line)
    return 0


def train(args, started, human=None, resumed=None):
    """Run ``fastnn train`` with parsed and checked ``args``: (the JSON result, the final line
    for people). ``human``: the stream for progress lines, or None."""
    (x_train, y_train), (x_test, y_test), (scale, shift), table = _training_data(args, human)
    fingerprint = _data_fingerprint(x_train, y_train, scale, shift) if args.save else None
    if resumed is None:
        import fastnn
        n_outputs = NUM_CLASSES if table is None else table.n_outputs
        network = fastnn.Network(_layers(args, x_train.shape[1], n_outputs), loss=_loss(args),
                                 dtype=args.dtype, input_scale=scale, input_shift=shift,
                                 seed=args.seed)
        network.preprocessor = None if table is None else table.preprocessor
        optimizer, state, history = _optimizer(args), None, fastnn.History()
        seconds_before = 0.0
    else:
        network, optimizer, state, history = _restore(args, resumed, fingerprint)
        seconds_before = resumed["train_seconds"]
    checkpointer = (_Checkpointer(args, network, optimizer, fingerprint, history, seconds_before)
                    if args.save else None)
    if human:
        print(_training_line(args, network, len(x_train), history.epochs), file=human, flush=True)
    callbacks = ([checkpointer] if checkpointer else []) + (
        [_epoch_printer(args.epochs, human)] if human else []) + _test_interrupt()

    fit_started = time.perf_counter()
    try:
        history.extend(network.fit(
            x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
            optimizer=optimizer, validation_split=args.val_split,
            early_stopping=args.early_stopping, seed=args.seed, callbacks=callbacks,
            progress=_show_progress(args), schedule=_schedule(args), resume=state))
        train_seconds = time.perf_counter() - fit_started + seconds_before
        if table is not None:
            table.finish(network)  # regression: outputs back in the target's units
        with range_warnings_as_lines():
            scores, score_text = _test_scores(network, x_test, y_test)
        if human and args.early_stopping:
            print(_early_stopping_line(args, history), file=human, flush=True)
        _write_outputs(args, network, history, score_text, human)
    except KeyboardInterrupt as exc:
        raise _interrupted(args, checkpointer, exc) from None

    total_seconds = time.perf_counter() - started
    result = {
        **scores, "epochs": history.epochs,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / history.epochs if history.epochs else 0.0,
        "total_seconds": total_seconds, "parameters": network.n_parameters(),
        "train_samples": len(x_train), "test_samples": len(x_test),
        "best_epoch": history.best_epoch, "stopped_early": history.stopped_early,
        "config": _config_dict(args),
        "history": history.as_dict(),
    }
    if table is not None:
        result.update(table.summary())
    if resumed is not None:
        result["resumed_from_epoch"] = state["epoch"]
    timing = f"{_plural(history.epochs, 'epoch')} in {train_seconds:.1f} s, {total_seconds:.1f} s in all"
    if resumed is not None:
        timing = (f"{_plural(history.epochs, 'epoch')}, {history.epochs - state['epoch']} of them in this "
                  f"run: {train_seconds:.1f} s of training in all, this command {total_seconds:.1f} s")
    return result, f"{score_text}  ({timing})"


def _test_scores(network, x_test, y_test):
    """({JSON keys: test scores}, the line saying them): accuracy and loss of a classifier,
    RMSE, MAE, R^2 (and the MSE as loss) of a regression."""
    if _is_regression(network):
        from .tabular import regression_metrics
        m = regression_metrics(network.predict(x_test), y_test)
        return ({"test_rmse": m["rmse"], "test_mae": m["mae"], "test_r2": m["r2"],
                 "test_loss": m["rmse"] ** 2},
                f"test RMSE {m['rmse']:.4g}  MAE {m['mae']:.4g}  R^2 {m['r2']:.4f}")
    test_loss, test_accuracy = network.evaluate(x_test, y_test)
    return ({"test_accuracy": test_accuracy, "test_loss": test_loss},
            f"test accuracy {100 * test_accuracy:.2f}%  loss {test_loss:.4f}")


def _is_regression(network):
    """A model whose outputs are values, not classes: a regression table, or MSE on one output."""
    from .losses import MSE
    if network.preprocessor is not None:
        return network.preprocessor.task == "regression"
    return isinstance(network.loss, MSE) and network.n_outputs == 1


def _early_stopping_line(args, history):
    watched = "validation loss" if args.val_split else "training loss"
    if history.stopped_early:
        what = (f"early stopping: no lower {watched} for {args.early_stopping} epochs, stopped "
                f"after epoch {history.epochs}")
    else:
        what = f"early stopping: ran all {args.epochs} epochs"
    return f"{what}; kept the weights of epoch {history.best_epoch} (lowest {watched})"


def _training_data(args, human=None):
    """((x_train, y_train), (x_test, y_test), (input_scale, input_shift), table) as the options
    ask; table is None for MNIST and IDX data, else the fastnn._tablecli.TableData."""
    if args.data is not None:
        from ._tablecli import table_training_data
        return table_training_data(args, human)
    from .datasets import pixel_scaling
    # Data first: its transient decompression buffers are freed before the compiled core and
    # BLAS load, which keeps the peak memory lower.
    (x_train, y_train), test = _load_data(args.data_dir)
    _set_threads(args.threads)
    if args.limit is not None:
        if args.limit > len(x_train):
            raise UserError(f"--limit {args.limit} is larger than the {len(x_train)} training "
                            "images")
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    _check_data(args, x_train, test[0])
    try:
        scaling = pixel_scaling(x_train, args.scaling)
    except ValueError as exc:  # e.g. standardizing images that are all one colour
        raise UserError(f"--scaling {args.scaling}: {exc}") from None
    return (x_train, y_train), test, scaling, None


def _write_outputs(args, network, history, score_text, human):
    if args.save:
        network.save(args.save)
        if human:
            print(f"saved to {args.save}", file=human, flush=True)
    if args.plot:
        from .plotting import save_learning_curves
        loss_name = {"cross_entropy": "Cross-entropy loss", "bce": "Binary cross-entropy loss",
                     "mse": "Mean squared error"}[args.loss]
        if _is_regression(network) and network.preprocessor is not None:
            loss_name += " (standardised target)"
        save_learning_curves(history, args.plot, loss_name=loss_name,
                             title=f"{_describe(network)}: {score_text.split('  ')[0]}")


def _check_data(args, x_train, x_test):
    """UserError for data that cannot be trained or tested on as asked."""
    where = args.data_dir or "the MNIST copy"
    if len(x_train) == 0:
        raise UserError(f"no training images in {where}")
    if len(x_test) == 0:
        raise UserError(f"no test images in {where}")
    # The same count Network.fit holds out.
    if args.val_split and max(1, int(len(x_train) * args.val_split)) >= len(x_train):
        raise UserError(f"--val-split {args.val_split:g} leaves no training images out of "
                        f"{len(x_train)}")


def _training_line(args, network, n_train, done):
    import fastnn
    threads = (f"{fastnn.get_num_threads()} threads"
               f"{' (auto)' if args.threads in (None, AUTO_THREADS) else ''}")
    what = f"{_describe(network)} ({network.n_parameters():,} parameters)"
    if args.resume:
        return (f"resuming {what} from {args.resume} after epoch {done}/{args.epochs}: "
                f"{_describe_training(args)}, {threads}")
    rows = "rows" if args.data is not None else "images"
    return f"training {what} on {n_train:,} {rows}: {_describe_training(args)}, {threads}"


def run_evaluate(args, started):
    if not os.path.isfile(args.model):
        raise UserError(f"model file not found: {args.model}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UserError(f"--data-dir: no such directory: {args.data_dir}")
    if args.data is not None and args.data_dir is not None:
        raise UserError("give --data or --data-dir, not both")
    if args.data is not None and os.path.isdir(args.data):
        args.data_dir, args.data = args.data, None
    import fastnn
    _set_threads(args.threads)
    network = fastnn.load(args.model)
    if args.data is not None or network.preprocessor is not None:
        from ._tablecli import evaluation_data
        x_test, y_test, what = evaluation_data(args, network)
    else:
        x_test, y_test = _load_data(args.data_dir, subset="test")
        if len(x_test) == 0:
            raise UserError(f"no test images in {args.data_dir or 'the MNIST copy'}")
        _check_model_fits(network, x_test)
        what = "images"
    with range_warnings_as_lines():
        scores, score_text = _test_scores(network, x_test, y_test)
    result = {**scores, "model": args.model,
              "test_samples": len(x_test), "parameters": network.n_parameters(),
              "seconds": time.perf_counter() - started}
    _report(args, result, f"{score_text}  ({len(x_test):,} {what}, {_describe(network)})")
    return 0


def run_export(args, started):
    if not os.path.isfile(args.model):
        raise UserError(f"model file not found: {args.model}")
    _check_writable_location("--output", args.output)
    from .export_onnx import save_onnx
    from .serialization import load
    network = load(args.model)
    save_onnx(network, args.output)
    print(f"saved the ONNX graph of {args.model} to {args.output}", flush=True)
    return 0


def run_info(args, started):
    from . import _config
    if args.json:
        print(json.dumps(_config.config(), default=str))
    else:
        _config.show_config()
    return 0


# -- interruption and resuming ------------------------------------------------------------------

class _Checkpointer:
    """An epoch-end callback keeping in memory what a checkpoint of that epoch needs (weights,
    optimizer state, generator states, history), so that an interrupted run can save the last
    completed epoch rather than the half-trained weights of the current one."""

    def __init__(self, args, network, optimizer, fingerprint, previous, seconds_before):
        self.args, self.network, self.optimizer = args, network, optimizer
        self.fingerprint = fingerprint
        self.history = _copy_history(previous)
        self.started = time.perf_counter()
        self.seconds_before = seconds_before
        self.snapshot = None

    def __call__(self, epoch_index, logs, network):
        self.history.append(logs)
        snapshot = {
            "epoch": epoch_index + 1,
            "params": [p.copy() for p in network.parameters()],
            "optimizer": self.optimizer.state_dict(),
            "state": network.training_state(),
            "history": self.history.as_dict(),
            "train_seconds": self.seconds_before + time.perf_counter() - self.started,
        }
        self.snapshot = snapshot  # one assignment: an interrupt never leaves it half-made

    def write(self, path):
        """Save the last snapshot to ``path`` (atomically); returns its epoch."""
        from .optim import optimizer_from_state
        snap = self.snapshot
        for dst, src in zip(self.network.parameters(), snap["params"]):
            _copyto(dst, src)
        config = {name: getattr(self.args, name) for name in RUN_OPTIONS + tuple(LATER_RUN_OPTIONS)}
        for name in PATH_OPTIONS:
            if config[name] is not None:
                config[name] = os.path.abspath(config[name])
        from ._threads import get_num_threads
        extra = {"checkpoint": {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config,
            "threads": get_num_threads(),
            "adaptive_threads": self.args.threads in (None, AUTO_THREADS),
            "data": self.fingerprint, "state": snap["state"],
            "history": _finite_or_null(snap["history"]),  # NaN accuracies of a regression
            "train_seconds": snap["train_seconds"],
        }}
        self.network.save(path, optimizer=optimizer_from_state(snap["optimizer"]), extra=extra)
        return snap["epoch"]


def _copyto(dst, src):
    import numpy as np
    np.copyto(dst, src)


def _copy_history(history):
    from .history import History
    return History.from_dict(history.as_dict())


def _interrupted(args, checkpointer, exc):
    """The Interrupted exception to exit with, after saving a checkpoint when one can be."""
    status = 143 if isinstance(exc, _Terminated) else 130
    what = "terminated" if status == 143 else "interrupted"
    if checkpointer is None:
        return Interrupted(f"{what}; nothing saved (with --save PATH an interrupted run saves a "
                           "checkpoint to resume)", status)
    if checkpointer.snapshot is None:
        return Interrupted(f"{what} before the first epoch ended; nothing saved", status)
    with _signals_ignored():  # a second Ctrl-C must not cut the checkpoint short
        epoch = checkpointer.write(args.save)
    return Interrupted(f"{what}; saved a checkpoint of epoch {epoch}/{args.epochs} to {args.save}; "
                       f"continue with: {PROG} train --resume {_quote(args.save)}", status)


class _signals_ignored:
    """Within the block SIGINT and SIGTERM are ignored (main thread only)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.previous = {s: signal.signal(s, signal.SIG_IGN) for s in self.SIGNALS} \
            if _in_main_thread() else {}
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False


def _quote(path):
    import shlex
    return shlex.quote(path)


class _sigterm_as_interrupt:
    """Within the block, SIGTERM raises _Terminated (main thread only), like Ctrl-C raises
    KeyboardInterrupt, so that `kill` also leaves a checkpoint."""

    def __enter__(self):
        self.previous = None
        if _in_main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise _Terminated()

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def _in_main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def _test_interrupt():
    """The test hook: a callback raising KeyboardInterrupt after epoch $FASTNN_TEST_INTERRUPT_AFTER_EPOCH."""
    value = os.environ.get(TEST_INTERRUPT_ENV)
    if not value:
        return []
    after = int(value)

    def interrupt(index, logs, network):
        if index + 1 == after:
            raise KeyboardInterrupt
    return [interrupt]


def _data_fingerprint(x, y, scale, shift):
    """What identifies the training data of a run: count, SHA-256 of images and labels, scaling."""
    import numpy as np
    digest = hashlib.sha256()
    for a in (x, y):
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(memoryview(a).cast("B"))
    return {"train_samples": int(len(x)), "sha256": digest.hexdigest(),
            "input_scale": float(scale), "input_shift": float(shift)}


def _prepare_resume(args):
    """Read the checkpoint named by --resume and put its options into ``args``; returns it."""
    path = args.resume
    if not os.path.isfile(path):
        raise UserError(f"--resume: checkpoint not found: {path}")
    from .serialization import load_checkpoint
    network, optimizer, extra = load_checkpoint(path)
    ckpt = (extra or {}).get("checkpoint")
    if (not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or optimizer is None
            or not isinstance(ckpt.get("config"), dict)):
        raise UserError(f"--resume: {path} is a model but not a training checkpoint (those are "
                        "written when a run with --save is interrupted)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise UserError(f"--resume: {path} is a checkpoint of version {ckpt.get('version')!r}; "
                        f"this fastnn reads version {CHECKPOINT_VERSION}")
    config = {**LATER_RUN_OPTIONS, **ckpt["config"]}
    given = getattr(args, "given", set())
    for name in RUN_OPTIONS + tuple(LATER_RUN_OPTIONS):
        if name not in config:
            raise UserError(f"--resume: {path} lacks the option {name!r}")
        if name == "epochs" and name in given:
            done = (ckpt.get("state") or {}).get("epoch")
            if isinstance(done, int) and args.epochs < done:
                raise UserError(f"--resume: --epochs {args.epochs} is fewer than the {done} epochs "
                                f"{path} has already trained")
            continue  # a resumed run may be extended to more epochs
        if name in given and name not in PATH_OPTIONS:
            value = getattr(args, name)
            if name == "hidden" and value == [0]:
                value = []
            if value != config[name]:
                raise UserError(f"--resume: --{name.replace('_', '-')} {_show(value)} differs from "
                                f"the checkpoint's {_show(config[name])}; a resumed run keeps its "
                                "options")
        if name not in PATH_OPTIONS or name not in given:
            setattr(args, name, config[name])
    if args.threads is None and not ckpt.get("adaptive_threads", True):
        args.threads = ckpt.get("threads")
    if args.save is None:
        args.save = path
    return {"path": path, "network": network, "optimizer": optimizer, "checkpoint": ckpt,
            "train_seconds": float(ckpt.get("train_seconds") or 0.0)}


def _show(value):
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _restore(args, resumed, fingerprint):
    """(network, optimizer, training state, History so far) of the checkpoint, once the data
    is known to be what the run was trained on."""
    from .history import History
    ckpt = resumed["checkpoint"]
    if fingerprint != ckpt.get("data"):
        raise UserError(f"--resume: the training data differs from the data the run in "
                        f"{resumed['path']} was trained on (different files, --limit or "
                        "--scaling)")
    ckpt_threads = ckpt.get("threads")
    if args.threads in (None, AUTO_THREADS) and isinstance(ckpt_threads, int) and ckpt_threads > 0:
        # The thread count of the interrupted run (the layer-by-layer path's results depend on
        # it; the native loop's do not), within the cores this process may use; still adaptive.
        from ._cpulimits import available_cores
        from ._native import core
        core.set_kernel_threads(min(ckpt_threads, available_cores()[0]))
    try:
        previous = History.from_dict(ckpt.get("history"))
    except (TypeError, ValueError) as exc:
        raise UserError(f"--resume: {resumed['path']}: damaged history ({exc})") from None
    state = ckpt.get("state")
    if not isinstance(state, dict) or state.get("epoch") != previous.epochs:
        raise UserError(f"--resume: {resumed['path']}: the training state does not match its history")
    return resumed["network"], resumed["optimizer"], state, previous


# -- pieces of the commands -----------------------------------------------------------------------

def _human_stream(args):
    """Where progress lines go: stdout, stderr when stdout carries JSON, nowhere when quiet."""
    if args.quiet:
        return None
    return sys.stderr if args.json else sys.stdout


def _show_progress(args):
    # A tqdm bar redrawn with carriage returns is only readable on a terminal.
    return not (args.quiet or args.json) and sys.stderr.isatty()


def _set_threads(threads):
    """Pin the thread count when one is given; by default ("auto") fastnn uses all cores and may
    drop to one thread on a busy machine, with the same results (the work is cut by the
    configured count, not by the threads running it)."""
    from . import _cpulimits, _threads
    if threads not in (None, AUTO_THREADS):
        threads, message = _cpulimits.cap(threads, f"--threads {threads}")
        if message:
            _print_warning(message)
        _threads.set_num_threads(threads)


# The dataset last loaded inside loaded_data_kept(), for the next trial of a sweep in this process.
_data_cache = {"key": None, "data": None, "active": 0}
_data_lock = threading.Lock()


@contextlib.contextmanager
def loaded_data_kept():
    """Within the block, runs load their dataset once and keep it (read-only) for the runs that
    follow in this process, as the trials of a sweep do. A --data-dir whose files change is read
    again."""
    with _data_lock:
        _data_cache["active"] += 1
    try:
        yield
    finally:
        with _data_lock:
            _data_cache["active"] -= 1


def _load_data(data_dir, subset="all"):
    """MNIST or the IDX dataset in data_dir: both splits, or only subset="train"/"test"."""
    from . import datasets
    if not _data_cache["active"]:
        return _load_data_uncached(datasets, data_dir, subset)
    key = (data_dir and os.path.abspath(data_dir), subset, _directory_stamp(data_dir))
    with _data_lock:  # one load at a time; the others wait for it and share it
        if _data_cache["key"] != key:
            loaded = _load_data_uncached(datasets, data_dir, subset)
            _read_only(loaded)
            _data_cache.update(key=key, data=loaded)
        return _data_cache["data"]


def _load_data_uncached(datasets, data_dir, subset):
    if data_dir is None:
        return datasets.load_mnist(subset=subset)
    return datasets.load_idx(data_dir, num_classes=NUM_CLASSES, subset=subset)


def _loss(args):
    import fastnn
    return {"cross_entropy": fastnn.SoftmaxCrossEntropy, "bce": fastnn.BinaryCrossEntropy,
            "mse": fastnn.MSE}[args.loss]()


def _directory_stamp(data_dir):
    if data_dir is None:
        return None
    return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                        for e in os.scandir(data_dir) if e.is_file()))


def _read_only(value):
    if isinstance(value, tuple):
        for item in value:
            _read_only(item)
    elif hasattr(value, "setflags"):
        value.setflags(write=False)


def _layers(args, n_inputs, n_outputs=NUM_CLASSES):
    import fastnn
    activation = getattr(fastnn, fastnn.activations.get(args.activation).layer)
    layers, width = [], n_inputs
    for size in args.hidden:
        layers += [fastnn.Linear(width, size, init=args.init, dtype=args.dtype), activation()]
        if args.dropout:
            layers.append(fastnn.Dropout(args.dropout))
        width = size
    layers.append(fastnn.Linear(width, n_outputs, init=args.init, dtype=args.dtype))
    return layers


def _optimizer(args):
    import fastnn
    if args.optimizer == "adam":
        return fastnn.Adam(lr=args.lr, weight_decay=args.weight_decay)
    return fastnn.SGD(lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                      weight_decay=args.weight_decay)


def _schedule(args):
    import fastnn
    if args.schedule == "step":
        return fastnn.StepLR(max(1, args.epochs // STEP_FRACTION), gamma=STEP_GAMMA)
    if args.schedule == "exponential":
        return fastnn.ExponentialLR(EXPONENTIAL_GAMMA)
    if args.schedule == "cosine":
        return fastnn.CosineLR(args.epochs)
    return None


def _describe(network):
    from .layers import Activation, Linear
    widths = [network.n_features] + [l.out_features for l in network.layers if isinstance(l, Linear)]
    activations = sorted({l.name for l in network.layers if isinstance(l, Activation)})
    if activations:
        kind = f"{'/'.join(activations)} MLP"
    else:  # one Linear layer: named by its loss
        from .losses import MSE, BinaryCrossEntropy
        kind = ("linear regression" if isinstance(network.loss, MSE) else
                "logistic regression" if isinstance(network.loss, BinaryCrossEntropy) else
                "softmax regression")
    return f"{'-'.join(map(str, widths))} {kind}"


def _plural(count, noun):
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _describe_training(args):
    parts = [f"{args.optimizer} lr {args.lr:g}"]
    if args.optimizer == "sgd" and args.momentum:
        parts[0] += f" {'nesterov ' if args.nesterov else ''}momentum {args.momentum:g}"
    if args.weight_decay:
        parts[0] += f" weight decay {args.weight_decay:g}"
    parts += [f"batch {args.batch_size}", _plural(args.epochs, "epoch")]
    if args.schedule != "none":
        parts.append(f"{args.schedule} schedule")
    if args.val_split:
        parts.append(f"{args.val_split:g} held out for validation")
    from .initializers import default_init
    parts += [f"{args.init or default_init(args.activation)} init",
              f"dropout {args.dropout:g}" if args.dropout else "no dropout", args.dtype,
              "columns standardised" if args.data is not None else
              f"pixels {'/255' if args.scaling == 'unit' else 'standardised'}",
              f"loss {args.loss}"]
    return ", ".join(parts)


def _epoch_printer(epochs, stream):
    width = len(str(epochs))

    def print_epoch(index, logs, network):
        parts = [f"epoch {index + 1:>{width}}/{epochs}", f"loss {logs['train_loss']:.4f}"]
        if not math.isnan(logs["train_accuracy"]):  # NaN: a regression has no accuracy
            parts.append(f"acc {100 * logs['train_accuracy']:.2f}%")
        if "val_loss" in logs:
            parts.append(f"val_loss {logs['val_loss']:.4f}")
            if not math.isnan(logs["val_accuracy"]):
                parts.append(f"val_acc {100 * logs['val_accuracy']:.2f}%")
        parts += [f"lr {logs['lr']:.3g}", f"{logs['seconds']:.2f} s"]
        print("  ".join(parts), file=stream, flush=True)

    return print_epoch


def _check_model_fits(network, x_test):
    from .losses import MSE, SoftmaxCrossEntropy
    if not isinstance(network.loss, (SoftmaxCrossEntropy, MSE)) or network.n_outputs < 2:
        raise UserError(f"the model's loss is {type(network.loss).__name__} with "
                        f"{network.n_outputs} output(s); the {NUM_CLASSES} classes of an IDX "
                        "dataset need a classifier trained with cross_entropy or mse")
    if network.n_features != x_test.shape[1]:
        raise UserError(f"the model expects {network.n_features} inputs per example but the test "
                        f"images have {x_test.shape[1]} pixels")
    if network.n_outputs < NUM_CLASSES:
        raise UserError(f"the model has {network.n_outputs} outputs; the labels need {NUM_CLASSES}")


def _config_dict(args):
    from ._threads import get_num_threads
    return {
        "dataset": args.dataset, "data_dir": args.data_dir, "limit": args.limit,
        "val_split": args.val_split, "scaling": args.scaling, "hidden": args.hidden,
        "activation": args.activation, "init": args.init, "dropout": args.dropout,
        "dtype": args.dtype, "epochs": args.epochs, "batch_size": args.batch_size,
        "optimizer": args.optimizer, "lr": args.lr, "momentum": args.momentum,
        "nesterov": args.nesterov, "weight_decay": args.weight_decay, "schedule": args.schedule,
        "early_stopping": args.early_stopping, "seed": args.seed, "threads": get_num_threads(),
        "data": args.data, "target": args.target, "ignore": args.ignore, "task": args.task,
        "missing": args.missing,
        "test_split": args.test_split, "test_data": args.test_data, "loss": args.loss,
        "adaptive_threads": args.threads in (None, AUTO_THREADS),
        "save": args.save, "plot": args.plot,
    }


def _report(args, result, line):
    """The final line for people (stdout, or stderr under --json) and the JSON object."""
    if args.json:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)
        print(json.dumps(_finite_or_null(result), allow_nan=False), flush=True)
    else:
        print(line, flush=True)


def _finite_or_null(value):
    """JSON has no NaN/Inf: such floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


# -- entry point ----------------------------------------------------------------------------------

def run_predict(args, started):
    from ._tablecli import run_predict as predict
    return predict(args)


COMMANDS = {"train": run_train, "sweep": run_sweep, "evaluate": run_evaluate,
            "predict": run_predict, "export": run_export, "info": run_info, "bench": run_bench}


def main(argv=None):
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    started = time.perf_counter()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "train":
        args.given = _given_options(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        _print_error("a command is required: train, sweep, evaluate, predict, export, info or bench (see "
                     "'fastnn --help')")
        return 2
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ReaderMayLeave(sys.stdout), _ReaderMayLeave(sys.stderr)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _print_warning
            return COMMANDS[args.command](args, started)
    except Interrupted as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr, flush=True)
        return exc.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        message = _user_error_message(exc)
        if message is None:
            raise
        _print_error(message)
        return 2
    finally:
        sys.stdout, sys.stderr = streams


class _ReaderMayLeave:
    """An output stream whose reader may go away (``fastnn train | head -1``): after a broken
    pipe the rest of the output is discarded and the command goes on, so a run still finishes
    and saves its model."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard_the_rest()
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard_the_rest()

    def _discard_the_rest(self):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _given_options(argv):
    """The dests of the options given explicitly on the command line (parsed again with every
    default suppressed, so an option is present only when it was typed)."""
    parser = build_parser()
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            for option in sub._actions:
                option.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _user_error_message(exc):
    """The one-line message for an error caused by the user's input, or None for a bug."""
    if isinstance(exc, UserError):
        return str(exc)
    from .errors import MissingExtra, TableError
    if isinstance(exc, (MissingExtra, TableError)):
        return str(exc)
    if isinstance(exc, OSError):  # missing, unreadable or unwritable files
        if exc.filename is not None and exc.strerror:
            return f"{exc.strerror}: {exc.filename}"
        return str(exc)
    from .datasets import DatasetError
    from .errors import EnvironmentSettingError, ModelFormatError, TrainingDivergedError
    if isinstance(exc, (DatasetError, ModelFormatError, TrainingDivergedError, EnvironmentSettingError)):
        return str(exc)
    return None


def _print_warning(message, *showwarning_args, **showwarning_kwargs):
    """A warning (an exploding loss, a capped thread count, ...) as one line on stderr; also
    serves as ``warnings.showwarning``, whose other arguments it ignores."""
    print(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def _print_error(message):
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


class range_warnings_as_lines:
    """Within the block, the RuntimeWarnings of predictions far from the training range are
    printed once each as one line ``fastnn: warning: ...`` on stderr."""

    def __enter__(self):
        import warnings
        self._catcher = warnings.catch_warnings(record=True)
        self._caught = self._catcher.__enter__()
        warnings.simplefilter("always", RuntimeWarning)
        return self

    def __exit__(self, *exc):
        self._catcher.__exit__(*exc)
        seen = set()
        for w in self._caught:
            text = " ".join(str(w.message).split())
            if issubclass(w.category, RuntimeWarning) and text not in seen:
                seen.add(text)
                _print_warning(text)
        return False
