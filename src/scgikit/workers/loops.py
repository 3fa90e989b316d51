"""The accept loop's common case, and the worker state it shares: in C, or their Python twins.

A worker's listen queue is served by a ``QueueLoop``: accept, the first receive,
the head's parse, the readiness rule (``connection.intake.readiness``), and then

- ``serve()`` (the sync model): a request whose body came whole is answered at
  once (the adapter's ``answer_whole``), counted, timed in the heartbeat slot,
  recorded, logged and closed;
- ``take()`` (the asyncio model): a request that is ready goes to ``start``;

request after request until the queue is empty; or

- ``take_one()`` (the threads model's pool threads): one connection, returned as
  ``(conn, data, parsed, accepted)`` where its request is ready.

Anything else (a partial, malformed or too large request, a failed receive) is
handed back to the model's Python code with what came, the connection still open,
and the loop ends:

    None                      the queue is empty, or the worker stops taking
    OSError                   the accept failed
    (conn, data, accepted)    a request the loop does not handle
    (conn, OSError, accepted) the first receive failed (BlockingIOError: nothing yet)

``WorkerState`` is what the loop shares with the worker: whether it stops
taking (``stopping``, ``drain_queue``), its counts (``started``, ``handled``,
``max_requests``) and since when accepts fail.  ``count_start`` is the one rule
for ``--max-requests``: the request that reaches it is the last one taken.

The C accelerator has both (``_speedups.QueueLoop``, ``_speedups.WorkerState``),
which do exactly this; ``QueueLoop``/``WorkerState`` here are whichever runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeAlias

from ..accelerator import socket_speedups
from ..connection.intake import RECV_SIZE, STREAM, WHOLE, ParsedHead, readiness
from ..connection.sockets import DONTWAIT, Connection, acceptor, close_now, recv_now
from ..protocol import ProtocolError, parse_head

__all__ = ["Left", "PureQueueLoop", "PureWorkerState", "QueueLoop", "WorkerState"]

#: What a loop hands back (see above).
Left: TypeAlias = "None | OSError | tuple[Connection, bytes | OSError, float]"
# A connection taken from the queue: its first receive's data and parsed head.
Taken = tuple[Connection, bytes, ParsedHead, float]

Answer = Callable[[Connection, "bytes | bytearray", dict[str, str], int, int], tuple[str, int]]
Record = Callable[[str, int, int, float, dict[str, str]], None]
LogAccess = Callable[[dict[str, str], str, int, float, str], None]
Start = Callable[[Connection, "bytes | bytearray", ParsedHead, float, float], None]


class PureWorkerState:
    """What a worker shares with its accept loop (``_speedups.WorkerState``'s twin)."""

    __slots__ = ("stopping", "drain_queue", "full", "started", "handled", "max_requests",
                 "accept_failing_since")

    def __init__(self, max_requests: int = 0) -> None:
        self.stopping = False  # no more accepts (but see drain_queue); end what we hold
        self.drain_queue = False  # a full stop: serve what is in the listen queue first
        self.full = False  # at --max-concurrency: no accepts until a request ends
        self.started = 0  # requests given to the app: --max-requests counts these
        self.handled = 0  # requests whose app has returned
        self.max_requests = max_requests  # 0: no limit
        self.accept_failing_since: float | None = None  # the first of failing accepts

    def count_start(self) -> bool:
        """A request goes to the app; True if it is the one that reaches --max-requests,
        which then stops the accepts (not the queue's drain: the worker retires).

        Counted as they start, not as they end: a model that runs several at once
        would take more while its last ones run.
        """
        self.started += 1
        if self.started == self.max_requests and not self.stopping:
            self.stopping = True
            self.drain_queue = False
            return True
        return False


class PureQueueLoop:
    """A listen queue's accept loop in Python (``_speedups.QueueLoop``'s twin)."""

    def __init__(self, *, state: PureWorkerState, listener: Any, recv_size: int = RECV_SIZE,
                 max_header_size: int, body_limit: int, buffer_size: int = 0,
                 slots: Any = None, slot: int = 0, answer: Answer | None = None,
                 record: Record | None = None, log_access: LogAccess | None = None,
                 model: str = "", start: Start | None = None) -> None:
        self.state = state
        self.accept = acceptor(listener)
        self.recv_size = recv_size
        self.max_header_size = max_header_size
        self.body_limit = body_limit
        self.buffer_size = buffer_size
        self.slots = slots
        self.slot = slot
        self.answer = answer
        self.record = record
        self.log_access = log_access
        self.model = model
        self.start = start

    def _next(self, buffer_size: int, takes: tuple[int, ...]) -> Taken | None:
        """The next connection, received and parsed, if ``readiness`` (with
        ``buffer_size``) says one of ``takes`` of its request; else None, the loop ends,
        and what it hands back is in ``left``."""
        state = self.state
        self.left: Left = None
        if (state.stopping and not state.drain_queue) or state.full:
            return None
        try:
            conn = self.accept()
        except BlockingIOError:
            return None
        except OSError as exc:
            self.left = exc
            return None
        if conn is None:
            return None  # none waiting
        state.accept_failing_since = None
        accepted = time.monotonic()
        try:
            data = recv_now(conn, self.recv_size, DONTWAIT)
            parsed = parse_head(data, self.max_header_size)
        except OSError as exc:
            self.left = conn, exc, accepted
            return None
        except ProtocolError:
            parsed = None  # the Python loop meets it again, and answers it
        if parsed is None or readiness(parsed[1], len(data) - parsed[2], buffer_size,
                                       self.body_limit) not in takes:
            self.left = conn, data, accepted
            return None
        return conn, data, parsed, accepted

    def serve(self) -> Left:
        """Answer each request that came whole; hand back anything else."""
        answer, record, log_access, model = self.answer, self.record, self.log_access, self.model
        assert answer is not None and self.slots is not None
        slots, slot, state, next_one = self.slots, self.slot, self.state, self._next
        while (taken := next_one(0, _SERVED)) is not None:
            conn, data, (variables, length, start), accepted = taken
            slots[slot] = accepted
            state.count_start()
            try:
                status, sent = answer(conn, data, variables, length, start)
            finally:
                slots[slot] = 0.0
                state.handled += 1
            if record is not None:
                record(status, sent, length, accepted, variables)
            if log_access is not None:
                log_access(variables, status, sent, accepted, model)
            close_now(conn)
        return self.left

    def take(self) -> Left:
        """Start each request that is ready; hand back anything else."""
        start, buffer_size, next_one = self.start, self.buffer_size, self._next
        assert start is not None
        while (taken := next_one(buffer_size, _TAKEN)) is not None:
            conn, data, parsed, accepted = taken
            start(conn, data, parsed, accepted, accepted)
        return self.left

    def take_one(self) -> Taken | Left:
        """The next connection: ``(conn, data, parsed, accepted)`` where its request is
        ready, else what the loop hands back."""
        taken = self._next(self.buffer_size, _TAKEN)
        return self.left if taken is None else taken


# What each loop takes itself: serve() a body that came whole, take() a ready request.
_SERVED = (WHOLE,)
_TAKEN = (WHOLE, STREAM)


def _choose() -> tuple[type[Any], type[Any]]:
    """The C types where the accelerator handles sockets (it makes and closes them),
    else the Python ones; the C loop reads the C state's fields, so the two go together."""
    c = socket_speedups()
    if c is not None:
        return c.QueueLoop, c.WorkerState
    return PureQueueLoop, PureWorkerState


QueueLoop, WorkerState = _choose()
