"""Wall time of a 4-trial `fastnn sweep` with --jobs 2 against --jobs 1 (target: at most 0.6x).

Each run is a fresh `python -m fastnn sweep` process timed start to exit, so the worker start-up
of --jobs 2 is counted. The two settings alternate, --repeats times each; the best of each is
compared, and the trials' results must be the same in both (they do not depend on where or on
how many threads a trial ran).

    python benchmarks/sweep_jobs.py                   # 784-{64,128}-10, lr {0.05, 0.1}, 3 epochs
    python benchmarks/sweep_jobs.py --epochs 5 --repeats 3

Not a pytest file (pytest collects test_*.py only). Run it on a quiet machine (see `uptime`).
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sweep(args, jobs):
    """(seconds, {trial id: (test accuracy, test loss)}) of one sweep process."""
    argv = [sys.executable, "-m", "fastnn", "sweep", "--hidden", "64", "128", "--lr", "0.05",
            "0.1", "--epochs", str(args.epochs), "--limit", str(args.limit),
            "--jobs", str(jobs), "--json", "--quiet"]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    seconds = time.perf_counter() - started
    trials = json.loads(done.stdout.strip().splitlines()[-1])["trials"]
    return seconds, {t["id"]: (t["test_accuracy"], t["test_loss"]) for t in trials}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=60000, help="training images per trial")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    best, results = {1: float("inf"), 2: float("inf")}, {}
    for repeat in range(args.repeats):
        for jobs in (1, 2):
            seconds, results[jobs] = _sweep(args, jobs)
            best[jobs] = min(best[jobs], seconds)
            print(f"repeat {repeat + 1}: --jobs {jobs}: {seconds:.2f} s", flush=True)
    print(f"4 trials (784-64/128-10, {args.epochs} epochs on {args.limit} images), best of "
          f"{args.repeats}: --jobs 1 {best[1]:.2f} s, --jobs 2 {best[2]:.2f} s, "
          f"ratio {best[2] / best[1]:.2f} (target <= 0.6); same results: {results[1] == results[2]}")


if __name__ == "__main__":
    main()
