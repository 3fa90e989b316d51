"""The waiting room: connections that wait for their request's bytes or for their end.

One room per worker, the same for every model.  A connection waits here, costing
a descriptor and its bytes so far, never an app slot:

- for its request (``Intake``): its head, and a small body, have not all arrived;
- for its end (``Ending``): its answer is sent, and the body the app left unread is
  being drained before the close.

How it works.  Each waiting connection has one record (``Waiting``) and one
deadline: the intake's (``--header-timeout`` for the head, counted from the
accept; ``--body-timeout`` for the body, from the head's end) or the ending's
(``--linger-timeout``).  The room arms its descriptor for one readiness in the
worker's poller, and keeps its deadline in a heap: an entry is pushed when a
connection starts to wait or its deadline comes earlier, and entries of
connections that left, or whose deadline moved, are dropped when they come up
(or all at once, when they outnumber the waiting four to one).

The model's loop calls ``readable(fd)`` for each armed descriptor that became
readable, and ``expire(now)`` once the first deadline (``next_deadline``) has
passed.  The sync and threads models compute their wait's timeout from it; the
asyncio model keeps one timer at the head of the heap (``on_deadline`` tells it
of each new deadline).  A request that becomes ready leaves the room for the
model's ``start``; a missed deadline is answered 408 (a body) or closed (a head,
an ending); past ``--max-pending`` connections, the oldest waiting one is dropped.

A new connection comes in through ``arrived``, with what its first receive
brought: its request comes back at once if it is ready (most do), else it waits.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import socket
import time
from collections.abc import Callable
from typing import Protocol

from ..config import Config
from ..protocol import ProtocolError, parse_head
from .ending import Ending, answer_error
from .intake import RECV_SIZE, Intake, ParsedHead, is_ready, receive_now, receive_rest
from .metrics import WorkerStats
from .sockets import DONTWAIT, Connection, recv_now
from .throttle import LogThrottle

__all__ = ["Arming", "Request", "Start", "Waiting", "WaitingRoom"]

log = logging.getLogger("scgikit")

_NEVER = float("inf")
# The heap is rebuilt without its dead entries when it holds this many and four times
# as many as there are waiting connections.
_COMPACT_AT = 64

#: A ready request: what came (the head, and the body if it was small), the parsed head
#: (None for a handler that reads the socket itself), and when it was accepted.
Request = tuple["bytes | bytearray", "ParsedHead | None", float]
#: The model's way to start a ready request: (conn, data, parsed, accepted, now).
Start = Callable[[Connection, "bytes | bytearray", "ParsedHead | None", float, float], None]


class Waiting:
    """A connection in the room: waiting for its request (``intake``) or its end (``ending``)."""

    __slots__ = ("conn", "fd", "intake", "ending", "accepted", "queued")

    def __init__(self, conn: Connection, intake: Intake | None, ending: Ending | None,
                 accepted: float) -> None:
        self.conn = conn
        self.fd = conn.fileno()
        self.intake = intake
        self.ending = ending
        self.accepted = accepted
        self.queued = _NEVER  # the deadline of its live entry in the room's heap

    @property
    def deadline(self) -> float:
        """When it must be done: the ending's deadline, else the intake's."""
        if self.ending is not None:
            return self.ending.deadline
        assert self.intake is not None
        return self.intake.deadline


class Arming(Protocol):
    """What the room needs of the worker's poller (``poller.Poller``)."""

    def arm(self, fd: int, again: bool = False) -> None: ...


