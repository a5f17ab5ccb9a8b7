"""``fastnn bench``: fastnn's kernels and MNIST training against NumPy and PyTorch, side by side.

Each comparison runs its contenders interleaved (A, B, A, B, ... with the order rotated every
repeat) in one process and reports the median of several repeats, after checking that the
contenders compute the same thing, so a fast wrong answer cannot pass.

- Kernels: each op of :mod:`fastnn.ops` against its NumPy twin in :mod:`fastnn.reference`
  (identical signatures, the same ``out=`` buffers on both sides), float32.
- Epochs: one epoch of MNIST 784-128-10 (sigmoid, softmax cross-entropy, SGD lr 0.1 momentum
  0.9, float32, pixels scaled by 1/255 per batch) by ``Network.fit``, by
  :class:`fastnn.reference.ReferenceMLP`, by PyTorch when it is installed (an equivalent
  ``nn.Sequential`` and ``torch.optim.SGD`` over the same batches), and the time of the matrix
  products alone for the same shapes and steps ("matmul-only": scipy's BLAS, the one fastnn
  calls, preallocated), the limit no implementation of this network can beat.

- Latency (``--latency``, :mod:`fastnn.bench_latency`): one ``predict_proba`` call on 1, 8 and
  256 rows against a NumPy forward pass, PyTorch and ONNX Runtime, p50 and p99.

The pytest-benchmark suites in ``benchmarks/`` use the same cases and contenders. Heavy modules
(numpy, fastnn's core, torch) are imported inside the functions so that building the command
line parser stays instant.
"""
import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass

from ._argtypes import non_negative_int, positive_int, share

MNIST_DIMS = (784, 128, 10)
HIDDEN_ACTIVATION = "sigmoid"
LEARNING_RATE = 0.1
MOMENTUM = 0.9
INPUT_SCALE = 1.0 / 255.0
INIT_SEED = 0
BATCH_SIZES = (16, 32, 128, 512)
QUICK_BATCH_SIZES = (32, 128)
AGREEMENT_STEPS = 4
# Float32 after AGREEMENT_STEPS SGD steps: implementations differ by rounding order only
# (fastnn ~1e-7 from the reference); a wrong gradient or update is off by far more.
AGREEMENT_RTOL = 1e-4
AGREEMENT_ATOL = 1e-5

# Kernel targets: minimum reference/fastnn time ratio at 1 thread (None: measured, no target).
# Epoch targets at 2 threads: (batch size, contender, bound); "matmul-only" bounds
# fastnn/matmul-only from above, the others bound contender/fastnn from below.
EPOCH_TARGETS = (
    (16, "torch", 4.0),
    (32, "torch", 3.5), (32, "reference", 1.7),
    (128, "torch", 2.5), (128, "reference", 1.7), (128, "matmul-only", 1.2),
)
TARGET_THREADS_KERNELS = 1
TARGET_THREADS_EPOCHS = 2
# With more than one thread, each run waits this long first: OpenBLAS workers spin for about
# 2^28 cycles (~0.1 s) after a call before they sleep, libgomp's for a few ms, and a spinning
# pool of one contender would otherwise take a core from the next one.
POOL_IDLE_PAUSE = 0.15


# ------------------------------------------------------------------------------------------
# Threads and the machine

def torch_available():
    """True when PyTorch can be imported (it is never a dependency of fastnn)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def set_threads(n):
    """Use ``n`` threads everywhere: fastnn's kernels, every loaded BLAS (numpy's and scipy's
    OpenBLAS alike) and PyTorch if it is imported (TorchTrainer pins it when it imports it)."""
    import fastnn

    fastnn.set_num_threads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


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
    from . import _machine
    from ._native import core

    return {
        "cpu": _machine.cpu_model(),
        "vector_extensions": _machine.vector_extensions(),
        "gemm_strategy": _machine.gemm_strategy()[0],
        "cores": os.cpu_count(),
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

    from . import __version__

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

    fastnn calls scipy's OpenBLAS (through scipy.linalg.cython_blas); np.matmul, and so the
    NumPy reference, calls numpy's; PyTorch uses the BLAS it was built with (reported by
    torch.__config__, not visible to threadpoolctl when linked statically).
    """
    from threadpoolctl import threadpool_info

    import fastnn

    rows = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        where = os.path.basename(os.path.dirname(lib.get("filepath", "")))
        side = {"scipy.libs": "fastnn (ops and training loop)",
                "numpy.libs": "reference (np.matmul)"}.get(where, where)
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


