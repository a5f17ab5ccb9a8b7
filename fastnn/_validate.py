"""Argument checks shared by the public ops: every error names the argument, what was expected
and what came, before any compiled code runs."""
import math
import numbers
import operator

import numpy as np

from ._native import core as _core

INT_MAX = 2**31 - 1  # BLAS dimensions are C ints


def float_array(a, name, ndim=None, dtype=None, shape=None):
    """``a`` as a C-contiguous, native-order float32/float64 ndarray (copied only when needed).

    ndim: required number of dimensions (None: any, but at least 1). dtype: the float dtype the
    other arrays of the call already have; a different one is a TypeError. shape: the exact
    shape required (any number of dimensions, 0 too), instead of ndim.
    """
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    dt = a.dtype
    if dt.char not in "fd":
        raise TypeError(f"{name}: expected a float32 or float64 array, got {dt}")
    if dtype is not None and dt.char != dtype.char:
        raise TypeError(f"{name}: expected {dtype} like the other arrays, got {dt}")
    if shape is not None:
        check_shape(a, name, shape)
    elif ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got {a.ndim}-D with shape {a.shape}")
    elif a.ndim == 0:
        raise ValueError(f"{name}: expected an array with at least one dimension, got a scalar")
    if not dt.isnative:
        a = a.astype(dt.newbyteorder("="))
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


def network_input(X, n_features, name):
    """Check the shape and kind of a network's input X (an ndarray or a scipy.sparse matrix):
    2-D, ``n_features`` columns, at least one row, real values."""
    if len(X.shape) != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, {n_features}), got shape {X.shape}")
    if X.shape[1] != n_features:
        raise ValueError(f"{name}: expected {n_features} features per row (the first Linear's "
                         f"in_features), got {X.shape[1]}")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real-valued array, got dtype {X.dtype.name}")


def check_shape(a, name, shape):
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")


def out_buffer(out, name, shape, dtype, inputs=(), may_alias=()):
    """Validate a caller-provided output buffer, or allocate one when ``out`` is None.

    out must be a writeable, C-contiguous ndarray of the exact shape and (native) dtype, and
    pass check_overlap(out, name, inputs, may_alias).
    """
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {out.dtype}")
    if not out.dtype.isnative:
        raise TypeError(f"{name}: expected an array in native byte order, got dtype {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")
    if not out.flags.writeable:
        raise ValueError(f"{name}: the array is read-only")
    check_overlap(out, name, inputs, may_alias)
    return out


def check_overlap(out, name, inputs=(), may_alias=()):
    """ValueError naming ``name`` and the input when the ndarray ``out`` shares memory with one of
    ``inputs``, or with one of ``may_alias`` other than by being it exactly (same start, shape
    and strides: in place).

    Both are ``(input name, array, ...)`` tuples. Pass the caller's object (so that an overlap
    is seen even when the input itself gets copied, as the twins see it) and the array made from
    it (what the kernel reads). Objects that are not ndarrays (memoryviews, tensors, ...) are
    seen through np.asarray, which shares their memory; None entries are skipped.
    """
    for entry in may_alias:
        for a in entry[1:]:
            if a is None:
                continue
            a = _as_array(a)
            if (_core.first_overlap(out, (a,)) >= 0 and not _same_buffer(out, a)
                    and _first_shared(out, (a,)) >= 0):
                raise ValueError(f"{name}: overlaps {entry[0]} partially; pass {entry[0]} "
                                 "itself or a separate array")
    if inputs:
        names, arrays = [], []
        for entry in inputs:
            for a in entry[1:]:
                if a is not None:
                    names.append(entry[0])
                    arrays.append(_as_array(a))
        bad = _first_shared(out, tuple(arrays))
        if bad >= 0:
            raise ValueError(f"{name}: must not share memory with {names[bad]}")


def _as_array(a):
    return a if type(a) is np.ndarray else np.asarray(a)


# The effort numpy.shares_memory may spend on two arrays whose bounds overlap (a few
# microseconds at most); arrays it cannot tell apart within it count as overlapping.
SHARES_MEMORY_MAX_WORK = 1000


