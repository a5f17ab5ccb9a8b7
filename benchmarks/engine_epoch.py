"""Epoch time of the compiled engine for each kind of network it trains, as a ratio to the plain
softmax cross-entropy epoch: the same as ``fastnn bench --engines`` (fastnn/bench/engines.py
says what is measured).

    python benchmarks/engine_epoch.py --repeats 5

Not a pytest file. Run it on a quiet machine.
"""
import sys

from fastnn.bench import main

if __name__ == "__main__":
    sys.exit(main(["--engines", *sys.argv[1:]]))
