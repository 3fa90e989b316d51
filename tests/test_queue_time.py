"""Queue time: the front end's stamp (REQUEST_START, X-Request-Start) to the worker's accept.

The stamp's forms and limits are checked on ``queue_seconds`` itself; a real
server on each worker model, over TCP and a unix socket, then shows stamped
requests in ``scgikit_request_queue_seconds`` and in the access log's
``{queue_ms}``, and leaves out those without a usable stamp.  The front ends'
own stamps are in test_frontends_e2e.py.
"""

from __future__ import annotations

import json
import math
import time

import pytest
from scgi_raw import request
from test_stats import scrape_until

from scgikit.accesslog import Access, compile_access_format
from scgikit.queue_time import MAX_SKEW, queue_seconds, stamp_seconds

# --- the stamp's forms ---------------------------------------------------------------------

NOW = 1_700_000_000.25  # a time in seconds since the epoch


@pytest.mark.parametrize("text", [
    "1700000000.25",  # nginx's $msec: seconds, with milliseconds
    "1700000000250",  # milliseconds
    "t=1700000000250",
    "1700000000250000",  # microseconds
    "t=1700000000250000",  # Apache's %t
    "t=1700000000.25",
])
def test_a_stamp_is_seconds_milliseconds_or_microseconds_told_by_its_size(text):
    assert stamp_seconds(text) == pytest.approx(NOW, abs=1e-6)


@pytest.mark.parametrize("text", ["", "t=", "soon", "t=t=1700000000", "1700000000,25",
                                  "0x6553f100", "12 34"])
def test_a_stamp_that_is_no_number_is_none(text):
    assert stamp_seconds(text) is None


def ago(seconds):
    """A time ``seconds`` before now, in seconds since the epoch, as nginx writes it (to
    the millisecond, rounded down: at least ``seconds`` ago)."""
    return f"{math.floor((time.time() - seconds) * 1000) / 1000:.3f}"


def test_queue_time_runs_from_the_stamp_to_the_accept():
    accepted = time.monotonic() - 2.0  # accepted 2 s ago...
    queued = queue_seconds({"REQUEST_START": ago(3.5)}, accepted)  # ...stamped 3.5 s ago
    assert queued == pytest.approx(1.5, abs=0.1)


def test_request_start_comes_first_then_the_x_request_start_header():
    both = {"REQUEST_START": ago(1.0), "HTTP_X_REQUEST_START": f"t={int(time.time() * 1e6)}"}
    header = {"HTTP_X_REQUEST_START": f"t={int((time.time() - 1.0) * 1e6)}"}
    accepted = time.monotonic()  # after both stamps
    assert queue_seconds(both, accepted) >= 1.0  # REQUEST_START's, not the header's 0
    assert queue_seconds(header, accepted) >= 1.0


def test_a_stamp_a_little_in_the_future_is_a_queue_time_of_zero():
    assert queue_seconds({"REQUEST_START": ago(-5.0)}, time.monotonic()) == 0.0


@pytest.mark.parametrize("variables", [
    lambda: {}, lambda: {"REQUEST_START": ""}, lambda: {"REQUEST_START": "garbage"},
    lambda: {"HTTP_X_REQUEST_START": "t=x"}, lambda: {"REQUEST_START": "nan"},
    lambda: {"REQUEST_START": "inf"}, lambda: {"REQUEST_START": "-1e300"},
    lambda: {"REQUEST_START": ago(MAX_SKEW + 60)}, lambda: {"REQUEST_START": ago(-MAX_SKEW - 60)},
    lambda: {"REQUEST_START": "12.5"},  # 1970
], ids=["absent", "empty", "garbage", "t=x", "nan", "inf", "-1e300", "an hour and a minute ago",
        "in an hour and a minute", "1970"])
def test_no_stamp_a_garbled_one_or_one_over_an_hour_off_gives_none(variables):
    assert queue_seconds(variables(), time.monotonic()) is None


def test_the_access_log_field_is_milliseconds_or_a_dash_and_json_number_or_null():
    text, as_json = compile_access_format("{queue_ms}"), compile_access_format("json")
    stamped = Access({"REQUEST_START": ago(1.5)}, "200 OK", 10, time.monotonic(), "sync")
    unstamped = Access({"REQUEST_START": "soon"}, "200 OK", 10, time.monotonic(), "sync")
    assert float(text.line(stamped, time.time(), 1)) >= 1500.0
    assert json.loads(as_json.line(stamped, time.time(), 1))["queue_ms"] >= 1500.0
    assert text.line(unstamped, time.time(), 1) == "-"
    assert json.loads(as_json.line(unstamped, time.time(), 1))["queue_ms"] is None


# --- a real server -------------------------------------------------------------------------

BOUND = "scgikit_request_queue_seconds_bucket"


def test_stamped_requests_reach_the_histogram_and_the_access_log(serve, transport, tmp_path,
                                                                  model):
    """Stamped 1.5 s in the past, in each form: counted at 1 s and over, logged in ms; a
    body too big for the first receive takes the Python path of the sync model."""
    where = "127.0.0.1:0" if transport.startswith("127.") else f"unix:{tmp_path}/stats.sock"
    log = tmp_path / "access.log"
    server = serve("stats_apps:app", "--workers", "1", "--stats", where, "--access-log",
                   str(log), "--access-log-format", "{uri} queue={queue_ms}",
                   bind=[transport])
    server.stats = server.wait_for_log(r"Metrics at: (\S+)")[0].group(1)
    stamped = {
        "/200?1": {"REQUEST_START": ago(1.5)},
        "/200?2": {"HTTP_X_REQUEST_START": f"t={int((time.time() - 1.5) * 1e6)}"},
        "/200?3": {"REQUEST_START": ago(1.5), "big": "body"},
    }
    unstamped = {"/200?4": {}, "/200?5": {"REQUEST_START": "garbage"},
                 "/200?6": {"HTTP_X_REQUEST_START": "t=1"}}
    for uri, env in {**stamped, **unstamped}.items():
        body = b"b" * 300_000 if env.pop("big", None) else b""
        assert request(server.address, uri, method="POST", body=body, env=env).status == 200
    metrics = scrape_until(
        server, lambda m: m("scgikit_request_duration_seconds_count", model=model) == 6,
        "the six requests counted")
    assert metrics(BOUND, model=model, le="+Inf") == len(stamped)
    assert metrics(BOUND, model=model, le="1.0") == 0  # each waited 1.5 s and more
    assert metrics("scgikit_request_queue_seconds_sum", model=model) >= 1.5 * len(stamped)
    assert metrics.families["scgikit_request_queue_seconds"] == "histogram"
    server.stop()
    queues = dict(line.split(" queue=") for line in log.read_text().splitlines())
    assert {uri: queues[uri] for uri in unstamped} == dict.fromkeys(unstamped, "-")
    assert all(float(queues[uri]) >= 1500.0 for uri in stamped), queues
