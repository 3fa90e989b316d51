"""The sync worker model: one request in the app at a time, every waiting connection in the room.

How it works.  The worker loops: accept from the shared non-blocking listeners
until they are empty, then wait on its poller (the listeners, the signal
wake-up pipe and the waiting room's connections).  A new connection's first
receive usually holds the whole request: then it is answered at once, in the
accept loop itself (``loops.QueueLoop.serve``: in C where the accelerator runs).
One whose head or small body has not fully arrived waits in the room, against its
deadline, while the worker serves others; so do the ends that must drain an
unread body before the close.  Idle and slow clients cost a descriptor and a few
hundred bytes each, never the app.

Signal handlers only set flags; the loop acts on them between requests.  While a
request is in the app, the heartbeat slot holds the time it started.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from ..accesslog import log_access, logging_access
from ..config import Config
from ..connection.answer import Adapter, RawHandler, hand_over, run_app
from ..connection.intake import RECV_SIZE, ParsedHead
from ..connection.poller import drain
from ..connection.sockets import Connection, close_now
from ..connection.waiting import WaitingRoom
from .base import ACCEPT_PAUSE, STOP_REPORT, Heartbeat, Worker, raise_descriptor_limit
from .loops import QueueLoop

__all__ = ["SyncWorker"]

log = logging.getLogger("scgikit")


class SyncWorker(Worker):
    """One worker's loop; built in the child right after the fork."""

    model = "sync"
    answers_inline = True  # a ready request runs in the loop (threads: in the pool)

    def __init__(self, config: Config, listeners: Sequence[socket.socket], adapter: Adapter,
                 heartbeat: Heartbeat, ppid: int) -> None:
        self.adapter = adapter
        super().__init__(config, listeners, heartbeat, ppid)
        # Each listener's QueueLoop, made by start() where the queues are served inline.
        self.loops: dict[socket.socket, Any] = {}
        self.wakers: dict[int, Callable[[], None]] = {}  # other descriptors the loop watches
        self.wake_r = -1  # the signal wake-up pipe, from start()
        self.accept_paused_until = 0.0

    def _make_room(self) -> WaitingRoom:
        # A handler that reads the socket itself: look at the request, do not take it.
        return WaitingRoom(self.config, self.poller, self.handle, stats=self.stats,
                           peek=self.adapter.raw, gather=True)

    def start(self) -> None:
        """Take over the signals before the master hears "ready" (the app is loaded).

        A stop that arrives between "ready" and the loop must find our handlers, not
        the default action, which would end the worker with requests queued for it.
        """
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._retire)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGQUIT, self._immediate)
        for signum in (signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        # Each listener's QueueLoop, made before "ready" as every descriptor the worker holds
        # for good is: not one on the way once it serves.
        if self._serves_inline():
            self.loops = {sock: self._queue_loop(sock) for sock in self.listeners}

    # --- signals: record only --------------------------------------------------------

    def _retire(self, signum: int, frame: Any) -> None:
        self.state.stopping = True

    def _stop(self, signum: int, frame: Any) -> None:
        if not self.state.stopping:
            self.state.drain_queue = True
        self.state.stopping = True

    def _immediate(self, signum: int, frame: Any) -> None:
        os._exit(0)

    # --- the loop --------------------------------------------------------------------

    def run(self) -> None:
        raise_descriptor_limit()
        poller, room, state = self.poller, self.room, self.state
        self._listen()
        poller.watch(self.wake_r)
        check_master_at = time.monotonic() + 1.0
        report_at = 0.0
        listening = {sock.fileno() for sock in self.listeners}
        woken = list(listening)
        serve = self._serve_queue if self.loops else self._accept_queue
        while True:
            if state.stopping:
                if self.listening:
                    self._stop_accepting()
                    report_at = time.monotonic() + STOP_REPORT
                if not room and self._idle():
                    break
                if time.monotonic() >= report_at:
                    report_at = time.monotonic() + STOP_REPORT
                    log.info("Stopping; still waiting for: %s", self._holding())
            elif not self.accept_paused_until and not listening.isdisjoint(woken):
                for listener in self.listeners:
                    serve(listener)
            woken = poller.wait(self._timeout())
            if self.wake_r in woken:
                drain(self.wake_r)
            for fd in woken:
                if not room.readable(fd) and fd in self.wakers:
                    self.wakers[fd]()
            now = time.monotonic()
            if room.next_deadline() <= now:
                room.expire(now)
            self._tick(now)
            if self.accept_paused_until and now >= self.accept_paused_until:
                self._resume_accepting()
            if now >= check_master_at:
                check_master_at = now + 1.0
                if self._master_gone():
                    break
        self._recycled()

    def _resume_accepting(self) -> None:
        """The pause after accepts failed (``_cannot_accept``) is over."""
        self.accept_paused_until = 0.0
        if not self.state.stopping and self._may_accept():
            self.poller.add_listeners(self.listeners)

    def _timeout(self) -> float:
        if self.state.stopping and not self.room and self._idle():
            return 0.0
        return min(1.0, max(0.0, self.room.next_deadline() - time.monotonic()))

    def _tick(self, now: float) -> None:
        """Each turn of the loop (a model with a pool ends requests past --timeout)."""

    def _serves_inline(self) -> bool:
        """Whether the listen queues are served by a ``QueueLoop`` that answers whole
        requests itself; not in the threads model, nor under --allow-from (which needs
        each peer's address), nor for a handler that reads the socket itself, nor for
        connections the master hands over (--session-affinity)."""
        return (self.answers_inline and self.allow is None and not self.adapter.raw
                and self.handoff is None)

    def _accept_queue(self, listener: socket.socket) -> None:
        self._accept_from(listener, None)

    def _serve_queue(self, listener: socket.socket) -> None:
        """Accept until the listen queue is empty, answering each request as it comes.

        The listener's ``QueueLoop`` answers every request that came whole (in C where
        the accelerator runs) and hands any other back, to go on here.  It is made once
        per listener before the worker says "ready" (the access log and the metrics are set
        up before it starts).
        """
        loop = self.loops[listener]
        state = self.state
        while not state.stopping or state.drain_queue:
            if not self._took(loop.serve()):
                return

    def _queue_loop(self, listener: socket.socket) -> Any:
        config, stats = self.config, self.stats
        return QueueLoop(
            state=self.state, listener=listener, recv_size=RECV_SIZE,
            max_header_size=config.max_header_size, body_limit=config.body_limit,
            slots=self.heartbeat.slots, slot=self.heartbeat.index,
            answer=self.adapter.answer_whole, record=None if stats is None else stats.record,
            log_access=log_access if logging_access() else None, model=self.model)

    def _idle(self) -> bool:
        """Whether no request is in the app (the sync model runs them inline: always)."""
        return True

    def _holding(self) -> str:
        """What a stopping worker still waits for, in words."""
        return f"0 in the app, {len(self.room)} connections"

    def _cannot_accept(self, exc: OSError) -> None:
        """Out of descriptors: back off (polling a listener we cannot accept from spins)."""
        now = time.monotonic()
        self.log_accept_error("Cannot accept a connection: %s", exc)
        self.accept_paused_until = now + ACCEPT_PAUSE
        self._unlisten()
        if self._failing_too_long(exc, now):
            self.state.stopping = True

    # --- one request -----------------------------------------------------------------

    def handle(self, conn: Connection, data: bytes | bytearray, parsed: ParsedHead | None,
               accepted: float, now: float) -> None:
        """Give a ready request to the app, then end the connection."""
        slots, slot = self.heartbeat.slots, self.heartbeat.index
        slots[slot] = time.monotonic()
        self.state.count_start()
        ending = None
        try:
            if parsed is None:
                hand_over(conn, cast(RawHandler, self.adapter), self.config)
            else:
                ending = run_app(conn, self.adapter, self.config, data, parsed, accepted,
                                 self.model, self.stats)
        finally:
            slots[slot] = 0.0
            self.state.handled += 1
            self._finished(conn)
        if ending is not None:
            self.room.end(conn, ending, accepted)
        elif parsed is not None:
            close_now(conn)
