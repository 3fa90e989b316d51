"""The workers' C heap is kept from one request to the next (server/heap.py), under glibc."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scgi_raw import request

from scgikit.master.heap import keep_heap

GLIBC = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
pytestmark = pytest.mark.skipif(not GLIBC, reason="the heap is glibc's")

PROBE = str(Path(__file__).parent / "fixtureapps")


def in_a_fresh_process(code: str, **env: str) -> object:
    """What ``code`` prints (as JSON), run by a new Python with heap_probe importable."""
    out = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {PROBE!r})\n"
                          + code], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout
    return json.loads(out)


def test_glibc_alone_gives_the_heap_back_and_takes_it_again_for_each_request():
    faults = in_a_fresh_process("import heap_probe, json; print(json.dumps("
                                "heap_probe.churn_faults()))")
    assert faults > 20  # what a 128 KiB buffer and a 64 KiB body cost, every time


def test_a_kept_heap_takes_no_fresh_pages_for_each_request():
    kept, faults = in_a_fresh_process(
        "import heap_probe, json\nfrom scgikit.master.heap import keep_heap\n"
        "print(json.dumps([keep_heap(), heap_probe.churn_faults()]))")
    assert kept and faults < 5


@pytest.mark.parametrize("tunable", ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"])
def test_glibcs_own_tunables_in_the_environment_leave_malloc_as_they_set_it(monkeypatch,
                                                                          tunable):
    monkeypatch.setenv(tunable, "262144")
    assert keep_heap() is False


def test_a_block_below_a_mebibyte_gets_an_mmap_of_its_own_without_it():
    assert in_a_fresh_process("import heap_probe, json; print(json.dumps("
                              "heap_probe.mapped()))") is True


def test_every_worker_inherits_the_kept_heap(serve, transport, model):
    server = serve("wsgi_apps:heap", "--workers", "2", bind=[transport])
    answers = [request(server.address, "/heap") for _ in range(4)]
    assert [json.loads(answer.body) for answer in answers] == [{"mapped": False}] * 4


def test_a_workers_threads_share_at_most_two_heaps():
    assert in_a_fresh_process("import heap_probe, json\nfrom scgikit.master.heap import keep_heap\n"
                              "keep_heap()\nprint(json.dumps(heap_probe.arenas()))") <= 2


def test_without_the_cap_threads_holding_memory_at_once_get_heaps_of_their_own():
    assert in_a_fresh_process("import heap_probe, json\n"
                              "print(json.dumps(heap_probe.arenas()))") > 2


def test_malloc_arena_max_in_the_environment_leaves_the_heaps_as_it_sets_them():
    assert in_a_fresh_process("import heap_probe, json\nfrom scgikit.master.heap import keep_heap\n"
                              "keep_heap()\nprint(json.dumps(heap_probe.arenas()))",
                              MALLOC_ARENA_MAX="4") > 2


def test_the_heap_is_set_without_ctypes_where_the_c_accelerator_runs():
    from scgikit.accelerator import speedups

    kept, loaded = in_a_fresh_process(
        "import json, sys\nfrom scgikit.master.heap import keep_heap\n"
        "print(json.dumps([keep_heap(), 'ctypes' in sys.modules]))")
    assert kept and loaded == (speedups is None)
