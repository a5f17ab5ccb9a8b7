"""Learning curves as a PNG, for ``fastnn train --plot``.

matplotlib is an optional extra (``pip install fastnn[plot]``): it is imported only here, only
when asked, and drawn with the Agg canvas so no display or pyplot state is involved.
"""
from ._atomic import atomic_write

INSTALL_HINT = ("--plot needs matplotlib, which is not installed: install matplotlib "
                "(pip install matplotlib, or pip install 'fastnn[plot]')")


class MatplotlibMissing(ImportError):
    """matplotlib cannot be imported; the message says how to install it."""


def require_matplotlib():
    """Import matplotlib's Figure and Agg canvas; raise MatplotlibMissing if that fails."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MatplotlibMissing(INSTALL_HINT) from exc
    return Figure, FigureCanvasAgg


def save_learning_curves(history, path, title=None):
    """Write loss and accuracy per epoch (train, and validation when present) to ``path`` as PNG.

    history: a fastnn History. The file is replaced atomically.
    """
    Figure, FigureCanvasAgg = require_matplotlib()
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = list(range(1, history.epochs + 1))
    marker = "o" if len(epochs) <= 30 else None

    _draw(loss_axes, epochs, history.train_loss, history.val_loss, marker,
          "loss", "Cross-entropy loss")
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
