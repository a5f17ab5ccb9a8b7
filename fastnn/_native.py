"""Loads the compiled core, turning a missing or broken build into an ImportError that says
how to build it."""
import os

_HOW_TO_BUILD = (
    "fastnn's compiled core (fastnn._core) could not be imported: {reason}.\n"
    "Build it from the repository root with\n"
    "    pip install .            (or, for development:  pip install -e \".[test]\")\n"
    "which needs a C compiler (gcc or clang), Python headers and network access to PyPI for the\n"
    "build requirements (Cython, numpy, scipy). If you are running from a source checkout\n"
    "without installing, build in place with:  python setup.py build_ext --inplace"
)

try:
    from . import _core as core
except ImportError as exc:
    here = os.path.dirname(os.path.abspath(__file__))
    built = [name for name in os.listdir(here) if name.startswith("_core.")]
    reason = f"{exc}" if built else "the extension has not been built"
    raise ImportError(_HOW_TO_BUILD.format(reason=reason)) from exc

from ._machine import configure as _configure  # noqa: E402  (needs the loaded core)

_configure(core)
