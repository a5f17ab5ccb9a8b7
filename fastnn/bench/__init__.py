"""``fastnn bench``: fastnn's kernels and MNIST training against NumPy and PyTorch, side by side.

Each comparison runs its contenders interleaved (A, B, A, B, ... with the order rotated every
repeat) in one process and reports the median of several repeats, after checking that the
contenders compute the same thing, so a fast wrong answer cannot pass.

- :mod:`~fastnn.bench.kernels`: each op of :mod:`fastnn.ops` against its NumPy twin in
  :mod:`fastnn.reference` (identical signatures, the same ``out=`` buffers on both sides), float32.
- :mod:`~fastnn.bench.training`: one epoch of MNIST 784-128-10 (sigmoid, softmax cross-entropy,
  SGD lr 0.1 momentum 0.9, float32, pixels scaled by 1/255 per batch) by ``Network.fit``, by the
  NumPy network :class:`~fastnn.bench.reference_mlp.ReferenceMLP`, by PyTorch when it is
  installed (an equivalent ``nn.Sequential`` and ``torch.optim.SGD`` over the same batches), and
  the time of the matrix products alone for the same shapes and steps ("matmul-only": scipy's
  BLAS, the one fastnn calls, preallocated), the limit no implementation of this network can beat.
- :mod:`~fastnn.bench.latency` (``--latency``): one ``predict_proba`` call on 1, 8 and 256 rows
  against a NumPy forward pass, PyTorch and ONNX Runtime, p50 and p99.
- :mod:`~fastnn.bench.timing` (interleaving, medians, other processes' load),
  :mod:`~fastnn.bench.machine` (threads, CPU, BLAS, versions), :mod:`~fastnn.bench.report` (the
  printed report and the targets) and :mod:`~fastnn.bench.command` (the options and the run).

The pytest-benchmark suites in ``benchmarks/`` use the same cases and contenders. Heavy modules
(numpy, fastnn's core, torch) are imported inside the functions so that building the command
line parser stays instant.
"""
from .command import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
