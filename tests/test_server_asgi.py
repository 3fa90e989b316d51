"""ASGI apps on the asyncio worker, served by a real ``scgikit serve`` over TCP and unix sockets.

The scope, streamed bodies both ways, pathsend, app failures, lifespan (state, start-up
failures, shutdown, a failed reload) and the model's figures: one worker serving 500
requests that each wait a second, an idle flood, and a stuck coroutine replaced.
"""

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from figures import record
from floods import (
    open_descriptors,
    p99_behind_flood,
    raise_descriptor_limit,
    settled_descriptors,
)
from scgi_raw import connect, connect_until_refused, parse_answer, read_all, request
from servers import child_env, failed_start, serve_and_stop_above_1023, wait_until, worker_pids

from scgikit.addresses import parse_address
from scgikit.protocol import encode_request

try:
    import uvloop  # noqa: F401

    LOOPS = ["asyncio", "uvloop"]
except ImportError:
    LOOPS = ["asyncio"]


@pytest.fixture(autouse=True, params=LOOPS)
def loop(request, monkeypatch):
    """Every scenario on each event loop there is: servers read SCGIKIT_LOOP (an explicit
    --loop wins)."""
    monkeypatch.setenv("SCGIKIT_LOOP", request.param)
    return request.param


def kind(transport):
    return "unix" if transport.startswith("unix:") else "tcp"


@pytest.fixture
def asgi(serve, transport):
    """A one-worker server for one app of asgi_apps.py."""

    def start(app, *args, **kwargs):
        return serve(f"asgi_apps:{app}", "--workers", "1", "--log-level", "debug", *args,
                     bind=[transport], **kwargs)

    return start


def scope_of(answer):
    assert answer.status == 200, answer.raw[:500]
    return json.loads(answer.body)


def worker_of(server):
    """The first worker, once it is ready (the server logs at debug level)."""
    (pid,) = ready_workers(server, 1)
    return pid


def memory_kib(pid, field):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def ready_workers(server, count):
    """The pids of the first ``count`` workers, once each has said it is ready."""
    found = server.wait_for_log(r"Worker (\d+) ready", count=count, timeout=20)
    return {int(match.group(1)) for match in found[:count]}


# --- the scope ---------------------------------------------------------------------------

def test_scope_holds_the_request_as_asgi_wants_it(asgi):
    server = asgi("scope_json")
    answer = request(server.address, "/caf%C3%A9/a%2Fb?x=1&y=%20", method="POST", body=b"hi",
                     env={"HTTP_COOKIE": "a=1, b=2", "HTTP_X_CUSTOM_THING": "v",
                          "CONTENT_TYPE": "text/plain", "REMOTE_PORT": "5555",
                          "SERVER_NAME": "example.org", "SERVER_PORT": "8443", "HTTPS": "on",
                          "SERVER_PROTOCOL": "HTTP/2.0", "X_FRONT_END_ONLY": "kept",
                          "SERVER_SOFTWARE": "Apache/2.4.62 (Debian)"})
    scope = scope_of(answer)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "2"
    assert scope["method"] == "POST"
    assert scope["scheme"] == "https"
    assert scope["path"] == "/café/a/b"
    assert scope["raw_path"] == "/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    headers = dict(scope["headers"])
    assert headers["cookie"] == "a=1; b=2"  # Apache's join of two Cookie lines, merged
    assert headers["x-custom-thing"] == "v"
    assert headers["content-type"] == "text/plain"
    assert headers["content-length"] == "2"
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert scope["client"] == ["127.0.0.1", 5555]
    assert scope["server"] == ["example.org", 8443]
    assert scope["state"] == {}
    variables = scope["extensions"]["scgi"]["variables"]
    assert variables["X_FRONT_END_ONLY"] == "kept"
    assert variables["REQUEST_URI"] == "/caf%C3%A9/a%2Fb?x=1&y=%20"
    assert "http.response.pathsend" in scope["extensions"]
    assert scope["body"] == "hi"


def test_root_path_is_the_script_name_and_the_path_includes_it(asgi):
    server = asgi("scope_json", "--script-name", "/app")
    scope = scope_of(request(server.address, "/app/x%20y?q"))
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
        "/app", "/app/x y", "/app/x%20y")
    assert scope["query_string"] == "q"


