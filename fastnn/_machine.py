"""The machine fastnn runs on, and the choices the compiled core makes from it once per
process: the SIMD path of the elementwise kernels, the BLAS library its products call and how
matrix products are cut into BLAS calls.

The choices are fixed when the core loads (never re-measured), so two runs on one machine with
the same environment make the same calls and give the same bits. Three environment switches
override them, for tests and for comparing the paths:

* ``FASTNN_SIMD=auto|avx2_fma|generic``: the kernels' SIMD path (``generic`` runs on any CPU).
* ``FASTNN_GEMM=auto|tiled|blocked|direct|plain``: ``direct`` computes the small products of
  small networks (one output column or row, a shared dimension of at most 16) in fastnn's own
  kernels and makes one BLAS call for each other product (``src_c/direct_gemm.h``); ``tiled``
  does the same and also cuts the larger products into small whole-k BLAS calls
  (``src_c/small_gemm.h``); ``blocked`` also computes the larger products of a training step
  (up to 2^20 multiply-adds) in fastnn's own register-blocked kernel; ``plain`` makes one BLAS
  call per product. Every strategy but ``plain`` also computes the training loop's input-layer
  products from the nonzero inputs alone where they are mostly zeros (images on a blank
  background, one-hot columns; the rule is in ``src_c/mlp.c``), which gives the bits of fastnn's
  own dense kernels. ``auto`` picks ``tiled`` for OpenBLAS kernels with an unpacked
  small-matrix path, ``blocked`` for the other OpenBLAS kernels, ``direct`` for other BLAS
  libraries, each on the ``avx2_fma`` SIMD path, and ``plain`` on the generic path.
* ``FASTNN_BLAS=auto|numpy|scipy``: the BLAS library the products call. ``numpy`` is the
  OpenBLAS numpy ships (64-bit integers, ``scipy_sgemm_64_``); ``scipy`` is the one scipy ships,
  through ``scipy.linalg.cython_blas``. ``auto`` takes numpy's where it is found (it is the
  newer OpenBLAS in the wheels, and faster at the shapes of small networks: see BENCHMARKS.md,
  "Which OpenBLAS"), else scipy's.
"""
import os
import platform

from .errors import EnvironmentSettingError

SIMD_CHOICES = ("auto", "avx2_fma", "generic")
GEMM_CHOICES = ("auto", "tiled", "blocked", "direct", "plain")
BLAS_CHOICES = ("auto", "numpy", "scipy")
# The Fortran gemm routines of numpy's OpenBLAS wheels (scipy-openblas64: ILP64, symbol prefix
# scipy_ and suffix 64_).
_NUMPY_OPENBLAS_GEMM = ("scipy_sgemm_64_", "scipy_dgemm_64_")

# OpenBLAS cores (lower case, as openblas_get_corename reports them) whose sgemm/dgemm run
# small products without packing the operands: its AVX-512 kernels. Elsewhere (Haswell and
# Zen kernels, ARM, MKL, Accelerate) every call packs, and one call per product (beside
# fastnn's own kernels for the small shapes, as on every machine) is faster.
UNPACKED_SMALL_GEMM_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})

# What decided the product strategy (the strategy itself lives in the core: small_gemm_enabled
# and direct_gemm_enabled).
_state = {"gemm_source": None, "blas": None, "blas_source": None}


def _switch(name, choices):
    value = os.environ.get(name, "").strip().lower() or "auto"
    if value not in choices:
        raise EnvironmentSettingError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def blas_libraries():
    """threadpoolctl's description of every loaded BLAS library (a list of dicts)."""
    from threadpoolctl import threadpool_info

    return [info for info in threadpool_info() if info.get("user_api") == "blas"]


def _shipped_by(lib, package):
    """Whether the BLAS library ``lib`` (a threadpoolctl dict) is the one ``package`` ships."""
    return os.path.basename(os.path.dirname(lib.get("filepath", ""))).startswith(package)


def blas_called(libraries=None, blas=None):
    """The BLAS libraries fastnn's core calls: numpy's OpenBLAS when the core calls it (``blas``
    "numpy"; None: the current choice, see ``FASTNN_BLAS``), else the one scipy loaded
    (``scipy.linalg.cython_blas``); the first loaded one when none is recognisably that."""
    libraries = blas_libraries() if libraries is None else libraries
    package = blas or _state["blas"] or "scipy"
    called = [lib for lib in libraries if _shipped_by(lib, package)]
    return called or libraries[:1]


def numpy_openblas_gemm(libraries):
    """(sgemm, dgemm) addresses of numpy's OpenBLAS's ILP64 Fortran gemm routines, or None when
    numpy's BLAS is not that OpenBLAS (another build, MKL, Accelerate...)."""
    import ctypes

    for lib in libraries:
        if lib.get("internal_api") == "openblas" and _shipped_by(lib, "numpy"):
            try:
                handle = ctypes.CDLL(lib["filepath"])  # already loaded by numpy: the same handle
                return tuple(ctypes.cast(getattr(handle, name), ctypes.c_void_p).value
                             for name in _NUMPY_OPENBLAS_GEMM)
            except (OSError, AttributeError, KeyError):
                return None
    return None


