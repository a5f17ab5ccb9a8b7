#!/usr/bin/env bash
# Memory safety of the compiled kernels: build fastnn with AddressSanitizer in a copy of the
# source tree and run the kernel and op tests under it.
#
#   .ci/memcheck.sh                 # the kernel and op tests (the list below)
#   .ci/memcheck.sh tests/test_x.py # other test files or pytest arguments
#
# Needs gcc with libasan, and Cython, numpy, scipy, pytest and hypothesis importable by python3.
# The checkout is not touched (its in-place build stays as it is). Exit status: 0 when every test
# passes and ASan reported nothing; otherwise non-zero, with the reports printed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-python3}
started=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/fastnn-memcheck.XXXXXX")
trap 'rm -rf "$work"' EXIT

libasan=$(gcc -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
    echo "memcheck: gcc has no libasan.so ($libasan); install libasan for this gcc" >&2
    exit 2
fi

echo "== copying the sources to $work/src"
mkdir "$work/src"
cp -r setup.py pyproject.toml README.md fastnn src_c tests "$work/src/"
# Build products of the checkout must not be picked up: the core is rebuilt from the .pyx.
rm -f "$work/src"/fastnn/_core*.so "$work/src/src_c/_core.c"
find "$work/src" -name __pycache__ -type d -prune -exec rm -rf {} +

echo "== building with FASTNN_SANITIZE=address (-fsanitize=address -fno-omit-frame-pointer -O0 -g)"
(cd "$work/src" && FASTNN_SANITIZE=address CC=${CC:-gcc} "$python" setup.py -q build_ext --inplace \
    --build-temp "$work/build" > "$work/build.log" 2>&1) || { cat "$work/build.log" >&2; exit 2; }
built=$(date +%s)
echo "   built in $((built - started)) s"

if [ $# -eq 0 ]; then
    set -- tests/test_ops.py tests/test_validation.py tests/test_extremes.py \
        tests/test_gradcheck.py tests/test_fastpath.py tests/test_gather.py tests/test_hostile.py \
        tests/test_reference_network.py tests/test_network.py tests/test_inference.py \
        tests/test_engine.py tests/test_sparse.py tests/test_loss_registry.py tests/test_direct_gemm.py \
        tests/test_sparse_input.py
fi

mkdir "$work/asan"
# Python leaks by design (interned objects, caches): leak detection off, every other check on.
# allocator_may_return_null: numpy turns a failed huge allocation into MemoryError, as without ASan.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:log_path=$work/asan/report"
export LD_PRELOAD="$libasan"
export PYTHONPATH="$work/src"
export PYTHONDONTWRITEBYTECODE=1

cd "$work/src"
"$python" - <<'PY'
import fastnn, fastnn._core as core
flags = core.build_flags()
assert "-fsanitize=address" in flags, flags
assert fastnn.__file__.startswith(__import__("os").getcwd()), fastnn.__file__
print(f"== fastnn from {fastnn.__file__}, build flags: {flags}")
PY

echo "== self-test: an out-of-bounds write through the raw core (which validates nothing) must be reported"
mkdir "$work/selftest"
if ASAN_OPTIONS="detect_leaks=0:log_path=$work/selftest/report" "$python" -c '
import numpy as np
from fastnn import _core
_core.act_forward(1, 0.0, np.zeros(64), np.zeros(8))  # writes 64 doubles into 8
' 2>/dev/null || ! grep -qs "heap-buffer-overflow" "$work"/selftest/report*; then
    echo "memcheck: ASan did not report a deliberate heap-buffer-overflow; the setup is broken" >&2
    exit 2
fi

echo "== running under ASan: $*"
status=0
# The suite's own hypothesis profile (derandomized): the same examples as a normal run, so a
# failure here that the normal run does not show comes from the sanitized build.
"$python" -m pytest -p no:cacheprovider -o addopts="" -x -q "$@" || status=$?

finished=$(date +%s)
reports=$(find "$work/asan" -type f | sort)
if [ -n "$reports" ]; then
    echo "== AddressSanitizer reports:" >&2
    for report in $reports; do
        cat "$report" >&2
    done
    status=1
fi
echo "== memcheck: tests exit status $status, $(echo "$reports" | grep -c . || true) ASan report(s);" \
     "build $((built - started)) s, tests $((finished - built)) s, total $((finished - started)) s"
exit $status
