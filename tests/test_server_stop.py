"""A graceful stop serves every connection the kernel had accepted, then exits at once."""

import os
import signal
import socket
import threading
import time

import pytest
from figures import record
from scgi_raw import connect, connect_until_refused, parse_answer, read_all
from servers import for_model, serve_and_stop_above_1023, wait_until

from scgikit.protocol import encode_request

# Every scenario on each worker model (conftest.py: model).
pytestmark = pytest.mark.usefixtures("model")


def kind(transport):
    return "unix" if transport.startswith("unix:") else "tcp"


class Clients:
    """``count`` clients that each connect, send a request and wait for the whole answer."""

    def __init__(self, address, count, uri="/", query=""):
        self.address = address
        self.sent = threading.Semaphore(0)
        self.results = [None] * count
        self.finished = [0.0] * count
        self.request = encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": uri,
                                       "QUERY_STRING": query}, 0)
        self.threads = [threading.Thread(target=self._run, args=(index,), daemon=True)
                        for index in range(count)]

    def _run(self, index):
        try:
            with connect(self.address, timeout=60) as sock:
                sock.sendall(self.request)
                self.sent.release()
                self.results[index] = parse_answer(read_all(sock)).status
        except (OSError, AssertionError) as exc:
            self.sent.release()
            self.results[index] = repr(exc)
        self.finished[index] = time.monotonic()

    def start(self):
        for thread in self.threads:
            thread.start()
        for _ in self.threads:
            assert self.sent.acquire(timeout=30), "a client could not send its request"
        return self

    def join(self):
        for thread in self.threads:
            thread.join(90)


def test_sigterm_serves_every_queued_request_then_exits(model, serve, transport):
    # On asyncio a request that takes its time awaits (asgi_apps.slow_awaiting): an app
    # that blocks stops its loop, and the asyncio worker, which takes every queued
    # connection whenever its loop runs (to run their requests at once), would serve
    # them one after another, past --graceful-timeout.  So its workers hold the requests,
    # not the kernel; a listen queue on a stop, asyncio's too, is the last test's
    # (test_a_full_stop_serves_the_connections_waiting_in_the_listen_queue).
    server = serve("wsgi_apps:slow", "--workers", "4", "--graceful-timeout", "30",
                   bind=[transport], asgi="asgi_apps:slow_awaiting")
    clients = Clients(server.address, 50, query="1.5").start()
    # Every request is in the kernel's hands, and every worker holds one (on asyncio, the
    # workers hold them all).
    server.wait_for_log("slow request started", count=4, timeout=30)
    stopped_at = time.monotonic()
    server.send_signal(signal.SIGTERM)
    clients.join()
    assert server.proc.wait(60) == 0
    exited_at = time.monotonic()
    served = clients.results.count(200)
    record("SIGTERM with 50 requests in the kernel's hands (4 workers, 1.5 s each)",
           kind(transport), model=model, completed=f"{served}/50",
           master_exit_after_last_answer_s=round(exited_at - max(clients.finished), 2))
    assert clients.results == [200] * 50
    assert exited_at - stopped_at < 30  # it did not wait out --graceful-timeout
    assert "Killing" not in server.log


def test_a_unix_socket_refuses_new_connections_once_the_stop_begins(serve, tmp_path):
    path = tmp_path / "stop.sock"
    server = serve("wsgi_apps:slow", "--workers", "1", bind=[f"unix:{path}"])
    clients = Clients(server.address, 1, query="2").start()
    server.wait_for_log("slow request started")
    server.send_signal(signal.SIGTERM)
    # The socket file goes first, so a front end moves on to its next backend at once.
    wait_until(lambda: not path.exists(), timeout=10, message="the socket file removed")
    with pytest.raises(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
    clients.join()
    assert clients.results == [200]
    assert server.proc.wait(30) == 0


def test_a_stopping_server_answers_or_refuses_every_new_connection(model, serve, transport):
    # Connections keep coming while a stop waits for a request in flight: each is
    # answered or never established (refused, or its SYN dropped), so a front end
    # can send it elsewhere; none is accepted into a queue and reset at the exit.
    server = serve("wsgi_apps:slow", "--workers", "2", bind=[transport])
    held = Clients(server.address, 1, query="3").start()
    server.wait_for_log("slow request started")
    server.send_signal(signal.SIGTERM)
    server.wait_for_log("Graceful stop")
    quick = encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": "0.01"}, 0)
    outcomes = connect_until_refused(server.address, quick)
    held.join()
    assert held.results == [200]
    assert outcomes and outcomes[-1] == "refused", outcomes
    assert set(outcomes[:-1]) <= {200, "no handshake"}, outcomes
    assert server.proc.wait(30) == 0


def test_a_stop_that_waits_says_what_for(serve, transport):
    """A connection that has sent half its head holds the stop (until --header-timeout):
    the worker says so every 2 s, then serves it once the rest comes, and exits."""
    server = serve("wsgi_apps:hello", "--workers", "1", bind=[transport])
    whole = encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/"}, 0)
    with connect(server.address, timeout=30) as sock:  # the worker is up
        sock.sendall(whole)
        assert parse_answer(read_all(sock)).status == 200
    with connect(server.address, timeout=30) as sock:
        sock.sendall(whole[:10])
        server.send_signal(signal.SIGTERM)
        server.wait_for_log(r"Stopping; still waiting for: 0 in the app, 1 connections")
        sock.sendall(whole[10:])
        assert parse_answer(read_all(sock)).status == 200
    assert server.proc.wait(30) == 0



def test_a_server_whose_descriptors_are_numbered_above_1023_serves_and_stops(model, transport):
    # select() cannot wait on a descriptor above 1023; the master's wait and a full
    # stop's last look at the listen queue must work there too.
    serve_and_stop_above_1023(*for_model(model, "wsgi_apps:hello"), transport)


def test_a_full_stop_serves_the_connections_waiting_in_the_listen_queue(serve, transport):
    server = serve("wsgi_apps:slow", "--workers", "1", "--log-level", "debug",
                   bind=[transport])
    # Ready: its signal handlers are in place (a SIGINT before would end it at SIGCONT).
    worker = int(server.wait_for_log(r"Worker (\d+) ready")[0].group(1))
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
    assert answers == [b"slow done"] * 10
    assert server.proc.wait(30) == 0
    for sock in socks:
        sock.close()
