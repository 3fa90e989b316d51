"""The threads model: each worker runs --threads requests at once, with every guarantee of sync."""

import json
import socket
import threading
import time

import pytest
from figures import record
from scgi_raw import connect, parse_answer, read_all, request
from servers import wait_until, worker_pids

from scgikit.protocol import ProtocolError, encode_request


def kind(transport):
    return "unix" if transport.startswith("unix:") else "tcp"


def test_one_worker_with_20_threads_serves_20_waiting_requests_at_once(serve, transport):
    # Each waits in the app until all 20 are there (wsgi_apps.together): no clock involved.
    server = serve("wsgi_apps:together", "--workers", "1", "--threads", "20", bind=[transport])
    answers = []

    def one():
        answers.append(request(server.address, "/?20", timeout=60).body)

    clients = [threading.Thread(target=one) for _ in range(20)]
    started = time.monotonic()
    for client in clients:
        client.start()
    for client in clients:
        client.join(30)
    took = time.monotonic() - started
    record("threads: 20 requests held in the app at once, 1 worker x 20 threads (s)",
           kind(transport), seconds=round(took, 2))
    assert answers == [b"together"] * 20


def test_wsgi_environ_tells_the_truth_about_threads(serve, transport):
    threaded = serve("wsgi_apps:environ_json", "--workers", "1", "--threads", "4",
                     bind=[transport])
    environ = json.loads(request(threaded.address, "/").body)
    assert environ["wsgi.multithread"] is True and environ["wsgi.multiprocess"] is True
    threaded.stop()
    sync = serve("wsgi_apps:environ_json", "--workers", "1", bind=[transport])
    assert json.loads(request(sync.address, "/").body)["wsgi.multithread"] is False


def test_a_stuck_thread_is_answered_504_and_its_worker_replaced(serve, transport):
    server = serve("wsgi_apps:slow", "--workers", "1", "--threads", "4", "--timeout", "1",
                   bind=[transport])
    (first,) = worker_pids(server.pid) or [None]
    outcome = []

    def stuck_request():
        try:
            outcome.append(request(server.address, "/?30", timeout=60).status)
        except (OSError, ProtocolError) as exc:  # cut when its worker is killed
            outcome.append(exc)

    stuck = threading.Thread(target=stuck_request)
    stuck.start()
    # Other threads keep answering while one is stuck, until --timeout ends its request.
    assert request(server.address, "/?0", timeout=10).status == 200
    server.wait_for_log(r"ran over --timeout \(1s\): answered 504", timeout=20)
    stuck.join(60)
    assert outcome == [504]
    wait_until(lambda: first not in worker_pids(server.pid), timeout=20,
               message="the worker replaced")
    assert request(server.address, "/?0", timeout=10).status == 200
    assert "stuck on one request" not in server.log  # the master never had to kill it


def test_a_full_pool_takes_connections_again_when_threads_free_up(serve, transport):
    # More clients than threads, some sending their head in two pieces (so they are
    # parked, then handed to the pool from the selector): the listeners, unwatched
    # while the pool is full, must be watched again, or the clients wait forever.
    server = serve("wsgi_apps:echo_hash", "--workers", "1", "--threads", "2", bind=[transport])
    data = encode_request({"REQUEST_METHOD": "POST"}, 2) + b"ok"
    results = []

    def client(number):
        for _ in range(20):
            with connect(server.address, timeout=20) as sock:
                if number % 2:
                    sock.sendall(data[:5])
                    time.sleep(0.001)  # the client's behaviour under test
                sock.sendall(data[5:] if number % 2 else data)
                results.append(parse_answer(read_all(sock)).status)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
    assert results == [200] * 320


@pytest.mark.parametrize("arrival", ["head in two pieces", "malformed", "closed at once"])
def test_a_connection_a_finishing_thread_takes_is_served_refused_or_closed_as_ever(
        serve, transport, arrival):
    # Both threads busy: the next connection waits in the listen queue, and the first
    # thread to answer takes it itself.  One whose request has not all arrived goes to
    # the main thread to wait; a bad one is refused; an empty one closed.
    server = serve("wsgi_apps:slow", "--workers", "1", "--threads", "2", bind=[transport])
    first = []
    busy = [threading.Thread(target=lambda seconds=seconds: first.append(
        request(server.address, f"/?{seconds}", timeout=30).status)) for seconds in (0.5, 1)]
    for count, thread in enumerate(busy, 1):  # one after the other: their lines apart
        thread.start()
        server.wait_for_log(r"slow request started", count=count, timeout=10)
    data = encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": "0"}, 0)
    with connect(server.address, timeout=20) as sock:
        if arrival == "head in two pieces":
            sock.sendall(data[:5])
            busy[0].join(30)  # answered: its thread has taken this connection meanwhile
            sock.sendall(data[5:])
            assert parse_answer(read_all(sock)).status == 200
        elif arrival == "malformed":
            sock.sendall(b"x5:hello,")
            busy[0].join(30)
            assert parse_answer(read_all(sock)).status == 400
        else:
            sock.shutdown(socket.SHUT_WR)
            busy[0].join(30)
            assert read_all(sock) == b""
    assert request(server.address, "/?0", timeout=10).status == 200  # and the next
    busy[1].join(30)
    assert first == [200, 200]


def test_a_request_that_waited_for_its_bytes_is_not_passed_over_by_new_connections(
        serve, transport):
    # Two threads, and eight clients that keep the listen queue full.  A request whose
    # head came in two pieces waits in the main thread, then goes to the pool: the
    # next thread to finish must take it, not another new connection.
    server = serve("wsgi_apps:slow", "--workers", "1", "--threads", "2", bind=[transport])
    answered = threading.Event()
    deadline = time.monotonic() + 30
    flood_answers = []  # (when the client connected, the status)

    def flood():
        while not answered.is_set() and time.monotonic() < deadline:
            began = time.monotonic()
            flood_answers.append((began, request(server.address, "/?0.1", timeout=30).status))

    flooding = [threading.Thread(target=flood) for _ in range(8)]
    for thread in flooding:
        thread.start()
    wait_until(lambda: len(flood_answers) >= 8, timeout=20, message="the flood's answers")
    data = encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": "0"}, 0)
    with connect(server.address, timeout=40) as sock:
        sock.sendall(data[:5])
        sent = time.monotonic()
        # A client that connected after this one was answered: the listen queue is
        # first in, first out, so this one has been accepted, and waits for its bytes.
        wait_until(lambda: any(began > sent for began, _ in flood_answers), timeout=20,
                   message="an answer to a later client")
        sock.sendall(data[5:])
        status = parse_answer(read_all(sock)).status
    answered_at = time.monotonic()
    answered.set()
    for thread in flooding:
        thread.join(40)
    assert status == 200
    assert answered_at < deadline, "served only once the flood was over"
    assert {status for _, status in flood_answers} == {200}
