"""predict / predict_proba in one compiled call (``_core.infer``, src_c/infer.pxi).

A network's forward pass is turned once into an InferencePlan (pointers to the weights,
widths, activation codes and parameters) and rebuilt only when a layer's W or b is replaced by another array.
Each call then checks the input's type and shape in a few attribute reads, and the compiled
call does the rest: NaN/Inf and overflow checks, scaling, every layer, the head, on the calling
thread, or for PARALLEL_ROWS rows and more shared among fastnn's threads. No BLAS is involved,
so one row costs a few microseconds, and the products are summed in an order that does not
depend on the number of rows (dense_rows.h): a row gives the same bits alone and inside any
batch.
"""
import numpy as np

from ._native import core as _core
from ._threads import end_spinning_blas_workers, get_num_threads
from .losses import registry_entry

_METHODS = ("predict", "predict_proba")
# A call on this many rows or more is shared among fastnn's threads (src_c/infer.pxi: 449, the
# fewest that make 8 blocks of 64 rows).
PARALLEL_ROWS = _core.infer_parallel_rows()


def before_call(n_rows):
    """Before a compiled call on ``n_rows`` rows: when fastnn's threads will share them, end
    OpenBLAS's workers if they still spin after a threaded product, as a threaded fit does
    (fastnn._blas_pools; beside them a 12,000-row predict took 1.6-2x its time on two cores).
    Asking the count also derives the default again if the CPU affinity changed."""
    if n_rows >= PARALLEL_ROWS and get_num_threads() > 1:
        end_spinning_blas_workers()


def head(loss, method, n_outputs=1):
    """The compiled head for ``loss.<method>`` (method "predict" or "predict_proba") on
    ``n_outputs`` outputs (the registry entry's ``heads``), or None: other losses get the
    outputs and apply their own."""
    entry = registry_entry(loss)
    if entry is None:
        return None
    name = entry.heads[_METHODS.index(method)]
    if name in ("positive", "sigmoid") and n_outputs > 1:  # multi-label: these heads read one column
        return None
    return getattr(_core, "HEAD_" + name.upper())


def _usable(a, shape, dtype):
    return (type(a) is np.ndarray and a.shape == shape and a.dtype == dtype
            and a.flags.c_contiguous)


def build_plan(network):
    """The InferencePlan of ``network``'s current layers, or None when a parameter array is not
    what the plan needs (C-contiguous, the network dtype and the layer's shape): the layer-by-
    layer path then runs, and its checks say what is wrong."""
    steps, linears = [], []
    for step in network._steps:
        kind = type(step).__name__
        if kind == "_Dense":
            lin = step.linear
            if not (_usable(lin.W, (lin.in_features, lin.out_features), network.dtype)
                    and _usable(lin.b, (lin.out_features,), network.dtype)):
                return None
            steps.append((lin.W, lin.b, step.act_code, lin.out_features, step.act_param))
            linears.append(lin)
        elif kind == "_Act":
            steps.append((None, None, step.entry.code, step.width, step.param))
        # _Drop: the identity at inference
    limit = float(np.finfo(network.dtype).max)
    return _core.InferencePlan(steps, network.n_features, network.dtype == np.float32,
                               network.input_scale, network.input_shift, limit, linears)
