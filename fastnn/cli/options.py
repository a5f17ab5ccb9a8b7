"""The options of the commands: argument types and parser classes, the run options that
``train`` and ``sweep`` share, the options several commands take, and the checks that need more
than one option. Standard library only."""
import argparse
import os
import tempfile

from .._argtypes import (finite, non_negative_float, non_negative_int, positive_float, positive_int,
                         unit_interval)
from .output import UserError, print_error, print_warning

from .. import loss_registry  # the --loss choices (no numpy import)
from ..activations import NAMES as ACTIVATIONS  # the --activation choices (no numpy import)
from ..activations import REGISTRY as _ACTIVATION_ENTRIES

INITS = ("lecun", "he", "xavier", "uniform")
SCHEDULES = ("none", "step", "exponential", "cosine")
SCALINGS = ("unit", "standardize")
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


# -- argument types: each returns the value or raises ArgumentTypeError ---------------------------

def thread_count(text):
    """A positive integer, or "auto"."""
    return AUTO_THREADS if text == AUTO_THREADS else positive_int(text)


def held_out_share(text):
    """A number in (0, 1): the share of a table's rows held out for the test."""
    value = finite(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}; or give "
                                         "--test-data FILE")
    return value


# -- parsers ----------------------------------------------------------------------------------------

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where there is a default worth showing."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, but errors are the one-line ``fastnn: error: ...`` (subparsers inherit this)."""

    def error(self, message):
        print_error(f"{message} (see '{self.prog} --help')")
        self.exit(2)


class RaisingParser(Parser):
    """A parser whose errors raise UserError (for the trials of a sweep)."""

    def error(self, message):
        raise UserError(message)


def given_options(parser, argv):
    """The dests of the options given explicitly in ``argv``: parsed again by ``parser`` (a
    fresh one: this changes it) with every default suppressed, so an option is present only
    when it was typed."""
    def suppress_defaults(p):
        for action in p._actions:
            action.default = argparse.SUPPRESS
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    suppress_defaults(sub)
    suppress_defaults(parser)
    return set(vars(parser.parse_args(argv)))


# -- options ---------------------------------------------------------------------------------------

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
    data.add_argument("--test-split", type=held_out_share, metavar="F",
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
                            f"{' or '.join(e.name for e in _ACTIVATION_ENTRIES if e.init == 'he')}, "
                            "else lecun)")
    model.add_argument("--dropout", type=unit_interval, default=0.0, metavar="P",
                       help="dropout probability after each hidden activation")
    model.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="parameter and computation dtype")
    model.add_argument("--loss", choices=loss_registry.NAMES,
                       help="default: cross_entropy for a classification, mse for a regression; "
                            "bce is one sigmoid output for a target with two classes")

    training = p.add_argument_group("training")
    training.add_argument("--epochs", type=positive_int, default=d["epochs"], metavar="N",
                          help="passes over the training images")
    training.add_argument("--batch-size", type=positive_int, default=d["batch_size"], metavar="N",
                          help="examples per gradient step")
    training.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd",
                          help="each runs in the compiled training engine; adamw is Adam with "
                               "decoupled weight decay")
    training.add_argument("--lr", type=positive_float, metavar="LR",
                          help=f"learning rate (default: {d['sgd_lr']} for sgd, "
                               f"{d['sgd_mse_lr']} for sgd with --loss mse, "
                               f"{d['adam_lr']} for adam and adamw)")
    training.add_argument("--momentum", type=unit_interval, metavar="M",
                          help=f"SGD momentum (default: {d['momentum']})")
    training.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    training.add_argument("--weight-decay", type=non_negative_float, default=0.0, metavar="L2",
                          help="L2 penalty added to the gradients (for adamw: the decoupled "
                               "decay, p -= lr * L2 * p each step; 0 unless given, also for "
                               "adamw, whose Python default is 0.01)")
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


def add_output_flags(group, what):
    group.add_argument("--json", action="store_true",
                       help=f"print {what} as one JSON object on the last line of stdout "
                            "(human-readable lines go to stderr)")
    group.add_argument("--quiet", action="store_true",
                       help="no progress bar or per-epoch lines, only the result")


