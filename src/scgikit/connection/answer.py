"""A ready request given to the app adapter, counted and logged; the end it leaves.

The adapters (WSGI, classic handler: ``apps/``) answer on a blocking socket: a
request whose body came whole is answered from memory (``answer_whole``, most
requests); a bigger one reads its body from the socket (``streams.py``) within
the ``--body-timeout`` deadline.  The answer is counted (``--stats``) and logged
(``--access-log``) before the caller closes the connection: once a client has the
whole answer, its request is counted and logged.  The asyncio model runs ASGI
apps through a cycle of its own (``apps/asgi.py``), with the same counting and
logging in its channel.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Protocol

from ..accesslog import log_access, logging_access
from ..config import Config
from ..protocol import ProtocolError
from .ending import Ending
from .intake import ParsedHead
from .metrics import WorkerStats
from .sockets import Connection
from .streams import Body, body_stream

__all__ = ["Adapter", "RawHandler", "hand_over", "run_app"]

log = logging.getLogger("scgikit")

_NEVER = float("inf")


class Adapter(Protocol):
    """An app adapter (WSGI, classic handler): answers one ready request on a blocking socket."""

    raw: bool  # a classic handler that reads the connection itself (handle_connection)

    def __call__(self, sock: Connection, variables: dict[str, str], length: int,
                 body: Body) -> tuple[str, int]: ...

    def answer_whole(self, sock: Connection, data: bytes | bytearray,
                     variables: dict[str, str], length: int, start: int) -> tuple[str, int]:
        """The same for a body that is all in ``data`` from ``start`` (as most are).

        Nothing of the request is left unread, and the caller closes ``sock`` once it
        has counted and logged the answer: the answer's last bytes may be left for the
        close to send (``MSG_MORE``)."""


class RawHandler(Protocol):
    """A classic handler that reads the whole connection itself (``handle_connection``)."""

    def handle_raw(self, sock: socket.socket) -> None: ...


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
        stats.record(status, sent, length, accepted, variables)
    if logging_access():
        log_access(variables, status, sent, accepted, model)
    return Ending(conn, unread, config) if unread else None


def hand_over(conn: Connection, handler: RawHandler, config: Config) -> None:
    """A handler that reads the connection itself (``handle_connection``) gets a full socket."""
    timeout = config.header_timeout or None
    sock = socket.socket(conn.family, conn.type, conn.proto, conn.detach())
    sock.settimeout(timeout)
    try:
        handler.handle_raw(sock)
    except (ProtocolError, OSError) as exc:
        log.warning("Bad request: %s", exc)
    except Exception:
        log.exception("Handler error in handle_connection")
    finally:
        sock.close()
