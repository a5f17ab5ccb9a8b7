"""Atomic writes: a process killed (SIGKILL) while saving never leaves a partial file at PATH,
and every file fastnn writes goes through fastnn._atomic.atomic_write."""
import ast
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnn
from fastnn import Linear, Network

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO_ROOT, "fastnn")

# Saves a model to sys.argv[1]; the hook set up by PATCHES[sys.argv[2]] runs in the middle of the
# save, prints "PAUSED" and sleeps until the test kills the process.
SAVER = textwrap.dedent("""
    import os, sys, time
    import fastnn, fastnn.serialization as serialization, fastnn._atomic as atomic
    from fastnn import Linear, Network

    def pause():
        print("PAUSED", flush=True)
        time.sleep(600)

    class SlowFile:
        '''Delegates to the real file, pausing once half of ``total`` bytes are written.'''
        def __init__(self, f, total):
            self._f, self._total, self._written = f, total, 0
        def write(self, data):
            n = self._f.write(data)
            self._written += len(data)
            if self._written >= self._total // 2:
                self._f.flush()
                pause()
            return n
        def __getattr__(self, name):
            return getattr(self._f, name)

    net = Network([Linear(int(sys.argv[3]), 256, seed=1)], seed=1)
    if sys.argv[2] == "mid-write":
        real = serialization.atomic_write
        class slow_atomic_write:
            def __init__(self, path):
                self.cm = real(path)
            def __enter__(self):
                return SlowFile(self.cm.__enter__(), 4 * net.n_parameters())
            def __exit__(self, *exc):
                return self.cm.__exit__(*exc)
        serialization.atomic_write = slow_atomic_write
    elif sys.argv[2] == "before-rename":
        atomic.os.replace = lambda *a: pause()
    elif sys.argv[2] == "none":
        print("SAVING", flush=True)
    net.save(sys.argv[1])
    print("SAVED", flush=True)
""")


def start_saver(path, hook, n_inputs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", SAVER, str(path), hook, str(n_inputs)],
                            stdout=subprocess.PIPE, text=True, env=env)


def wait_for_line(proc, expected):
    line = proc.stdout.readline().strip()
    assert line == expected, line


def old_model(path):
    """A small model written at ``path``; returns its bytes."""
    Network([Linear(8, 4)], seed=0).save(path)
    return path.read_bytes()


def temporary_files(directory, name):
    return [f for f in os.listdir(directory) if f != name]


@pytest.mark.parametrize("hook", ["mid-write", "before-rename"])
def test_sigkill_during_save_keeps_the_previous_file(tmp_path, hook):
    path = tmp_path / "model.npz"
    before = old_model(path)
    proc = start_saver(path, hook, n_inputs=2000)  # 2 MB of parameters
    try:
        wait_for_line(proc, "PAUSED")
        leftovers = temporary_files(tmp_path, path.name)
        assert len(leftovers) == 1 and os.path.getsize(tmp_path / leftovers[0]) > 1_000_000
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    assert fastnn.load(path).n_parameters() == 8 * 4 + 4
    # The killed writer's temporary file stays, hidden, beside the model; PATH never held it.
    assert all(f.startswith(".model.npz.") and f.endswith(".tmp") for f in temporary_files(tmp_path, path.name))


def test_sigkill_while_saving_a_50mb_model(tmp_path):
    """No hook: the kill lands wherever the save happens to be. PATH then holds the old model or
    the complete new one, never a part."""
    path = tmp_path / "model.npz"
    before = old_model(path)
    n_inputs = 50_000  # 50,000 x 256 float32 = 51 MB
    proc = start_saver(path, "none", n_inputs)
    try:
        wait_for_line(proc, "SAVING")
        deadline = time.monotonic() + 60
        while not temporary_files(tmp_path, path.name) and time.monotonic() < deadline:
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    if path.read_bytes() != before:
        assert fastnn.load(path).n_parameters() == n_inputs * 256 + 256
    else:
        assert fastnn.load(path).n_parameters() == 8 * 4 + 4


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """A KeyboardInterrupt inside the write (a second Ctrl-C) removes the temporary file."""
    path = tmp_path / "model.npz"
    before = old_model(path)

    def interrupted_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        Network([Linear(8, 4)], seed=1).save(path)
    assert path.read_bytes() == before
    assert temporary_files(tmp_path, path.name) == []


# -- what is at the path -----------------------------------------------------------------------

