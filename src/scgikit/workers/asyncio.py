"""The asyncio worker model: one event loop per worker process runs many ASGI requests at once.

How it works.  ``start`` makes the loop (uvloop when ``--loop auto`` finds it, or
``--loop uvloop``) and runs the app's lifespan startup; ``run`` serves until a
signal says stop, then runs the lifespan shutdown.

The worker's poller (``connection/poller.py``: the shared listeners and the
waiting room's connections), is watched by the loop as one reader.  On a new
connection it accepts until the queue is empty, as the sync worker does
(``loops.QueueLoop.take``: in C where the accelerator runs).  A connection is then
the same path as in every model (``connection/``): if its first receive holds the
request (the head, and a body of up to ``--body-buffer-size``), the app starts at
once; otherwise the connection waits in the waiting room, whose deadlines the
worker keeps with one timer, at the earliest of them.  A ready request becomes a
task running the ASGI ``Cycle`` (``apps/asgi.py``) over a ``Channel``; on Python
3.12+ an eager one, whose first step runs at once: a request the app answers without
waiting on anything never goes through the loop's queue.  After the answer, an
unread body is drained before the close (``connection/ending.py``), the connection
waiting in the room again meanwhile.

No asyncio transports: the connections are plain sockets read and written with
``MSG_DONTWAIT`` and watched with ``add_reader``/``add_writer`` only when a call
would block.  A request whose bytes are all there makes the sync worker's system
calls (accept, recv, send, close) and no others but the loop's wait, and the
body is read only when the app asks for it: ASGI's flow control, for free.

A request past ``--timeout`` is cancelled (one timer, at the oldest request's
deadline): its cycle answers 504 if nothing was sent yet, else cuts the answer short,
and the worker serves on.  Heartbeat: the worker's slot holds the start time of the
oldest request in flight (0.0 when none), ``OVERRUN_GRACE`` later, so a request the loop
cannot cancel (say ``time.sleep`` in an async view, which blocks the whole loop) gets
the worker killed and replaced.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import importlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from ..accesslog import log_access, logging_access
from ..apps.asgi import ASGIAdapter, DeadlinePassed, Lifespan
from ..apps.loader import AppImportError
from ..config import Config
from ..connection.ending import Ending
from ..connection.intake import RECV_SIZE, ParsedHead
from ..connection.sockets import DONTWAIT, Connection, close_now, family_of, local_name
from ..connection.waiting import WaitingRoom
from .base import (
    ACCEPT_PAUSE,
    OVERRUN_GRACE,
    STOP_REPORT,
    Heartbeat,
    Worker,
    raise_descriptor_limit,
)
from .loops import QueueLoop

__all__ = ["AsyncioWorker", "Channel", "new_event_loop"]

log = logging.getLogger("scgikit")

_LAST = DONTWAIT | int(getattr(socket, "MSG_MORE", 0))
_NO_DEADLINE = float("inf")
# A first body chunk up to this size is joined to the head; a bigger one goes beside it.
_SMALL_CHUNK = 16 * 1024
_SENDFILE_BLOCK = 1 << 30
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
# Python 3.12+ runs a task's first step as it is made (an eager task).
_EAGER = sys.version_info >= (3, 12)
# Every request's task has this name: one given spares the "Task-N" Python 3.11 formats.
_TASK_NAME = "scgikit request"


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


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _time_out(waiter: asyncio.Future[None], what: str) -> None:
    if not waiter.done():
        waiter.set_exception(DeadlinePassed(f"{what} timed out"))

# The requests an asyncio worker takes at once, as the master routes sessions.
_MANY = 1 << 20


class Channel:
    """One request's connection on the loop: the ``asgi.Channel`` its cycle uses."""

    __slots__ = ("worker", "loop", "conn", "fd", "variables", "length", "accepted", "started",
                 "reading", "writing", "finished", "returned", "task", "timed_out")

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
        self.timed_out = False  # cancelled at --timeout

    async def read(self, size: int, deadline: float) -> bytes:
        while not self.finished:
            try:
                return self.conn.recv(size, DONTWAIT)
            except BlockingIOError:
                pass
            await self._readable(deadline)
        return b""

    async def _readable(self, deadline: float) -> None:
        waiter = self.reading = self.loop.create_future()
        self.loop.add_reader(self.fd, _wake, waiter)
        timer = None
        if deadline != _NO_DEADLINE:
            timer = self.loop.call_later(deadline - time.monotonic(), _time_out, waiter,
                                         "receive")
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
            timer = self.loop.call_later(self.worker.send_timeout, _time_out, waiter, "send")
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
        flags = _LAST if last else DONTWAIT
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
                    offset += self.conn.send(octets[offset:], DONTWAIT)
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
        if logging_access():
            log_access(self.variables, status, sent, self.accepted, "asyncio")
        stats = self.worker.stats
        if stats is not None:
            stats.record(status, sent, self.length, self.accepted, self.variables)
        self.worker.end(self.conn, unread, cut)

    def served(self) -> None:
        if not self.finished:  # an error of ours, or the task cancelled
            self.finish("500", 0, 0, cut=True)
        self.worker.served(self)


