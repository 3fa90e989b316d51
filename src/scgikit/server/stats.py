"""Prometheus metrics (``--stats ADDRESS``): counted by the workers, served by the master.

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
histogram bucket, the duration sum, the bytes): about 0.35 µs on a 2-core EPYC
(``bench/stats_cost.py``), next to ~27 µs of backend CPU for a hello request.  A
server without ``--stats`` pays one ``is not None`` check.  The sync model
keeps no in-flight count at all: it runs one request at a time and already
marks it in its heartbeat slot, which the master reads instead.

When a worker exits, the master folds its region into retired totals (per
worker model) and zeroes it before the slot is used again, so counters never
go back when workers are recycled, killed or replaced.  A scrape sums the
retired totals and the live regions.

The HTTP side (``StatsServer``) runs in the master's own loop, not in a thread:
the master forks, and a thread holding a lock (the logging module's, say) at
the moment of a fork leaves that lock held forever in the child.  Its sockets
are non-blocking, a request is at most ``MAX_REQUEST`` bytes, and a client
gets ``CLIENT_DEADLINE`` seconds for the whole exchange, so a silent or slow
scraper costs a descriptor, never the master's time.
"""

from __future__ import annotations

import bisect
import mmap
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..addresses import parse_address
from ..config import Config, ConfigError
from .sockets import Listener, _open, socket_owner

__all__ = ["BOUNDS", "LockedWorkerStats", "StatsServer", "StatsTable", "WorkerStats",
           "open_stats_listener"]

#: Upper bounds (seconds) of the request duration histogram's buckets (+Inf follows).
BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
          10.0, 30.0)
MODELS = ("sync", "threads", "asyncio")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other", "none")
EXIT_REASONS = ("recycled", "timed_out", "crashed", "stopped", "boot_failed")

# One worker's region: word offsets.
MODEL = 0  # 1 + index in MODELS; 0 until the worker has said
IN_FLIGHT = 1  # written by the threads and asyncio models (sync: its heartbeat)
STATUS = 2  # len(STATUS_CLASSES) counters
BYTES_IN = STATUS + len(STATUS_CLASSES)
BYTES_OUT = BYTES_IN + 1
DURATION_SUM = BYTES_OUT + 1  # a float (the region's 'd' view)
BUCKETS = DURATION_SUM + 1  # len(BOUNDS) + 1 counters, the last for +Inf
WORDS = 32
assert BUCKETS + len(BOUNDS) + 1 <= WORDS

_OTHER = STATUS + STATUS_CLASSES.index("other")
_NONE = STATUS + STATUS_CLASSES.index("none")
# The status line's first character -> its counter.
_CLASS = {str(n): STATUS + n - 1 for n in range(1, 6)}
# Counters folded into the retired totals (all but MODEL and IN_FLIGHT; the sum apart).
_COUNTERS = [i for i in range(STATUS, WORDS) if i != DURATION_SUM]

#: A stats client that has not sent its request and read the answer by then is dropped.
CLIENT_DEADLINE = 5.0
#: The longest request head a stats client may send.
MAX_REQUEST = 8192
#: Stats clients served at once; more are closed at once.
MAX_CLIENTS = 32
#: After a failed accept, the stats listener rests this long.
ACCEPT_PAUSE = 0.5
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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

    def record(self, status: str, sent: int, received: int, accepted: float) -> None:
        """A request answered: ``sent`` bytes out (0: none), ``received`` body bytes in."""
        elapsed = time.monotonic() - accepted
        counts = self.counts
        counts[_CLASS.get(status[:1], _OTHER) if sent else _NONE] += 1
        counts[BUCKETS + bisect.bisect_left(BOUNDS, elapsed)] += 1
        self.floats[DURATION_SUM] += elapsed
        if received:
            counts[BYTES_IN] += received
        counts[BYTES_OUT] += sent

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

    def record(self, status: str, sent: int, received: int, accepted: float) -> None:
        with self.lock:
            super().record(status, sent, received, accepted)

    def refused(self, status: int) -> None:
        with self.lock:
            super().refused(status)


@dataclass
class _Figures:
    """One worker model's request figures, summed over workers."""

    counters: list[int] = field(default_factory=lambda: [0] * WORDS)
    duration: float = 0.0
    in_flight: int = 0

    def add(self, counts: memoryview[int] | list[int], duration: float) -> None:
        for index in _COUNTERS:
            self.counters[index] += counts[index]
        self.duration += duration


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
            figures.add(region, self.floats[start + DURATION_SUM])
        self.map[8 * start:8 * (start + WORDS)] = bytes(8 * WORDS)

    def figures(self, live: Mapping[int, float]) -> dict[str, _Figures]:
        """Each model's totals: retired plus the live slots (slot -> heartbeat)."""
        totals = {model: _Figures(list(f.counters), f.duration)
                  for model, f in self.retired.items()}
        for slot, heartbeat in live.items():
            start = slot * WORDS
            region = self.counts[start:start + WORDS].tolist()
            if not region[MODEL]:
                continue
            model = MODELS[region[MODEL] - 1]
            figures = totals.setdefault(model, _Figures())
            figures.add(region, self.floats[start + DURATION_SUM])
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
        _histogram(out, models)
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


