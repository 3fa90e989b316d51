"""The sync worker model: one request in the app at a time, every waiting connection parked.

How it works.  The worker loads the app after the fork (``boot.py``), tells the
master it is ready, then loops: accept from the shared non-blocking listeners
until they are empty, then wait on them, the signal wake-up pipe and its parked
connections (epoll; the listeners with EPOLLEXCLUSIVE, so one idle worker wakes
per connection, not all of them).  Once a second it checks that the master
still lives.

A new connection's first ``recv`` usually holds the whole request: then it goes
straight to the app.  One whose head (or small body) has not fully arrived is
*parked*: it waits in the epoll set, non-blocking, against its deadline, while
the worker goes on serving others (``intake.py`` holds the rules).  After the
answer, a connection with unread body bytes is parked again to drain them
before the close (``connection.Ending``).  So idle and slow clients cost a
descriptor and a few hundred bytes each, never the app.

Signal handlers only set flags; the loop acts on them between requests.  SIGTERM
(a reload, fewer workers, recycling) retires the worker: it stops accepting and
ends what it holds.  SIGINT (the master's full stop) first serves every
connection already waiting in the listen queue.  While a request is in the app,
the worker writes the time it started into its heartbeat slot; the master kills
a worker whose slot is older than ``--timeout``.
"""

from __future__ import annotations

import _socket
import errno
import functools
import heapq
import itertools
import logging
import os
import random
import resource
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from ..config import Config
from ..protocol import ACCELERATED, ProtocolError, parse_head
from .allow import AllowList
from .connection import (
    RECV_SIZE,
    Adapter,
    Ending,
    access_log,
    answer_error,
    hand_over,
    log_access,
    receive_now,
    receive_rest,
    run_app,
)
from .intake import Intake, ParsedHead, is_ready
from .sockets import Connection, Listener
from .stats import WorkerStats
from .throttle import LogThrottle

__all__ = ["Accepting", "Adapter", "Heartbeat", "Worker"]

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
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# A socket.socket's family and type are enums made in Python at each read (0.8 µs for
# the two, once per wake-up); the C socket type's own descriptors give the plain ints.
_raw_family: Callable[[socket.socket], int] = _socket.socket.family.__get__
_raw_type: Callable[[socket.socket], int] = _socket.socket.type.__get__
# Accepting through the C accelerator gives the bare descriptor: socket._accept() also
# makes the peer's address into a tuple of Python objects (0.6 µs a TCP connection),
# which only --allow-from reads.
_accept_fd: Callable[[int], int] | None = None
# And where CPython's socket object is laid out as the C code expects (checked here, on a
# real socket), it makes the connection's socket object itself: socket(family, type, 0,
# fd) would check the descriptor with a getsockname() call (0.65 us a connection in all).
_accept_socket: Callable[[int, Connection], Connection | None] | None = None
# The first receive and the close, on such sockets, in C that keeps the GIL (neither
# waits): in the threads model, letting go of it costs two thread switches each time.
_recv: Callable[[Connection, int, int], bytes] = _socket.socket.recv
_close: Callable[[Connection], None] = _socket.socket.close
# The sync model's accept loop in C, on such sockets (see Worker._serve_queue), and the
# asyncio model's (AsyncioWorker._take_queue).
_serve_queue_c: Callable[..., Any] | None = None
_take_queue_c: Callable[..., Any] | None = None


def _socket_layout_matches(check: Callable[[Connection], bool]) -> bool:
    ours, theirs = socket.socketpair()
    try:
        sample = _socket.socket(ours.family, ours.type, 0, ours.detach())
        try:
            return check(sample)
        finally:
            sample.close()
    finally:
        theirs.close()


if ACCELERATED:
    from .. import _speedups

    _accept_fd = getattr(_speedups, "accept_fd", None)  # None: built before it existed
    if hasattr(_speedups, "accept_socket") and _socket_layout_matches(
            _speedups.socket_layout_matches):
        _accept_socket = _speedups.accept_socket
        _recv = _speedups.recv_now
        _close = _speedups.close_now
        _serve_queue_c = getattr(_speedups, "serve_queue", None)
        _take_queue_c = getattr(_speedups, "take_queue", None)
