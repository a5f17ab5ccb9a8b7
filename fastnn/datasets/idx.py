"""Reading datasets stored in the IDX format, the format MNIST is distributed in.

An IDX file is a short header followed by the array, every number big-endian:

    bytes 0-1        zero
    byte  2          element type code (the keys of ``IDX_TYPES``)
    byte  3          number of dimensions, d
    4 * d bytes      the size of each dimension, unsigned 32-bit
    the rest         the elements in C order

A file may be gzipped; compression is recognised by the gzip magic bytes, never by the file name.
Files are decompressed straight into the preallocated result, so reading one costs little more
memory than the array itself. Every problem with a file raises ``DatasetError`` naming the file,
so a bad download or a damaged copy can never turn into a silently wrong array.
"""
import gzip
import hashlib
import math
import os
import stat
import zlib

import numpy as np

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)

# Bytes decompressed per read: GzipFile builds a temporary bytes object of each read's size.
_CHUNK_SIZE = 1 << 20

# Deflate never expands its input by more than this, which bounds what a gzipped file can hold.
_MAX_DEFLATE_RATIO = 1032

# IDX element type code -> big-endian numpy type.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# (images, labels) file names of each split of an IDX dataset laid out like MNIST.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SUBSETS = ("all", "train", "test")


class DatasetError(ValueError):
    """A dataset file is malformed, inconsistent with its partner file, or not the expected content."""


def read_idx(path):
    """Read one IDX file, gzipped or not, into a new array.

    Returns an ndarray with the shape given in the header and the element type given by its type
    code (uint8, int8, int16, int32, float32 or float64) in native byte order, C-contiguous and
    writable. Raises ``DatasetError`` naming the file if it is malformed, ``FileNotFoundError`` if
    it does not exist.
    """
    return _read_checked(path, None)


def decompress(raw, name):
    """Return ``raw`` gunzipped if it starts with the gzip magic bytes, else unchanged.

    ``name`` is the file (or URL) the bytes came from, used in error messages.
    """
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except _GZIP_ERRORS as exc:
        raise DatasetError(f"{name}: corrupt gzip stream ({exc})") from exc


class _Source:
    """The decompressed bytes of one file, read in order, counted and optionally hashed.

    ``limit`` is an upper bound on how many bytes the stream can hold, or None if unknown.
    """

    def __init__(self, stream, name, limit, expected_sha256):
        self.stream = stream
        self.name = name
        self.limit = limit
        self.expected_sha256 = expected_sha256
        self.hasher = hashlib.sha256() if expected_sha256 is not None else None
        self.position = 0

    def fill(self, view):
        """Read into the byte memoryview ``view`` until it is full or the stream ends; return the count."""
        filled = 0
        while filled < len(view):
            chunk = view[filled : filled + _CHUNK_SIZE]
            try:
                count = self.stream.readinto(chunk)
            except _GZIP_ERRORS as exc:
                raise DatasetError(f"{self.name}: corrupt gzip stream ({exc})") from exc
            if not count:
                break
            if self.hasher is not None:
                self.hasher.update(chunk[:count])
            filled += count
        self.position += filled
        return filled

    def read(self, size):
        """Return the next ``size`` bytes, fewer only at the end of the stream."""
        buffer = bytearray(size)
        return bytes(buffer[: self.fill(memoryview(buffer))])

    def drain(self):
        """Read the rest of the stream; return how many bytes it had."""
        start = self.position
        scratch = memoryview(bytearray(_CHUNK_SIZE))
        while self.fill(scratch):
            pass
        return self.position - start

    def check_digest(self):
        """Raise ``DatasetError`` if a digest is expected and what was read does not have it."""
        if self.hasher is None:
            return
        digest = self.hasher.hexdigest()
        if digest != self.expected_sha256:
            raise DatasetError(
                f"{self.name}: SHA-256 of the decompressed content is {digest}, expected {self.expected_sha256}"
            )

    def fail(self, problem):
        """Raise ``DatasetError`` for ``problem``, unless the content's hash is wrong, which is reported instead."""
        if self.hasher is not None:
            self.drain()
            self.check_digest()
        raise DatasetError(f"{self.name}: {problem}")


def _read_checked(path, expected_sha256):
    name = os.fspath(path)
    with open(path, "rb") as raw:
        limit = _file_size(raw)
        if raw.peek(2)[:2] != _GZIP_MAGIC:
            return _parse(_Source(raw, name, limit, expected_sha256))
        limit = None if limit is None else limit * _MAX_DEFLATE_RATIO
        with gzip.GzipFile(fileobj=raw) as stream:
            return _parse(_Source(stream, name, limit, expected_sha256))


def _file_size(f):
    """The size of the open file ``f``, or None if it is not a regular file (a pipe, say)."""
    info = os.fstat(f.fileno())
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _parse(source):
    """Read the IDX content of ``source`` into a new native-endian array (see ``read_idx``)."""
    header, shape, dtype = _read_header(source)
    count = math.prod(shape)  # Python integers: a hostile header cannot overflow this
    expected_size = len(header) + count * dtype.itemsize
    if source.limit is not None and expected_size > source.limit:
        # Too big for the file: count its bytes for the message instead of allocating the array.
        source.drain()
        _truncated(source, shape, dtype, expected_size, source.position)
    flat = np.empty(count, dtype=dtype)
    filled = source.fill(memoryview(flat.view(np.uint8)))
    if filled < flat.nbytes:
        _truncated(source, shape, dtype, expected_size, source.position)
    trailing = source.drain()
    if trailing:
        source.fail(f"trailing garbage: {trailing} bytes after the {expected_size} bytes the header promises")
    source.check_digest()
    return _native_array(flat, shape, source.name)


