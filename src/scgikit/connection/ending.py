"""The end of a connection whose answer is sent: half-closed, its unread body drained, closed.

If the app left part of the announced body unread, closing at once would make
the kernel send a reset, and the front end could lose the answer (nginx reports
"Broken pipe while sending request to upstream").  So the answer is followed by
a half-close, and the rest of the body is read and dropped (at most
``--linger-size`` bytes within ``--linger-timeout``) while the connection waits
in the waiting room; then it is closed.  The server's own error answers (400,
408, 413, 431) end the same way (``answer_error``).
"""

from __future__ import annotations

import logging
import socket
import time

from ..config import Config
from ..protocol import HTTPRequestError, ProtocolError
from .intake import Intake
from .metrics import WorkerStats
from .sockets import DONTWAIT, Connection, send_all
from .throttle import LogThrottle

__all__ = ["Ending", "answer_error", "refuse"]

log = logging.getLogger("scgikit")

_DRAIN_SIZE = 256 * 1024


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
                chunk = conn.recv(min(self.left, _DRAIN_SIZE), DONTWAIT)
                if not chunk:
                    return True
                self.left -= len(chunk)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return True
