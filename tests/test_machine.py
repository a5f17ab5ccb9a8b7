"""What the core chooses from the machine: the product strategy from the BLAS core, the SIMD
path, and the environment switches that override both (fastnn/_machine.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _machine


def _openblas(core, directory="scipy.libs"):
    return {"user_api": "blas", "internal_api": "openblas", "architecture": core,
            "filepath": f"/site-packages/{directory}/libscipy_openblas.so"}


@pytest.mark.parametrize("core, strategy", [
    ("SkylakeX", "tiled"), ("Cooperlake", "tiled"), ("SapphireRapids", "tiled"),
    ("Haswell", "blocked"), ("Zen", "blocked"), ("", "blocked")])
def test_strategy_follows_the_blas_core(core, strategy):
    assert _machine.gemm_strategy_for([_openblas(core)], simd_path="avx2_fma") == strategy


@pytest.mark.parametrize("core", ["SkylakeX", "Haswell", "Sandybridge", "neoversen1", "armv8"])
def test_the_generic_path_makes_one_blas_call_per_product(core):
    # FASTNN_SIMD=generic, CPUs without AVX2, ARM: fastnn's own products there are slower than
    # BLAS, whatever OpenBLAS kernels run
    assert _machine.gemm_strategy_for([_openblas(core)], simd_path="generic") == "plain"


def test_strategy_reads_the_blas_fastnn_calls():
    numpy_skylake, scipy_haswell = _openblas("SkylakeX", "numpy.libs"), _openblas("Haswell")
    avx2 = dict(simd_path="avx2_fma")
    assert _machine.gemm_strategy_for([numpy_skylake, scipy_haswell], blas="scipy", **avx2) == "blocked"
    assert _machine.gemm_strategy_for([numpy_skylake, scipy_haswell], blas="numpy", **avx2) == "tiled"
    assert _machine.gemm_strategy_for([_openblas("SkylakeX"), _openblas("Haswell", "numpy.libs")],
                                      blas="scipy", **avx2) == "tiled"


def test_other_blas_libraries_make_one_call_per_larger_product():
    mkl = {"user_api": "blas", "internal_api": "mkl", "architecture": "SkylakeX",
           "filepath": "/site-packages/scipy.libs/libmkl_rt.so"}
    assert _machine.gemm_strategy_for([mkl], simd_path="avx2_fma") == "direct"
    assert _machine.gemm_strategy_for([], simd_path="avx2_fma") == "direct"


def test_this_process_chose_from_its_own_blas():
    from fastnn._native import core

    strategy, source = _machine.gemm_strategy()
    if os.environ.get("FASTNN_GEMM", "auto") in ("", "auto"):
        assert strategy == _machine.gemm_strategy_for(_machine.blas_libraries(), simd_path=core.get_simd_path())
        assert source.startswith("auto")
    else:
        assert strategy == os.environ["FASTNN_GEMM"]


TRAIN_AND_REPORT = """
import json, numpy as np, fastnn
from fastnn import _machine
from fastnn._native import core
rng = np.random.default_rng(0)
X = rng.integers(0, 256, (160, 784), dtype=np.uint8)
y = rng.integers(0, 10, 160)
fastnn.set_num_threads(1)
net = fastnn.Network([fastnn.Linear(784, 128), fastnn.Sigmoid(), fastnn.Linear(128, 10)],
                     input_scale=1 / 255, seed=0)
net.fit(X, y, epochs=1, batch_size=32, optimizer=fastnn.SGD(lr=0.1, momentum=0.9), seed=0, progress=False)
# a small regressor, whose products (200x8 @ 8x16, one output column) fastnn computes directly
Xr = rng.normal(size=(600, 8))
reg = fastnn.Network([fastnn.Linear(8, 16), fastnn.ReLU(), fastnn.Linear(16, 1)], loss=fastnn.MSE(),
                     dtype="float64", seed=0)
reg.fit(Xr, np.sin(Xr[:, :1]) + Xr[:, 1:2] * Xr[:, 2:3], epochs=2, batch_size=200, optimizer="adam", seed=0,
        progress=False)
