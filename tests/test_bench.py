"""The benchmark's own measuring (bench/run.py), where a test can check it against the truth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import run as bench  # noqa: E402

# A child that burns CPU up to each of these of its own seconds, and says how much it used.
BURNER = """
import sys, time
for target in map(float, sys.argv[1:]):
    x = 0
    while time.process_time() < target:
        x += 1
    print(time.process_time(), flush=True)
    sys.stdin.readline()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmark runs on Linux")
def test_the_cpu_time_of_a_server_tree_is_read_finer_than_clock_ticks():
    # /proc's figures come in 10 ms ticks: three readings taken 3.4 ms apart would not all
    # land within a millisecond of what the process itself counts.
    targets = [0.2, 0.2034, 0.2068]
    child = subprocess.Popen([sys.executable, "-c", BURNER, *map(str, targets)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for _ in targets:
            counted = float(child.stdout.readline())
            measured = bench.cpu_seconds(child.pid)
            assert counted <= measured < counted + 0.001
            child.stdin.write("\n")
            child.stdin.flush()
    finally:
        child.kill()
        child.wait()
