"""The kernel benchmarks: each op of :mod:`fastnn.ops` against its NumPy twin in
:mod:`fastnn.reference` (identical signatures, the same ``out=`` buffers on both sides),
float32, checked to agree and then timed interleaved."""
import math
from dataclasses import dataclass

from .timing import OtherLoad, calls_per_measurement, interleaved, median, repeat_calls


@dataclass(frozen=True)
class KernelCase:
    """One op on one shape. ``build(module)`` returns a zero-argument callable running the op of
    ``module`` (fastnn.ops or fastnn.reference) once on fixed float32 inputs with preallocated
    ``out=`` buffers, returning its result. ``target``: minimum reference/fastnn time ratio
    at 1 thread, or None. ``gemm_only``: for the linear ops, a builder of the same inputs'
    matrix products alone through ``np.matmul`` (the reference's BLAS); reference / gemm_only is
    the ceiling of the ratio that any implementation whose products run at that speed can reach,
    however cheap the rest."""
    op: str
    shape: str
    target: object
    build: object
    gemm_only: object = None
    rtol: float = 1e-5
    atol: float = 1e-6

    @property
    def name(self):
        return f"{self.op} {self.shape}"

    @property
    def id(self):
        return (f"{self.op}-{self.shape}".replace(" ", "").replace("(", "").replace(")", "")
                .replace(",", "x").replace("->", "to").replace("+", "_"))


def _inputs_rng():
    import numpy as np

    return np.random.default_rng(20240521)


def _sigmoid_builder(shape):
    def build(module):
        import numpy as np

        x = _inputs_rng().standard_normal(shape, dtype=np.float32) * 4
        out = np.empty_like(x)
        return lambda: module.sigmoid(x, out=out)
    return build


def _loss_builder(entry, rows, k):
    """The op of loss registry entry ``entry`` on float32 outputs (rows, k)."""
    def build(module):
        import numpy as np

        rng = _inputs_rng()
        outputs = rng.standard_normal((rows, k), dtype=np.float32) * 3
        if entry.targets == "labels":
            targets = rng.integers(0, k, rows)
        else:
            targets = (rng.random((rows, k)) > 0.5).astype(np.float32)
        grad = np.empty_like(outputs)
        op = getattr(module, entry.op)
        return lambda: op(outputs, targets, grad_out=grad)
    return build


def _linear_arrays(batch, n_in, n_out):
    import numpy as np

    rng = _inputs_rng()
    x = rng.random((batch, n_in), dtype=np.float32)
    w = rng.standard_normal((n_in, n_out), dtype=np.float32) / np.float32(math.sqrt(n_in))
    b = rng.standard_normal(n_out, dtype=np.float32) * np.float32(0.1)
    return rng, x, w, b


def _linear_forward_builder(batch, n_in, n_out):
    def build(module):
        import numpy as np

        _, x, w, b = _linear_arrays(batch, n_in, n_out)
        out = np.empty((batch, n_out), np.float32)
        return lambda: module.linear_forward(x, w, b, "sigmoid", out=out)
    return build


def _linear_forward_gemm_builder(batch, n_in, n_out):
    def build():
        import numpy as np

        _, x, w, _ = _linear_arrays(batch, n_in, n_out)
        out = np.empty((batch, n_out), np.float32)
        return lambda: np.matmul(x, w, out=out)
    return build


def _linear_backward_builder(batch, n_in, n_out):
    def build(module):
        import numpy as np

        rng, x, w, _ = _linear_arrays(batch, n_in, n_out)
        y = 1 / (1 + np.exp(-rng.standard_normal((batch, n_out), dtype=np.float32)))
        grad_out = rng.standard_normal((batch, n_out), dtype=np.float32) / np.float32(batch)
        dw = np.empty_like(w)
        db = np.empty(n_out, np.float32)
        dx = np.empty_like(x)
        return lambda: module.linear_backward(x, w, grad_out, y, "sigmoid", True, dw, db, dx)
    return build


def _linear_backward_gemm_builder(batch, n_in, n_out):
    def build():
        import numpy as np

        rng, x, w, _ = _linear_arrays(batch, n_in, n_out)
        dz = rng.standard_normal((batch, n_out), dtype=np.float32) / np.float32(batch)
        dw = np.empty_like(w)
        dx = np.empty_like(x)

        def products():
            np.matmul(x.T, dz, out=dw)
            np.matmul(dz, w.T, out=dx)
        return products
    return build