def test_script_name_and_path_info_sent_by_the_front_end_are_kept(asgi):
    server = asgi("scope_json")
    scope = scope_of(request(server.address, "/mount/in/side",
                             env={"SCRIPT_NAME": "/mount", "PATH_INFO": "/in/side"}))
    assert (scope["root_path"], scope["path"]) == ("/mount", "/mount/in/side")


def test_server_defaults_to_the_listener_and_client_may_be_absent(asgi, transport):
    server = asgi("scope_json")
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/"}, 0))
        scope = scope_of(parse_answer(read_all(sock)))
    assert scope["client"] is None
    assert scope["http_version"] == "1.1"
    if kind(transport) == "tcp":
        assert scope["server"] == ["127.0.0.1", int(server.address.rsplit(":", 1)[1])]
    else:
        assert scope["server"] == ["localhost", 80]


# --- bodies --------------------------------------------------------------------------------

def test_request_body_of_megabytes_streams_in_messages_without_being_held(asgi):
    server = asgi("body_messages")
    pid = worker_of(server)
    request(server.address, "/", method="POST", body=b"warm up" * 1000)
    before = memory_kib(pid, "VmRSS")
    body = os.urandom(24 * 1024 * 1024)
    answer = request(server.address, "/upload", method="POST", body=body, timeout=60)
    seen = json.loads(answer.body)
    assert seen["size"] == len(body)
    assert seen["sha256"] == hashlib.sha256(body).hexdigest()
    assert seen["messages"] > 10 and seen["largest"] <= 256 * 1024
    peak = memory_kib(pid, "VmHWM")
    print(f"RSS before {before} KiB, peak after {peak} KiB")
    # Holding the body would add 24 MiB; a streamed one adds the socket's few chunks.
    assert peak - before < 8 * 1024, f"worker RSS grew from {before} to a peak of {peak} KiB"


def test_small_body_comes_whole_in_one_message(asgi):
    server = asgi("body_messages")
    seen = json.loads(request(server.address, "/", method="POST", body=b"z" * 5000).body)
    assert (seen["size"], seen["messages"]) == (5000, 1)


def test_empty_body_is_one_empty_message(asgi):
    server = asgi("body_messages")
    seen = json.loads(request(server.address, "/").body)
    assert (seen["size"], seen["messages"]) == (0, 1)


def test_response_streams_chunk_by_chunk(asgi):
    server = asgi("chunks")
    with connect(server.address) as sock:
        started = time.monotonic()
        sock.sendall(encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/"}, 0))
        first = sock.recv(65536)
        first_at = time.monotonic() - started
        rest = read_all(sock)
        total = time.monotonic() - started
    assert first.startswith(b"Status: 200 OK\r\n")
    assert b"part 0" in first and b"part 2" not in first
    assert first_at < 0.35 < 0.7 < total
    assert parse_answer(first + rest).body == b"part 0\npart 1\npart 2\n"


def test_pathsend_sends_the_file(asgi, tmp_path):
    server = asgi("pathsend")
    data = os.urandom(3 * 1024 * 1024 + 11)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    answer = request(server.address, f"/?{path}")
    assert answer.status == 200
    assert answer.header("Content-Length") == str(len(data))
    assert answer.body == data


def test_unread_body_is_drained_so_the_answer_arrives(asgi):
    server = asgi("hello")
    answer = request(server.address, "/", method="POST", body=b"u" * (3 * 1024 * 1024))
    assert (answer.status, answer.body) == (200, b"hello")


def test_body_past_body_timeout_is_answered_408(asgi):
    server = asgi("body_messages", "--body-timeout", "1", "--body-buffer-size", "1k")
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "POST"}, 10_000) + b"x" * 3000)
        answer = parse_answer(read_all(sock))
    assert answer.status == 408
    server.wait_for_log(r"client sent 3000 of 10000 body bytes within --body-timeout 1s")


# --- failures ------------------------------------------------------------------------------

def test_app_raising_before_its_response_gets_500_without_the_traceback(asgi):
    server = asgi("fail_before_start")
    answer = request(server.address, "/boom")
    assert answer.status == 500
    assert b"secret" not in answer.raw and b"Traceback" not in answer.raw
    server.wait_for_log(r"App error on GET /boom")
    server.wait_for_log(r"RuntimeError: secret detail")
    assert request(server.address, "/again").status == 500  # the worker goes on


