"""The figures of ``--stats``: counted by the workers into shared memory, summed for the master.

How it works.  Before it forks, the master maps one anonymous shared region of
``WORDS`` 64-bit words per worker slot (as the heartbeat array, one slot per
worker).  A worker writes only its own region (``WorkerStats``): one writer, so
the hot path takes no lock, and every figure is in shared memory the moment
the request ends: a scrape never sees stale figures, and a worker killed
mid-flight loses nothing it had counted.  In the threads model several pool
threads record into the one region, so their writes go under a lock
(``LockedWorkerStats``): ``x += n`` on shared memory is a read and a write,
and two threads could lose one of two increments.

The cost per request is a few stores into the region (the status class, a
histogram bucket, the duration sum, the bytes): about one percent of a hello
request's backend CPU (``bench/stats_cost.py`` measures it on the machine at hand).
Where the front end stamped the request, its queue time (``queue_time.py``) adds
a bucket and a sum, and the stamp's parse: about half a microsecond more.  A
server without ``--stats`` pays one ``is not None`` check.  The sync model
keeps no in-flight count at all: it runs one request at a time and already
marks it in its heartbeat slot, which the master reads instead.

When a worker exits, the master folds its region into retired totals (per
worker model) and zeroes it before the slot is used again, so counters never
go back when workers are recycled, killed or replaced.  A scrape sums the
retired totals and the live regions.

The master serves the figures over HTTP (``master/stats.py``).
"""

from __future__ import annotations

import bisect
import mmap
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..queue_time import queue_seconds

__all__ = ["BOUNDS", "LockedWorkerStats", "StatsTable", "WorkerStats"]

#: Upper bounds (seconds) of the request duration and queue time histograms' buckets
#: (+Inf follows).
BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
          10.0, 30.0)
MODELS = ("sync", "threads", "asyncio")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other", "none")
EXIT_REASONS = ("recycled", "max_memory", "max_lifetime", "timed_out", "crashed", "stopped",
                "boot_failed")

# One worker's region: word offsets.
MODEL = 0  # 1 + index in MODELS; 0 until the worker has said
IN_FLIGHT = 1  # written by the threads and asyncio models (sync: its heartbeat)
STATUS = 2  # len(STATUS_CLASSES) counters
BYTES_IN = STATUS + len(STATUS_CLASSES)
BYTES_OUT = BYTES_IN + 1
DURATION_SUM = BYTES_OUT + 1  # a float (the region's 'd' view)
BUCKETS = DURATION_SUM + 1  # len(BOUNDS) + 1 counters, the last for +Inf
QUEUE_SUM = BUCKETS + len(BOUNDS) + 1  # a float: the queue times' sum
QUEUE_BUCKETS = QUEUE_SUM + 1  # len(BOUNDS) + 1 counters, as BUCKETS
WORDS = 48
assert QUEUE_BUCKETS + len(BOUNDS) + 1 <= WORDS
_SUMS = (DURATION_SUM, QUEUE_SUM)

_OTHER = STATUS + STATUS_CLASSES.index("other")
_NONE = STATUS + STATUS_CLASSES.index("none")
# The status line's first character -> its counter.
_CLASS = {str(n): STATUS + n - 1 for n in range(1, 6)}
# Counters folded into the retired totals (all but MODEL and IN_FLIGHT; the sums apart).
_COUNTERS = [i for i in range(STATUS, WORDS) if i not in _SUMS]



class WorkerStats:
    """One worker's region of the shared table; only that worker writes it."""

    __slots__ = ("counts", "floats")

    def __init__(self, counts: memoryview[int], floats: memoryview[float]) -> None:
        self.counts = counts
        self.floats = floats

    def locked(self) -> LockedWorkerStats:
        """The same region, for a worker whose threads record into it at once."""
        return LockedWorkerStats(self.counts, self.floats)

    def set_model(self, model: str) -> None:
        self.counts[MODEL] = MODELS.index(model) + 1

    def set_in_flight(self, count: int) -> None:
        self.counts[IN_FLIGHT] = count

    def record(self, status: str, sent: int, received: int, accepted: float,
               variables: dict[str, str]) -> None:
        """A request answered: ``sent`` bytes out (0: none), ``received`` body bytes in;
        ``variables``, its SCGI variables, may hold the front end's stamp."""
        elapsed = time.monotonic() - accepted
        counts = self.counts
        counts[_CLASS.get(status[:1], _OTHER) if sent else _NONE] += 1
        counts[BUCKETS + bisect.bisect_left(BOUNDS, elapsed)] += 1
        self.floats[DURATION_SUM] += elapsed
        if received:
            counts[BYTES_IN] += received
        counts[BYTES_OUT] += sent
        queued = queue_seconds(variables, accepted)
        if queued is not None:
            counts[QUEUE_BUCKETS + bisect.bisect_left(BOUNDS, queued)] += 1
            self.floats[QUEUE_SUM] += queued

    def refused(self, status: int) -> None:
        """A request the server answered itself (400, 408, 413, 431); 0: closed unanswered."""
        self.counts[_CLASS.get(str(status)[:1], _OTHER) if status else _NONE] += 1


class LockedWorkerStats(WorkerStats):
    """A region several threads of one worker record into (the threads model)."""

    __slots__ = ("lock",)

    def __init__(self, counts: memoryview[int], floats: memoryview[float]) -> None:
        super().__init__(counts, floats)
        self.lock = threading.Lock()

    def set_in_flight(self, count: int) -> None:
        with self.lock:
            self.counts[IN_FLIGHT] = count

    def record(self, status: str, sent: int, received: int, accepted: float,
               variables: dict[str, str]) -> None:
        with self.lock:
            super().record(status, sent, received, accepted, variables)

    def refused(self, status: int) -> None:
        with self.lock:
            super().refused(status)


