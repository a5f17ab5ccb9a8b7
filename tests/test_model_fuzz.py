"""Fuzzing fastnn.load: random bytes, damaged copies of a valid model and hand-edited headers
give ModelFormatError (or a model identical to the one saved) and nothing else, never a crash."""
import io
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import Adam, Dropout, Linear, ModelFormatError, Network, Sigmoid
from fastnn.serialization import _digest

from byte_mutations import mutate

# Deterministic: the same examples on every run. About 2 ms per example.
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
ZIP_MAGIC = b"PK\x03\x04"


def make_model():
    """A trained network with Adam state and an extra dict holding an array."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)).astype(np.float32), rng.integers(0, 3, 40)
    net = Network([Linear(5, 4), Sigmoid(), Dropout(0.1), Linear(4, 3)], seed=0, input_scale=0.5)
    net.fit(X, y, epochs=1, batch_size=8, optimizer=Adam(lr=0.01), progress=False)
    return net


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """(network, bytes of its file)."""
    path = tmp_path_factory.mktemp("model") / "model.npz"
    net = make_model()
    net.save(path, include_optimizer=True, extra={"note": "fuzz", "table": np.arange(6.0)})
    return fastnn.load(path), path.read_bytes()


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "fuzzed.npz"


def assert_identical(net, reference):
    assert repr(net) == repr(reference)
    assert (net.input_scale, net.input_shift) == (reference.input_scale, reference.input_shift)
    for a, b in zip(net.parameters() + [net.extra["table"]],
                    reference.parameters() + [reference.extra["table"]]):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert net.extra["note"] == reference.extra["note"]
    assert net.optimizer.get_config() == reference.optimizer.get_config()
    mine, theirs = net.optimizer.state_dict(), reference.optimizer.state_dict()
    assert mine["steps"] == theirs["steps"]
    for name, buffers in mine["state"].items():
        for a, b in zip(buffers, theirs["state"][name]):
            assert np.array_equal(a, b)


def load_or_format_error(path, content):
    """fastnn.load of ``content``: the network, or None after a ModelFormatError naming the file."""
    path.write_bytes(content)
    try:
        return fastnn.load(path)
    except ModelFormatError as exc:
        assert str(path) in str(exc)
        return None


@FUZZ
@given(content=st.one_of(st.binary(max_size=400), st.binary(max_size=400).map(ZIP_MAGIC.__add__)))
def test_random_bytes(fuzz_path, content):
    assert load_or_format_error(fuzz_path, content) is None


EDITS = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]),
                           st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4)


@FUZZ
@given(edits=EDITS)
def test_damaged_copies_of_a_valid_model(original, fuzz_path, edits):
    reference, content = original
    net = load_or_format_error(fuzz_path, mutate(content, edits))
    if net is not None:  # bytes nobody reads (zip timestamps, padding, trailing data)
        assert_identical(net, reference)


def members(content):
    with np.load(io.BytesIO(content), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(arrays.pop("__header__").tobytes()), arrays


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)


def header_paths(value, prefix=()):
    """Every path (tuple of keys/indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from header_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from header_paths(v, prefix + (i,))


def replace_at(value, path, new):
    if not path:
        return new
    value[path[0]] = replace_at(value[path[0]], path[1:], new)
    return value


@FUZZ
@given(data=st.data())
def test_hand_edited_headers(original, fuzz_path, data):
    """Valid zip, valid checksum, any JSON at any place of the header: only ModelFormatError."""
    reference, content = original
    header, arrays = members(content)
    paths = sorted(header_paths(header), key=repr)
    path = data.draw(st.sampled_from(paths))
    header = replace_at(header, path, data.draw(JSON_VALUES))
    if isinstance(header, dict) and isinstance(header.get("arrays"), dict):
        names = [n for n in header["arrays"] if n in arrays]
        header["sha256"] = _digest(names, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    net = load_or_format_error(fuzz_path, buffer.getvalue())
    if net is not None:
        assert net.n_parameters() == reference.n_parameters()


def with_array_header(content, name, shape):
    """``content`` with the .npy header of array ``name`` rewritten to claim ``shape``."""
    source = zipfile.ZipFile(io.BytesIO(content))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            raw = source.read(info)
            if info.filename == name + ".npy":
                member = io.BytesIO(raw)
                assert np.lib.format.read_magic(member) == (1, 0)
                _, fortran, dtype = np.lib.format.read_array_header_1_0(member)
                data = member.read()
                member = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    member, {"descr": np.lib.format.dtype_to_descr(dtype),
                             "fortran_order": fortran, "shape": tuple(shape)})
                raw = member.getvalue() + data
            target.writestr(info, raw)
    return buffer.getvalue()


@FUZZ
@given(shape=st.tuples(st.integers(1 << 22, 1 << 28), st.integers(1, 4)))
def test_array_headers_promising_more_than_the_file_holds(original, fuzz_path, shape):
    """A .npy header inside the archive claiming 16 MB - 4 GB is refused before numpy
    allocates that (tracemalloc sees numpy's allocations, even of untouched pages)."""
    _, content = original
    damaged = with_array_header(content, "layers.0.W", shape)
    tracemalloc.start()
    try:
        assert load_or_format_error(fuzz_path, damaged) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_path_problems_are_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError):
        fastnn.load(tmp_path)


def test_every_fuzz_input_class_reaches_the_loader(original, fuzz_path):
    """The original itself loads identically: the fuzz tests start from a valid file."""
    reference, content = original
    assert_identical(load_or_format_error(fuzz_path, content), reference)
    assert os.path.getsize(fuzz_path) == len(content)
