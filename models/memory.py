"""Returning freed memory to the operating system between the steps of one process.

The local runner (TFX's LocalDagRunner, Beam's in-memory DirectRunner) runs every component in
one process. What a step frees stays in glibc's arenas: the threshold above which glibc maps a
block apart, and unmaps it on free, rises up to 32 MiB as large arrays are freed, so the batches
and tensors under it are kept for reuse. Without a trim every later component starts from the
peak of the largest before it (the Trainer's, at ml-25m's size). Called by the Trainer's run_fn
(models/trainer.py) before and after training, and by the TopKEvaluator and the ServingCheck
before their work.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os

_LOG = logging.getLogger(__name__)


def _find_malloc_trim():
    """glibc's malloc_trim among the process's own symbols, or None (musl, macOS, Windows).
    Looked up once: ctypes.util.find_library runs `ldconfig -p` in a subprocess each time."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


def rss_mib() -> int:
    """This process's resident memory in MiB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
    except OSError:
        return 0


def give_back(step: str) -> int:
    """Collects garbage, then asks the C library to return its free pages (glibc's
    malloc_trim; nothing more where there is none); logs and returns the MiB returned."""
    before = rss_mib()
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
    after = rss_mib()
    if before - after > 0:
        _LOG.info("%s: returned %d MiB of freed memory to the system (%d -> %d MiB resident)",
                  step, before - after, before, after)
    return max(before - after, 0)
