"""The classic API of the ``scgi`` package's ``scgi.systemd_socket``: sockets from systemd.

systemd's socket activation passes listening sockets from descriptor 3 on, with
their count in LISTEN_FDS and the process they are meant for in LISTEN_PID
(sd_listen_fds(3)).  ``scgikit serve`` and ``SCGIServer.serve()`` take them
themselves (``master/listeners.py``); these functions are for a script that
calls them, and keep the original's rules, on the master's code:

- ``sd_listen_fds()`` counts them as the original does (``passed_fd_count`` with
  ``strict``): none without a LISTEN_PID naming this process; an ``OSError`` for
  a LISTEN_FDS meant for it that is not a count (the original returned a negative
  one, and ``get_systemd_socket`` then took descriptor 3 anyway).  Each passed
  descriptor is made close-on-exec, as the original makes it.
- ``get_systemd_socket()`` returns the one socket, or None; several are an
  ``OSError``, as in the original.  The socket keeps descriptor 3 (the original
  returned a duplicate and closed 3), and one that is not a listening stream
  socket is an ``OSError`` saying so.
"""

from __future__ import annotations

import os
import socket

from .config import ConfigError
from .master.listeners import SD_LISTEN_FDS_START, inherited_listener, passed_fd_count

__all__ = ["SD_LISTEN_FDS_START", "get_systemd_socket", "sd_listen_fds"]


def sd_listen_fds() -> int:
    """Return the number of inherited sockets.  Return zero if there are none."""
    count = passed_fd_count(os.environ, strict=True)
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
    return count


def get_systemd_socket() -> socket.socket | None:
    """Return the inherited socket, if there is one.  If not, return None."""
    count = sd_listen_fds()
    if not count:
        return None
    if count > 1:
        raise OSError("only one inherited socket supported")
    try:
        return inherited_listener(SD_LISTEN_FDS_START, f"systemd fd {SD_LISTEN_FDS_START}").sock
    except ConfigError as exc:
        raise OSError(str(exc)) from None