_templates: dict[tuple[int, int], Connection] = {}


def _template(family: int, kind: int) -> Connection:
    """A closed socket of this family and type, for accept_socket to copy (timeout too)."""
    template = _templates.get((family, kind))
    if template is None:
        template = _templates[family, kind] = _socket.socket(family, kind, 0)
        template.close()
    return template


def _acceptor(listener: socket.socket) -> Callable[[], Connection | None]:
    """A function that accepts one connection from ``listener`` as a socket object, the
    cheapest way this build has.  When none waits it returns None (the C accept: an
    accept loop meets that once per pass, and an exception costs a strerror() and a
    locale decoding) or raises BlockingIOError (the fallbacks).

    socket.accept() wraps each connection in Python code; the C socket type has all a
    request needs, for a tenth of the cost.
    """
    family, kind = _raw_family(listener), _raw_type(listener)
    listener_fd = listener.fileno()
    if _accept_socket is not None:
        return functools.partial(_accept_socket, listener_fd, _template(family, kind))
    accept_fd = _accept_fd
    if accept_fd is not None:
        return lambda: _socket.socket(family, kind, 0, accept_fd(listener_fd))
    accept = listener._accept  # type: ignore[attr-defined]
    return lambda: _socket.socket(family, kind, 0, accept()[0])


#: A ready request: what came (the head, and the body if it was small), the parsed head
#: (None for a handler that reads the socket itself), and when it was accepted.
Request = tuple["bytes | bytearray", "ParsedHead | None", float]


class Heartbeat:
    """This worker's slot in the master's shared array: 0.0 idle, else busy since.

    The slot holds the start of the oldest request in the app, so the master
    (which kills a worker whose slot is older than ``--timeout``) finds a stuck
    request whether the worker runs one request at a time or many.  The sync
    model writes the slot inline in its loop; the others use ``begin``/``end``.
    With ``--stats``, ``stats`` is the worker's region of the master's metrics.
    """

    def __init__(self, slots: memoryview[float], index: int,
                 stats: WorkerStats | None = None) -> None:
        self.slots = slots
        self.index = index
        self.stats = stats
        self.running: dict[int, float] = {}
        self.lock = threading.Lock()
        self.keys = itertools.count()

    def begin(self) -> int:
        """A request enters the app; returns the key that ``end`` takes."""
        with self.lock:
            key = next(self.keys)
            self.running[key] = now = time.monotonic()
            if len(self.running) == 1:
                self.slots[self.index] = now
        return key

    def end(self, key: int) -> None:
        with self.lock:
            started = self.running.pop(key)
            if started == self.slots[self.index]:
                self.slots[self.index] = min(self.running.values(), default=0.0)


class Parked:
    """A connection waiting in the selector: for its request (``intake``) or its end."""

    __slots__ = ("conn", "fd", "intake", "ending", "accepted", "queued_deadline")

    def __init__(self, conn: Connection, intake: Intake | None, ending: Ending | None,
                 accepted: float) -> None:
        self.conn = conn
        self.fd = conn.fileno()
        self.intake = intake
        self.ending = ending
        self.accepted = accepted
        self.queued_deadline = 0.0  # the deadline of its live entry in the worker's heap

    @property
    def deadline(self) -> float:
        return self.ending.deadline if self.ending else self.intake.deadline  # type: ignore


