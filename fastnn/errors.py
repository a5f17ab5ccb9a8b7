"""Exceptions raised by fastnn's training and model files."""


class TrainingDivergedError(ValueError):
    """The loss or the gradients became non-finite during ``Network.fit``.

    Attributes ``epoch`` and ``step`` (both 1-based) locate the failing step; ``loss`` is the
    batch loss at that step (possibly finite when a gradient overflowed). The network keeps the
    weights it had before that step.
    """

    def __init__(self, message, epoch=None, step=None, loss=None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.loss = loss


class ModelFormatError(ValueError):
    """A model file cannot be read: not a fastnn model, damaged, or from a newer format."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class EnvironmentSettingError(ValueError):
    """An environment variable that fastnn reads (``FASTNN_SIMD``, ``FASTNN_GEMM``, ...) holds a
    value it does not accept; the message names the variable, the accepted values and the value."""


class TrainingUnstableWarning(RuntimeWarning):
    """The training loss grew past ``EXPLOSION_FACTOR`` times the loss before training (see
    ``Network.fit``): the learning rate is most likely too high. Turn it into an error with
    ``warnings.simplefilter("error", TrainingUnstableWarning)``."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    def __init__(self, what, extra):
        super().__init__(f"{what} (not installed): run pip install \".[{extra}]\" in the "
                         "fastnn repository")
        self.extra = extra


class TableError(ValueError):
    """A table cannot be read or used as asked (empty, a column missing or of the wrong type,
    an unknown category, ...); the message names the file or the column."""
