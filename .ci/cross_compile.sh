#!/usr/bin/env bash
# Portability beyond x86: compile every C source of fastnn for aarch64 (Debian's
# gcc-aarch64-linux-gnu) with the flags setup.py uses, plus the Cython-generated core against
# this Python's and numpy's headers (an LP64 target, as aarch64 Linux is). Only compiles (-c):
# nothing runs, so no aarch64 machine, Python or BLAS is needed. The x86 paths (AVX2 kernels,
# the pause instruction) must be guarded out for this to pass.
#
#   .ci/cross_compile.sh            # needs aarch64-linux-gnu-gcc, python3 with Cython and numpy
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
cc=${CROSS_CC:-aarch64-linux-gnu-gcc}
if ! command -v "$cc" >/dev/null; then
    echo "cross_compile: $cc not found (Debian: apt-get install gcc-aarch64-linux-gnu)" >&2
    exit 2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/fastnn-cross.XXXXXX")
trap 'rm -rf "$work"' EXIT

read -r -a flags <<<"$(CC=$cc "$python" setup.py --print-c-flags)"
flags+=(-Wall -Werror=implicit-function-declaration -DFASTNN_BUILD_FLAGS="\"cross\"")
echo "== $cc ${flags[*]}"
for src in src_c/kernels.c src_c/mlp.c; do
    "$cc" "${flags[@]}" -DFASTNN_OPENMP=1 -Isrc_c -c "$src" -o "$work/$(basename "$src" .c).o"
    echo "compiled $src"
done

"$python" -m cython -3 --fast-fail -I src_c -o "$work/_core.c" src_c/_core.pyx
py_include=$("$python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
np_include=$("$python" -c "import numpy; print(numpy.get_include())")
"$cc" "${flags[@]}" -DFASTNN_OPENMP=1 -DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION -fPIC \
    -Isrc_c -I"$py_include" -I"$np_include" -c "$work/_core.c" -o "$work/_core.o"
echo "compiled src_c/_core.pyx (via Cython)"
file "$work"/*.o | sed "s|$work/||"
echo "cross_compile: every C source compiles for aarch64"