def _first_shared(out, others):
    """Index of the first entry of ``others`` sharing an element with the ndarray ``out`` (entries
    that are not ndarrays, and empty arrays, are skipped), or -1. The compiled bounds test runs
    first; where bounds overlap, numpy.shares_memory decides within SHARES_MEMORY_MAX_WORK."""
    start = 0
    while True:
        i = _core.first_overlap(out, others[start:])
        if i < 0:
            return -1
        i += start
        try:
            if np.shares_memory(out, others[i], max_work=SHARES_MEMORY_MAX_WORK):
                return i
        except (np.exceptions.TooHardError, OverflowError):  # undecided
            return i
        start = i + 1


def _same_buffer(a, b):
    return a is b or (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
                      and a.shape == b.shape and a.strides == b.strides)


def index_array(a, name, length=None):
    """``a`` as a 1-D C-contiguous int64 array; bool, float and object arrays are TypeErrors."""
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    if length is not None and a.shape[0] != length:
        raise ValueError(f"{name}: expected {length} entries, got {a.shape[0]}")
    if a.dtype.kind == "u" and a.dtype.itemsize == 8 and a.size and a.max() > np.iinfo(np.int64).max:
        bad = int(np.flatnonzero(a > np.iinfo(np.int64).max)[0])
        raise ValueError(f"{name}: entry {bad} is {a[bad]}, far outside the valid range")
    if a.dtype != np.int64 or not a.dtype.isnative or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a, dtype=np.int64)
    return a


def finite_number(value, name, minimum=None):
    """A real, finite hyper-parameter (a numbers.Real: int, float, Fraction, NumPy scalar) as a
    Python float. Bools, strings and the like are TypeErrors; NaN, inf and numbers beyond the
    float range ValueErrors."""
    if type(value) is not float and (isinstance(value, (bool, np.bool_))
                                     or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{name}: expected a finite number, got {type(value).__name__} beyond "
                         "the float range") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected a value >= {minimum}, got {value}")
    return value


def blas_dims(**dims):
    for name, value in dims.items():
        if value > INT_MAX:
            raise ValueError(f"{name}: {value} exceeds the largest dimension BLAS takes ({INT_MAX})")


def as_index(value, name):
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None


def check_sample_weight(sample_weight, n, dtype, argname="sample_weight", require_positive=True,
                        finite_sum=True):
    """None, or ``sample_weight`` as a C-contiguous (n,) array of ``dtype``.

    Raises TypeError for a non-real dtype and ValueError (naming ``argname``, the first bad
    index and its value) for a shape other than (n,), NaN/Inf (also after conversion to
    ``dtype``) or negative weights; with ``require_positive`` (a weighted mean is taken) also
    for weights that are all zero, and with ``finite_sum`` for weights whose sum overflows
    float64 (training sums them per batch).
    """
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype == np.bool_ or w.dtype.kind not in "iuf":
        raise TypeError(f"{argname}: expected real weights, got dtype {w.dtype.name}")
    if w.ndim != 1 or len(w) != n:
        raise ValueError(f"{argname}: expected shape ({n},), one weight per row, got shape {w.shape}")
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(w, dtype=dtype)
    bad = np.flatnonzero(~np.isfinite(converted))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{argname}: expected finite weights; {argname}[{i}] = {w[i]} "
                         f"({bad.size} not finite in {np.dtype(dtype).name})")
    bad = np.flatnonzero(converted < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{argname}: expected weights >= 0; {argname}[{i}] = {w[i]} "
                         f"({bad.size} negative)")
    if require_positive and not converted.any():
        raise ValueError(f"{argname}: all {n} weights are zero (or underflow to zero in "
                         f"{np.dtype(dtype).name}); at least one must be positive")
    if finite_sum:
        with np.errstate(over="ignore"):
            total = np.add.reduce(converted, dtype=np.float64)
        if not math.isfinite(total):
            raise ValueError(f"{argname}: the weights sum to more than float64 holds (largest "
                             f"{float(converted.max()):.3g}); divide them all by one factor, "
                             "which leaves every weighted mean unchanged")
    return converted
