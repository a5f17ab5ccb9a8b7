"""What the command line prints besides progress: the one-line ``fastnn: error: ...`` and
``fastnn: warning: ...``, the final result line and its JSON object, and the output streams
whose reader may leave early. Standard library only."""
import json
import math
import os
import sys
import warnings

PROG = "fastnn"


class UserError(Exception):
    """A problem with what the user asked for: reported as one line, exit status 2."""


def print_warning(message, *showwarning_args, **showwarning_kwargs):
    """A warning (an exploding loss, a capped thread count, ...) as one line on stderr; also
    serves as ``warnings.showwarning``, whose other arguments it ignores."""
    print(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def print_error(message):
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def user_error_message(exc):
    """The one-line message for an error caused by the user's input, or None for a bug."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, MemoryError):  # e.g. numpy's "Unable to allocate 584. GiB for an array ..."
        return f"not enough memory: {exc}" if str(exc) else "not enough memory"
    from ..errors import MissingExtra, TableError
    if isinstance(exc, (MissingExtra, TableError)):
        return str(exc)
    if isinstance(exc, OSError):  # missing, unreadable or unwritable files
        if exc.filename is not None and exc.strerror:
            return f"{exc.strerror}: {exc.filename}"
        return str(exc)
    from ..datasets import DatasetError
    from ..errors import EnvironmentSettingError, ModelFormatError, TrainingDivergedError
    if isinstance(exc, (DatasetError, ModelFormatError, TrainingDivergedError, EnvironmentSettingError)):
        return str(exc)
    return None


class range_warnings_as_lines:
    """Within the block, the RuntimeWarnings of predictions far from the training range are
    held; after it, each is shown once by the ``warnings.showwarning`` in force: the command
    line's one line ``fastnn: warning: ...`` on stderr, or in a trial of a sweep the record of
    the trial's warnings, which the sweep prints naming the trial."""

    def __enter__(self):
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
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        return False


class ReaderMayLeave:
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


def human_stream(args):
    """Where progress lines go: stdout, stderr when stdout carries JSON, nowhere when quiet."""
    if args.quiet:
        return None
    return sys.stderr if args.json else sys.stdout


def show_progress(args):
    # A tqdm bar redrawn with carriage returns is only readable on a terminal.
    return not (args.quiet or args.json) and sys.stderr.isatty()


def report(args, result, line):
    """The final line for people (stdout, or stderr under --json) and the JSON object."""
    if args.json:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)
        print(json.dumps(finite_or_null(result), allow_nan=False), flush=True)
    else:
        print(line, flush=True)


def finite_or_null(value):
    """JSON has no NaN/Inf: such floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value
