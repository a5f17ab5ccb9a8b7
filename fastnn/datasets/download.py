"""Downloading dataset files into a local cache, each verified before it becomes part of the cache.

A download is streamed into a temporary file beside its final name; only when the whole body has
arrived and the SHA-256 of its decompressed content matches is it renamed into place. A cut
connection, an HTTP error or a wrong hash therefore never leaves a file under the final name.
"""
import hashlib
import os

from .._atomic import atomic_write
from .idx import DatasetError, decompress

DEFAULT_TIMEOUT = 30.0  # seconds, for connecting and for each read from the socket
_CHUNK_SIZE = 1 << 16


class DownloadError(OSError):
    """A file could not be fetched: the server was unreachable, answered with an HTTP error, or the transfer broke off."""


def download_files(mirror, cache_dir, files, *, timeout=DEFAULT_TIMEOUT):
    """Make ``cache_dir`` hold every file of ``files``, fetching only those missing or wrong.

    ``files`` maps a file name to the SHA-256 hex digest of its content after gunzipping (of the
    file itself if it is not gzipped); each is fetched from ``mirror`` + "/" + name. Files already
    cached with the right digest are not fetched again; a cached file with the wrong digest is
    removed and fetched again. Returns ``cache_dir``.

    Raises ``DownloadError`` naming the URL on network or HTTP failures and ``DatasetError``
    naming the file and URL when the fetched content has the wrong digest.
    """
    os.makedirs(cache_dir, exist_ok=True)
    for name, expected_sha256 in files.items():
        path = os.path.join(cache_dir, name)
        if _is_cached(path, expected_sha256):
            continue
        _fetch_verified(mirror.rstrip("/") + "/" + name, path, expected_sha256, timeout)
    return cache_dir


def _is_cached(path, expected_sha256):
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        raw = f.read()
    try:
        if _sha256_of_content(raw, path) == expected_sha256:
            return True
    except DatasetError:
        pass
    os.remove(path)  # useless as it is; removed so that a failed fetch leaves no wrong file behind
    return False


def _fetch_verified(url, path, expected_sha256, timeout):
    name = os.path.basename(path)
    # w+b: the body is written, then read back for the hash before atomic_write renames it into place.
    with atomic_write(path, "w+b") as f:
        _stream_to_file(url, f, timeout)
        f.seek(0)
        digest = _sha256_of_content(f.read(), f"{name} from {url}")
        if digest != expected_sha256:
            raise DatasetError(
                f"{name} downloaded from {url} has SHA-256 {digest} (of its decompressed content), "
                f"expected {expected_sha256}; it was not cached"
            )


def _sha256_of_content(raw, name):
    return hashlib.sha256(decompress(raw, name)).hexdigest()


def _stream_to_file(url, f, timeout):
    # Imported here so that importing fastnn does not pay for urllib.
    import http.client
    import urllib.error
    import urllib.request

    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: could not connect ({exc.reason})") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"{url}: request failed ({exc!r})") from exc
    with response:
        promised = getattr(response, "length", None)  # the Content-Length, or None if not sent
        received = 0
        while True:
            try:
                chunk = response.read(_CHUNK_SIZE)
            except (http.client.HTTPException, OSError) as exc:
                raise DownloadError(f"{url}: transfer failed after {received} bytes ({exc!r})") from exc
            if not chunk:
                break
            f.write(chunk)
            received += len(chunk)
    # http.client returns an empty read, not an error, when the connection closes before
    # Content-Length bytes have arrived, so the count is checked here.
    if promised is not None and received != promised:
        raise DownloadError(f"{url}: the connection closed after {received} of {promised} bytes")
