"""models/memory.py: freed heap memory goes back to the system."""

import ctypes
import ctypes.util
import sys

import pytest

from models import memory

BLOCK, BLOCKS = 4096, 50_000  # 195 MiB in blocks far below glibc's mmap threshold


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_a_freed_heap_block_is_returned_to_the_system():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(BLOCK) for _ in range(BLOCKS)]
    fence = libc.malloc(64)  # keeps the freed blocks below the heap's top: glibc keeps them
    try:
        for block in blocks:
            ctypes.memset(block, 1, BLOCK)
        resident = memory.rss_mib()
        for block in blocks:
            libc.free(block)
        assert memory.rss_mib() > resident - 50  # freed, but still held by the allocator
        returned = memory.give_back("test")
        assert returned > 150
        assert memory.rss_mib() < resident - 150
    finally:
        libc.free(fence)


def test_rss_is_the_processes_resident_memory():
    assert 10 < memory.rss_mib() < 100_000
