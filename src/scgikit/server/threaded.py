"""The threads model: each worker process runs up to ``--threads`` WSGI requests at once.

How it works.  The main thread does what the sync worker does (``worker.py``):
accept, park connections until their request has arrived, enforce deadlines,
drain unread bodies before the close.  Only a ready request is handed to the
pool, so a slow client costs a parked descriptor, never a thread (as gunicorn's
gthread and waitress do).  A pool thread runs the app and sends the answer;
if the connection still has an unread body to drain, the thread hands it back
to the main thread, which parks it again.  While every thread is busy the main
thread stops watching the listeners: the connections wait in the shared listen
queue, where another worker process may take them.  A thread wakes the main
thread (a byte on a pipe) only when it has news for it: a connection to park,
a free thread while the listeners are unwatched, a stop or a recycle to finish.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Sequence

from ..config import Config
from .connection import Adapter, Ending, run_app
from .sockets import Connection, Listener
from .worker import Heartbeat, Parked, Worker, _close

__all__ = ["ThreadedWorker"]

log = logging.getLogger("scgikit")

Task = tuple[Connection, "bytes | bytearray", tuple[dict[str, str], int, int], float]


class ThreadedWorker(Worker):
    """A worker whose ready requests run in a pool of ``--threads`` threads."""

    model = "threads"

    def __init__(self, config: Config, listeners: Sequence[Listener], adapter: Adapter,
                 heartbeat: Heartbeat, ppid: int) -> None:
        super().__init__(config, listeners, adapter, heartbeat, ppid)
        if self.stats is not None:
            # Several pool threads record into the one region: under a lock, or
            # two increments at once could lose one.
            self.stats = self.stats.locked()
        self.size = config.threads
        self.tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self.finished: queue.SimpleQueue[tuple[Connection, Ending, float]] = queue.SimpleQueue()
        self.lock = threading.Lock()  # guards in_flight, handled and full
        self.in_flight = 0  # requests handed to the pool and not yet finished
        self.full = False  # listeners left out of the wait while the pool is full
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
             parsed: tuple[dict[str, str], int, int] | None, accepted: float) -> None:
        assert parsed is not None  # a handler that reads the socket itself runs on sync only
        with self.lock:
            self.in_flight += 1
            if self.stats is not None:
                self.stats.set_in_flight(self.in_flight)
            full = self.in_flight >= self.size
            if full:
                self.full = True  # cleared by _collect, once it has watched the listeners again
        self.tasks.put((conn, data, parsed, accepted))
        self._count_start()
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

    def _collect(self) -> None:
        """News from the pool: park the ends that must drain, watch the listeners again."""
        try:
            while os.read(self.done_r, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                conn, ending, accepted = self.finished.get_nowait()
            except queue.Empty:
                break
            self._park(Parked(conn, None, ending, accepted))
        with self.lock:
            free = self.full and self.in_flight < self.size
            if free:
                self.full = False
        if free and self.listening and not self.stopping and not self.accept_paused_until:
            self.poller.add_listeners(self.listeners)

    # --- a pool thread -----------------------------------------------------------------

    def _serve(self) -> None:
        while (task := self.tasks.get()) is not None:
            conn, data, parsed, accepted = task
            key = self.heartbeat.begin()
            ending = None
            try:
                ending = run_app(conn, self.adapter, self.config, data, parsed, accepted,
                                 self.model, self.stats)
            except Exception:
                log.exception("Error serving a request")
            finally:
                self.heartbeat.end(key)
            news = False
            if ending is not None and not ending.drain():
                self.finished.put((conn, ending, accepted))
                news = True
            else:
                _close(conn)
            with self.lock:
                self.in_flight -= 1
                if self.stats is not None:
                    self.stats.set_in_flight(self.in_flight)
                self.handled += 1
                news = news or self.full or self.stopping
            if news:
                os.write(self.done_w, b".")