@dataclass
class _Figures:
    """One worker model's request figures, summed over workers."""

    counters: list[int] = field(default_factory=lambda: [0] * WORDS)
    duration: float = 0.0
    queued: float = 0.0
    in_flight: int = 0

    def add(self, counts: memoryview[int] | list[int], floats: memoryview[float]) -> None:
        """Add one region's counters and sums (``floats``: that region's float view)."""
        for index in _COUNTERS:
            self.counters[index] += counts[index]
        self.duration += floats[DURATION_SUM]
        self.queued += floats[QUEUE_SUM]


class StatsTable:
    """The master's side: the shared regions, the retired totals, the worker events."""

    def __init__(self, slots: int) -> None:
        self.map = mmap.mmap(-1, 8 * WORDS * slots)
        self.counts: memoryview[int] = memoryview(self.map).cast("Q")
        self.floats: memoryview[float] = memoryview(self.map).cast("d")
        self.retired: dict[str, _Figures] = {}
        self.starts = 0
        self.exits = dict.fromkeys(EXIT_REASONS, 0)

    def worker(self, slot: int) -> WorkerStats:
        """The region of ``slot``, for the worker that runs in it."""
        start = slot * WORDS
        return WorkerStats(self.counts[start:start + WORDS], self.floats[start:start + WORDS])

    def retire(self, slot: int, reason: str) -> None:
        """A worker has exited: keep its figures in the totals, free its region."""
        self.exits[reason] += 1
        start = slot * WORDS
        region = self.counts[start:start + WORDS]
        if region[MODEL]:
            model = MODELS[region[MODEL] - 1]
            figures = self.retired.setdefault(model, _Figures())
            figures.add(region, self.floats[start:start + WORDS])
        self.map[8 * start:8 * (start + WORDS)] = bytes(8 * WORDS)

    def figures(self, live: Mapping[int, float]) -> dict[str, _Figures]:
        """Each model's totals: retired plus the live slots (slot -> heartbeat)."""
        totals = {model: _Figures(list(f.counters), f.duration, f.queued)
                  for model, f in self.retired.items()}
        for slot, heartbeat in live.items():
            start = slot * WORDS
            region = self.counts[start:start + WORDS].tolist()
            if not region[MODEL]:
                continue
            model = MODELS[region[MODEL] - 1]
            figures = totals.setdefault(model, _Figures())
            figures.add(region, self.floats[start:start + WORDS])
            figures.in_flight += region[IN_FLIGHT] if model != "sync" else int(heartbeat != 0.0)
        return totals

    def render(self, live: Mapping[int, float], workers: int) -> str:
        """The exposition text (format 0.0.4) of every figure."""
        out: list[str] = []
        models = sorted(self.figures(live).items())
        _family(out, "requests", "counter", "Requests answered, by status class (none: the "
                "connection ended before any byte of an answer) and worker model.",
                [(f'{{model="{m}",status="{c}"}}', f.counters[STATUS + i])
                 for m, f in models for i, c in enumerate(STATUS_CLASSES)], "_total")
        _family(out, "requests_in_flight", "gauge", "Requests the app is running now.",
                [(f'{{model="{m}"}}', f.in_flight) for m, f in models])
        _histogram(out, "request_duration_seconds", "Time from a connection's accept to the "
                   "end of its answer.", [(m, f.counters[BUCKETS:], f.duration)
                                          for m, f in models])
        _histogram(out, "request_queue_seconds", "Time from the front end's stamp "
                   "(REQUEST_START or X-Request-Start) to the connection's accept, for the "
                   "requests that had one.", [(m, f.counters[QUEUE_BUCKETS:], f.queued)
                                              for m, f in models])
        _family(out, "request_body_bytes", "counter", "Request body bytes received "
                "(CONTENT_LENGTH of the requests given to the app).",
                [(f'{{model="{m}"}}', f.counters[BYTES_IN]) for m, f in models], "_total")
        _family(out, "response_bytes", "counter", "Response bytes sent (SCGI head and body).",
                [(f'{{model="{m}"}}', f.counters[BYTES_OUT]) for m, f in models], "_total")
        _family(out, "worker_starts", "counter", "Worker processes started.",
                [("", self.starts)], "_total")
        _family(out, "worker_exits", "counter", "Worker processes ended, by reason.",
                [(f'{{reason="{r}"}}', n) for r, n in self.exits.items()], "_total")
        _family(out, "workers", "gauge", "Worker processes alive now.", [("", workers)])
        return "".join(out)


def _family(out: list[str], name: str, kind: str, help: str,
            samples: Iterable[tuple[str, int | float]], suffix: str = "") -> None:
    out.append(f"# HELP scgikit_{name}{suffix} {help}\n# TYPE scgikit_{name}{suffix} {kind}\n")
    out.extend(f"scgikit_{name}{suffix}{labels} {value}\n" for labels, value in samples)


def _histogram(out: list[str], name: str, help: str,
               models: list[tuple[str, list[int], float]]) -> None:
    """One histogram per model: (model, its bucket counters from the first on, its sum)."""
    name = f"scgikit_{name}"
    out.append(f"# HELP {name} {help}\n# TYPE {name} histogram\n")
    for model, buckets, total_time in models:
        total = 0
        for index, bound in enumerate((*BOUNDS, float("inf"))):
            total += buckets[index]
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{model="{model}",le="{le}"}} {total}\n')
        out.append(f'{name}_sum{{model="{model}"}} {total_time!r}\n'
                   f'{name}_count{{model="{model}"}} {total}\n')
