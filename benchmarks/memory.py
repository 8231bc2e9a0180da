"""Peak resident memory of the calling process, for the benchmarks.

``getrusage``'s ``ru_maxrss`` is not enough: Linux carries it across ``fork`` and ``exec``, so a
process started by a parent that once held 6 GB reports at least 6 GB. ``VmHWM`` in
``/proc/self/status`` is the high-water mark of this process's own address space.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``; ``ru_maxrss`` off Linux)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
