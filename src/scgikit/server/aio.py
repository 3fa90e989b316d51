"""The asyncio worker model: one event loop per worker process runs many ASGI requests at once.

How it works.  ``start`` makes the loop (uvloop when ``--loop auto`` finds it, or
``--loop uvloop``) and runs the app's lifespan startup; ``run`` serves until a
signal says stop, then runs the lifespan shutdown.

The worker has an epoll of its own (``watcher``), which the loop watches as one
reader: in it, the shared non-blocking listeners (with EPOLLEXCLUSIVE, as in the
sync model: the kernel wakes one idle worker per connection, not every worker),
and the connections that wait.  On a new connection it accepts until the queue
is empty, as the sync worker does.  A connection is then the same
path as in every model (``intake.py``, ``connection.py``): if its first receive
holds the request (the head, and a body of up to ``--body-buffer-size``), the app
starts at once; otherwise the connection *waits*, watched (one readiness at a
time, EPOLLONESHOT) against its deadline, costing a descriptor and its bytes so
far, until the rest arrives or the deadline refuses it.  A ready request becomes
a task running the ASGI ``Cycle`` (``apps/asgi.py``) over a ``_Channel``; on Python
3.12+ an eager one, whose first step runs at once: a request the app answers without
waiting on anything never goes through the loop's queue.  After
the answer, an unread body is drained before the close (``connection.Ending``),
the connection waiting again meanwhile.

No asyncio transports: the connections are plain sockets read and written with
``MSG_DONTWAIT`` and watched with ``add_reader``/``add_writer`` only when a call
would block.  A request whose bytes are all there makes the sync worker's system
calls (accept, recv, send, close) and no others but the loop's wait, and the
body is read only when the app asks for it: ASGI's flow control, for free.

Heartbeat: the worker's slot holds the start time of the oldest request in flight
(0.0 when none), so a request stuck past ``--timeout`` (say ``time.sleep`` in an
async view, which blocks the whole loop) gets the worker killed and replaced.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import functools
import importlib
import logging
import os
import random
import select
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..apps.asgi import ASGIAdapter, DeadlinePassed, Lifespan
from ..apps.loader import AppImportError
from ..config import Config
from ..protocol import ProtocolError, parse_head
from .allow import AllowList
from .boot import server_name
from .connection import (
    RECV_SIZE,
    Ending,
    access_log,
    answer_error,
    log_access,
    receive_now,
)
from .intake import Intake, ParsedHead, is_ready
from .sockets import Connection, Listener
from .throttle import LogThrottle
from .worker import (
    ACCEPT_PAUSE,
    STOP_REPORT,
    Accepting,
    Heartbeat,
    _close,
    _raise_descriptor_limit,
    _raw_family,
    _raw_type,
    _recv,
    _take_queue_c,
    _template,
)

__all__ = ["AsyncioWorker", "new_event_loop"]

log = logging.getLogger("scgikit")

_NOW = socket.MSG_DONTWAIT
_LAST = socket.MSG_DONTWAIT | getattr(socket, "MSG_MORE", 0)
_NO_DEADLINE = float("inf")
# A first body chunk up to this size is joined to the head; a bigger one goes beside it.
_SMALL_CHUNK = 16 * 1024
_SENDFILE_BLOCK = 1 << 30
# A waiting connection is watched for one readiness at a time, in the worker's own epoll.
_ONCE = select.EPOLLIN | select.EPOLLONESHOT
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
# The listeners, shared by every worker: the kernel wakes one idle worker per connection.
_SHARED = select.EPOLLIN | select.EPOLLEXCLUSIVE
# Python 3.12+ runs a task's first step as it is made (an eager task).
_EAGER = sys.version_info >= (3, 12)
# Every request's task has this name: one given spares the "Task-N" Python 3.11 formats.
_TASK_NAME = "scgikit request"
_NOT_MADE: Any = object()


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """The event loop ``--loop`` asks for: uvloop when installed (auto), or as told."""
    if choice in ("auto", "uvloop"):
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise AppImportError("--loop uvloop: uvloop is not installed "
                                     "(pip install 'scgikit[uvloop]')") from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


class _Waiting:
    """A connection the loop watches: for its request (``intake``) or its end (``ending``)."""

    __slots__ = ("conn", "fd", "intake", "ending", "accepted", "timer", "deadline")

    def __init__(self, conn: Connection, intake: Intake | None, ending: Ending | None,
                 accepted: float) -> None:
        self.conn = conn
        self.fd = conn.fileno()
        self.intake = intake
        self.ending = ending
        self.accepted = accepted
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = _NO_DEADLINE  # the deadline its timer is set for

    def current_deadline(self) -> float:
        if self.ending is not None:
            return self.ending.deadline
        assert self.intake is not None
        return self.intake.deadline


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(DeadlinePassed())


class _Channel:
    """One request's connection on the loop: the ``asgi.Channel`` its cycle uses."""

    __slots__ = ("worker", "loop", "conn", "fd", "variables", "length", "accepted", "started",
                 "reading", "writing", "finished", "returned", "task")

    def __init__(self, worker: AsyncioWorker, conn: Connection, variables: dict[str, str],
                 length: int, accepted: float, started: float) -> None:
        self.worker = worker
        self.loop = worker.loop
        self.conn = conn
        self.fd = conn.fileno()
        self.variables = variables
        self.length = length
        self.accepted = accepted
        self.started = started  # when the app got it, for the heartbeat
        self.reading: asyncio.Future[None] | None = None
        self.writing: asyncio.Future[None] | None = None
        self.finished = False  # the response is over
        self.returned = False  # the app has returned
        self.task: asyncio.Task[None] | None = None  # the app's, until it has returned

    async def read(self, size: int, deadline: float) -> bytes:
        while not self.finished:
            try:
                return self.conn.recv(size, _NOW)
            except BlockingIOError:
                pass
            await self._readable(deadline)
        return b""

    async def _readable(self, deadline: float) -> None:
        waiter = self.reading = self.loop.create_future()
        self.loop.add_reader(self.fd, _wake, waiter)
        timer = None
        if deadline != _NO_DEADLINE:
            timer = self.loop.call_later(deadline - time.monotonic(), _time_out, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if self.reading is waiter:  # else finish() has let go of the descriptor already
                self.reading = None
                self.loop.remove_reader(self.fd)

    async def _writable(self) -> None:
        if self.finished:
            raise BrokenPipeError(errno.EPIPE, "the response is over")
        waiter = self.writing = self.loop.create_future()
        self.loop.add_writer(self.fd, _wake, waiter)
        timer = None
        if self.worker.send_timeout:
            timer = self.loop.call_later(self.worker.send_timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if self.writing is waiter:
                self.writing = None
                self.loop.remove_writer(self.fd)
        if self.finished:  # woken by finish(): the descriptor may be closed, even reused
            raise BrokenPipeError(errno.EPIPE, "the response is over")

    def write(self, head: bytes, data: bytes | bytearray | memoryview,
              last: bool = False) -> Awaitable[None] | None:
        conn = self.conn
        # The last bytes before the close wait for it: over TCP they leave with the FIN.
        flags = _LAST if last else _NOW
        if head and len(data) > _SMALL_CHUNK:
            # Head and a big first chunk in one system call, neither copied.
            try:
                sent = conn.sendmsg((head, data), (), flags)
            except BlockingIOError:
                sent = 0
            if sent == len(head) + len(data):
                return None
            return self._send_both(head, data, sent)
        if head:
            data = head + data
        try:
            sent = conn.send(data, flags)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            return self._send_rest(data, sent)
        return None

    async def _send_both(self, head: bytes, data: bytes | bytearray | memoryview,
                         sent: int) -> None:
        if sent < len(head):
            await self._send_rest(head, sent)
            sent = len(head)
        await self._send_rest(data, sent - len(head))

    async def _send_rest(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        with memoryview(data) as view, view.cast("B") as octets:
            while offset < len(octets):
                await self._writable()
                try:
                    offset += self.conn.send(octets[offset:], _NOW)
                except BlockingIOError:
                    pass

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        self.conn.setblocking(False)  # sendfile has no MSG_DONTWAIT
        sent = 0
        while sent < count:
            try:
                done = os.sendfile(self.fd, fd, offset + sent, min(count - sent, _SENDFILE_BLOCK))
            except BlockingIOError:
                await self._writable()
                continue
            if not done:
                break  # the file is shorter than it was
            sent += done
        return sent

    def finish(self, status: str, sent: int, unread: int, cut: bool) -> None:
        self.finished = True
        if self.reading is not None or self.writing is not None:  # the app waits on us
            for waiter, remove in ((self.reading, self.loop.remove_reader),
                                   (self.writing, self.loop.remove_writer)):
                if waiter is not None:
                    remove(self.fd)
                    _wake(waiter)
            self.reading = self.writing = None
        if access_log.handlers and access_log.isEnabledFor(logging.INFO):
            log_access(self.variables, status, sent, self.accepted, "asyncio")
        stats = self.worker.stats
        if stats is not None:
            stats.record(status, sent, self.length, self.accepted)
        self.worker.end(self.conn, unread, cut)

    def served(self) -> None:
        if not self.finished:  # an error of ours, or the task cancelled
            self.finish("500", 0, 0, cut=True)
        self.worker._served(self)


class AsyncioWorker(Accepting):
    """One worker's event loop; built in the child right after the fork."""

    def __init__(self, config: Config, listeners: Sequence[Listener], app: Any,
                 heartbeat: Heartbeat, ppid: int) -> None:
        self.config = config
        self.listeners = [listener.sock for listener in listeners]
        self.listener_fds = {sock.fileno(): sock for sock in self.listeners}
        self.acceptors = {}
        # For each listener, made at its first use: _take_queue's call of the C loop, or
        # None where the Python loop takes its connections.
        self.queue_takers: dict[socket.socket, Callable[[], Any] | None] = {}
        self.app = app
        self.heartbeat = heartbeat
        self.stats = heartbeat.stats
        if self.stats is not None:
            self.stats.set_model("asyncio")
        self.ppid = ppid
        self.exit_code = 0
        name, port = server_name(listeners)
        self.server = (name, int(port))
        self.send_timeout = config.header_timeout  # as the sync model's SO_SNDTIMEO
        self.allow = AllowList(config.allow_from) if config.allow_from else None
        self.max_requests = config.max_requests + (
            random.randint(0, config.max_requests_jitter) if config.max_requests else 0)
        self.handled = 0
        self.started = 0  # requests given to the app: --max-requests counts these
        self.recycling = False  # --max-requests reached: no more accepts, retiring
        self.stopping = False
        self.drain_queue = False
        self.listening = False
        self.waiting: dict[int, _Waiting] = {}  # by descriptor, oldest first
        # Listeners and waiting connections are watched in an epoll of the worker's,
        # which the loop watches as one reader: a wait then costs one epoll_ctl, where
        # the loop's own add_reader/remove_reader cost several system calls (uvloop) or
        # selector bookkeeping (asyncio) per connection, and the listeners can be
        # watched with EPOLLEXCLUSIVE, which the loops do not offer.
        self.watcher = select.epoll()
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight: collections.deque[_Channel] = collections.deque()  # oldest first
        self.accept_paused = False
        self.accept_failing_since: float | None = None
        self.log_accept_error = LogThrottle(log, logging.ERROR)
        self.log_refused = LogThrottle(log, logging.WARNING)
        self.log_evicted = LogThrottle(log, logging.WARNING)
        self.log_http = LogThrottle(log, logging.INFO)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # start()
        self.lifespan: Lifespan | None = None
        self.adapter: ASGIAdapter | None = None
        self.done: asyncio.Future[None] | None = None

    # --- start and stop --------------------------------------------------------------

    def start(self) -> None:
        """Make the loop and run the lifespan startup (a failure is a failed boot)."""
        self.loop = new_event_loop(self.config.loop)
        asyncio.set_event_loop(self.loop)
        log.debug("Worker %d serving on the %s event loop", os.getpid(),
                  "uvloop" if type(self.loop).__module__.startswith("uvloop") else "asyncio")
        self.lifespan = Lifespan(self.app, self.config.lifespan, self.config.graceful_timeout)
        self.loop.run_until_complete(self.lifespan.startup())
        self.adapter = ASGIAdapter(self.app, self.config.script_name, self.server,
                                   self.config.body_timeout, self.lifespan.state)
        # Before the master hears "ready", which may be followed at once by a stop.
        self._install_signals()
        # Held until the loop runs: uvloop reads signals through a wake-up descriptor it
        # sets only while it runs, so one that came between the two runs would be lost
        # (and a stop would wait out --graceful-timeout).  Pending, it comes in run().
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)

    def run(self) -> None:
        _raise_descriptor_limit()
        loop = self.loop
        self.done = loop.create_future()
        if self.stopping:  # a stop handled before there was a future to finish
            self._check_done()
        else:
            self._listen()
        loop.call_later(1.0, self._check_master)
        loop.add_reader(self.watcher.fileno(), self._ready_waiting)
        loop.call_soon(signal.pthread_sigmask, signal.SIG_UNBLOCK, _STOP_SIGNALS)
        try:
            loop.run_until_complete(self.done)
            if self.max_requests and self.handled >= self.max_requests:
                log.info("Worker recycled after %d requests", self.handled)
            assert self.lifespan is not None
            loop.run_until_complete(self.lifespan.shutdown())
        finally:
            loop.close()
            self.watcher.close()

    def _install_signals(self) -> None:
        # Handlers added to the loop run between callbacks (from run() on), as the sync
        # worker's flags are read between requests.  QUIT must work even while an app
        # blocks the loop, so it is a plain handler, run by Python between bytecodes.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self.loop.add_signal_handler(signum, self._retire)
        self.loop.add_signal_handler(signal.SIGINT, self._stop)
        signal.signal(signal.SIGQUIT, lambda signum, frame: os._exit(0))

    def _retire(self) -> None:
        """SIGTERM, SIGHUP, recycling: no more accepts; end what we hold, then exit.

        Once only: the last accepts may themselves fail (out of descriptors), and a
        failure that retires must not start them again.
        """
        if not self.stopping:
            self.stopping = True
            self._stop_accepting()
            self.loop.call_later(STOP_REPORT, self._report_stop)
        self._check_done()

    def _report_stop(self) -> None:
        """Say what a stop still waits for, every STOP_REPORT seconds until it is done."""
        if self.done is not None and not self.done.done():
            log.info("Stopping; still waiting for: %d in the app, %d connections",
                     len(self.tasks), len(self.waiting))
            self.loop.call_later(STOP_REPORT, self._report_stop)

    def _stop(self) -> None:
        """SIGINT, the master's full stop: first serve what the listen queues hold."""
        if not self.stopping:
            self.drain_queue = True
        self._retire()

    def _check_done(self) -> None:
        if self.stopping and not self.tasks and not self.waiting and self.done is not None:
            if not self.done.done():
                self.done.set_result(None)

    def _check_master(self) -> None:
        if os.getppid() != self.ppid:
            log.warning("Master %d is gone; worker exiting", self.ppid)
            self.stopping = True
            if self.done is not None and not self.done.done():
                self.done.set_result(None)
            return
        self.loop.call_later(1.0, self._check_master)

    # --- accepting -------------------------------------------------------------------

    def _listen(self) -> None:
        for sock in self.listeners:
            self.watcher.register(sock.fileno(), _SHARED)
        self.listening = True

    def _unlisten(self) -> None:
        for sock in self.listeners:
            try:
                self.watcher.unregister(sock.fileno())
            except (KeyError, OSError):
                pass  # not watched (closed by an earlier stop)
        self.listening = False

    def _stop_accepting(self) -> None:
        """As ``Worker._stop_accepting``: on a full stop, serve the listen queues first."""
        if self.listening:
            self._unlisten()
        self._final_accepts()

    def _cannot_accept(self, exc: OSError) -> None:
        """Out of descriptors: back off (watching a listener we cannot accept from spins)."""
        now = time.monotonic()
        self.log_accept_error("Cannot accept a connection: %s", exc)
        if self._failing_too_long(exc, now):
            self._retire()
            return
        if self.listening and not self.accept_paused:
            self.accept_paused = True
            self._unlisten()
            self.loop.call_later(ACCEPT_PAUSE, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self.accept_paused = False
        if not self.stopping:
            self._listen()

    # --- one connection --------------------------------------------------------------

    def _take_queue(self, listener: socket.socket) -> None:
        """Accept until the listen queue is empty, starting each ready request as it comes.

        With the C accelerator the loop is ``_speedups.take_queue``, as the sync model's is
        ``serve_queue``: the accept, the first receive, the head's parse and the check that
        the request is ready, then ``_start``; any other connection comes back here (as an
        accept's error does) and goes on in ``_took``.  Otherwise, and for a TCP listener
        under --allow-from, the Python loop: ``_accept_from`` and ``_take``.
        """
        take = self.queue_takers.get(listener, _NOT_MADE)
        if take is _NOT_MADE:
            take = self.queue_takers[listener] = self._queue_taker(listener)
        if take is None:
            self._accept_from(listener, None)
            return
        while True:
            left = take()
            if left is None:
                return
            if isinstance(left, OSError):
                if self._accept_failed(left):
                    continue
                return
            self._took(*left)

    def _queue_taker(self, listener: socket.socket) -> Callable[[], Any] | None:
        take_queue = _take_queue_c
        if take_queue is None or (self.allow is not None
                                  and _raw_family(listener) != socket.AF_UNIX):
            return None
        config = self.config
        return functools.partial(
            take_queue, self, listener.fileno(),
            _template(_raw_family(listener), _raw_type(listener)), 0, RECV_SIZE,
            config.max_header_size, config.body_limit, config.body_buffer_size, self._start)

    def _take(self, conn: Connection) -> None:
        """A new connection: start its request now if it is all there, else wait for it."""
        accepted = time.monotonic()
        try:  # receive_now(), inline: this runs for every request
            data: bytes | OSError = _recv(conn, RECV_SIZE, _NOW)
        except OSError as exc:
            data = exc
        self._took(conn, data, accepted)

    def _took(self, conn: Connection, data: bytes | OSError, accepted: float) -> None:
        """A new connection's first receive (``data``: its bytes, or the OSError it raised):
        start its request if it is all there, else wait for the rest, or refuse it."""
        config = self.config
        try:
            if isinstance(data, BlockingIOError):  # nothing yet (a unix client)
                self._wait(_Waiting(conn, Intake(config, accepted), None, accepted))
                return
            if isinstance(data, OSError):
                raise data
            if not data:
                conn.close()  # closed before sending a byte: a health check or a port scan
                return
            parsed = parse_head(data, config.max_header_size)
            if parsed is None or not is_ready(parsed, len(data), config):
                self._wait(_Waiting(conn, Intake(config, accepted, data, parsed), None,
                                    accepted))
                return
        except ProtocolError as exc:
            self._refuse(conn, exc, None)
            return
        except OSError as exc:
            log.info("Error reading a request: %s", exc)
            conn.close()
            return
        self._start(conn, data, parsed, accepted, accepted)

    def _ready_waiting(self) -> None:
        """New connections on a listener, or waiting connections that are readable (each
        of those is then disarmed until it is armed again)."""
        waiting = self.waiting
        for fd, _ in self.watcher.poll(0):
            entry = waiting.get(fd)
            if entry is not None:
                self._resume(entry)
            elif self.listening and fd in self.listener_fds:
                self._take_queue(self.listener_fds[fd])

    def _resume(self, waiting: _Waiting) -> None:
        """A waiting connection is readable: take what came, then start, end or wait on."""
        conn = waiting.conn
        if waiting.ending is not None:
            if waiting.ending.drain():
                self._unwait(waiting)
                conn.close()
                self._check_done()
            else:
                self.watcher.modify(waiting.fd, _ONCE)
            return
        intake = waiting.intake
        assert intake is not None
        try:
            data = receive_now(conn)
            if data is None:
                self.watcher.modify(waiting.fd, _ONCE)
                return
            if not intake.feed(data, time.monotonic()):
                if intake.deadline != waiting.deadline:
                    self._set_timer(waiting)  # its head is in: the body's deadline now
                self.watcher.modify(waiting.fd, _ONCE)
                return
        except ProtocolError as exc:
            self._unwait(waiting)
            if intake.received or intake.parsed:
                self._refuse(conn, exc, intake)
            else:
                conn.close()  # closed before sending a byte
        except OSError as exc:
            self._unwait(waiting)
            log.info("Error reading a request: %s", exc)
            conn.close()
        else:
            self._unwait(waiting)
            self._start(conn, *intake.request(), waiting.accepted, time.monotonic())
        self._check_done()

    def _refuse(self, conn: Connection, exc: ProtocolError, intake: Intake | None) -> None:
        # An error answer is a few hundred bytes into an empty socket buffer: it never waits.
        ending = answer_error(conn, exc, intake, self.config, self.log_http, self.stats)
        if ending is not None:
            self._wait(_Waiting(conn, None, ending, time.monotonic()))

    def end(self, conn: Connection, unread: int, cut: bool) -> None:
        """A response is over: close, or drain the unread body first (``Ending``)."""
        if cut or not unread:
            _close(conn)
            return
        ending = Ending(conn, unread, self.config)
        if ending.drain():
            conn.close()
        else:
            self._wait(_Waiting(conn, None, ending, time.monotonic()))

    # --- the app ---------------------------------------------------------------------

    def _start(self, conn: Connection, data: bytes | bytearray,
               parsed: ParsedHead, accepted: float, now: float) -> None:
        """A ready request: run the app on it in a task of its own (``now``: the time, which
        is ``accepted`` for a request that came whole with its connection)."""
        variables, length, start = parsed
        # The body bytes that came with the head: copied once, or not at all when they
        # are all the data there is.
        prefix = (b"" if not length else
                  data if not start and len(data) == length and isinstance(data, bytes)
                  else bytes(memoryview(data)[start:start + length]))
        body_timeout = self.config.body_timeout
        deadline = now + body_timeout if body_timeout else _NO_DEADLINE
        channel = _Channel(self, conn, variables, length, accepted, now)
        if not self.in_flight:
            self.heartbeat.slots[self.heartbeat.index] = now
        self.in_flight.append(channel)
        self.started += 1
        if self.started == self.max_requests:
            # Counted as they start, not as they end, or the loop would take more
            # while its last ones run.  No accept after this one (_may_accept); the
            # retirement, with its last pass over the listen queue, once this accept
            # loop is done.  (Not stopping yet: a stop may end only after that pass.)
            self.recycling = True
            self.loop.call_soon(self._retire)
        assert self.adapter is not None
        try:
            # The cycle's run, the task's only coroutine: it ends with channel.served().
            serve = self.adapter.run(channel, variables, length, prefix, deadline)
        except Exception:
            log.exception("Internal error serving a request")
            channel.served()
            return
        if _EAGER:
            # The task's first step runs now, as part of this call (an eager task): most
            # apps answer in it, and the task is then done without ever being scheduled.
            task = asyncio.Task(serve, loop=self.loop, name=_TASK_NAME,  # type: ignore[call-arg]
                                eager_start=True)
        else:
            task = asyncio.Task(serve, loop=self.loop, name=_TASK_NAME)
        if not task.done():
            # The set holds the task: the loop itself keeps only a weak reference.
            channel.task = task
            self.tasks.add(task)
        if self.stats is not None:
            self.stats.set_in_flight(len(self.tasks))

    def _may_accept(self) -> bool:
        return not self.recycling

    def _served(self, channel: _Channel) -> None:
        """A request's app has returned (its response may have ended before)."""
        channel.returned = True
        in_flight = self.in_flight
        while in_flight and in_flight[0].returned:
            in_flight.popleft()
        # The oldest request still running is the one --timeout is about.
        self.heartbeat.slots[self.heartbeat.index] = in_flight[0].started if in_flight else 0.0
        if channel.task is not None:
            self.tasks.discard(channel.task)
            channel.task = None
        if self.stats is not None:
            self.stats.set_in_flight(len(self.tasks))
        self.handled += 1
        if self.stopping:
            # Looked at once the callback that runs us is over: an eager task ends
            # within the accept pass that started it, which may start more after it.
            self.loop.call_soon(self._check_done)

    # --- waiting connections ---------------------------------------------------------

    def _wait(self, waiting: _Waiting) -> None:
        if len(self.waiting) >= self.config.max_pending:
            oldest = next(iter(self.waiting.values()))
            self.log_evicted("Dropping the oldest waiting connection: --max-pending %d reached",
                             self.config.max_pending)
            self._unwait(oldest)
            oldest.conn.close()
        self.waiting[waiting.fd] = waiting
        try:
            self.watcher.register(waiting.fd, _ONCE)
        except FileExistsError:  # watched before (its request), disarmed since
            self.watcher.modify(waiting.fd, _ONCE)
        self._set_timer(waiting)

    def _set_timer(self, waiting: _Waiting) -> None:
        if waiting.timer is not None:
            waiting.timer.cancel()
            waiting.timer = None
        waiting.deadline = deadline = waiting.current_deadline()
        if deadline != _NO_DEADLINE:
            waiting.timer = self.loop.call_later(max(0.0, deadline - time.monotonic()),
                                                 self._expire, waiting)

    def _unwait(self, waiting: _Waiting) -> None:
        # It stays in the watcher, disarmed (or armed, but about to be closed, which
        # removes it): it is armed again only if it waits again.
        if self.waiting.pop(waiting.fd, None) is waiting:
            if waiting.timer is not None:
                waiting.timer.cancel()

    def _expire(self, waiting: _Waiting) -> None:
        if self.waiting.get(waiting.fd) is not waiting:
            return
        waiting.timer = None
        if waiting.current_deadline() > time.monotonic():
            self._set_timer(waiting)  # its head arrived since: it waits for its body now
            return
        self._unwait(waiting)
        if waiting.ending is not None or waiting.intake is None:
            waiting.conn.close()
        else:
            self._refuse(waiting.conn, waiting.intake.expired(), waiting.intake)
        self._check_done()
