"""``fastnn bench`` (and ``python -m fastnn.bench``): its options and its run."""
import argparse
import sys
import time

from .._argtypes import non_negative_int, positive_int, share
from .kernels import kernel_cases, measure_kernel
from .machine import blas_in_use, machine_info, set_threads, torch_available, versions
from .report import epoch_ratios, evaluate_targets, format_report, print_result, progress
from .timing import OtherLoad
from .training import (BATCH_SIZES, QUICK_BATCH_SIZES, DisagreementError, measure_epochs,
                       training_setup)

# With more than one thread, each run waits this long first: OpenBLAS workers spin for about
# 2^28 cycles (~0.1 s) after a call before they sleep, libgomp's for a few ms, and a spinning
# pool of one contender would otherwise take a core from the next one.
POOL_IDLE_PAUSE = 0.15


def add_arguments(parser):
    """Add the options of ``fastnn bench`` to an argparse parser."""
    parser.description = (
        "Time fastnn's kernels against their NumPy twins and one MNIST 784-128-10 training epoch "
        "against the NumPy reference network, PyTorch (if installed) and the matrix products "
        "alone; contenders run interleaved in one process; medians and ratios are printed.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, only the kernels with a target, batch sizes 32 and "
                             "128 only (still full epochs), 2 threads only unless --threads is "
                             "given, no re-measuring: under a minute")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object on the last line of stdout "
                             "(the table goes to stderr)")
    parser.add_argument("--threads", type=positive_int, nargs="+", metavar="N",
                        help="thread counts to measure (default: 1 2; with --quick: 2)")
    parser.add_argument("--batch-sizes", type=positive_int, nargs="+", metavar="B",
                        help=f"epoch batch sizes (default: {' '.join(map(str, BATCH_SIZES))}; "
                             f"with --quick: {' '.join(map(str, QUICK_BATCH_SIZES))})")
    parser.add_argument("--repeats", type=positive_int, metavar="R",
                        help="timed repeats per comparison (default: kernels 11 and epochs 5; "
                             "with --quick: 5 and 3)")
    parser.add_argument("--retries", type=non_negative_int, metavar="N",
                        help="measure a comparison again, up to N times, while other processes "
                             "use more than --max-other-load of the CPUs (default: 2; --quick: 0)")
    parser.add_argument("--max-other-load", type=share, default=0.05, metavar="SHARE",
                        help="share of the CPUs other processes may use during a comparison "
                             "before it is measured again (default: 0.05)")
    parser.add_argument("--only", choices=("kernels", "epochs"),
                        help="run only the kernel or only the epoch comparisons")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    parser.add_argument("--latency", action="store_true",
                        help="time one predict_proba call instead: p50 and p99 for 1, 8 and 256 "
                             "rows of 784-128-10 at 1 thread, against a NumPy forward pass, "
                             "PyTorch and ONNX Runtime when installed (--quick: fewer calls)")
    parser.add_argument("--engines", action="store_true",
                        help="time the compiled engine's epoch for each kind of network it trains "
                             "(Dropout, MSE, binary and multi-label cross-entropy, sample weights, "
                             "LeakyReLU, GELU) against the plain softmax epoch, at the default "
                             "thread count and at 1 thread (or --threads)")
    return parser


def _cleanest(measure, retries, max_other_load):
    """``measure()``, measured again up to ``retries`` times while other processes used more
    than ``max_other_load`` of the CPUs; keeps the attempt with the least other load."""
    best = measure()
    attempts = 1
    while attempts <= retries and (best["other_load"] or 0.0) > max_other_load:
        progress(f"other processes used {100 * best['other_load']:.0f}% of the CPUs meanwhile: "
                  "measuring again")
        again = measure()
        attempts += 1
        if (again["other_load"] or 0.0) < best["other_load"]:
            best = again
    best["attempts"] = attempts
    return best


def run(args):
    """Run ``fastnn bench`` with parsed arguments; returns the exit status (0, or 1 when a
    contender disagrees with the reference)."""
    if getattr(args, "latency", False):
        from .latency import run_latency
        return run_latency(args)
    if getattr(args, "engines", False):
        from .engines import run_engines
        return run_engines(args)
    started = time.time()
    t0 = time.perf_counter()
    run_load = OtherLoad()
    quick = args.quick
    threads = args.threads or ([2] if quick else [1, 2])
    batch_sizes = args.batch_sizes or (QUICK_BATCH_SIZES if quick else BATCH_SIZES)
    kernel_repeats = args.repeats or (5 if quick else 11)
    epoch_repeats = args.repeats or (3 if quick else 5)
    min_seconds = 0.005 if quick else 0.02
    retries = args.retries if args.retries is not None else (0 if quick else 2)
    use_torch = not args.no_torch and torch_available() and args.only != "kernels"
    if use_torch:
        import torch  # noqa: F401  (imported before the threads are pinned, so they cover it)

    result = {"quick": quick, "started": started, "machine": machine_info(), "versions": versions(),
              "blas": {}, "kernels": [], "epochs": [], "targets": []}
    if result["machine"]["load_average"] and result["machine"]["load_average"][0] > 0.5:
        progress(f"warning: load average {result['machine']['load_average'][0]} at start: "
                  "other processes compete for the cores and the timings suffer")
    status = 0
    setup = None
    names = ["fastnn", "reference"] + (["torch"] if use_torch else []) + ["matmul-only"]
    try:
        for requested in threads:
            n = set_threads(requested)  # capped at the cores this process may use
            if n in result["blas"]:
                progress(f"{requested} thread(s): {n} already measured")
                continue
            pause = POOL_IDLE_PAUSE if n > 1 else 0.0
            result["blas"][n] = blas_in_use()
            if args.only != "epochs":
                for case in kernel_cases(with_target_only=quick):
                    progress(f"kernel {case.name}, {n} thread(s)")
                    r = _cleanest(lambda: measure_kernel(case, kernel_repeats, min_seconds, pause),
                                  retries, args.max_other_load)
                    result["kernels"].append({"op": case.op, "shape": case.shape, "threads": n,
                                              "target": case.target, **r})
            if args.only != "kernels":
                setup = setup or training_setup()
                for batch in batch_sizes:
                    progress(f"epochs at batch {batch}, {n} thread(s): {', '.join(names)}")
                    r = _cleanest(lambda: measure_epochs(setup, batch, names, epoch_repeats, pause),
                                  retries, args.max_other_load)
                    r["ratios"] = epoch_ratios(r["seconds"])
                    result["epochs"].append({"batch_size": batch, "threads": n, **r})
    except (DisagreementError, AssertionError) as exc:
        print(f"fastnn bench: a contender disagrees with the reference: {exc}", file=sys.stderr)
        status = 1
    result["targets"] = evaluate_targets(result["kernels"], result["epochs"])
    result["seconds"] = time.perf_counter() - t0
    result["other_load"] = run_load.share()
    return print_result(args, format_report(result), result, status)


def main(argv=None):
    """``python -m fastnn.bench [options]``: parse ``argv`` and run; returns the exit status."""
    parser = add_arguments(argparse.ArgumentParser(prog="fastnn bench"))
    return run(parser.parse_args(argv))
