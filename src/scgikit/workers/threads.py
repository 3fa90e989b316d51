"""The threads model: each worker process runs up to ``--threads`` WSGI requests at once.

How it works.  The main thread does what the sync worker does (``sync.py``):
accept, keep connections in the waiting room until their request has arrived,
enforce deadlines, drain unread bodies before the close.  Only a ready request is handed to the
pool, so a slow client costs a waiting descriptor, never a thread (as gunicorn's
gthread and waitress do).  A pool thread runs the app and sends the answer;
if the connection still has an unread body to drain, the thread hands it back
to the main thread, whose waiting room holds it again.  Then, while the worker accepts, the
thread takes the next connection waiting in the listen queue itself, as a sync
worker would: a ready request runs on that thread at once, with no hand-over and
no wake-up of the main thread; one still arriving goes to the main thread to
wait.  It gives its place back when the queue is empty, or when a request that
had to wait for its bytes is ready and waits for a thread: that one goes first.
While every thread is busy the main thread stops watching the listeners: the
connections wait in the shared listen queue, for the next thread that finishes
or another worker process.  A thread wakes the main thread (a byte on a pipe)
only when it has news for it: a connection to wait, a free thread while the
listeners are unwatched, a stop or a recycle to finish.

Why the main thread watches the listeners, not the idle pool threads: with each
pool thread waiting on an epoll of its own, the listeners in each with
EPOLLEXCLUSIVE so that a connection wakes one idle thread, which then runs it, a
hello-world request behind nginx cost about a third more CPU, with 3 thread
switches per request instead of 2: the kernel wakes an idle thread for
each new connection while another thread of the process holds the GIL.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Sequence

from ..apps.wsgi import WSGIAdapter
from ..config import Config
from ..connection.answer import Adapter, run_app
from ..connection.intake import ParsedHead
from ..connection.poller import drain
from ..connection.sockets import Connection, close_now
from ..connection.waiting import Waiting, WaitingRoom
from .base import Heartbeat
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
    """A worker whose ready requests run in a pool of ``--threads`` threads."""

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
        self.tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        # Guards in_flight, full and the state's counts, and the pool threads' accepts:
        # the main thread stops them (listening) under it before it closes a listener.
        self.lock = threading.Lock()
        self.in_flight = 0  # pool threads busy with a request (or taking the next)
        self.full = False  # listeners left out of the wait while the pool is full
        self.turn = 0  # the listener a pool thread tries first, in turn
        self.pool = [threading.Thread(target=self._serve, name=f"scgikit-{n}", daemon=True)
                     for n in range(self.size)]

    def _make_room(self) -> WaitingRoom:
        return _PoolRoom(self, self.config, self.poller, self.handle, stats=self.stats,
                         gather=True)

    def start(self) -> None:
        super().start()
        for thread in self.pool:
            thread.start()
        self.wakers[self.done_r] = self._collect
        self.poller.watch(self.done_r)

    def run(self) -> None:
        try:
            super().run()
        finally:
            for _ in self.pool:
                self.tasks.put(None)
            # A thread still stuck in a request cut loose is left behind (a daemon).
            wait = 1.0 if self.abandoned else self.config.graceful_timeout
            for thread in self.pool:
                thread.join(wait)

    # --- the main thread ---------------------------------------------------------------

    def handle(self, conn: Connection, data: bytes | bytearray, parsed: ParsedHead | None,
               accepted: float, now: float) -> None:
        """A ready request goes to the pool."""
        assert parsed is not None  # a handler that reads the socket itself runs on sync only
        with self.lock:
            self.in_flight += 1
            if self.stats is not None:
                self.stats.set_in_flight(self.in_flight)
            full = self.in_flight >= self.size
            if full:
                self.full = True  # cleared by _collect, once it has watched the listeners again
            self.state.count_start()
        self.tasks.put((conn, data, parsed, accepted))
        if full and self.listening:
            self._unlisten()

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
        super()._stop_accepting()

    def wake_main(self) -> None:
        try:
            os.write(self.done_w, b".")
        except BlockingIOError:
            pass  # the pipe is full: the main thread has a wake-up waiting already

    def _cannot_accept(self, exc: OSError) -> None:
        if threading.get_ident() == self.main_thread:
            super()._cannot_accept(exc)
        # A pool thread gives its place back instead; the main thread meets the error
        # in its own accept, and backs off.

    def _collect(self) -> None:
        """News from the pool: let in the ends that must drain, watch the listeners again."""
        drain(self.done_r)
        self.room.admit_sent()  # type: ignore[attr-defined]
        with self.lock:
            free = self.full and self.in_flight < self.size
            if free:
                self.full = False
        if free and self.listening and not self.state.stopping and not self.accept_paused_until:
            self.poller.add_listeners(self.listeners)

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
        task = self.tasks.get()
        while task is not None:
            self._answer(*task)
            task = self._next_task()

    def _answer(self, conn: Connection, data: bytes | bytearray, parsed: ParsedHead,
                accepted: float) -> None:
        key = self.running.begin(conn, time.monotonic(), parsed[0])
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
        """This thread's next request, once it has answered one.

        While the worker accepts, the thread takes the next connection from the listen
        queue itself and, if its request is all there, runs it.  When the queue is
        empty it gives its place in the pool back, and waits for the main thread.
        """
        handled = 1
        state = self.state
        while True:
            with self.lock:
                state.handled += handled
                handled = 0
                # A request the main thread has handed over (in_flight counts those
                # too) goes first: a queue that new connections keep full must not
                # pass over one that had to wait for its bytes.
                conn = self._accept_here() if self.listening and self.in_flight <= self.size \
                    and not (state.stopping or self.accept_paused_until) else None
                if conn is None:
                    self.in_flight -= 1
                    if self.stats is not None:
                        self.stats.set_in_flight(self.in_flight)
                    news = (self.full and self.in_flight < self.size) or state.stopping
            if conn is None:
                if news:
                    self.wake_main()
                return self.tasks.get()
            request = self._receive(conn)  # else waiting (in the main thread's room), or ended
            if request is not None:
                with self.lock:
                    state.count_start()
                data, parsed, accepted = request
                assert parsed is not None
                return conn, data, parsed, accepted

    def _accept_here(self) -> Connection | None:
        """A connection from the listen queue, if one waits (the lock held)."""
        listeners = self.listeners
        self.turn = turn = (self.turn + 1) % len(listeners)
        taken: list[Connection] = []
        try:
            for sock in listeners[turn:] + listeners[:turn]:
                self._accept_from(sock, 1, final=True, take=taken.append)
                if taken:
                    return taken[0]
        except OSError as exc:
            log.debug("A pool thread could not accept: %s", exc)
        return None
