"""The threads model: each worker process runs up to ``--threads`` WSGI requests at once.

How it works.  The pool threads take the listen queue themselves, as uWSGI's threads
do: the idle threads take turns (a lock, ``leader``), and the one whose turn it is
waits on the listeners, accepts a connection and, if its request is all there, runs it
itself, handing its turn to the next idle thread as it goes.  A thread that has
answered a request takes the next connection waiting in the listen queue at once,
without a wait.  So a request costs no hand-over and no wake-up of another thread
beyond the turn's, and a pool whose threads are all busy waits on nothing: the
connections wait in the shared listen queue, for the next thread that finishes or
another worker process.

The main thread keeps what the sync worker does besides (``sync.py``): connections whose
request has not fully arrived wait in its waiting room against their deadlines, as do
the ends that must drain an unread body before the close, so a slow client costs a
waiting descriptor, never a thread (as gunicorn's gthread and waitress do); the
signals, the heartbeat, ``--timeout``.  A pool thread sends it a connection to wait
(``inbox``, then a byte on a pipe); a request that became ready in the room comes back
as a task (``tasks``, counted on an eventfd that the thread whose turn it is also
waits on), and goes before the listen queue's next connection.

Why the idle threads take turns, not all wait on the listeners: each idle thread
woken by every connection (or each in an epoll of its own with EPOLLEXCLUSIVE, when
a busy thread would take the connection itself) costs thread switches under the
GIL, and all of them in one epoll with the listeners armed one-shot cost more too
(each arming again is a system call that gives the GIL away and takes it back).  Why
not the main thread, as before: handing each request from it to a pool thread cost a
wake-up and a turn of its loop in Python for every request.  (docs/performance.md
has the figures.)
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import select
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from ..apps.wsgi import WSGIAdapter
from ..config import Config
from ..connection.answer import Adapter, run_app
from ..connection.intake import RECV_SIZE, ParsedHead
from ..connection.poller import drain
from ..connection.sockets import Connection, close_now
from ..connection.waiting import Waiting, WaitingRoom
from .base import ACCEPT_PAUSE, Heartbeat
from .loops import QueueLoop
from .overrun import Request, Running, cut_loose, dead_socket, watch_start
from .sync import SyncWorker

__all__ = ["ThreadedWorker"]

log = logging.getLogger("scgikit")

Task = tuple[Connection, "bytes | bytearray", ParsedHead, float]


class _PoolRoom(WaitingRoom):
    """The waiting room of a worker with a pool: it belongs to the main thread, and a pool
    thread's connection enters it through the main thread (``inbox``, then a wake-up)."""

    def __init__(self, worker: ThreadedWorker, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.worker = worker
        self.inbox: queue.SimpleQueue[Waiting] = queue.SimpleQueue()

    def admit(self, waiting: Waiting) -> None:
        if threading.get_ident() == self.worker.main_thread:
            super().admit(waiting)
        else:
            self.inbox.put(waiting)
            self.worker.wake_main()

    def admit_sent(self) -> None:
        """In the main thread: let in what the pool threads sent."""
        while True:
            try:
                waiting = self.inbox.get_nowait()
            except queue.Empty:
                return
            super().admit(waiting)


class ThreadedWorker(SyncWorker):
    """A worker whose pool of ``--threads`` threads takes the listen queue and runs the requests."""

    model = "threads"
    answers_inline = False

    def __init__(self, config: Config, listeners: Sequence[socket.socket], adapter: Adapter,
                 heartbeat: Heartbeat, ppid: int) -> None:
        self.main_thread = threading.get_ident()  # built where its loop runs (boot.py)
        self.done_r, self.done_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        super().__init__(config, listeners, adapter, heartbeat, ppid)
        if self.stats is not None:
            # Several pool threads record into the one region: under a lock, or
            # two increments at once could lose one.
            self.stats = self.room.stats = self.stats.locked()
        self.size = config.threads
        self.running = Running(heartbeat)
        # --timeout ends a request, not the worker (overrun.py): a socket to swap in for a
        # connection taken from its thread, and the app told apart before its answer starts.
        self.dead = dead_socket() if config.timeout else None
        self.abandoned = 0  # requests cut loose whose threads have not come back (the lock)
        if self.dead is not None and isinstance(adapter, WSGIAdapter):
            adapter.app = watch_start(adapter.app, self.running)
        # Requests the main thread hands to the pool (ready after waiting, or at a stop;
        # None: a thread's end), and as many counts on an eventfd: the thread whose turn
        # it is waits on it, and a thread takes a task only after taking its count.
        self.tasks: collections.deque[Task | None] = collections.deque()
        self.pending = os.eventfd(0, os.EFD_SEMAPHORE | os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.leader = threading.Lock()  # held by the idle thread whose turn it is to wait
        # Written once, when the worker stops accepting: wakes the thread waiting on the
        # listeners (never drained: a thread that would wait on them again wakes at once).
        self.stop_r, self.stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.watch_all = select.poll()  # the turn's wait while the worker accepts
        self.watch_tasks = select.poll()  # and once it has stopped, or pauses
        for watch in (self.watch_all, self.watch_tasks):
            watch.register(self.pending, select.POLLIN)
        self.watch_all.register(self.stop_r, select.POLLIN)
        for sock in listeners:
            self.watch_all.register(sock, select.POLLIN)
        # Guards in_flight and the state's counts, and the pool threads' accepts: the
        # main thread stops them (listening) under it before it closes a listener.
        self.lock = threading.Lock()
        self.in_flight = 0  # requests in the pool: running, or handed over and waiting
        self.turn = 0  # the listener a pool thread tries first, in turn
        self.takers: list[Any] = []  # each listener's QueueLoop (start)
        self.pool = [threading.Thread(target=self._serve, name=f"scgikit-{n}", daemon=True)
                     for n in range(self.size)]

    def _make_room(self) -> WaitingRoom:
        return _PoolRoom(self, self.config, self.poller, self.handle, stats=self.stats,
                         gather=True)

    def start(self) -> None:
        super().start()
        if self.handoff is None and self.allow is None:
            config = self.config
            self.takers = [QueueLoop(
                state=self.state, listener=sock, recv_size=RECV_SIZE,
                max_header_size=config.max_header_size, body_limit=config.body_limit,
                buffer_size=config.body_buffer_size) for sock in self.listeners]
        self.wakers[self.done_r] = self._collect
        self.poller.watch(self.done_r)

    def run(self) -> None:
        try:
            super().run()
        finally:
            for _ in self.pool:
                self._hand(None)
            # A thread still stuck in a request cut loose is left behind (a daemon).
            wait = 1.0 if self.abandoned else self.config.graceful_timeout
            for thread in self.pool:
                if thread.ident is not None:  # (started)
                    thread.join(wait)

    # --- the main thread ---------------------------------------------------------------

    def handle(self, conn: Connection, data: bytes | bytearray, parsed: ParsedHead | None,
               accepted: float, now: float) -> None:
        """A request that became ready in the main thread goes to the pool."""
        assert parsed is not None  # a handler that reads the socket itself runs on sync only
        with self.lock:
            self.in_flight += 1
            if self.stats is not None:
                self.stats.set_in_flight(self.in_flight)
            self.state.count_start()
        self._hand((conn, data, parsed, accepted))

    def _hand(self, task: Task | None) -> None:
        self.tasks.append(task)
        os.eventfd_write(self.pending, 1)

    def _listen(self) -> None:
        """The pool's threads wait on the listeners, not the main thread: they start now,
        as the loop does (a worker answers nothing before the master has heard "ready")."""
        self.listening = True
        for thread in self.pool:
            thread.start()
        if self.handoff is not None:
            self.handoff.offer(self.capacity())

    def _resume_accepting(self) -> None:
        """The pause is over: the pool's threads take from the listeners again (the one
        waiting its turn sees it, as its wait ends with the pause: ``_wait``)."""
        self.accept_paused_until = 0.0

    def _may_accept(self) -> bool:
        # On a full stop the listen queue is served whatever the pool's load: the
        # requests wait for a thread here rather than be reset with the socket.
        return self.state.drain_queue or self.in_flight < self.size

    def capacity(self) -> int:
        return self.size

    def _idle(self) -> bool:
        return (self.in_flight == self.abandoned
                and self.room.inbox.empty())  # type: ignore[attr-defined]

    def _holding(self) -> str:
        return f"{self.in_flight} in the app, {len(self.room)} connections"

    def _stop_accepting(self) -> None:
        with self.lock:  # no pool thread is in an accept, nor starts one
            self.listening = False
        os.write(self.stop_w, b".")  # the thread waiting on the listeners leaves them
        super()._stop_accepting()

    def wake_main(self) -> None:
        try:
            os.write(self.done_w, b".")
        except BlockingIOError:
            pass  # the pipe is full: the main thread has a wake-up waiting already

    def _cannot_accept(self, exc: OSError) -> None:
        if threading.get_ident() == self.main_thread:
            super()._cannot_accept(exc)
            return
        # A pool thread: the pool leaves the listeners for ACCEPT_PAUSE (_wait).
        now = time.monotonic()
        self.log_accept_error("Cannot accept a connection: %s", exc)
        self.accept_paused_until = now + ACCEPT_PAUSE
        if self._failing_too_long(exc, now):
            self.state.stopping = True
            self.wake_main()

    def _collect(self) -> None:
        """News from the pool: let in the connections that must wait."""
        drain(self.done_r)
        self.room.admit_sent()  # type: ignore[attr-defined]

    def _timeout(self) -> float:
        wait = super()._timeout()
        oldest = self.running.oldest()
        if oldest and self.dead is not None:
            wait = min(wait, max(0.0, oldest + self.config.timeout - time.monotonic()))
        return wait

    def _tick(self, now: float) -> None:
        """Each turn of the main loop: cut loose the requests past --timeout."""
        oldest = self.running.oldest()
        if oldest and self.dead is not None and now - oldest >= self.config.timeout:
            late = self.running.overdue(now - self.config.timeout + 1e-6, self._cut_loose)
            if late:
                with self.lock:
                    self.abandoned += late
                self.state.stopping = True  # recycled once its other requests are over

    def _cut_loose(self, request: Request) -> None:
        assert self.dead is not None
        answered = cut_loose(request, self.dead)
        log.error("Request %s %s ran over --timeout (%gs): %s; this worker is replaced once "
                  "its other requests are over", request.variables.get("REQUEST_METHOD", "?"),
                  request.variables.get("REQUEST_URI", request.variables.get("PATH_INFO", "?")),
                  self.config.timeout,
                  "answered 504" if answered else "its answer had begun, cut short")

    # --- a pool thread -----------------------------------------------------------------

    def _serve(self) -> None:
        task = self._wait()
        while task is not None:
            self._answer(*task)
            task = self._next_task()

    def _answer(self, conn: Connection, data: bytes | bytearray, parsed: ParsedHead,
                accepted: float) -> None:
        key = self.running.begin(conn, parsed[0])
        ending = None
        try:
            ending = run_app(conn, self.adapter, self.config, data, parsed, accepted,
                             self.model, self.stats)
        except Exception:
            log.exception("Error serving a request")
        finally:
            ours = self.running.end(key)  # before the close: see overrun.Running.end
            self._finished(conn)
        if not ours:  # cut loose meanwhile: the descriptor is the dead socket's duplicate
            with self.lock:
                self.abandoned -= 1
            close_now(conn)
        elif ending is not None:
            self.room.end(conn, ending, accepted)
        else:
            close_now(conn)

    def _next_task(self) -> Task | None:
        """This thread's next request, once it has answered one: a request handed over
        first (a queue that new connections keep full must not pass over one that had
        to wait for its bytes), then the next connection of the listen queue, taken
        without a wait; else the thread leaves the requests in flight, and waits its turn."""
        with self.lock:
            self.state.handled += 1
            self.in_flight -= 1
        task = self._handed()
        if task is not False:
            return task
        task = self._take_here()
        if task is not None:
            return task
        with self.lock:
            if self.stats is not None:
                self.stats.set_in_flight(self.in_flight)
            stopping = self.state.stopping
        if stopping:
            self.wake_main()  # it may be the last request the stopping worker waits for
        return self._wait()

    def _wait(self) -> Task | None:
        """Wait for this thread's turn, then for a request handed over or a connection
        (``_next_task`` has just looked for both: the wait comes first)."""
        with self.leader:
            while True:
                paused = self.accept_paused_until
                if paused and paused <= time.monotonic():
                    self.accept_paused_until = paused = 0.0
                if self.listening and not paused and not self.state.stopping:
                    self.watch_all.poll()
                else:
                    self.watch_tasks.poll(
                        max(0, int((paused - time.monotonic()) * 1000) + 1) if paused else None)
                task = self._handed()
                if task is not False:
                    return task  # (None: the thread ends)
                task = self._take_here()
                if task is not None:
                    return task

    def _handed(self) -> Task | None | Literal[False]:
        """A request the main thread handed over (None: the thread ends); False: none."""
        if not self.tasks:  # (a task is in before its count: then its count comes)
            return False
        try:
            os.eventfd_read(self.pending)
        except BlockingIOError:
            return False
        return self.tasks.popleft()

    def _take_here(self) -> Task | None:
        """The next request of the listen queue, if one waits, is ready and the worker
        accepts (counted in flight).  A connection whose request is not all there goes
        to wait in the main thread's room, and the next one is tried."""
        state = self.state
        while True:
            with self.lock:
                if not self.listening or state.stopping or self.accept_paused_until:
                    return None
                try:
                    left = self._take_one()
                except OSError as exc:  # what no other accept would mend (_accept_failed)
                    log.debug("A pool thread could not accept: %s", exc)
                    return None
                if type(left) is tuple and len(left) == 4:  # a ready request
                    self._count_in()
                    return left
            if left is None:
                return None
            if isinstance(left, OSError):
                try:
                    if not self._accept_failed(left):
                        return None
                except OSError as exc:
                    log.debug("A pool thread could not accept: %s", exc)
                    return None
                continue
            conn, got, accepted = left
            request = self.room.arrived(conn, got, accepted) if self.takers \
                else self._receive(conn)
            if request is not None:
                with self.lock:
                    self._count_in()
                data, parsed, accepted = request
                assert parsed is not None
                return conn, data, parsed, accepted

    def _take_one(self) -> Any:
        """What a ``QueueLoop`` of the listeners takes (``loops.py``), in turn; where the
        worker has none (``--allow-from`` on TCP, a master that hands connections over),
        a connection accepted in Python as ``(conn, b"", accepted)``, its first receive
        to come (the lock held)."""
        takers = self.takers
        if len(takers) == 1:
            return takers[0].take_one()
        listeners = takers or self.listeners
        self.turn = turn = (self.turn + 1) % len(listeners)
        for taker in listeners[turn:] + listeners[:turn]:
            if takers:
                left = taker.take_one()
                if left is not None:
                    return left
                continue
            taken: list[Connection] = []
            self._accept_from(taker, 1, final=True, take=taken.append)
            if taken:
                return taken[0], b"", time.monotonic()
        return None

    def _count_in(self) -> None:
        """A request this thread took from the listen queue is in flight (the lock held)."""
        self.in_flight += 1
        if self.stats is not None:
            self.stats.set_in_flight(self.in_flight)
        self.state.count_start()
