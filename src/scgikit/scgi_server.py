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
worker recycling, timeouts and limits.  ``handler_class`` is an SCGIHandler
subclass or any callable that takes ``parent_fd`` and returns a handler (Quixote's
``create_handler``); each worker makes one handler with it.  ``serve()`` takes the
socket systemd passes, as the original's does, else binds ``host:port``, or serves
on the socket an overridden ``get_listening_socket`` returns.  Differences from the
original: the default host is 127.0.0.1 (pass ``host=""`` for all interfaces, as
before); ``output`` accepts ``str``; ``input`` stops at the end of the body.
docs/porting.md has the rest, name by name.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from .apps.handler import SCGIHandler, handler_factory, read_env
from .arguments import one_line
from .config import Config, ConfigError
from .systemd_socket import get_systemd_socket, sd_listen_fds
from .util import log

__all__ = ["SCGIHandler", "SCGIServer", "get_systemd_socket", "handler_factory", "log", "main",
           "read_env"]

#: What ``handler_class`` may be: a class or a factory, called with ``parent_fd``.
HandlerFactory = Callable[[Any], Any]


class SCGIServer:
    """A pre-forking server for a classic handler, like ``scgi.scgi_server.SCGIServer``.

    ``options`` are any other fields of ``Config`` (``timeout=``, ``max_requests=``,
    ``bind=[...]``...).  A subclass that needs more of them sets its own in
    ``config_options`` (``super().config_options() | {...}``).
    """

    DEFAULT_PORT = 4000

    def __init__(self, handler_class: HandlerFactory = SCGIHandler, host: str | None = None,
                 port: int | str = DEFAULT_PORT, max_children: int | str = 5,
                 **options: Any) -> None:
        self.handler_class = handler_class
        self.host = "127.0.0.1" if host is None else (host or "0.0.0.0")
        self.port = _whole(port, "port")
        self.max_children = _whole(max_children, "max_children")  # optparse passes "5"
        self.options = options  # any other Config field: timeout=, max_requests=, ...

    def config_options(self) -> dict[str, Any]:
        """The fields of the ``Config`` this server runs with; ``options`` win."""
        options = {name: tuple(value) if isinstance(value, list) else value
                   for name, value in self.options.items()}
        if "bind" not in options:
            options["bind"] = self.addresses()
        return {"target": _target_name(self.handler_class), "interface": "handler",
                "workers": self.max_children} | options

    def config(self) -> Config:
        """The ``Config`` of ``config_options()``; an error names the keyword it came from."""
        options = self.config_options()
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(Config)})
        if unknown:
            raise ConfigError(f"SCGIServer: unknown option {unknown[0]!r}: the options are "
                              "the fields of scgikit.config.Config")
        named = {"workers": "max_children", "bind": "host/port"}
        sources = {name: f"SCGIServer {name if name in self.options else named.get(name, name)}"
                   for name in options if name != "target"}
        return Config(sources=sources, **options)

    def addresses(self) -> tuple[str, ...]:
        """Where ``serve()`` listens: the sockets systemd passed to this process when
        there are any (``sd_listen_fds``, the original's rule), else ``host:port``."""
        if sd_listen_fds():
            return ()  # no --bind: the master takes systemd's sockets
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"{host}:{self.port}",)

    def get_listening_socket(self) -> socket.socket:
        """A TCP socket bound to ``host:port``, as the original made it.

        ``serve()`` uses it only when a subclass overrides it (to bind a unix socket,
        say); otherwise the master binds ``host:port`` itself.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        return sock

    def serve(self) -> None:
        """Run until stopped by SIGTERM/SIGINT (graceful) or SIGQUIT (immediate)."""
        if type(self).get_listening_socket is not SCGIServer.get_listening_socket:
            self.serve_on_socket(self.get_listening_socket())
            return
        self._run(self.config)

    def serve_on_socket(self, s: socket.socket) -> None:
        """Serve on the bound socket ``s`` (listening on it if it does not yet)."""

        def on_socket() -> Config:
            config = self.config()
            s.listen(config.backlog)
            fd = os.dup(s.fileno())  # the master's own, closed by it; ``s`` stays the caller's
            try:
                return config.replace(bind=(f"fd://{fd}",))
            except BaseException:
                os.close(fd)
                raise

        self._run(on_socket)

    def _run(self, make_config: Callable[[], Config]) -> None:
        """Serve with the ``Config`` ``make_config`` gives; a setting that is unusable (a
        keyword's value, an address that cannot be bound) is one line and exit status 2."""
        from .master.command import run_server

        try:
            code = run_server(make_config(), app=self.handler_class)
        except ConfigError as exc:
            print(f"scgikit: {one_line(str(exc))}", file=sys.stderr)
            code = 2
        if code:
            raise SystemExit(code)


def _whole(value: int | str, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"SCGIServer: {name} {value!r} is not a whole number") from None


def _target_name(factory: HandlerFactory) -> str:
    """How the log names the handler (the workers are given the object, not this)."""
    module = getattr(factory, "__module__", None) or "?"
    name = getattr(factory, "__qualname__", None) or repr(factory)
    return f"{module}:{name}"


def main(handler: HandlerFactory = SCGIHandler) -> None:
    """``python -m scgikit.scgi_server [PORT]``: serve ``handler`` (the debugging default)."""
    port = int(sys.argv[1]) if len(sys.argv) == 2 else SCGIServer.DEFAULT_PORT
    SCGIServer(handler_class=handler, port=port).serve()


if __name__ == "__main__":
    main()
