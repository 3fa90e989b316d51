"""An answer whose connection closes next leaves with the close: over TCP, its last bytes and
the FIN in one segment (``MSG_MORE``), on every worker model, with the C accelerator and
without (the suite runs twice).  An answer the app still produces as it goes is not held.

Counted from the client's side: the segments its socket received (``TCP_INFO``) by the time
it read the end of the answer, against a reference server in the test that answers the
same way with and without ``MSG_MORE``, on a listener set up as scgikit's.  (Over a unix
socket there are no segments: the other tests prove the answers arrive whole there.)
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

import pytest
from scgi_raw import connect, parse_answer, read_all

from scgikit.protocol import encode_request

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(socket, "MSG_MORE"),
    reason="TCP_INFO's segment count and MSG_MORE are Linux's")

# struct tcp_info (linux/tcp.h): tcpi_segs_in is the u32 at offset 140 (Linux 4.2+).
_SEGS_IN = 140
REQUEST = encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "SERVER_NAME": "test",
                          "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1"}, 0)
ANSWER = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"


def segments_received(address: str) -> tuple[bytes, int]:
    """One request: the answer, and the TCP segments received once its end was read."""
    with connect(address, timeout=30) as sock:
        sock.sendall(REQUEST)
        answer = read_all(sock)
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < _SEGS_IN + 4:
        pytest.skip("this kernel's TCP_INFO has no segment count")
    return answer, struct.unpack_from("I", info, _SEGS_IN)[0]


def reference_segments(flags: int) -> int:
    """The same exchange with a server that sends its answer with ``flags``, then closes."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)  # as scgikit's

    def answer_once() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.send(ANSWER, flags)

    server = threading.Thread(target=answer_once)
    server.start()
    try:
        host, port = listener.getsockname()
        answer, segments = segments_received(f"{host}:{port}")
    finally:
        server.join(30)
        listener.close()
    assert answer == ANSWER
    return segments


@pytest.fixture(scope="module")
def counts() -> dict[str, int]:
    """The reference: segments received when the FIN comes apart, and with the data."""
    apart, together = reference_segments(0), reference_segments(socket.MSG_MORE)
    assert together == apart - 1  # the kernel saves the segment, as this test expects
    return {"apart": apart, "together": together}


def test_an_answer_whose_connection_closes_next_leaves_with_the_fin(serve, model, counts):
    server = serve("wsgi_apps:hello")
    answer, segments = segments_received(server.address)
    assert parse_answer(answer).body == b"hello"
    assert segments == counts["together"]


@pytest.mark.models("sync", "threads", reason="WSGI's write() callable")
def test_a_list_after_write_calls_leaves_its_last_chunk_with_the_fin(serve, model, counts):
    server = serve("wsgi_apps:with_write")
    answer, segments = segments_received(server.address)
    assert parse_answer(answer).body == b"written then returned"
    # The write() call went at once; the list's chunk rode with the FIN.
    assert segments == counts["together"] + 1


def test_an_answer_the_app_produces_as_it_goes_is_sent_at_once(serve, model, counts, tmp_path):
    # An iterable with close() (on asyncio, chunks sent with more_body): the app may still
    # work after its last chunk (PEP 3333 calls close() after the answer; an ASGI app runs
    # on after its last message), so nothing is held for the close.
    server = serve("wsgi_apps:closing")
    mark = tmp_path / "closed"
    with connect(server.address, timeout=30) as sock:
        sock.sendall(encode_request({"REQUEST_METHOD": "GET", "REQUEST_URI": "/",
                                     "QUERY_STRING": f"mark={mark}", "SERVER_NAME": "test",
                                     "SERVER_PORT": "80"}, 0))
        answer = read_all(sock)
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    assert parse_answer(answer).body == b"onetwo"
    # Two chunks, each sent at once, then the FIN on its own.
    assert struct.unpack_from("I", info, _SEGS_IN)[0] == counts["apart"] + 1