def _histogram(out: list[str], models: list[tuple[str, _Figures]]) -> None:
    name = "scgikit_request_duration_seconds"
    out.append(f"# HELP {name} Time from a connection's accept to the end of its answer.\n"
               f"# TYPE {name} histogram\n")
    for model, figures in models:
        total = 0
        for index, bound in enumerate((*BOUNDS, float("inf"))):
            total += figures.counters[BUCKETS + index]
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{model="{model}",le="{le}"}} {total}\n')
        out.append(f'{name}_sum{{model="{model}"}} {figures.duration!r}\n'
                   f'{name}_count{{model="{model}"}} {total}\n')


# --- the HTTP side -------------------------------------------------------------------------


def open_stats_listener(config: Config) -> Listener:
    """Bind ``--stats`` as ``--bind`` binds its addresses (same forms, same unix file rules)."""
    assert config.stats is not None
    try:
        listener = _open(parse_address(config.stats), config, socket_owner(config))
    except ConfigError as exc:
        # The binding is --bind's own; its messages name the option they came from.
        raise ConfigError(f"--stats: {str(exc).removeprefix('--bind: ')}") from None
    sock = listener.sock
    if sock.family != socket.AF_UNIX and hasattr(socket, "TCP_DEFER_ACCEPT"):
        # --bind's listeners leave a silent client to the kernel; here it is accepted
        # and dropped at CLIENT_DEADLINE, as a unix one is.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 0)
    sock.setblocking(False)
    return listener


class _Client:
    __slots__ = ("sock", "deadline", "data", "answer")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.data = b""
        self.answer: memoryview | None = None  # what is left to send, once the request is in


class StatsServer:
    """Plain HTTP/1.0 GET /metrics, answered from the master's loop without ever blocking it."""

    def __init__(self, listener: Listener, render: Callable[[], str]) -> None:
        self.listener = listener
        self.render = render
        self.clients: dict[int, _Client] = {}
        self.accept_paused_until = 0.0  # after a failed accept (out of descriptors)

    @property
    def name(self) -> str:
        return self.listener.address

    def readers(self) -> list[int]:
        """Descriptors the loop waits on to read: the listener, clients still sending."""
        listening = [] if time.monotonic() < self.accept_paused_until else [
            self.listener.sock.fileno()]
        return listening + [fd for fd, client in self.clients.items() if client.answer is None]

    def writers(self) -> list[int]:
        return [fd for fd, client in self.clients.items() if client.answer is not None]

    def handle(self, readable: Iterable[int], writable: Iterable[int]) -> None:
        """Serve what the loop found ready, then drop clients past their deadline."""
        listening = self.listener.sock.fileno()
        for fd in readable:
            if fd == listening:
                self._accept()
            elif fd in self.clients:
                self._receive(self.clients[fd])
        for fd in writable:
            client = self.clients.get(fd)  # (gone, or a new client on a reused descriptor)
            if client is not None and client.answer is not None:
                self._send(client)
        now = time.monotonic()
        for client in [c for c in self.clients.values() if c.deadline < now]:
            self._close(client)

    def _accept(self) -> None:
        for _ in range(MAX_CLIENTS):
            try:
                sock, _peer = self.listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Out of descriptors, say: a listener left in the wait would wake the
                # loop at once, again and again.  The scraper will retry.
                self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                return
            if len(self.clients) >= MAX_CLIENTS:
                sock.close()
                continue
            sock.setblocking(False)
            self.clients[sock.fileno()] = _Client(sock, time.monotonic() + CLIENT_DEADLINE)

    def _receive(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(MAX_REQUEST)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(client)
            return
        client.data += chunk
        end = client.data.find(b"\r\n\r\n")
        if end < 0:
            end = client.data.find(b"\n\n")
        if end >= 0:
            self._answer(client, *self._respond(client.data[:end]))
        elif len(client.data) > MAX_REQUEST:
            self._answer(client, "431 Request Header Fields Too Large", "request too large\n")

    def _respond(self, head: bytes) -> tuple[str, str, bool]:
        """The status and body for a request head; whether to send the body (not for HEAD)."""
        parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return "400 Bad Request", "expected GET /metrics HTTP/1.x\n", True
        method, target = parts[0], parts[1]
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", "only GET and HEAD\n", True
        if target.split(b"?", 1)[0] != b"/metrics":
            return "404 Not Found", "the metrics are at /metrics\n", method == b"GET"
        return "200 OK", self.render(), method == b"GET"

    def _answer(self, client: _Client, status: str, body: str, with_body: bool = True) -> None:
        payload = body.encode()
        kind = CONTENT_TYPE if status.startswith("200") else "text/plain; charset=utf-8"
        head = (f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
        client.answer = memoryview(head + payload if with_body else head)
        self._send(client)

    def _send(self, client: _Client) -> None:
        assert client.answer is not None
        try:
            sent = client.sock.send(client.answer)
        except BlockingIOError:
            return
        except OSError:
            self._close(client)
            return
        client.answer = client.answer[sent:]
        if not client.answer:
            self._close(client)

    def _close(self, client: _Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        client.sock.close()

    def close(self) -> None:
        """Stop serving (the master at exit; a child right after the fork)."""
        for client in list(self.clients.values()):
            self._close(client)
        self.listener.close(unlink=True)

    def forget(self) -> None:
        """In a child after the fork: close our copies, leave the socket file to the master."""
        for client in self.clients.values():
            client.sock.close()
        self.clients.clear()
        self.listener.sock.close()
