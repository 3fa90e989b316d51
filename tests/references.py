"""``leak_check``: a C function called many times keeps no reference it should not, and grows
no memory (the C accelerator's tests use it)."""

from __future__ import annotations

import sys
import tracemalloc

# Small ints, one-character strings and the other objects the interpreter holds statically
# start at this count on Python 3.11 (3.12 makes them immortal): every thread of the process
# shares them, so their counts may move by a few while a check runs, without any leak.
STATIC_COUNT = 999_999_999


def leak_check(call, *objects, rounds=20000):
    """Run ``call`` many times: no reference to ``objects`` kept, no memory growing.

    An object the interpreter holds statically may end a few references off (another
    thread held it at that moment), never one a call."""
    for _ in range(100):  # warm up caches (the exception's traceback frames, interned strings)
        call()
    refs = [sys.getrefcount(o) for o in objects]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(rounds):
            call()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    after = [sys.getrefcount(o) for o in objects]
    changed = [(repr(o)[:60], then, now) for o, then, now in zip(objects, refs, after)
               if now != then and (then < STATIC_COUNT or abs(now - then) >= 10)]
    assert changed == []
    # One dict or string kept per call would be megabytes; allow the allocator's noise.
    assert grown < 64 * 1024, f"{grown} bytes more after {rounds} calls"