def test_app_raising_after_its_response_started_cuts_it(asgi):
    server = asgi("fail_after_start")
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/half"}, 0))
        raw = read_all(sock)
    assert raw.startswith(b"Status: 200 OK\r\n")
    assert raw.endswith(b"\r\n\r\n" + b"x" * 100)  # 100 of the 1000 bytes announced
    server.wait_for_log(r"App error on GET /half; the response was cut short")
    server.wait_for_log(r"RuntimeError: failed half way")


def test_app_whose_task_is_cancelled_before_its_response_gets_500(asgi):
    # CancelledError is no Exception: it must not leave the front end without an answer.
    server = asgi("cancelled_before_start")
    assert request(server.address, "/cancel").status == 500
    server.wait_for_log(r"App error on GET /cancel")
    assert request(server.address, "/again").status == 500  # the worker goes on


def test_app_returning_without_a_response_gets_500(asgi):
    server = asgi("no_response")
    assert request(server.address, "/nothing").status == 500
    server.wait_for_log(r"App error on GET /nothing: the app returned without a response")


def test_front_end_closing_is_an_http_disconnect(asgi):
    server = asgi("wait_for_disconnect")
    sock = connect(server.address)
    sock.sendall(encode_request({"REQUEST_METHOD": "POST"}, 3) + b"abc")
    server.wait_for_log("waiting for disconnect")
    sock.close()
    server.wait_for_log("received http.disconnect")


def test_send_after_the_front_end_left_raises_an_oserror(asgi):
    server = asgi("send_after_disconnect")
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "GET"}, 0))
        assert sock.recv(1000).startswith(b"Status: 200")
    server.wait_for_log(r"send raised ClientDisconnected \(an OSError\)")
    server.wait_for_log(r"Front end closed the connection during the response")
    assert "Traceback" not in server.log


# --- lifespan ------------------------------------------------------------------------------

def test_lifespan_state_reaches_requests_and_shutdown_runs_on_stop(serve, transport, tmp_path):
    mark = tmp_path / "shutdown.txt"
    server = serve("asgi_apps:with_lifespan", "--workers", "2", "--log-level", "debug",
                   bind=[transport], env=child_env(LIFESPAN_MARK=str(mark)))
    pids = ready_workers(server, 2)
    greetings = {request(server.address, "/").body for _ in range(20)}
    assert greetings <= {f"hello from {pid}".encode() for pid in pids}
    assert server.stop(signal.SIGTERM) == 0
    assert sorted(mark.read_text().split("\n")[:-1]) == sorted(f"shutdown {pid}" for pid in pids)


def test_startup_failure_at_first_start_stops_the_master_with_status_4_and_the_cause():
    server = failed_start("asgi_apps:startup_fails")
    assert server.proc.returncode == 4
    server.wait_for_log(r"Cannot load the app: ASGI lifespan startup failed: database "
                        r"unreachable")
    server.wait_for_log(r"Worker failed to boot; stopping with exit status 4")


def test_lifespan_on_refuses_an_app_without_lifespan_support():
    server = failed_start("asgi_apps:without_lifespan", "--lifespan", "on")
    assert server.proc.returncode == 4
    server.wait_for_log(r"--lifespan on: the app raised AssertionError\('unsupported scope "
                        r"lifespan'\) instead of completing its lifespan startup")


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_lifespan_auto_and_off_serve_an_app_without_lifespan_support(serve, mode):
    server = serve("asgi_apps:without_lifespan", "--workers", "1", "--lifespan", mode,
                   "--log-level", "debug")
    assert request(server.address, "/").body == b"served without lifespan"
    if mode == "auto":
        server.wait_for_log(r"does not support ASGI lifespan \(it raised AssertionError")
    assert "ERROR" not in server.log


def test_reload_onto_a_failing_startup_keeps_the_old_workers(serve, tmp_path):
    app = tmp_path / "reloaded_asgi.py"
    app.write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] == 'lifespan':\n"
        "        await receive()\n"
        "        await send({'type': 'lifespan.startup.complete'})\n"
        "        await receive()\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'version 1'})\n")
    server = serve(f"{app}:app", "--workers", "2", "--lifespan", "on", "--log-level", "debug")
    old = ready_workers(server, 2)
    app.write_text(
        "async def app(scope, receive, send):\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', 'message': 'no database'})\n")
    server.send_signal(signal.SIGHUP)
    server.wait_for_log("Reload failed", timeout=30)
    server.wait_for_log("ASGI lifespan startup failed: no database")
    wait_until(lambda: worker_pids(server.pid) == old, message="only the old workers")
    assert {request(server.address, "/").body for _ in range(10)} == {b"version 1"}