class OtherLoad:
    """The share of the machine's CPU time that other processes used since construction:
    (busy time of all CPUs from /proc/stat - this process's own CPU time) / (wall x CPUs).

    A comparison measured while it is more than a few percent is not a clean measurement.
    None where /proc/stat is missing.
    """

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _sample():
        import resource

        try:
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return sum(ticks), ticks[3] + ticks[4], usage.ru_utime + usage.ru_stime

    def share(self):
        end = self._sample()
        if self._start is None or end is None:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        total = (end[0] - self._start[0]) / hz
        busy = total - (end[1] - self._start[1]) / hz
        own = end[2] - self._start[2]
        return max(0.0, (busy - own) / total) if total > 0 else None


# ------------------------------------------------------------------------------------------
# Timing

def interleaved(contenders, repeats, pause=0.0):
    """Run ``{name: fn(repeat_index)}`` in turn, ``repeats`` times, rotating the order each
    repeat; returns ``{name: [seconds, ...]}``. The garbage collector is off meanwhile.

    ``pause`` (seconds) before each run lets thread pools of the previous contender go idle.
    """
    names = list(contenders)
    times = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                if pause:
                    time.sleep(pause)
                fn = contenders[name]
                start = time.perf_counter()
                fn(r)
                times[name].append(time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def _calls_per_measurement(call, min_seconds):
    """How many back-to-back calls of ``call`` take about ``min_seconds``."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= 0.2 * min_seconds or number >= 1 << 16:
            return max(1, min(1 << 16, math.ceil(number * min_seconds / max(elapsed, 1e-9))))
        number *= 2


def _repeat_calls(call, number):
    def run(_repeat):
        for _ in range(number):
            call()
    return run


# ------------------------------------------------------------------------------------------
# Kernel cases: one builder serves fastnn.ops and fastnn.reference (identical signatures)

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


def _softmax_xent_builder(rows, classes):
    def build(module):
        import numpy as np

        rng = _inputs_rng()
        logits = rng.standard_normal((rows, classes), dtype=np.float32) * 3
        labels = rng.integers(0, classes, rows)
        grad = np.empty_like(logits)
        return lambda: module.softmax_cross_entropy(logits, labels, grad_out=grad)
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
    cases += [KernelCase("softmax_cross_entropy", f"({r}, {k})", t, _softmax_xent_builder(r, k))
              for (r, k), t in (((32, 10), None), ((128, 10), 6.0), ((4096, 1000), 4.0))]
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
    from . import ops, reference

    calls = {"fastnn": case.build(ops), "reference": case.build(reference)}
    assert_same_result(calls["fastnn"](), calls["reference"](), case.rtol, case.atol, case.name)
    if case.gemm_only is not None:
        calls["gemm_only"] = case.gemm_only()
    numbers = {name: _calls_per_measurement(call, min_seconds) for name, call in calls.items()}
    load = OtherLoad()
    times = interleaved({name: _repeat_calls(call, numbers[name]) for name, call in calls.items()},
                        repeats, pause)
    result = {name: median(times[name]) / numbers[name] for name in calls}
    result["ratio"] = result["reference"] / result["fastnn"]
    if "gemm_only" in result:
        result["ceiling"] = result["reference"] / result["gemm_only"]
    result["calls"] = [numbers["fastnn"], numbers["reference"]]
    result["repeats"] = repeats
    result["other_load"] = load.share()
    return result


# ------------------------------------------------------------------------------------------
# Training contenders. Each trains MNIST_DIMS from the same start on the same batches:
# train_rows(X, y, order) trains on rows ``order`` in batches (the last may be short) and returns
# (loss sum, correct, seen); epoch(X, y, seed) is one epoch over rng(seed).permutation(len(X))
# (Network.fit draws its permutation the same way), returning (mean loss, accuracy).

@dataclass
class TrainingSetup:
    """MNIST training images X uint8 (60000, 784), labels y int64 (60000,) and the starting
    parameters [W0 (784, 128), b0, W1 (128, 10), b1] (float32, fastnn's LeCun initialisation)."""
    X: object
    y: object
    params: list


def training_setup(seed=INIT_SEED):
    """Load the MNIST training set shipped with fastnn and draw the starting parameters."""
    import numpy as np

    from .datasets import load_mnist

    (X, y), _ = load_mnist()
    X = np.require(X, np.uint8, ["C", "W"])  # torch.from_numpy wants a writeable array
    y = np.require(y, np.int64, ["C", "W"])
    net = _fastnn_network(seed)
    return TrainingSetup(X, y, [p.copy() for p in net.parameters()])


def _fastnn_network(seed):
    import fastnn

    layers = []
    for i, (n_in, n_out) in enumerate(zip(MNIST_DIMS[:-1], MNIST_DIMS[1:])):
        layers.append(fastnn.Linear(n_in, n_out))
        if i < len(MNIST_DIMS) - 2:
            layers.append(fastnn.Sigmoid())
    return fastnn.Network(layers, input_scale=INPUT_SCALE, seed=seed)


def epoch_order(n, seed):
    """The row order of one epoch: the permutation Network.fit(seed=seed) draws for n rows."""
    import numpy as np

    return np.random.default_rng(seed).permutation(n)


def _mean_loss_and_accuracy(loss_sum, correct, seen):
    return loss_sum / seen, correct / seen


class FastnnTrainer:
    """fastnn.Network + fastnn.SGD. epoch() is ``Network.fit`` for one epoch (progress off);
    train_rows() is the engine fit runs (``run_epoch`` of fastnn._training's engines), for
    single steps.

    native=False trains layer by layer (``engine="layers"``): steps go through fastnn.ops from
    Python, as for networks the compiled engine does not run.
    """

    def __init__(self, params, batch_size, native=True):
        import fastnn

        self.name = "fastnn" if native else "fastnn (layer by layer)"
        self.batch_size = batch_size
        self.engine_name = "compiled" if native else "layers"
        self.net = _fastnn_network(INIT_SEED)
        for dst, src in zip(self.net.parameters(), params):
            dst[...] = src
        self.optimizer = fastnn.SGD(lr=LEARNING_RATE, momentum=MOMENTUM)
        self._engine = None  # (X, y, engine) of the last train_rows data

    def parameters(self):
        return self.net.parameters()

    def train_rows(self, X, y, order):
        import numpy as np

        from ._training import diverged_error, make_engine

        if self._engine is None or self._engine[0] is not X or self._engine[1] is not y:
            engine = make_engine(self.net, self.optimizer, X, y, None, self.batch_size,
                                 self.engine_name)
            self._engine = (X, y, engine)

        def on_diverged(step, what=None, loss=None):
            return diverged_error(1, step, self.optimizer, what, loss)

        with np.errstate(over="ignore", invalid="ignore"):
            total, _, correct, seen = self._engine[2].run_epoch(
                np.ascontiguousarray(order, dtype=np.int64), self.net._rng, None, on_diverged)
        return total, correct, seen

    def epoch(self, X, y, seed):
        history = self.net.fit(X, y, epochs=1, batch_size=self.batch_size, optimizer=self.optimizer,
                               seed=seed, progress=False, engine=self.engine_name)
        return history.train_loss[0], history.train_accuracy[0]


class ReferenceTrainer:
    """fastnn.reference.ReferenceMLP: the same math in NumPy (numpy's BLAS)."""

    name = "reference"

    def __init__(self, params, batch_size):
        from .reference import ReferenceMLP

        self.batch_size = batch_size
        self.model = ReferenceMLP(params[0::2], params[1::2], [HIDDEN_ACTIVATION, None],
                                  lr=LEARNING_RATE, momentum=MOMENTUM, input_scale=INPUT_SCALE)

    def parameters(self):
        return self.model.parameters()

    def train_rows(self, X, y, order):
        return self.model.epoch(X, y, order, self.batch_size)

    def epoch(self, X, y, seed):
        return _mean_loss_and_accuracy(*self.train_rows(X, y, epoch_order(len(X), seed)))


class TorchTrainer:
    """PyTorch: nn.Sequential(Linear, Sigmoid, Linear), CrossEntropyLoss, torch.optim.SGD, with
    the batch gathered and scaled into preallocated tensors (index_select/mul with out=).

    Counts correct predictions like the other contenders (fit reports the accuracy). Threads:
    fastnn.get_num_threads() at construction (set_threads keeps them in step afterwards).
    """

    name = "torch"

    def __init__(self, params, batch_size):
        import torch

        import fastnn

        torch.set_num_threads(fastnn.get_num_threads())
        self.torch = torch
        self.batch_size = batch_size
        layers = []
        pairs = list(zip(params[0::2], params[1::2]))
        for i, (w, b) in enumerate(pairs):
            linear = torch.nn.Linear(*w.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w.T.copy()))
                linear.bias.copy_(torch.from_numpy(b.copy()))
            layers.append(linear)
            if i < len(pairs) - 1:
                layers.append(torch.nn.Sigmoid())
        self.model = torch.nn.Sequential(*layers)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
        self._data = None
        self._batches = {}

    def parameters(self):
        out = []
        for module in self.model:
            if isinstance(module, self.torch.nn.Linear):
                out += [module.weight.detach().numpy().T, module.bias.detach().numpy()]
        return out

    def _tensors(self, X, y):
        if self._data is None or self._data[0] is not X or self._data[1] is not y:
            self._data = (X, y, self.torch.from_numpy(X), self.torch.from_numpy(y))
        return self._data[2], self._data[3]

    def _batch(self, n, n_features):
        bufs = self._batches.get(n)
        if bufs is None:
            torch = self.torch
            bufs = self._batches[n] = (torch.empty((n, n_features), dtype=torch.uint8),
                                       torch.empty((n, n_features), dtype=torch.float32),
                                       torch.empty(n, dtype=torch.int64))
        return bufs

    def train_rows(self, X, y, order):
        torch = self.torch
        Xt, yt = self._tensors(X, y)
        order_t = torch.from_numpy(order)
        total, correct = 0.0, 0
        for start in range(0, len(order), self.batch_size):
            rows = order_t[start:start + self.batch_size]
            raw, xb, yb = self._batch(len(rows), X.shape[1])
            torch.index_select(Xt, 0, rows, out=raw)
            torch.mul(raw, INPUT_SCALE, out=xb)
            torch.index_select(yt, 0, rows, out=yb)
            logits = self.model(xb)
            loss = self.loss_fn(logits, yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(rows)
            correct += int((logits.detach().argmax(1) == yb).sum())
        return total, correct, len(order)

    def epoch(self, X, y, seed):
        return _mean_loss_and_accuracy(*self.train_rows(X, y, epoch_order(len(X), seed)))


class MatmulOnly:
    """The matrix products of MNIST_DIMS training alone, for the same batch sizes and steps:
    per step a[l] @ W[l] for every layer, a[l].T @ dz[l] for every layer and dz[l] @ W[l].T
    for all but the first, through scipy's sgemm (the BLAS fastnn calls) on transposed views
    of preallocated C-ordered arrays, exactly as fastnn passes them (no copies)."""

    name = "matmul-only"

    def __init__(self, batch_size, dims=MNIST_DIMS):
        import numpy as np
        from scipy.linalg import blas

        self.batch_size, self.dims, self.gemm = batch_size, dims, blas.sgemm
        rng = np.random.default_rng(1)
        self.w = [rng.standard_normal((a, b), dtype=np.float32) * 0.05 for a, b in zip(dims[:-1], dims[1:])]
        self.gw = [np.empty_like(w) for w in self.w]
        self._buffers = {}
        self._step(self._batch(batch_size), check=True)

    def _batch(self, n):
        import numpy as np

        bufs = self._buffers.get(n)
        if bufs is None:
            rng = np.random.default_rng(2)
            a = [rng.random((n, d), dtype=np.float32) for d in self.dims]
            dz = [rng.standard_normal((n, d), dtype=np.float32) * 0.01 for d in self.dims[1:]]
            da = [np.empty((n, d), np.float32) for d in self.dims[1:-1]]
            bufs = self._buffers[n] = (a, dz, [None] + da)
        return bufs

    def _step(self, bufs, check=False):
        # Row-major C = A @ B is column-major C.T = B.T @ A.T: every operand below is the
        # F-ordered transpose view of a C-ordered array, so f2py passes it without a copy.
        a, dz, da = bufs
        gemm = self.gemm
        for l, w in enumerate(self.w):
            c = gemm(1.0, w.T, a[l].T, 0.0, a[l + 1].T, overwrite_c=1)
            assert not check or _wrote_in_place(c, a[l + 1])
        for l in range(len(self.w) - 1, -1, -1):
            c = gemm(1.0, dz[l].T, a[l].T, 0.0, self.gw[l].T, trans_b=1, overwrite_c=1)
            assert not check or _wrote_in_place(c, self.gw[l])
            if l > 0:
                c = gemm(1.0, self.w[l].T, dz[l].T, 0.0, da[l].T, trans_a=1, overwrite_c=1)
                assert not check or _wrote_in_place(c, da[l])

    def parameters(self):
        return None

    def train_rows(self, X, y, order):
        n_rows = len(order)
        for start in range(0, n_rows, self.batch_size):
            self._step(self._batch(min(self.batch_size, n_rows - start)))
        return float("nan"), 0, n_rows

    def epoch(self, X, y, seed):
        self.train_rows(X, y, range(len(X)))
        return float("nan"), float("nan")


def _wrote_in_place(result, buffer):
    import numpy as np

    return np.shares_memory(result, buffer)


def make_trainer(name, params, batch_size):
    """A contender by name: "fastnn", "fastnn-layerwise", "reference", "torch", "matmul-only"."""
    if name == "fastnn":
        return FastnnTrainer(params, batch_size)
    if name == "fastnn-layerwise":
        return FastnnTrainer(params, batch_size, native=False)
    if name == "reference":
        return ReferenceTrainer(params, batch_size)
    if name == "torch":
        return TorchTrainer(params, batch_size)
    if name == "matmul-only":
        return MatmulOnly(batch_size)
    raise ValueError(f"unknown contender {name!r}")


class DisagreementError(AssertionError):
    """A contender does not compute what the NumPy reference computes."""


def check_agreement(setup, batch_size, names, steps=AGREEMENT_STEPS, seed=7):
    """Train each named contender and the reference from the same start on the same
    ``steps`` batches (one epoch of a subset, through ``epoch()``); raise DisagreementError
    unless every parameter and the epoch loss agree within float32 tolerances.

    Returns {name: largest |parameter difference| to the reference}.
    """
    import numpy as np

    n = steps * batch_size
    X, y = setup.X[:n], setup.y[:n]
    reference = ReferenceTrainer(setup.params, batch_size)
    ref_loss, ref_accuracy = reference.epoch(X, y, seed)
    worst = {}
    for name in names:
        if name in ("reference", "matmul-only"):
            continue
        trainer = make_trainer(name, setup.params, batch_size)
        loss, accuracy = trainer.epoch(X, y, seed)
        if not math.isclose(loss, ref_loss, rel_tol=AGREEMENT_RTOL, abs_tol=AGREEMENT_ATOL):
            raise DisagreementError(f"{name}, batch {batch_size}: loss {loss!r} after {steps} steps, "
                                    f"the reference has {ref_loss!r}")
        if abs(accuracy - ref_accuracy) * n > 1:  # one near-tie may round the other way
            raise DisagreementError(f"{name}, batch {batch_size}: accuracy {accuracy} vs the "
                                    f"reference's {ref_accuracy}")
        worst[name] = 0.0
        for i, (got, want) in enumerate(zip(trainer.parameters(), reference.parameters())):
            got, want = np.asarray(got), np.asarray(want)
            if got.shape != want.shape or not np.allclose(got, want, AGREEMENT_RTOL, AGREEMENT_ATOL):
                diff = np.abs(got - want).max() if got.shape == want.shape else "shape"
                raise DisagreementError(f"{name}, batch {batch_size}: parameter {i} differs from the "
                                        f"reference after {steps} steps (max |diff| {diff})")
            worst[name] = max(worst[name], float(np.abs(got - want).max()))
    return worst


def measure_epochs(setup, batch_size, names, repeats, pause=0.0, warmup_steps=20):
    """Check agreement, then time one full epoch of each contender, interleaved.

    Every repeat uses one seed for all contenders, so they train on the same batches.
    Returns {"steps", "rows", "repeats", "seconds": {name: median}, "all_seconds", "loss":
    {name: last epoch's mean loss}, "max_param_diff": {name: ...}, "other_load"}.
    """
    X, y = setup.X, setup.y
    max_diff = check_agreement(setup, batch_size, names)
    trainers = {name: make_trainer(name, setup.params, batch_size) for name in names}
    warm = epoch_order(len(X), 99)[:warmup_steps * batch_size]
    for trainer in trainers.values():
        trainer.train_rows(X, y, warm)
    last_loss = {}

    def run(name, trainer):
        def one_epoch(repeat):
            last_loss[name] = trainer.epoch(X, y, 1000 + repeat)[0]
        return one_epoch

    load = OtherLoad()
    times = interleaved({name: run(name, t) for name, t in trainers.items()}, repeats, pause)
    other_load = load.share()
    return {"steps": -(-len(X) // batch_size), "rows": len(X), "repeats": repeats,
            "seconds": {name: median(ts) for name, ts in times.items()},
            "all_seconds": times,
            "loss": {name: loss for name, loss in last_loss.items() if not math.isnan(loss)},
            "max_param_diff": max_diff, "other_load": other_load}


# ------------------------------------------------------------------------------------------
# Report

def _fmt_time(seconds):
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def _fmt_share(x):
    return "-" if x is None else f"{100 * x:.0f}%"


def _fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def _epoch_ratios(seconds):
    fast = seconds["fastnn"]
    return {
        "reference_over_fastnn": seconds["reference"] / fast if "reference" in seconds else None,
        "torch_over_fastnn": seconds["torch"] / fast if "torch" in seconds else None,
        "fastnn_over_matmul": fast / seconds["matmul-only"] if "matmul-only" in seconds else None,
    }


def evaluate_targets(kernels, epochs):
    """[{"what", "threads", "target", "measured", "met"}] for every target that was measured."""
    out = []
    for row in kernels:
        if row["target"] is not None and row["threads"] == TARGET_THREADS_KERNELS:
            out.append({"what": f"kernel {row['op']} {row['shape']}: reference/fastnn",
                        "threads": row["threads"], "target": f">= {row['target']}x",
                        "measured": row["ratio"], "met": row["ratio"] >= row["target"],
                        "ceiling": row.get("ceiling"), "target_ratio": row["target"]})
    for batch, who, bound in EPOCH_TARGETS:
        row = next((r for r in epochs if r["batch_size"] == batch
                    and r["threads"] == TARGET_THREADS_EPOCHS), None)
        if row is None:
            continue
        if who == "matmul-only":
            value = row["ratios"]["fastnn_over_matmul"]
            what, target, met = "fastnn/matmul-only", f"<= {bound}x", value is not None and value <= bound
        else:
            value = row["ratios"][f"{who}_over_fastnn"]
            what, target, met = f"{who}/fastnn", f">= {bound}x", value is not None and value >= bound
        if value is not None:
            out.append({"what": f"epoch batch {batch}: {what}", "threads": TARGET_THREADS_EPOCHS,
                        "target": target, "measured": value, "met": met})
    return out


def format_report(result):
    """The human-readable report (a str) of a run's result dict."""
    m, v = result["machine"], result["versions"]
    lines = [f"fastnn bench{' --quick' if result['quick'] else ''}  "
             f"({time.strftime('%Y-%m-%d %H:%M', time.localtime(result['started']))})",
             f"machine: {m['cpu']} ({', '.join(m['vector_extensions']) or 'no vector extensions found'}), "
             f"{m['cores']} cores, {m['memory_gib']} GiB, SIMD path {m['simd_path']}, products "
             f"{m['gemm_strategy']}, OpenMP {'on' if m['openmp'] else 'off'}, load average at start "
             f"{m['load_average']}",
             "versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None)
             + ("" if v["torch"] else " (torch not installed: its column is empty)")]
    for threads, info in result["blas"].items():
        lines.append(f"threads {threads}: fastnn kernels {info['fastnn_kernel_threads']}; "
                     f"{info['note']}")
        for b in info["blas"]:
            ver = f" {b['version']}" if b["version"] else ""
            arch = f" {b['architecture']}" if b["architecture"] else ""
            lines.append(f"  BLAS for {b['side']}: {b['library']}{ver}{arch}, {b['threads']} thread(s)"
                         + (f"  [{b['path']}]" if b["path"] else ""))
    if result["kernels"]:
        lines += ["", "Kernels, float32: median time per call (out= buffers on both sides); "
                      "ratio = reference / fastnn",
                  "ceiling = reference / its matrix products alone (np.matmul): the largest ratio "
                  "reachable with products that fast"]
        header = (f"{'op':<24} {'shape':<17} {'thr':>3} {'fastnn':>10} {'reference':>10} {'ratio':>8} "
                  f"{'ceiling':>8} {'other':>5}  target")
        lines += [header, "-" * len(header)]
        for r in result["kernels"]:
            target = "" if r["target"] is None else (
                f">= {r['target']}x" + ("" if r["threads"] == TARGET_THREADS_KERNELS else " (at 1 thr)"))
            lines.append(f"{r['op']:<24} {r['shape']:<17} {r['threads']:>3} {_fmt_time(r['fastnn']):>10} "
                         f"{_fmt_time(r['reference']):>10} {_fmt_ratio(r['ratio']):>8} "
                         f"{_fmt_ratio(r.get('ceiling')):>8} {_fmt_share(r['other_load']):>5}  {target}")
    if result["epochs"]:
        dims = "-".join(map(str, MNIST_DIMS))
        lines += ["", f"Epochs: MNIST {dims} ({HIDDEN_ACTIVATION}, softmax-CE, SGD lr {LEARNING_RATE} "
                      f"momentum {MOMENTUM}, float32, 60000 rows, full epochs); median wall time",
                  "ref/fn = reference / fastnn, torch/fn = torch / fastnn, fn/mm = fastnn / matmul-only"]
        header = (f"{'batch':>5} {'thr':>3} {'steps':>5} {'fastnn':>10} {'reference':>10} {'torch':>10} "
                  f"{'matmul-only':>11} {'ref/fn':>7} {'torch/fn':>8} {'fn/mm':>6} {'other':>5}  "
                  "last loss fastnn/ref/torch")
        lines += [header, "-" * len(header)]
        for r in result["epochs"]:
            s, q, loss = r["seconds"], r["ratios"], r["loss"]
            losses = "/".join(f"{loss[k]:.4f}" if k in loss else "-" for k in ("fastnn", "reference", "torch"))
            lines.append(f"{r['batch_size']:>5} {r['threads']:>3} {r['steps']:>5} "
                         f"{_fmt_time(s.get('fastnn')):>10} {_fmt_time(s.get('reference')):>10} "
                         f"{_fmt_time(s.get('torch')):>10} {_fmt_time(s.get('matmul-only')):>11} "
                         f"{_fmt_ratio(q['reference_over_fastnn']):>7} {_fmt_ratio(q['torch_over_fastnn']):>8} "
                         f"{_fmt_ratio(q['fastnn_over_matmul']):>6} {_fmt_share(r['other_load']):>5}  {losses}")
    if result["targets"]:
        lines += ["", "Targets (kernels at 1 thread, epochs at 2 threads):"]
        for t in result["targets"]:
            verdict = "met" if t["met"] else "MISSED"
            ceiling = t.get("ceiling")
            if not t["met"] and ceiling is not None and ceiling < t["target_ratio"]:
                verdict += f" (out of reach: ceiling {ceiling:.2f}x)"
            lines.append(f"  {t['what']:<58} {t['target']:>8}  measured {t['measured']:.2f}x  {verdict}")
    lines.append(f"\n'other': share of the CPUs that other processes used during that comparison "
                 f"(over a few % means the row is not clean). Whole run: "
                 f"{_fmt_share(result['other_load'])} other load, {result['seconds']:.1f} s.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Command line

def add_arguments(parser):
    """Add the options of ``fastnn bench`` to an argparse parser."""
    parser.description = (
        "Time fastnn's kernels against their NumPy twins and one MNIST 784-128-10 training epoch "
        "against the NumPy reference network, PyTorch (if installed) and the matrix products "
        "alone; contenders run interleaved in one process; medians and ratios are printed.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, only the kernels with a target, batch sizes 32 and "
                             "128 only (still full epochs), 2 threads only unless --threads is "
                             "given, no re-measuring: under a minute")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object on the last line of stdout "
                             "(the table goes to stderr)")
    parser.add_argument("--threads", type=positive_int, nargs="+", metavar="N",
                        help="thread counts to measure (default: 1 2; with --quick: 2)")
    parser.add_argument("--batch-sizes", type=positive_int, nargs="+", metavar="B",
                        help=f"epoch batch sizes (default: {' '.join(map(str, BATCH_SIZES))}; "
                             f"with --quick: {' '.join(map(str, QUICK_BATCH_SIZES))})")
    parser.add_argument("--repeats", type=positive_int, metavar="R",
                        help="timed repeats per comparison (default: kernels 11 and epochs 5; "
                             "with --quick: 5 and 3)")
    parser.add_argument("--retries", type=non_negative_int, metavar="N",
                        help="measure a comparison again, up to N times, while other processes "
                             "use more than --max-other-load of the CPUs (default: 2; --quick: 0)")
    parser.add_argument("--max-other-load", type=share, default=0.05, metavar="SHARE",
                        help="share of the CPUs other processes may use during a comparison "
                             "before it is measured again (default: 0.05)")
    parser.add_argument("--only", choices=("kernels", "epochs"),
                        help="run only the kernel or only the epoch comparisons")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    parser.add_argument("--latency", action="store_true",
                        help="time one predict_proba call instead: p50 and p99 for 1, 8 and 256 "
                             "rows of 784-128-10 at 1 thread, against a NumPy forward pass, "
                             "PyTorch and ONNX Runtime when installed (--quick: fewer calls)")
    return parser


def _cleanest(measure, retries, max_other_load):
    """``measure()``, measured again up to ``retries`` times while other processes used more
    than ``max_other_load`` of the CPUs; keeps the attempt with the least other load."""
    best = measure()
    attempts = 1
    while attempts <= retries and (best["other_load"] or 0.0) > max_other_load:
        _progress(f"other processes used {100 * best['other_load']:.0f}% of the CPUs meanwhile: "
                  "measuring again")
        again = measure()
        attempts += 1
        if (again["other_load"] or 0.0) < best["other_load"]:
            best = again
    best["attempts"] = attempts
    return best


def _progress(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(args):
    """Run ``fastnn bench`` with parsed arguments; returns the exit status (0, or 1 when a
    contender disagrees with the reference)."""
    if getattr(args, "latency", False):
        from .bench_latency import run_latency
        return run_latency(args)
    started = time.time()
    t0 = time.perf_counter()
    run_load = OtherLoad()
    quick = args.quick
    threads = args.threads or ([2] if quick else [1, 2])
    batch_sizes = args.batch_sizes or (QUICK_BATCH_SIZES if quick else BATCH_SIZES)
    kernel_repeats = args.repeats or (5 if quick else 11)
    epoch_repeats = args.repeats or (3 if quick else 5)
    min_seconds = 0.005 if quick else 0.02
    retries = args.retries if args.retries is not None else (0 if quick else 2)
    use_torch = not args.no_torch and torch_available() and args.only != "kernels"
    if use_torch:
        import torch  # noqa: F401  (imported before the threads are pinned, so they cover it)

    result = {"quick": quick, "started": started, "machine": machine_info(), "versions": versions(),
              "blas": {}, "kernels": [], "epochs": [], "targets": []}
    if result["machine"]["load_average"] and result["machine"]["load_average"][0] > 0.5:
        _progress(f"warning: load average {result['machine']['load_average'][0]} at start: "
                  "other processes compete for the cores and the timings suffer")
    status = 0
    setup = None
    names = ["fastnn", "reference"] + (["torch"] if use_torch else []) + ["matmul-only"]
    try:
        for n in threads:
            set_threads(n)
            pause = POOL_IDLE_PAUSE if n > 1 else 0.0
            result["blas"][n] = blas_in_use()
            if args.only != "epochs":
                for case in kernel_cases(with_target_only=quick):
                    _progress(f"kernel {case.name}, {n} thread(s)")
                    r = _cleanest(lambda: measure_kernel(case, kernel_repeats, min_seconds, pause),
                                  retries, args.max_other_load)
                    result["kernels"].append({"op": case.op, "shape": case.shape, "threads": n,
                                              "target": case.target, **r})
            if args.only != "kernels":
                setup = setup or training_setup()
                for batch in batch_sizes:
                    _progress(f"epochs at batch {batch}, {n} thread(s): {', '.join(names)}")
                    r = _cleanest(lambda: measure_epochs(setup, batch, names, epoch_repeats, pause),
                                  retries, args.max_other_load)
                    r["ratios"] = _epoch_ratios(r["seconds"])
                    result["epochs"].append({"batch_size": batch, "threads": n, **r})
    except (DisagreementError, AssertionError) as exc:
        print(f"fastnn bench: a contender disagrees with the reference: {exc}", file=sys.stderr)
        status = 1
    result["targets"] = evaluate_targets(result["kernels"], result["epochs"])
    result["seconds"] = time.perf_counter() - t0
    result["other_load"] = run_load.share()
    report = format_report(result)
    if args.json:
        print(report, file=sys.stderr)
        result["status"] = status
        print(json.dumps(result, default=_json_default))
    else:
        print(report)
    return status


def _json_default(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def main(argv=None):
    """``python -m fastnn.bench [options]``: parse ``argv`` and run; returns the exit status."""
    parser = add_arguments(argparse.ArgumentParser(prog="fastnn bench"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