class Accepting:
    """The accept loop every worker model shares: what it needs of the model is below."""

    listeners: list[socket.socket]
    stopping: bool
    drain_queue: bool
    allow: AllowList | None
    accept_failing_since: float | None
    log_refused: LogThrottle
    # Each listener's acceptor (see _acceptor), made at its first use: an empty dict from
    # the model's __init__.
    acceptors: dict[socket.socket, Callable[[], Connection | None]]

    def _take(self, conn: Connection) -> None:
        raise NotImplementedError

    def _cannot_accept(self, exc: OSError) -> None:
        raise NotImplementedError

    def _may_accept(self) -> bool:
        """Whether to take another connection now (a model with a pool says when it is full)."""
        return True

    def _acceptor_for(self, listener: socket.socket) -> Callable[[], Connection | None]:
        """``listener``'s acceptor, made at its first use and kept in ``acceptors``."""
        accept_one = self.acceptors.get(listener)
        if accept_one is None:
            accept_one = self.acceptors[listener] = _acceptor(listener)
        return accept_one

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
        if allow is not None and _raw_family(listener) == socket.AF_UNIX:
            allow = None  # its peers have no address to check
        accept_one = None
        if allow is None:
            accept_one = self._acceptor_for(listener)
        else:
            family, kind = _raw_family(listener), _raw_type(listener)
            accept = listener._accept  # type: ignore[attr-defined]
        taken = 0
        while budget != taken and (final or (
                (not self.stopping or self.drain_queue) and self._may_accept())):
            try:
                if accept_one is not None:
                    conn = accept_one()
                    if conn is None:
                        return  # none waiting
                else:
                    assert allow is not None
                    fd, peer = accept()
                    if not allow.permits(peer):
                        os.close(fd)
                        self.log_refused("Refused a connection from %s: not in --allow-from",
                                         peer[0])
                        conn = None
                    else:
                        conn = _socket.socket(family, kind, 0, fd)
            except BlockingIOError:
                return
            except OSError as exc:
                if self._accept_failed(exc):
                    continue
                return
            taken += 1
            self.accept_failing_since = None
            if conn is not None:
                take(conn)

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
            queued = _queued(sock)
            if self.drain_queue:
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
        self.drain_queue = False

    def _failing_too_long(self, exc: OSError, now: float) -> bool:
        """Count a failed accept; True once they have gone on for ACCEPT_GIVE_UP seconds."""
        if self.accept_failing_since is None:
            self.accept_failing_since = now
        elif now - self.accept_failing_since >= ACCEPT_GIVE_UP:
            log.error("Cannot accept connections for %gs (%s); recycling this worker",
                      ACCEPT_GIVE_UP, exc.strerror)
            return True
        return False


