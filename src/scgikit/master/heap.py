"""The C heap of a worker: kept from one request to the next, not given back and taken again.

glibc's malloc gives the free top of its heap back to the kernel once it is larger
than its trim threshold, which it sets on the fly to twice the largest block it
has freed from an mmap: 256 KiB, once a worker has freed its first 128 KiB receive
buffer.  A request with a 64 KiB body allocates and frees about that much (the
receive buffer, the body, the answer), so the heap shrank and grew again every few
requests, and each time the pages it took back came fresh from the kernel, zeroed,
one page fault each: about six per 64 KiB echo on the asyncio model, a third of
that request's CPU (``bench/run --only echo-64k`` shows the figure of the day).

And a worker's threads (the threads model's pool) share at most two heaps (arenas):
glibc gives each thread that allocates while the others' are busy one of its own, up to
eight per core, each keeping its own free memory; under the GIL they gain little.

So the master sets both thresholds, and the arenas' cap, before it forks the workers
(setting one fixes the other, which would then mmap and unmap every 128 KiB receive
buffer): blocks
below ``MMAP_THRESHOLD`` come from the heap, and up to ``TRIM_THRESHOLD`` of free
heap top is kept.  ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_MMAP_THRESHOLD_`` in the
environment (glibc's own tunables) leave glibc's settings as they are, as
``MALLOC_ARENA_MAX`` does the cap; so does a C library other than glibc.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ..accelerator import speedups

__all__ = ["keep_heap", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: Blocks at least this large are mmap'd (and unmapped when freed); smaller ones come
#: from the heap.
MMAP_THRESHOLD = 1 << 20
#: The free top of the heap kept, at most, before the rest goes back to the kernel.
TRIM_THRESHOLD = 8 << 20
#: The heaps (arenas) a worker's threads share, at most.
ARENA_MAX = 2

# mallopt() parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_TUNABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def keep_heap() -> bool:
    """Set glibc's thresholds; False where it was left alone (not glibc, or told so)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _TUNABLES):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(_M_ARENA_MAX, ARENA_MAX)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _mallopt() -> Callable[[int, int], object] | None:
    """glibc's mallopt(): the C accelerator's, else through ctypes (an import of half a
    MiB the master then keeps, and its workers); None where the C library is not glibc."""
    if speedups is not None:
        return getattr(speedups, "mallopt", None)  # (built against glibc, or without it)
    import ctypes

    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version"):  # only glibc has it
        return None
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt
