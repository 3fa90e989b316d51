"""Idle and slow clients never hold the app: they wait parked, and normal requests go on.

The figures (p99 of normal requests under the flood) are recorded for
docs/reliability.md; the assertions are far from them, on the property that
breaks: without parking, one worker behind 1,000 idle connections makes a
normal request wait for seconds, or fail.
"""

import socket
import time

import pytest
from figures import record
from floods import open_descriptors, p99_behind_flood
from scgi_raw import connect, parse_answer, read_all, request
from servers import child_env, wait_until, worker_pids

from scgikit.protocol import encode_request

# Every scenario on each WSGI worker model (conftest.py: model).
pytestmark = pytest.mark.usefixtures("model")


def kind(transport):
    return "unix" if transport.startswith("unix:") else "tcp"


def test_one_worker_serves_normal_requests_behind_idle_and_dripping_floods(
        model, serve, transport):
    server = serve("wsgi_apps:echo_hash", "--workers", "1", "--header-timeout", "60",
                   "--body-timeout", "60", bind=[transport])
    (worker,) = wait_until(lambda: worker_pids(server.pid), message="the worker")
    p99 = p99_behind_flood(server.address, worker)
    record("idle and drip flood: normal-request p99 (ms)", kind(transport), model=model,
           p99_ms=round(p99 * 1000, 1), idle=1000, drip=50, workers=1)
    assert p99 < 0.25, f"p99 {p99:.3f}s behind the flood"
    assert "Traceback" not in server.log


def test_dripping_clients_are_answered_once_their_request_is_whole(serve, transport):
    server = serve("wsgi_apps:echo_hash", "--workers", "1", bind=[transport])
    body = b"d" * 40
    with connect(server.address) as slow:
        slow.sendall(encode_request({"REQUEST_METHOD": "POST"}, len(body)))
        for index in range(0, len(body), 10):
            slow.sendall(body[index:index + 10])
            # Meanwhile the only worker answers others: the drip holds no app slot.
            assert request(server.address, "/", timeout=5).status == 200
        answer = parse_answer(read_all(slow))
    assert answer.status == 200
    assert b'"size": 40' in answer.body


def test_the_oldest_waiting_connection_is_dropped_beyond_max_pending(serve, transport):
    server = serve("wsgi_apps:echo_hash", "--workers", "1", "--max-pending", "10",
                   "--header-timeout", "60", bind=[transport])
    first = connect(server.address, timeout=10)
    first.sendall(b"1")  # a byte of head, so TCP hands it over at once
    rest = []
    try:
        wait_until(lambda: len(worker_pids(server.pid)) == 1, message="the worker")
        for _ in range(12):
            sock = connect(server.address, timeout=10)
            sock.sendall(b"1")
            rest.append(sock)
        assert first.recv(100) == b""  # the oldest, closed without an answer
        server.wait_for_log(r"--max-pending 10 reached")
        assert request(server.address, "/", timeout=5).status == 200
    finally:
        first.close()
        for sock in rest:
            sock.close()


def test_a_connection_parked_for_its_head_is_served_when_it_completes(serve, transport):
    server = serve("wsgi_apps:echo_hash", "--workers", "1", bind=[transport])
    data = encode_request({"REQUEST_METHOD": "POST"}, 5) + b"hello"
    with connect(server.address) as sock:
        sock.sendall(data[:7])
        assert request(server.address, "/", timeout=5).status == 200
        sock.sendall(data[7:])
        answer = parse_answer(read_all(sock))
    assert answer.status == 200
    assert b'"size": 5' in answer.body


def test_worker_out_of_descriptors_backs_off_then_recycles_and_service_resumes(
        model, serve, transport, tmp_path):
    env = child_env(LEAK_MARK=str(tmp_path / "leaking"))
    server = serve("resource_apps:leak_descriptors", "--workers", "1", bind=[transport],
                   env=env, limit_descriptors=64)
    (leaker,) = wait_until(lambda: worker_pids(server.pid), message="the worker")
    assert request(server.address, "/", timeout=5).body == str(leaker).encode()
    # Its descriptors are soon all gone (waited for: on a loaded machine the leak takes
    # a while): a connection then waits in the listen queue until the worker gives up
    # and is replaced.
    wait_until(lambda: open_descriptors(leaker) >= 64, message="the leak to take them all")
    started = time.monotonic()
    for _ in range(20):
        answer = request(server.address, "/", timeout=60)
        assert answer.status == 200
        if int(answer.body) != leaker:
            break
    healed = time.monotonic() - started
    assert int(answer.body) != leaker
    server.wait_for_log("recycling this worker")
    lines = server.log.count("Cannot accept a connection")
    record("descriptor exhaustion", kind(transport), model=model,
           recovered_s=round(healed, 1), accept_error_lines=lines)
    assert 1 <= lines <= 2  # a line a minute at most, not 97,000 a second


def test_a_health_check_that_connects_and_closes_costs_nothing(serve, transport):
    server = serve("wsgi_apps:echo_hash", "--workers", "1", bind=[transport])
    for _ in range(50):
        sock = connect(server.address)
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    assert request(server.address, "/", timeout=5).status == 200
    assert "WARNING" not in server.log and "ERROR" not in server.log
