"""Tests for fastnn.datasets: the IDX reader, its error reporting, the shipped MNIST and pixel scaling."""
import gzip
import hashlib
import os
import re
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byte_mutations import mutate
from fastnn.datasets import (
    MNIST_SHA256,
    DatasetError,
    load_idx,
    load_mnist,
    pixel_scaling,
    read_idx,
)

TYPE_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D, "float64": 0x0E}
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
FUZZ_SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def idx_bytes(array, *, type_code=None, shape=None):
    """The bytes of an IDX file holding ``array``; ``type_code``/``shape`` override the header."""
    array = np.asarray(array)
    type_code = TYPE_CODES[array.dtype.name] if type_code is None else type_code
    shape = array.shape if shape is None else shape
    header = bytes([0, 0, type_code, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_file(path, content, *, gz=False):
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    return path


def small_dataset(rng, *, n_train=7, n_test=4, rows=3, cols=2):
    return {
        TRAIN_IMAGES: rng.integers(0, 256, size=(n_train, rows, cols), dtype=np.uint8),
        TRAIN_LABELS: rng.integers(0, 10, size=n_train, dtype=np.uint8),
        TEST_IMAGES: rng.integers(0, 256, size=(n_test, rows, cols), dtype=np.uint8),
        TEST_LABELS: rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }


def write_dataset(directory, arrays, *, gz=True, overrides=None):
    """Write the four files (``name.gz`` if gz); ``overrides`` maps a name to raw file bytes to use instead."""
    overrides = overrides or {}
    for name, array in arrays.items():
        content = overrides[name] if name in overrides else idx_bytes(array)
        write_file(directory / (name + ".gz" if gz else name), content, gz=gz)
    return directory


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# --- read_idx -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(TYPE_CODES))
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4), (2, 1, 3, 2), (0, 7)])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, rng, dtype, shape, gz):
    if np.dtype(dtype).kind == "f":
        array = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    path = write_file(tmp_path / "array.idx", idx_bytes(array), gz=gz)
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    assert result.shape == shape
    assert result.flags.c_contiguous and result.flags.writeable
    np.testing.assert_array_equal(result, array)


def test_read_idx_decodes_big_endian(tmp_path):
    content = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + bytes([0x01, 0x02, 0xFF, 0xFE])
    result = read_idx(write_file(tmp_path / "a.idx", content))
    assert result.tolist() == [0x0102, -2]


def test_gzip_is_detected_by_magic_bytes_not_name(tmp_path):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    gzipped_without_suffix = write_file(tmp_path / "plain-name", idx_bytes(array), gz=True)
    plain_with_suffix = write_file(tmp_path / "looks-compressed.gz", idx_bytes(array), gz=False)
    np.testing.assert_array_equal(read_idx(gzipped_without_suffix), array)
    np.testing.assert_array_equal(read_idx(plain_with_suffix), array)


