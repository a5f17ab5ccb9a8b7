"""The training benchmarks: one MNIST 784-128-10 epoch (sigmoid, softmax cross-entropy, SGD lr
0.1 momentum 0.9, float32, pixels scaled by 1/255 per batch) by ``Network.fit``, by the NumPy
:class:`~fastnn.bench.reference_mlp.ReferenceMLP`, by PyTorch when it is installed, and the
matrix products alone ("matmul-only"), checked to agree and then timed interleaved."""
import math
from dataclasses import dataclass

from .timing import OtherLoad, interleaved, median

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

    from ..datasets import load_mnist

    (X, y), _ = load_mnist()
    X = np.require(X, np.uint8, ["C", "W"])  # torch.from_numpy wants a writeable array
    y = np.require(y, np.int64, ["C", "W"])
    net = fastnn_network(seed)
    return TrainingSetup(X, y, [p.copy() for p in net.parameters()])


def fastnn_network(seed):
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
        self.net = fastnn_network(INIT_SEED)
        for dst, src in zip(self.net.parameters(), params):
            dst[...] = src
        self.optimizer = fastnn.SGD(lr=LEARNING_RATE, momentum=MOMENTUM)
        self._engine = None  # (X, y, engine) of the last train_rows data

    def parameters(self):
        return self.net.parameters()

    def train_rows(self, X, y, order):
        import numpy as np

        from .._training import diverged_error, make_engine

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
    """fastnn.bench.reference_mlp.ReferenceMLP: the same math in NumPy (numpy's BLAS)."""

    name = "reference"

    def __init__(self, params, batch_size):
        from .reference_mlp import ReferenceMLP

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

