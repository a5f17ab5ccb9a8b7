"""Build the compiled core of fastnn (``fastnn._core``).

Environment switches:

* ``FASTNN_NATIVE=1``    add ``-march=native`` (a build for this machine only).
* ``FASTNN_NO_OPENMP=1`` build without OpenMP (the kernels then run serially).
* ``FASTNN_DEBUG=1``     turn Cython bounds checks on and build with ``-O0 -g``.
* ``FASTNN_SANITIZE=address`` build with AddressSanitizer (implies debug).

``python setup.py --print-c-flags`` prints the C compiler flags the build would use with the
compiler in ``CC`` (the aarch64 compile check in .ci/cross_compile.sh uses it).
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _compiler_accepts(flags):
    """True when the C compiler builds and links a small OpenMP program with these flags."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()[0]
    if shutil.which(cc) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n")
        cmd = [cc, *flags, src, "-o", os.path.join(tmp, "probe")]
        return subprocess.run(cmd, capture_output=True).returncode == 0


def _build_options():
    debug = _flag("FASTNN_DEBUG")
    sanitize = os.environ.get("FASTNN_SANITIZE", "").strip()
    compile_args = ["-O0", "-g"] if (debug or sanitize) else ["-O3"]
    # IEEE results are kept (no -ffast-math). The kernels never read errno or the FP exception
    # flags, and without -fno-trapping-math GCC will not vectorise a loop holding a float compare.
    # gnu99 lets GCC contract a*b+c into FMA on the CPU path that has it.
    compile_args += ["-fno-math-errno", "-fno-trapping-math", "-std=gnu99"]
    link_args = []
    if _flag("FASTNN_NATIVE"):
        compile_args.append("-march=native")
    if sanitize:
        compile_args += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer"]
        link_args.append(f"-fsanitize={sanitize}")
    openmp = not _flag("FASTNN_NO_OPENMP") and _compiler_accepts(["-fopenmp"])
    if openmp:
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
    elif _compiler_accepts(["-fopenmp-simd"]):
        compile_args.append("-fopenmp-simd")  # "omp simd" loops only; needs no OpenMP runtime
    return compile_args, link_args, openmp, debug or bool(sanitize)


def extensions():
    import numpy
    from Cython.Build import cythonize

    compile_args, link_args, openmp, debug = _build_options()
    flags_text = " ".join(compile_args)
    ext = Extension(
        "fastnn._core",
        sources=["src_c/_core.pyx", "src_c/kernels.c", "src_c/mlp.c"],
        include_dirs=["src_c", numpy.get_include()],
        depends=sorted(glob.glob("src_c/*.h") + glob.glob("src_c/*.pxi")),
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=[
            ("FASTNN_BUILD_FLAGS", '"%s"' % flags_text),
            ("FASTNN_OPENMP", "1" if openmp else "0"),
            ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
        ],
    )
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": False,
        "initializedcheck": debug,
        "cdivision": True,
        "embedsignature": True,
    }
    return cythonize([ext], compiler_directives=directives, include_path=["src_c"])


if __name__ == "__main__" and sys.argv[1:] == ["--print-c-flags"]:
    print(" ".join(_build_options()[0]))
elif __name__ == "__main__" or "setuptools" in sys.modules:
    setup(ext_modules=extensions())
