"""Process facts shared by the benchmark scripts: cores, resident memory, CPU time."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def setup_path() -> None:
    """Make the project's packages importable in a spawned child."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _status_bytes(field: str) -> int | None:
    """A memory figure of /proc/self/status (``VmRSS``, ``VmHWM``) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak so far, an upper bound)."""
    found = _status_bytes("VmRSS")
    return maxrss_bytes() if found is None else found


def maxrss_bytes() -> int:
    """Peak resident set size of this process so far."""
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def peak_bytes() -> int:
    """Peak resident set size since the last :func:`reset_peak` (Linux ``VmHWM``; elsewhere
    ``ru_maxrss``). Unlike ``ru_maxrss``, which a spawned child inherits from its parent across
    exec and which no reset lowers, ``VmHWM`` is this process's own."""
    found = _status_bytes("VmHWM")
    return maxrss_bytes() if found is None else found


def reset_peak() -> bool:
    """Reset the RSS high-water mark (Linux >= 4.0); ru_maxrss then follows from here."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def busy_seconds() -> float:
    """CPU time all processes of the machine spent busy so far (Linux /proc/stat; else 0)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def load_average(all_three: bool = False) -> str:
    """The 1-minute load average (or the 1, 5 and 15-minute ones): other work on the machine
    skews every timing."""
    try:
        averages = os.getloadavg()
    except OSError:
        return "n/a"
    return " ".join(f"{x:.2f}" for x in (averages if all_three else averages[:1]))


def in_spawned(target, *args):
    """``target(*args, queue)`` in a fresh spawned process (not a daemon: a Dask LocalCluster
    starts worker processes of its own); what it put on the queue."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def children_peak_bytes() -> int:
    """Peak RSS of the largest finished child of this process (a Dask worker), bytes."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
