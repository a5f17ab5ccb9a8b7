"""What fastnn runs on: version, build, SIMD path, threads and the BLAS actually called."""
import platform
import sys

from . import _machine
from ._native import core as _core
from ._threads import get_num_threads, thread_source


def config():
    """The configuration as a dict (what :func:`show_config` prints)."""
    import numpy
    import scipy

    from . import __version__

    blas = _machine.blas_libraries()
    gemm, gemm_source = _machine.gemm_strategy()
    blas_choice, blas_source = _machine.blas_choice()
    return {
        "fastnn": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _machine.cpu_model(),
        "vector_extensions": _machine.vector_extensions(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "simd_path": _core.get_simd_path(),
        "simd_paths_available": _core.simd_paths_available(),
        "openmp": _core.openmp_enabled(),
        "threads": get_num_threads(),
        "threads_source": thread_source(),
        "build_flags": _core.build_flags(),
        "gemm_strategy": gemm,
        "gemm_strategy_source": gemm_source,
        "blas_choice": blas_choice,
        "blas_choice_source": blas_source,
        "blas_called": _machine.blas_called(blas),
        "blas_loaded": blas,
    }


def show_config(file=None):
    """Print the version, build flags, SIMD path, threads and BLAS libraries (to stdout)."""
    cfg = config()
    lines = [
        f"fastnn {cfg['fastnn']}  (python {cfg['python']}, numpy {cfg['numpy']}, scipy {cfg['scipy']})",
        f"platform:    {cfg['platform']}",
        f"CPU:         {cfg['cpu']} (vector extensions: {', '.join(cfg['vector_extensions']) or 'none found'})",
        f"SIMD path:   {cfg['simd_path']} (available: {', '.join(cfg['simd_paths_available'])})",
        f"OpenMP:      {'yes' if cfg['openmp'] else 'no (kernels run serially)'}",
        f"threads:     {cfg['threads']} (from {cfg['threads_source']})",
        f"build flags: {cfg['build_flags']}",
        f"products:    {cfg['gemm_strategy']} ({cfg['gemm_strategy_source']})",
        f"BLAS choice: {cfg['blas_choice']}'s ({cfg['blas_choice_source']})",
    ]
    for title, libs in (("BLAS called", cfg["blas_called"]), ("BLAS loaded", cfg["blas_loaded"])):
        for lib in libs:
            lines.append(f"{title}: {lib.get('internal_api')} {lib.get('version')} "
                         f"({lib.get('num_threads')} threads, {lib.get('architecture')}) {lib.get('filepath')}")
    print("\n".join(lines), file=file or sys.stdout)
