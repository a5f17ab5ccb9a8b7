"""Learning curves as a PNG, for ``fastnn train --plot``.

matplotlib is an optional extra (``pip install ".[plot]"`` in the repository): it is imported
only here, only when asked, and drawn with the Agg canvas so no display or pyplot state is
involved.
"""
import math

from ._atomic import atomic_write
from .errors import MissingExtra


class MatplotlibMissing(MissingExtra):
    """matplotlib cannot be imported; the message says how to install it."""

    def __init__(self):
        super().__init__("--plot needs matplotlib", "plot")


def require_matplotlib():
    """Import matplotlib's Figure and Agg canvas; raise MatplotlibMissing if that fails."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MatplotlibMissing() from exc
    return Figure, FigureCanvasAgg


def save_learning_curves(history, path, title=None, loss_name="Cross-entropy loss"):
    """Write loss and accuracy per epoch (train, and validation when present) to ``path`` as PNG;
    the loss alone when there is no accuracy (a regression).

    history: a fastnn History. The file is replaced atomically.
    """
    Figure, FigureCanvasAgg = require_matplotlib()
    has_accuracy = not all(math.isnan(a) for a in history.train_accuracy)
    figure = Figure(figsize=(10 if has_accuracy else 5, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if has_accuracy else 1)
    loss_axes, accuracy_axes = axes if has_accuracy else (axes, None)
    epochs = list(range(1, history.epochs + 1))
    marker = "o" if len(epochs) <= 30 else None

    _draw(loss_axes, epochs, history.train_loss, history.val_loss, marker, "loss", loss_name)
    if has_accuracy:
        _draw(accuracy_axes, epochs, [100 * a for a in history.train_accuracy],
              [100 * a for a in history.val_accuracy], marker, "accuracy (%)", "Accuracy")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    with atomic_write(path) as f:
        figure.savefig(f, format="png")


def _draw(axes, epochs, train, validation, marker, ylabel, title):
    axes.plot(epochs, train, marker=marker, label="train")
    if validation:
        axes.plot(epochs, validation, marker=marker, label="validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    if len(epochs) == 1:
        axes.set_xticks(epochs)


def save_sweep_curves(curves, path, ylabel, title=None):
    """Overlay several runs' per-epoch curves in one PNG at ``path`` (replaced atomically).

    curves: a list of (legend label, list of values per epoch).
    """
    Figure, FigureCanvasAgg = require_matplotlib()
    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    longest = max(len(values) for _, values in curves)
    marker = "o" if longest <= 30 else None
    for label, values in curves:
        axes.plot(range(1, len(values) + 1), values, marker=marker, label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    axes.xaxis.get_major_locator().set_params(integer=True)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    with atomic_write(path) as f:
        figure.savefig(f, format="png")
