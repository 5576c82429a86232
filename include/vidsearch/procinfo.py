"""Facts about the running process that benchmarks, tests and task timings report.

`peak_rss_bytes` reads the kernel's high-water mark of this process's memory (`VmHWM`), not
`getrusage().ru_maxrss`: Linux carries ru_maxrss across exec, so a process started by a large parent
(a test runner, a task process) reports the parent's peak as its own. `started_at` is when the process
was created, to about 10 ms (psutil's figure rests on a whole-second boot time).
"""

from __future__ import annotations

import os
import resource
import time


def peak_rss_bytes() -> int:
    """This process's peak resident set size in bytes (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def children_peak_rss_bytes() -> int:
    """Peak RSS of the largest child this process waited for (ru_maxrss: for a child started from a
    large process this includes what it shared with it before exec, so it is an upper bound)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def started_at() -> float:
    """Unix time this process was created: its start in clock ticks since boot (/proc/self/stat)
    against CLOCK_BOOTTIME."""
    try:
        with open("/proc/self/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        started_since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - started_since_boot)
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux
        import psutil

        return psutil.Process().create_time()
