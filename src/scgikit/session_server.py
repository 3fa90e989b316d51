"""The ``scgi`` package's session server (``scgi.session_server``), on scgikit's engine.

``SCGIServer`` here is ``scgi_server.SCGIServer`` with session affinity
(``--session-affinity``, docs/server.md): the requests of one session go to one
worker process, in the order they came, one at a time.  The session is found as
the original finds it, with the class attributes it had for a subclass to tune::

    from scgikit import session_server

    class Server(session_server.SCGIServer):
        SESSION_ID_PATTERN = r'sid=(?P<id>[0-9a-f]+)'   # searched in the Cookie header
        MAX_QUEUE = 30                                  # waiting requests before a 503

    Server(handler_class=MyHandler, port=4000).serve()

The original forked a process per session and pruned idle ones (``MAX_AGE``,
``CHILD_TIMEOUT``); here the sessions share ``max_children`` workers, a new session
going to one with room, and a worker lives until it is recycled or stopped.
"""

from __future__ import annotations

import sys
from typing import Any

from . import scgi_server
from .config import SESSION_ID_PATTERN
from .master.sessions import DEFAULT_SESSION_ID
from .scgi_server import SCGIHandler
from .systemd_socket import get_systemd_socket
from .util import log, ns_reads, parse_env

__all__ = ["SCGIHandler", "SCGIServer", "get_systemd_socket", "log", "main", "ns_reads",
           "parse_env"]


class SCGIServer(scgi_server.SCGIServer):
    """A pre-forking server with session affinity, like ``scgi.session_server.SCGIServer``."""

    #: Searched in HTTP_COOKIE; its group ``id`` is the session (Quixote's cookie).
    SESSION_ID_PATTERN = SESSION_ID_PATTERN
    #: The session of a request with neither that cookie nor a client address (the
    #: master's: for scripts that read it).
    DEFAULT_SESSION_ID = DEFAULT_SESSION_ID
    #: Requests a session may have waiting behind its running one; beyond, 503
    #: (the original's ``Child.MAX_QUEUE``).
    MAX_QUEUE = 15

    def config_options(self) -> dict[str, Any]:
        sessions = {"session_affinity": True, "session_pattern": self.SESSION_ID_PATTERN,
                    "session_queue": self.MAX_QUEUE}
        return sessions | super().config_options()


def main() -> None:
    """``python -m scgikit.session_server [PORT]``: the debugging handler, with sessions."""
    port = int(sys.argv[1]) if len(sys.argv) == 2 else SCGIServer.DEFAULT_PORT
    SCGIServer(port=port).serve()


if __name__ == "__main__":
    main()
