"""``--stats``: Prometheus metrics from a real server, read with prometheus_client's own parser.

Every figure is checked against what the test did (requests of known statuses and
sizes, a worker recycled or killed, a request held in the app through a named pipe
the test opens), on each worker model (conftest.py: model), with the SCGI and the
metrics sockets both over TCP and both over unix sockets.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families
from scgi_raw import connect, exchange_raw, request
from servers import child_env, wait_until
from stats_pages import http_get

from scgikit.protocol import encode_request

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MASTER = pytest.mark.models("sync", reason="the master's metrics endpoint and worker counts, "
                            "the same whatever the workers' model")


@pytest.fixture
def stats_server(serve, transport, tmp_path, model):
    """Start a server of worker model ``model`` (conftest.py) with --stats on the same
    transport as --bind: stats_apps.app, or its ASGI twin on asyncio."""

    def start(*args):
        where = "127.0.0.1:0" if transport.startswith("127.") else f"unix:{tmp_path}/stats.sock"
        server = serve("stats_apps:app", "--stats", where, *args, bind=[transport])
        server.stats = server.wait_for_log(r"Metrics at: (\S+)")[0].group(1)
        return server

    return start


# --- reading the metrics -------------------------------------------------------------------


class Metrics:
    """The samples of one scrape, by name and labels."""

    def __init__(self, text):
        self.samples = {}
        self.families = {}
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family.type
            for sample in family.samples:
                self.samples[sample.name, frozenset(sample.labels.items())] = sample.value

    def __call__(self, name, **labels):
        return self.samples[name, frozenset(labels.items())]


def scrape(server):
    status, headers, body = http_get(server.stats)
    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE
    assert int(headers["content-length"]) == len(body)
    return Metrics(body.decode())


def scrape_until(server, condition, message):
    """Scrape until ``condition(metrics)`` holds; fail after the deadline."""
    found = []

    def check():
        found[:] = [scrape(server)]
        try:
            return condition(found[0])
        except KeyError:  # not there yet: no worker has said its model
            return False

    try:
        wait_until(check, timeout=20, message=message)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last scrape: {found[0].samples}") from None
    return found[0]


@pytest.fixture
def gates(tmp_path):
    """Named pipes that hold requests in the app; any still closed are opened at the end."""
    made = []

    def make(name="gate"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        made.append(fifo)
        return fifo

    yield make
    for fifo in made:
        try:  # succeeds only if an app still waits on it: let it finish
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            continue
        os.close(fd)


def hold(server, fifo, answers):
    """Send /hold?FIFO in a thread; its answer (or b"" if cut) goes into ``answers``."""
    variables = {"REQUEST_METHOD": "GET", "REQUEST_URI": f"/hold?{fifo}", "PATH_INFO": "/hold",
                 "QUERY_STRING": str(fifo), "SERVER_PROTOCOL": "HTTP/1.1"}
    thread = threading.Thread(target=lambda: answers.append(
        exchange_raw(server.address, encode_request(variables, 0), timeout=60)))
    thread.start()
    return thread


def release(fifo, data=b"released"):
    with open(fifo, "wb") as pipe:  # blocks until the app has the pipe open: it is in the app
        pipe.write(data)


# --- what is counted -----------------------------------------------------------------------


def test_counts_requests_by_status_class_with_their_bytes_and_durations(stats_server, model):
    server = stats_server("--workers", "2")
    sent = received = 0
    for size, body_size in [(0, 0), (1, 3), (10, 0), (1000, 100), (65536, 7)]:
        answer = request(server.address, f"/200?{size}", method="POST", body=b"b" * body_size)
        assert answer.status == 200 and len(answer.body) == size
        sent += len(answer.raw)
        received += body_size
    for _ in range(2):
        answer = request(server.address, "/404?5")
        assert answer.status == 404
        sent += len(answer.raw)
    metrics = scrape(server)
    assert metrics("scgikit_requests_total", model=model, status="2xx") == 5
    assert metrics("scgikit_requests_total", model=model, status="4xx") == 2
    for other in ("1xx", "3xx", "5xx", "other", "none"):
        assert metrics("scgikit_requests_total", model=model, status=other) == 0
    assert metrics("scgikit_request_body_bytes_total", model=model) == received
    assert metrics("scgikit_response_bytes_total", model=model) == sent
    assert metrics("scgikit_request_duration_seconds_count", model=model) == 7
    assert metrics("scgikit_request_duration_seconds_bucket", model=model, le="+Inf") == 7
    assert metrics("scgikit_request_duration_seconds_sum", model=model) > 0
    # The gauge drops once the worker has finished with the connection (just after the
    # answer's end, which the client may see first).
    scrape_until(server, lambda m: m("scgikit_requests_in_flight", model=model) == 0,
                 "no request in flight")
    assert metrics("scgikit_workers") == 2
    assert metrics("scgikit_worker_starts_total") == 2
    assert metrics.families["scgikit_request_duration_seconds"] == "histogram"
    assert metrics.families["scgikit_requests"] == "counter"


def test_histogram_puts_a_held_request_in_the_buckets_its_duration_allows(
        stats_server, model, gates):
    server = stats_server("--workers", "1")
    fifo = gates()
    answers = []
    sent = time.monotonic()
    thread = hold(server, fifo, answers)
    scrape_until(server, lambda m: m("scgikit_requests_in_flight", model=model) == 1,
                 "the held request in flight")
    in_app = time.monotonic()  # the request was accepted before this
    scrape(server)
    release(fifo)
    released = time.monotonic()  # and answered after this
    thread.join(30)
    answered = time.monotonic()
    assert answers and answers[0].endswith(b"released")
    metrics = scrape_until(
        server, lambda m: m("scgikit_request_duration_seconds_count", model=model) == 1,
        "the held request counted")
    duration = metrics("scgikit_request_duration_seconds_sum", model=model)
    assert released - in_app <= duration <= answered - sent
    buckets = sorted((float(dict(labels)["le"]), value) for (name, labels), value
                     in metrics.samples.items()
                     if name == "scgikit_request_duration_seconds_bucket")
    assert len(buckets) == 16
    for bound, value in buckets:  # cumulative: 0 below the duration, 1 from it on
        assert value == (1 if bound >= duration else 0), (bound, duration)


def test_requests_in_flight_shows_a_request_held_in_the_app(stats_server, model, gates):
    server = stats_server("--workers", "1")
    fifo = gates()
    answers = []
    thread = hold(server, fifo, answers)
    scrape_until(server, lambda m: m("scgikit_requests_in_flight", model=model) == 1,
                 "one request in flight")
    release(fifo)
    thread.join(30)
    metrics = scrape_until(server, lambda m: m("scgikit_requests_in_flight", model=model) == 0,
                           "no request in flight")
    assert metrics("scgikit_requests_total", model=model, status="2xx") == 1


def test_counters_survive_recycled_workers_and_count_their_exits(stats_server, model):
    server = stats_server("--workers", "1", "--max-requests", "3")
    # A retiring worker also serves the connections queued at that moment, so a worker
    # may answer more than 3: requests go on until two workers were recycled.
    count = sent = 0
    while scrape(server)("scgikit_worker_exits_total", reason="recycled") < 2:
        answer = request(server.address, f"/200?{count}")
        assert answer.status == 200
        count += 1
        sent += len(answer.raw)
        assert count <= 40, "no worker recycled after 40 requests"
    assert count >= 6
    metrics = scrape(server)
    assert metrics("scgikit_requests_total", model=model, status="2xx") == count
    assert metrics("scgikit_request_duration_seconds_count", model=model) == count
    assert metrics("scgikit_response_bytes_total", model=model) == sent
    assert metrics("scgikit_worker_starts_total") == 3
    for reason in ("timed_out", "crashed", "stopped", "boot_failed"):
        assert metrics("scgikit_worker_exits_total", reason=reason) == 0


@pytest.mark.models("sync", reason="threads and asyncio end the request past --timeout, not "
                   "the worker (test_request_timeout.py)")
def test_a_worker_killed_by_timeout_counts_as_timed_out(stats_server, model, gates):
    server = stats_server("--workers", "1", "--timeout", "1")
    fifo = gates("never-opened")
    answers = []
    thread = hold(server, fifo, answers)
    metrics = scrape_until(server, lambda m: m("scgikit_worker_exits_total",
                                               reason="timed_out") == 1, "a timed-out worker")
    thread.join(30)
    assert answers == [b""]  # cut: the worker was killed with the request
    assert metrics("scgikit_worker_exits_total", reason="crashed") == 0
    metrics = scrape_until(server, lambda m: m("scgikit_workers") == 1 and m(
        "scgikit_worker_starts_total") == 2, "the replacement worker")
    assert metrics("scgikit_requests_in_flight", model=model) == 0
    assert request(server.address, "/200?2").status == 200


def test_a_crashed_worker_and_a_reload_count_their_exits(stats_server, model):
    server = stats_server("--workers", "1")
    assert request(server.address, "/200").status == 200
    pid = next(iter(_workers(server.pid)))
    os.kill(pid, signal.SIGKILL)
    scrape_until(server, lambda m: m("scgikit_worker_exits_total", reason="crashed") == 1,
                 "a crashed worker")
    server.send_signal(signal.SIGHUP)  # a new generation; the old worker is stopped
    metrics = scrape_until(server, lambda m: m("scgikit_worker_exits_total",
                                               reason="stopped") == 1, "a stopped worker")
    assert metrics("scgikit_requests_total", model=model, status="2xx") == 1
    assert metrics("scgikit_worker_starts_total") == 3


def test_error_answers_of_the_server_itself_are_counted(stats_server, model):
    server = stats_server("--workers", "1", "--max-header-size", "200")
    variables = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "HTTP_X": "x" * 500}
    raw = exchange_raw(server.address, encode_request(variables, 0))
    assert raw.startswith(b"Status: 431")
    metrics = scrape_until(server, lambda m: m("scgikit_requests_total", model=model,
                                               status="4xx") == 1, "the 431 counted")
    assert metrics("scgikit_requests_total", model=model, status="2xx") == 0


# --- the threads model loses no increment ----------------------------------------------------


@pytest.mark.models("threads", reason="threads of one worker recording at once")
def test_threads_recording_at_once_lose_no_increment(stats_server, model):
    server = stats_server("--workers", "1", "--threads", "8")
    count = 400

    def one(number):
        answer = request(server.address, f"/200?{number % 50}", method="POST", body=b"q" * 3)
        assert answer.status == 200
        return len(answer.raw)

    with ThreadPoolExecutor(16) as pool:
        sent = sum(pool.map(one, range(count)))
    metrics = scrape(server)
    assert metrics("scgikit_requests_total", model="threads", status="2xx") == count
    assert metrics("scgikit_request_duration_seconds_count", model="threads") == count
    assert metrics("scgikit_request_body_bytes_total", model="threads") == 3 * count
    assert metrics("scgikit_response_bytes_total", model="threads") == sent
    scrape_until(server, lambda m: m("scgikit_requests_in_flight", model="threads") == 0,
                 "no request in flight")


# --- the endpoint ------------------------------------------------------------------------


@pytest.mark.models("sync", "threads", reason="workers busy with all the requests they can "
                   "hold; an asyncio worker holds any number")
def test_metrics_answer_while_every_worker_is_busy(stats_server, model, gates):
    capacity = 2 if model == "sync" else 4  # 2 sync workers; 1 worker of 4 threads
    server = stats_server("--workers", "2" if model == "sync" else "1")
    fifos = []
    answers = []
    threads = []
    for number in range(capacity):
        fifo = gates(f"gate{number}")
        fifos.append(fifo)
        threads.append(hold(server, fifo, answers))
    metrics = scrape_until(server, lambda m: m("scgikit_requests_in_flight",
                                               model=model) == capacity, "every worker busy")
    assert metrics("scgikit_workers") == (2 if model == "sync" else 1)
    for fifo in fifos:
        release(fifo)
    for thread in threads:
        thread.join(30)
    assert len(answers) == capacity


@MASTER
def test_a_silent_stats_client_does_not_hold_up_the_next_scrape(stats_server):
    server = stats_server("--workers", "1")
    with connect(server.stats) as silent, connect(server.stats) as partial:
        partial.sendall(b"GET /metr")
        assert scrape(server)("scgikit_workers") == 1
        # Both are dropped at their deadline, without an answer.
        silent.settimeout(20)
        partial.settimeout(20)
        assert silent.recv(100) == b""
        assert partial.recv(100) == b""


@MASTER
def test_the_endpoint_answers_only_get_and_head_of_slash_metrics(stats_server):
    server = stats_server("--workers", "1")
    assert http_get(server.stats, "/")[0] == 404
    assert http_get(server.stats, "/metrics/x")[0] == 404
    assert http_get(server.stats, "/metrics", method="POST")[0] == 405
    status, headers, body = http_get(server.stats, "/metrics", method="HEAD")
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""
    status, _, body = http_get(server.stats, "/metrics?name[]=x")
    assert status == 200 and b"scgikit_workers 1" in body
    with connect(server.stats) as sock:
        sock.sendall(b"GET /" + b"x" * 10000)
        assert sock.recv(100).startswith(b"HTTP/1.0 431 ")


def test_unix_stats_socket_is_removed_at_stop(serve, tmp_path):
    path = tmp_path / "stats.sock"
    server = serve("stats_apps:app", "--workers", "1", "--stats", str(path))
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert server.stop() == 0
    assert not path.exists()


def test_without_stats_nothing_is_served_or_logged(serve):
    server = serve("stats_apps:app", "--workers", "1")
    assert request(server.address, "/200?3").body == b"xxx"
    assert "Metrics at" not in server.log


@pytest.mark.parametrize("address, message", [
    ("::1:9", "--stats: '::1:9': write IPv6 addresses in brackets"),
    ("127.0.0.1:99999", "--stats: '127.0.0.1:99999': port must be a number"),
])
def test_an_unusable_stats_address_is_one_line_naming_the_option(address, message):
    result = subprocess.run([sys.executable, "-m", "scgikit", "serve", "stats_apps:app",
                             "--stats", address], env=child_env(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stats_port_in_use_is_refused_naming_the_option():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "scgikit", "serve", "stats_apps:app",
                                 "--bind", "127.0.0.1:0", "--stats", f"127.0.0.1:{port}"],
                                env=child_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"--stats: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def _workers(master):
    from servers import worker_pids

    return wait_until(lambda: worker_pids(master), message="a worker")


def test_a_request_whose_head_never_completes_counts_as_unanswered(stats_server, model):
    server = stats_server("--workers", "1", "--header-timeout", "1")
    with connect(server.address) as sock:
        sock.sendall(b"70:CONTENT_LENGTH")
        assert sock.recv(100) == b""  # closed at the deadline, unanswered
    metrics = scrape_until(server, lambda m: m("scgikit_requests_total", model=model,
                                               status="none") == 1, "the unanswered request")
    assert metrics("scgikit_request_duration_seconds_count", model=model) == 0


@MASTER
def test_a_reload_onto_an_app_that_cannot_load_counts_a_failed_boot(serve, tmp_path, model):
    app = tmp_path / "reloaded.py"
    app.write_text("def app(e, s):\n    s('200 OK', [])\n    return [b'version 1']\n")
    server = serve(f"{app}:app", "--workers", "1", "--stats", "127.0.0.1:0")
    server.stats = server.wait_for_log(r"Metrics at: (\S+)")[0].group(1)
    assert request(server.address, "/").body == b"version 1"
    app.write_text("import os\nos.abort()\n")
    server.send_signal(signal.SIGHUP)
    metrics = scrape_until(server, lambda m: m("scgikit_worker_exits_total",
                                               reason="boot_failed") == 1, "a failed boot")
    assert metrics("scgikit_worker_starts_total") == 2
    assert metrics("scgikit_workers") == 1
    assert metrics("scgikit_requests_total", model="sync", status="2xx") == 1
    assert request(server.address, "/").body == b"version 1"


def test_a_connection_closed_before_its_first_byte_is_not_counted(stats_server, model):
    server = stats_server("--workers", "1")
    for _ in range(3):
        connect(server.address).close()
    assert request(server.address, "/200?1").status == 200
    metrics = scrape(server)
    assert metrics("scgikit_requests_total", model=model, status="2xx") == 1
    assert metrics("scgikit_requests_total", model=model, status="none") == 0


@MASTER
def test_a_stats_client_open_while_a_worker_forks_still_gets_its_end(stats_server):
    # A worker forked while a scrape is in progress must not keep a copy of its socket:
    # the client would see the answer but no end until that worker exits.
    server = stats_server("--workers", "1")
    assert request(server.address, "/200").status == 200  # the worker is ready
    with connect(server.stats, timeout=10) as partial:
        partial.sendall(b"GET /metr")
        scrape(server)  # accepted after the partial one: that one is the master's now
        os.kill(next(iter(_workers(server.pid))), signal.SIGKILL)
        scrape_until(server, lambda m: m("scgikit_worker_starts_total") == 2 and m(
            "scgikit_workers") == 1, "the replacement worker")
        partial.sendall(b"ics HTTP/1.0\r\n\r\n")
        raw = b""
        while chunk := partial.recv(65536):  # a TimeoutError here: no end
            raw += chunk
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"scgikit_worker_exits_total{reason=\"crashed\"} 1" in raw
