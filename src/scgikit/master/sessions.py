"""Session affinity (``--session-affinity``): the master routes requests to their workers.

As the ``scgi`` package's session_server does, the requests of one session go to
one worker process, in the order they came, and never run at the same time, so a
session's state may live in that process's memory (Quixote's sessions do).

How it works.  The master accepts every connection itself; the workers do not
listen.  A new connection waits in a waiting room of the master's
(``connection/waiting.py``, in its ``route`` form: it looks at the bytes without
taking them, under --header-timeout and --max-pending as in the workers) until
its head is in and its body is ready by the workers' readiness rule.  Then its
session is found, as the original finds it: ``--session-pattern`` searched in
HTTP_COOKIE, else HTTP_X_FORWARDED_FOR, else REMOTE_ADDR, else the peer's address.
The session's requests queue here, in order; one at a time goes to the session's
worker over that worker's channel (``connection/handoff.py``), and the next when the
worker says the first is over.  A session past ``--session-queue`` waiting
requests is answered 503, as the original does.

Which worker: a session keeps the worker it was first given for as long as that
worker lives.  A new session (or one whose worker retired) goes to the worker with
the fewest requests running, among those with room (one request for the sync
model, --threads for the threads model); when none has room, it waits here for the
first that has.  So a busy session never holds back a new one; two sessions that
share a worker (more sessions than workers) take their turns on it.

Reloads, recycling and stops lose nothing: a retiring worker says so on its
channel; the master sends it nothing more and shuts its side, and the worker
serves what had been sent before it exits.  A session whose worker retired moves
to another once its running request is over.  On a full stop the master first
accepts what the listen queues hold and hands over every request it holds; only
then are the workers told to stop.
"""

from __future__ import annotations

import collections
import itertools
import logging
import re
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import Config
from ..connection.ending import Ending
from ..connection.handoff import CAPACITY, DONE, HANDED, REPORT, RETIRING
from ..connection.intake import ParsedHead
from ..connection.poller import Poller
from ..connection.sockets import DONTWAIT, Connection
from ..connection.throttle import LogThrottle
from ..connection.waiting import WaitingRoom
from ..protocol import error_response

if TYPE_CHECKING:
    from ..allow import AllowList

__all__ = ["DEFAULT_SESSION_ID", "MAX_AGE", "MAX_SESSIONS", "Session", "SessionRouter",
           "SessionTable"]

log = logging.getLogger("scgikit")

#: The session of a request with no cookie and no address (the original's).
DEFAULT_SESSION_ID = "*unknown*"
#: Sessions remembered with no request running or waiting: the least recent go first.
MAX_SESSIONS = 100_000
#: A session idle this long forgets its worker (the original's MAX_AGE, in seconds).
MAX_AGE = 7200.0


class Route:
    """A worker, as the router sees it: its channel and the requests it runs."""

    __slots__ = ("pid", "sock", "capacity", "running", "sessions", "open")

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.capacity = 1  # until the worker says
        self.running = 0
        self.sessions = 0  # bound to it
        self.open = True  # takes requests


class Session:
    """One session's worker, its running request and the requests waiting behind it."""

    __slots__ = ("key", "route", "running", "queue", "last", "unplaced")

    def __init__(self, key: str) -> None:
        self.key = key
        self.route: Route | None = None
        self.running = 0  # the token of the request its worker runs
        self.queue: collections.deque[tuple[Connection, int]] = collections.deque()
        self.last = time.monotonic()
        self.unplaced = False  # waits in the router's line for a worker with room


class SessionTable:
    """The sessions known, least recently used first; idle ones are forgotten past
    ``most`` or after ``max_age`` seconds (as a new session comes)."""

    def __init__(self, most: int = MAX_SESSIONS, max_age: float = MAX_AGE) -> None:
        self.most = most
        self.max_age = max_age
        self.by_key: collections.OrderedDict[str, Session] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.by_key)

    def values(self) -> list[Session]:
        return list(self.by_key.values())

    def get(self, key: str) -> Session | None:
        return self.by_key.get(key)

    def find(self, key: str, now: float) -> Session:
        """The session ``key``, made if new; it becomes the most recently used."""
        session = self.by_key.get(key)
        if session is None:
            session = self.by_key[key] = Session(key)
            self._forget_old(now)
        else:
            self.by_key.move_to_end(key)
        session.last = now
        return session

    def _forget_old(self, now: float) -> None:
        by_key = self.by_key
        while by_key:
            oldest = next(iter(by_key.values()))
            if (oldest.running or oldest.queue
                    or (len(by_key) <= self.most and now - oldest.last < self.max_age)):
                return
            del by_key[oldest.key]
            if oldest.route is not None:
                oldest.route.sessions -= 1