class Worker(Accepting):
    """One worker's loop; built in the child right after the fork."""

    model = "sync"  # as the metrics and the access log name it
    answers_inline = True  # a ready request runs in the loop (threads: in the pool)

    def __init__(self, config: Config, listeners: Sequence[Listener], adapter: Adapter,
                 heartbeat: Heartbeat, ppid: int) -> None:
        self.config = config
        self.listeners = [listener.sock for listener in listeners]
        self.adapter = adapter
        self.heartbeat = heartbeat
        self.stats = heartbeat.stats
        if self.stats is not None:
            self.stats.set_model(self.model)
        self.ppid = ppid
        self.stopping = False  # no more accepts (but see drain_queue); end what we hold
        self.drain_queue = False  # serve what is in the listen queue first (full stop)
        self.max_requests = config.max_requests + (
            random.randint(0, config.max_requests_jitter) if config.max_requests else 0
        )
        self.handled = 0  # requests whose app has returned
        self.started = 0  # requests given to the app: --max-requests counts these
        self.exit_code = 0
        self.peek = adapter.raw  # a handler reading the socket itself: look, do not take
        self.recv_flags = socket.MSG_DONTWAIT | (socket.MSG_PEEK if self.peek else 0)
        self.allow = AllowList(config.allow_from) if config.allow_from else None
        # How _accept_all serves a listen queue (see _queue_server), from run().
        self.queue_server: Callable[[socket.socket], None] | None = None
        # For each listener, made at its first use: _serve_queue's call of the C loop.
        self.takers: dict[socket.socket, Callable[[], Any]] = {}
        self.acceptors = {}
        self.parked: dict[int, Parked] = {}  # by descriptor, oldest first
        self.deadlines: list[tuple[float, int, Parked]] = []
        self.poller = _Poller()
        self.listening = True
        self.wakers: dict[int, Callable[[], None]] = {}  # other descriptors the loop watches
        self.wake_r = -1  # the signal wake-up pipe, from start()
        self.order = itertools.count()  # breaks ties between equal deadlines
        self.accept_paused_until = 0.0
        self.accept_failing_since: float | None = None
        self.log_accept_error = LogThrottle(log, logging.ERROR)
        self.log_refused = LogThrottle(log, logging.WARNING)
        self.log_evicted = LogThrottle(log, logging.WARNING)
        self.log_http = LogThrottle(log, logging.INFO)

    def start(self) -> None:
        """Take over the signals before the master hears "ready" (the app is loaded).

        A stop that arrives between "ready" and the loop must find our handlers, not
        the default action, which would end the worker with requests queued for it.
        """
        self.wake_r = self.install_signals()

    # --- signals: record only --------------------------------------------------------

    def install_signals(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._retire)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGQUIT, self._immediate)
        for signum in (signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        return wake_r

    def _retire(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _stop(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.drain_queue = True
        self.stopping = True

    def _immediate(self, signum: int, frame: Any) -> None:
        os._exit(0)

    # --- the loop --------------------------------------------------------------------

    def run(self) -> None:
        _raise_descriptor_limit()
        wake_r = self.wake_r
        poller = self.poller
        poller.add_listeners(self.listeners)
        poller.add(wake_r)
        check_master_at = time.monotonic() + 1.0
        report_at = 0.0
        listening = {sock.fileno() for sock in self.listeners}
        woken = list(listening)
        self.queue_server = self._queue_server()
        while True:
            if self.stopping:
                if self.listening:
                    self._stop_accepting()
                    report_at = time.monotonic() + STOP_REPORT
                if not self.parked and self._idle():
                    break
                if time.monotonic() >= report_at:
                    report_at = time.monotonic() + STOP_REPORT
                    log.info("Stopping; still waiting for: %s", self._holding())
            elif not self.accept_paused_until and not listening.isdisjoint(woken):
                self._accept_all()
            woken = self._wait()
            if wake_r in woken:
                _drain(wake_r)
            for fd in woken:
                parked = self.parked.get(fd)
                if parked is not None:
                    self._resume(parked)
                elif fd in self.wakers:
                    self.wakers[fd]()
            now = time.monotonic()
            if self.deadlines:
                self._expire(now)
            if self.accept_paused_until and now >= self.accept_paused_until:
                self.accept_paused_until = 0.0
                if not self.stopping and self._may_accept():
                    poller.add_listeners(self.listeners)
            if now >= check_master_at:
                check_master_at = now + 1.0
                if os.getppid() != self.ppid:
                    log.warning("Master %d is gone; worker exiting", self.ppid)
                    break
        if self.max_requests and self.handled >= self.max_requests:
            log.info("Worker recycled after %d requests", self.handled)

    def _wait(self) -> list[int]:
        timeout = 1.0
        if self.deadlines:
            timeout = min(timeout, max(0.0, self.deadlines[0][0] - time.monotonic()))
        if self.stopping and not self.parked and self._idle():
            timeout = 0.0
        try:
            return self.poller.wait(timeout)
        except InterruptedError:
            return []

    def _accept_all(self) -> None:
        serve = self.queue_server
        for listener in self.listeners:
            if serve is not None:
                serve(listener)
            else:
                self._accept_from(listener, None)

    def _queue_server(self) -> Callable[[socket.socket], None] | None:
        """How this worker serves a listen queue: ``_serve_queue`` (the loop in C),
        ``_serve_queue_pure``, or None where each request goes the general way (the
        threads model; ``--allow-from``; a handler that reads the socket itself)."""
        if not self.answers_inline or self.allow is not None or self.peek:
            return None
        if _serve_queue_c is None:
            return self._serve_queue_pure
        return self._serve_queue

    def _serve_queue(self, listener: socket.socket) -> None:
        """Accept until the listen queue is empty, answering each request as it comes.

        With the C accelerator the loop is ``_speedups.serve_queue``, which does what
        the pure loop does for a whole request, and hands any other back here (as it
        does an accept's error): the loop's own work was 110 bytecodes a request.  Its
        arguments are made once per listener (the access log and the metrics are set
        up when the worker starts).
        """
        serve = self.takers.get(listener)
        if serve is None:
            config, stats = self.config, self.stats
            serve = self.takers[listener] = functools.partial(
                cast("Callable[..., Any]", _serve_queue_c), self, listener.fileno(),
                _template(_raw_family(listener), _raw_type(listener)), self.recv_flags,
                RECV_SIZE, config.max_header_size,
                config.body_limit,
                self.max_requests, self.heartbeat.slots, self.heartbeat.index,
                self.adapter.answer_whole, None if stats is None else stats.record,
                log_access if access_log.handlers and access_log.isEnabledFor(logging.INFO)
                else None, self.model)
        while not self.stopping or self.drain_queue:
            left = serve()
            if left is None:
                return
            if isinstance(left, OSError):  # the accept failed
                if self._accept_failed(left):
                    continue
                return
            conn, got, accepted = left
            if isinstance(got, OSError):
                self._not_received(conn, got, accepted)
                continue
            request = self._received(conn, got, accepted)
            if request is not None:
                self._run(conn, *request)

    def _serve_queue_pure(self, listener: socket.socket) -> None:
        """``_serve_queue`` without the C accelerator.

        The sync model's hot path.  A request whose head and whole body came in the
        first receive, as most do, is answered here without a call of the worker's own:
        what ``_take``, ``_count_start`` and ``run_app`` do for it is written out below
        (their calls cost 15 to 25% of the worker's user CPU per hello).  Any other
        request goes on through ``_received``.  The access log's state is read once per
        pass: it is set up when the worker starts.
        """
        accept_one = self._acceptor_for(listener)
        recv, close, monotonic = _recv, _close, time.monotonic
        flags, config = self.recv_flags, self.config
        max_head, max_requests = config.max_header_size, self.max_requests
        limit = config.body_limit
        answer_whole = self.adapter.answer_whole
        slots, slot = self.heartbeat.slots, self.heartbeat.index
        stats, model = self.stats, self.model
        logging_access = bool(access_log.handlers) and access_log.isEnabledFor(logging.INFO)
        while not self.stopping or self.drain_queue:
            try:
                conn = accept_one()
            except BlockingIOError:
                return
            except OSError as exc:
                if self._accept_failed(exc):
                    continue
                return
            if conn is None:
                return  # none waiting
            self.accept_failing_since = None
            accepted = monotonic()
            try:
                data: bytes | bytearray = recv(conn, RECV_SIZE, flags)
            except OSError as exc:
                self._not_received(conn, exc, accepted)
                continue
            try:
                parsed = parse_head(data, max_head)
            except ProtocolError:
                parsed = None  # _received meets it again, and answers it
            if parsed is not None:
                variables, length, start = parsed
            if parsed is None or len(data) - start < length or length > limit:
                request = self._received(conn, data, accepted)
                if request is not None:
                    self._run(conn, *request)
                continue
            slots[slot] = accepted
            self.started = started = self.started + 1  # as _count_start
            if started == max_requests and not self.stopping:
                self.stopping = True
                self.drain_queue = False
            try:
                status, sent = answer_whole(conn, data, variables, length, start)
            finally:
                slots[slot] = 0.0
                self.handled += 1
            if stats is not None:
                stats.record(status, sent, length, accepted)
            if logging_access:
                log_access(variables, status, sent, accepted, model)
            close(conn)

    def _stop_accepting(self) -> None:
        """Leave the listeners to the other workers; on a full stop, serve their queues first.

        SIGINT means the whole server stops: every connection the kernel has already
        accepted is served (up to the queue's length when the stop began, where the
        kernel tells it: new arrivals are not what a stop should wait for).  Either way
        the listeners leave the wait first, then what is queued is taken: the kernel
        wakes one worker per connection (EPOLLEXCLUSIVE), and a wake-up given to this
        one before it left would be lost to the others, its connection left waiting.
        """
        for sock in self.listeners:
            self.poller.remove(sock.fileno())
        self.listening = False
        self._final_accepts()

    def _idle(self) -> bool:
        """Whether no request is in the app (the sync model runs them inline: always)."""
        return True

    def _holding(self) -> str:
        """What a stopping worker still waits for, in words."""
        return f"0 in the app, {len(self.parked)} connections"

    def _cannot_accept(self, exc: OSError) -> None:
        """Out of descriptors: back off (polling a listener we cannot accept from spins)."""
        now = time.monotonic()
        self.log_accept_error("Cannot accept a connection: %s", exc)
        self.accept_paused_until = now + ACCEPT_PAUSE
        for sock in self.listeners:
            self.poller.remove(sock.fileno())
        if self._failing_too_long(exc, now):
            self.stopping = True

    # --- one connection ----------------------------------------------------------------

    def _take(self, conn: Connection) -> None:
        """A new connection: serve it now if its request is all there, else park it."""
        request = self._receive(conn)
        if request is not None:
            self._run(conn, *request)

    def _receive(self, conn: Connection) -> Request | None:
        """A new connection's first receive: its request if that is all there, else None
        (the connection parked to wait for the rest, refused, or closed)."""
        accepted = time.monotonic()
        try:
            data: bytes | bytearray = _recv(conn, RECV_SIZE, self.recv_flags)
        except OSError as exc:
            self._not_received(conn, exc, accepted)
            return None
        return self._received(conn, data, accepted)

    def _not_received(self, conn: Connection, exc: OSError, accepted: float) -> None:
        """A new connection's first receive raised ``exc``: nothing came yet, or it failed."""
        if isinstance(exc, BlockingIOError):
            self._park(Parked(conn, Intake(self.config, accepted), None, accepted))
        else:
            log.info("Error reading a request: %s", exc)
            conn.close()

    def _received(self, conn: Connection, data: bytes | bytearray,
                  accepted: float) -> Request | None:
        """What a new connection's first receive brought: its request if that is all
        there, else None (the connection parked to wait for the rest, refused, or closed)."""
        if not data:
            conn.close()  # closed before sending a byte: a health check or a port scan
            return None
        config = self.config
        try:
            parsed = parse_head(data, config.max_header_size)
            ready = parsed is not None and (self.peek or is_ready(parsed, len(data), config))
            if parsed is not None and not ready:
                data, parsed = receive_rest(conn, data, parsed)
                ready = is_ready(parsed, len(data), config)
            if not ready:
                self._park(Parked(conn, Intake(config, accepted, data, parsed), None, accepted))
                return None
        except ProtocolError as exc:
            self._refuse(conn, exc, None)
            return None
        except OSError as exc:
            log.info("Error reading a request: %s", exc)
            conn.close()
            return None
        # A handler that reads the socket itself has only looked at the request (peek).
        return data, None if self.peek else parsed, accepted

    def _resume(self, parked: Parked) -> None:
        """A parked connection is readable: take what came, then run, end or wait on."""
        if parked.ending is not None:
            if parked.ending.drain():
                self._unpark(parked)
                parked.conn.close()
            return
        intake = parked.intake
        assert intake is not None
        conn = parked.conn
        try:
            data = receive_now(conn, self.peek)
            if data is None:
                return
            if self.peek and not data:
                raise intake.closed_early()
            ready = intake.feed(data, time.monotonic(), replace=self.peek)
            if self.peek:
                ready = intake.parsed is not None  # the handler reads the body itself
            if not ready:
                if intake.deadline < parked.queued_deadline:
                    self._schedule(parked)
                return
        except ProtocolError as exc:
            self._unpark(parked)
            if not intake.received and not intake.parsed:
                conn.close()  # closed before sending a byte
                return
            self._refuse(conn, exc, intake)
            return
        except OSError as exc:
            self._unpark(parked)
            log.info("Error reading a request: %s", exc)
            conn.close()
            return
        self._unpark(parked)
        request, parsed = intake.request()
        self._run(conn, request, None if self.peek else parsed, parked.accepted)

    def _run(self, conn: Connection, data: bytes | bytearray,
             parsed: ParsedHead | None, accepted: float) -> None:
        """Give a ready request to the app, then end the connection."""
        slots, slot = self.heartbeat.slots, self.heartbeat.index
        slots[slot] = time.monotonic()
        self._count_start()
        ending = None
        try:
            if parsed is None:
                hand_over(conn, self.adapter, self.config)
            else:
                ending = run_app(conn, self.adapter, self.config, data, parsed, accepted,
                                 self.model, self.stats)
        finally:
            slots[slot] = 0.0
            self.handled += 1
        if ending is not None and not ending.drain():
            self._park(Parked(conn, None, ending, accepted))
        elif parsed is not None:
            _close(conn)

    def _count_start(self) -> None:
        """A request goes to the app: the one that reaches --max-requests ends the accepts.

        Counted as they start, not as they end: a model that runs several at once
        (threads) would take more while its last ones run.
        """
        self.started += 1
        if self.started == self.max_requests and not self.stopping:
            self.stopping = True
            self.drain_queue = False

    def _refuse(self, conn: Connection, exc: ProtocolError, intake: Intake | None) -> None:
        ending = answer_error(conn, exc, intake, self.config, self.log_http, self.stats)
        if ending is not None:
            self._park(Parked(conn, None, ending, time.monotonic()))

    # --- parking ---------------------------------------------------------------------

    def _park(self, parked: Parked) -> None:
        if len(self.parked) >= self.config.max_pending:
            oldest = next(iter(self.parked.values()))
            self.log_evicted("Dropping the oldest waiting connection: --max-pending %d reached",
                             self.config.max_pending)
            self._unpark(oldest)
            oldest.conn.close()
        self.parked[parked.fd] = parked
        self.poller.add(parked.fd)
        self._schedule(parked)

    def _schedule(self, parked: Parked) -> None:
        parked.queued_deadline = deadline = parked.deadline
        heapq.heappush(self.deadlines, (deadline, next(self.order), parked))

    def _unpark(self, parked: Parked) -> None:
        if self.parked.pop(parked.fd, None) is parked:
            self.poller.remove(parked.fd)
            deadlines = self.deadlines
            if len(deadlines) > 64 and len(deadlines) > 4 * len(self.parked):
                # Entries of connections served since are dropped when their deadline
                # passes; under load that is thousands of requests' worth: drop them now.
                self.deadlines = [entry for entry in deadlines
                                  if entry[0] == entry[2].queued_deadline
                                  and self.parked.get(entry[2].fd) is entry[2]]
                heapq.heapify(self.deadlines)

    def _expire(self, now: float) -> None:
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _, parked = heapq.heappop(deadlines)
            if self.parked.get(parked.fd) is not parked or deadline != parked.queued_deadline:
                continue  # served, closed, or rescheduled since
            if parked.deadline > now:
                self._schedule(parked)  # its head arrived since: it waits for its body now
                continue
            self._unpark(parked)
            if parked.ending is not None or parked.intake is None:
                parked.conn.close()
            else:
                self._refuse(parked.conn, parked.intake.expired(), parked.intake)


class _Poller:
    """Waits for a connection on any listener, a signal, or a parked connection's bytes.

    On Linux, epoll: the listeners with EPOLLEXCLUSIVE, which wakes one idle worker
    per connection instead of all of them; elsewhere, poll.
    """

    def __init__(self) -> None:
        self._poll: Any
        if hasattr(select, "epoll"):
            self._poll = select.epoll()
            self._scale = 1.0
            self._exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
        else:
            self._poll = select.poll()
            self._scale = 1000.0
            self._exclusive = 0

    def add_listeners(self, listeners: Sequence[socket.socket]) -> None:
        for sock in listeners:
            try:
                self._poll.register(sock.fileno(), select.POLLIN | self._exclusive)
            except FileExistsError:
                pass  # watched already (two reasons to watch them again met)

    def add(self, fd: int) -> None:
        self._poll.register(fd, select.POLLIN)

    def remove(self, fd: int) -> None:
        try:
            self._poll.unregister(fd)
        except (KeyError, OSError):
            pass  # not registered (a listener already removed)

    def wait(self, seconds: float) -> list[int]:
        """The descriptors that are ready (an empty list after ``seconds``)."""
        return [fd for fd, _ in self._poll.poll(seconds * self._scale)]


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


def _raise_descriptor_limit() -> None:
    """Each waiting connection costs a descriptor: allow as many as the hard limit lets us.

    (systemd, for one, starts services with a soft limit of 1024 under a far higher hard one.)
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
