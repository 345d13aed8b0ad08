"""This process's memory for the benches that measure steps in-process (bench/retrieval_memory.py,
bench/trainer_memory.py): the current RSS and the kernel's high-water mark, so no sampling."""

from __future__ import annotations

import os
import resource


def rss_mib() -> tuple[int, int]:
    """(current, peak) RSS of this process in MiB."""
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return current // 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
