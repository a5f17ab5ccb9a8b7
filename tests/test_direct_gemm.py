"""fastnn's direct products (src_c/direct_gemm.h, direct_gemm_impl.h) against NumPy's matmul:
every shape class and form, both dtypes, transposed operands, leading dimensions larger than the
rows and operands that start inside a larger buffer, on every SIMD path; and the rule that
picks them."""
import itertools

import numpy as np
import pytest

from fastnn import _machine
from fastnn._native import core

ALL_CLASSES = set(core.DIRECT_GEMM_CLASSES)


@pytest.fixture
def every_class():
    """Run every shape class direct (the taken ones and the others), then restore."""
    previous = core.direct_gemm_classes()
    core.set_direct_gemm(ALL_CLASSES)
    try:
        yield
    finally:
        core.set_direct_gemm(previous)


def _operands(rng, dtype, trans_a, trans_b, m, n, k, pad=3):
    """op(a) (m, k), op(b) (k, n) and out (m, n) as views into larger buffers: rows `pad`
    elements longer than needed, starting 1 or 2 elements in; out's buffer is NaN around it."""
    a_buf = rng.standard_normal((k, m + pad) if trans_a else (m, k + pad)).astype(dtype)
    a = a_buf[:, 1:1 + (m if trans_a else k)]
    b_buf = rng.standard_normal((n, k + pad) if trans_b else (k, n + pad)).astype(dtype)
    b = b_buf[:, 2:2 + (k if trans_b else n)]
    out_buf = np.full((m, n + pad + 2), np.nan, dtype)
    return a, b, out_buf, out_buf[:, 1:1 + n]


def _expected(a, b, trans_a, trans_b):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64.T if trans_a else a64) @ (b64.T if trans_b else b64)


def _check(out_buf, out, want, dtype, k):
    n = out.shape[1]
    # float32 sums of k products: a few ulps of the largest partial sum
    rtol, atol = (2e-6 * max(k, 1), 2e-6 * max(k, 1)) if dtype == np.float32 else (1e-14 * max(k, 1), 1e-14 * max(k, 1))
    np.testing.assert_allclose(out, want, rtol=rtol, atol=atol)
    assert np.isnan(out_buf[:, :1]).all() and np.isnan(out_buf[:, 1 + n:]).all()  # nothing written outside


SIDES = [1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 33]
K_SMALL = list(range(1, 18))


@pytest.mark.parametrize("trans_a, trans_b", list(itertools.product([False, True], repeat=2)),
                         ids=["NN", "NT", "TN", "TT"])
def test_every_form_matches_numpy(dtype, simd_path, trans_a, trans_b, every_class, rng):
    seen = set()
    for m, n, k in itertools.product(SIDES, SIDES, K_SMALL + [40, 100]):
        a, b, out_buf, out = _operands(rng, dtype, trans_a, trans_b, m, n, k)
        form = core.direct_gemm_form(trans_a, trans_b, m, n, k, a.strides[0] // a.itemsize,
                                     b.strides[0] // b.itemsize)
        seen.add(form)
        core.gemm(a, b, out, trans_a, trans_b)
        _check(out_buf, out, _expected(a, b, trans_a, trans_b), dtype, k)
    # each transposition reaches the forms it can run in (with rows longer than the operands),
    # and BLAS for the other shapes
    assert seen == {(False, False): {"rows", None}, (False, True): {"dots", None},
                    (True, False): {"rows", "cols", None}, (True, True): {"cols", None}}[trans_a, trans_b]


@pytest.mark.parametrize("m, n, k", [(200, 100, 8), (200, 1, 100), (100, 1, 200), (1, 100, 200), (200, 100, 1),
                                     (128, 1, 784), (784, 1, 128), (1, 128, 784), (1, 1, 1000), (57, 61, 16)])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False)], ids=["NN", "NT", "TN"])
def test_the_engines_shapes_match_numpy(dtype, simd_path, m, n, k, trans_a, trans_b, every_class, rng):
    a, b, out_buf, out = _operands(rng, dtype, trans_a, trans_b, m, n, k)
    core.gemm(a, b, out, trans_a, trans_b)
    _check(out_buf, out, _expected(a, b, trans_a, trans_b), dtype, k)


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False)], ids=["NN", "NT", "TN"])
def test_contiguous_operands_and_the_ops_ld_conventions(dtype, trans_a, trans_b, every_class, rng):
    # plain C-contiguous operands, as the engine and the ops pass them (ld = the row length, 1 for one column)
    forms = set()
    for m, n, k in [(200, 1, 100), (200, 100, 1), (100, 1, 200), (8, 100, 16), (1, 1, 5)]:
        a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
        b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
        out = np.empty((m, n), dtype)
        forms.add(core.direct_gemm_form(trans_a, trans_b, m, n, k, a.shape[1], b.shape[1]))
        core.gemm(a, b, out, trans_a, trans_b)
        _check(np.pad(out, ((0, 0), (1, 1)), constant_values=np.nan), out,
               _expected(a, b, trans_a, trans_b), dtype, k)
    # one column of B (ld 1) makes the dot form; B transposed with k = 1 (ld 1) the rows form;
    # B transposed with 2 <= k <= 16 goes to BLAS
    assert forms == {(False, False): {"rows", "dots"}, (False, True): {"rows", "dots", None},
                     (True, False): {"rows", "cols"}}[trans_a, trans_b]


