"""A bare SCGI exchange for the server tests, on the protocol core only.

The server tests do not depend on ``scgikit.client``: they send exactly the
bytes they mean to, malformed ones included, and read the raw answer.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from scgikit.addresses import parse_address
from scgikit.protocol import (
    NEED_DATA,
    Body,
    EndOfMessage,
    Response,
    ResponseParser,
    encode_request,
)


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def connect(address: str, timeout: float = 30.0) -> socket.socket:
    addr = parse_address(address)
    sock = socket.socket(addr.family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(addr.sockaddr)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_answer(raw: bytes) -> Answer:
    parser = ResponseParser()
    parser.receive_data(raw)
    parser.receive_data(b"")
    head = parser.next_event()
    assert isinstance(head, Response), raw[:200]
    body = []
    while True:
        event = parser.next_event()
        if isinstance(event, Body):
            body.append(event.data)
        elif isinstance(event, EndOfMessage) or event is NEED_DATA:
            break
    return Answer(head.status, head.headers, b"".join(body), raw)


def exchange_raw(address: str, data: bytes, timeout: float = 30.0) -> bytes:
    """Send ``data`` as is, half-close, and return everything the server answers."""
    with connect(address, timeout) as sock:
        sock.sendall(data)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return read_all(sock)


def request(address: str, uri: str = "/", method: str = "GET", body: bytes = b"",
            env: dict[str, str] | None = None, timeout: float = 30.0) -> Answer:
    """A well-formed request, with the variables nginx would send."""
    path, _, query = uri.partition("?")
    variables = {"REQUEST_METHOD": method, "REQUEST_URI": uri, "DOCUMENT_URI": path,
                 "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1",
                 "SERVER_NAME": "test", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1"}
    variables.update(env or {})
    with connect(address, timeout) as sock:
        sock.sendall(encode_request(variables, len(body)))
        if body:
            sock.sendall(body)
        return parse_answer(read_all(sock))


def connect_until_refused(address: str, data: bytes, limit: int = 500,
                          timeout: float = 20.0) -> list[object]:
    """New connections to a stopping server, one after another, until one is refused.

    Each outcome: the answer's status, "no handshake" (the kernel dropped the SYN),
    "reset: ..." (established, then closed unanswered: a request lost), and last
    "refused".  Bounded by ``limit`` attempts and ``timeout`` seconds.
    """
    outcomes: list[object] = []
    end = time.monotonic() + timeout
    while len(outcomes) < limit and time.monotonic() < end:
        try:
            sock = connect(address, timeout=1.0)
        except (ConnectionRefusedError, FileNotFoundError):
            outcomes.append("refused")
            break
        except TimeoutError:
            outcomes.append("no handshake")
            continue
        with sock:
            sock.settimeout(30)
            try:
                sock.sendall(data)
                raw = read_all(sock)
            except OSError as exc:
                outcomes.append(f"reset: {exc!r}")
                continue
        outcomes.append(parse_answer(raw).status if raw else "reset: closed unanswered")
    return outcomes
