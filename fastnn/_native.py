"""Loads the compiled core, turning a missing or broken build into an ImportError that says
what is happening and the one command that fixes it."""
import glob
import os
import sys

_HOW_TO_BUILD = (
    "fastnn's compiled core (fastnn._core) could not be imported: {reason}.\n"
    "Build it from the repository root with\n"
    "    pip install -e .\n"
    "which needs a C compiler (gcc or clang), Python headers and network access to PyPI for the\n"
    "build requirements (Cython, numpy, scipy)."
)

_SHADOWED = (
    "fastnn's compiled core (fastnn._core) could not be imported: the extension has not been "
    "built in {here}.\n"
    "Python is importing fastnn from that source folder (the current directory comes first on\n"
    "the module path), which hides the built fastnn installed in {installed}.\n"
    "Fix it with one of:\n"
    "    pip install -e .        (in {root}: builds the extension in the source folder)\n"
    "    run Python from another folder than {root}"
)


def _installed_elsewhere(here):
    """The folder of another fastnn on sys.path that has a built core, or None."""
    for entry in sys.path:
        candidate = os.path.join(os.path.abspath(entry or os.curdir), "fastnn")
        if os.path.abspath(candidate) != here and glob.glob(os.path.join(candidate, "_core.*")):
            return candidate
    return None


try:
    from . import _core as core
except ImportError as exc:
    here = os.path.dirname(os.path.abspath(__file__))
    built = [name for name in os.listdir(here) if name.startswith("_core.")]
    installed = None if built else _installed_elsewhere(here)
    if installed is not None:
        message = _SHADOWED.format(here=here, installed=installed, root=os.path.dirname(here))
    else:
        reason = f"{exc}" if built else "the extension has not been built"
        message = _HOW_TO_BUILD.format(reason=reason)
    raise ImportError(message) from exc

from ._machine import configure as _configure  # noqa: E402  (needs the loaded core)

_configure(core)
