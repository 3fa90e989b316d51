"""What every worker model shares: the accept loop, the waiting room, the heartbeat, the stop.

A worker is built in the child right after the fork (``master/boot.py``), loads
nothing itself, and serves until a signal says stop.  Every model (``sync.py``,
``threads.py``, ``asyncio.py``) is a ``Worker``, which holds:

- the listeners, shared with the other workers, non-blocking, watched in the
  worker's poller (``connection/poller.py``), and the accept loop that empties a
  listen queue once the poller says it is not empty (``_accept_from``; the common
  case in ``loops.QueueLoop``);
- the waiting room (``connection/waiting.py``) for connections whose request has
  not fully arrived or whose end is being drained, and the ``WorkerState`` the C
  loop shares;
- the heartbeat slot, in which the master reads since when the oldest request in
  the app has run (it kills a worker stuck past ``--timeout``).

A model supplies how it gets ready (``start``, before the master hears "ready")
and waits (``run``, its loop), how it gives a ready request to the app
(``handle``), and how it backs off when it cannot accept.  Signals only record:
SIGTERM and SIGHUP retire the worker (it stops accepting and ends what it holds),
SIGINT is the master's full stop (it first serves what the listen queues hold),
SIGQUIT ends it at once.  Once a second it checks that the master still lives.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import resource
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..config import Config
from ..connection.handoff import HandOff, is_channel
from ..connection.intake import ParsedHead
from ..connection.metrics import WorkerStats
from ..connection.poller import Poller
from ..connection.sockets import Connection, acceptor, family_of, type_of
from ..connection.throttle import LogThrottle
from ..connection.waiting import Request, WaitingRoom
from .loops import Left, WorkerState

if TYPE_CHECKING:
    from ..allow import AllowList

__all__ = ["ACCEPT_GIVE_UP", "ACCEPT_PAUSE", "OVERRUN_GRACE", "STOP_REPORT", "Heartbeat", "Worker"]

log = logging.getLogger("scgikit")

# When accept() fails for want of descriptors or memory: stop polling the
# listeners this long, and recycle the worker if it lasts this long.
ACCEPT_PAUSE = 0.5
ACCEPT_GIVE_UP = 5.0
# A retiring worker takes at most this many queued connections with it (those whose
# wake-up it may have had); the rest are the other workers'.
RETIRE_BUDGET = 64
# How long a full stop waits for connections still arriving before it closes a listener.
FINAL_WAIT = 0.05
# A stopping worker says what it still waits for this often (until --graceful-timeout).
STOP_REPORT = 2.0
# The threads and asyncio models end a request past --timeout themselves: their heartbeat
# holds its start this much later, so that the master kills the worker only when it
# could not (an event loop the app blocks).
OVERRUN_GRACE = 2.0
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Heartbeat:
    """This worker's slot in the master's shared array: 0.0 idle, else busy since.

    The slot holds the start of the oldest request in the app, so the master finds a
    stuck request whether the worker runs one request at a time or many; each model
    keeps it so (``slots[index] = since``): the threads and asyncio models, which end
    a request past --timeout themselves, ``OVERRUN_GRACE`` after its start.  With
    ``--stats``, ``stats`` is the worker's region of the master's metrics.
    """

    __slots__ = ("slots", "index", "stats")

    def __init__(self, slots: memoryview[float], index: int,
                 stats: WorkerStats | None = None) -> None:
        self.slots = slots
        self.index = index
        self.stats = stats


class Worker:
    """The part of a worker every model shares; a model subclasses it."""

    model = ""  # as the metrics and the access log name it

    def __init__(self, config: Config, listeners: Sequence[socket.socket],
                 heartbeat: Heartbeat, ppid: int) -> None:
        self.config = config
        self.listeners = list(listeners)
        self.heartbeat = heartbeat
        self.stats = heartbeat.stats
        if self.stats is not None:
            self.stats.set_model(self.model)
        self.ppid = ppid
        self.exit_code = 0
        self.state = WorkerState(config.max_requests + (
            random.randint(0, config.max_requests_jitter) if config.max_requests else 0))
        self.allow: AllowList | None = None
        if config.allow_from:
            from ..allow import AllowList  # here: only --allow-from needs it (and ipaddress)

            self.allow = AllowList(config.allow_from)
        self.poller = Poller()
        self.listening = False  # the listeners are in the poller
        # Each listener's acceptor, made now: under a shortage of descriptors, the last
        # accepts of a retiring worker must not need one to make it.
        self.acceptors = {sock: acceptor(sock) for sock in self.listeners
                          if not is_channel(sock)}
        # --session-affinity: the master hands each connection over on a channel of ours.
        self.handoff = HandOff(self.listeners[0]) if (
            len(self.listeners) == 1 and is_channel(self.listeners[0])) else None
        if self.handoff is not None:
            self.acceptors[self.listeners[0]] = self.handoff.accept
        self.log_accept_error = LogThrottle(log, logging.ERROR)
        self.log_refused = LogThrottle(log, logging.WARNING)
        self.room = self._make_room()

    def _make_room(self) -> WaitingRoom:
        return WaitingRoom(self.config, self.poller, self.handle, stats=self.stats)

    # --- what a model supplies ---------------------------------------------------------

    def handle(self, conn: Connection, data: bytes | bytearray, parsed: ParsedHead | None,
               accepted: float, now: float) -> None:
        """Give a ready request to the app (``now``: when it became ready)."""
        raise NotImplementedError

    def _cannot_accept(self, exc: OSError) -> None:
        """An accept failed for want of descriptors or memory: back off."""
        raise NotImplementedError

    def _may_accept(self) -> bool:
        """Whether to take another connection now (a model with a pool says when it is full)."""
        return True

    def capacity(self) -> int:
        """How many requests this worker runs at once (the master routes sessions by it)."""
        return 1

    def _finished(self, conn: Connection) -> None:
        """A request is over: a connection handed over by the master says so."""
        if self.handoff is not None:
            self.handoff.finished(conn)

    # --- one connection ------------------------------------------------------------------

    def _take(self, conn: Connection) -> None:
        """A new connection: start its request now if it is all there, else let it wait."""
        request = self._receive(conn)
        if request is not None:
            self.handle(conn, *request, request[2])

    def _receive(self, conn: Connection) -> Request | None:
        """A new connection's first receive: its request if that is all there, else None
        (the connection waits in the room, was refused, or is closed)."""
        request = self.room.receive(conn)
        if request is None and self.handoff is not None:
            # Refused or closed; or waiting for a body that the master saw was there.
            self.handoff.finished(conn)
        return request

    def _took(self, left: Left) -> bool:
        """What a ``QueueLoop`` handed back: False when the pass is over."""
        if left is None:
            return False
        if isinstance(left, OSError):  # the accept failed
            return self._accept_failed(left)
        conn, got, accepted = left
        request = self.room.arrived(conn, got, accepted)
        if request is not None:
            self.handle(conn, *request, accepted)
        return True

    # --- accepting -----------------------------------------------------------------------

    def _accept_from(self, listener: socket.socket, budget: int | None,
                     final: bool = False,
                     take: Callable[[Connection], None] | None = None) -> None:
        """Accept until the listen queue is empty, or ``budget`` connections are taken.

        ``final``: the last pass of a worker that stops accepting, whatever its state.
        ``take``: what gets each connection (``_take`` unless told).
        """
        if take is None:
            take = self._take
        allow = self.allow
        if allow is not None and family_of(listener) == socket.AF_UNIX:
            allow = None  # its peers have no address to check
        accept_one = self.acceptors[listener] if allow is None else None
        state = self.state
        taken = 0
        while budget != taken and (final or (
                (not state.stopping or state.drain_queue) and self._may_accept())):
            try:
                if accept_one is not None:
                    conn = accept_one()
                    if conn is None:
                        return  # none waiting
                else:
                    assert allow is not None
                    conn = self._accept_allowed(listener, allow)
            except BlockingIOError:
                return
            except OSError as exc:
                if self._accept_failed(exc):
                    continue
                return
            taken += 1
            state.accept_failing_since = None
            if conn is not None:
                take(conn)

    def _accept_allowed(self, listener: socket.socket, allow: AllowList) -> Connection | None:
        """One connection, if its peer is in --allow-from; None if it was refused."""
        fd, peer = listener._accept()  # type: ignore[attr-defined]
        if not allow.permits(peer):
            os.close(fd)
            self.log_refused("Refused a connection from %s: not in --allow-from", peer[0])
            return None
        return Connection(family_of(listener), type_of(listener), 0, fd)

    def _accept_failed(self, exc: OSError) -> bool:
        """An accept raised ``exc``: True to try the next, False to stop taking for now.

        Raises what no other accept would mend.
        """
        if exc.errno in (errno.ECONNABORTED, errno.EINTR):
            return True  # that connection is gone, or a signal came: the next may wait
        if exc.errno in _OUT_OF_RESOURCES:
            self._cannot_accept(exc)
            return False
        raise exc

    def _failing_too_long(self, exc: OSError, now: float) -> bool:
        """Count a failed accept; True once they have gone on for ACCEPT_GIVE_UP seconds."""
        state = self.state
        if state.accept_failing_since is None:
            state.accept_failing_since = now
        elif now - state.accept_failing_since >= ACCEPT_GIVE_UP:
            log.error("Cannot accept connections for %gs (%s); recycling this worker",
                      ACCEPT_GIVE_UP, exc.strerror)
            return True
        return False

    def _listen(self) -> None:
        self.poller.add_listeners(self.listeners)
        self.listening = True
        if self.handoff is not None:
            self.handoff.offer(self.capacity())

    def _unlisten(self) -> None:
        for sock in self.listeners:
            if sock.fileno() >= 0:
                self.poller.remove(sock.fileno())

    # --- stopping ------------------------------------------------------------------------

    def _stop_accepting(self) -> None:
        """Leave the listeners to the other workers; on a full stop, serve their queues first.

        SIGINT means the whole server stops: every connection the kernel has already
        accepted is served (up to the queue's length when the stop began, where the
        kernel tells it: new arrivals are not what a stop should wait for).  Either way
        the listeners leave the wait first, then what is queued is taken: the kernel
        wakes one worker per connection (EPOLLEXCLUSIVE), and a wake-up given to this
        one before it left would be lost to the others, its connection left waiting.
        """
        self._unlisten()
        self.listening = False
        self._final_accepts()

    def _final_accepts(self) -> None:
        """The last accepts from each listener, then this worker's copies are closed.

        On a full stop the master has shrunk the queues (``Listener.refuse_new``), so
        the connections queued now are the last that will be: the pass takes them and
        whatever slipped in meanwhile.  The copies are closed at once, not at exit: a
        socket that no process accepts from any more must be gone, so that a client
        is refused (and its front end tries another backend), not queued and reset
        when the last worker exits.
        """
        for sock in self.listeners:
            if sock.fileno() < 0:
                continue  # closed by an earlier stop
            if self.handoff is not None:
                for conn in self.handoff.retire():  # all the master had sent
                    self._take(conn)
                sock.close()
                continue
            queued = _queued(sock)
            if self.state.drain_queue:
                self._accept_from(sock, None if queued < 0 else queued, final=True)
                # What slips in meanwhile, and TCP connections whose handshake is done but
                # whose first bytes are on their way (TCP_DEFER_ACCEPT keeps them out of
                # the queue until then): closing now would reset them.
                end = time.monotonic() + FINAL_WAIT
                arrivals = select.poll()  # (select() fails on a descriptor above 1023)
                arrivals.register(sock, select.POLLIN)
                while (left := end - time.monotonic()) > 0 and arrivals.poll(left * 1000):
                    self._accept_from(sock, RETIRE_BUDGET, final=True)
            else:
                # Take what is queued now, then serve it: served as it came, a sync
                # worker would go on taking the connections that arrive meanwhile.
                budget = RETIRE_BUDGET if queued < 0 else min(queued, RETIRE_BUDGET)
                held: list[Connection] = []
                self._accept_from(sock, budget, final=True, take=held.append)
                for conn in held:
                    self._take(conn)
            sock.close()
        self.state.drain_queue = False

    def _master_gone(self) -> bool:
        if os.getppid() != self.ppid:
            log.warning("Master %d is gone; worker exiting", self.ppid)
            return True
        return False

    def _recycled(self) -> None:
        state = self.state
        if state.max_requests and state.handled >= state.max_requests:
            log.info("Worker recycled after %d requests", state.handled)


def _queued(sock: socket.socket) -> int:
    """Connections waiting in a TCP listener's accept queue, or -1 where the kernel won't say.

    For a listening socket, Linux reports the accept queue's length as tcpi_unacked.
    """
    if sock.family == socket.AF_UNIX or not hasattr(socket, "TCP_INFO"):
        return -1
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    except OSError:
        return -1
    return int(struct.unpack_from("I", info, 24)[0])


def raise_descriptor_limit() -> None:
    """Each waiting connection costs a descriptor: allow as many as the hard limit lets us.

    (systemd, for one, starts services with a soft limit of 1024 under a far higher hard one.)
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
