"""The classic ``scgi`` handler API on scgikit's engine.

A worker makes one handler instance and calls its ``produce(env, bodysize,
input, output)`` per request.  ``input`` never reads past the body;
``output`` takes ``str`` (encoded as UTF-8, for scripts written for Python 2)
as well as ``bytes``, and buffers, so that an error raised before anything
reached the socket can still be answered with a clean 500.

A handler that overrides ``handle_connection(conn)`` gets the raw connection,
as it did with the original package.
"""

from __future__ import annotations

import io
import logging
import socket
from typing import TYPE_CHECKING, Any

from ..protocol import ProtocolError, error_response
from ..server.sockets import Connection, send_all
from ..server.streams import Body

if TYPE_CHECKING:
    from ..scgi_server import SCGIHandler

log = logging.getLogger("scgikit")

_FLUSH_AT = 64 * 1024


class HandlerOutput(io.RawIOBase):
    """The ``output`` file of ``produce``: a buffered writer to the socket."""

    def __init__(self, sock: Connection, timeout: float | None) -> None:
        super().__init__()
        self._sock = sock
        self._timeout = timeout
        self._pending: list[bytes] = []
        self._size = 0
        self.first = b""  # the start of the answer, for the status in the access log
        self.sent = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, bytes):
            data = bytes(data)
        if data:
            self._pending.append(data)
            self._size += len(data)
            if self._size >= _FLUSH_AT:
                self.flush()
        return len(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        if not self.sent:
            self.first = data[:64]
        send_all(self._sock, data, self._timeout)
        self.sent += len(data)

    def discard(self) -> None:
        self._pending.clear()
        self._size = 0

    def close(self) -> None:
        try:
            self.flush()
        finally:
            super().close()

    @property
    def status(self) -> str:
        head = self.first if self.sent else b"".join(self._pending)[:64]
        if head.startswith(b"Status:"):
            return head[7:].split(b"\n", 1)[0].decode("latin-1").strip()
        if head.startswith(b"HTTP/"):
            return head.split(b" ", 2)[1].decode("latin-1")
        return "200"


class HandlerAdapter:
    """Runs a classic ``SCGIHandler`` subclass for each request a worker receives."""

    def __init__(self, handler_class: type[SCGIHandler], timeout: float | None = None) -> None:
        from ..scgi_server import SCGIHandler

        self.timeout = timeout  # what a send that cannot finish at once may wait, per call
        self.handler = handler_class(None)
        # The original package let subclasses take over the whole connection.
        self.raw = type(self.handler).handle_connection is not SCGIHandler.handle_connection

    def handle_raw(self, conn: socket.socket) -> None:
        self.handler.handle_connection(conn)

    def __call__(self, sock: Connection, variables: dict[str, str], length: int,
                 body: Body) -> tuple[str, int]:
        output = HandlerOutput(sock, self.timeout)
        try:
            self.handler.produce(variables, length, body, output)
            output.flush()
        except ProtocolError as exc:
            log.warning("Bad request from %s: %s", variables.get("REMOTE_ADDR", "?"), exc)
            return self._fail(sock, output, exc.status)
        except OSError as exc:
            log.info("Front end closed the connection during the response: %s", exc)
        except Exception:
            log.exception("Handler error on %s %s", variables.get("REQUEST_METHOD", "?"),
                          variables.get("REQUEST_URI", "?"))
            return self._fail(sock, output, 500)
        return output.status, output.sent

    def _fail(self, sock: Connection, output: HandlerOutput, status: int) -> tuple[str, int]:
        if output.sent:
            return output.status, output.sent
        output.discard()
        try:
            send_all(sock, error_response(status), self.timeout)
        except OSError:
            pass
        return str(status), 0
