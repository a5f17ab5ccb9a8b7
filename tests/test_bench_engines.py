"""fastnn bench --engines: every case trains compiled, the report marks missed targets, and its
rows name the thread count used."""
import numpy as np
import pytest

import fastnn
from fastnn._fastpath import unsupported_reason
from fastnn.bench import engines


def _mnist_like(n=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n)


@pytest.mark.parametrize("name", engines.CASES)
def test_every_case_trains_on_the_compiled_engine(name):
    x, y = _mnist_like()
    layers, loss, targets, weights = engines._case(name, x, y)
    net = fastnn.Network(layers, loss=loss, input_scale=1 / 255, seed=0)
    assert unsupported_reason(net, fastnn.SGD(lr=0.01, momentum=0.9), weights) is None
    assert engines.epoch_seconds(name, x, y) > 0


def test_the_report_marks_ratios_above_the_target():
    rows = [{"threads": "1", "case": name, "seconds": 0.1 * (1.3 if name == "gelu" else 1.0),
             "ratio": 1.3 if name == "gelu" else 1.0} for name in engines.CASES]
    targets = [{"met": r["ratio"] <= engines.TARGET} for r in rows if r["case"] != "softmax"]
    report = engines.format_engines({"engines": rows, "targets": targets, "rows": 256,
                                     "batch_size": 32, "repeats": 1})
    gelu_line = next(line for line in report.splitlines() if line.startswith("GELU"))
    assert gelu_line.endswith("1.30x !")
    assert "targets met: 6 of 7" in report


def test_rows_are_labelled_with_the_thread_count_used(cli_on_one_cpu):
    report = cli_on_one_cpu("bench", "--engines", "--quick", "--threads", "1", "2", "--repeats", "1",
                            "--json").json
    assert list(report["blas"]) == ["default (1, adaptive)", "1 (set_num_threads)"]
    assert {row["threads"] for row in report["engines"]} == set(report["blas"])
