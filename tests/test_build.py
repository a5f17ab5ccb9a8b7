"""The build: portable default flags, both SIMD paths, and a readable error without the core."""
import os
import shutil
import subprocess
import sys

import pytest

import fastnn
from fastnn._native import core

PACKAGE_DIR = os.path.dirname(fastnn.__file__)


def test_default_build_is_portable():
    flags = core.build_flags()
    if os.environ.get("FASTNN_NATIVE", "") in ("", "0"):
        assert "-march=native" not in flags
    assert "-ffast-math" not in flags


def test_simd_path_is_chosen_at_run_time():
    paths = core.simd_paths_available()
    assert "generic" in paths
    forced = os.environ.get("FASTNN_SIMD", "auto").strip().lower()
    assert core.get_simd_path() == (paths[0] if forced in ("", "auto") else forced)  # else the fastest
    with pytest.raises(ValueError, match="not available"):
        core.set_simd_path("no-such-path")


def _copy_package_without_core(tmp_path, broken=False):
    target = tmp_path / "fastnn"
    shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns("_core*", "__pycache__", "data"))
    if broken:
        (target / "_core.cpython-311-x86_64-linux-gnu.so").write_bytes(b"not an ELF file")
        for suffix in (".so", ".pyd"):
            (target / ("_core" + suffix)).write_bytes(b"not an ELF file")
    return tmp_path


@pytest.mark.parametrize("broken", [False, True])
def test_missing_or_broken_core_gives_a_readable_import_error(tmp_path, broken):
    root = _copy_package_without_core(tmp_path, broken)
    # An editable install maps "fastnn" to its source tree ahead of PYTHONPATH: drop that finder
    # so the copy is the package imported.
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
            "if not getattr(f, '__module__', '').startswith('__editable__')]; "
            "import fastnn; assert fastnn.__file__.startswith(sys.argv[1]), fastnn.__file__; "
            "import fastnn.ops")
    result = subprocess.run([sys.executable, "-c", code, str(root)], cwd=root, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "fastnn._core" in result.stderr and "pip install" in result.stderr
    if not broken:
        assert "has not been built" in result.stderr


def test_import_fastnn_alone_does_not_load_the_core(tmp_path):
    code = "import sys, fastnn; print('fastnn._core' in sys.modules, 'scipy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(PACKAGE_DIR))
    assert result.stdout.split() == ["False", "False"]


def test_source_folder_shadowing_an_installed_fastnn_says_so(tmp_path):
    """`pip install .` then Python in the clone: the unbuilt source folder hides the installed
    package; the error says that and gives the command that fixes it."""
    root = _copy_package_without_core(tmp_path / "clone")
    installed = tmp_path / "site" / "fastnn"
    installed.mkdir(parents=True)
    (installed / "_core.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
            "if not getattr(f, '__module__', '').startswith('__editable__')]; "
            "import fastnn.ops")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert result.returncode != 0
    assert "has not been built" in result.stderr
    assert f"hides the built fastnn installed in {installed}" in result.stderr
    assert "pip install -e ." in result.stderr and "run Python from another folder" in result.stderr
