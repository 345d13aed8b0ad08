"""This process's memory for the benches that measure steps in-process (bench/retrieval_memory.py,
bench/trainer_memory.py): the current RSS and the kernel's high-water mark, so no sampling."""

from __future__ import annotations

import resource

from models import memory


def rss_mib() -> tuple[int, int]:
    """(current, peak) RSS of this process in MiB."""
    return memory.rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
