"""One connection's path from its first byte to its close, shared by every worker model.

A worker model only waits, accepts and schedules; what happens to a connection
is decided here, the same way for all of them:

1. *Intake* (``intake.Intake``): the head, and a body of up to
   ``--body-buffer-size``, arrive within their deadlines while the connection
   waits in the model's selector; it costs no app slot until it is *ready*.
2. *The app* (``run_app``): the adapter answers; a bigger body streams from
   the socket within the ``--body-timeout`` deadline; an access-log line.
3. *The end* (``Ending``): if the app left part of the announced body unread,
   closing now would make the kernel send a reset and the front end could lose
   the answer (nginx reports "Broken pipe while sending request to upstream").
   So the answer is followed by a half-close, and the rest of the body is read
   and dropped (at most ``--linger-size`` bytes within ``--linger-timeout``)
   while the connection waits in the selector again; then it is closed.
   Error answers of our own (400, 408, 413, 431) end the same way.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Protocol

from ..config import Config
from ..protocol import HTTPRequestError, ProtocolError
from .intake import Intake, ParsedHead
from .logs import Access
from .sockets import Connection, send_all, set_receive_timeout
from .stats import WorkerStats
from .streams import Body, body_stream
from .throttle import LogThrottle

log = logging.getLogger("scgikit")

access_log = logging.getLogger("scgikit.access")

#: The first receive takes the head and a body of up to about this size in one call.
RECV_SIZE = 128 * 1024
#: How long the first receive of a small body's rest may wait, once per connection.
GATHER_WAIT = 0.01
_DRAIN_SIZE = 256 * 1024
_NEVER = float("inf")
# Flags for a receive that never waits (MSG_PEEK too, for handlers that read the socket).
_NOW = socket.MSG_DONTWAIT
_PEEK_NOW = socket.MSG_DONTWAIT | socket.MSG_PEEK


class Adapter(Protocol):
    """An app adapter (WSGI, classic handler): answers one ready request on a blocking socket."""

    raw: bool

    def __call__(self, sock: Connection, variables: dict[str, str], length: int,
                 body: Body) -> tuple[str, int]: ...

    def answer_whole(self, sock: Connection, data: bytes | bytearray,
                     variables: dict[str, str], length: int, start: int) -> tuple[str, int]:
        """The same for a body that is all in ``data`` from ``start`` (as most are).

        Nothing of the request is left unread, and the caller closes ``sock`` once it
        has counted and logged the answer: the answer's last bytes may be left for the
        close to send (``MSG_MORE``)."""


def receive_now(conn: Connection, peek: bool = False) -> bytes | None:
    """What the connection has already received (``b""`` at its end), or None if nothing yet."""
    try:
        return conn.recv(RECV_SIZE, _PEEK_NOW if peek else _NOW)
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


def run_app(conn: Connection, adapter: Adapter, config: Config, data: bytes | bytearray,
            parsed: ParsedHead, accepted: float, model: str,
            stats: WorkerStats | None = None) -> Ending | None:
    """Answer a ready request; returns how the connection ends, or None to close it now.

    ``model`` names the worker model for the access log; ``stats`` is the worker's
    metrics region (``--stats``), where the answer is counted.  Both are done before
    the caller closes the connection: once a client has the whole answer, its request
    is counted and logged.
    """
    variables, length, start = parsed
    if len(data) - start >= length:  # the body came whole, as most do: no deadline
        status, sent = adapter.answer_whole(conn, data, variables, length, start)
        unread = 0
    else:
        # The body bytes that came with the head, as a view: copied once, when read.
        prefix = data if not start else memoryview(data)[start:] if len(data) > start else b""
        timeout = config.body_timeout
        deadline = time.monotonic() + timeout if timeout else _NEVER
        body = body_stream(conn, prefix, length, deadline)
        status, sent = adapter(conn, variables, length, body)
        unread = body.unread
    if stats is not None:
        stats.record(status, sent, length, accepted)
    if access_log.handlers and access_log.isEnabledFor(logging.INFO):
        log_access(variables, status, sent, accepted, model)
    return Ending(conn, unread, config) if unread else None


def answer_error(conn: Connection, exc: ProtocolError, intake: Intake | None, config: Config,
                 log_http: LogThrottle, stats: WorkerStats | None = None) -> Ending | None:
    """Log the client's error and answer it; returns the end to wait for, or None (closed).

    A missed head deadline (status 0) is closed without an answer.  An HTTP request
    on the SCGI port is the most common mistake with SCGI: worth a line, not one per
    browser retry (``log_http``).  ``stats`` counts the answer (or its absence).
    """
    if stats is not None:
        stats.refused(exc.status)
    if isinstance(exc, HTTPRequestError):
        log_http("%s: a browser or an HTTP client pointed at the SCGI port? "
                 "(answered with an explanation)", exc)
    elif exc.status:
        log.warning("Bad request: %s", exc)
    else:
        log.info("Closing: %s", exc)
        conn.close()
        return None
    unread = None
    if intake is not None and intake.parsed is not None:
        unread = max(0, intake.parsed[1] - (intake.received - intake.parsed[2]))
    ending = refuse(conn, exc, config, unread)
    if ending is None or ending.drain():
        conn.close()
        return None
    return ending


def refuse(conn: Connection, error: ProtocolError, config: Config,
           unread: int | None) -> Ending | None:
    """Answer the client's error as it says; ``unread`` body bytes may follow (None: unknown)."""
    try:
        send_all(conn, error.response(), config.header_timeout or None)
    except OSError:
        return None
    return Ending(conn, config.linger_size if unread is None else unread, config)


class Ending:
    """A connection whose answer is sent: half-closed, the unread body drained, then closed."""

    __slots__ = ("conn", "left", "deadline")

    def __init__(self, conn: Connection, unread: int, config: Config) -> None:
        self.conn = conn
        self.left = min(unread, config.linger_size)
        self.deadline = time.monotonic() + config.linger_timeout
        try:
            conn.shutdown(socket.SHUT_WR)  # the answer is complete: the front end may go on
        except OSError:
            self.left = 0

    def drain(self) -> bool:
        """Read and drop what has arrived; True when the connection can be closed."""
        conn = self.conn
        try:
            while self.left > 0:
                chunk = conn.recv(min(self.left, _DRAIN_SIZE), _NOW)
                if not chunk:
                    return True
                self.left -= len(chunk)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return True


def log_access(variables: dict[str, str], status: str, sent: int, started: float,
               model: str) -> None:
    """One access-log record; the access log's formatter (``logs.AccessFormatter``) makes
    the line.  Callers check first that there is an access log, so without one this costs
    nothing.  The record is made and handled directly: ``info()`` would also look up the
    caller's file and line in the stack, which no access line shows (a third of the cost)."""
    access_log.handle(access_log.makeRecord(
        access_log.name, logging.INFO, __file__, 0,
        Access(variables, status, sent, started, model), (), None))


def hand_over(conn: Connection, adapter: Any, config: Config) -> None:
    """A handler that reads the connection itself (``handle_connection``) gets a full socket."""
    timeout = config.header_timeout or None
    sock = socket.socket(conn.family, conn.type, conn.proto, conn.detach())
    sock.settimeout(timeout)
    try:
        adapter.handle_raw(sock)
    except (ProtocolError, OSError) as exc:
        log.warning("Bad request: %s", exc)
    except Exception:
        log.exception("Handler error in handle_connection")
    finally:
        sock.close()
