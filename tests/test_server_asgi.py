"""ASGI apps on the asyncio worker, served by a real ``scgikit serve`` over TCP and unix sockets.

What is ASGI's own: the scope, bodies streamed both ways as messages, pathsend, app
failures as ASGI has them (a cancelled task, no response, a disconnect), lifespan (state,
start-up failures, shutdown, a failed reload), the event loops, eager tasks, and the
model's figure: one worker serving 500 requests that each wait a second.  Every scenario
here runs on each event loop there is.

The server's behaviours (stops and signals, the listen queue, bad input, floods,
--max-pending, --allow-from, the logs, recycling, descriptors above 1023...) are tested
on every worker model, asyncio with the ASGI twins of the apps, in the model tests
(conftest.py: model).
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
    raise_descriptor_limit,
)
from scgi_raw import connect, parse_answer, read_all, request
from servers import child_env, failed_start, wait_until, worker_pids

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


def test_response_streams_chunk_by_chunk(asgi, tmp_path):
    # The app sends its later chunks only once the test has read the first: an answer
    # held back until the end would time out here instead.
    server = asgi("chunks")
    gate = tmp_path / "gate"
    with connect(server.address) as sock:
        sock.settimeout(10)
        sock.sendall(encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/",
                                     "QUERY_STRING": str(gate)}, 0))
        first = b""
        while b"part 0\n" not in first:
            data = sock.recv(65536)
            assert data, first
            first += data
        gate.touch()
        rest = read_all(sock)
    assert first.startswith(b"Status: 200 OK\r\n")
    assert b"part 1" not in first
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


def test_body_past_body_timeout_is_answered_408(asgi):
    server = asgi("body_messages", "--body-timeout", "1", "--body-buffer-size", "1k")
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "POST"}, 10_000) + b"x" * 3000)
        answer = parse_answer(read_all(sock))
    assert answer.status == 408
    server.wait_for_log(r"client sent 3000 of 10000 body bytes within --body-timeout 1s")


# --- failures ------------------------------------------------------------------------------

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

def test_a_stop_that_waits_says_what_for(asgi):
    """As on every model (test_server_stop.py), with a request in the app too: one that
    waits for its client to go (http.disconnect)."""
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


# --- a request dripped in pieces: its body still comes as one message -----------------------

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


def test_one_worker_holds_500_waiting_requests_at_once_and_answers_others_meanwhile(
        asgi, transport, loop):
    # Each of the 500 waits in the app until 501 are there: the worker must hold them all
    # at once.  While they wait, other requests are answered; then the 501st lets all go.
    server = asgi("together", "--backlog", "2048")
    raise_descriptor_limit(2048)
    waiting = threading.Thread(target=lambda: held.extend(
        asyncio.run(_concurrent(server.address, 500, "/?501"))))
    held = []
    started = time.monotonic()
    waiting.start()
    for _ in range(5):
        assert request(server.address, "/?0", timeout=10).body == b"together"
    assert request(server.address, "/?501", timeout=30).body == b"together"
    waiting.join(60)
    took = time.monotonic() - started
    assert [answer.body for answer in held] == [b"together"] * 500
    record("asyncio: 500 concurrent requests held in the app at once, one worker (s)",
           kind(transport), seconds=round(took, 2), workers=1, loop=loop)


def test_a_comma_in_a_cookie_value_behind_nginx_reaches_the_app_unchanged(asgi):
    # Only Apache joins Cookie lines with ", "; elsewhere it is part of a value.
    server = asgi("scope_json")
    scope = scope_of(request(server.address, "/", env={"HTTP_COOKIE": "list=a, b; c=3"}))
    assert dict(scope["headers"])["cookie"] == "list=a, b; c=3"


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