def _read_header(source):
    """Read and check the IDX header; return ``(header bytes, shape, big-endian dtype)``."""
    header = source.read(4)
    if len(header) < 4:
        source.fail(f"truncated header: {len(header)} bytes, an IDX header has at least 4")
    if header[0] != 0 or header[1] != 0:
        source.fail(f"bad magic number 0x{header.hex()}: an IDX file starts with two zero bytes")
    type_code, ndim = header[2], header[3]
    if type_code not in IDX_TYPES:
        source.fail(f"unknown IDX type code 0x{type_code:02x}")
    header += source.read(4 * ndim)
    if len(header) < 4 + 4 * ndim:
        source.fail(
            f"truncated header: {ndim} dimensions need {4 + 4 * ndim} header bytes, the file has {len(header)}"
        )
    shape = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return header, shape, IDX_TYPES[type_code]


def _truncated(source, shape, dtype, expected_size, actual_size):
    source.fail(
        f"truncated file: the header promises shape {shape} of {dtype.name} "
        f"({expected_size} bytes in all) but the file has {actual_size} bytes"
    )


def _native_array(flat, shape, name):
    """Turn the big-endian ``flat`` into a native-endian array of ``shape``, in place."""
    if not flat.dtype.isnative:
        flat.byteswap(inplace=True)
        flat = flat.view(flat.dtype.newbyteorder("="))
    try:
        return flat.reshape(shape)
    except ValueError as exc:
        # More than 64 dimensions, or an empty array whose shape is too big to describe,
        # e.g. (0, 2**32 - 1, 2**32 - 1); any other shape passed the size checks.
        raise DatasetError(f"{name}: shape {shape} cannot be held in a numpy array ({exc})") from exc


def load_idx(directory, *, num_classes=10, sha256=None, subset="all"):
    """Load a classification dataset stored as the four IDX files of MNIST's layout.

    ``directory`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either as named or with a
    ``.gz`` suffix (the plain file is used when both exist). Image files must be 3-D unsigned-byte
    arrays (count, rows, columns); label files 1-D integer arrays with values in
    ``0 .. num_classes - 1`` and as many entries as their image file.

    ``sha256``, if given, maps file names (without ``.gz``) to the SHA-256 hex digest of their
    decompressed bytes; a file whose digest differs raises ``DatasetError``.

    ``subset`` chooses what is read: ``"all"`` (the default) returns
    ``((x_train, y_train), (x_test, y_test))``; ``"train"`` or ``"test"`` returns just ``(x, y)``
    of that split, and only its two files are opened. Images are uint8 arrays of shape
    (count, rows * columns), C-contiguous and writable; labels are int64 arrays of shape (count,).
    """
    if not isinstance(directory, (str, bytes, os.PathLike)):
        raise TypeError(f"directory: expected a path (str or os.PathLike), got {type(directory).__name__}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    expected = _checked_digests(sha256)
    splits = tuple(
        _load_split(directory, SPLIT_FILES[split], num_classes, expected) for split in subset_splits(subset)
    )
    return splits if subset == "all" else splits[0]


def _checked_digests(sha256):
    """``sha256`` ({file name: hex digest} or None) as a dict, refusing names that are none of
    the four files (a misspelled name would otherwise check nothing)."""
    if sha256 is None:
        return {}
    if not isinstance(sha256, dict):
        raise TypeError(f"sha256: expected None or a dict of file names to digests, got {type(sha256).__name__}")
    known = [stem for stems in SPLIT_FILES.values() for stem in stems]
    unknown = sorted(str(name) for name in sha256 if name not in known)
    if unknown:
        raise ValueError(f"sha256: unknown file name(s) {', '.join(map(repr, unknown))}; expected "
                         f"some of {', '.join(map(repr, known))} (without .gz)")
    return sha256


def subset_splits(subset):
    """The split names (keys of ``SPLIT_FILES``) that ``subset`` stands for."""
    if subset == "all":
        return tuple(SPLIT_FILES)
    if subset in SPLIT_FILES:
        return (subset,)
    raise ValueError(f"unknown subset {subset!r}; expected one of {', '.join(map(repr, SUBSETS))}")


def _load_split(directory, stems, num_classes, expected):
    images_stem, labels_stem = stems
    images_path = _find_file(directory, images_stem)
    labels_path = _find_file(directory, labels_stem)
    images = _read_checked(images_path, expected.get(images_stem))
    labels = _read_checked(labels_path, expected.get(labels_stem))
    return _images_and_labels(images, labels, images_path, labels_path, num_classes)


def idx_files(directory, subset="all"):
    """The paths of the files ``load_idx(directory, subset=subset)`` reads: of each file of the
    split(s), the plain one, else the gzipped one. A file found in neither form is left out
    (load_idx raises FileNotFoundError for it)."""
    found = (_existing_file(directory, stem)
             for split in subset_splits(subset) for stem in SPLIT_FILES[split])
    return [path for path in found if path is not None]


def _find_file(directory, stem):
    path = _existing_file(directory, stem)
    if path is None:
        raise FileNotFoundError(f"neither {stem} nor {stem}.gz found in {directory}")
    return path


def _existing_file(directory, stem):
    """The file of ``stem`` that load_idx reads (the plain file when both exist), or None."""
    plain = os.path.join(directory, stem)
    return next((path for path in (plain, plain + ".gz") if os.path.isfile(path)), None)


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
