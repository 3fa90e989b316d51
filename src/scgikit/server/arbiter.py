"""The master process: bind, fork workers, keep their number, act on signals.

How it works.  Signal handlers only append the signal to a queue (no logging,
no work: a handler can interrupt anything); the wake-up pipe makes the main
loop's ``select`` return, and the loop dispatches each signal to a method.
Between signals the loop reaps dead workers, kills those stuck on one request
past ``--timeout`` (their heartbeat slot in a shared array says since when),
and starts workers until the current generation has ``workers`` of them.

A reload (SIGHUP) starts a new generation; the old workers keep serving until
every new one has loaded the app and said so on the ready pipe, then they are
stopped gracefully.  If the new app fails to load, the old workers stay.  The
listening sockets never close during a reload, so no connection is refused.

    SIGTERM, SIGINT   graceful stop: workers finish their requests (--graceful-timeout)
    SIGQUIT           immediate stop
    SIGHUP            graceful reload: new workers load the app afresh
    SIGTTIN, SIGTTOU  one worker more, one fewer
"""

from __future__ import annotations

import logging
import mmap
import os
import select
import signal
import struct
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config import Config, ConfigError
from .boot import APP_LOAD_ERROR, WORKER_BOOT_ERROR, boot
from .sockets import Listener, open_listeners
from .worker import Heartbeat

log = logging.getLogger("scgikit")

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                   signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)
MAX_WORKERS = 1024


@dataclass
class WorkerRecord:
    pid: int
    slot: int
    generation: int
    ready: bool = False
    stopping_since: float | None = None


@dataclass
class _State:
    workers: dict[int, WorkerRecord] = field(default_factory=dict)
    generation: int = 0
    live_generation: int = 0  # the newest generation that fully booted
    wanted: int = 1
    stopping: bool = False
    stop_deadline: float = 0.0
    ever_ready: bool = False
    respawn_after: float = 0.0  # after a boot failure, wait before trying again