# --- models and loops ----------------------------------------------------------------------

def test_asgi_app_on_the_sync_model_is_refused_at_start():
    server = failed_start("asgi_apps:hello", "--worker", "sync")
    assert server.proc.returncode == 4
    server.wait_for_log(r"an ASGI app needs --worker asyncio, not --worker sync")


def test_wsgi_app_on_the_asyncio_model_is_refused_at_start():
    server = failed_start("wsgi_apps:hello", "--worker", "asyncio")
    assert server.proc.returncode == 4
    server.wait_for_log(r"--worker asyncio serves ASGI apps; this is a wsgi app")


def test_each_event_loop_serves(serve, transport, loop):
    server = serve("asgi_apps:body_messages", "--workers", "1", "--log-level", "debug",
                   bind=[transport])
    server.wait_for_log(rf"serving on the {loop} event loop")
    body = os.urandom(700_000)
    seen = json.loads(request(server.address, "/", method="POST", body=body).body)
    assert seen["sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.skipif("uvloop" in LOOPS, reason="uvloop is installed")
def test_loop_uvloop_without_uvloop_installed_fails_to_start():
    server = failed_start("asgi_apps:hello", "--loop", "uvloop")
    assert server.proc.returncode == 4
    server.wait_for_log(r"--loop uvloop: uvloop is not installed")


# --- signals -------------------------------------------------------------------------------

def test_graceful_stop_lets_requests_in_flight_finish(asgi):
    server = asgi("sleepy")
    worker = worker_of(server)
    baseline = settled_descriptors(worker)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        request(server.address, "/?5", timeout=30).body)) for _ in range(20)]
    for thread in threads:
        thread.start()
    wait_until(lambda: open_descriptors(worker) >= baseline + 20, message="requests in flight")
    assert server.stop(signal.SIGTERM) == 0
    for thread in threads:
        thread.join(30)
    assert results == [b"slept"] * 20


def test_a_stop_that_waits_says_what_for(asgi):
    """As on the WSGI models (test_server_stop.py), with a request in the app too: one
    that waits for its client to go."""
    server = asgi("wait_for_disconnect")
    whole = encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/"}, 0)
    with connect(server.address, timeout=30) as in_app, \
            connect(server.address, timeout=30) as half:
        in_app.sendall(whole)
        server.wait_for_log("waiting for disconnect")
        half.sendall(whole[:10])
        server.send_signal(signal.SIGTERM)
        server.wait_for_log(r"Stopping; still waiting for: 1 in the app, 1 connections")
    server.wait_for_log("received http.disconnect")
    assert server.proc.wait(30) == 0


def test_a_stop_signal_between_ready_and_the_loop_is_not_lost(transport):
    """uvloop reads signals only while it runs: a SIGTERM that reached a worker after it
    said "ready" and before its loop ran was lost, and the stop waited out
    --graceful-timeout.  tests/stop_before_the_loop.py sends it in that window."""
    script = Path(__file__).with_name("stop_before_the_loop.py")
    done = subprocess.run([sys.executable, str(script), transport], env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "stopped\n"), done.stderr


