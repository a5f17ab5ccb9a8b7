"""Datasets for fastnn: a reader for the IDX format and the MNIST digits (shipped with the package).

``load_mnist()`` returns ``((x_train, y_train), (x_test, y_test))`` with images as uint8 arrays of
shape (count, 784) and labels as int64 arrays of shape (count,); ``pixel_scaling`` gives the
constants that turn those uint8 pixels into network inputs. ``load_mnist(subset="test")`` (or
``"train"``) reads only that split and returns just its ``(x, y)``; ``load_idx`` takes the same
``subset``. Files are decompressed straight into the returned arrays, so loading needs little
memory beyond the arrays themselves.
"""
from .download import DownloadError
from .idx import DatasetError, load_idx, read_idx
from .mnist import DEFAULT_MIRROR, MNIST_SHA256, load_mnist, pixel_scaling

__all__ = [
    "DEFAULT_MIRROR",
    "DatasetError",
    "DownloadError",
    "MNIST_SHA256",
    "load_idx",
    "load_mnist",
    "pixel_scaling",
    "read_idx",
]