class Arbiter:
    """Runs the master loop for one ``Config`` (and optionally an app object already loaded)."""

    def __init__(self, config: Config, app: Any = None, environ: dict[str, str] | None = None):
        self.config = config
        self.app = app
        self.environ = dict(os.environ if environ is None else environ)
        self.state = _State(wanted=config.workers)
        self.signals: list[int] = []
        self.listeners: list[Listener] = []
        self.exit_code = 0
        self.gateway_pid = 0

    # --- setup -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; returns the process exit code."""
        try:
            self._prepare()
        except ConfigError as exc:
            log.error("%s", exc)
            return 2
        try:
            self._loop()
        finally:
            self._cleanup()
        return self.exit_code

    def _prepare(self) -> None:
        config = self.config
        if (config.user or config.group) and os.geteuid() != 0:
            raise ConfigError("--user/--group need the server to be started as root")
        for name, value in config.env:
            os.environ[name] = value
        if config.chdir:
            try:
                os.chdir(config.chdir)
            except OSError as exc:
                raise ConfigError(f"--chdir {config.chdir}: {exc.strerror}") from None
        if not config.target and self.app is None:
            raise ConfigError("no app to serve")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as 'python -m' would, for 'module:app'
        self.listeners = open_listeners(config, self.environ)
        self._chown_sockets()
        self.slots_map = mmap.mmap(-1, 8 * MAX_WORKERS)
        self.slots = memoryview(self.slots_map).cast("d")
        self.ready_r, self.ready_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._record_signal)
        if config.pid_file:
            with open(config.pid_file, "w") as fh:
                fh.write(f"{os.getpid()}\n")
        # Logged last: tests and scripts take this line to mean "ready for signals".
        for listener in self.listeners:
            log.info("Listening at: %s", listener.name)
        if config.http:
            self.gateway_pid = self._spawn_gateway(config.http, self.listeners[0].address)
        log.info("Master %d starting %d workers for %s", os.getpid(), config.workers,
                 config.target or self.app)

    def _chown_sockets(self) -> None:
        if not self.config.user:
            return
        import pwd

        entry = pwd.getpwnam(self.config.user)
        for listener in self.listeners:
            if listener.unix_path:
                os.chown(listener.unix_path, entry.pw_uid, entry.pw_gid)

    def _record_signal(self, signum: int, frame: Any) -> None:
        # NO LOGGING, no work: this can interrupt anything, the logger included.
        self.signals.append(signum)

    # --- the loop ------------------------------------------------------------------------

    def _loop(self) -> None:
        state = self.state
        while True:
            self._handle_signals()
            self._reap()
            self._read_ready()
            if state.stopping:
                if not state.workers:
                    return
                if time.monotonic() > state.stop_deadline:
                    self._kill_all(signal.SIGKILL, "did not finish within --graceful-timeout")
            else:
                self._murder_stuck()
                self._manage()
            self._wait(0.5)

    def _wait(self, seconds: float) -> None:
        try:
            readable, _, _ = select.select([self.wake_r, self.ready_r], [], [], seconds)
        except InterruptedError:
            return
        if self.wake_r in readable:
            _drain(self.wake_r)

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
        self._begin_stop(self.config.graceful_timeout, signal.SIGTERM)

    def handle_quit(self) -> None:
        log.info("Immediate stop")
        self._begin_stop(1.0, signal.SIGQUIT)

    def _begin_stop(self, grace: float, signum: int) -> None:
        self.state.stopping = True
        self.state.stop_deadline = time.monotonic() + grace
        for listener in self.listeners:
            listener.close(unlink=True)
        self._signal_workers(self.state.workers.values(), signum)
        if self.gateway_pid:
            _kill(self.gateway_pid, signal.SIGTERM)

    def handle_hup(self) -> None:
        state = self.state
        state.generation += 1
        log.info("Reload: starting %d new workers (generation %d)", state.wanted, state.generation)

    def handle_ttin(self) -> None:
        self.state.wanted = min(self.state.wanted + 1, MAX_WORKERS)
        log.info("Workers: %d", self.state.wanted)

    def handle_ttou(self) -> None:
        self.state.wanted = max(self.state.wanted - 1, 1)
        log.info("Workers: %d", self.state.wanted)

    # --- workers -----------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            record = self.state.workers.pop(pid, None)
            if record is None:
                if pid == self.gateway_pid and not self.state.stopping:
                    log.error("HTTP gateway exited (%s)", os.waitstatus_to_exitcode(status))
                    self.gateway_pid = 0
                continue
            self.slots[record.slot] = 0.0
            self._worker_exited(record, status)

    def _worker_exited(self, record: WorkerRecord, status: int) -> None:
        state = self.state
        code = os.waitstatus_to_exitcode(status)
        if record.stopping_since is not None or state.stopping:
            log.debug("Worker %d exited (%s)", record.pid, code)
            return
        if code in (APP_LOAD_ERROR, WORKER_BOOT_ERROR) and not record.ready:
            if not state.ever_ready:
                log.error("Worker failed to boot; stopping (exit code %d)", code)
                self.exit_code = code
                self._begin_stop(0.0, signal.SIGKILL)
                return
            if record.generation > state.live_generation:
                log.error("Reload failed: the new workers cannot load the app; "
                          "keeping generation %d", state.live_generation)
                self._abandon_generation(record.generation)
                return
            state.respawn_after = time.monotonic() + 1.0
        if code < 0:
            log.warning("Worker %d was killed by signal %d; replacing it", record.pid, -code)
        elif code != 0:
            log.warning("Worker %d exited with code %d; replacing it", record.pid, code)

    def _abandon_generation(self, generation: int) -> None:
        self.state.generation = self.state.live_generation
        doomed = [w for w in self.state.workers.values() if w.generation >= generation]
        self._stop_workers(doomed, signal.SIGKILL)

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
        self._retire_old_generations()

    def _retire_old_generations(self) -> None:
        state = self.state
        current = [w for w in state.workers.values() if w.generation == state.generation]
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
        current = [w for w in state.workers.values()
                   if w.generation == state.generation and w.stopping_since is None]
        if time.monotonic() >= state.respawn_after:
            for _ in range(state.wanted - len(current)):
                self._spawn()
        if len(current) > state.wanted:
            surplus = sorted(current, key=lambda w: w.pid)[: len(current) - state.wanted]
            self._stop_workers(surplus, signal.SIGTERM)
        self._retire_old_generations()

    def _murder_stuck(self) -> None:
        timeout = self.config.timeout
        if not timeout:
            return
        now = time.monotonic()
        for record in list(self.state.workers.values()):
            since = self.slots[record.slot]
            if since and now - since > timeout:
                log.error("Worker %d stuck on one request for over %ss; killing it",
                          record.pid, timeout)
                self.slots[record.slot] = 0.0
                _kill(record.pid, signal.SIGKILL)
            if record.stopping_since and now - record.stopping_since > self.config.graceful_timeout:
                log.warning("Worker %d did not stop within --graceful-timeout; killing it",
                            record.pid)
                _kill(record.pid, signal.SIGKILL)

    def _free_slot(self) -> int:
        used = {w.slot for w in self.state.workers.values()}
        for slot in range(MAX_WORKERS):
            if slot not in used:
                return slot
        raise RuntimeError("no free worker slot")

    def _spawn(self) -> None:
        slot = self._free_slot()
        self.slots[slot] = 0.0
        generation = self.state.generation
        master = os.getpid()
        # Block signals across the fork: a signal for the new worker that arrives
        # before it has dropped the master's handlers must not be swallowed by them.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
        finally:
            if pid:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        if pid == 0:
            code = 1
            try:
                for signum in HANDLED_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
                signal.set_wakeup_fd(-1)
                os.close(self.wake_r)
                os.close(self.wake_w)
                os.close(self.ready_r)
                code = boot(self.config, self.listeners, self.app, Heartbeat(self.slots, slot),
                            self.ready_w, master)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("Worker crashed")
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        self.state.workers[pid] = WorkerRecord(pid, slot, generation)
        log.debug("Started worker %d (generation %d)", pid, generation)

    def _spawn_gateway(self, listen: str, to: str) -> int:
        """``--http``: a development HTTP gateway in a child process, in front of us."""
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
        finally:
            if pid:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        if pid:
            return pid
        code = 1
        try:
            for signum in HANDLED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            signal.set_wakeup_fd(-1)
            for listener in self.listeners:
                listener.sock.close()
            from ..gateway import serve_gateway

            serve_gateway(listen, to, ready=lambda address: log.info(
                "HTTP gateway (development only) at: http://%s -> %s", address, to))
            code = 0
        except Exception as exc:
            log.error("HTTP gateway failed: %s", exc)
        finally:
            logging.shutdown()
            os._exit(code)

    def _stop_workers(self, records: Iterable[WorkerRecord], signum: int) -> None:
        now = time.monotonic()
        for record in records:
            record.stopping_since = record.stopping_since or now
            _kill(record.pid, signum)

    def _signal_workers(self, records: Iterable[WorkerRecord], signum: int) -> None:
        for record in list(records):
            _kill(record.pid, signum)

    def _kill_all(self, signum: int, why: str) -> None:
        if self.state.workers:
            log.warning("Killing %d workers that %s", len(self.state.workers), why)
        self._signal_workers(self.state.workers.values(), signum)
        self.state.stop_deadline = time.monotonic() + 5.0

    def _cleanup(self) -> None:
        for listener in self.listeners:
            listener.close(unlink=True)
        if self.config.pid_file:
            try:
                os.unlink(self.config.pid_file)
            except OSError:
                pass
        log.info("Master %d stopped", os.getpid())


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def setup_logging(config: Config) -> None:
    """Errors and events to stderr at --log-level; the access log where --access-log says."""
    fmt = logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
                            "%Y-%m-%d %H:%M:%S %z")
    logger = logging.getLogger("scgikit")
    logger.handlers[:] = []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    logger.addHandler(handler)
    logger.setLevel(config.log_level.upper())
    access = logging.getLogger("scgikit.access")
    access.handlers[:] = []
    access.propagate = False
    if config.access_log:
        target = (logging.StreamHandler(sys.stderr) if config.access_log == "-"
                  else logging.FileHandler(config.access_log))
        target.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(target)
        access.setLevel(logging.INFO)
