"""Atomic file writes: a temporary file in the target's directory, fsynced, then renamed over it."""
import contextlib
import os
import stat
import tempfile

_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    If the body raises (or the process dies), ``path`` keeps its previous content and the
    temporary file is removed (on an exception) or left as ``.<name>.*.tmp`` (on a kill).
    A symlink is followed: the file it points to is replaced and the link stays. An existing
    file keeps its permission bits. An empty path, or one that exists and is not a regular file
    (a directory, FIFO, device or socket), is refused with ValueError (``check_replaceable``).
    """
    given = os.fspath(path)
    existing = check_replaceable(given)
    path = os.path.realpath(given)
    directory = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                   dir=directory)
    except OSError as exc:  # named after the file asked for, not the temporary one
        raise OSError(exc.errno, f"cannot create a file in {directory}: {exc.strerror}",
                      given) from None
    try:
        # mkstemp creates 0600: keep the replaced file's bits, else the usual mode of a new file
        os.chmod(tmp, existing.st_mode & 0o777 if existing else 0o666 & ~_current_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def check_replaceable(path, name="path"):
    """The ``os.stat`` of ``path`` (symlinks followed), or None when nothing is there yet.
    ValueError naming ``name`` when ``path`` is empty, ends in a separator or is not a regular
    file: a write renames a new file over the path, which would replace a directory, FIFO, device
    or socket instead of writing to it."""
    if not path:
        raise ValueError(f"{name}: expected a file name, got an empty path")
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise ValueError(f"{name}: expected a file name, got {path!r} (a directory's)")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        kind = next((kind for test, kind in _KINDS if test(st.st_mode)), "special file")
        raise ValueError(f"{name}: {path} is a {kind}; expected a regular file or "
                         "a new file name")
    return st


def _fsync_directory(directory):
    # Makes the rename itself durable; not every platform allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
