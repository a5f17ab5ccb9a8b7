"""What ``fastnn bench`` prints: progress lines, the targets met or missed, and the report."""
import json
import math
import sys
import time

from .training import HIDDEN_ACTIVATION, LEARNING_RATE, MNIST_DIMS, MOMENTUM

# Kernel targets: minimum reference/fastnn time ratio at 1 thread (None: measured, no target).
# Epoch targets at 2 threads: (batch size, contender, bound); "matmul-only" bounds
# fastnn/matmul-only from above, the others bound contender/fastnn from below.
EPOCH_TARGETS = (
    (16, "torch", 4.0),
    (32, "torch", 3.5), (32, "reference", 1.7),
    (128, "torch", 2.5), (128, "reference", 1.7), (128, "matmul-only", 1.2),
)
TARGET_THREADS_KERNELS = 1
TARGET_THREADS_EPOCHS = 2


def progress(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def print_result(args, report, result, status):
    """Print ``report`` (stdout; stderr under --json, then ``result`` with its ``status`` as one
    JSON object on the last line of stdout); returns ``status``."""
    if args.json:
        print(report, file=sys.stderr)
        result["status"] = status
        print(json.dumps(result, default=_json_default))
    else:
        print(report)
    return status


def _json_default(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def fmt_time(seconds):
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def fmt_share(x):
    return "-" if x is None else f"{100 * x:.0f}%"


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def epoch_ratios(seconds):
    fast = seconds["fastnn"]
    return {
        "reference_over_fastnn": seconds["reference"] / fast if "reference" in seconds else None,
        "torch_over_fastnn": seconds["torch"] / fast if "torch" in seconds else None,
        "fastnn_over_matmul": fast / seconds["matmul-only"] if "matmul-only" in seconds else None,
    }


def evaluate_targets(kernels, epochs):
    """[{"what", "threads", "target", "measured", "met"}] for every target that was measured."""
    out = []
    for row in kernels:
        if row["target"] is not None and row["threads"] == TARGET_THREADS_KERNELS:
            out.append({"what": f"kernel {row['op']} {row['shape']}: reference/fastnn",
                        "threads": row["threads"], "target": f">= {row['target']}x",
                        "measured": row["ratio"], "met": row["ratio"] >= row["target"],
                        "ceiling": row.get("ceiling"), "target_ratio": row["target"]})
    for batch, who, bound in EPOCH_TARGETS:
        row = next((r for r in epochs if r["batch_size"] == batch
                    and r["threads"] == TARGET_THREADS_EPOCHS), None)
        if row is None:
            continue
        if who == "matmul-only":
            value = row["ratios"]["fastnn_over_matmul"]
            what, target, met = "fastnn/matmul-only", f"<= {bound}x", value is not None and value <= bound
        else:
            value = row["ratios"][f"{who}_over_fastnn"]
            what, target, met = f"{who}/fastnn", f">= {bound}x", value is not None and value >= bound
        if value is not None:
            out.append({"what": f"epoch batch {batch}: {what}", "threads": TARGET_THREADS_EPOCHS,
                        "target": target, "measured": value, "met": met})
    return out


def format_report(result):
    """The human-readable report (a str) of a run's result dict."""
    m, v = result["machine"], result["versions"]
    lines = [f"fastnn bench{' --quick' if result['quick'] else ''}  "
             f"({time.strftime('%Y-%m-%d %H:%M', time.localtime(result['started']))})",
             f"machine: {m['cpu']} ({', '.join(m['vector_extensions']) or 'no vector extensions found'}), "
             f"{m['cores']} cores, {m['memory_gib']} GiB, SIMD path {m['simd_path']}, products "
             f"{m['gemm_strategy']}, OpenMP {'on' if m['openmp'] else 'off'}, load average at start "
             f"{m['load_average']}",
             "versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None)
             + ("" if v["torch"] else " (torch not installed: its column is empty)")]
    for threads, info in result["blas"].items():
        lines.append(f"threads {threads}: fastnn kernels {info['fastnn_kernel_threads']}; "
                     f"{info['note']}")
        for b in info["blas"]:
            ver = f" {b['version']}" if b["version"] else ""
            arch = f" {b['architecture']}" if b["architecture"] else ""
            lines.append(f"  BLAS for {b['side']}: {b['library']}{ver}{arch}, {b['threads']} thread(s)"
                         + (f"  [{b['path']}]" if b["path"] else ""))
    if result["kernels"]:
        lines += ["", "Kernels, float32: median time per call (out= buffers on both sides); "
                      "ratio = reference / fastnn",
                  "ceiling = reference / its matrix products alone (np.matmul): the largest ratio "
                  "reachable with products that fast"]
        header = (f"{'op':<24} {'shape':<17} {'thr':>3} {'fastnn':>10} {'reference':>10} {'ratio':>8} "
                  f"{'ceiling':>8} {'other':>5}  target")
        lines += [header, "-" * len(header)]
        for r in result["kernels"]:
            target = "" if r["target"] is None else (
                f">= {r['target']}x" + ("" if r["threads"] == TARGET_THREADS_KERNELS else " (at 1 thr)"))
            lines.append(f"{r['op']:<24} {r['shape']:<17} {r['threads']:>3} {fmt_time(r['fastnn']):>10} "
                         f"{fmt_time(r['reference']):>10} {fmt_ratio(r['ratio']):>8} "
                         f"{fmt_ratio(r.get('ceiling')):>8} {fmt_share(r['other_load']):>5}  {target}")
    if result["epochs"]:
        dims = "-".join(map(str, MNIST_DIMS))
        lines += ["", f"Epochs: MNIST {dims} ({HIDDEN_ACTIVATION}, softmax-CE, SGD lr {LEARNING_RATE} "
                      f"momentum {MOMENTUM}, float32, 60000 rows, full epochs); median wall time",
                  "ref/fn = reference / fastnn, torch/fn = torch / fastnn, fn/mm = fastnn / matmul-only"]
        header = (f"{'batch':>5} {'thr':>3} {'steps':>5} {'fastnn':>10} {'reference':>10} {'torch':>10} "
                  f"{'matmul-only':>11} {'ref/fn':>7} {'torch/fn':>8} {'fn/mm':>6} {'other':>5}  "
                  "last loss fastnn/ref/torch")
        lines += [header, "-" * len(header)]
        for r in result["epochs"]:
            s, q, loss = r["seconds"], r["ratios"], r["loss"]
            losses = "/".join(f"{loss[k]:.4f}" if k in loss else "-" for k in ("fastnn", "reference", "torch"))
            lines.append(f"{r['batch_size']:>5} {r['threads']:>3} {r['steps']:>5} "
                         f"{fmt_time(s.get('fastnn')):>10} {fmt_time(s.get('reference')):>10} "
                         f"{fmt_time(s.get('torch')):>10} {fmt_time(s.get('matmul-only')):>11} "
                         f"{fmt_ratio(q['reference_over_fastnn']):>7} {fmt_ratio(q['torch_over_fastnn']):>8} "
                         f"{fmt_ratio(q['fastnn_over_matmul']):>6} {fmt_share(r['other_load']):>5}  {losses}")
    if result["targets"]:
        lines += ["", "Targets (kernels at 1 thread, epochs at 2 threads):"]
        for t in result["targets"]:
            verdict = "met" if t["met"] else "MISSED"
            ceiling = t.get("ceiling")
            if not t["met"] and ceiling is not None and ceiling < t["target_ratio"]:
                verdict += f" (out of reach: ceiling {ceiling:.2f}x)"
            lines.append(f"  {t['what']:<58} {t['target']:>8}  measured {t['measured']:.2f}x  {verdict}")
    lines.append(f"\n'other': share of the CPUs that other processes used during that comparison "
                 f"(over a few % means the row is not clean). Whole run: "
                 f"{fmt_share(result['other_load'])} other load, {result['seconds']:.1f} s.")
    return "\n".join(lines)

