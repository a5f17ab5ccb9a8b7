"""Timing: contenders run interleaved with the garbage collector off, medians, how many calls
make one measurement, and the share of the CPUs other processes used meanwhile."""
import contextlib
import gc
import math
import os
import time


class OtherLoad:
    """The share of the machine's CPU time that other processes used since construction:
    (busy time of all CPUs from /proc/stat - this process's own CPU time) / (wall x CPUs).

    A comparison measured while it is more than a few percent is not a clean measurement.
    None where /proc/stat is missing.
    """

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _sample():
        import resource

        try:
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return sum(ticks), ticks[3] + ticks[4], usage.ru_utime + usage.ru_stime

    def share(self):
        end = self._sample()
        if self._start is None or end is None:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        total = (end[0] - self._start[0]) / hz
        busy = total - (end[1] - self._start[1]) / hz
        own = end[2] - self._start[2]
        return max(0.0, (busy - own) / total) if total > 0 else None


@contextlib.contextmanager
def garbage_collector_off():
    """Within the block the garbage collector is off (after one collection) and cannot pause
    a timed call."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def rotated(names, round_index):
    """``names`` in the order of round ``round_index``: shifted by one each round, so no
    contender always runs first (or always right after the same other one)."""
    shift = round_index % len(names)
    return names[shift:] + names[:shift]


def interleaved(contenders, repeats, pause=0.0):
    """Run ``{name: fn(repeat_index)}`` in turn, ``repeats`` times, rotating the order each
    repeat; returns ``{name: [seconds, ...]}``. The garbage collector is off meanwhile.

    ``pause`` (seconds) before each run lets thread pools of the previous contender go idle.
    """
    names = list(contenders)
    times = {name: [] for name in names}
    with garbage_collector_off():
        for r in range(repeats):
            for name in rotated(names, r):
                if pause:
                    time.sleep(pause)
                fn = contenders[name]
                start = time.perf_counter()
                fn(r)
                times[name].append(time.perf_counter() - start)
    return times


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def calls_per_measurement(call, min_seconds):
    """How many back-to-back calls of ``call`` take about ``min_seconds``."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= 0.2 * min_seconds or number >= 1 << 16:
            return max(1, min(1 << 16, math.ceil(number * min_seconds / max(elapsed, 1e-9))))
        number *= 2


def repeat_calls(call, number):
    def run(_repeat):
        for _ in range(number):
            call()
    return run

