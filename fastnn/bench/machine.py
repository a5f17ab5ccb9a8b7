"""The machine a benchmark runs on: thread counts (fastnn, every BLAS, PyTorch), CPU, memory,
versions and the BLAS libraries in use."""
import os
import platform
import sys


def torch_available():
    """True when PyTorch can be imported (it is never a dependency of fastnn)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def set_threads(n):
    """Use ``n`` threads everywhere: fastnn's kernels, every loaded BLAS (numpy's and scipy's
    OpenBLAS alike) and PyTorch if it is imported (TorchTrainer pins it when it imports it).
    Returns the count used: ``n`` capped at the cores this process may use, with a warning."""
    import fastnn

    fastnn.set_num_threads(n)
    n = fastnn.get_num_threads()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


def _memory_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError):
        pass
    return None


def machine_info():
    """CPU model and vector extensions, cores, memory, load average, and fastnn's SIMD path,
    product strategy and OpenMP (a dict)."""
    from .. import _machine
    from .._cpulimits import available_cores
    from .._native import core

    return {
        "cpu": _machine.cpu_model(),
        "vector_extensions": _machine.vector_extensions(),
        "gemm_strategy": _machine.gemm_strategy()[0],
        "cores": available_cores()[0],  # those this process may use (affinity, cgroup quota)
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "simd_path": core.get_simd_path(),
        "openmp": bool(core.openmp_enabled()),
        "platform": platform.platform(),
    }


def versions():
    """Versions of python, fastnn, numpy, scipy, threadpoolctl and torch (None if missing)."""
    import numpy
    import scipy
    import threadpoolctl

    from .. import __version__

    torch_version = None
    if "torch" in sys.modules:
        torch_version = sys.modules["torch"].__version__
    elif torch_available():  # without the slow import
        from importlib.metadata import PackageNotFoundError, version

        try:
            torch_version = version("torch")
        except PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "fastnn": __version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "threadpoolctl": threadpoolctl.__version__,
            "torch": torch_version}


def blas_in_use():
    """Who calls which BLAS, with the thread counts in force now (threadpoolctl's view).

    fastnn calls numpy's OpenBLAS or scipy's (``FASTNN_BLAS``, fastnn._machine); np.matmul, and
    so the NumPy reference, calls numpy's; PyTorch uses the BLAS it was built with (reported by
    torch.__config__, not visible to threadpoolctl when linked statically).
    """
    import fastnn
    from .. import _machine

    libraries = _machine.blas_libraries()
    called = {lib.get("filepath") for lib in _machine.blas_called(libraries)}
    rows = []
    for lib in libraries:
        where = os.path.basename(os.path.dirname(lib.get("filepath", "")))
        sides = (["reference (np.matmul)"] if where == "numpy.libs" else []) + (
            ["fastnn (ops and training loop)"] if lib.get("filepath") in called else [])
        side = " and ".join(sides) or where
        rows.append({"side": side, "library": lib.get("internal_api"), "version": lib.get("version"),
                     "threads": lib.get("num_threads"), "architecture": lib.get("architecture"),
                     "path": lib.get("filepath")})
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        config = torch.__config__.show()
        blas = next((part.split("=", 1)[1] for part in config.replace(",", " ").split()
                     if part.startswith("BLAS_INFO=")), "unknown")
        rows.append({"side": "torch", "library": blas, "version": None,
                     "threads": torch.get_num_threads(), "architecture": None, "path": None})
    return {"blas": rows, "fastnn_kernel_threads": fastnn.get_num_threads(),
            "note": "fastnn's native epoch loop splits each step over its own "
                    f"{fastnn.get_num_threads()} thread(s) and limits BLAS to 1 thread inside"}

