"""``fastnn bench --latency``: the time of one inference call on a few rows, fastnn against a
NumPy forward pass, PyTorch and ONNX Runtime (each when importable), on one thread.

The model is the MNIST 784-128-10 sigmoid network of :mod:`fastnn.bench.training` (input_scale 1/255);
each contender gets the same float32 rows (test images, pixels 0..255) and returns the softmax
probabilities, which are first checked against fastnn's. Every call is timed on its own; the
contenders run interleaved (a round of calls each, the order rotated every round) with the
garbage collector off, and p50/p99 of all calls are reported.
"""
import sys
import time

from .machine import machine_info, set_threads, torch_available, versions
from .report import fmt_time, print_result, progress
from .timing import OtherLoad, garbage_collector_off, rotated
from .training import INIT_SEED, MNIST_DIMS, fastnn_network

ROWS = (1, 8, 256)
# One-row predict_proba at 1 thread: p50 and p99 bounds (seconds), and no slower than ORT's p50.
TARGET_P50 = 15e-6
TARGET_P99 = 40e-6
AGREEMENT_RTOL, AGREEMENT_ATOL = 1e-4, 1e-6
WARMUP_CALLS = 100


def onnxruntime_available():
    import importlib.util

    return (importlib.util.find_spec("onnxruntime") is not None
            and importlib.util.find_spec("onnx") is not None)


def contenders(net, use_torch=True, use_onnxruntime=True):
    """{name: f(x) -> probabilities (N, 10)} for fastnn, NumPy, PyTorch and ONNX Runtime."""
    out = {"fastnn": net.predict_proba, "numpy": _numpy_forward(net)}
    if use_torch and torch_available():
        out["torch"] = _torch_forward(net)
    if use_onnxruntime and onnxruntime_available():
        out["onnxruntime"] = _onnxruntime_forward(net)
    return out


def _numpy_forward(net):
    import numpy as np

    params = [p.copy() for p in net.parameters()]
    scale = np.float32(net.input_scale)

    def forward(x):
        a = x * scale
        for i in range(0, len(params), 2):
            a = a @ params[i]
            a += params[i + 1]
            if i + 2 < len(params):
                np.negative(a, out=a)
                np.exp(a, out=a)
                a += 1
                np.reciprocal(a, out=a)
        a -= a.max(axis=1, keepdims=True)
        np.exp(a, out=a)
        a /= a.sum(axis=1, keepdims=True)
        return a
    return forward


def _torch_forward(net):
    import torch

    torch.set_num_threads(1)
    params = net.parameters()
    layers = []
    for i in range(0, len(params), 2):
        linear = torch.nn.Linear(*params[i].shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(params[i].T.copy()))
            linear.bias.copy_(torch.from_numpy(params[i + 1].copy()))
        layers.append(linear)
        if i + 2 < len(params):
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers).eval()
    scale = float(net.input_scale)

    def forward(x):
        with torch.inference_mode():
            return torch.softmax(model(torch.from_numpy(x) * scale), dim=1).numpy()
    return forward


def _onnxruntime_forward(net):
    import onnxruntime as ort

    from ..export_onnx import to_onnx_model

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(to_onnx_model(net).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    run = session.run

    def forward(x):
        return run(["probabilities"], {"input": x})[0]
    return forward


def check_agreement(funcs, x):
    """Raise AssertionError naming a contender whose probabilities differ from fastnn's."""
    import numpy as np

    expected = funcs["fastnn"](x)
    for name, f in funcs.items():
        got = np.asarray(f(x))
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=AGREEMENT_RTOL,
                                                          atol=AGREEMENT_ATOL):
            raise AssertionError(f"{name} disagrees with fastnn on {len(x)} row(s)")


