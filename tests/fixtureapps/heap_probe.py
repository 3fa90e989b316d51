"""What a process's C heap does, under glibc: the observations behind server/heap.py's tests."""

from __future__ import annotations

import ctypes
import resource

_libc = ctypes.CDLL(None)
_malloc = _libc.malloc
_malloc.restype = ctypes.c_void_p
_malloc.argtypes = [ctypes.c_size_t]
_free = _libc.free
_free.argtypes = [ctypes.c_void_p]
_IS_MMAPPED = 0x2  # a bit of the size field before each block malloc gives
_WORD = ctypes.sizeof(ctypes.c_size_t)


def mapped(size: int = 900 * 1024) -> bool:
    """Whether a block of ``size`` bytes gets an mmap of its own rather than heap."""
    block = _malloc(size)
    try:
        return bool(ctypes.c_size_t.from_address(block - _WORD).value & _IS_MMAPPED)
    finally:
        _free(block)


def churn_faults(rounds: int = 50) -> float:
    """Page faults per round of what a request with a 64 KiB body allocates and frees
    (its 128 KiB receive buffer, the body twice), on the calling thread."""
    sizes = (128 * 1024 + 33, 70_000, 70_000)
    first = _malloc(sizes[0])  # freed from an mmap, it sets glibc's own thresholds
    ctypes.memset(first, 1, sizes[0])
    _free(first)
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(rounds):
        blocks = [_malloc(size) for size in sizes]
        for block, size in zip(blocks, sizes):
            ctypes.memset(block, 1, size)
        for block in blocks:
            _free(block)
    return (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / rounds


def arenas(threads: int = 8) -> int:
    """How many heaps (arenas) malloc has once ``threads`` threads each hold a block at
    the same moment (glibc gives a thread that finds the others' arenas busy one of its
    own, up to eight per core)."""
    import os
    import tempfile
    import threading

    held = threading.Barrier(threads + 1)
    done = threading.Event()

    def hold() -> None:
        block = _malloc(64 * 1024)
        held.wait()
        done.wait()
        _free(block)

    pool = [threading.Thread(target=hold) for _ in range(threads)]
    for thread in pool:
        thread.start()
    held.wait()
    fopen, fclose = _libc.fopen, _libc.fclose
    fopen.restype = ctypes.c_void_p
    fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    fclose.argtypes = [ctypes.c_void_p]
    _libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "info.xml")
        stream = fopen(path.encode(), b"w")
        _libc.malloc_info(0, stream)
        fclose(stream)
        with open(path) as info:
            count = info.read().count("<heap nr=")
    done.set()
    for thread in pool:
        thread.join()
    return count