params = net.parameters() + reg.parameters()
print(json.dumps({"gemm": _machine.gemm_strategy(), "simd": core.get_simd_path(), "blas": _machine.blas_choice(),
                  "digest": [float(np.float64(p).sum()) for p in params],
                  "bytes": [p.tobytes().hex()[:64] + str(hash(p.tobytes())) for p in params]}))
"""


def _run(env):
    proc = subprocess.run([sys.executable, "-c", TRAIN_AND_REPORT], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("strategy", ["tiled", "blocked", "direct", "plain"])
def test_each_forced_strategy_repeats_bit_for_bit_across_processes(strategy):
    env = {"FASTNN_GEMM": strategy, "PYTHONHASHSEED": "0"}
    first, second = _run(env), _run(env)
    assert first["gemm"] == [strategy, "FASTNN_GEMM"]
    assert first["bytes"] == second["bytes"]


def test_the_strategies_train_to_the_same_weights_within_rounding():
    plain = _run({"FASTNN_GEMM": "plain"})["digest"]
    for strategy in ("tiled", "blocked", "direct"):
        np.testing.assert_allclose(_run({"FASTNN_GEMM": strategy})["digest"], plain, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("blas", ["numpy", "scipy"])
def test_each_blas_repeats_bit_for_bit_and_trains_to_the_same_weights(blas):
    if blas == "numpy" and _machine.numpy_openblas_gemm(_machine.blas_libraries()) is None:
        pytest.skip("this numpy does not ship OpenBLAS")
    env = {"FASTNN_BLAS": blas, "PYTHONHASHSEED": "0"}
    first, second = _run(env), _run(env)
    assert first["blas"] == [blas, "FASTNN_BLAS"]
    assert first["bytes"] == second["bytes"]
    if blas == "numpy":
        scipys = _run({"FASTNN_BLAS": "scipy"})
        np.testing.assert_allclose(first["digest"], scipys["digest"], rtol=1e-4, atol=1e-3)


def test_the_blas_can_be_switched_in_a_process():
    from fastnn._native import core

    libraries = _machine.blas_libraries()
    before = _machine.blas_choice()[0]
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(37, 53)), rng.normal(size=(53, 29))
    try:
        for name in ("scipy", "numpy"):
            used = _machine.set_blas(core, name, libraries)
            assert used == name or (name == "numpy" and _machine.numpy_openblas_gemm(libraries) is None)
            assert core.blas64_enabled() == (used == "numpy")
            assert _machine.blas_called(libraries)[0]["filepath"].split("/")[-2].startswith(used)
            y = fastnn.ops.linear_forward(a, b, None)  # 37x53x29: a BLAS product on every path
            np.testing.assert_allclose(y, a @ b, rtol=1e-12, atol=1e-12)
    finally:
        _machine.set_blas(core, before, libraries)


def test_other_numpy_blas_libraries_leave_scipys():
    mkl = {"user_api": "blas", "internal_api": "mkl", "filepath": "/site-packages/numpy.libs/libmkl_rt.so"}
    assert _machine.numpy_openblas_gemm([mkl]) is None
    assert _machine.numpy_openblas_gemm([]) is None


def test_generic_simd_path_is_forced_by_the_environment():
    assert _run({"FASTNN_SIMD": "generic"})["simd"] == "generic"


@pytest.mark.parametrize("name, value", [("FASTNN_GEMM", "fast"), ("FASTNN_SIMD", "avx9000"),
                                         ("FASTNN_BLAS", "mkl")])
def test_unknown_switch_values_are_refused_naming_the_variable(name, value):
    proc = subprocess.run([sys.executable, "-m", "fastnn", "info"], capture_output=True, text=True,
                          env={**os.environ, name: value}, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: error:")
    assert name in lines[0] and value in lines[0]


def test_info_names_the_cpu_its_vector_extensions_and_the_strategy():
    from fastnn._config import config

    cfg = config()
    assert cfg["cpu"]
    assert cfg["gemm_strategy"] in ("tiled", "blocked", "direct", "plain")
    if os.path.exists("/proc/cpuinfo") and _machine.cpu_model() and "x86" in os.uname().machine:
        flags = open("/proc/cpuinfo").read()
        assert ("avx2" in cfg["vector_extensions"]) == (" avx2" in flags)
    for lib in cfg["blas_called"]:
        assert "architecture" in lib
