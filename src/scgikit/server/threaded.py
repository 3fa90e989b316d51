"""The threads model: each worker process runs up to ``--threads`` WSGI requests at once.

How it works.  The main thread does what the sync worker does (``worker.py``):
accept, park connections until their request has arrived, enforce deadlines,
drain unread bodies before the close.  Only a ready request is handed to the
pool, so a slow client costs a parked descriptor, never a thread (as gunicorn's
gthread and waitress do).  A pool thread runs the app and sends the answer;
if the connection still has an unread body to drain, the thread hands it back
to the main thread, which parks it again.  Then, while the worker accepts, the
thread takes the next connection waiting in the listen queue itself, as a sync
worker would: a ready request runs on that thread at once, with no hand-over and
no wake-up of the main thread; one still arriving goes to the main thread to
wait.  It gives its place back when the queue is empty, or when a request that
had to wait for its bytes is ready and waits for a thread: that one goes first.
While every thread is busy the main thread stops watching the listeners: the
connections wait in the shared listen queue, for the next thread that finishes
or another worker process.  A thread wakes the main thread (a byte on a pipe)
only when it has news for it: a connection to park, a free thread while the
listeners are unwatched, a stop or a recycle to finish.

Why the main thread watches the listeners, not the idle pool threads: with each
pool thread waiting on an epoll of its own, the listeners in each with
EPOLLEXCLUSIVE so that a connection wakes one idle thread, which then runs it, a
hello-world request behind nginx cost 36.4 µs of CPU instead of 27.4, with 3.0
thread switches per request instead of 2.0: the kernel wakes an idle thread for
each new connection while another thread of the process holds the GIL.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Sequence

from ..config import Config
from .connection import Adapter, run_app
from .intake import ParsedHead
from .sockets import Connection, Listener
from .worker import Heartbeat, Parked, Worker, _close

__all__ = ["ThreadedWorker"]

log = logging.getLogger("scgikit")

Task = tuple[Connection, "bytes | bytearray", ParsedHead, float]


class ThreadedWorker(Worker):
    """A worker whose ready requests run in a pool of ``--threads`` threads."""

    model = "threads"
    answers_inline = False

    def __init__(self, config: Config, listeners: Sequence[Listener], adapter: Adapter,
                 heartbeat: Heartbeat, ppid: int) -> None:
        super().__init__(config, listeners, adapter, heartbeat, ppid)
        if self.stats is not None:
            # Several pool threads record into the one region: under a lock, or
            # two increments at once could lose one.
            self.stats = self.stats.locked()
        self.size = config.threads
        self.main_thread = threading.get_ident()  # built where its loop runs (boot.py)
        self.tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self.finished: queue.SimpleQueue[Parked] = queue.SimpleQueue()  # for the main thread
        # Guards in_flight, full, started and handled, and the pool threads' accepts:
        # the main thread stops them (listening) under it before it closes a listener.
        self.lock = threading.Lock()
        self.in_flight = 0  # pool threads busy with a request (or taking the next)
        self.full = False  # listeners left out of the wait while the pool is full
        self.turn = 0  # the listener a pool thread tries first, in turn
        self.done_r, self.done_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.pool = [threading.Thread(target=self._serve, name=f"scgikit-{n}", daemon=True)
                     for n in range(self.size)]

    def start(self) -> None:
        super().start()
        for thread in self.pool:
            thread.start()
        self.wakers[self.done_r] = self._collect
        self.poller.add(self.done_r)

    def run(self) -> None:
        try:
            super().run()
        finally:
            for _ in self.pool:
                self.tasks.put(None)
            for thread in self.pool:
                thread.join(self.config.graceful_timeout)

    # --- the main thread ---------------------------------------------------------------

    def _run(self, conn: Connection, data: bytes | bytearray,
             parsed: ParsedHead | None, accepted: float) -> None:
        assert parsed is not None  # a handler that reads the socket itself runs on sync only
        with self.lock:
            self.in_flight += 1
            if self.stats is not None:
                self.stats.set_in_flight(self.in_flight)
            full = self.in_flight >= self.size
            if full:
                self.full = True  # cleared by _collect, once it has watched the listeners again
            self._count_start()
        self.tasks.put((conn, data, parsed, accepted))
        if full and self.listening:
            for sock in self.listeners:
                self.poller.remove(sock.fileno())

    def _may_accept(self) -> bool:
        # On a full stop the listen queue is served whatever the pool's load: the
        # requests wait for a thread here rather than be reset with the socket.
        return self.drain_queue or self.in_flight < self.size

    def _idle(self) -> bool:
        return self.in_flight == 0 and self.finished.empty()

    def _holding(self) -> str:
        return f"{self.in_flight} in the app, {len(self.parked)} connections"

    def _stop_accepting(self) -> None:
        with self.lock:  # no pool thread is in an accept, nor starts one
            self.listening = False
        super()._stop_accepting()

    def _park(self, parked: Parked) -> None:
        """Park a connection; from a pool thread, through the main thread, which owns them."""
        if threading.get_ident() == self.main_thread:
            super()._park(parked)
        else:
            self.finished.put(parked)
            self._wake_main()

    def _wake_main(self) -> None:
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
        """News from the pool: park the ends that must drain, watch the listeners again."""
        try:
            while os.read(self.done_r, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                parked = self.finished.get_nowait()
            except queue.Empty:
                break
            self._park(parked)
        with self.lock:
            free = self.full and self.in_flight < self.size
            if free:
                self.full = False
        if free and self.listening and not self.stopping and not self.accept_paused_until:
            self.poller.add_listeners(self.listeners)

    # --- a pool thread -----------------------------------------------------------------

    def _serve(self) -> None:
        task = self.tasks.get()
        while task is not None:
            self._answer(*task)
            task = self._next_task()

    def _answer(self, conn: Connection, data: bytes | bytearray, parsed: ParsedHead,
                accepted: float) -> None:
        key = self.heartbeat.begin()
        ending = None
        try:
            ending = run_app(conn, self.adapter, self.config, data, parsed, accepted,
                             self.model, self.stats)
        except Exception:
            log.exception("Error serving a request")
        finally:
            self.heartbeat.end(key)
        if ending is not None and not ending.drain():
            self._park(Parked(conn, None, ending, accepted))
        else:
            _close(conn)

    def _next_task(self) -> Task | None:
        """This thread's next request, once it has answered one.

        While the worker accepts, the thread takes the next connection from the listen
        queue itself and, if its request is all there, runs it.  When the queue is
        empty it gives its place in the pool back, and waits for the main thread.
        """
        handled = 1
        while True:
            with self.lock:
                self.handled += handled
                handled = 0
                # A request the main thread has handed over (in_flight counts those
                # too) goes first: a queue that new connections keep full must not
                # pass over one that had to wait for its bytes.
                conn = self._accept_here() if self.listening and self.in_flight <= self.size \
                    and not (self.stopping or self.accept_paused_until) else None
                if conn is None:
                    self.in_flight -= 1
                    if self.stats is not None:
                        self.stats.set_in_flight(self.in_flight)
                    news = (self.full and self.in_flight < self.size) or self.stopping
            if conn is None:
                if news:
                    self._wake_main()
                return self.tasks.get()
            request = self._receive(conn)  # else parked (by the main thread), or ended
            if request is not None:
                with self.lock:
                    self._count_start()
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
