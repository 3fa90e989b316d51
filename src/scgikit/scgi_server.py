"""The classic API of the ``scgi`` package (``scgi.scgi_server``), on scgikit's engine.

A script written for the original package runs after changing ``scgi`` to
``scgikit`` in its imports::

    import scgikit.scgi_server

    class YourHandler(scgikit.scgi_server.SCGIHandler):
        def produce(self, env, bodysize, input, output):
            output.write('Status: 200 OK\\r\\n')
            ...

    scgikit.scgi_server.SCGIServer(handler_class=YourHandler, port=4000).serve()

``SCGIServer`` runs the same pre-forking master as ``scgikit serve``: signals,
worker recycling, timeouts and limits.  Differences from the original: the
default host is 127.0.0.1 (pass ``host=""`` for all interfaces, as before);
``output`` accepts ``str``; ``input`` stops at the end of the body.
"""

from __future__ import annotations

import codecs
import io
import os
import sys
from typing import IO, Any

from .config import Config
from .protocol import DEFAULT_MAX_HEADER_SIZE, ProtocolError, parse_variables

__all__ = ["SCGIHandler", "SCGIServer", "main", "read_env"]


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
        from .apps.handler import HandlerOutput
        from .server.streams import body_stream

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


class SCGIServer:
    """A pre-forking server for a handler class, like ``scgi.scgi_server.SCGIServer``."""

    DEFAULT_PORT = 4000

    def __init__(self, handler_class: type[SCGIHandler] = SCGIHandler, host: str | None = None,
                 port: int = DEFAULT_PORT, max_children: int = 5, **options: Any) -> None:
        self.handler_class = handler_class
        self.host = "127.0.0.1" if host is None else (host or "0.0.0.0")
        self.port = port
        self.max_children = max_children
        self.options = options  # any other Config field: timeout=, max_requests=, ...

    def config(self) -> Config:
        host = f"[{self.host}]" if ":" in self.host else self.host
        bind = (f"{host}:{self.port}",)
        if "bind" in self.options:
            bind = tuple(self.options.pop("bind"))
        return Config(target=f"{self.handler_class.__module__}:{self.handler_class.__qualname__}",
                      bind=bind, workers=self.max_children, **self.options)

    def serve(self) -> None:
        """Run until stopped by SIGTERM/SIGINT (graceful) or SIGQUIT (immediate)."""
        from .server.arbiter import Arbiter, setup_logging

        config = self.config()
        setup_logging(config)
        code = Arbiter(config, app=self.handler_class).run()
        if code:
            raise SystemExit(code)


def main(handler: type[SCGIHandler] = SCGIHandler) -> None:
    """``python -m scgikit.scgi_server [PORT]``: serve ``handler`` (the debugging default)."""
    port = int(sys.argv[1]) if len(sys.argv) == 2 else SCGIServer.DEFAULT_PORT
    SCGIServer(handler_class=handler, port=port).serve()


if __name__ == "__main__":
    main()
