"""The classic ``scgi`` handler API on scgikit's engine.

A worker makes one handler instance and calls its ``produce(env, bodysize,
input, output)`` per request.  ``input`` never reads past the body;
``output`` takes ``str`` (encoded as UTF-8, for scripts written for Python 2)
as well as ``bytes``, and buffers, so that an error raised before anything
reached the socket can still be answered with a clean 500.

A handler that overrides ``handle_connection(conn)`` gets the raw connection,
as it did with the original package.  The handler may come from a factory (any
callable that takes ``parent_fd``, as the original's SCGIServer took), marked with
``handler_factory`` for ``scgikit serve``.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import IO, Any, TypeVar

from ..connection.sockets import Connection, send_all
from ..connection.streams import Body, body_stream, whole_body
from ..protocol import DEFAULT_MAX_HEADER_SIZE, ProtocolError, error_response, parse_variables

log = logging.getLogger("scgikit")

_FLUSH_AT = 64 * 1024


def read_env(input: IO[bytes], max_header_size: int = DEFAULT_MAX_HEADER_SIZE) -> dict[str, str]:
    """Read the header netstring from the file ``input`` and return its variables."""
    digits = b""
    while True:
        char = input.read(1)
        if char == b":":
            break
        if not char:
            raise ProtocolError("connection closed before the header length")
        digits += char
        if len(digits) > len(str(max_header_size)) or not digits.isdigit():
            raise ProtocolError(f"bad netstring length {digits[:20]!r}")
    size = int(digits)
    if size > max_header_size:
        raise ProtocolError(f"header netstring of {size} bytes is too large", status=431)
    block = input.read(size)
    if len(block) != size or input.read(1) != b",":
        raise ProtocolError("header netstring is truncated or not followed by ','")
    return parse_variables(block)[0]


class SCGIHandler:
    """Subclass and override ``produce`` (or ``produce_cgilike``) to serve requests."""

    def __init__(self, parent_fd: int | None = None) -> None:
        self.parent_fd = parent_fd

    def serve(self) -> None:
        """In the original, the child's loop; scgikit's workers run their own."""
        raise NotImplementedError(
            "scgikit's workers call produce() themselves; start SCGIServer(...).serve() "
            "or 'scgikit serve module:HandlerClass' instead"
        )

    def read_env(self, input: IO[bytes]) -> dict[str, str]:
        return read_env(input)

    def handle_connection(self, conn: Any) -> None:
        """Handle a raw connection: read the head, then ``produce``.

        Overriding this still works, as it did in the original package; it is
        easier and safer to override ``produce`` or ``produce_cgilike``.
        """
        input = conn.makefile("rb")
        env = self.read_env(input)
        bodysize = int(env.get("CONTENT_LENGTH", 0))
        output = HandlerOutput(conn, conn.gettimeout())
        try:
            self.produce(env, bodysize, body_stream(conn, input.read1(bodysize) if bodysize
                                                    else b"", bodysize), output)
        finally:
            output.close()
            input.close()

    def produce(self, env: dict[str, str], bodysize: int, input: io.BufferedIOBase,
                output: Any) -> None:
        """Answer one request: write a CGI head (``Status:``, headers, blank line), then the body.

        ``env`` maps the CGI variables to their values; ``bodysize`` is
        CONTENT_LENGTH; ``input`` reads the body (never more than ``bodysize``
        bytes); ``output`` takes ``bytes`` or ``str``.  The default sets up a
        CGI-like process environment and calls ``produce_cgilike``.
        """
        stdin, stdout, environ = sys.stdin, sys.stdout, os.environ
        sys.stdin = codecs.getreader("utf-8")(input)
        sys.stdout = codecs.getwriter("utf-8")(output)
        os.environ = env  # type: ignore[assignment]  # noqa: B003 (as the original does)
        try:
            self.produce_cgilike(env, bodysize)
        finally:
            sys.stdin, sys.stdout, os.environ = stdin, stdout, environ

    def produce_cgilike(self, env: dict[str, str], bodysize: int) -> None:
        """CGI-style: variables in ``os.environ``, body on stdin, answer on stdout.

        The default lists the request's variables, which helps when debugging.
        """
        print("Content-Type: text/plain; charset=utf-8")
        print()
        for name, value in env.items():
            print(f"{name}: {value!r}")


def reads_connection(handler: Any) -> bool:
    """Whether ``handler`` takes the whole connection (``handle_connection``), as the
    original package let a handler do, rather than a parsed request (``produce``).

    Ours, unless its class overrides ``handle_connection``; a handler of another
    class (the original package's, from a factory) has it called when it has one.
    """
    own = getattr(type(handler), "handle_connection", None)
    return own is not None and own is not SCGIHandler.handle_connection


#: The attribute ``handler_factory`` sets on a function, read by ``loader.app_kind``.
INTERFACE_MARK = "__scgikit_interface__"

_F = TypeVar("_F", bound=Callable[..., Any])


def handler_factory(factory: _F) -> _F:
    """Mark ``factory``, a function that takes ``parent_fd`` and returns a handler, as
    a classic handler: ``scgikit serve module:factory`` then serves it as one, where an
    unmarked function would be taken for a WSGI app (or say ``--interface handler``).
    """
    setattr(factory, INTERFACE_MARK, "handler")
    return factory


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
    """Runs a worker's classic handler (``loader.make_handler``) for each request it receives."""

    def __init__(self, handler: Any, timeout: float | None = None) -> None:
        self.timeout = timeout  # what a send that cannot finish at once may wait, per call
        self.handler = handler
        self.raw = reads_connection(handler)

    def handle_raw(self, conn: socket.socket) -> None:
        self.handler.handle_connection(conn)

    def answer_whole(self, sock: Connection, data: bytes | bytearray,
                     variables: dict[str, str], length: int, start: int) -> tuple[str, int]:
        return self(sock, variables, length, whole_body(data, length, start))

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
