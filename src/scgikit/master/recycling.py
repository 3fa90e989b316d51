"""``--max-memory`` and ``--max-lifetime``: the master replaces a worker grown too large or
too old, one at a time, the new worker first.

How it works.  A worker's lifetime is fixed when it is forked (``Recycler.lifetime``):
``--max-lifetime`` plus 0..``--max-lifetime-jitter`` at random, so that workers started
together do not all go together.  Its resident set size is read by the master from
``/proc/PID/statm`` at most once a second (``MEMORY_PERIOD``): one small read per worker,
never a system call per request, and nothing in the workers.

Each pass of the master's loop (``Recycler.check``, before the master starts the workers
it lacks) does one of two things, and only while the serving generation is whole (no
reload under way, every worker ready):

- If no worker is being replaced, it picks one: the largest over ``--max-memory``, else
  the one longest past its lifetime.  It logs why, and marks the worker ``retiring``: the
  worker goes on serving, but the master no longer counts it among the workers it wants,
  so a replacement is forked in the same pass.
- Once the replacement has said "ready", the retiring worker gets SIGTERM, the graceful
  path of a reload: it stops accepting, serves what it holds, and exits; the metrics count
  its exit under its reason (``max_memory``, ``max_lifetime``).

So capacity never drops: there are ``--workers`` ready workers throughout, one more while
a replacement loads.  One at a time, because every worker may cross the line at once
(they grow alike, and start alike); the next one is picked once the last replacement is
ready, which paces a whole fleet by its boot time.  A replacement that fails to load is
retried with the master's usual backoff, and the old worker serves meanwhile.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections.abc import Callable, Iterable

from ..config import Config
from .roster import MasterState, WorkerRecord

__all__ = ["MEMORY_PERIOD", "Recycler", "resident_size"]

log = logging.getLogger("scgikit")

#: The master reads its workers' resident sizes at most this often (seconds).
MEMORY_PERIOD = 1.0
_PAGE = os.sysconf("SC_PAGE_SIZE")

Stop = Callable[[Iterable[WorkerRecord], int], None]


def resident_size(pid: int) -> int | None:
    """The resident set size of process ``pid`` in bytes; None once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def mebibytes(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


class Recycler:
    """The master's side of ``--max-memory`` and ``--max-lifetime`` (see above)."""

    def __init__(self, config: Config) -> None:
        self.max_memory = config.max_memory
        self.max_lifetime = config.max_lifetime
        self.jitter = config.max_lifetime_jitter
        self.next_reading = 0.0  # time.monotonic() of the next look at the workers' sizes

    def lifetime(self, started: float) -> float:
        """When a worker forked at ``started`` is due for replacement (0.0: never)."""
        if not self.max_lifetime:
            return 0.0
        return started + self.max_lifetime + random.uniform(0.0, self.jitter)

    def check(self, state: MasterState, stop: Stop) -> None:
        """Stop a retiring worker whose replacement is ready, or pick the next to retire."""
        if not (self.max_memory or self.max_lifetime):
            return
        if state.generation != state.live_generation or state.waiting_for_change:
            return  # a reload replaces them all anyway
        current = state.current()
        ready = sum(w.ready for w in current)
        retiring = [w for w in state.workers.values() if w.retiring and w.stopping_since is None]
        if retiring:
            if ready >= state.wanted:
                for record in retiring:
                    log.debug("Worker %d: its replacement is ready; stopping it", record.pid)
                stop(retiring, signal.SIGTERM)
            return
        if ready < state.wanted or ready < len(current):
            return  # one is loading: the generation is not whole
        now = time.monotonic()
        chosen = self._largest_over(current, now) or self._oldest_past(current, now)
        if chosen is not None:
            chosen[0].retiring = chosen[1]

    def _largest_over(self, current: list[WorkerRecord], now: float,
                      ) -> tuple[WorkerRecord, str] | None:
        if not self.max_memory or now < self.next_reading:
            return None
        self.next_reading = now + MEMORY_PERIOD
        sizes = [(size, w) for w in current if (size := resident_size(w.pid)) is not None]
        over = [(size, w) for size, w in sizes if size > self.max_memory]
        if not over:
            return None
        size, record = max(over, key=lambda pair: pair[0])
        log.info("Worker %d is over --max-memory (RSS %s, limit %s); replacing it",
                 record.pid, mebibytes(size), mebibytes(self.max_memory))
        return record, "max_memory"

    def _oldest_past(self, current: list[WorkerRecord], now: float,
                     ) -> tuple[WorkerRecord, str] | None:
        due = [w for w in current if w.retire_at and now >= w.retire_at]
        if not due:
            return None
        record = min(due, key=lambda w: w.retire_at)
        log.info("Worker %d reached --max-lifetime (ran %.1fs, its limit %.1fs); replacing it",
                 record.pid, now - record.started, record.retire_at - record.started)
        return record, "max_lifetime"