def test_a_symlink_is_written_through(tmp_path):
    (tmp_path / "real").mkdir()
    target, link = tmp_path / "real" / "model.npz", tmp_path / "link.npz"
    old_model(target)
    os.symlink(target, link)
    Network([Linear(3, 2)], seed=0).save(link)
    assert os.path.islink(link) and os.readlink(link) == str(target)
    assert fastnn.load(target).n_parameters() == 3 * 2 + 2
    assert temporary_files(tmp_path / "real", "model.npz") == []

    dangling = tmp_path / "dangling.npz"
    os.symlink(tmp_path / "real" / "new.npz", dangling)
    Network([Linear(3, 2)], seed=0).save(dangling)
    assert os.path.islink(dangling) and fastnn.load(tmp_path / "real" / "new.npz").n_features == 3


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_an_existing_file_keeps_its_permission_bits(tmp_path, mode):
    path = tmp_path / "model.npz"
    old_model(path)
    os.chmod(path, mode)
    Network([Linear(3, 2)], seed=0).save(path)
    assert os.stat(path).st_mode & 0o777 == mode


def test_a_new_file_gets_the_usual_mode(tmp_path):
    mask = os.umask(0o027)
    try:
        old_model(tmp_path / "model.npz")
    finally:
        os.umask(mask)
    assert os.stat(tmp_path / "model.npz").st_mode & 0o777 == 0o640


def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.symlink(fifo, tmp_path / "link")
    net = Network([Linear(3, 2)], seed=0)
    for path, kind in ((fifo, "FIFO"), (tmp_path / "link", "FIFO"), (tmp_path, "directory")):
        with pytest.raises(ValueError, match=f"path: {path} is a {kind}; expected a regular file"):
            net.save(path)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.path.islink(tmp_path / "link")
    with pytest.raises(ValueError, match="path: expected a file name, got an empty path"):
        net.save("")
    assert sorted(os.listdir(tmp_path)) == ["fifo", "link"]


def test_a_directory_that_takes_no_file_names_the_path(tmp_path):
    path = tmp_path / "no" / "model.npz"
    with pytest.raises(FileNotFoundError) as caught:
        Network([Linear(3, 2)], seed=0).save(path)
    assert caught.value.filename == str(path)
    assert f"cannot create a file in {tmp_path / 'no'}" in caught.value.strerror


# -- every write is atomic --------------------------------------------------------------------

WRITE_MODES = set("wax+")
NUMPY_WRITERS = {"save", "savez", "savez_compressed", "savetxt"}  # np.X(file, ...)
FILE_METHODS = {"savefig", "tofile"}  # obj.X(file, ...)
ALWAYS_UNSAFE = {"write_bytes", "write_text"}  # pathlib writes in place
# Network.save is not listed: it calls serialization.save, which is checked like the rest.


def atomic_targets(tree):
    """Names bound by ``with atomic_write(...) as name``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "atomic_write"
                        and isinstance(item.optional_vars, ast.Name)):
                    names.add(item.optional_vars.id)
    return names


def written_file(node):
    """For a call that writes a file: (description, the file argument or None); else None."""
    func = node.func
    name = getattr(func, "id", None) or getattr(func, "attr", None)
    owner = getattr(getattr(func, "value", None), "id", None)
    if name in ("open", "fdopen"):
        mode = node.args[1] if len(node.args) > 1 else next(
            (k.value for k in node.keywords if k.arg == "mode"), None)
        if isinstance(mode, ast.Constant) and WRITE_MODES & set(mode.value):
            return f"{name}(..., {mode.value!r})", None
        return None
    if owner in ("np", "numpy") and name in NUMPY_WRITERS or name in FILE_METHODS:
        return name, node.args[0] if node.args else None
    if owner in ("json", "pickle") and name == "dump":
        return name, node.args[1] if len(node.args) > 1 else None
    if name in ALWAYS_UNSAFE:
        return name, None
    return None


def unsafe_writes(source):
    """(line, what) of each call that writes a file other than through atomic_write."""
    tree = ast.parse(source)
    safe = atomic_targets(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            write = written_file(node)
            if write is not None and not (isinstance(write[1], ast.Name) and write[1].id in safe):
                found.append((node.lineno, write[0]))
    return sorted(found)


def package_modules():
    for root, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py") and name != "_atomic.py":
                yield os.path.join(root, name)


def test_every_file_write_goes_through_atomic_write():
    problems = {}
    for module in package_modules():
        with open(module, encoding="utf-8") as f:
            found = unsafe_writes(f.read())
        if found:
            problems[os.path.relpath(module, REPO_ROOT)] = found
    assert problems == {}


def test_the_write_checker_finds_unsafe_writes():
    source = textwrap.dedent("""
        with open(p, "wb") as f:
            np.savez(f, a=a)
        with atomic_write(p) as g:
            np.savez(g, a=a)
            figure.savefig(g)
            json.dump(obj, g)
        figure.savefig("x.png")
        open(p).read()
        json.dump(obj, open(p, mode="w"))
        pathlib.Path(p).write_text("x")
        network.save(p)
    """)
    assert unsafe_writes(source) == [(2, "open(..., 'wb')"), (3, "savez"), (8, "savefig"),
                                     (10, "dump"), (10, "open(..., 'w')"), (11, "write_text")]
