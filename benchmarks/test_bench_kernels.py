"""Each fastnn.ops kernel against its NumPy twin in fastnn.reference: float32, 1 and 2 threads,
``out=`` buffers on both sides (fastnn.bench.kernels.kernel_cases). Both sides of a case share a
benchmark group, so pytest-benchmark's table shows their medians with the ratio in parentheses.
Every test first checks that the two sides give the same result."""
import pytest

from fastnn import ops, reference
from fastnn.bench import kernels

CASES = kernels.kernel_cases()
SIDES = {"fastnn": ops, "reference": reference}


@pytest.mark.parametrize("side", list(SIDES))
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_kernel(benchmark, threads, case, side):
    kernels.assert_same_result(case.build(ops)(), case.build(reference)(), case.rtol, case.atol, case.name)
    call = case.build(SIDES[side])
    benchmark.group = f"{case.name} | {threads} thread(s)"
    benchmark.extra_info.update(side=side, threads=threads, target_ratio_at_1_thread=case.target)
    benchmark(call)
