"""fastnn bench --latency: its contenders agree, its percentiles and targets, its JSON."""
import json
import subprocess
import sys

import numpy as np
import pytest

from fastnn.bench import latency as bench_latency
from fastnn.bench.training import fastnn_network


def test_contenders_agree_with_fastnn():
    funcs = bench_latency.contenders(fastnn_network(0), use_torch=False)
    assert {"fastnn", "numpy"} <= set(funcs)
    x = np.random.default_rng(0).integers(0, 256, (8, 784)).astype(np.float32)
    bench_latency.check_agreement(funcs, x)
    funcs["numpy"] = lambda x: np.full((len(x), 10), 0.1, np.float32)  # a wrong contender
    with pytest.raises(AssertionError, match="numpy disagrees"):
        bench_latency.check_agreement(funcs, x)


def test_percentiles_and_targets():
    values = sorted(i * 1e-6 for i in range(1, 101))
    assert bench_latency.percentile(values, 50) == pytest.approx(50e-6)
    assert bench_latency.percentile(values, 99) == pytest.approx(99e-6)
    rows = [{"rows": 1, "contender": "fastnn", "p50": 10e-6, "p99": 50e-6},
            {"rows": 1, "contender": "onnxruntime", "p50": 12e-6, "p99": 20e-6}]
    assert [t["met"] for t in bench_latency.latency_targets(rows)] == [True, False, True]


def test_measure_times_every_call():
    calls = []
    times = bench_latency.measure({"a": calls.append, "b": lambda x: None}, 1, calls=20, rounds=4)
    assert len(times["a"]) == len(times["b"]) == 20
    assert len(calls) == 20 + bench_latency.WARMUP_CALLS
    assert times["a"] == sorted(times["a"]) and min(times["a"]) > 0


def test_cli_latency_json():
    result = subprocess.run([sys.executable, "-m", "fastnn", "bench", "--latency", "--quick",
                             "--no-torch", "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 0 and report["threads"] == 1
    got = {(r["rows"], r["contender"]) for r in report["latency"]}
    assert {(rows, name) for rows in (1, 8, 256) for name in ("fastnn", "numpy")} <= got
    for r in report["latency"]:
        assert 0 < r["p50"] <= r["p99"]
    assert "p50 / p99" in result.stderr
