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


def test_a_ratio_is_the_median_of_the_rounds_own_ratios_so_one_slow_round_moves_it_little():
    # The first server had one slow round (a slow spell of the machine): its median figure
    # is 70, the second server's 64, a ratio of 1.09; round by round it was 0.9 of the other
    # twice, and 1.5 once.
    ours = bench.Row("ours", {"cpu_us": 70.0}, [{"cpu_us": 54.0}, {"cpu_us": 90.0},
                                                 {"cpu_us": 70.0}])
    theirs = bench.Row("theirs", {"cpu_us": 64.0}, [{"cpu_us": 60.0}, {"cpu_us": 60.0},
                                                     {"cpu_us": 77.8}])
    assert bench.ratio(ours, theirs, "cpu_us") == pytest.approx(0.9)
    work = bench.Workload("echo-64k", "POST", "/echo", body=b"e", expect=1)
    text = bench.table(work, [ours, theirs])
    assert "| theirs | - | - | - | 64.0 (0.90×) |" in text
    assert "the median of the rounds' own ratios" in text


def test_a_ratio_without_rounds_is_the_ratio_of_the_figures():
    ours, theirs = bench.Row("ours", {"cpu_us": 30.0}), bench.Row("theirs", {"cpu_us": 60.0})
    assert bench.ratio(ours, theirs, "cpu_us") == 0.5
    assert bench.ratio(ours, bench.Row("none", {}), "cpu_us") is None


def test_the_medians_of_the_rounds_keep_each_rounds_figures_for_the_ratios():
    runs = [{("tcp", "ours"): {"hello": bench.Row("ours", {"cpu_us": value})}}
            for value in (3.0, 1.0, 2.0)]
    row = bench.medians(runs)["tcp", "ours"]["hello"]
    assert row.figures == {"cpu_us": 2.0}
    assert row.rounds == [{"cpu_us": 3.0}, {"cpu_us": 1.0}, {"cpu_us": 2.0}]
