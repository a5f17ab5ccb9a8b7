"""Ctrl-C and SIGTERM: both stop a command as a KeyboardInterrupt, which the command turns into
an ``Interrupted`` (what was saved, the exit status) after saving what it can. Standard library
only."""
import os
import signal
import threading

# For the tests only: raise KeyboardInterrupt at the end of this (1-based) epoch, as a Ctrl-C would.
TEST_INTERRUPT_ENV = "FASTNN_TEST_INTERRUPT_AFTER_EPOCH"


class Interrupted(KeyboardInterrupt):
    """Training was interrupted; ``message`` says what was saved, ``status`` is the exit status."""

    def __init__(self, message, status=130):
        super().__init__(message)
        self.message, self.status = message, status


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that it is handled like Ctrl-C."""


class sigterm_as_interrupt:
    """Within the block, SIGTERM raises Terminated (main thread only), like Ctrl-C raises
    KeyboardInterrupt, so that `kill` also leaves a checkpoint."""

    def __enter__(self):
        self.previous = None
        if in_main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise Terminated()

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


class signals_ignored:
    """Within the block SIGINT and SIGTERM are ignored (main thread only)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.previous = {s: signal.signal(s, signal.SIG_IGN) for s in self.SIGNALS} \
            if in_main_thread() else {}
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False


def in_main_thread():
    return threading.current_thread() is threading.main_thread()


def interrupt_for_tests():
    """The test hook: a callback raising KeyboardInterrupt after epoch $FASTNN_TEST_INTERRUPT_AFTER_EPOCH."""
    value = os.environ.get(TEST_INTERRUPT_ENV)
    if not value:
        return []
    after = int(value)

    def interrupt(index, logs, network):
        if index + 1 == after:
            raise KeyboardInterrupt
    return [interrupt]