class AsyncioWorker(Worker):
    """One worker's event loop; built in the child right after the fork."""

    model = "asyncio"

    def __init__(self, config: Config, listeners: Sequence[socket.socket], app: Any,
                 heartbeat: Heartbeat, ppid: int) -> None:
        super().__init__(config, listeners, heartbeat, ppid)
        self.app = app
        self.server = local_name(self.listeners)
        self.listener_fds = {sock.fileno(): sock for sock in self.listeners}
        # For each listener, made by start(): its QueueLoop, or None where the Python loop
        # takes its connections (a TCP listener under --allow-from).
        self.loops: dict[socket.socket, Any] = {}
        self.send_timeout = config.header_timeout  # as the sync model's SO_SNDTIMEO
        self.retiring = False  # no more accepts: what we hold ends, then the worker
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight: collections.deque[Channel] = collections.deque()  # oldest first
        self.accept_paused = False
        self.timer: asyncio.TimerHandle | None = None  # at the waiting room's first deadline
        self.timer_at = _NO_DEADLINE
        self.timeout = config.timeout
        self.cap = config.max_concurrency  # 0: none
        self.active = 0  # requests given to the app and not served yet
        self.overrun_timer: asyncio.TimerHandle | None = None  # at the oldest's --timeout
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # start()
        self.lifespan: Lifespan | None = None
        self.adapter: ASGIAdapter | None = None
        self.done: asyncio.Future[None] | None = None

    def _make_room(self) -> WaitingRoom:
        return WaitingRoom(self.config, self.poller, self.handle, stats=self.stats,
                           on_deadline=self._deadline)

    def capacity(self) -> int:
        # Requests that wait on I/O cost the loop nothing: no session waits, but the cap.
        return self.cap or _MANY

    def _may_accept(self) -> bool:
        return not self.state.full

    def _check_cap(self) -> None:
        """--max-concurrency: the connections this worker holds (requests in the app, and
        those still arriving or draining) against the cap.  At the cap the queue loop
        stops at its next accept and the listeners leave the wait: new connections queue
        in the kernel for the other workers, or for this one once it holds fewer."""
        held = self.active + len(self.room)
        if not self.state.full:
            if held >= self.cap:
                self.state.full = True
                self._unlisten()
        elif held < self.cap:
            self.state.full = False
            if self.listening and not self.accept_paused and not self.state.stopping:
                self.poller.add_listeners(self.listeners)

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
                                   self.config.body_timeout, self.lifespan.state,
                                   self.config.front_end_buffering)
        # Before "ready", as every descriptor the worker holds for good: none on the way later.
        self.loops = {sock: self._queue_loop(sock) for sock in self.listeners}
        # Held until the loop runs, from before the handlers are installed: uvloop reads
        # signals through a wake-up descriptor it sets only while it runs, and its handler
        # for one that comes before does nothing, so a stop between the install and the
        # loop would be lost (and wait out --graceful-timeout).  Pending, it comes in run().
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        # Before the master hears "ready", which may be followed at once by a stop.
        self._install_signals()

    def run(self) -> None:
        raise_descriptor_limit()
        loop = self.loop
        self.done = loop.create_future()
        if self.retiring:  # a stop handled before there was a future to finish
            self._check_done()
        else:
            self._listen()
        loop.call_later(1.0, self._check_master)
        loop.add_reader(self.poller.fileno(), self._ready)
        loop.call_soon(signal.pthread_sigmask, signal.SIG_UNBLOCK, _STOP_SIGNALS)
        try:
            loop.run_until_complete(self.done)
            self._recycled()
            assert self.lifespan is not None
            loop.run_until_complete(self.lifespan.shutdown())
        finally:
            loop.close()
            self.poller.close()

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
        if not self.retiring:
            self.retiring = True
            self.state.stopping = True
            self._stop_accepting()
            self.loop.call_later(STOP_REPORT, self._report_stop)
        self._check_done()

    def _report_stop(self) -> None:
        """Say what a stop still waits for, every STOP_REPORT seconds until it is done."""
        if self.done is not None and not self.done.done():
            log.info("Stopping; still waiting for: %d in the app, %d connections",
                     len(self.tasks), len(self.room))
            self.loop.call_later(STOP_REPORT, self._report_stop)

    def _stop(self) -> None:
        """SIGINT, the master's full stop: first serve what the listen queues hold."""
        if not self.state.stopping:
            self.state.drain_queue = True
        self._retire()

    def _check_done(self) -> None:
        if self.retiring and not self.tasks and not self.room and self.done is not None:
            if not self.done.done():
                self.done.set_result(None)

    def _check_master(self) -> None:
        if self._master_gone():
            self.state.stopping = True
            if self.done is not None and not self.done.done():
                self.done.set_result(None)
            return
        self.loop.call_later(1.0, self._check_master)

    # --- accepting -------------------------------------------------------------------

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
        if not self.state.stopping and not self.state.full:
            self._listen()

    def _ready(self) -> None:
        """The poller has news: waiting connections that are readable (each is then disarmed
        until the room arms it again), or new connections on a listener."""
        room = self.room
        for fd in self.poller.wait(0):
            if not room.readable(fd) and self.listening and fd in self.listener_fds:
                self._take_queue(self.listener_fds[fd])
        if self.cap:
            self._check_cap()
        self._check_done()

    def _take_queue(self, listener: socket.socket) -> None:
        """Accept until the listen queue is empty, starting each ready request as it comes.

        The listener's ``QueueLoop`` takes the connections (in C where the accelerator
        runs): the accept, the first receive, the head's parse and the readiness rule,
        then ``handle``; any other connection comes back here.  A TCP listener under
        --allow-from, which needs each peer's address, is served by the Python loop.
        """
        loop = self.loops[listener]
        if loop is None:
            self._accept_from(listener, None)
            return
        while self._took(loop.take()):
            if self.cap:
                self._check_cap()

    def _queue_loop(self, listener: socket.socket) -> Any:
        if self.handoff is not None or (
                self.allow is not None and family_of(listener) != socket.AF_UNIX):
            return None
        config = self.config
        return QueueLoop(state=self.state, listener=listener, recv_size=RECV_SIZE,
                         max_header_size=config.max_header_size, body_limit=config.body_limit,
                         buffer_size=config.body_buffer_size, start=self.handle)

    # --- the waiting room's deadlines ------------------------------------------------

    def _deadline(self, deadline: float) -> None:
        """A connection in the room has ``deadline``: the timer rings at the earliest."""
        if self.timer is not None:
            if self.timer_at <= deadline:
                return
            self.timer.cancel()
        self.timer_at = deadline
        self.timer = self.loop.call_later(max(0.0, deadline - time.monotonic()), self._expire)

    def _expire(self) -> None:
        self.timer = None
        room = self.room
        room.expire(time.monotonic())
        if room.next_deadline() != _NO_DEADLINE:
            self._deadline(room.next_deadline())
        if self.cap:
            self._check_cap()
        self._check_done()

    # --- the app ---------------------------------------------------------------------

    def handle(self, conn: Connection, data: bytes | bytearray, parsed: ParsedHead | None,
               accepted: float, now: float) -> None:
        """A ready request: run the app on it in a task of its own (``now``: the time, which
        is ``accepted`` for a request that came whole with its connection)."""
        assert parsed is not None
        variables, length, start = parsed
        # The body bytes that came with the head: copied once, or not at all when they
        # are all the data there is.
        prefix = (b"" if not length else
                  data if not start and len(data) == length and isinstance(data, bytes)
                  else bytes(memoryview(data)[start:start + length]))
        body_timeout = self.config.body_timeout
        deadline = now + body_timeout if body_timeout else _NO_DEADLINE
        channel = Channel(self, conn, variables, length, accepted, now)
        self.active += 1
        if self.cap:
            self._check_cap()
        if not self.in_flight:
            self.heartbeat.slots[self.heartbeat.index] = now + OVERRUN_GRACE
        self.in_flight.append(channel)
        if self.overrun_timer is None and self.timeout:
            self.overrun_timer = self.loop.call_later(self.timeout, self._overrun)
        if self.state.count_start():
            # No accept after this one; the retirement, with its last pass over the
            # listen queue, once this accept loop is done.
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

    def _overrun(self) -> None:
        """The timer at the oldest request's --timeout: cancel each request past it; the
        timer then waits for the next (it may ring early: the oldest has ended)."""
        self.overrun_timer = None
        now = time.monotonic()
        late = now - self.timeout
        for channel in self.in_flight:  # oldest first
            if channel.returned or channel.timed_out:
                continue
            if channel.started > late:
                self.overrun_timer = self.loop.call_later(channel.started - late, self._overrun)
                return
            if channel.task is not None:
                channel.timed_out = True
                log.error("Request %s %s ran over --timeout (%gs): cancelled",
                          channel.variables.get("REQUEST_METHOD", "?"),
                          channel.variables.get("REQUEST_URI",
                                                channel.variables.get("PATH_INFO", "?")),
                          self.timeout)
                channel.task.cancel()

    def end(self, conn: Connection, unread: int, cut: bool) -> None:
        """A response is over: close, or drain the unread body first (``Ending``)."""
        if cut or not unread:
            close_now(conn)
            return
        self.room.end(conn, Ending(conn, unread, self.config), time.monotonic())

    def served(self, channel: Channel) -> None:
        """A request's app has returned (its response may have ended before)."""
        channel.returned = True
        self.active -= 1
        if self.cap:
            self._check_cap()
        in_flight = self.in_flight
        while in_flight and in_flight[0].returned:
            in_flight.popleft()
        # The oldest request still running is the one --timeout is about.
        self.heartbeat.slots[self.heartbeat.index] = (
            in_flight[0].started + OVERRUN_GRACE if in_flight else 0.0)
        if channel.task is not None:
            self.tasks.discard(channel.task)
            channel.task = None
        if self.stats is not None:
            self.stats.set_in_flight(len(self.tasks))
        self.state.handled += 1
        self._finished(channel.conn)
        if self.retiring:
            # Looked at once the callback that runs us is over: an eager task ends
            # within the accept pass that started it, which may start more after it.
            self.loop.call_soon(self._check_done)