class WaitingRoom:
    """The connections one worker holds while they wait, and their deadlines.

    ``start`` runs a request that became ready while it waited; ``peek``: the app is
    a handler that reads the connection itself, so the request is looked at, not
    taken; ``gather``: a new connection's small body may be waited for a moment in
    its first receive (``receive_rest``: the sync and threads models; never on an
    event loop).  ``stats`` counts the requests refused here.
    """

    def __init__(self, config: Config, poller: Arming, start: Start, *,
                 stats: WorkerStats | None = None, peek: bool = False, gather: bool = False,
                 route: bool = False,
                 on_deadline: Callable[[float], None] | None = None) -> None:
        self.config = config
        self.poller = poller
        self.start = start
        self.stats = stats
        # route (the master's, for --session-affinity): look as ``peek`` does, but start a
        # request once it is ready for an app by the readiness rule (or the look is full),
        # with its parsed head: the master routes it, and the worker takes its bytes.
        self.route = route
        self.peek = peek or route
        self.parsed_out = not peek  # the start gets the parsed head
        self.gather = gather
        self.on_deadline = on_deadline
        # A first receive never waits; for a handler that reads the socket, it only looks.
        self.recv_flags = DONTWAIT | (int(socket.MSG_PEEK) if self.peek else 0)
        self.waiting: dict[int, Waiting] = {}  # by descriptor, oldest first
        self.deadlines: list[tuple[float, int, Waiting]] = []
        self.order = itertools.count()  # breaks ties between equal deadlines
        self.log_http = LogThrottle(log, logging.INFO)
        self.log_evicted = LogThrottle(log, logging.WARNING)

    def __len__(self) -> int:
        return len(self.waiting)

    # --- coming in -------------------------------------------------------------------

    def receive(self, conn: Connection) -> Request | None:
        """A new connection: its first receive (it never waits; in the room's look-only
        forms it takes nothing), then ``arrived``."""
        accepted = time.monotonic()
        try:
            got: bytes | OSError = recv_now(conn, RECV_SIZE, self.recv_flags)
        except OSError as exc:
            got = exc
        return self.arrived(conn, got, accepted)

    def arrived(self, conn: Connection, got: bytes | bytearray | OSError,
                accepted: float) -> Request | None:
        """A new connection's first receive: ``got`` is what it brought (``b""``: closed at
        once) or the OSError it raised (BlockingIOError: nothing yet).  Returns the request
        if it is ready; else None: the connection waits here, or was refused or closed."""
        if isinstance(got, OSError):
            if isinstance(got, BlockingIOError):  # nothing yet (a unix client, say)
                self.admit(Waiting(conn, Intake(self.config, accepted), None, accepted))
            else:
                log.info("Error reading a request: %s", got)
                conn.close()
            return None
        if not got:
            conn.close()  # closed before sending a byte: a health check or a port scan
            return None
        config = self.config
        try:
            parsed = parse_head(got, config.max_header_size)
            ready = parsed is not None and (self.peek and not self.route
                                            or is_ready(parsed, len(got), config)
                                            or self.route and len(got) >= RECV_SIZE)
            if parsed is not None and not ready and self.gather:
                got, parsed = receive_rest(conn, got, parsed)
                ready = is_ready(parsed, len(got), config)
            if not ready:
                self.admit(Waiting(conn, Intake(config, accepted, got, parsed), None, accepted))
                return None
        except ProtocolError as exc:
            self.refuse(conn, exc, None)
            return None
        except OSError as exc:
            log.info("Error reading a request: %s", exc)
            conn.close()
            return None
        # A handler that reads the socket itself has only looked at the request (peek).
        return got, parsed if self.parsed_out else None, accepted

    def refuse(self, conn: Connection, exc: ProtocolError, intake: Intake | None) -> None:
        """Answer the client's error (or close, for a missed head deadline), then wait for
        the end.  An error answer is a few hundred bytes into an empty socket buffer."""
        ending = answer_error(conn, exc, intake, self.config, self.log_http, self.stats)
        if ending is not None:
            self.admit(Waiting(conn, None, ending, time.monotonic()))

    def end(self, conn: Connection, ending: Ending, accepted: float) -> None:
        """An answered connection whose unread body must be drained: closed now if what
        has arrived is all of it, else it waits for the rest."""
        if ending.drain():
            conn.close()
        else:
            self.admit(Waiting(conn, None, ending, accepted))

    def admit(self, waiting: Waiting) -> None:
        """Let ``waiting`` in: arm its descriptor and keep its deadline.

        Past ``--max-pending`` connections the oldest is dropped: an idle flood costs
        its own connections, not everyone's descriptors.
        """
        if len(self.waiting) >= self.config.max_pending:
            oldest = next(iter(self.waiting.values()))
            self.log_evicted("Dropping the oldest waiting connection: --max-pending %d reached",
                             self.config.max_pending)
            self._leave(oldest)
            oldest.conn.close()
        self.waiting[waiting.fd] = waiting
        self.poller.arm(waiting.fd)
        self._schedule(waiting)

    # --- what the model's loop reports -----------------------------------------------

    def readable(self, fd: int) -> bool:
        """The poller says ``fd`` is readable: take what came, then start, end or wait on.
        False if ``fd`` is not waiting here (a listener, a pipe)."""
        waiting = self.waiting.get(fd)
        if waiting is None:
            return False
        if waiting.ending is not None:
            if waiting.ending.drain():
                self._leave(waiting)
                waiting.conn.close()
            else:
                self.poller.arm(fd, again=True)
            return True
        intake = waiting.intake
        assert intake is not None
        conn = waiting.conn
        try:
            data = receive_now(conn, self.peek)
            if data is None:
                self.poller.arm(fd, again=True)
                return True
            if self.peek and not data:
                raise intake.closed_early()
            ready = intake.feed(data, time.monotonic(), replace=self.peek)
            if self.route:
                ready = ready or intake.parsed is not None and len(data) >= RECV_SIZE
            elif self.peek:
                ready = intake.parsed is not None  # the handler reads the body itself
            if not ready:
                if intake.deadline < waiting.queued:
                    self._schedule(waiting)  # its head is in: the body's deadline now
                self.poller.arm(fd, again=True)
                return True
        except ProtocolError as exc:
            self._leave(waiting)
            if intake.received or intake.parsed:
                self.refuse(conn, exc, intake)
            else:
                conn.close()  # closed before sending a byte
            return True
        except OSError as exc:
            self._leave(waiting)
            log.info("Error reading a request: %s", exc)
            conn.close()
            return True
        self._leave(waiting)
        request: bytes | bytearray
        if self.route:
            # The master has only looked: every byte is still in the socket, and the head's
            # offset stays what it is (a refusal drains the head and the body, no less).
            assert intake.parsed is not None
            request, parsed = b"".join(intake.chunks), intake.parsed
        else:
            request, parsed = intake.request()
        self.start(conn, request, parsed if self.parsed_out else None, waiting.accepted,
                   time.monotonic())
        return True

    def expire(self, now: float) -> None:
        """Refuse or close every connection whose deadline has passed by ``now``."""
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _, waiting = heapq.heappop(deadlines)
            if self.waiting.get(waiting.fd) is not waiting or deadline != waiting.queued:
                continue  # served, closed, or rescheduled since
            if waiting.deadline > now:
                self._schedule(waiting)  # its head arrived since: it waits for its body now
                continue
            self._leave(waiting)
            if waiting.intake is None:
                waiting.conn.close()
            else:
                self.refuse(waiting.conn, waiting.intake.expired(), waiting.intake)

    def next_deadline(self) -> float:
        """The earliest deadline kept (``inf`` if none): when ``expire`` is next due."""
        return self.deadlines[0][0] if self.deadlines else _NEVER

    # --- the heap ----------------------------------------------------------------------

    def _schedule(self, waiting: Waiting) -> None:
        waiting.queued = deadline = waiting.deadline
        heapq.heappush(self.deadlines, (deadline, next(self.order), waiting))
        if self.on_deadline is not None and deadline != _NEVER:
            self.on_deadline(deadline)

    def _leave(self, waiting: Waiting) -> None:
        if self.waiting.pop(waiting.fd, None) is not waiting:
            return
        deadlines = self.deadlines
        if len(deadlines) > _COMPACT_AT and len(deadlines) > 4 * len(self.waiting):
            # Entries of connections served since are dropped when their deadline
            # passes; under load that is thousands of requests' worth: drop them now.
            self.deadlines = [entry for entry in deadlines
                              if entry[0] == entry[2].queued
                              and self.waiting.get(entry[2].fd) is entry[2]]
            heapq.heapify(self.deadlines)