def test_each_output_is_one_sum_whatever_block_it_falls_in(dtype, simd_path, every_class, rng):
    # rows and cols forms: the first rows of a product are the product of the first rows alone,
    # bit for bit, whether they fall in a block of rows, the rows left over, or a row on its own
    for trans_a, (m, n, k) in [(False, (13, 37, 9)), (True, (13, 37, 9)), (True, (13, 1, 50))]:
        a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        full = core.gemm(a, b, np.empty((m, n), dtype), trans_a, False)
        for rows in (1, 5, 7, 12):
            part = a[:, :rows] if trans_a else a[:rows]
            got = core.gemm(np.ascontiguousarray(part), b, np.empty((rows, n), dtype), trans_a, False)
            np.testing.assert_array_equal(got, full[:rows])


def test_same_shape_same_bits(dtype, simd_path, rng):
    a = rng.standard_normal((200, 100)).astype(dtype)
    b = rng.standard_normal((100, 1)).astype(dtype)
    first = core.gemm(a, b, np.empty((200, 1), dtype))
    for _ in range(3):
        np.testing.assert_array_equal(core.gemm(a, b, np.empty((200, 1), dtype)), first)


def test_special_values_propagate(dtype, simd_path, every_class):
    a = np.ones((9, 8), dtype)
    a[2, 3] = np.nan
    a[5, 0] = np.inf
    b = np.ones((8, 20), dtype)
    out = core.gemm(a, b, np.zeros((9, 20), dtype))
    assert np.isnan(out[2]).all() and np.isposinf(out[5]).all() and (out[[0, 1, 3, 4, 6, 7, 8]] == 8).all()
    # k = 0: the product of empty operands is zero, as BLAS gives with beta = 0
    out = core.gemm(np.empty((4, 0), dtype), np.empty((0, 3), dtype), np.full((4, 3), np.nan, dtype))
    assert (out == 0).all()


@pytest.mark.parametrize("trans_a, trans_b, m, n, k, expected", [
    (False, False, 200, 100, 1, "outer"), (False, True, 200, 100, 1, "outer"), (True, False, 1, 1, 1, "outer"),
    (False, False, 200, 1, 100, "one_column"), (True, False, 100, 1, 200, "one_column"),
    (False, False, 1, 100, 200, "one_row"), (True, False, 1, 100, 200, "one_row"),
    (False, False, 200, 100, 8, "small_k"), (True, False, 100, 100, 16, "small_k"),
    (False, True, 32, 25, 10, None),  # short dot products: BLAS
    (False, False, 200, 100, 17, None), (True, False, 8, 100, 200, None), (False, False, 32, 100, 196, None),
])
def test_shape_classes(trans_a, trans_b, m, n, k, expected):
    assert core.direct_gemm_class(trans_a, trans_b, m, n, k) == expected


def test_large_products_go_to_blas(every_class):
    assert core.direct_gemm_form(False, False, 2000, 1, 1000, 1000, 1) is None  # 2e6 multiply-adds
    assert core.direct_gemm_form(False, False, 1000, 1, 1000, 1000, 1) == "dots"


def test_the_strategies_switch_the_direct_kernels(every_class):
    previous, _ = _machine.gemm_strategy()
    try:
        _machine.set_gemm_strategy(core, "plain")
        assert _machine.gemm_strategy()[0] == "plain" and not core.direct_gemm_enabled()
        assert core.direct_gemm_form(False, False, 200, 1, 100, 100, 1) is None
        for strategy in ("direct", "tiled"):
            _machine.set_gemm_strategy(core, strategy)
            assert _machine.gemm_strategy()[0] == strategy
            assert core.direct_gemm_classes() == core.direct_gemm_taken()
        with pytest.raises(ValueError, match="strategy"):
            _machine.set_gemm_strategy(core, "fast")
    finally:
        _machine.set_gemm_strategy(core, previous)  # the every_class fixture restores the classes


def test_gemm_refuses_what_it_cannot_multiply():
    a, b = np.ones((3, 4)), np.ones((4, 5))
    with pytest.raises(ValueError, match="shapes"):
        core.gemm(a, b, np.empty((3, 4)))
    with pytest.raises(ValueError, match="one dtype"):
        core.gemm(a, b.astype(np.float32), np.empty((3, 5)))
    with pytest.raises(ValueError, match="contiguous"):
        core.gemm(np.ones((3, 8))[:, ::2], b, np.empty((3, 5)))
    with pytest.raises(ValueError, match="2-D"):
        core.gemm(np.ones(4), b, np.empty((3, 5)))
    with pytest.raises(ValueError, match="overlaps"):
        buf = np.ones((3, 9))
        core.gemm(buf[:, :4], b, buf[:, 4:])
    read_only = np.empty((3, 5))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        core.gemm(a, b, read_only)
