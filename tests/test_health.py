"""``/healthz`` and ``/readyz`` on the ``--stats`` listener, through a server's whole life.

One server per transport (the SCGI and the stats sockets both over TCP, or both unix) and
worker model: the pages are the master's, but what they count is each model's own (its
worker says "ready" once it has loaded the app, and holds a graceful stop while a request
is in the app).  Its worker loads the app only when the test opens a gate
(recycling_apps.gated), so the test sees the master before any worker is ready, during a
reload whose new worker is loading, and during a graceful stop held by a request in the
app.  At each step both pages are read, status and JSON counts.
"""

from __future__ import annotations

import os
import signal
import threading

from scgi_raw import exchange_raw
from servers import wait_until
from stats_pages import health, http_get, samples

from scgikit.protocol import encode_request


def figures(ready, booting, stopping=False, reloading=False, ok=True):
    return {"status": "ok" if ok else "unavailable", "ready": ready, "booting": booting,
            "wanted": 1, "stopping": stopping, "reloading": reloading}


def pages_say(server, healthz, readyz):
    """Wait until /healthz and /readyz answer these (status, JSON); fail at the deadline."""
    seen = []

    def check():
        seen[:] = [health(server.stats, "/healthz"), health(server.stats, "/readyz")]
        return seen == [healthz, readyz]

    try:
        wait_until(check, timeout=20, message=f"/healthz {healthz} and /readyz {readyz}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {seen}") from None


def hold(server, fifo, answers):
    """/hold?FIFO in a thread: the request stays in the app until the test writes to FIFO."""
    variables = {"REQUEST_METHOD": "GET", "REQUEST_URI": f"/hold?{fifo}", "PATH_INFO": "/hold",
                 "QUERY_STRING": str(fifo)}
    thread = threading.Thread(target=lambda: answers.append(
        exchange_raw(server.address, encode_request(variables, 0), timeout=60)))
    thread.start()
    return thread


def test_health_and_readiness_follow_the_start_a_reload_and_a_graceful_stop(
        serve, transport, tmp_path, model):
    gate = tmp_path / "gate"
    where = "127.0.0.1:0" if transport.startswith("127.") else f"unix:{tmp_path}/stats.sock"
    server = serve(f"recycling_apps:gated({str(gate)!r})", "--workers", "1", "--stats", where,
                   bind=[transport])
    server.stats = server.wait_for_log(r"Metrics at: (\S+)")[0].group(1)

    # Before any worker is ready: neither alive nor ready.
    pages_say(server, (503, figures(0, 1, ok=False)), (503, figures(0, 1, ok=False)))
    gate.touch()
    pages_say(server, (200, figures(1, 0)), (200, figures(1, 0)))
    status, headers, body = http_get(server.stats, "/readyz", method="HEAD")
    assert (status, headers["content-type"], body) == (200, "application/json", b"")
    assert int(headers["content-length"]) > 0

    # A reload whose new worker is loading: alive (the old worker serves), not ready.
    gate.unlink()
    server.send_signal(signal.SIGHUP)
    pages_say(server, (200, figures(1, 1, reloading=True)),
              (503, figures(1, 1, reloading=True, ok=False)))
    gate.touch()
    pages_say(server, (200, figures(1, 0)), (200, figures(1, 0)))

    # A graceful stop, held by a request in the app: alive, not ready.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    answers = []
    thread = hold(server, fifo, answers)
    wait_until(lambda: samples(server.stats)["scgikit_requests_in_flight", frozenset(
        {"model": model}.items())] == 1, message="the request in the app")
    server.send_signal(signal.SIGTERM)
    pages_say(server, (200, figures(1, 0, stopping=True)),
              (503, figures(1, 0, stopping=True, ok=False)))
    with open(fifo, "wb") as pipe:
        pipe.write(b"released")
    thread.join(30)
    assert answers and answers[0].endswith(b"released")
    assert server.proc.wait(30) == 0