def test_full_stop_serves_connections_waiting_in_the_listen_queue(serve, transport):
    server = serve("asgi_apps:sleepy", "--workers", "1", "--log-level", "debug",
                   bind=[transport])
    worker = worker_of(server)
    os.kill(worker, signal.SIGSTOP)  # the queue fills while the worker cannot accept
    socks = []
    try:
        for _ in range(10):
            sock = connect(server.address)
            sock.sendall(encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": "0.1"}, 0))
            socks.append(sock)
        server.send_signal(signal.SIGINT)  # the master passes it on, and starts no other
        server.wait_for_log("Graceful stop")
    finally:
        os.kill(worker, signal.SIGCONT)
    answers = [parse_answer(read_all(sock)).body for sock in socks]
    assert answers == [b"slept"] * 10
    assert server.proc.wait(30) == 0
    for sock in socks:
        sock.close()


def test_a_stopping_server_answers_or_refuses_every_new_connection(asgi):
    # As on the WSGI models (test_server_stop.py): while a stop waits for a request in
    # flight, a new connection is answered or never established, never queued and reset.
    server = asgi("sleepy")
    worker = worker_of(server)
    baseline = settled_descriptors(worker)
    held = []
    thread = threading.Thread(target=lambda: held.append(
        request(server.address, "/?3", timeout=30).body))
    thread.start()
    wait_until(lambda: open_descriptors(worker) > baseline, message="the request in flight")
    server.send_signal(signal.SIGTERM)
    server.wait_for_log("Graceful stop")
    quick = encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": "0.01"}, 0)
    outcomes = connect_until_refused(server.address, quick)
    thread.join(30)
    assert held == [b"slept"]
    assert outcomes and outcomes[-1] == "refused", outcomes
    assert set(outcomes[:-1]) <= {200, "no handshake"}, outcomes
    assert server.proc.wait(30) == 0


def test_quit_stops_at_once_even_with_requests_in_flight(asgi):
    server = asgi("sleepy")
    worker = worker_of(server)
    baseline = settled_descriptors(worker)
    sock = connect(server.address)
    sock.sendall(encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": "60"}, 0))
    wait_until(lambda: open_descriptors(worker) > baseline, message="the request in hand")
    started = time.monotonic()
    server.stop(signal.SIGQUIT, timeout=10)
    assert time.monotonic() - started < 5
    wait_until(lambda: not os.path.exists(f"/proc/{worker}"), message="the worker gone")
    sock.close()


def test_worker_exits_when_its_master_dies(asgi):
    server = asgi("hello")
    worker = worker_of(server)
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)
    wait_until(lambda: not os.path.exists(f"/proc/{worker}") or
               " Z " in open(f"/proc/{worker}/stat").read(), timeout=10,
               message="the orphaned worker to exit")


def test_a_recycling_worker_answers_every_connection_of_its_last_pass_over_the_queue(
        serve, transport):
    # The first request reaches --max-requests; the worker's last pass over the listen
    # queue then takes the other nine: some answered within that pass (at once, on
    # Python 3.12+: the first of them before any other is running), some after a wait.
    # The worker ends only once all are answered.
    server = serve("asgi_apps:sleepy", "--workers", "1", "--max-requests", "1",
                   "--log-level", "debug", bind=[transport])
    worker = worker_of(server)
    os.kill(worker, signal.SIGSTOP)  # the queue fills while the worker cannot accept
    socks = []
    try:
        for query in ["", "", "0.1", "", "0.1", "", "0.1", "", "0.1", ""]:
            sock = connect(server.address)
            sock.sendall(encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": query}, 0))
            socks.append(sock)
    finally:
        os.kill(worker, signal.SIGCONT)
    answers = [parse_answer(read_all(sock)).body for sock in socks]
    assert answers == [b"slept"] * 10
    server.wait_for_log(r"Worker recycled after 10 requests")
    for sock in socks:
        sock.close()


def test_recycling_runs_the_lifespan_shutdown(serve, transport, tmp_path):
    mark = tmp_path / "shutdown.txt"
    server = serve("asgi_apps:with_lifespan", "--workers", "1", "--max-requests", "3",
                   "--log-level", "debug", bind=[transport],
                   env=child_env(LIFESPAN_MARK=str(mark)))
    first = worker_of(server)
    for _ in range(3):
        assert request(server.address, "/").body == f"hello from {first}".encode()
    server.wait_for_log(r"Worker recycled after 3 requests")
    # The file appears before its line is written: wait for the line.
    wait_until(lambda: mark.exists() and mark.read_text().endswith("\n"), message="the mark")
    assert mark.read_text() == f"shutdown {first}\n"
    assert request(server.address, "/").body != f"hello from {first}".encode()


def test_worker_out_of_descriptors_backs_off_then_recycles_and_service_resumes(
        serve, transport, tmp_path):
    env = child_env(LEAK_MARK=str(tmp_path / "leaking"))
    server = serve("asgi_apps:leak_descriptors", "--workers", "1", "--log-level", "debug",
                   bind=[transport], env=env, limit_descriptors=64)
    leaker = worker_of(server)
    assert request(server.address, "/", timeout=5).body == str(leaker).encode()
    # Its descriptors are soon all gone (waited for: on a loaded machine the leak takes
    # a while): a connection then waits in the listen queue until the worker gives up
    # and is replaced.
    wait_until(lambda: open_descriptors(leaker) >= 64, message="the leak to take them all")
    for _ in range(20):
        answer = request(server.address, "/", timeout=60)
        assert answer.status == 200
        if int(answer.body) != leaker:
            break
    assert int(answer.body) != leaker
    server.wait_for_log("recycling this worker")
    assert 1 <= server.log.count("Cannot accept a connection") <= 2


# --- bad input: the shared intake rules -----------------------------------------------------

def test_malformed_head_is_answered_400_and_logged(asgi):
    server = asgi("hello")
    with connect(server.address) as sock:
        sock.sendall(b"12x:abc")
        answer = parse_answer(read_all(sock))
    assert answer.status == 400
    server.wait_for_log(r"Bad request: ")
    assert request(server.address, "/").status == 200


def test_http_request_on_the_scgi_port_gets_the_explanation(asgi):
    server = asgi("hello")
    with connect(server.address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_all(sock)
    assert raw.startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert b"This is an SCGI endpoint" in raw


def test_head_past_header_timeout_is_closed_without_an_answer(asgi):
    server = asgi("hello", "--header-timeout", "1")
    with connect(server.address) as sock:
        sock.sendall(b"70:CONTENT")
        started = time.monotonic()
        assert read_all(sock) == b""
        assert 0.5 < time.monotonic() - started < 5
    server.wait_for_log(r"client sent no complete header within --header-timeout 1s")


def test_request_dripped_in_pieces_is_served_once_whole_while_others_are(asgi):
    server = asgi("body_messages")
    body = b"d" * 40
    data = encode_request({"REQUEST_METHOD": "POST"}, len(body)) + body
    with connect(server.address) as slow:
        for index in range(0, len(data), 25):
            slow.sendall(data[index:index + 25])
            assert request(server.address, "/", timeout=5).status == 200
        seen = json.loads(parse_answer(read_all(slow)).body)
    assert (seen["size"], seen["messages"]) == (40, 1)


# --- the figures ---------------------------------------------------------------------------

async def _concurrent(address, count, uri):
    addr = parse_address(address)

    async def one():
        if addr.path is not None:
            reader, writer = await asyncio.open_unix_connection(addr.path)
        else:
            reader, writer = await asyncio.open_connection(*addr.sockaddr[:2])
        path, _, query = uri.partition("?")
        writer.write(encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": uri,
                                     "QUERY_STRING": query}, 0))
        raw = await reader.read()
        writer.close()
        return parse_answer(raw)

    return await asyncio.gather(*(one() for _ in range(count)))


def test_one_worker_serves_500_requests_waiting_a_second_each_at_once(asgi, transport, loop):
    server = asgi("sleepy", "--backlog", "2048")
    raise_descriptor_limit(2048)
    quick = []

    def meanwhile():
        time.sleep(0.3)
        for _ in range(5):
            started = time.monotonic()
            assert request(server.address, "/?0", timeout=10).body == b"slept"
            quick.append(time.monotonic() - started)

    other = threading.Thread(target=meanwhile)
    other.start()
    started = time.monotonic()
    answers = asyncio.run(_concurrent(server.address, 500, "/?1"))
    took = time.monotonic() - started
    other.join(30)
    assert [answer.body for answer in answers] == [b"slept"] * 500
    record("asyncio: 500 concurrent requests each awaiting sleep(1), one worker (s)",
           kind(transport), seconds=round(took, 2), workers=1, loop=loop)
    assert took < 4.0, f"500 sleeping requests took {took:.2f}s"
    assert len(quick) == 5 and max(quick) < 0.5, quick


def test_one_asyncio_worker_answers_normal_requests_behind_idle_and_dripping_floods(
        asgi, transport, loop):
    server = asgi("hello", "--header-timeout", "60", "--body-timeout", "60")
    p99 = p99_behind_flood(server.address, worker_of(server))
    record("asyncio: idle and drip flood: normal-request p99 (ms)", kind(transport),
           p99_ms=round(p99 * 1000, 1), idle=1000, drip=50, workers=1, loop=loop)
    assert p99 < 0.25, f"p99 {p99:.3f}s behind the flood"
    assert "Traceback" not in server.log


def test_the_oldest_waiting_connection_is_dropped_beyond_max_pending(asgi):
    server = asgi("hello", "--max-pending", "10", "--header-timeout", "60")
    worker_of(server)
    socks = []
    try:
        for _ in range(13):
            sock = connect(server.address, timeout=10)
            sock.sendall(b"1")  # a byte of head, so TCP hands it over at once
            socks.append(sock)
        assert socks[0].recv(100) == b""  # the oldest, closed without an answer
        server.wait_for_log(r"--max-pending 10 reached")
        assert request(server.address, "/", timeout=5).status == 200
    finally:
        for sock in socks:
            sock.close()


def test_a_stuck_coroutine_gets_the_worker_killed_and_replaced(asgi):
    server = asgi("stuck", "--timeout", "1")
    stuck = worker_of(server)
    sock = connect(server.address)
    sock.sendall(encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": "30"}, 0))
    server.wait_for_log("stuck request started")
    server.wait_for_log(rf"Worker {stuck} stuck on one request for over 1(\.0)?s; killing it",
                        timeout=10)
    assert read_all(sock) == b""
    sock.close()
    fresh = wait_until(lambda: worker_pids(server.pid) - {stuck}, message="a new worker")
    assert stuck not in fresh
    answer = request(server.address, "/?0", timeout=10)
    assert answer.body == b"unstuck"


def test_access_log_has_a_line_per_request(asgi):
    server = asgi("hello", "--access-log", "-")
    request(server.address, "/logged?x=1", env={"REMOTE_ADDR": "192.0.2.7"})
    server.wait_for_log(r'192\.0\.2\.7 - - \[.*\] "GET /logged\?x=1 HTTP/1\.1" 200 \d+ "-" "-" '
                        r'\d+\.\d{6} pid=\d+')


def test_allow_from_refuses_other_tcp_peers(serve):
    server = serve("asgi_apps:hello", "--workers", "1", "--allow-from", "10.9.9.9")
    sock = connect(server.address)
    sock.sendall(encode_request({"REQUEST_METHOD": "GET"}, 0))
    try:
        assert sock.recv(100) == b""
    except ConnectionResetError:
        pass
    sock.close()
    server.wait_for_log(r"Refused a connection from 127\.0\.0\.1: not in --allow-from")



def test_a_comma_in_a_cookie_value_behind_nginx_reaches_the_app_unchanged(asgi):
    # Only Apache joins Cookie lines with ", "; elsewhere it is part of a value.
    server = asgi("scope_json")
    scope = scope_of(request(server.address, "/", env={"HTTP_COOKIE": "list=a, b; c=3"}))
    assert dict(scope["headers"])["cookie"] == "list=a, b; c=3"


def test_an_asyncio_server_whose_descriptors_are_numbered_above_1023_serves_and_stops(
        transport):
    # As on the WSGI models (test_server_stop.py): the master's wait and the worker's
    # last look at the listen queue on a full stop, where select() cannot wait.
    serve_and_stop_above_1023("asgi_apps:hello", (), transport)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are Python 3.12's")
@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_answered_without_waiting_is_answered_within_the_call_that_takes_it(loop):
    # In-process: the worker takes a connection whose request is all there, and the
    # answer is on its way before the loop runs anything else (the task ran eagerly).
    import _socket
    import socket

    import asgi_apps

    from scgikit.config import Config
    from scgikit.workers.asyncio import AsyncioWorker
    from scgikit.workers.base import Heartbeat

    heartbeat = Heartbeat(memoryview(bytearray(8)).cast("d"), 0)
    worker = AsyncioWorker(Config(target="x", loop=loop), [], asgi_apps.sleepy, heartbeat,
                           os.getppid())
    worker.start()
    ours, theirs = socket.socketpair()
    try:
        ours.settimeout(5)
        ours.sendall(encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": ""}, 0))

        async def take() -> None:
            worker._take(_socket.socket(theirs.family, theirs.type, 0, theirs.detach()))
            assert not worker.tasks  # done already: nothing left for the loop to run

        worker.loop.run_until_complete(take())
        assert parse_answer(read_all(ours)).body == b"slept"
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGHUP,
                                                    signal.SIGINT, signal.SIGQUIT])
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            worker.loop.remove_signal_handler(signum)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        worker.loop.close()
        asyncio.set_event_loop(None)
        worker.poller.close()
        ours.close()
        theirs.close()
