"""A request past ``--timeout`` in the threads model: answered, cut loose, the worker recycled.

No thread can be stopped from outside, so the request is taken away from its thread
instead.  At its deadline (its start plus ``--timeout``) the main thread, holding the
lock the pool thread must take before it closes the connection:

1. keeps a duplicate of the connection's descriptor, then points the thread's descriptor
   at a dead socket (``dup2``): from then on what the app sends goes nowhere (EPIPE)
   and what it reads ends, while the descriptor's number stays the thread's to close;
2. answers 504 on the kept descriptor if the app had not called ``start_response``
   before the swap (then nothing of its answer can have been sent), else cuts the
   answer short; either way shuts the connection down, which wakes a thread blocked
   on it, and closes it;
3. retires the worker: no more accepts, and it exits once its other requests are over,
   leaving the stuck thread behind (the pool's threads are daemons).

The heartbeat slot then moves on to the next oldest request.  It holds each start
``OVERRUN_GRACE`` later (``base.Heartbeat``): the master's own kill is left for a worker
whose main thread cannot act.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..connection.sockets import Connection
from ..protocol import error_response
from .base import OVERRUN_GRACE, Heartbeat

__all__ = ["Running", "Request", "cut_loose", "dead_socket", "watch_start"]

log = logging.getLogger("scgikit")

_ANSWER = error_response(504)


class Request:
    """One request a pool thread runs; its app gets it as ``start_response`` (``watch_start``)."""

    __slots__ = ("conn", "started", "begun", "variables", "start_response")

    def __init__(self, conn: Connection, started: float, variables: dict[str, str]) -> None:
        self.conn = conn
        self.started = started
        self.begun = False  # the app has called start_response: its answer may be going out
        self.variables = variables
        self.start_response: Callable[..., Any] | None = None  # the adapter's

    def __call__(self, *args: Any) -> Any:
        self.begun = True
        assert self.start_response is not None
        return self.start_response(*args)


class Running:
    """The requests the pool runs, by start time: the heartbeat slot holds the oldest's."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self.slots, self.index = heartbeat.slots, heartbeat.index
        self.requests: dict[int, Request] = {}
        self.lock = threading.Lock()
        self.keys = itertools.count()
        self.local = threading.local()  # .request: the one this thread runs

    def begin(self, conn: Connection, variables: dict[str, str]) -> int:
        """A request enters the app now; returns the key that ``end`` takes."""
        with self.lock:  # (its start read under the lock: the set keeps them in order)
            now = time.monotonic()
            request = self.local.request = Request(conn, now, variables)
            key = next(self.keys)
            self.requests[key] = request
            if len(self.requests) == 1:
                self.slots[self.index] = now + OVERRUN_GRACE
        return key

    def end(self, key: int) -> bool:
        """The request's app has returned; False if it was cut loose (``overdue``) before.

        The caller may close the connection only after this, the lock having been taken:
        a descriptor cut loose is never the number of a connection accepted since."""
        with self.lock:
            request = self.requests.pop(key, None)
            if request is not None and request.started + OVERRUN_GRACE == self.slots[self.index]:
                self._oldest()
        self.local.request = None
        return request is not None

    def overdue(self, deadline: float, act: Callable[[Request], None]) -> int:
        """``act`` on each request that started before ``deadline`` (under the lock, so
        none of their threads closes its connection meanwhile); they leave the set."""
        with self.lock:
            late = [key for key, request in self.requests.items() if request.started < deadline]
            for key in late:
                act(self.requests.pop(key))
            if late:
                self._oldest()
        return len(late)

    def _oldest(self) -> None:
        # The requests are kept in the order they began: the first is the oldest.
        oldest = next(iter(self.requests.values())).started if self.requests else 0.0
        self.slots[self.index] = oldest + OVERRUN_GRACE if oldest else 0.0

    def oldest(self) -> float:
        """The start of the oldest request (0.0: none)."""
        slot = self.slots[self.index]
        return slot - OVERRUN_GRACE if slot else 0.0


def watch_start(app: Callable[..., Iterable[bytes]], running: Running
                ) -> Callable[..., Iterable[bytes]]:
    """``app``, noting on the thread's request when it calls ``start_response``."""
    local = running.local

    def app_watched(environ: dict[str, Any], start_response: Callable[..., Any]
                    ) -> Iterable[bytes]:
        request = getattr(local, "request", None)
        if request is None:
            return app(environ, start_response)
        request.start_response = start_response
        return app(environ, request)

    return app_watched


def dead_socket() -> socket.socket:
    """A socket whose sends fail (EPIPE) and whose receives end at once: its peer is gone."""
    one, other = socket.socketpair()
    other.close()
    one.shutdown(socket.SHUT_RDWR)
    return one


def cut_loose(request: Request, dead: socket.socket) -> bool:
    """Take ``request``'s connection from its thread; True if it was answered 504."""
    fd = request.conn.fileno()
    if fd < 0:
        return False
    try:
        kept = socket.socket(fileno=os.dup(fd))
    except OSError:  # out of descriptors: cut it, and let its thread end it
        try:
            request.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return False
    os.dup2(dead.fileno(), fd)
    answered = not request.begun  # read after the swap: nothing went out before it
    with kept:
        if answered:
            try:
                answered = kept.send(_ANSWER, socket.MSG_DONTWAIT) == len(_ANSWER)
            except OSError:
                answered = False
        try:
            kept.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return answered
