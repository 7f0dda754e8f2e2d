"""What every benchmark measures the same way: latency percentiles, resident memory and
CPU time.
(Free ports for the servers they start: `tests.services.free_port`.)"""

from __future__ import annotations

import os
import statistics
from pathlib import Path


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max of durations in seconds, in milliseconds (nearest rank)."""
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50_ms": round(1000 * statistics.median(ordered), 1), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(1000 * ordered[-1], 1)}


def rss_mb(pid: int) -> float | None:
    """A process's resident memory (Linux), None once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, every thread) a process has used so far (Linux), None
    once it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
