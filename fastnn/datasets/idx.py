"""Reading datasets stored in the IDX format, the format MNIST is distributed in.

An IDX file is a short header followed by the array, every number big-endian:

    bytes 0-1        zero
    byte  2          element type code (the keys of ``IDX_TYPES``)
    byte  3          number of dimensions, d
    4 * d bytes      the size of each dimension, unsigned 32-bit
    the rest         the elements in C order

A file may be gzipped; compression is recognised by the gzip magic bytes, never by the file name.
Every problem with a file raises ``DatasetError`` naming the file, so a bad download or a damaged
copy can never turn into a silently wrong array.
"""
import gzip
import hashlib
import math
import os
import zlib

import numpy as np

_GZIP_MAGIC = b"\x1f\x8b"

# IDX element type code -> big-endian numpy type.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# (images, labels) file names of the training and test splits of an IDX dataset laid out like MNIST.
SPLIT_FILES = (
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)


class DatasetError(ValueError):
    """A dataset file is malformed, inconsistent with its partner file, or not the expected content."""


def read_idx(path):
    """Read one IDX file, gzipped or not, into a new array.

    Returns an ndarray with the shape given in the header and the element type given by its type
    code (uint8, int8, int16, int32, float32 or float64) in native byte order, C-contiguous and
    writable. Raises ``DatasetError`` naming the file if it is malformed, ``FileNotFoundError`` if
    it does not exist.
    """
    return parse_idx(read_content(path), name=os.fspath(path))


def read_content(path):
    """Return the bytes of the file at ``path``, decompressed if they start with the gzip magic bytes."""
    with open(path, "rb") as f:
        raw = f.read()
    return decompress(raw, name=os.fspath(path))


def decompress(raw, name):
    """Return ``raw`` gunzipped if it starts with the gzip magic bytes, else unchanged.

    ``name`` is the file (or URL) the bytes came from, used in error messages.
    """
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{name}: corrupt gzip stream ({exc})") from exc


def parse_idx(content, name):
    """Parse the complete bytes of an IDX file into a new native-endian array (see ``read_idx``).

    ``name`` is the file the bytes came from, used in error messages.
    """
    if len(content) < 4:
        raise DatasetError(f"{name}: truncated header: {len(content)} bytes, an IDX header has at least 4")
    if content[0] != 0 or content[1] != 0:
        raise DatasetError(
            f"{name}: bad magic number 0x{bytes(content[:4]).hex()}: an IDX file starts with two zero bytes"
        )
    type_code, ndim = content[2], content[3]
    if type_code not in IDX_TYPES:
        raise DatasetError(f"{name}: unknown IDX type code 0x{type_code:02x}")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DatasetError(
            f"{name}: truncated header: {ndim} dimensions need {header_size} header bytes, "
            f"the file has {len(content)}"
        )
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_TYPES[type_code]
    count = math.prod(shape)  # Python integers: a hostile header cannot overflow this
    expected_size = header_size + count * dtype.itemsize
    if len(content) < expected_size:
        raise DatasetError(
            f"{name}: truncated file: the header promises shape {shape} of {dtype.name} "
            f"({expected_size} bytes in all) but the file has {len(content)} bytes"
        )
    if len(content) > expected_size:
        raise DatasetError(
            f"{name}: trailing garbage: {len(content) - expected_size} bytes after the "
            f"{expected_size} bytes the header promises"
        )
    big_endian = np.frombuffer(content, dtype=dtype, count=count, offset=header_size)
    try:
        # astype copies, which also makes the result writable and independent of ``content``.
        return big_endian.astype(dtype.newbyteorder("="), copy=True).reshape(shape)
    except ValueError as exc:
        # Only an empty array can get here, e.g. shape (0, 2**32 - 1, 2**32 - 1) or more than 64 dimensions.
        raise DatasetError(f"{name}: shape {shape} cannot be held in a numpy array ({exc})") from exc


def load_idx(directory, *, num_classes=10, sha256=None):
    """Load a classification dataset stored as the four IDX files of MNIST's layout.

    ``directory`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either as named or with a
    ``.gz`` suffix (the plain file is used when both exist). Image files must be 3-D unsigned-byte
    arrays (count, rows, columns); label files 1-D integer arrays with values in
    ``0 .. num_classes - 1`` and as many entries as their image file.

    ``sha256``, if given, maps file names (without ``.gz``) to the SHA-256 hex digest of their
    decompressed bytes; a file whose digest differs raises ``DatasetError``.

    Returns ``((x_train, y_train), (x_test, y_test))``: images as uint8 arrays of shape
    (count, rows * columns), C-contiguous; labels as int64 arrays of shape (count,).
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    expected = sha256 or {}
    splits = []
    for images_stem, labels_stem in SPLIT_FILES:
        images_path = _find_file(directory, images_stem)
        labels_path = _find_file(directory, labels_stem)
        images = _read_checked(images_path, expected.get(images_stem))
        labels = _read_checked(labels_path, expected.get(labels_stem))
        splits.append(_images_and_labels(images, labels, images_path, labels_path, num_classes))
    return tuple(splits)


def _find_file(directory, stem):
    plain = os.path.join(directory, stem)
    if os.path.isfile(plain):
        return plain
    if os.path.isfile(plain + ".gz"):
        return plain + ".gz"
    raise FileNotFoundError(f"neither {stem} nor {stem}.gz found in {directory}")


def _read_checked(path, expected_sha256):
    # One decompression serves both the hash and the parse.
    content = read_content(path)
    if expected_sha256 is not None:
        digest = hashlib.sha256(content).hexdigest()
        if digest != expected_sha256:
            raise DatasetError(
                f"{path}: SHA-256 of the decompressed content is {digest}, expected {expected_sha256}"
            )
    return parse_idx(content, name=path)


def _images_and_labels(images, labels, images_path, labels_path, num_classes):
    if images.ndim != 3:
        raise DatasetError(f"{images_path}: images must be 3-D (count, rows, columns), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DatasetError(f"{images_path}: images must be unsigned bytes (IDX type 0x08), got {images.dtype}")
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: labels must be 1-D, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DatasetError(f"{labels_path}: labels must be integers, got {labels.dtype}")
    if len(images) != len(labels):
        raise DatasetError(
            f"count mismatch: {images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if labels.size:
        out_of_range = (labels < 0) | (labels >= num_classes)
        if out_of_range.any():
            first = int(np.argmax(out_of_range))
            raise DatasetError(
                f"{labels_path}: label {labels[first]} at index {first} is outside 0..{num_classes - 1} "
                f"(num_classes={num_classes})"
            )
    count, rows, columns = images.shape
    return images.reshape(count, rows * columns), labels.astype(np.int64)
