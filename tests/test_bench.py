"""The benchmark's own measuring (bench/run.py), where a test can check it against the truth."""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import lineup  # noqa: E402
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


def sections(*only, io=None, frameworks=None, smoke=False):
    """The I/O-bound and frameworks workloads bench/run would measure with these flags."""
    args = argparse.Namespace(only=list(only) or None)
    io_works = bench.section(args, "io-bound", io)
    return ([w.name for w in io_works][:1 if smoke and io is None else None],
            [w.name for w in bench.section(args, "frameworks", frameworks)])


def test_the_io_bound_and_frameworks_sections_are_chosen_by_only_and_their_flags():
    assert sections() == (["io-64", "io-256"], ["django", "fastapi"])
    assert sections("io-bound") == (["io-64", "io-256"], [])
    assert sections("frameworks", "io-256") == (["io-256"], ["django", "fastapi"])
    assert sections("hello") == ([], [])
    assert sections("hello", io=True) == (["io-64", "io-256"], [])
    assert sections(io=False, frameworks=False) == ([], [])


def test_each_io_bound_and_framework_server_is_compared_with_scgikits_row_of_its_kind():
    scgikits = {lineup.SYNC, lineup.ASYNC} | {
        s.name for s in lineup.SERVERS.values() if s.program == "scgikit"}
    for server in [*lineup.IO_BOUND, *lineup.FRAMEWORKS, *lineup.GRANIAN]:
        assert (server.base in scgikits) if server.base else (server.name in scgikits)
        assert bench.speaks_http(server.name) == server.over_http
    work = bench.IO_WORKLOADS[0]
    results = {("tcp", s.name): {work.name: bench.Row(s.name, {"rps": float(n + 1)})}
               for n, s in enumerate(lineup.IO_BOUND)}
    members = [(s.name, s.base) for s in lineup.IO_BOUND]
    rows, bases = bench.beside(results, "tcp", work, members)
    assert [row.server for row in rows] == [s.name for s in lineup.IO_BOUND]
    threads, asyncio = rows[0], rows[4]
    assert bases == [None, threads, threads, threads, None, asyncio, asyncio]


def test_servers_are_started_on_tcp_and_unix_sockets_with_the_same_workers(tmp_path):
    argv, cwd = lineup.argv("granian ASGI", Path("py"), "uwsgi", "127.0.0.1:8123", 2)
    assert argv == ["py", "-m", "granian", "--workers", "2", "--host", "127.0.0.1", "--port",
                    "8123", "--log-level", "warning", "--no-ws", "--interface", "asgi",
                    "--loop", "uvloop", "apps:asgi_app"]
    assert cwd == lineup.HERE
    argv, _ = lineup.argv("uWSGI threads ×128", Path("py"), "uwsgi", f"unix:{tmp_path}/s", 2)
    assert argv[:3] == ["uwsgi", "--scgi-socket", f"{tmp_path}/s"]
    assert argv[-2:] == ["--threads", "128"] and "--processes" in argv
    argv, cwd = lineup.argv("scgikit sync, Django", Path("py"), "uwsgi", "127.0.0.1:8123", 2)
    assert argv[:5] == ["py", "-m", "scgikit", "serve", "bench/django_app.py:application"]
    assert cwd == lineup.REPO


def test_a_django_server_gets_the_database_its_view_reads(tmp_path):
    assert lineup.environment("granian WSGI, Django", tmp_path) == {
        "BENCH_SQLITE": str(tmp_path / "bench.sqlite3")}
    with sqlite3.connect(tmp_path / "bench.sqlite3") as db:
        row = db.execute("SELECT text FROM greeting WHERE id = 42").fetchone()
    db.close()
    assert row == ("Hello, world number 042!",)
    assert lineup.environment("granian ASGI, FastAPI", tmp_path) == {}
