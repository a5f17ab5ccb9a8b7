"""Reading a numeric CSV: fastnn.tabular.read_table against pandas' own read_csv.

Writes a CSV of --rows x --cols random numbers (6 significant digits, 1,000,000 x 20 by
default: about 190 MB) in a temporary folder, then times, interleaved, --repeat reads each of

- fastnn.tabular.read_table (pandas with the pyarrow engine, plus fastnn's checks),
- pandas.read_csv with its default engine ("pandas' own read_csv"),
- pandas.read_csv(engine="pyarrow"), for reference,

and prints the best time of each and the ratio fastnn / pandas (the target is at most 1.2).

    python benchmarks/read_table.py
    python benchmarks/read_table.py --rows 200000 --repeat 5

Not a pytest file (pytest collects test_*.py only). Run it on a quiet machine (see `uptime`).
"""
import argparse
import os
import tempfile
import time

import numpy as np

if __name__ == "__main__":  # run from a checkout: use the fastnn beside this folder
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_csv(path, rows, cols, seed=0):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    rng = np.random.default_rng(seed)
    names = [f"f{j}" for j in range(cols)]
    for start in range(0, rows, 250_000):  # a chunk at a time: bounded memory
        block = np.round(rng.standard_normal((min(250_000, rows - start), cols)), 5)
        batch = pa.table({n: block[:, j] for j, n in enumerate(names)})
        options = pacsv.WriteOptions(include_header=start == 0)
        with open(path, "ab") as f:
            pacsv.write_csv(batch, f, write_options=options)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import pandas as pd

    from fastnn.tabular import read_table

    readers = {
        "fastnn read_table": read_table,
        "pandas read_csv": pd.read_csv,
        "pandas read_csv(engine='pyarrow')": lambda p: pd.read_csv(p, engine="pyarrow"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "numbers.csv")
        write_csv(path, args.rows, args.cols)
        print(f"{args.rows:,} x {args.cols} CSV, {os.path.getsize(path) / 1e6:.0f} MB, "
              f"best of {args.repeat}, {os.cpu_count()} CPUs")
        best = {name: float("inf") for name in readers}
        for _ in range(args.repeat):
            for name, read in readers.items():
                t0 = time.perf_counter()
                frame = read(path)
                best[name] = min(best[name], time.perf_counter() - t0)
                assert frame.shape == (args.rows, args.cols), frame.shape
                del frame
    for name, seconds in best.items():
        print(f"{name:<36} {seconds:7.3f} s")
    ratio = best["fastnn read_table"] / best["pandas read_csv"]
    print(f"fastnn / pandas read_csv: {ratio:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