class SessionRouter:
    """The master's part of --session-affinity: accept, find the session, hand over."""

    def __init__(self, config: Config, listeners: Sequence[socket.socket]) -> None:
        self.config = config
        self.pattern = re.compile(config.session_pattern)
        self.poller = Poller()
        self.room = WaitingRoom(config, self.poller, self._ready, route=True)
        self.listeners = {sock.fileno(): sock for sock in listeners}
        self.poller.add_listeners(listeners)
        self.allow: AllowList | None = None
        if config.allow_from:
            from ..allow import AllowList  # here: only --allow-from needs it (and ipaddress)

            self.allow = AllowList(config.allow_from)
        self.routes: dict[int, Route] = {}  # by pid
        self.channels: dict[int, Route] = {}  # by the channel's descriptor
        self.sessions = SessionTable()
        self.tokens: dict[int, Session] = {}
        self.counter = itertools.count(1)
        self.unplaced: collections.deque[Session] = collections.deque()  # no worker had room
        self.accepting = True
        self.log_busy = LogThrottle(log, logging.WARNING)

    def fileno(self) -> int:
        """The descriptor the master's wait watches: readable when anything here is."""
        return self.poller.fileno()

    def next_deadline(self) -> float:
        return self.room.next_deadline()

    # --- workers -------------------------------------------------------------------------

    def add(self, pid: int, sock: socket.socket) -> None:
        """A new worker's end of its channel (the master's side)."""
        route = self.routes[pid] = Route(pid, sock)
        self.channels[sock.fileno()] = route
        self.poller.watch(sock.fileno())

    def gone(self, pid: int) -> None:
        """A worker exited: what it ran is over; its sessions move on their next request."""
        route = self.routes.pop(pid, None)
        if route is None:
            return
        self._close(route)
        for session in list(self.sessions.values()):
            if session.route is route:
                session.route = None
                if session.running:
                    self.tokens.pop(session.running, None)
                    session.running = 0
                    self._pump(session)
        self._place()

    # --- the master's loop ---------------------------------------------------------------

    def handle(self) -> None:
        """Whatever is ready: new connections, heads that came in, workers' reports."""
        for fd in self.poller.wait(0):
            if self.room.readable(fd):
                continue
            route = self.channels.get(fd)
            if route is not None:
                self._read_reports(route)
            elif fd in self.listeners and self.accepting:
                self._accept(self.listeners[fd])
        if self.room.next_deadline() <= time.monotonic():
            self.room.expire(time.monotonic())

    def stop(self) -> None:
        """A full stop: take what the listen queues hold now, then accept no more."""
        for sock in self.listeners.values():
            self._accept(sock)
            self.poller.remove(sock.fileno())
        self.accepting = False

    def holding(self) -> bool:
        """Whether requests wait here for their head, their turn or a worker."""
        return bool(len(self.room) or self.unplaced
                    or any(session.queue for session in self.sessions.values()))

    def close(self) -> None:
        for route in list(self.routes.values()):
            self._close(route)
        self.poller.close()

    def forget(self) -> None:
        """In a new worker: close the master's copies of everything here, so that a
        connection the master closes is closed, and the listeners are the master's alone."""
        for waiting in list(self.room.waiting.values()):
            waiting.conn.close()
        for session in self.sessions.values():
            for conn, _ in session.queue:
                conn.close()
        for sock in self.listeners.values():
            sock.close()
        for route in self.routes.values():
            route.sock.close()
        # Closed, not emptied: the epoll instance is the master's too.
        self.poller.close()

    # --- coming in -----------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        family = listener.family
        allow = self.allow if family != socket.AF_UNIX else None
        while True:
            try:
                fd, peer = listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("Cannot accept a connection: %s", exc)
                return
            if allow is not None and not allow.permits(peer):
                socket.close(fd)
                continue
            conn = Connection(family, socket.SOCK_STREAM, 0, fd)
            request = self.room.receive(conn)
            if request is not None:
                self._ready(conn, *request, request[2])

    def _ready(self, conn: Connection, data: bytes | bytearray, parsed: ParsedHead | None,
               accepted: float, now: float) -> None:
        """A request is all there (or streams): queue it behind its session's."""
        assert parsed is not None
        key, address = self._session_of(parsed[0], conn)
        session = self.sessions.find(key, now)
        if session.route is None and address != key:
            # A new cookie: its first requests came without it (a login), as the client's
            # address; it starts on that worker, where the app made it.
            first = self.sessions.get(address)
            if first is not None and first.route is not None and first.route.open:
                session.route = first.route
                first.route.sessions += 1
        if session.running and len(session.queue) >= self.config.session_queue:
            self.log_busy("Session %s has %d requests waiting (--session-queue): answered 503",
                          key, len(session.queue))
            self._refuse(conn, parsed)
            return
        session.queue.append((conn, conn.family))
        self._pump(session)

    def _session_of(self, variables: dict[str, str], conn: Connection) -> tuple[str, str]:
        """The request's session, and the client's address (the session without a cookie)."""
        address = variables.get("HTTP_X_FORWARDED_FOR") or variables.get("REMOTE_ADDR")
        if not address:
            try:
                peer = conn.getpeername()
            except OSError:
                peer = None
            address = str(peer[0]) if isinstance(peer, tuple) else DEFAULT_SESSION_ID
        cookies = variables.get("HTTP_COOKIE")
        if cookies:
            found = self.pattern.search(cookies)
            if found and found.group("id"):
                return str(found.group("id")), address
        return address, address

    def _refuse(self, conn: Connection, parsed: ParsedHead) -> None:
        try:
            conn.send(error_response(503), DONTWAIT)  # a few bytes into an empty buffer
        except OSError:
            conn.close()
            return
        # The request was only looked at: read it off before the close, or the kernel
        # resets the connection and the front end may lose the answer.
        self.room.end(conn, Ending(conn, parsed[2] + parsed[1], self.config), time.monotonic())

    # --- handing over --------------------------------------------------------------------

    def _pump(self, session: Session) -> None:
        """Hand the session's next request over, if none of its runs and a worker can take it."""
        while not session.running and session.queue:
            route = session.route
            if route is None or not route.open:
                route = self._choose()
                if route is None:
                    self._wait_for_room(session)
                    return
            conn, family = session.queue[0]
            token = next(self.counter)
            try:
                socket.send_fds(route.sock, [HANDED.pack(token, family)], [conn.fileno()])
            except BlockingIOError:  # its channel is full: wait for its reports
                self._wait_for_room(session)
                return
            except OSError:  # it is gone, or going
                route.open = False
                continue
            session.queue.popleft()
            conn.close()  # the worker has its own descriptor now
            if session.route is not route:
                if session.route is not None:
                    session.route.sessions -= 1
                session.route = route
                route.sessions += 1
            session.running = token
            route.running += 1
            self.tokens[token] = session

    def _choose(self) -> Route | None:
        """The open worker with the most room, if one has any."""
        best = None
        for route in self.routes.values():
            if route.open and route.running < route.capacity and (
                    best is None or (route.running, route.sessions)
                    < (best.running, best.sessions)):
                best = route
        return best

    def _wait_for_room(self, session: Session) -> None:
        if not session.unplaced:
            session.unplaced = True
            self.unplaced.append(session)

    def _place(self) -> None:
        """Sessions that found no worker with room: try again, in the order they came."""
        for _ in range(len(self.unplaced)):
            session = self.unplaced.popleft()
            session.unplaced = False
            self._pump(session)

    def _read_reports(self, route: Route) -> None:
        while True:
            try:
                data = route.sock.recv(REPORT.size, DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if len(data) != REPORT.size:  # the worker's end is closed: it exited
                self._close(route)
                break
            kind, value = REPORT.unpack(data)
            if kind == DONE:
                session = self.tokens.pop(value, None)
                route.running -= 1
                if session is not None:
                    session.running = 0
                    session.last = time.monotonic()
                    self._pump(session)
            elif kind == CAPACITY:
                route.capacity = max(1, value)
            elif kind == RETIRING:
                route.open = False
                try:
                    route.sock.shutdown(socket.SHUT_WR)  # it takes what was sent, then sees the end
                except OSError:
                    pass
        self._place()

    def _close(self, route: Route) -> None:
        route.open = False
        fd = route.sock.fileno()
        if fd >= 0:
            self.channels.pop(fd, None)
            self.poller.remove(fd)
            route.sock.close()
