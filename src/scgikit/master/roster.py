"""What the master knows of its workers, and how it says it.

Each worker process has a ``WorkerRecord``: its generation (a reload starts a new
one), whether it has said "ready", and whether the master replaces, stops or killed it.
``MasterState`` holds them with the master's own state.  The rest are the words
for the log, the metrics and ``systemctl status``: why a worker ended, and how
the workers are doing.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field

__all__ = ["APP_LOAD_ERROR", "WORKER_BOOT_ERROR", "MasterState", "WorkerRecord", "after", "cause",
           "exit_reason", "how", "notes", "signal_name", "status_line", "workers_text"]

# The exit codes of a worker that failed to boot (as gunicorn's): it could not start
# itself, or it could not load the app (an app calling ``sys.exit`` as it loads too).
WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4


@dataclass
class WorkerRecord:
    """What the master knows of one worker process."""

    pid: int
    slot: int
    generation: int
    started: float = 0.0  # time.monotonic() at the fork, for --boot-timeout
    ready: bool = False
    stopping_since: float | None = None
    boot_timed_out: bool = False  # killed by us for not getting ready in time
    timed_out: bool = False  # killed by us for a request longer than --timeout
    retire_at: float = 0.0  # --max-lifetime: replaced from this time.monotonic() on (0: never)
    retiring: str = ""  # why it is being replaced (max_memory, max_lifetime): recycling.py


# Restart backoff: the first unexpected death is replaced at once; each further one
# within BACKOFF_RESET seconds of the previous doubles the wait, from BACKOFF_MIN
# up to BACKOFF_MAX.  Enough to stop a fork loop, short enough not to matter.
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
BACKOFF_RESET = 10.0


@dataclass
class MasterState:
    """The master's picture of its workers and of itself, changed only by its loop."""

    workers: dict[int, WorkerRecord] = field(default_factory=dict)
    generation: int = 0
    live_generation: int = 0  # the newest generation that fully booted
    wanted: int = 1
    stopping: bool = False
    stop_deadline: float = 0.0
    stop_signal: int = signal.SIGTERM
    failure: str = ""  # why a failed start stops the master: logged last, before exiting
    start_retried: bool = False  # a worker killed before the first ready got one more try
    ever_ready: bool = False
    respawn_after: float = 0.0  # no new worker before this time (restart backoff)
    backoff: float = 0.0
    last_failure: float = float("-inf")
    waiting_for_change: bool = False  # --reload: the app failed its first start

    def back_off(self, at_least: float = 0.0) -> float:
        """Delay the next start after a failure; returns the delay (0: at once)."""
        now = time.monotonic()
        if now - self.last_failure > BACKOFF_RESET:
            self.backoff = at_least
        else:
            self.backoff = min(max(self.backoff * 2, BACKOFF_MIN, at_least), BACKOFF_MAX)
        self.last_failure = now
        self.respawn_after = max(self.respawn_after, now + self.backoff)
        return self.backoff

    def current(self) -> list[WorkerRecord]:
        """The workers of the current generation that are neither stopping nor retiring:
        the ones the master counts against ``wanted``."""
        return [w for w in self.workers.values() if w.generation == self.generation
                and w.stopping_since is None and not w.retiring]

    def free_slot(self, slots: int) -> int:
        """The first heartbeat slot no worker holds."""
        used = {w.slot for w in self.workers.values()}
        for slot in range(slots):
            if slot not in used:
                return slot
        raise RuntimeError("no free worker slot")


def exit_reason(record: WorkerRecord, code: int, stopping: bool) -> str:
    """Why a worker ended, as the metrics count it."""
    if record.timed_out:
        return "timed_out"
    if record.stopping_since is not None or stopping:
        return record.retiring or "stopped"
    if not record.ready:
        return "boot_failed"
    return "recycled" if code == 0 else "crashed"


def cause(record: WorkerRecord, code: int, boot_timeout: float) -> str:
    """How a worker that never got ready died, for the log."""
    return f"worker {record.pid} {how(code)} ({'; '.join(notes(record, code, boot_timeout))})"

def notes(record: WorkerRecord, code: int, boot_timeout: float) -> list[str]:
    """What is known of a worker's end, beyond its code: for the log."""
    notes = [signal_name(-code)] if code < 0 else []
    if record.ready:
        return notes
    if record.boot_timed_out:
        notes.append(f"it did not load the app within --boot-timeout "
                     f"{boot_timeout:g}s")
    elif code == APP_LOAD_ERROR:
        notes.append("it could not load the app; its error is above")
    elif code == WORKER_BOOT_ERROR:
        notes.append("it could not start; its error is above")
    else:
        notes.append("before it was ready")
    return notes


def status_line(state: MasterState) -> str:
    """How the workers are doing, in one line (``systemctl status`` shows it)."""
    running = [w for w in state.workers.values() if w.stopping_since is None]
    ready = sum(w.ready for w in running)
    if state.stopping:
        return f"Stopping: {workers_text(len(state.workers))} finishing their requests"
    if not state.ever_ready:
        return f"Starting: {workers_text(len(running))} loading the app"
    if state.generation != state.live_generation:
        new = sum(w.ready for w in running if w.generation == state.generation)
        return (f"Reloading: {new} of {workers_text(state.wanted)} of generation "
                f"{state.generation} ready; {ready - new} old ones serving")
    booting = len(running) - ready
    return (f"Serving: {workers_text(ready)} ready" + (f", {booting} starting" if booting else "")
            + f" (generation {state.generation})")


def how(code: int) -> str:
    # "Worker N was killed by signal 9; replacing it": a line scripts may look for.
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "unnamed"


def workers_text(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def after(delay: float) -> str:
    return f" in {delay:.1f}s" if delay else ""
