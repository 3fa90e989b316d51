"""A request as it arrives on one connection: its head, then a small body, within deadlines.

Sans-I/O: the connection's bytes and the clock go in, a decision comes out.
Every worker model feeds it the same way, so the rules live here once:

- ``--header-timeout`` is a deadline for the whole head, counted from the accept,
  not a limit per read: a client dripping one byte a second cannot stretch it.
- ``--max-header-size`` and ``--max-body-size`` are checked before a byte of the
  head or the body is kept (the protocol core refuses an over-long length prefix
  before the ``:`` arrives).
- A body of up to ``--body-buffer-size`` is gathered whole before the request is
  *ready*, so a slow client never holds the app.  A bigger one streams to the app,
  whose reads then share the ``--body-timeout`` deadline counted from the head's end.

The worker runs the app only on a ready request (``readiness``, the one rule that
the C accept loops mirror); until then the connection waits in the waiting room
(``waiting.py``) and costs no app slot.  The bytes come from the connection's
first receive, and from ``receive_now`` each time the poller says more arrived.
"""

from __future__ import annotations

import socket

from ..config import Config
from ..protocol import ProtocolError, parse_head
from .sockets import DONTWAIT, Connection, set_receive_timeout

__all__ = ["GATHER_WAIT", "RECV_SIZE", "STREAM", "TOO_LARGE", "WAIT", "WHOLE", "Intake",
           "ParsedHead", "RequestTimeout", "is_ready", "readiness", "receive_now",
           "receive_rest"]

ParsedHead = tuple[dict[str, str], int, int]  # variables, CONTENT_LENGTH, where the body starts

#: The first receive takes the head and a body of up to about this size in one call.
RECV_SIZE = 128 * 1024
#: How long the first receive of a small body's rest may wait, once per connection.
GATHER_WAIT = 0.01
# A receive that never waits, and one that only looks (a handler that reads the socket).
_PEEK_NOW = DONTWAIT | socket.MSG_PEEK

#: What ``readiness`` says of a request; the C accept loops use the same numbers.
WAIT = 0  # a small body is still on its way: the connection waits
WHOLE = 1  # the whole body is here: the app reads it from memory
STREAM = 2  # a big body: the app starts now and reads the rest from the socket
TOO_LARGE = 3  # over --max-body-size: refused with 413


class RequestTimeout(ProtocolError):
    """The client did not send its head (``status`` 0: nothing to answer) or body in time."""


def readiness(length: int, received: int, buffer_size: int, limit: int) -> int:
    """The readiness rule: may a request whose head announced a body of ``length`` bytes, of
    which ``received`` are in, go to the app?

    ``TOO_LARGE`` past ``limit`` (``--max-body-size``, ``Config.body_limit``); else
    ``WHOLE`` once the whole body is in; else ``STREAM`` when it is larger than
    ``buffer_size`` (``--body-buffer-size``), which is not gathered; else ``WAIT``.
    The C accept loops (``_speedups``) apply this same rule; a test compares them.
    """
    if length > limit:
        return TOO_LARGE
    if received >= length:
        return WHOLE
    if length > buffer_size:
        return STREAM
    return WAIT


def is_ready(parsed: ParsedHead, received: int, config: Config) -> bool:
    """Whether a request whose head is ``parsed`` can go to the app with ``received`` bytes in.

    Raises the 413 ``ProtocolError`` for a body over ``--max-body-size``.
    """
    length = parsed[1]
    state = readiness(length, received - parsed[2], config.body_buffer_size, config.body_limit)
    if state == TOO_LARGE:
        raise ProtocolError(f"body of {length} bytes exceeds --max-body-size "
                            f"{config.max_body_size}", status=413)
    return state != WAIT