def test_multi_member_gzip_is_read_whole(tmp_path):
    content = idx_bytes(np.arange(100, dtype=np.int32))
    path = tmp_path / "a.idx.gz"
    path.write_bytes(gzip.compress(content[:50]) + gzip.compress(content[50:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(100))


def test_read_idx_result_is_independent_of_the_file(tmp_path):
    array = np.arange(4, dtype=np.uint8)
    path = write_file(tmp_path / "a.idx", idx_bytes(array))
    first = read_idx(path)
    first[0] = 99
    assert read_idx(path)[0] == 0


# --- read_idx errors: each names the file and the problem -----------------------------------------

VALID = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x01\x00" + VALID[2:], "bad magic number"),
        (b"\x00\x01" + VALID[2:], "bad magic number"),
        (VALID[:2] + b"\x0a" + VALID[3:], "unknown IDX type code 0x0a"),
        (VALID[:2] + b"\xff" + VALID[3:], "unknown IDX type code 0xff"),
        (b"", "truncated header"),
        (VALID[:3], "truncated header"),
        (VALID[:9], "truncated header"),  # 3 dimensions need 16 header bytes
        (VALID[:-1], "truncated file"),
        (VALID[:16], "truncated file"),
        (VALID + b"\x00", "trailing garbage: 1 bytes"),
        (VALID + b"junk!", "trailing garbage: 5 bytes"),
        (idx_bytes(np.zeros(3, np.int32))[:-2], "truncated file"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_malformed_file_raises_dataset_error_naming_file(tmp_path, content, problem, gz):
    path = write_file(tmp_path / "broken-images-file", content, gz=gz)
    with pytest.raises(DatasetError, match=f"broken-images-file.*{problem}"):
        read_idx(path)


def test_dataset_error_is_a_value_error():
    assert issubclass(DatasetError, ValueError)


def test_truncated_gzip_stream(tmp_path):
    packed = gzip.compress(VALID)
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DatasetError, match="cut.gz.*corrupt gzip stream"):
        read_idx(path)


def test_gzip_with_flipped_byte(tmp_path):
    packed = bytearray(gzip.compress(VALID, mtime=0))
    packed[-6] ^= 0xFF  # inside the CRC-32 trailer: the data inflates but fails the check
    path = tmp_path / "flipped.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(DatasetError, match="flipped.gz.*corrupt gzip stream"):
        read_idx(path)


def test_gzip_with_trailing_garbage(tmp_path):
    path = tmp_path / "tail.gz"
    path.write_bytes(gzip.compress(VALID) + b"not gzip")
    with pytest.raises(DatasetError, match="tail.gz.*corrupt gzip stream"):
        read_idx(path)


def test_empty_array_with_unrepresentable_shape(tmp_path):
    content = bytes([0, 0, 0x08, 3]) + b"\x00\x00\x00\x00" + b"\xff\xff\xff\xff" * 2
    with pytest.raises(DatasetError, match="huge.*cannot be held"):
        read_idx(write_file(tmp_path / "huge", content))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")


# --- reading straight into the result: large files, chunk boundaries, memory ----------------------

LARGE_ELEMENTS = 300_001  # several read chunks for every type wider than a byte, and not a multiple of one


def large_array(dtype):
    values = np.arange(LARGE_ELEMENTS, dtype=np.int64) * 7919 - 12345
    return values.astype(dtype).reshape(LARGE_ELEMENTS, 1)


@pytest.mark.parametrize("dtype", ["int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("gz", [False, True])
def test_large_multi_byte_round_trip(tmp_path, dtype, gz):
    array = large_array(dtype)
    result = read_idx(write_file(tmp_path / "large.idx", idx_bytes(array), gz=gz))
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    assert result.flags.c_contiguous and result.flags.writeable
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize("gz", [False, True])
def test_reading_makes_no_second_copy(tmp_path, gz):
    array = np.arange(1_000_003, dtype=np.float64)  # 8 MB
    path = write_file(tmp_path / "large.idx", idx_bytes(array), gz=gz)
    tracemalloc.start()
    try:
        result = read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The array itself plus a read chunk or two; a decompressed or byte-swapped copy would double it.
    assert peak < 1.5 * result.nbytes
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize("cut", [1, 8, 2**20 + 3])
@pytest.mark.parametrize("gz", [False, True])
def test_large_truncated_file(tmp_path, cut, gz):
    content = idx_bytes(large_array("float64"))
    path = write_file(tmp_path / "cut-large", content[:-cut], gz=gz)
    with pytest.raises(DatasetError, match=f"cut-large: truncated file: .* the file has {len(content) - cut} bytes"):
        read_idx(path)


@pytest.mark.parametrize("extra", [1, 2**20 + 5])
@pytest.mark.parametrize("gz", [False, True])
def test_large_trailing_garbage(tmp_path, extra, gz):
    content = idx_bytes(large_array("int32")) + b"\x07" * extra
    path = write_file(tmp_path / "long-large", content, gz=gz)
    with pytest.raises(DatasetError, match=f"long-large: trailing garbage: {extra} bytes"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_header_promising_more_than_the_file_can_hold(tmp_path, gz):
    # 2**64 float64s: allocating them first would fail with MemoryError instead of naming the problem.
    content = bytes([0, 0, 0x0E, 2]) + b"\xff\xff\xff\xff" * 2 + b"\x00" * 40
    path = write_file(tmp_path / "boastful", content, gz=gz)
    with pytest.raises(DatasetError, match="boastful: truncated file: .* the file has 52 bytes"):
        read_idx(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_from_a_pipe(tmp_path, gz):
    array = large_array("int16")
    content = idx_bytes(array)
    content = gzip.compress(content, mtime=0) if gz else content
    path = tmp_path / "pipe"
    os.mkfifo(path)

    def feed():
        with open(path, "wb") as f:
            f.write(content)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        np.testing.assert_array_equal(read_idx(path), array)
    finally:
        writer.join()


# --- fuzzing: only DatasetError may come out, and a returned array always matches its header -------


def check_read_idx_on(path, content):
    """read_idx must either raise DatasetError or return exactly what the (decompressed) bytes hold."""
    path.write_bytes(content)
    try:
        result = read_idx(path)
    except DatasetError as exc:
        assert str(path) in str(exc)
        return
    plain = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    ndim = plain[3]
    assert result.shape == tuple(int.from_bytes(plain[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    assert 4 + 4 * ndim + result.nbytes == len(plain)
    assert result.astype(result.dtype.newbyteorder(">")).tobytes() == plain[4 + 4 * ndim :]


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "fuzzed-file"


@FUZZ_SETTINGS
@given(content=st.binary(max_size=200))
def test_fuzz_random_bytes(fuzz_path, content):
    check_read_idx_on(fuzz_path, content)


@FUZZ_SETTINGS
@given(
    content=st.one_of(
        st.binary(max_size=64).map(lambda b: b"\x00\x00" + b),
        st.binary(max_size=64).map(lambda b: b"\x1f\x8b" + b),
    )
)
def test_fuzz_plausible_headers(fuzz_path, content):
    check_read_idx_on(fuzz_path, content)


def valid_idx_contents():
    def build(args):
        type_code, shape = args
        dtype = {v: k for k, v in TYPE_CODES.items()}[type_code]
        array = np.arange(int(np.prod(shape)), dtype=np.int64).astype(dtype).reshape(shape)
        return idx_bytes(array)

    return st.tuples(
        st.sampled_from(sorted(TYPE_CODES.values())),
        st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple),
    ).map(build)


EDITS = st.lists(
    st.tuples(st.sampled_from(["set", "insert", "delete", "truncate"]), st.integers(0, 400), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


@FUZZ_SETTINGS
@given(content=valid_idx_contents(), edits=EDITS, gz=st.booleans())
def test_fuzz_mutated_valid_files(fuzz_path, content, edits, gz):
    if gz:
        content = gzip.compress(content, mtime=0)
    check_read_idx_on(fuzz_path, mutate(content, edits))


# --- load_idx ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_round_trip(tmp_path, rng, gz):
    arrays = small_dataset(rng)
    (x_train, y_train), (x_test, y_test) = load_idx(write_dataset(tmp_path, arrays, gz=gz))
    for x, y, images, labels in [
        (x_train, y_train, arrays[TRAIN_IMAGES], arrays[TRAIN_LABELS]),
        (x_test, y_test, arrays[TEST_IMAGES], arrays[TEST_LABELS]),
    ]:
        assert x.dtype == np.uint8 and x.shape == (len(images), 6) and x.flags.c_contiguous
        assert y.dtype == np.int64 and y.shape == (len(labels),)
        np.testing.assert_array_equal(x, images.reshape(len(images), -1))
        np.testing.assert_array_equal(y, labels)


def test_load_idx_mixes_compressed_and_plain_and_prefers_plain(tmp_path, rng):
    arrays = small_dataset(rng)
    write_dataset(tmp_path, arrays, gz=True)
    replacement = np.full_like(arrays[TEST_IMAGES], 7)
    write_file(tmp_path / TEST_IMAGES, idx_bytes(replacement))
    (_, _), (x_test, _) = load_idx(tmp_path)
    np.testing.assert_array_equal(x_test, replacement.reshape(len(replacement), -1))


def test_load_idx_accepts_wider_integer_labels(tmp_path, rng):
    arrays = small_dataset(rng)
    arrays[TRAIN_LABELS] = arrays[TRAIN_LABELS].astype(np.int32)
    (_, y_train), _ = load_idx(write_dataset(tmp_path, arrays))
    assert y_train.dtype == np.int64
    np.testing.assert_array_equal(y_train, arrays[TRAIN_LABELS])


def test_load_idx_empty_splits(tmp_path, rng):
    arrays = small_dataset(rng, n_train=0, n_test=0)
    (x_train, y_train), (x_test, y_test) = load_idx(write_dataset(tmp_path, arrays))
    assert x_train.shape == (0, 6) and y_train.shape == (0,)


@pytest.mark.parametrize(
    "name, replace, problem",
    [
        (TRAIN_LABELS, lambda a: a[:-1], f"count mismatch: .*{TRAIN_IMAGES}.gz has 7 images but .*{TRAIN_LABELS}.gz has 6 labels"),
        (TEST_IMAGES, lambda a: a[:-1], f"count mismatch: .*{TEST_IMAGES}.gz has 3 images but .*{TEST_LABELS}.gz has 4"),
        (TRAIN_LABELS, lambda a: np.where(np.arange(len(a)) == 3, 10, a).astype(np.uint8), f"{TRAIN_LABELS}.gz: label 10 at index 3 is outside 0..9"),
        (TEST_LABELS, lambda a: np.full(len(a), 255, np.uint8), f"{TEST_LABELS}.gz: label 255 at index 0 is outside 0..9"),
        (TEST_LABELS, lambda a: np.full(len(a), -1, np.int8), f"{TEST_LABELS}.gz: label -1 at index 0 is outside 0..9"),
        (TRAIN_IMAGES, lambda a: a.reshape(len(a), -1), f"{TRAIN_IMAGES}.gz: images must be 3-D"),
        (TRAIN_IMAGES, lambda a: a.reshape(len(a), 3, 2, 1), f"{TRAIN_IMAGES}.gz: images must be 3-D"),
        (TRAIN_IMAGES, lambda a: a.astype(np.float32), f"{TRAIN_IMAGES}.gz: images must be unsigned bytes"),
        (TRAIN_LABELS, lambda a: a.reshape(-1, 1), f"{TRAIN_LABELS}.gz: labels must be 1-D"),
        (TRAIN_LABELS, lambda a: a.astype(np.float64), f"{TRAIN_LABELS}.gz: labels must be integers"),
    ],
)
def test_load_idx_inconsistent_files(tmp_path, rng, name, replace, problem):
    arrays = small_dataset(rng)
    arrays[name] = replace(arrays[name])
    with pytest.raises(DatasetError, match=problem):
        load_idx(write_dataset(tmp_path, arrays))


def test_load_idx_reports_malformed_member_file(tmp_path, rng):
    arrays = small_dataset(rng)
    damaged = idx_bytes(arrays[TEST_LABELS]) + b"\x00"
    with pytest.raises(DatasetError, match=f"{TEST_LABELS}.gz: trailing garbage"):
        load_idx(write_dataset(tmp_path, arrays, overrides={TEST_LABELS: damaged}))


def test_load_idx_num_classes(tmp_path, rng):
    arrays = small_dataset(rng)
    for name in (TRAIN_LABELS, TEST_LABELS):
        arrays[name] = np.arange(len(arrays[name]), dtype=np.uint8) % 3
    arrays[TEST_LABELS][-1] = 4
    directory = write_dataset(tmp_path, arrays)
    with pytest.raises(DatasetError, match=r"label 4 at index 3 is outside 0\.\.3 \(num_classes=4\)"):
        load_idx(directory, num_classes=4)
    (_, _), (_, y_test) = load_idx(directory, num_classes=5)
    assert y_test.tolist() == [0, 1, 2, 4]
    with pytest.raises(ValueError, match="num_classes"):
        load_idx(directory, num_classes=0)


def test_load_idx_missing_file(tmp_path, rng):
    write_dataset(tmp_path, small_dataset(rng))
    (tmp_path / (TEST_LABELS + ".gz")).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"neither {TEST_LABELS} nor {TEST_LABELS}.gz found in {tmp_path}")):
        load_idx(tmp_path)


def test_load_idx_checks_sha256_of_decompressed_bytes(tmp_path, rng):
    arrays = small_dataset(rng)
    write_dataset(tmp_path, arrays)
    right = {name: hashlib.sha256(idx_bytes(array)).hexdigest() for name, array in arrays.items()}
    load_idx(tmp_path, sha256=right)
    wrong = dict(right, **{TEST_IMAGES: "0" * 64})
    with pytest.raises(DatasetError, match=f"{TEST_IMAGES}.gz: SHA-256 of the decompressed content is {right[TEST_IMAGES]}, expected 0+$"):
        load_idx(tmp_path, sha256=wrong)
    with pytest.raises(DatasetError, match=f"{TRAIN_IMAGES}.gz: SHA-256"):
        load_idx(tmp_path, sha256=MNIST_SHA256)


def test_load_idx_refuses_a_digest_for_a_file_it_does_not_read(tmp_path, rng):
    """A misspelled file name in sha256 would check nothing: it is refused, naming it."""
    write_dataset(tmp_path, small_dataset(rng))
    with pytest.raises(ValueError, match=r"sha256: unknown file name\(s\) 'train-images\.gz'; expected"):
        load_idx(tmp_path, sha256={"train-images.gz": "0" * 64})
    with pytest.raises(TypeError, match="sha256: expected None or a dict"):
        load_idx(tmp_path, sha256=["0" * 64])


def test_load_idx_sha256_is_checked_before_the_structure(tmp_path, rng):
    arrays = small_dataset(rng)
    damaged = idx_bytes(arrays[TEST_LABELS])[:-1]
    write_dataset(tmp_path, arrays, overrides={TEST_LABELS: damaged})
    right = {name: hashlib.sha256(idx_bytes(array)).hexdigest() for name, array in arrays.items()}
    with pytest.raises(DatasetError, match=f"{TEST_LABELS}.gz: SHA-256 of the decompressed content"):
        load_idx(tmp_path, sha256=right)
    # With the digest of the damaged bytes themselves, the structural problem is what is reported.
    matching = dict(right, **{TEST_LABELS: hashlib.sha256(damaged).hexdigest()})
    with pytest.raises(DatasetError, match=f"{TEST_LABELS}.gz: truncated file"):
        load_idx(tmp_path, sha256=matching)


# --- load_idx(subset=...) ------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_subsets_match_all(tmp_path, rng, gz):
    directory = write_dataset(tmp_path, small_dataset(rng), gz=gz)
    train, test = load_idx(directory)
    for subset, expected in [("train", train), ("test", test)]:
        x, y = load_idx(directory, subset=subset)
        assert x.dtype == np.uint8 and x.flags.c_contiguous and x.flags.writeable
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, expected[0])
        np.testing.assert_array_equal(y, expected[1])
    (x_train, _), (x_test, _) = load_idx(directory, subset="all")
    np.testing.assert_array_equal(x_train, train[0])
    np.testing.assert_array_equal(x_test, test[0])


@pytest.mark.parametrize("subset, other_files", [("train", (TEST_IMAGES, TEST_LABELS)), ("test", (TRAIN_IMAGES, TRAIN_LABELS))])
def test_load_idx_subset_reads_only_its_files(tmp_path, rng, subset, other_files):
    arrays = small_dataset(rng)
    overrides = {name: b"not an IDX file" for name in other_files}
    directory = write_dataset(tmp_path, arrays, overrides=overrides)
    (directory / (other_files[1] + ".gz")).unlink()
    sha256 = {name: "0" * 64 for name in other_files}  # would fail if these files were read
    x, y = load_idx(directory, subset=subset, sha256=sha256)
    assert len(x) == len(y) == len(arrays[TRAIN_LABELS if subset == "train" else TEST_LABELS])


def test_load_idx_unknown_subset(tmp_path, rng):
    directory = write_dataset(tmp_path, small_dataset(rng))
    for subset in ["validation", "Train", None, ""]:
        with pytest.raises(ValueError, match="unknown subset .*expected one of 'all', 'train', 'test'"):
            load_idx(directory, subset=subset)



# --- the shipped MNIST ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_shipped_mnist_shapes_and_dtypes(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train.flags.c_contiguous and x_test.flags.c_contiguous
    assert x_train.min() == 0 and x_train.max() == 255


def test_shipped_mnist_class_counts(mnist):
    (_, y_train), (_, y_test) = mnist
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_shipped_mnist_files_match_published_hashes():
    from fastnn.datasets.mnist import SHIPPED_DIR

    for name, digest in MNIST_SHA256.items():
        with gzip.open(os.path.join(SHIPPED_DIR, name + ".gz")) as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest


def test_load_mnist_refuses_a_tampered_copy(tmp_path, monkeypatch):
    import shutil

    from fastnn.datasets import mnist as mnist_module

    for name in MNIST_SHA256:
        shutil.copy(os.path.join(mnist_module.SHIPPED_DIR, name + ".gz"), tmp_path)
    labels_path = tmp_path / (TRAIN_LABELS + ".gz")
    labels = bytearray(gzip.decompress(labels_path.read_bytes()))
    labels[8] = (labels[8] + 1) % 10  # still a well-formed label file, just a different label
    labels_path.write_bytes(gzip.compress(bytes(labels)))
    monkeypatch.setattr(mnist_module, "SHIPPED_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=f"{TRAIN_LABELS}.gz: SHA-256 .* expected {MNIST_SHA256[TRAIN_LABELS]}"):
        load_mnist()


def test_load_mnist_without_download_rejects_download_options(tmp_path):
    with pytest.raises(ValueError, match="only used with download=True"):
        load_mnist(cache_dir=tmp_path)
    with pytest.raises(ValueError, match="only used with download=True"):
        load_mnist(mirror="http://127.0.0.1:1/")


@pytest.mark.parametrize("subset, index", [("train", 0), ("test", 1)])
def test_load_mnist_subset(mnist, subset, index):
    x, y = load_mnist(subset=subset)
    np.testing.assert_array_equal(x, mnist[index][0])
    np.testing.assert_array_equal(y, mnist[index][1])
    assert x.dtype == np.uint8 and x.flags.c_contiguous and x.flags.writeable and y.dtype == np.int64


def test_load_mnist_unknown_subset():
    with pytest.raises(ValueError, match="unknown subset 'validation'"):
        load_mnist(subset="validation")
    with pytest.raises(ValueError, match="unknown subset"):
        load_mnist(download=True, subset="validation")  # refused before any download


def test_load_mnist_subset_downloads_only_its_files(tmp_path, monkeypatch):
    import shutil

    from fastnn.datasets import mnist as mnist_module

    requested = []

    def fake_download(mirror, cache_dir, files):
        requested.extend(files)
        for name in files:
            shutil.copy(os.path.join(mnist_module.SHIPPED_DIR, name), cache_dir)
        return cache_dir

    monkeypatch.setattr(mnist_module, "download_files", fake_download)
    x_test, y_test = load_mnist(download=True, cache_dir=str(tmp_path), mirror="http://127.0.0.1:1/", subset="test")
    assert sorted(requested) == sorted([TEST_IMAGES + ".gz", TEST_LABELS + ".gz"])
    assert x_test.shape == (10000, 784) and y_test.shape == (10000,)


def test_load_mnist_peak_memory():
    tracemalloc.start()
    try:
        (x_train, y_train), (x_test, y_test) = load_mnist()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arrays = x_train.nbytes + y_train.nbytes + x_test.nbytes + y_test.nbytes
    assert arrays > 55_000_000
    # Decompressed straight into the result: about the arrays themselves, never a second copy of the images.
    assert peak < 75_000_000



# --- pixel_scaling -------------------------------------------------------------------------------


def test_pixel_scaling_unit(rng):
    x = rng.integers(0, 256, size=(10, 4), dtype=np.uint8)
    assert pixel_scaling(x) == (1 / 255, 0.0)
    assert pixel_scaling(x, mode="unit") == (1 / 255, 0.0)


def test_pixel_scaling_standardize_small(rng):
    x = rng.integers(0, 256, size=(50, 7), dtype=np.uint8)
    scale, shift = pixel_scaling(x, mode="standardize")
    as_float = x.astype(np.float64)
    assert isinstance(scale, float) and isinstance(shift, float)
    assert scale == pytest.approx(1 / as_float.std(), rel=1e-12)
    assert shift == pytest.approx(-as_float.mean() / as_float.std(), rel=1e-12)
    scaled = as_float * scale + shift
    assert abs(scaled.mean()) < 1e-12 and scaled.std() == pytest.approx(1.0, rel=1e-12)


def test_pixel_scaling_standardize_known_values():
    x = np.array([[0, 2], [4, 6]], dtype=np.uint8)  # mean 3, population std sqrt(5)
    scale, shift = pixel_scaling(x, mode="standardize")
    assert scale == pytest.approx(1 / np.sqrt(5), rel=1e-15)
    assert shift == pytest.approx(-3 / np.sqrt(5), rel=1e-15)


def test_pixel_scaling_standardize_mnist_without_float_copy(mnist):
    (x_train, _), _ = mnist
    tracemalloc.start()
    try:
        scale, shift = pixel_scaling(x_train, mode="standardize")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A float64 copy would be 8 * 47 MB; the chunked histogram needs a few MB.
    assert peak < x_train.nbytes / 2
    as_float = x_train.astype(np.float64)
    assert scale == pytest.approx(1 / as_float.std(), rel=1e-12)
    assert shift == pytest.approx(-as_float.mean() / as_float.std(), rel=1e-12)


def test_pixel_scaling_errors(rng):
    x = rng.integers(0, 256, size=(5, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="unknown pixel scaling mode 'zscore'"):
        pixel_scaling(x, mode="zscore")
    with pytest.raises(TypeError, match="uint8"):
        pixel_scaling(x.astype(np.float32))
    with pytest.raises(ValueError, match="same value"):
        pixel_scaling(np.full((4, 4), 9, np.uint8), mode="standardize")
    with pytest.raises(ValueError, match="empty"):
        pixel_scaling(np.zeros((0, 4), np.uint8), mode="standardize")
