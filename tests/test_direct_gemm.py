"""fastnn's direct products (src_c/direct_gemm.h, direct_gemm_impl.h) against NumPy's matmul:
every shape class and form, both dtypes, transposed operands, leading dimensions larger than the
rows and operands that start inside a larger buffer, on every SIMD path; and the rule that
picks them."""
import itertools
import subprocess
import sys

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
    # each transposition reaches the forms it can run in (with rows longer than the operands);
    # every product here is below the blocked class's limit, so only B transposed with A not
    # (short dot products) reaches BLAS
    assert seen == {(False, False): {"rows"}, (False, True): {"dots", None},
                    (True, False): {"rows", "cols"}, (True, True): {"cols"}}[trans_a, trans_b]


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
    for trans_a, (m, n, k) in [(False, (13, 37, 9)), (True, (13, 37, 9)), (True, (13, 1, 50)),
                               (False, (33, 100, 40)), (True, (33, 100, 40))]:
        a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        full = core.gemm(a, b, np.empty((m, n), dtype), trans_a, False)
        for rows in (1, 5, 7, 9, 12, 13):
            part = a[:, :rows] if trans_a else a[:rows]
            got = core.gemm(np.ascontiguousarray(part), b, np.empty((rows, n), dtype), trans_a, False)
            np.testing.assert_array_equal(got, full[:rows])


@pytest.mark.parametrize("trans_a", [False, True], ids=["NN", "TN"])
def test_blocked_products_match_numpy_at_every_edge(dtype, simd_path, trans_a, every_class, rng):
    # register blocks of 6 rows by 2 vectors: every count of rows left over (and 4 + 1..3 when
    # fewer than 4 are left), every width of a last vector, at the engine's shapes and around them
    widths = [1, 3, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 33, 100, 128]
    for m, n, k in [(m, n, 40) for m in (1, 2, 3, 4, 5, 6, 7, 9, 10, 13, 31, 32, 33) for n in widths] + [
            (32, 128, 196), (196, 128, 32), (32, 100, 196), (196, 100, 32), (64, 128, 100)]:
        a, b, out_buf, out = _operands(rng, dtype, trans_a, False, m, n, k)
        assert core.direct_gemm_class(trans_a, False, m, n, k) in ("blocked", "small_k", "one_row", "one_column")
        core.gemm(a, b, out, trans_a, False)
        _check(out_buf, out, _expected(a, b, trans_a, False), dtype, k)


def test_a_partial_last_vector_gives_the_same_bits_as_a_whole_one(dtype, simd_path, every_class, rng):
    # The first n columns of a product, as a view of B (its rows 40 apart) or a copy (rows n
    # apart), against the whole product: a last vector of B's rows loaded whole past column n
    # (from the rest of the row or the next row; those lanes are never stored), lane by lane
    # (B's last row), or, below a vector's width, single rows give each output the same sum.
    m, k = 13, 50
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, 40)).astype(dtype)
    full = core.gemm(a, b, np.empty((m, 40), dtype))
    for n in (2, 3, 5, 11, 19, 37):  # (one column is a class of its own, summed as a dot product)
        narrow = np.ascontiguousarray(b[:, :n])
        np.testing.assert_array_equal(core.gemm(a, narrow, np.empty((m, n), dtype)), full[:, :n])
        np.testing.assert_array_equal(core.gemm(a, b[:, :n], np.empty((m, n), dtype)), full[:, :n])


def test_the_ops_give_the_same_bits_at_any_thread_count_with_the_blocked_strategy(dtype):
    # the products of the blocked class run in fastnn's blocks whatever the thread count (BLAS
    # would split them differently between its threads and round differently from the blocks)
    previous, _ = _machine.gemm_strategy()
    threads = core.get_kernel_threads()
    rng = np.random.default_rng(1)
    try:
        _machine.set_gemm_strategy(core, "blocked")
        for batch, n_in, n_out in [(200, 17, 100), (33, 300, 37), (32, 196, 128)]:
            x = rng.standard_normal((batch, n_in)).astype(dtype)
            w = rng.standard_normal((n_in, n_out)).astype(dtype)
            b = rng.standard_normal(n_out).astype(dtype)
            assert core.direct_gemm_class(False, False, batch, n_out, n_in) == "blocked"
            got = {}
            for nt in (1, 2):
                core.set_kernel_threads(nt)
                got[nt] = core.linear_forward(x, w, b, 0, np.empty((batch, n_out), dtype)).copy()
            np.testing.assert_array_equal(got[1], got[2])
    finally:
        core.set_kernel_threads(threads)
        _machine.set_gemm_strategy(core, previous)


GUARD_PAGE_SCRIPT = """
import ctypes, mmap, sys
import numpy as np
from fastnn._native import core
core.set_direct_gemm(set(core.DIRECT_GEMM_CLASSES))
core.set_simd_path(sys.argv[1])
page = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
rng = np.random.default_rng(0)
keep = []


def at_page_end(shape, dtype):
    # an array whose last element ends where an unreadable page (PROT_NONE) begins
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    pages = -(-nbytes // page)
    buf = mmap.mmap(-1, (pages + 1) * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert libc.mprotect(base + pages * page, page, 0) == 0, ctypes.get_errno()
    keep.append(buf)
    out = np.frombuffer(buf, dtype, count=int(np.prod(shape)), offset=pages * page - nbytes).reshape(shape)
    out[...] = rng.standard_normal(shape)
    return out


for dtype in (np.float32, np.float64):
    for m, n, k in [(13, 1, 24), (13, 3, 24), (13, 9, 24), (13, 17, 24), (13, 20, 24), (13, 100, 24),
                    (7, 5, 40), (5, 13, 7), (31, 37, 300), (40, 3, 300)]:
        for trans_a in (False, True):
            for guarded in ("a", "b"):
                a_shape = (k, m) if trans_a else (m, k)
                a = at_page_end(a_shape, dtype) if guarded == "a" else rng.standard_normal(a_shape).astype(dtype)
                b = at_page_end((k, n), dtype) if guarded == "b" else rng.standard_normal((k, n)).astype(dtype)
                out = core.gemm(a, b, np.empty((m, n), dtype), trans_a, False)
                want = (a.T if trans_a else a).astype(np.float64) @ b.astype(np.float64)
                assert np.allclose(out, want, rtol=1e-5, atol=1e-4), (dtype, m, n, k, trans_a, guarded)
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through ctypes: Linux")
def test_the_kernels_never_read_past_the_end_of_an_operand(simd_path):
    # A or B ends where an unreadable page begins: a load past its last element would kill the
    # process (the products cover the forms rows and cols, B small and large, f32 and f64)
    proc = subprocess.run([sys.executable, "-c", GUARD_PAGE_SCRIPT, simd_path], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


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
    (False, False, 200, 100, 17, "blocked"), (True, False, 8, 100, 200, "blocked"),
    (False, False, 32, 128, 196, "blocked"), (True, False, 196, 128, 32, "blocked"), (True, True, 64, 64, 64, "blocked"),
    (False, True, 32, 128, 196, None), (False, False, 128, 128, 196, None), (True, False, 196, 128, 128, None),
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
            assert core.direct_gemm_form(False, False, 32, 128, 196, 196, 128) is None  # one BLAS call
        _machine.set_gemm_strategy(core, "blocked")
        assert _machine.gemm_strategy()[0] == "blocked"
        assert core.direct_gemm_classes() == core.direct_gemm_taken() | {"blocked"}
        assert core.direct_gemm_form(False, False, 32, 128, 196, 196, 128) == "rows"
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
