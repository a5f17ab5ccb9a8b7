"""The MNIST handwritten digits: the copy shipped with fastnn, an optional download, and input scaling."""
import math
import os

import numpy as np

from .download import download_files
from .idx import SPLIT_FILES, load_idx, subset_splits

# SHA-256 of each MNIST file's decompressed bytes.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Base URL of a server holding the four gzipped files under their usual names.
DEFAULT_MIRROR = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MIRROR_ENV = "FASTNN_MNIST_MIRROR"
CACHE_ENV = "FASTNN_CACHE_DIR"  # fastnn's cache root; MNIST goes in its "mnist" subdirectory

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mnist")

# Chunk of pixels histogrammed at a time by pixel_scaling; bounds its temporary memory to a few MB.
_HISTOGRAM_CHUNK = 1 << 20


def load_mnist(download=False, cache_dir=None, mirror=None, *, subset="all"):
    """Load MNIST, checking the SHA-256 of every file read.

    With ``download=False`` (the default) the copy shipped inside the package is read and
    ``cache_dir`` and ``mirror`` must be left as None. With ``download=True`` the four gzipped files
    are fetched from ``mirror`` (default: ``$FASTNN_MNIST_MIRROR``, else ``DEFAULT_MIRROR``) into
    ``cache_dir`` (default: ``$FASTNN_CACHE_DIR/mnist``, else ``~/.cache/fastnn/mnist``), skipping
    files already cached with the right content, and then read from there.

    Returns ``((x_train, y_train), (x_test, y_test))``: x_train uint8 (60000, 784), y_train int64
    (60000,), x_test uint8 (10000, 784), y_test int64 (10000,); images are C-contiguous rows of
    28x28 pixels, 0 (background) to 255 (ink).

    ``subset="train"`` or ``subset="test"`` reads (and downloads) only that split's two files and
    returns just its ``(x, y)``, e.g. ``x_test, y_test = load_mnist(subset="test")``.
    """
    splits = subset_splits(subset)
    if not download:
        if cache_dir is not None or mirror is not None:
            raise ValueError("cache_dir and mirror are only used with download=True")
        return load_idx(SHIPPED_DIR, sha256=MNIST_SHA256, subset=subset)
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    if cache_dir is None:
        cache_dir = default_cache_dir()
    files = {stem + ".gz": MNIST_SHA256[stem] for split in splits for stem in SPLIT_FILES[split]}
    download_files(mirror, cache_dir, files)
    return load_idx(cache_dir, sha256=MNIST_SHA256, subset=subset)


def default_cache_dir():
    """Where ``load_mnist(download=True)`` keeps its files when no ``cache_dir`` is given."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "fastnn")
    return os.path.join(root, "mnist")


def pixel_scaling(x_train, mode="unit"):
    """Return ``(scale, shift)``, Python floats, such that a network's input is ``x * scale + shift``.

    ``x_train`` is the uint8 training images, any shape. Modes:

    - ``"unit"``: ``(1/255, 0.0)``, mapping pixels to [0, 1].
    - ``"standardize"``: ``(1/std, -mean/std)`` with the mean and (population) standard deviation of
      all pixel values of ``x_train``, so the scaled training pixels have mean 0 and variance 1.
      They are computed exactly from a 256-bin histogram built a chunk at a time, so no float copy
      of ``x_train`` is ever made.

    The same constants must be applied to the test images.
    """
    x_train = np.asarray(x_train)
    if x_train.dtype != np.uint8:
        raise TypeError(f"pixel_scaling expects uint8 images, got {x_train.dtype}")
    if mode == "unit":
        return 1.0 / 255.0, 0.0
    if mode == "standardize":
        mean, std = _pixel_mean_std(x_train)
        if std == 0.0:
            raise ValueError("cannot standardize: every pixel of x_train has the same value")
        return 1.0 / std, -mean / std
    raise ValueError(f"unknown pixel scaling mode {mode!r}; expected 'unit' or 'standardize'")


def _pixel_mean_std(pixels):
    flat = pixels.reshape(-1)  # a view for the contiguous arrays load_mnist returns
    if flat.size == 0:
        raise ValueError("cannot standardize an empty x_train")
    histogram = np.zeros(256, dtype=np.int64)
    for start in range(0, flat.size, _HISTOGRAM_CHUNK):
        histogram += np.bincount(flat[start : start + _HISTOGRAM_CHUNK], minlength=256)
    # Exact integer sums: the variance comes out without the cancellation of E[x^2] - E[x]^2 in floats.
    count = int(flat.size)
    total = sum(int(n) * value for value, n in enumerate(histogram))
    total_of_squares = sum(int(n) * value * value for value, n in enumerate(histogram))
    mean = total / count
    variance = (count * total_of_squares - total * total) / (count * count)
    return mean, math.sqrt(variance)