def set_blas(core, name, libraries):
    """Make the loaded core call ``name``'s BLAS ("numpy" or "scipy"); returns the name used:
    "scipy" when numpy's OpenBLAS routines are not found."""
    addresses = numpy_openblas_gemm(libraries) if name == "numpy" else None
    core.set_blas64(*(addresses or (0, 0)))
    _state["blas"] = "numpy" if addresses else "scipy"
    return _state["blas"]


def gemm_strategy_for(libraries, blas=None, *, simd_path):
    """The product strategy for the BLAS fastnn calls and the core's SIMD path:

    * ``"plain"`` off the ``"avx2_fma"`` path: fastnn's own products there are built from GCC's
      portable vectors and run 2-30x slower than one BLAS call (BENCHMARKS.md);
    * ``"tiled"`` when the BLAS is an OpenBLAS whose core has the unpacked small-matrix kernels
      (``UNPACKED_SMALL_GEMM_CORES``);
    * ``"blocked"`` when it is another OpenBLAS (which packs the operands of every call, as its
      Haswell and Zen kernels do);
    * ``"direct"`` for other BLAS libraries.

    ``libraries``: dicts as :func:`blas_libraries` gives them (keys ``internal_api`` and
    ``architecture``); ``blas``: which of them the core calls, as :func:`blas_called` takes it;
    ``simd_path``: the core's SIMD path (``core.get_simd_path()``).
    """
    if simd_path != "avx2_fma":
        return "plain"
    for lib in blas_called(libraries, blas):
        if lib.get("internal_api") == "openblas":
            if str(lib.get("architecture", "")).lower() in UNPACKED_SMALL_GEMM_CORES:
                return "tiled"
            return "blocked"
    return "direct"


def set_gemm_strategy(core, strategy):
    """Make the loaded core run ``strategy`` (``"tiled"``, ``"blocked"``, ``"direct"`` or
    ``"plain"``, see the module docstring)."""
    if strategy not in GEMM_CHOICES[1:]:
        raise ValueError(f"strategy: expected one of {', '.join(GEMM_CHOICES[1:])}, got {strategy!r}")
    core.set_small_gemm(strategy == "tiled")
    core.set_sparse_input(strategy != "plain")
    if strategy == "plain":
        core.set_direct_gemm(False)
    else:
        core.set_direct_gemm(core.direct_gemm_taken() | ({"blocked"} if strategy == "blocked" else set()))


def configure(core):
    """Apply ``FASTNN_SIMD``, ``FASTNN_BLAS`` and ``FASTNN_GEMM`` (or the automatic choices) to the
    loaded core.

    Raises EnvironmentSettingError (a ValueError) naming the variable when one holds an unknown value, or when the SIMD path
    asked for is not available on this CPU.
    """
    simd = _switch("FASTNN_SIMD", SIMD_CHOICES)
    try:
        core.set_simd_path(simd)
    except ValueError as exc:
        raise EnvironmentSettingError(f"FASTNN_SIMD: {exc}") from None
    libraries = blas_libraries()
    blas = _switch("FASTNN_BLAS", BLAS_CHOICES)
    used = set_blas(core, "numpy" if blas == "auto" else blas, libraries)
    if blas == "numpy" and used != "numpy":
        raise EnvironmentSettingError("FASTNN_BLAS: numpy's OpenBLAS (scipy_sgemm_64_) was not found in "
                                      "this numpy; use auto or scipy")
    _state["blas_source"] = "auto" if blas == "auto" else "FASTNN_BLAS"
    gemm = _switch("FASTNN_GEMM", GEMM_CHOICES)
    if gemm == "auto":
        strategy = gemm_strategy_for(libraries, simd_path=core.get_simd_path())
        source = "auto: from the BLAS core and the SIMD path"
    else:
        strategy, source = gemm, "FASTNN_GEMM"
    set_gemm_strategy(core, strategy)
    _state["gemm_source"] = source


def gemm_strategy():
    """``(strategy, what decided it)``: ``"tiled"``, ``"blocked"``, ``"direct"`` or ``"plain"``
    (see the module docstring)."""
    from ._native import core  # configures on first load

    if core.small_gemm_enabled():
        strategy = "tiled"
    elif "blocked" in core.direct_gemm_classes():
        strategy = "blocked"
    else:
        strategy = "direct" if core.direct_gemm_enabled() else "plain"
    return strategy, _state["gemm_source"] or "set"


def blas_choice():
    """``(library, what decided it)``: "numpy" or "scipy" (see ``FASTNN_BLAS``)."""
    from ._native import core  # noqa: F401  (configures on first load)

    return _state["blas"], _state["blas_source"]


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo on Linux), else what the platform module says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                 "asimd", "sve", "sve2")


def vector_extensions():
    """The CPU's vector extensions among those that matter for fastnn and its BLAS (a list of
    names as /proc/cpuinfo spells them: ``avx2``, ``fma``, ``avx512f``, ..., ``asimd``, ``sve``)."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("flags", "Features"):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        return []
    return [name for name in _VECTOR_FLAGS if name in flags]
