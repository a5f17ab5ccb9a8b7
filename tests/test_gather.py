"""gather_rows: the fused batch gather + scaling, against its NumPy twin."""
import numpy as np
import pytest

from fastnn import ops, reference


@pytest.mark.parametrize("x_dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("out_dtype", [None, np.float32, np.float64])
def test_gather_rows_matches_twin(rng, threads, x_dtype, out_dtype):
    x = (rng.random((97, 13)) * 255).astype(x_dtype)
    rows = rng.integers(0, 97, size=41)
    out = None if out_dtype is None else np.empty((41, 13), out_dtype)
    got = ops.gather_rows(x, rows, 1 / 255, -0.5, out=out)
    want = reference.gather_rows(x, rows, 1 / 255, -0.5)
    if out is not None:
        assert got is out
    expected_dtype = out_dtype or (np.float32 if x_dtype == np.uint8 else x_dtype)
    assert got.dtype == expected_dtype
    np.testing.assert_allclose(got, want.astype(expected_dtype), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got, x[rows].astype(np.float64) / 255 - 0.5, rtol=1e-6, atol=1e-6)


def test_gather_rows_large_batch_on_two_threads(rng, threads):
    x = rng.integers(0, 256, size=(3000, 784), dtype=np.uint8)
    rows = rng.permutation(3000)[:2048]
    np.testing.assert_array_equal(ops.gather_rows(x, rows), reference.gather_rows(x, rows))


@pytest.mark.parametrize("impl", [ops, reference])
def test_gather_rows_rejects_bad_rows_and_buffers(impl):
    x = np.zeros((5, 3), np.uint8)
    with pytest.raises(ValueError, match=r"rows: .*got 5 at index 1"):
        impl.gather_rows(x, [0, 5, 1])
    with pytest.raises(ValueError, match=r"rows: .*got -1 at index 0"):
        impl.gather_rows(x, [-1])
    with pytest.raises(TypeError, match="rows"):
        impl.gather_rows(x, [0.5])
    with pytest.raises(TypeError, match="x"):
        impl.gather_rows(x.astype(np.int32), [0])
    with pytest.raises(ValueError, match="out"):
        impl.gather_rows(x, [0, 1], out=np.empty((3, 3), np.float32))
    with pytest.raises(TypeError, match="out"):
        impl.gather_rows(x, [0, 1], out=np.empty((2, 3), np.int64))
    xf = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match="out"):
        impl.gather_rows(xf, [0, 1], out=xf[:2])


@pytest.mark.parametrize("impl", [ops, reference], ids=["kernel", "twin"])
@pytest.mark.parametrize("name", ["scale", "shift"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_gather_rows_kernel_and_twin_refuse_a_scale_or_shift_not_finite(impl, name, value):
    with pytest.raises(ValueError, match=name):
        impl.gather_rows(np.zeros((5, 3), np.uint8), [0, 1], **{name: value})