class Intake:
    """The bytes of one request that is not ready yet, and the deadline it must meet.

    The head gathers in one buffer (it is parsed whole); the body's pieces are kept
    as they came and joined once, when the request is ready (``request``).
    """

    __slots__ = ("config", "head", "chunks", "received", "parsed", "deadline")

    def __init__(self, config: Config, accepted: float, data: bytes | bytearray = b"",
                 parsed: ParsedHead | None = None, now: float | None = None) -> None:
        self.config = config
        self.parsed = parsed
        self.received = len(data)
        self.head = bytearray() if parsed is not None else bytearray(data)
        self.chunks: list[bytes | bytearray] = [data] if parsed is not None else []
        # The head's deadline counts from the accept; the body's from the head's end.
        self.deadline = accepted + (config.header_timeout or float("inf"))
        if parsed is not None:
            self._head_done(accepted if now is None else now)

    def feed(self, data: bytes, now: float, *, replace: bool = False) -> bool:
        """Take more bytes (or, with ``replace``, all bytes so far); True once ready.

        Raises ``ProtocolError`` (with the status to answer) for a malformed head
        or a body over the limit, and the client's early close as one too.
        """
        if replace:
            self.received = 0
            self.head[:] = b""
            self.chunks = []
            self.parsed = None
        elif not data:
            raise self.closed_early()
        self.received += len(data)
        if self.parsed is not None:
            self.chunks.append(data)
        else:
            self.head += data
            parsed = parse_head(self.head, self.config.max_header_size)
            if parsed is None:
                return False
            self.parsed = parsed
            self.chunks = [self.head]
            self.head = bytearray()
            self._head_done(now)
        return is_ready(self.parsed, self.received, self.config)

    def request(self) -> tuple[bytes | bytearray, ParsedHead]:
        """The bytes so far and the parsed head, for the app (once the head is in).

        A body that is whole comes back as exactly its bytes, its head parsed as
        starting at 0: its pieces are joined in one copy, and the app reads them
        without another.
        """
        assert self.parsed is not None
        variables, length, start = self.parsed
        chunks = self.chunks
        if self.received - start == length and (start or len(chunks) > 1):
            first = memoryview(chunks[0])[start:]
            return b"".join((first, *chunks[1:])), (variables, length, 0)
        if len(chunks) > 1:
            self.chunks = chunks = [b"".join(chunks)]
        return chunks[0], self.parsed

    def _head_done(self, now: float) -> None:
        self.deadline = now + (self.config.body_timeout or float("inf"))

    def closed_early(self) -> ProtocolError:
        if self.parsed is None:
            return ProtocolError(f"connection closed after {self.received} bytes of header")
        length, start = self.parsed[1], self.parsed[2]
        return ProtocolError(
            f"client closed the connection with {length - (self.received - start)} of "
            f"{length} body bytes unsent"
        )

    def expired(self) -> RequestTimeout:
        """The error for a missed deadline: no answer for a head, 408 for a body."""
        if self.parsed is None:
            return RequestTimeout(
                f"client sent no complete header within --header-timeout "
                f"{self.config.header_timeout:g}s ({self.received} bytes)", status=0)
        length, start = self.parsed[1], self.parsed[2]
        return RequestTimeout(
            f"client sent {self.received - start} of {length} body bytes within "
            f"--body-timeout {self.config.body_timeout:g}s", status=408)


def receive_now(conn: Connection, peek: bool = False) -> bytes | None:
    """What the connection has already received (``b""`` at its end), or None if nothing yet."""
    try:
        return conn.recv(RECV_SIZE, _PEEK_NOW if peek else DONTWAIT)
    except BlockingIOError:
        return None


def receive_rest(conn: Connection, data: bytes | bytearray, parsed: ParsedHead,
                 ) -> tuple[bytes | bytearray, ParsedHead]:
    """``data`` and what follows of a small body within ``GATHER_WAIT`` seconds.

    A front end's body often comes in several segments just after the head: one
    blocking MSG_WAITALL receive takes them all, where parking would wake the
    worker once per segment.  The wait is short and once per connection, so a
    client that drips its body costs a few milliseconds, then waits parked.

    A body that is now whole comes back as exactly its bytes (its head parsed
    as starting at 0): the app then reads it without another copy.
    """
    variables, length, start = parsed
    rest = start + length - len(data)
    set_receive_timeout(conn, GATHER_WAIT)
    try:
        more = conn.recv(rest, socket.MSG_WAITALL)
    except OSError:  # nothing in time, or an error the parked connection meets again
        return data, parsed
    if len(more) == rest:
        return b"".join((memoryview(data)[start:], more)), (variables, length, 0)
    return data + more, parsed
