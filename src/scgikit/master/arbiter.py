"""The master process: bind, fork workers, keep their number, act on signals.

How it works.  Signal handlers only append the signal to a queue (no logging,
no work: a handler can interrupt anything); the wake-up pipe makes the main
loop's ``poll`` return (``waiting.py``), and the loop dispatches each signal to a
method.
Between signals the loop reaps dead workers, kills those stuck on one request
past ``--timeout`` (their heartbeat slot in a shared array says since when),
and starts workers until the current generation has ``workers`` of them.

The same loop answers metrics and health checks (``--stats``: ``stats.py``), replaces
workers past --max-memory or --max-lifetime (``recycling.py``), reports to systemd
(``systemd.py``: READY, RELOADING, STOPPING, STATUS, and the watchdog's pings, from this
loop so that a master that hangs stops pinging) and, with ``--reload``, polls the app's
files (``reload.py``).

A reload (SIGHUP) starts a new generation; the old workers keep serving until
every new one has loaded the app and said so on the ready pipe, then they are
stopped gracefully.  If the new app fails to load, the old workers stay.  The
listening sockets never close during a reload, so no connection is refused.

Start-up failures.  A worker that dies before it said it is ready failed to
boot, whatever the way (exit code 3 or 4, another code, a signal, or killed
after ``--boot-timeout``).  Before any worker was ever ready that stops the
master (status 4, or 3 when the worker itself could not start): an app that
cannot load would otherwise be forked forever.  Only a death by a signal gets
one more try first, as the signal may have come from outside.  During a
reload a boot failure abandons the new generation and keeps the old one.
Deaths after ready, and boot failures of replacements, are retried with
capped exponential backoff, as is a failed ``fork()``.

    SIGTERM, SIGINT   graceful stop: workers finish their requests (--graceful-timeout)
    SIGQUIT           immediate stop
    SIGHUP            graceful reload: new workers load the app afresh (--preload: not),
                      with the --config file read again (``reconfigure.py``)
    SIGTTIN, SIGTTOU  one worker more, one fewer

With ``--reload`` (development) a burst of changes reloads as SIGHUP does; a
start or a reload then starts one new worker first and the others once it is
ready, so an app broken by an edit fails, and logs its error, once; and a failed
start waits for the next change instead of stopping the master.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import struct
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from ..accelerator import ACCELERATED
from ..config import Config, ConfigError
from ..connection.handoff import channel_pair
from ..connection.metrics import StatsTable
from ..workers.base import Heartbeat
from .boot import boot, prepare_process
from .children import HANDLED_SIGNALS, PidFile, collect_exits, exit_child, fork, kill, spawn_gateway
from .heap import keep_heap
from .listeners import Listener, open_listeners
from .preload import code_kept, preload
from .reconfigure import Origin, reconfigure
from .recycling import Recycler
from .reload import Watcher, describe, watcher_for
from .roster import (
    APP_LOAD_ERROR,
    BACKOFF_MIN,
    WORKER_BOOT_ERROR,
    MasterState,
    WorkerRecord,
    after,
    cause,
    exit_reason,
    how,
    notes,
    status_line,
)
from .sessions import SessionRouter
from .stats import StatsServer, open_stats_listener, pages
from .systemd import Notifier, forget_systemd_environ
from .waiting import wait_for_events

log = logging.getLogger("scgikit")

MAX_WORKERS = 1024
TICK = 0.5  # the loop's longest sleep: the precision of --timeout and --boot-timeout


class Arbiter:
    """Runs the master loop for one ``Config`` (and optionally an app object already loaded)."""

    def __init__(self, config: Config, app: Any = None, environ: dict[str, str] | None = None,
                 origin: Origin | None = None):
        self.config = config
        self.origin = origin if config.config_file else None  # a HUP re-reads the file
        self.app = app
        self.environ = dict(os.environ if environ is None else environ)
        self.state = MasterState(wanted=config.workers)
        self.signals: list[int] = []
        self.listeners: list[Listener] = []
        self.exit_code = 0
        self.gateway_pid = 0
        self.notifier = Notifier()  # silent until _prepare reads NOTIFY_SOCKET
        self.watcher: Watcher | None = None
        self.stats: StatsTable | None = None
        self.stats_server: StatsServer | None = None
        self.router: SessionRouter | None = None  # --session-affinity
        self.stop_pending = False  # the workers' stop waits for the router's hand-overs
        self.pid_file = PidFile(config.pid_file)
        self.recycler = Recycler(config)  # --max-memory, --max-lifetime

    # --- setup -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; returns the process exit code.

        A setting that turns out unusable at start (an address that cannot be bound,
        say) raises ``ConfigError`` before any worker starts: the caller reports it, as
        ``scgikit serve`` does in the one plain form of every option error.
        """
        try:
            self._prepare()
        except BaseException:
            self._release()  # nothing left behind: no socket file, no pid file
            raise
        try:
            self._loop()
        finally:
            self._release()
            log.info("Master %d stopped", os.getpid())
        return self.exit_code

    def _prepare(self) -> None:
        config = self.config
        if not config.target and self.app is None:
            raise ConfigError("no app to serve")
        prepare_process(config)
        # Read from self.environ, and gone from the environment of the app (--preload) and
        # of every child: the app must not take itself for the process systemd started.
        forget_systemd_environ(os.environ)
        if config.reload:
            if self.app is not None:
                raise ConfigError("--reload needs a TARGET that the workers import: an app "
                                  "object already loaded cannot be loaded afresh")
            self.watcher = watcher_for(config, os.getcwd())
        if config.preload and self.app is None:
            self.app = preload(config)  # before anything is bound
        self.listeners = open_listeners(config, self.environ)
        if config.session_affinity:
            self.router = SessionRouter(config, [listener.sock for listener in self.listeners])
        self.notifier = Notifier.from_environ(self.environ)
        if config.stats:
            self._open_stats()
        self.slots_map = mmap.mmap(-1, 8 * MAX_WORKERS)
        self.slots = memoryview(self.slots_map).cast("d")
        self.ready_r, self.ready_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._record_signal)
        self.pid_file.write()
        if self.stats_server is not None:
            log.info("Metrics at: %s (GET /metrics, /healthz, /readyz)", self.stats_server.name)
        # Logged last: tests and scripts take this line to mean "ready for signals".
        for listener in self.listeners:
            log.info("Listening at: %s", listener.name)
        if config.http:
            self.gateway_pid = spawn_gateway(config.http, self.listeners[0].address,
                                             self._forget_in_child)
        log.info("Master %d starting %d workers for %s%s", os.getpid(), config.workers,
                 config.target or self.app,
                 f"; --reload, for development only: {self.watcher}" if self.watcher else "")
        log.info("C accelerator: %s", "on" if ACCELERATED else "off (pure Python)")
        # Before the first fork: the workers inherit it (heap.py says why).
        if not keep_heap():
            log.debug("malloc's thresholds left as they are (not glibc, or set by MALLOC_*_)")

    def _open_stats(self) -> None:
        # (A --stats address that cannot be bound fails _prepare: run() releases the rest.)
        listener = open_stats_listener(self.config)
        self.stats = StatsTable(MAX_WORKERS)
        self.stats_server = StatsServer(listener, pages(self._render_stats, self.state))

    def _render_stats(self) -> str:
        assert self.stats is not None
        live = {w.slot: self.slots[w.slot] for w in self.state.workers.values()}
        return self.stats.render(live, len(self.state.workers))

    def _record_signal(self, signum: int, frame: Any) -> None:
        # NO LOGGING, no work: this can interrupt anything, the logger included.
        self.signals.append(signum)

    # --- the loop ------------------------------------------------------------------------

    def _loop(self) -> None:
        state = self.state
        while True:
            self._handle_signals()
            self._reap()
            if state.stopping:
                if not state.workers:
                    if state.failure:
                        # Last, so that the log ends with the cause and then "stopped".
                        log.error("%s", state.failure)
                    return
                if self.stop_pending and not (self.router and self.router.holding()):
                    self.stop_pending = False
                    self._signal_workers(self.state.workers.values(), signal.SIGINT)
                self._kill_overdue()
            else:
                self._murder_stuck()
                self._kill_slow_boots()
                self._reload_on_changes()
                self.recycler.check(state, self._stop_workers)  # before _manage replaces
                self._manage()
            self.notifier.report(self.state)
            wait_for_events(self._sleep_time(), self.wake_r, self.ready_r, self.router,
                            self.stats_server)

    def _sleep_time(self) -> float:
        """Up to TICK; less when a backed-off restart, a watchdog ping or a --reload
        scan falls due sooner."""
        now = time.monotonic()
        left = self.state.respawn_after - now
        sleep = min(TICK, left) if left > 0 else TICK
        if self.watcher is not None:
            sleep = min(sleep, self.watcher.seconds_left())
        if self.router is not None:
            sleep = min(sleep, max(0.0, self.router.next_deadline() - now))
        ping = self.notifier.seconds_to_watchdog(now)
        return sleep if ping is None else min(sleep, ping)

    def _reload_on_changes(self) -> None:
        if self.watcher is None:
            return
        changed = self.watcher.poll()
        if changed:
            log.info("Reload: changed: %s", describe(changed, os.path.realpath(os.getcwd())))
            self.handle_hup()

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            handlers: dict[int, Callable[[], None]] = {
                signal.SIGTERM: self.handle_term, signal.SIGINT: self.handle_term,
                signal.SIGQUIT: self.handle_quit, signal.SIGHUP: self.handle_hup,
                signal.SIGTTIN: self.handle_ttin, signal.SIGTTOU: self.handle_ttou,
            }
            handler = handlers.get(signum)
            if handler:
                handler()

    def handle_term(self) -> None:
        if self.state.stopping:
            return
        log.info("Graceful stop: waiting up to %ss for %d workers", self.config.graceful_timeout,
                 len(self.state.workers))
        # SIGINT, not SIGTERM, tells a worker that the whole server stops: it serves the
        # connections already in the listen queue before it exits (SIGTERM, for a reload
        # or a retired worker, leaves them to the other workers).
        self._begin_stop(self.config.graceful_timeout, signal.SIGINT)

    def handle_quit(self) -> None:
        log.info("Immediate stop")
        self._begin_stop(1.0, signal.SIGQUIT)

    def _begin_stop(self, grace: float, signum: int) -> None:
        # Unix socket files are removed with our copies of the listeners, so new
        # clients by path are refused at once (a front end moves on to another
        # backend), and TCP queues take no more (``Listener.refuse_new``); the
        # workers serve what is queued, then close theirs.
        # The loop wakes on each SIGCHLD and returns once the last worker is gone.
        self.state.stopping = True
        self.notifier.stopping(status_line(self.state))
        self.state.stop_deadline = time.monotonic() + grace
        self.state.stop_signal = signum
        if self.router is not None and signum == signal.SIGINT:
            self.router.stop()  # accepts what is queued: the workers stop once it is handed over
            self.stop_pending = True
        for listener in self.listeners:
            listener.refuse_new()
            listener.close(unlink=True)
        if not self.stop_pending:
            self._signal_workers(self.state.workers.values(), signum)
        if self.gateway_pid:
            kill(self.gateway_pid, signal.SIGTERM)

    def _kill_overdue(self) -> None:
        state = self.state
        if time.monotonic() <= state.stop_deadline:
            return
        if state.stop_signal != signal.SIGKILL:  # else they were killed already: no news
            log.warning("Killing %d workers that did not finish within --graceful-timeout",
                        len(state.workers))
        state.stop_signal = signal.SIGKILL
        self._signal_workers(state.workers.values(), signal.SIGKILL)
        state.stop_deadline = time.monotonic() + 5.0

    def handle_hup(self) -> None:
        state = self.state
        if state.stopping:
            return
        # Workers still loading the app would load the old version, or hang as the
        # last reload's did: drop them, so repeated reloads never pile up workers.
        # (Their "ready" may be waiting in the pipe: read it first, or a worker that
        # is already serving would be taken for one still loading.)
        self._read_ready()
        if self.origin is not None:
            self.config = reconfigure(self.config, self.origin, state, self.listeners)
            self.recycler = Recycler(self.config)
        state.waiting_for_change = False
        booting = [w for w in state.workers.values() if not w.ready and w.stopping_since is None]
        if booting:
            log.info("Reload: abandoning %d workers still loading the app", len(booting))
            self._stop_booting(booting)
        state.generation += 1
        log.info("Reload: starting %d new workers (generation %d)", state.wanted, state.generation)
        if kept := code_kept(self.config, self.app):
            log.info("%s", kept)
        self.notifier.reloading(status_line(self.state))

    def handle_ttin(self) -> None:
        self.state.wanted = min(self.state.wanted + 1, MAX_WORKERS)
        log.info("Workers: %d", self.state.wanted)

    def handle_ttou(self) -> None:
        self.state.wanted = max(self.state.wanted - 1, 1)
        log.info("Workers: %d", self.state.wanted)

    # --- workers -----------------------------------------------------------------------

    def _reap(self) -> None:
        exited = collect_exits()
        # A worker writes "ready" before it can die: read the pipe after the deaths
        # were collected, so none that was ready is taken for a boot failure.
        self._read_ready()
        for pid, status in exited:
            record = self.state.workers.pop(pid, None)
            if self.router is not None:
                self.router.gone(pid)
            if record is None:
                if pid == self.gateway_pid and not self.state.stopping:
                    log.error("HTTP gateway exited (%s)", os.waitstatus_to_exitcode(status))
                    self.gateway_pid = 0
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stats is not None:
                self.stats.retire(record.slot, exit_reason(record, code, self.state.stopping))
            self.slots[record.slot] = 0.0
            self._worker_exited(record, code)

    def _worker_exited(self, record: WorkerRecord, code: int) -> None:
        if record.stopping_since is not None or self.state.stopping:
            log.debug("Worker %d exited (%s)", record.pid, code)
        elif not record.ready:
            self._boot_failed(record, code)
        elif code != 0:  # 0 after ready: recycled by --max-requests, replaced quietly
            self._died(record, code)

    def _boot_failed(self, record: WorkerRecord, code: int) -> None:
        state = self.state
        if not state.ever_ready and self.watcher is not None:
            self._wait_for_change(record, code)
        elif not state.ever_ready:
            if code < 0 and not record.boot_timed_out and not state.start_retried:
                # The signal may have come from outside (an operator, the OOM killer)
                # rather than from the app: one more try before giving up.
                state.start_retried = True
                self._died(record, code, "the start stops if this happens again")
                return
            status = WORKER_BOOT_ERROR if code == WORKER_BOOT_ERROR else APP_LOAD_ERROR
            self._fail_start(f"Worker failed to boot; stopping with exit status {status}: "
                             f"{cause(record, code, self.config.boot_timeout)}", status)
        elif record.generation > state.live_generation:
            log.error("Reload failed: %s; keeping generation %d",
                      cause(record, code, self.config.boot_timeout), state.live_generation)
            self._abandon_reload()
        else:  # a replacement in the serving generation: the others serve meanwhile
            self._died(record, code)

    def _wait_for_change(self, record: WorkerRecord, code: int) -> None:
        # --reload: the next save may fix the app, so a failed start keeps the sockets
        # and waits for it instead of stopping the master.
        if not self.state.waiting_for_change:
            log.error("Worker failed to boot: %s; waiting for a change to reload (--reload)",
                      cause(record, code, self.config.boot_timeout))
        self.state.waiting_for_change = True
        self._stop_workers([w for w in self.state.workers.values() if w.stopping_since is None],
                           signal.SIGKILL)

    def _fail_start(self, why: str, status: int) -> None:
        # No worker ever served: forking more would only fail again.  The others
        # are still loading the app, so nothing is lost by killing them.
        self.exit_code = status
        self.state.failure = why
        self._begin_stop(5.0, signal.SIGKILL)

    def _died(self, record: WorkerRecord, code: int, note: str = "") -> None:
        delay = self.state.back_off()
        said = notes(record, code, self.config.boot_timeout) + [n for n in [note] if n]
        if delay:
            said.append("workers keep dying")
        level = logging.WARNING if record.ready else logging.ERROR
        log.log(level, "Worker %d %s; replacing it%s%s", record.pid, how(code), after(delay),
                f" ({'; '.join(said)})" if said else "")

    def _abandon_reload(self) -> None:
        state = self.state
        state.generation = state.live_generation
        newer = [w for w in state.workers.values()
                 if w.generation > state.live_generation and w.stopping_since is None]
        # Ready ones may be serving a request, and so may one whose "ready" came after
        # the pipe was last read: all stop gracefully (see _stop_booting).
        self._stop_workers(newer, signal.SIGTERM)

    def _read_ready(self) -> None:
        try:
            data = os.read(self.ready_r, 4096)
        except BlockingIOError:
            return
        for (pid,) in struct.iter_unpack("i", data[: len(data) // 4 * 4]):
            record = self.state.workers.get(pid)
            if record is not None:
                record.ready = True
                self.state.ever_ready = True
                log.debug("Worker %d ready (generation %d)", pid, record.generation)

    def _retire_old_generations(self) -> None:
        state = self.state
        # Stopping workers do not count: an abandoned reload's generation number comes again.
        current = [w for w in state.workers.values()
                   if w.generation == state.generation and w.stopping_since is None]
        if state.generation == state.live_generation:
            return
        if len([w for w in current if w.ready]) < state.wanted:
            return
        old = [w for w in state.workers.values()
               if w.generation < state.generation and w.stopping_since is None]
        log.info("Reload: generation %d ready; stopping %d old workers", state.generation, len(old))
        state.live_generation = state.generation
        self._stop_workers(old, signal.SIGTERM)

    def _manage(self) -> None:
        state = self.state
        if state.waiting_for_change:
            return
        current = state.current()
        wanted = state.wanted
        if (self.watcher is not None and not any(w.ready for w in current)
                and (state.generation != state.live_generation or not state.ever_ready)):
            wanted = 1  # --reload: one worker tries the edited app before the others
        if time.monotonic() >= state.respawn_after:
            for _ in range(wanted - len(current)):
                if not self._spawn():
                    break
        if len(current) > state.wanted:
            surplus = sorted(current, key=lambda w: w.pid)[: len(current) - state.wanted]
            self._stop_workers(surplus, signal.SIGTERM)
        self._retire_old_generations()

    def _murder_stuck(self) -> None:
        timeout = self.config.timeout
        now = time.monotonic()
        for record in list(self.state.workers.values()):
            since = self.slots[record.slot]
            if timeout and since and now - since > timeout:
                log.error("Worker %d stuck on one request for over %ss; killing it",
                          record.pid, timeout)
                self.slots[record.slot] = 0.0
                record.timed_out = True
                kill(record.pid, signal.SIGKILL)
            if record.stopping_since and now - record.stopping_since > self.config.graceful_timeout:
                log.warning("Worker %d did not stop within --graceful-timeout; killing it",
                            record.pid)
                kill(record.pid, signal.SIGKILL)

    def _kill_slow_boots(self) -> None:
        limit = self.config.boot_timeout
        now = time.monotonic()
        for record in self.state.workers.values():
            if (not record.ready and not record.boot_timed_out and record.stopping_since is None
                    and now - record.started > limit):
                record.boot_timed_out = True  # its death is then reported as this
                kill(record.pid, signal.SIGKILL)

    def _spawn(self) -> bool:
        """Start one worker of the current generation; False if fork() failed."""
        slot = self.state.free_slot(MAX_WORKERS)
        self.slots[slot] = 0.0
        generation = self.state.generation
        master = os.getpid()
        ends = channel_pair() if self.router is not None else None
        try:
            pid = fork()
        except OSError as exc:  # EAGAIN, ENOMEM: the machine may recover; we stay up
            log.error("Cannot start a worker: fork() failed: %s; retrying%s",
                      exc.strerror or exc, after(self.state.back_off(BACKOFF_MIN)))
            for end in ends or ():
                end.close()
            return False
        if pid == 0:
            self._run_worker(slot, master, ends)
        if ends is not None and self.router is not None:
            ends[1].close()
            self.router.add(pid, ends[0])
        now = time.monotonic()
        self.state.workers[pid] = WorkerRecord(pid, slot, generation, started=now,
                                               retire_at=self.recycler.lifetime(now))
        if self.stats is not None:
            self.stats.starts += 1
        log.debug("Started worker %d (generation %d)", pid, generation)
        return True

    def _run_worker(self, slot: int, master: int, ends: Any) -> NoReturn:
        """In the child after the fork: boot, serve, exit with the worker's code."""
        exit_child(lambda: self._boot_worker(slot, master, ends), "Worker")

    def _boot_worker(self, slot: int, master: int, ends: Any) -> int:
        os.close(self.wake_r)
        os.close(self.wake_w)
        os.close(self.ready_r)
        if self.config.reload:
            # Python's bytecode cache knows a source by its mtime in whole seconds
            # and its size: an edit of the same length within the same second as
            # the one before would be served stale from __pycache__.
            sys.dont_write_bytecode = True
        stats = None
        if self.stats is not None and self.stats_server is not None:
            self.stats_server.forget()
            stats = self.stats.worker(slot)
        listeners: Any = self.listeners
        if self.router is not None:  # --session-affinity: the master hands connections over
            ends[0].close()
            self.router.forget()
            listeners = [Listener(ends[1], "the master")]
        return boot(self.config, listeners, self.app, Heartbeat(self.slots, slot, stats),
                    self.ready_w, master)

    def _forget_in_child(self) -> None:
        """In a child that is not a worker: close the master's sockets."""
        for listener in self.listeners:
            listener.sock.close()
        if self.stats_server is not None:
            self.stats_server.forget()

    def _stop_workers(self, records: Iterable[WorkerRecord], signum: int) -> None:
        now = time.monotonic()
        for record in records:
            record.stopping_since = record.stopping_since or now
            kill(record.pid, signum)

    def _stop_booting(self, records: Iterable[WorkerRecord]) -> None:
        """Stop workers that had not said "ready" when the master last looked.

        SIGTERM, not SIGKILL: one may have said it since, and be serving a request
        already (a worker takes over SIGTERM before it says "ready", and then stops as
        gracefully as any).  One still loading the app has the default action, and
        dies of it; one whose app took SIGTERM over is killed after --graceful-timeout.
        """
        self._stop_workers(records, signal.SIGTERM)

    def _signal_workers(self, records: Iterable[WorkerRecord], signum: int) -> None:
        for record in list(records):
            kill(record.pid, signum)

    def _release(self) -> None:
        if self.router is not None:
            self.router.close()
        for listener in self.listeners:
            listener.close(unlink=True)
        if self.stats_server is not None:
            self.stats_server.close()
        self.pid_file.remove()