def add_threads_option(p):
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="threads for fastnn's kernels and BLAS (default: $FASTNN_NUM_THREADS, "
                        "$OMP_NUM_THREADS or the cores this process may use)")


def set_threads(threads):
    """Pin the thread count when one is given; by default ("auto") fastnn uses all cores and may
    drop to one thread on a busy machine, with the same results (the work is cut by the
    configured count, not by the threads running it)."""
    from .. import _cpulimits, _threads
    if threads not in (None, AUTO_THREADS):
        threads, message = _cpulimits.cap(threads, f"--threads {threads}")
        if message:
            print_warning(message)
        _threads.set_num_threads(threads)


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
    if args.optimizer in ("adam", "adamw"):
        if args.momentum is not None or args.nesterov:
            raise UserError("--momentum and --nesterov apply to --optimizer sgd only")
    else:
        args.momentum = DEFAULTS["momentum"] if args.momentum is None else args.momentum
        if args.nesterov and args.momentum == 0:
            raise UserError("--nesterov needs --momentum > 0")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UserError(f"--data-dir: no such directory: {args.data_dir}")
    inputs = [("--data", args.data), ("--test-data", args.test_data), *idx_inputs(args.data_dir)]
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        if path is not None:
            check_writable_location(option, path, inputs)
            inputs.append((option, path))  # the plot must not replace the saved model either


def set_default_lr(args):
    """The learning rate of the optimizer and loss, unless --lr was given (the loss of a table is
    known once it has been read: this runs again then)."""
    if args.default_lr:
        args.lr = DEFAULTS["adam_lr"] if args.optimizer in ("adam", "adamw") else \
            DEFAULTS["sgd_mse_lr"] if args.loss == "mse" else DEFAULTS["sgd_lr"]


def _check_table_args(args):
    """The options of --data tables: a directory is an IDX dataset, the others need a table."""
    given = getattr(args, "given", set())
    if args.data is not None:
        if args.data_dir is not None:
            raise UserError("give --data or --data-dir, not both")
        if "dataset" in given:
            raise UserError("give --data or --dataset, not both")
        check_exists("--data", args.data)
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
    if args.test_data is not None:
        check_exists("--test-data", args.test_data)
    if args.test_data is None and args.test_split is None:
        args.test_split = DEFAULT_TEST_SPLIT


def check_exists(option, path):
    if not os.path.exists(path):
        raise UserError(f"{option}: no such file or directory: {path}")


def check_writable_location(option, path, inputs=()):
    """UserError naming ``option`` unless ``path`` can be written: a file name (not a directory,
    FIFO, device or socket), in an existing directory where a file can be created, and not the
    same file as any of ``inputs``, the (what, path) pairs the command reads (a None path is
    skipped). Checked before any work, so that a typo costs no run and loses no file."""
    from .._atomic import check_replaceable
    try:
        check_replaceable(path, option)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # e.g. a component of the path is a file
        raise UserError(f"{option}: {exc.strerror}: {path}") from None
    directory = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(directory):
        raise UserError(f"{option}: the directory {directory} does not exist")
    try:  # the permission bits do not tell (root, read-only mounts, /proc)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UserError(f"{option}: cannot write to the directory {directory} "
                        f"({exc.strerror})") from None
    for what, read in inputs:
        if read is not None and _same_file(path, read):
            raise UserError(f"{option}: {path} is the same file as {what} {read}; writing "
                            "there would replace it (give another path)")


def idx_inputs(directory, subset="all"):
    """The (what, path) pairs of the IDX files a command reads from ``directory`` (subset: as
    load_idx takes it), for the ``inputs`` of check_writable_location; none when ``directory``
    is None or not a directory."""
    if directory is None or not os.path.isdir(directory):
        return []
    from ..datasets.idx import idx_files  # loads numpy: only when a directory is read
    return [("the IDX file", path) for path in idx_files(directory, subset)]


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)

