"""The ``fastnn`` command line: ``train``, ``sweep``, ``evaluate``, ``predict``, ``export``, ``info`` and ``bench``.

Arguments are parsed and checked with the standard library only; numpy and the compiled core
are imported afterwards, so ``fastnn --help`` and argument errors answer at once. User errors
(bad values, missing or damaged files, diverged training, a network or data too large for the
memory) print one line starting with ``fastnn: error:`` to stderr and exit with status 2;
anything else is a bug and keeps its traceback.

Interrupting ``fastnn train --save PATH`` (Ctrl-C, SIGINT or SIGTERM) writes a checkpoint of the
last completed epoch to PATH and exits with status 130 (143 for SIGTERM); ``fastnn train --resume
PATH`` continues it and, with the same thread count, ends with the weights of an uninterrupted run.

One module per command (``train``, ``sweep``, ``saved_model`` for evaluate, predict and export,
``info``, ``bench``), and per concern: ``options`` (the parser classes and the shared options),
``output`` (the error and warning lines, the result and its JSON), ``checkpoint`` (interrupt and
resume), ``interrupt`` (Ctrl-C and SIGTERM), ``data`` and ``tables`` (what a run trains and
tests on), ``describe`` (the lines for people).
"""
import sys
import time
import warnings

from . import bench, info, saved_model, sweep, train
from .interrupt import Interrupted
from .options import Parser, given_options
from .output import PROG, ReaderMayLeave, print_error, print_warning, user_error_message

COMMANDS = {"train": train.run, "sweep": sweep.run, "evaluate": saved_model.evaluate,
            "predict": saved_model.predict, "export": saved_model.export, "info": info.run,
            "bench": bench.run}


def build_parser(parser_class=Parser):
    parser = parser_class(prog=PROG, description="Small neural networks on the CPU, fast.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train.add_parser(commands)
    sweep.add_parser(commands)
    saved_model.add_parsers(commands)
    info.add_parser(commands)
    bench.add_parser(commands)
    return parser


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
        args.given = given_options(build_parser(), argv)
    if args.command is None:
        *others, last = COMMANDS
        print_error(f"a command is required: {', '.join(others)} or {last} (see 'fastnn --help')")
        return 2
    # A reader that leaves early (`fastnn ... | head -1`) stops no command: the rest of the
    # output is discarded and the command finishes with its own status.
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = ReaderMayLeave(sys.stdout), ReaderMayLeave(sys.stderr)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = print_warning
            return COMMANDS[args.command](args, started)
    except Interrupted as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr, flush=True)
        return exc.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        message = user_error_message(exc)
        if message is None:
            raise
        print_error(message)
        return 2
    finally:
        sys.stdout, sys.stderr = streams
