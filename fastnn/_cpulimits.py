"""How many threads fastnn may use, and what decided it. Standard library only.

The default thread count honours, first to last: ``FASTNN_NUM_THREADS``, ``OMP_NUM_THREADS``
(its first value; OpenMP allows a comma list for nested levels), then the cores the process may
use: its CPU affinity (``taskset``, Slurm, ...) and the cgroup CPU quota (containers), whichever
is lower, else ``os.cpu_count()``. The cores the process may use also cap the explicit counts.
"""
import math
import os

FASTNN_ENV = "FASTNN_NUM_THREADS"
OMP_ENV = "OMP_NUM_THREADS"
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"


def parse_cgroup_v2(text):
    """CPUs allowed by a cgroup v2 ``cpu.max`` (``"QUOTA PERIOD"`` or ``"max PERIOD"``), as a
    float, or None without a limit. ValueError when the text is not of that form."""
    fields = text.split()
    if len(fields) not in (1, 2):
        raise ValueError(f"cpu.max: expected 'QUOTA PERIOD', got {text.strip()!r}")
    if fields[0] == "max":
        return None
    period = int(fields[1]) if len(fields) == 2 else 100000
    return _quota_cpus(int(fields[0]), period, "cpu.max")


def parse_cgroup_v1(quota_text, period_text):
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (a quota of -1
    means no limit: None). ValueError when a file does not hold an integer."""
    quota = int(quota_text.strip())
    if quota < 0:
        return None
    return _quota_cpus(quota, int(period_text.strip()), "cpu.cfs_quota_us")


def _quota_cpus(quota, period, name):
    if quota <= 0 or period <= 0:
        raise ValueError(f"{name}: expected a positive quota and period, got {quota} and {period}")
    return quota / period


def cgroup_cpus(root=CGROUP_ROOT, self_cgroup=None):
    """Whole CPUs the cgroup quotas allow this process (a fraction rounds up), or None when no
    quota is set or none can be read. The process's own cgroup (named in ``self_cgroup``, the
    text of /proc/self/cgroup, which is read when None) and every cgroup above it are read, under
    ``root``; the lowest quota wins. A file that cannot be parsed counts as no quota."""
    v2_path, v1_path = _own_cgroups(self_cgroup)
    found = []
    for folder in _ancestors(root, v2_path):
        found.append(_parse_files(parse_cgroup_v2, folder, ("cpu.max",)))
    for controller in ("cpu", "cpu,cpuacct"):
        for folder in _ancestors(os.path.join(root, controller), v1_path):
            found.append(_parse_files(parse_cgroup_v1, folder,
                                      ("cpu.cfs_quota_us", "cpu.cfs_period_us")))
    cpus = [c for c in found if c is not None]
    return max(1, math.ceil(min(cpus))) if cpus else None


def _own_cgroups(text):
    """(cgroup v2 path, cgroup v1 cpu controller path) of /proc/self/cgroup's text (None: read
    it); "/" for a missing entry or an unreadable file."""
    if text is None:
        try:
            text = _read(PROC_SELF_CGROUP)
        except OSError:
            text = ""
    v2 = v1 = "/"
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if fields[0] == "0" and fields[1] == "":
            v2 = fields[2] or "/"
        elif "cpu" in fields[1].split(","):
            v1 = fields[2] or "/"
    return v2, v1


def _ancestors(root, path):
    """root/path, then each folder above it up to root itself."""
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    return [os.path.join(root, *parts[:n]) for n in range(len(parts), -1, -1)]


def _parse_files(parse, folder, names):
    try:
        texts = [_read(os.path.join(folder, name)) for name in names]
        return parse(*texts)
    except (OSError, ValueError):
        return None


def _read(path):
    with open(path) as f:
        return f.read()


def affinity_cpus():
    """Number of CPUs in the process's affinity mask, or None where the platform has none."""
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return None


def available_cores(root=CGROUP_ROOT, self_cgroup=None):
    """(cores the process may use, what limits them): the lower of the affinity mask and the
    cgroup quota, else os.cpu_count()."""
    limits = [(n, source) for n, source in ((affinity_cpus(), "CPU affinity"),
                                            (cgroup_cpus(root, self_cgroup), "cgroup CPU quota"))
              if n is not None]
    if limits:
        return min(limits)
    return os.cpu_count() or 1, "os.cpu_count()"


def default_threads(environ=None, cores=None):
    """(thread count, source, warnings) of the default: the first of $FASTNN_NUM_THREADS and
    $OMP_NUM_THREADS that is set, capped at the available cores, else the available cores.

    A malformed value is skipped with a warning (a str in ``warnings``), as is a capped one.
    ``cores``: (count, source) as available_cores returns, which is asked when None.
    """
    environ = os.environ if environ is None else environ
    cores, cores_source = available_cores() if cores is None else cores
    messages = []
    for name in (FASTNN_ENV, OMP_ENV):
        text = environ.get(name, "").strip()
        if not text:
            continue
        first = text.split(",")[0].strip() if name == OMP_ENV else text
        try:
            n = int(first)
            if n < 1:
                raise ValueError
        except ValueError:
            messages.append(f"{name}={text!r} is not a positive integer; ignored")
            continue
        n, message = cap(n, f"{name}={n}", (cores, cores_source))
        if message:
            messages.append(message)
        return n, name, messages
    return cores, cores_source, messages


def cap(n, what, cores=None):
    """(n capped at the available cores, the warning to give or None). ``what`` names the
    request in the warning, e.g. "--threads 8"."""
    cores, source = available_cores() if cores is None else cores
    if n <= cores:
        return n, None
    return cores, (f"{what}: more threads than the {cores} cores this process may use "
                   f"(limited by {source}); using {cores}")
