"""Bad input gets a clear answer or a closed connection, a log line, and the server serves on."""

import hashlib
import re
import socket
import time

import pytest
from netstrings import scgi_head as head
from scgi_raw import connect, exchange_raw, parse_answer, read_all, request
from servers import wait_until

from scgikit.protocol import encode_request

# Every scenario on each worker model (conftest.py: model).
pytestmark = pytest.mark.usefixtures("model")


@pytest.fixture
def server(serve, transport):
    return serve("wsgi_apps:echo_hash", "--workers", "2", "--header-timeout", "1",
                 "--body-timeout", "2", "--max-header-size", "4096", "--max-body-size", "1m",
                 bind=[transport])


def still_serving(server):
    answer = request(server.address, "/after", method="POST", body=b"ok")
    assert answer.status == 200
    assert b'"size": 2' in answer.body


BAD = {
    "letters in the length": (b"1x:abc,", 400, "not ASCII digits"),
    "leading zero length": (b"05:" + b"x" * 5 + b",", 400, "leading zero"),
    "length past the maximum": (b"99999999:", 431, "exceeds the maximum"),
    "length far past the maximum": (b"123456789012345678901234567890", 431, "exceeds"),
    "missing CONTENT_LENGTH": (head([("SCGI", "1"), ("REQUEST_METHOD", "GET")]), 400,
                               "first header must be CONTENT_LENGTH"),
    "late CONTENT_LENGTH": (head([("SCGI", "1"), ("CONTENT_LENGTH", "0")]), 400,
                            "first header must be CONTENT_LENGTH"),
    "missing SCGI": (head([("CONTENT_LENGTH", "0"), ("REQUEST_METHOD", "GET")]), 400,
                     "missing SCGI header"),
    "duplicate header": (head([("CONTENT_LENGTH", "0"), ("SCGI", "1"), ("REQUEST_URI", "/a"),
                               ("REQUEST_URI", "/b")]), 400, "duplicate header 'REQUEST_URI'"),
    "signed CONTENT_LENGTH": (head([("CONTENT_LENGTH", "-1"), ("SCGI", "1")]), 400,
                              "CONTENT_LENGTH is not ASCII digits"),
    "no comma": (head([("CONTENT_LENGTH", "0"), ("SCGI", "1")])[:-1] + b";", 400,
                 "not followed by ','"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_malformed_head_is_refused_with_a_status_and_logged(server, case):
    data, status, message = BAD[case]
    answer = parse_answer(exchange_raw(server.address, data))
    assert answer.status == status
    assert b"Traceback" not in answer.raw
    server.wait_for_log(message)
    still_serving(server)


def test_body_over_max_body_size_gets_413(server):
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "POST"}, 2 * 1024 * 1024))
        sock.sendall(b"x" * 100_000)
        answer = parse_answer(read_all(sock))
    assert answer.status == 413
    server.wait_for_log("exceeds --max-body-size")
    still_serving(server)


def test_body_shorter_than_announced_is_logged_and_serving_goes_on(server):
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "POST"}, 1000))
        sock.sendall(b"only this much")
        sock.shutdown(socket.SHUT_WR)
        answer = parse_answer(read_all(sock))
    assert answer.status == 400
    server.wait_for_log("client closed the connection with 986 of 1000 body bytes unsent")
    still_serving(server)


def test_client_that_connects_and_sends_nothing_is_dropped(server):
    with connect(server.address) as sock:
        assert read_all(sock) == b""  # closed by the server after --header-timeout
    server.wait_for_log("no complete header within")
    still_serving(server)


def test_client_that_sends_its_head_late_is_served(server):
    # The first receive finds nothing; the worker then waits, within --header-timeout.
    with connect(server.address) as sock:
        time.sleep(0.3)  # the client's behaviour under test, not a wait for the server
        sock.sendall(encode_request({"REQUEST_METHOD": "POST"}, 2) + b"ok")
        answer = parse_answer(read_all(sock))
    assert answer.status == 200
    assert b'"size": 2' in answer.body


def test_client_that_stalls_in_the_head_is_dropped(server):
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "GET"}, 0)[:10])
        assert read_all(sock) == b""  # closed by the server, for the reason it logs:
    server.wait_for_log("no complete header within --header-timeout 1s")
    still_serving(server)


