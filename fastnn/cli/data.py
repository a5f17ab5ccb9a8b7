"""The data of ``fastnn train`` and ``fastnn evaluate``: MNIST or an IDX dataset (tables are
read by :mod:`fastnn.cli.tables`), and the cache that lets the trials of a sweep in one process
load their dataset once."""
import contextlib
import os
import threading

from .options import NUM_CLASSES, set_threads
from .output import UserError


def training_data(args, human=None):
    """((x_train, y_train), (x_test, y_test), (input_scale, input_shift), table) as the options
    ask; table is None for MNIST and IDX data, else the fastnn.cli.tables.TableData. The
    --threads count is set here, for every data source."""
    if args.data is not None:
        from .tables import table_training_data
        data = table_training_data(args, human)
    else:
        data = _dataset_training_data(args)
    # Data first: its transient decompression buffers are freed before the compiled core and
    # BLAS load, which keeps the peak memory lower.
    set_threads(args.threads)
    return data


def _dataset_training_data(args):
    """training_data of MNIST or an IDX directory."""
    from ..datasets import pixel_scaling
    (x_train, y_train), test = load_data(args.data_dir)
    if args.limit is not None:
        if args.limit > len(x_train):
            raise UserError(f"--limit {args.limit} is larger than the {len(x_train)} training "
                            "images")
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    _check_data(args, x_train, test[0])
    try:
        scaling = pixel_scaling(x_train, args.scaling)
    except ValueError as exc:  # e.g. standardizing images that are all one colour
        raise UserError(f"--scaling {args.scaling}: {exc}") from None
    return (x_train, y_train), test, scaling, None


def _check_data(args, x_train, x_test):
    """UserError for data that cannot be trained or tested on as asked."""
    where = args.data_dir or "the MNIST copy"
    if len(x_train) == 0:
        raise UserError(f"no training images in {where}")
    if len(x_test) == 0:
        raise UserError(f"no test images in {where}")
    # The same count Network.fit holds out.
    if args.val_split and max(1, int(len(x_train) * args.val_split)) >= len(x_train):
        raise UserError(f"--val-split {args.val_split:g} leaves no training images out of "
                        f"{len(x_train)}")


# The dataset last loaded inside loaded_data_kept(), for the next trial of a sweep in this process.
_data_cache = {"key": None, "data": None, "active": 0}
_data_lock = threading.Lock()


@contextlib.contextmanager
def loaded_data_kept():
    """Within the block, runs load their dataset once and keep it (read-only) for the runs that
    follow in this process, as the trials of a sweep do. A --data-dir whose files change is read
    again."""
    with _data_lock:
        _data_cache["active"] += 1
    try:
        yield
    finally:
        with _data_lock:
            _data_cache["active"] -= 1


def load_data(data_dir, subset="all"):
    """MNIST or the IDX dataset in data_dir: both splits, or only subset="train"/"test"."""
    from .. import datasets
    if not _data_cache["active"]:
        return _load_data_uncached(datasets, data_dir, subset)
    key = (data_dir and os.path.abspath(data_dir), subset, _directory_stamp(data_dir))
    with _data_lock:  # one load at a time; the others wait for it and share it
        if _data_cache["key"] != key:
            loaded = _load_data_uncached(datasets, data_dir, subset)
            _read_only(loaded)
            _data_cache.update(key=key, data=loaded)
        return _data_cache["data"]


def _load_data_uncached(datasets, data_dir, subset):
    if data_dir is None:
        return datasets.load_mnist(subset=subset)
    return datasets.load_idx(data_dir, num_classes=NUM_CLASSES, subset=subset)


def _directory_stamp(data_dir):
    if data_dir is None:
        return None
    return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                        for e in os.scandir(data_dir) if e.is_file()))


def _read_only(value):
    if isinstance(value, tuple):
        for item in value:
            _read_only(item)
    elif hasattr(value, "setflags"):
        value.setflags(write=False)
