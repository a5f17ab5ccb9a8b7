"""Tests for downloading datasets, against a real HTTP server on 127.0.0.1."""
import functools
import gzip
import hashlib
import http.server
import os
import re
import socket
import threading

import numpy as np
import pytest

from fastnn.datasets import DatasetError, DownloadError, MNIST_SHA256, load_mnist
from fastnn.datasets.download import download_files
from fastnn.datasets.mnist import CACHE_ENV, MIRROR_ENV, SHIPPED_DIR

TIMEOUT = 5.0


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``root``, recording the path of every GET.

    Paths under /cut/ promise a Content-Length larger than the body they send, then close the
    connection; paths under /hang/ send nothing until the server is stopped.
    """

    def __init__(self, root):
        self.requests = []
        self.release_hung = threading.Event()
        handler = functools.partial(_Handler, self, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.release_hung.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(TIMEOUT)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, server_state, *args, **kwargs):
        self.state = server_state
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.state.requests.append(self.path)
        if self.path.startswith("/cut/"):
            self._send_cut(self.path[len("/cut/") :])
        elif self.path.startswith("/hang/"):
            self.state.release_hung.wait(TIMEOUT)
        else:
            super().do_GET()

    def _send_cut(self, name):
        with open(os.path.join(self.directory, name), "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    running = Server(root)
    running.root = root
    yield running
    running.stop()


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def fake_idx_gz(seed, n=20):
    """A small gzipped IDX file and the SHA-256 of its decompressed bytes."""
    rng = np.random.default_rng(seed)
    content = bytes([0, 0, 0x08, 3]) + b"".join(k.to_bytes(4, "big") for k in (n, 4, 4))
    content += rng.integers(0, 256, size=n * 16, dtype=np.uint8).tobytes()
    return gzip.compress(content, mtime=0), hashlib.sha256(content).hexdigest()


def publish(server, names):
    """Put fake files on the server; return {name: sha256} as download_files expects."""
    files = {}
    for seed, name in enumerate(names):
        packed, digest = fake_idx_gz(seed)
        (server.root / name).write_bytes(packed)
        files[name] = digest
    return files


def cache_listing(cache):
    return sorted(os.listdir(cache)) if cache.exists() else []


def test_download_success(server, cache):
    files = publish(server, ["a.gz", "b.gz"])
    assert download_files(server.url, str(cache), files, timeout=TIMEOUT) == str(cache)
    assert cache_listing(cache) == ["a.gz", "b.gz"]
    for name in files:
        assert (cache / name).read_bytes() == (server.root / name).read_bytes()
    assert sorted(server.requests) == ["/a.gz", "/b.gz"]


def test_mirror_with_trailing_slash(server, cache):
    files = publish(server, ["a.gz"])
    download_files(server.url + "/", str(cache), files, timeout=TIMEOUT)
    assert server.requests == ["/a.gz"]


def test_cached_files_are_not_downloaded_again(server, cache):
    files = publish(server, ["a.gz", "b.gz"])
    download_files(server.url, str(cache), files, timeout=TIMEOUT)
    download_files(server.url, str(cache), files, timeout=TIMEOUT)
    assert len(server.requests) == 2


def test_wrong_cached_file_is_downloaded_again(server, cache):
    files = publish(server, ["a.gz", "b.gz"])
    download_files(server.url, str(cache), files, timeout=TIMEOUT)
    (cache / "b.gz").write_bytes(gzip.compress(b"stale"))
    download_files(server.url, str(cache), files, timeout=TIMEOUT)
    assert sorted(server.requests) == ["/a.gz", "/b.gz", "/b.gz"]
    assert (cache / "b.gz").read_bytes() == (server.root / "b.gz").read_bytes()


def test_hash_mismatch_raises_and_caches_nothing(server, cache):
    files = publish(server, ["a.gz", "b.gz"])
    files["b.gz"] = "f" * 64
    url = f"{server.url}/b.gz"
    with pytest.raises(DatasetError, match=re.escape(f"b.gz downloaded from {url} has SHA-256")):
        download_files(server.url, str(cache), files, timeout=TIMEOUT)
    assert cache_listing(cache) == ["a.gz"]


def test_corrupt_gzip_download_raises_and_caches_nothing(server, cache):
    files = publish(server, ["a.gz"])
    packed = (server.root / "a.gz").read_bytes()
    (server.root / "a.gz").write_bytes(packed[:-10])
    with pytest.raises(DatasetError, match=re.escape(f"a.gz from {server.url}/a.gz: corrupt gzip stream")):
        download_files(server.url, str(cache), files, timeout=TIMEOUT)
    assert cache_listing(cache) == []


def test_wrong_cached_file_is_removed_even_if_the_new_download_fails(server, cache):
    files = publish(server, ["a.gz"])
    cache.mkdir()
    (cache / "a.gz").write_bytes(gzip.compress(b"stale"))
    (server.root / "a.gz").unlink()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_files(server.url, str(cache), files, timeout=TIMEOUT)
    assert cache_listing(cache) == []


def test_http_404_names_the_url(server, cache):
    files = publish(server, ["a.gz"])
    files["missing.gz"] = "0" * 64
    with pytest.raises(DownloadError, match=re.escape(f"{server.url}/missing.gz: the server answered HTTP 404")):
        download_files(server.url, str(cache), files, timeout=TIMEOUT)
    assert cache_listing(cache) == ["a.gz"]


def test_connection_cut_half_way(server, cache):
    files = publish(server, ["a.gz"])
    size = (server.root / "a.gz").stat().st_size
    url = f"{server.url}/cut/a.gz"
    with pytest.raises(DownloadError, match=re.escape(f"{url}: the connection closed after {size // 2} of {size} bytes")):
        download_files(server.url + "/cut", str(cache), files, timeout=TIMEOUT)
    assert cache_listing(cache) == []


def test_connection_refused_names_the_url(cache):
    with socket.socket() as probe:  # a port that was free a moment ago, with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(DownloadError, match=re.escape(f"{url}/a.gz: could not connect")):
        download_files(url, str(cache), {"a.gz": "0" * 64}, timeout=TIMEOUT)
    assert cache_listing(cache) == []


def test_silent_server_times_out(server, cache):
    with pytest.raises(DownloadError, match=re.escape(f"{server.url}/hang/a.gz")):
        download_files(server.url + "/hang", str(cache), {"a.gz": "0" * 64}, timeout=0.3)
    assert cache_listing(cache) == []


# --- load_mnist(download=True), serving the real files shipped with the package -------------------


@pytest.fixture
def mnist_server():
    running = Server(SHIPPED_DIR)
    yield running
    running.stop()


def test_load_mnist_download_end_to_end(mnist_server, cache):
    downloaded = load_mnist(download=True, mirror=mnist_server.url, cache_dir=str(cache))
    assert sorted(mnist_server.requests) == sorted(f"/{name}.gz" for name in MNIST_SHA256)
    assert cache_listing(cache) == sorted(name + ".gz" for name in MNIST_SHA256)
    shipped = load_mnist()
    for split_downloaded, split_shipped in zip(downloaded, shipped):
        for got, expected in zip(split_downloaded, split_shipped):
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


def test_load_mnist_download_uses_environment_and_cache(mnist_server, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, mnist_server.url)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache-root"))
    (x_train, _), _ = load_mnist(download=True)
    assert x_train.shape == (60000, 784)
    assert cache_listing(tmp_path / "cache-root" / "mnist") == sorted(name + ".gz" for name in MNIST_SHA256)
    assert len(mnist_server.requests) == 4
    load_mnist(download=True)
    assert len(mnist_server.requests) == 4