def test_client_that_stalls_in_the_body_gets_408(server):
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "POST"}, 100) + b"partial")
        answer = parse_answer(read_all(sock))
    assert answer.status == 408
    server.wait_for_log("client sent 7 of 100 body bytes within --body-timeout 2s")
    still_serving(server)


def test_slow_body_within_the_body_deadline_is_read_whole(server):
    # The body takes longer than --header-timeout (1 s), within --body-timeout (2 s).
    # The client's pauses are its behaviour under test, not a wait for the server.
    pieces = [bytes([65 + i]) * 10 for i in range(4)]
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "POST"}, 40))
        for piece in pieces:
            time.sleep(0.3)
            sock.sendall(piece)
        answer = parse_answer(read_all(sock))
    assert answer.status == 200
    assert hashlib.sha256(b"".join(pieces)).hexdigest().encode() in answer.body


def test_body_dripped_past_the_body_deadline_gets_408(server):
    # Every byte comes well within --header-timeout, but the whole body misses
    # --body-timeout: the deadline is for the whole body, not for each read.
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "POST"}, 100))
        sent = 0
        deadline = time.monotonic() + 10
        sock.settimeout(0.4)
        while time.monotonic() < deadline:
            try:
                answer = sock.recv(1 << 16)
                break
            except TimeoutError:
                sock.sendall(b"x")  # a byte every 0.4 s
                sent += 1
        answer += read_all(sock)
    assert parse_answer(answer).status == 408
    assert 3 <= sent < 100
    server.wait_for_log(r"body bytes within --body-timeout 2s")
    still_serving(server)


def test_head_dripped_past_the_header_deadline_is_dropped(server):
    # A byte every 0.3 s: each read is quick, but the whole head misses --header-timeout.
    data = encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/" + "x" * 50}, 0)
    with connect(server.address) as sock:
        sock.settimeout(0.3)
        answer = b""
        for byte in data:
            try:
                answer = sock.recv(1 << 16)
                break
            except TimeoutError:
                sock.sendall(bytes([byte]))
    assert answer == b""  # closed without an answer, before the head was complete
    server.wait_for_log("no complete header within --header-timeout 1s")
    still_serving(server)


def test_connection_closed_before_a_byte_is_quiet(server):
    for _ in range(20):
        connect(server.address).close()
    still_serving(server)
    assert "Traceback" not in server.log
    assert "ERROR" not in server.log


def test_client_that_hangs_up_mid_head_is_logged(server):
    with connect(server.address) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "GET"}, 0)[:12])
        sock.shutdown(socket.SHUT_WR)
        read_all(sock)
    server.wait_for_log("connection closed after 12 bytes of header")
    still_serving(server)


def test_many_bad_clients_do_not_stop_good_ones(server):
    for data, _, _ in BAD.values():
        exchange_raw(server.address, data)
    results = [request(server.address, "/", method="POST", body=b"x" * n).status
               for n in range(0, 50)]
    assert results == [200] * 50
    wait_until(lambda: "Bad request" in server.log, message="bad requests logged")
    assert "Traceback" not in server.log


@pytest.mark.parametrize("app", ["stream", "big_file"])
def test_front_end_that_stops_reading_frees_the_worker_after_the_timeout(
        serve, model, transport, app):
    server = serve(f"wsgi_apps:{app}", "--workers", "1", "--header-timeout", "1",
                   "--timeout", "60", bind=[transport])
    with connect(server.address) as stalled:
        stalled.sendall(encode_request({"REQUEST_METHOD": "GET", "QUERY_STRING": "64"}, 0))
        # It never reads: the worker's send must time out, not wait for --timeout.  (The
        # ASGI adapter names the request in its line, and says why after its own words.)
        where = " to GET /: the front end closed the connection" if model == "asyncio" else ""
        (line,) = server.wait_for_log("Front end closed the connection during the response")
        assert re.search(f"during the response{where}: " + r"(\[Errno 110\] )?send timed out$",
                         line.string), line.string
        answer = request(server.address, "/?64")
        assert answer.status == 200
        assert len(answer.body) == 64 << 20
