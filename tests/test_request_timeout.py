"""--timeout ends the request, not the worker, on the threads and asyncio models; and
--max-concurrency caps what an asyncio worker runs at once, leaving the rest queued (a WSGI
app, served on sync or threads, is refused it).

The sync model keeps its way (the worker is killed and replaced: test_server_signals.py,
test_reliability.py).  The apps wait on gate files the test creates (timeout_apps.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from scgi_raw import connect, read_all, request
from servers import child_env, listen_queue, wait_until, worker_pids

from scgikit.protocol import encode_request

pytestmark = pytest.mark.models("threads", "asyncio",
                                reason="the sync model's --timeout kills the worker")

APP = "timeout_apps:app"


def _send(address, uri):
    """Send a GET of ``uri``; the connection, to read the answer from."""
    path, _, query = uri.partition("?")
    variables = {"REQUEST_METHOD": "GET", "REQUEST_URI": uri, "PATH_INFO": path,
                 "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1"}
    sock = connect(address, timeout=60)
    sock.sendall(encode_request(variables, 0))
    return sock


def _in_background(address, uri):
    """Send ``uri`` and read its whole answer in a thread: (thread, [raw answer])."""
    sock = _send(address, uri)
    answer = []

    def read():
        with sock:
            try:
                answer.append(read_all(sock))
            except OSError as exc:
                answer.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, answer


def test_a_request_past_timeout_is_answered_504_while_the_worker_serves_others(
        serve, transport, model, tmp_path):
    server = serve(APP, "--workers", "1", "--timeout", "1", bind=[transport])
    (worker,) = wait_until(lambda: worker_pids(server.pid), message="the worker")
    thread, answer = _in_background(server.address, f"/hold?{tmp_path / 'never'}")
    server.wait_for_log("held request started")
    # While it is held, the worker serves other requests.
    assert request(server.address, "/pid").body == str(worker).encode()
    thread.join(30)
    assert answer and answer[0].startswith(b"Status: 504 Gateway Timeout\r\n"), answer
    server.wait_for_log(r"Request GET /hold\?\S+ ran over --timeout \(1s\)")
    assert "stuck on one request" not in server.log  # the master never stepped in
    if model == "asyncio":  # the loop serves on, in the same worker
        assert request(server.address, "/pid").body == str(worker).encode()
    else:  # the worker is replaced once its other requests are over; none is lost meanwhile
        def replaced():
            answer = request(server.address, "/pid", timeout=10)
            assert answer.status == 200
            return int(answer.body) != worker
        wait_until(replaced, timeout=20, message="the worker replaced")


def test_a_request_past_timeout_whose_answer_had_begun_is_cut_short(
        serve, transport, model, tmp_path):
    server = serve(APP, "--workers", "1", "--timeout", "1", bind=[transport])
    thread, answer = _in_background(server.address, f"/stream?{tmp_path / 'never'}")
    server.wait_for_log("held stream started")
    thread.join(30)
    assert answer and isinstance(answer[0], bytes), answer
    head, _, body = answer[0].partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 200 OK"), answer
    assert b"first;" in body and b"last" not in body and b"504" not in body  # cut, not ended
    server.wait_for_log("ran over --timeout")


@pytest.mark.models("threads", reason="the threads model's worker waits for its other requests")
def test_the_threads_worker_finishes_its_other_requests_before_it_is_replaced(
        serve, transport, model, tmp_path):
    server = serve(APP, "--workers", "1", "--timeout", "2", bind=[transport])
    (worker,) = wait_until(lambda: worker_pids(server.pid), message="the worker")
    first, first_answer = _in_background(server.address, f"/hold?{tmp_path / 'never'}")
    server.wait_for_log("held request started")
    held_since = time.monotonic()
    # A second request, one second younger: in the app when the first is cut loose, and
    # not overdue itself until a second after.  --timeout counts each request's age on the
    # clock, so this gap is what the test is about (no log line or file could stand in).
    wait_until(lambda: time.monotonic() - held_since >= 1.0, timeout=5, interval=0.05)
    gate = tmp_path / "second"
    second, second_answer = _in_background(server.address, f"/hold?{gate}")
    server.wait_for_log("held request started", count=2)
    first.join(30)
    assert first_answer[0].startswith(b"Status: 504"), first_answer
    assert worker in worker_pids(server.pid)  # still there: it holds the second request
    gate.touch()
    second.join(30)
    assert second_answer[0].endswith(b"\r\n\r\nheld"), second_answer
    wait_until(lambda: worker not in worker_pids(server.pid), timeout=20,
               message="the worker to leave once its other request was over")


@pytest.mark.models("asyncio", reason="--max-concurrency is the asyncio model's")
@pytest.mark.parametrize("cap", [0, 2])
def test_at_max_concurrency_new_connections_wait_in_the_listen_queue(
        serve, transport, model, tmp_path, cap):
    server = serve(APP, "--workers", "1", "--max-concurrency", str(cap), bind=[transport])
    gate = tmp_path / "gate"
    held = [_in_background(server.address, f"/hold?{gate}") for _ in range(2)]
    server.wait_for_log("held request started", count=2)
    third, third_answer = _in_background(server.address, "/pid")
    if cap:  # not taken: it waits in the kernel's queue, unanswered, while the two run
        wait_until(lambda: listen_queue(server.address) == 1, message="the connection queued")
        assert not third_answer
        gate.touch()
    third.join(30)
    assert third_answer and third_answer[0].endswith(b"\r\n\r\n" + str(
        wait_until(lambda: worker_pids(server.pid)).pop()).encode()), third_answer
    if not cap:  # no cap: answered while the two still ran
        assert not any(answer for _, answer in held)
        gate.touch()
    for thread, answer in held:
        thread.join(30)
        assert answer[0].endswith(b"held"), answer


@pytest.mark.one_path(reason="the model is chosen, and refused, before any request is read")
@pytest.mark.parametrize(("args", "chosen"), [([], "sync"), (["--threads", "4"], "threads")],
                         ids=["sync", "threads"])
def test_max_concurrency_with_a_wsgi_app_stops_serve_in_one_line_and_check_agrees(
        tmp_path, args, chosen):
    """No --worker: the model follows from the app, so the refusal comes once it is loaded."""
    def scgikit(command, *more):
        return subprocess.run(
            [sys.executable, "-m", "scgikit", command, APP, "--workers", "1",
             "--max-concurrency", "2", *args, *more],
            capture_output=True, text=True, timeout=60, env=child_env(), cwd=tmp_path)

    why = ("--max-concurrency applies to the asyncio model (ASGI apps); this wsgi app runs on "
           f"{chosen}: drop --max-concurrency")
    served = scgikit("serve", "--bind", f"unix:{tmp_path}/scgi.sock")
    assert served.returncode == 4, served.stderr
    naming = [line for line in served.stderr.splitlines() if "--max-concurrency" in line]
    assert len(naming) == 1 and naming[0].endswith(f"Cannot load the app: {why}"), served.stderr
    assert "Traceback" not in served.stderr, served.stderr
    assert "stopping with exit status 4" in served.stderr
    checked = scgikit("check")
    assert (checked.returncode, checked.stderr) == (
        4, f"scgikit check: error: cannot load the app: {why}\n")
    assert "ok" not in checked.stdout.splitlines()