def measure(funcs, x, calls, rounds):
    """{name: sorted per-call seconds} over ``calls`` timed calls each, in ``rounds`` rounds."""
    per_round = max(1, calls // rounds)
    names = list(funcs)
    times = {name: [] for name in names}
    for f in funcs.values():
        for _ in range(WARMUP_CALLS):
            f(x)
    clock = time.perf_counter_ns
    with garbage_collector_off():
        for r in range(rounds):
            for name in rotated(names, r):
                f, record = funcs[name], times[name].append
                for _ in range(per_round):
                    start = clock()
                    f(x)
                    record(clock() - start)
    return {name: sorted(t * 1e-9 for t in values) for name, values in times.items()}


def percentile(sorted_values, q):
    """The q-th percentile (0..100) of sorted values, nearest rank."""
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def run_latency(args):
    """Measure, print the table (or JSON); returns the exit status (1 on a disagreement)."""
    import numpy as np

    from ..datasets import load_mnist

    started, t0, load = time.time(), time.perf_counter(), OtherLoad()
    set_threads(1)
    net = fastnn_network(INIT_SEED)
    _, (x_test, _) = load_mnist()
    funcs = contenders(net, use_torch=not args.no_torch)
    calls = 600 if args.quick else 3000
    result = {"latency": [], "targets": [], "started": started, "machine": machine_info(),
              "versions": {**versions(), "onnxruntime": _version("onnxruntime")}, "threads": 1,
              "dims": list(MNIST_DIMS), "quick": bool(args.quick)}
    status = 0
    for rows in ROWS:
        x = np.ascontiguousarray(x_test[:rows], dtype=np.float32)
        try:
            check_agreement(funcs, x)
        except AssertionError as exc:
            print(f"fastnn bench: {exc}", file=sys.stderr)
            status = 1
            break
        n = calls if rows < 100 else calls // 10
        progress(f"latency, {rows} row(s): {', '.join(funcs)} ({n} calls each)")
        for name, values in measure(funcs, x, n, rounds=10).items():
            result["latency"].append({"rows": rows, "contender": name, "calls": len(values),
                                      "p50": percentile(values, 50), "p99": percentile(values, 99)})
    result["targets"] = latency_targets(result["latency"])
    result["seconds"] = time.perf_counter() - t0
    result["other_load"] = load.share()
    return print_result(args, format_latency(result), result, status)


def _version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def latency_targets(rows):
    one = {r["contender"]: r for r in rows if r["rows"] == 1}
    if "fastnn" not in one:
        return []
    fast = one["fastnn"]
    out = [{"what": "1 row, fastnn p50", "target": f"<= {fmt_time(TARGET_P50)}",
            "measured": fast["p50"], "met": fast["p50"] <= TARGET_P50},
           {"what": "1 row, fastnn p99", "target": f"<= {fmt_time(TARGET_P99)}",
            "measured": fast["p99"], "met": fast["p99"] <= TARGET_P99}]
    if "onnxruntime" in one:
        ort_p50 = one["onnxruntime"]["p50"]
        out.append({"what": "1 row, fastnn p50 vs onnxruntime p50",
                    "target": f"<= {fmt_time(ort_p50)}", "measured": fast["p50"],
                    "met": fast["p50"] <= ort_p50})
    return out


def format_latency(result):
    m = result["machine"]
    names = list(dict.fromkeys(r["contender"] for r in result["latency"]))
    lines = [f"fastnn bench --latency  ({time.strftime('%Y-%m-%d %H:%M', time.localtime(result['started']))})",
             f"machine: {m['cpu']}, {m['cores']} cores, SIMD path {m['simd_path']}, load average "
             f"at start {m['load_average']}",
             "versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v),
             f"predict_proba of MNIST {'-'.join(map(str, result['dims']))} (sigmoid, float32), "
             "1 thread, each call timed alone: p50 / p99"]
    header = f"{'rows':>5} " + " ".join(f"{name:>23}" for name in names)
    lines += [header, "-" * len(header)]
    for rows in ROWS:
        cells = []
        for name in names:
            r = next((r for r in result["latency"] if r["rows"] == rows and r["contender"] == name), None)
            cells.append("-" if r is None else f"{fmt_time(r['p50'])} / {fmt_time(r['p99'])}")
        if any(c != "-" for c in cells):
            lines.append(f"{rows:>5} " + " ".join(f"{c:>23}" for c in cells))
    if result["targets"]:
        lines += ["", "Targets:"]
        for t in result["targets"]:
            lines.append(f"  {t['what']:<40} {t['target']:>12}  measured {fmt_time(t['measured'])}  "
                         f"{'met' if t['met'] else 'MISSED'}")
    share = result["other_load"]
    lines.append(f"\nOther processes used {'-' if share is None else f'{100 * share:.0f}%'} of the "
                 f"CPUs meanwhile; {result['seconds']:.1f} s.")
    return "\n".join(lines)
