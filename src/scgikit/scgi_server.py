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

import sys
from typing import Any

from .apps.handler import SCGIHandler, read_env
from .config import Config, ConfigError

__all__ = ["SCGIHandler", "SCGIServer", "main", "read_env"]


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
        from .master.arbiter import Arbiter
        from .master.logs import setup_logging

        config = self.config()
        setup_logging(config)
        try:
            code = Arbiter(config, app=self.handler_class).run()
        except ConfigError as exc:  # an address that cannot be bound, say
            print(f"scgikit: {exc}", file=sys.stderr)
            code = 2
        if code:
            raise SystemExit(code)


def main(handler: type[SCGIHandler] = SCGIHandler) -> None:
    """``python -m scgikit.scgi_server [PORT]``: serve ``handler`` (the debugging default)."""
    port = int(sys.argv[1]) if len(sys.argv) == 2 else SCGIServer.DEFAULT_PORT
    SCGIServer(handler_class=handler, port=port).serve()


if __name__ == "__main__":
    main()
