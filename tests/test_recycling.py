"""``--max-memory`` and ``--max-lifetime``: a worker grown too large or too old is replaced,
one at a time, the new worker first, and no request fails meanwhile.

Each test runs two real servers under one bounded load loop: one whose workers grow by
4 MiB a request (recycling_apps.py: /grow) past ``--max-memory 48m`` (a fresh worker's
resident size is about 20 MiB), one with ``--max-lifetime 1`` and a jitter.  Every
answer must be a 200; every look at /healthz must show the capacity kept (at least
``--workers`` ready, at most one replacement loading); the log says which worker went,
and why; the metrics count the exits under their reasons, and every request answered.
"""

from __future__ import annotations

import argparse
import time

import pytest
from scgi_raw import request
from servers import wait_until
from stats_pages import exits, health, samples

from scgikit.config import ConfigError
from scgikit.options import add_arguments, from_arguments

pytestmark = pytest.mark.usefixtures("model")

WORKERS = 2
ROUNDS = 2000  # the load loop's bound in requests to each server...
SECONDS = 60.0  # ...and in time


@pytest.fixture
def start(serve, transport, tmp_path):
    """A server of ``recycling_apps:app`` with --stats on the transport of --bind."""
    made = []

    def start(*args):
        name = f"stats{len(made)}.sock"
        where = "127.0.0.1:0" if transport.startswith("127.") else f"unix:{tmp_path}/{name}"
        bind = transport if transport.startswith("127.") else f"unix:{tmp_path}/scgi{len(made)}"
        server = serve("recycling_apps:app", "--workers", str(WORKERS), "--stats", where, *args,
                       bind=[bind], ready=None)  # servers start side by side
        made.append(server)
        return server

    return start


def capacity_kept(server):
    """/healthz: every wanted worker ready (a retiring one counts until its replacement is
    ready), at most one replacement loading."""
    status, figures = health(server.stats)
    assert status == 200, figures
    assert figures["ready"] >= WORKERS and figures["booting"] <= 1, figures
    return figures


def test_workers_past_max_memory_or_max_lifetime_are_replaced_losing_no_request(start, model):
    grows = start("--max-memory", "48m")
    ages = start("--max-lifetime", "1", "--max-lifetime-jitter", "0.5")
    for server in (grows, ages):
        server.stats = server.wait_for_log(r"Metrics at: (\S+)", timeout=20)[0].group(1)
        server.wait_for_log(r"Listening at: ")
        wait_until(lambda s=server: health(s.stats)[1]["ready"] == WORKERS, message="ready")
    sent = 0
    deadline = time.monotonic() + SECONDS
    while not (exits(grows.stats)["max_memory"] and exits(ages.stats)["max_lifetime"]):
        assert sent < ROUNDS and time.monotonic() < deadline, (
            f"{sent} requests, exits {exits(grows.stats)} and {exits(ages.stats)}")
        for _ in range(5):
            assert request(grows.address, "/grow?4").status == 200
            assert request(ages.address, "/").body == b"ok"
            sent += 1
        capacity_kept(grows)
        capacity_kept(ages)

    for server, reason, others in ((grows, "max_memory", "max_lifetime"),
                                   (ages, "max_lifetime", "max_memory")):
        counted = exits(server.stats)
        assert counted[reason] >= 1, counted
        assert counted[others] == counted["crashed"] == counted["boot_failed"] == 0, counted
        assert counted["stopped"] == counted["recycled"] == 0, counted
        answered = samples(server.stats)
        assert answered["scgikit_requests_total", frozenset(
            {"model": model, "status": "2xx"}.items())] == sent
        for status in ("4xx", "5xx", "none"):
            assert answered["scgikit_requests_total", frozenset(
                {"model": model, "status": status}.items())] == 0

    over = grows.wait_for_log(r"Worker (\d+) is over --max-memory \(RSS ([\d.]+) MiB, "
                              r"limit 48\.0 MiB\); replacing it")
    assert all(float(line.group(2)) > 48 for line in over)
    old = ages.wait_for_log(r"Worker (\d+) reached --max-lifetime \(ran ([\d.]+)s, its limit "
                            r"([\d.]+)s\); replacing it")
    for line in old:
        ran, limit = float(line.group(2)), float(line.group(3))
        assert 1.0 <= limit <= 1.5 and ran >= limit - 0.05, line.group(0)
    assert "Traceback" not in grows.log + ages.log


# --- the options -------------------------------------------------------------------------


def build(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(argv), {}, target="app:app")


@pytest.mark.models("sync", reason="the options' values, read before any worker starts")
def test_recycling_options_take_sizes_and_seconds():
    config = build(["--max-memory", "512m", "--max-lifetime", "3600",
                    "--max-lifetime-jitter", "0.5"])
    assert (config.max_memory, config.max_lifetime, config.max_lifetime_jitter) == (
        512 << 20, 3600.0, 0.5)
    default = build([])
    assert (default.max_memory, default.max_lifetime, default.max_lifetime_jitter) == (0, 0, 0)


@pytest.mark.models("sync", reason="the options' values, read before any worker starts")
@pytest.mark.parametrize(("argv", "message"), [
    (["--max-memory", "512"], "^--max-memory: 512 bytes: every worker is over that as it "
     r"starts; give a size such as 512m \(0: never\)$"),
    (["--max-memory", "lots"], "^--max-memory: 'lots' is not a size such as 65536, 64k or 10m$"),
    (["--max-memory", "2048g"], "^--max-memory: 2199023255552 is out of range: 0 to "),
    (["--max-lifetime", "-1"], "^--max-lifetime: -1 is out of range: 0 to 31536000$"),
    (["--max-lifetime-jitter", "30"], "^--max-lifetime-jitter: applies only with "
     "--max-lifetime$"),
])
def test_recycling_options_refuse_what_cannot_work(argv, message):
    with pytest.raises(ConfigError, match=message):
        build(argv)

