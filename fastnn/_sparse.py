"""Sparse inputs: a scipy.sparse matrix (CSR, CSC, COO, or the newer sparse arrays) is checked
once, kept as CSR and never densified whole. Training, evaluation and prediction gather the rows
they need into dense buffers of at most CHUNK_VALUES values, so memory stays near the matrix's
own size.

scipy is imported only when a sparse matrix arrives (``is_sparse`` looks at the type's module).
"""
import numpy as np

from ._validate import network_input

# Dense values gathered at once (per chunk of training steps, per evaluation batch): 8 MB in
# float32, 16 MB in float64.
CHUNK_VALUES = 1 << 21
_DATA_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))


def is_sparse(X):
    """True for a scipy.sparse matrix or array (without importing scipy)."""
    return type(X).__module__.startswith("scipy.sparse") and hasattr(X, "tocsr")


def rows_per_chunk(n_features, multiple=1):
    """Rows of a dense chunk of at most CHUNK_VALUES values, a multiple of ``multiple`` (at
    least one multiple)."""
    return max(1, CHUNK_VALUES // (n_features * multiple)) * multiple


class SparseRows:
    """A checked sparse input as the network reads it: CSR with sorted, unique indices and
    uint8/float32/float64 values, and the rows gathered densely on demand.

    ``len``, ``shape``, ``dtype`` and ``ndim`` answer as for the dense array it stands for.
    """

    ndim = 2

    def __init__(self, csr):
        self.csr = csr
        self.shape = csr.shape
        self.dtype = csr.data.dtype

    def __len__(self):
        return self.shape[0]

    def dense_rows(self, rows, out=None):
        """The raw values of ``rows`` (int array) as a dense (len(rows), n_features) array of
        self.dtype; written into ``out`` when given (C-contiguous, that shape and dtype)."""
        part = self.csr[np.asarray(rows, dtype=np.intp)]
        return part.toarray(out=out)

    def column_extremes(self):
        """(2, n_features) float64: each column's least and greatest raw value, implicit zeros
        included (what fastnn._range needs of an input)."""
        lo = self.csr.min(axis=0)
        hi = self.csr.max(axis=0)
        dense = [np.asarray(v.toarray() if hasattr(v, "toarray") else v, np.float64).reshape(-1)
                 for v in (lo, hi)]
        return np.stack(dense)


def check(X, n_features, dtype, scale, shift, argname):
    """The SparseRows of a scipy.sparse X for a network of ``n_features`` inputs and float
    ``dtype`` whose inputs are used as x * scale + shift.

    The matrix is not copied when it is already CSR in canonical form with uint8/float32/float64
    values; otherwise one CSR copy is made (other real values cast to ``dtype``). Raises
    ValueError for a wrong shape, no rows, NaN/Inf values or values that overflow ``dtype`` once
    scaled (naming the first one's row and column), TypeError for non-real values.
    """
    network_input(X, n_features, argname)
    csr = X.tocsr()
    if csr.dtype not in _DATA_DTYPES:
        csr = csr.astype(dtype)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    data = csr.data
    finite = np.isfinite(data) if data.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        _raise_at(csr, np.flatnonzero(~finite), argname, "NaN/Inf value(s)")
    limit = float(np.finfo(dtype).max)
    if data.size:
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = data.astype(np.float64) * scale + shift
        bad = np.flatnonzero(~(np.abs(scaled) <= limit))
        if bad.size:
            _raise_at(csr, bad, argname, f"value(s) that overflow {np.dtype(dtype).name} once "
                      "scaled (x * input_scale + input_shift)")
    if abs(shift) > limit:  # the implicit zeros
        raise ValueError(f"{argname}: its zeros overflow {np.dtype(dtype).name} once scaled")
    return SparseRows(csr)


def _raise_at(csr, bad, argname, what):
    first = int(bad[0])
    row = int(np.searchsorted(csr.indptr, first, side="right") - 1)
    raise ValueError(f"{argname}: {bad.size} {what}; the first at row {row}, column "
                     f"{int(csr.indices[first])}")


class ChunkedEngine:
    """Trains on a SparseRows input through a dense engine: each run of whole batches (at most
    CHUNK_VALUES input values) is gathered into one dense buffer and handed to a fresh engine
    of class ``engine_cls`` over that buffer, so the batches, their order, the Dropout masks
    and hence the weights are those of the same rows given densely. Same interface as the
    engines of fastnn._training."""

    def __init__(self, engine_cls, network, optimizer, X, targets, sample_weight, batch_size):
        self.engine_cls, self.network, self.optimizer = engine_cls, network, optimizer
        self.X, self.targets, self.sample_weight = X, targets, sample_weight
        self.batch_size = batch_size
        self.chunk_rows = rows_per_chunk(X.shape[1], batch_size)
        self.buffer = np.empty((self.chunk_rows, X.shape[1]), X.dtype)

    def blas_scope_for(self, network, batch_size):
        return self.engine_cls.blas_scope_for(network, batch_size)

    def run_epoch(self, order, rng, bar, on_diverged):
        totals = [0.0, 0.0, 0, 0]
        for start in range(0, len(order), self.chunk_rows):
            rows = order[start:start + self.chunk_rows]
            dense = self.X.dense_rows(rows, self.buffer[:len(rows)])
            targets = self.targets[rows]
            weights = None if self.sample_weight is None else self.sample_weight[rows]
            engine = self.engine_cls(self.network, self.optimizer, dense, targets, weights,
                                     self.batch_size)
            steps_before = start // self.batch_size

            def shifted(step, *args, _before=steps_before, **kwargs):
                return on_diverged(step + _before, *args, **kwargs)

            result = engine.run_epoch(np.arange(len(rows), dtype=np.int64), rng, bar, shifted)
            totals = [a + b for a, b in zip(totals, result)]
        return tuple(totals)