def kernel_cases(with_target_only=False):
    """The kernel comparisons (list of KernelCase), in report order; ``with_target_only``:
    just the cases that have a speed target (what ``--quick`` runs)."""
    cases = [KernelCase("sigmoid", f"({r}, {c})", t, _sigmoid_builder((r, c)))
             for (r, c), t in (((32, 128), 3.0), ((128, 128), 4.0), ((4096, 1024), 6.0))]
    from ..loss_registry import REGISTRY as losses
    cross_entropy, *others = losses
    cases += [KernelCase(cross_entropy.op, f"({r}, {k})", t, _loss_builder(cross_entropy, r, k))
              for (r, k), t in (((32, 10), None), ((128, 10), 6.0), ((4096, 1000), 4.0))]
    cases += [KernelCase(entry.op, f"({r}, {k})", None, _loss_builder(entry, r, k))
              for entry in others for r, k in ((128, 10), (4096, 100))]
    linear_targets = {("forward", 128, 784): 1.3, ("backward", 128, 784): 1.15}
    linear = (("forward", _linear_forward_builder, _linear_forward_gemm_builder),
              ("backward", _linear_backward_builder, _linear_backward_gemm_builder))
    for kind, builder, gemm_builder in linear:
        for n_in, n_out in ((784, 128), (1024, 1024)):
            for batch in (32, 128):
                # GEMMs summing 784-1024 float32 terms in another order: looser tolerances.
                cases.append(KernelCase(f"linear_{kind}+sigmoid", f"B={batch} {n_in}->{n_out}",
                                        linear_targets.get((kind, batch, n_in)),
                                        builder(batch, n_in, n_out), rtol=1e-4, atol=1e-5,
                                        gemm_only=gemm_builder(batch, n_in, n_out)))
    return [c for c in cases if c.target is not None] if with_target_only else cases


def assert_same_result(fast, ref, rtol, atol, what="result"):
    """Raise AssertionError unless two op results (arrays, floats, tuples, None) agree."""
    import numpy as np

    if isinstance(ref, tuple):
        assert isinstance(fast, tuple) and len(fast) == len(ref), f"{what}: structure differs"
        for i, (f, r) in enumerate(zip(fast, ref)):
            assert_same_result(f, r, rtol, atol, f"{what}[{i}]")
        return
    if ref is None:
        assert fast is None, f"{what}: expected None"
        return
    np.testing.assert_allclose(np.asarray(fast, dtype=np.float64), np.asarray(ref, dtype=np.float64),
                               rtol=rtol, atol=atol, err_msg=what)


def measure_kernel(case, repeats, min_seconds, pause=0.0):
    """Check fastnn against the reference on ``case``, then time both interleaved.

    Returns {"fastnn": s, "reference": s (median per call), "ratio": reference/fastnn,
    "calls": [calls per measurement], "repeats": n, "other_load": share of the CPUs used by
    other processes meanwhile}; for cases with ``gemm_only`` also "gemm_only": s and
    "ceiling": reference/gemm_only, timed in the same interleaved rounds.
    """
    from .. import ops, reference

    calls = {"fastnn": case.build(ops), "reference": case.build(reference)}
    assert_same_result(calls["fastnn"](), calls["reference"](), case.rtol, case.atol, case.name)
    if case.gemm_only is not None:
        calls["gemm_only"] = case.gemm_only()
    numbers = {name: calls_per_measurement(call, min_seconds) for name, call in calls.items()}
    load = OtherLoad()
    times = interleaved({name: repeat_calls(call, numbers[name]) for name, call in calls.items()},
                        repeats, pause)
    result = {name: median(times[name]) / numbers[name] for name in calls}
    result["ratio"] = result["reference"] / result["fastnn"]
    if "gemm_only" in result:
        result["ceiling"] = result["reference"] / result["gemm_only"]
    result["calls"] = [numbers["fastnn"], numbers["reference"]]
    result["repeats"] = repeats
    result["other_load"] = load.share()
    return result

