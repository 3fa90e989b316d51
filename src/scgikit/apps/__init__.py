"""The app adapters: functions of a parsed request and the connection layer's interface.

    loader.py    find the app a TARGET names, and tell its kind
    request.py   what a request means, from the front end's variables (all adapters)
    wsgi.py      WSGI (PEP 3333): the sync and threads models
    asgi.py      ASGI 3: the asyncio model
    handler.py   the classic ``scgi`` package's SCGIHandler: the sync model

None of them knows a worker model: the WSGI and handler adapters answer on a
blocking socket (``connection/sockets.py``, ``connection/streams.py``), the ASGI
cycle over a small channel interface that the asyncio model implements.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from ..config import Config
from ..connection.answer import Adapter
from ..connection.sockets import local_name

__all__ = ["make_adapter"]


def make_adapter(kind: str, app: Any, config: Config, listeners: Sequence[socket.socket],
                 multithread: bool = False) -> Adapter:
    """The adapter for a WSGI app or a classic handler (``kind``, from ``app_kind``).

    For a handler, ``app`` is what makes it (a class or a factory): each worker makes
    its one handler here, as each child of the original package did.
    """
    if kind == "handler":
        from .handler import HandlerAdapter
        from .loader import make_handler

        return HandlerAdapter(make_handler(app), config.header_timeout or None)
    from .wsgi import WSGIAdapter

    name, port = local_name(listeners)
    return WSGIAdapter(app, config.script_name, name, str(port), config.header_timeout or None,
                       multithread=multithread, front_end_buffering=config.front_end_buffering)
