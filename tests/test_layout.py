"""The command line and the benchmarks as packages: their entry points, their light imports,
and one rule for a reader that leaves early, whatever the command."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn.cli import main

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))


def _python(*args, **kwargs):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV,
                          timeout=120, **kwargs)


@pytest.mark.parametrize("module", ["fastnn", "fastnn.bench"])
def test_the_packages_run_as_modules(module):
    proc = _python("-m", module, "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    assert ("COMMAND" if module == "fastnn" else "--latency") in proc.stdout


def test_the_console_script_is_the_packages_main():
    from importlib.metadata import entry_points
    script = next(ep for ep in entry_points(group="console_scripts") if ep.name == "fastnn")
    assert script.value == "fastnn.cli:main" and script.load() is main


@pytest.mark.parametrize("module", ["fastnn.cli", "fastnn.bench"])
def test_importing_the_command_side_loads_neither_numpy_nor_the_core(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in ('numpy', 'fastnn._core') if m in sys.modules))")
    proc = _python("-c", code)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


@pytest.mark.parametrize("argv", [["--threads"], ["--threads", "2"], ["--hidden", "8", "--threads=1"]])
def test_sweep_threads_says_that_the_sweep_sets_them(capsys, argv):
    assert main(["sweep", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized" not in err
    assert "--threads: fastnn sweep gives each trial cores // --jobs threads itself" in err


def test_predict_goes_on_when_its_reader_leaves_early(tmp_path):
    # fastnn predict ... | head -1: like train and sweep, predict ends normally (status 0) and
    # says nothing of the broken pipe.
    model, data = tmp_path / "m.npz", tmp_path / "x.npz"
    fastnn.Network([fastnn.Linear(4, 3)], seed=0).save(model)
    rng = np.random.default_rng(0)
    np.savez(data, X=rng.standard_normal((20000, 4)))  # ~1.5 MB of CSV: more than a pipe holds
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "predict", str(model), "--data",
                             str(data), "--proba"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    first = proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert first == b"prediction,proba_0,proba_1,proba_2\n"
    assert proc.stderr.read() == b""
    proc.stderr.close()


def test_every_subpackage_is_in_the_distribution():
    # pyproject.toml lists the packages a wheel holds: a subpackage missing there would work in
    # an editable install and be absent from `pip install .`.
    import tomllib
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    package_dir = os.path.join(REPO_ROOT, "fastnn")
    found = {"fastnn." + os.path.relpath(root, package_dir).replace(os.sep, ".")
             if root != package_dir else "fastnn"
             for root, _, files in os.walk(package_dir) if "__init__.py" in files}
    assert found <= listed, sorted(found - listed)
