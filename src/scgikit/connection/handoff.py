"""Connections handed from the master to one worker, for ``--session-affinity``.

With session affinity the master accepts every connection, looks at its request
(without taking a byte) to find the session, and hands the connection to the
worker that serves that session, over a socket pair of that worker's own
(``channel_pair``: SOCK_SEQPACKET, one message per connection, the descriptor
attached with SCM_RIGHTS).  The worker's end stands in for the listeners: its
poller watches it, and ``HandOff.accept`` takes one connection from it as an
accept would from a listen queue.  When a handed request is over, the worker
sends its token back (``HandOff.finished``), and the master sends that session's
next request.

The messages.  Master to worker: a token and the connection's address family,
with its descriptor.  Worker to master: ``(DONE, token)`` when a request is over;
``(CAPACITY, n)`` once, the requests the worker runs at once; ``(RETIRING, 0)``
when it stops taking requests (a stop, a reload, a recycle).  The master then
sends no more and shuts its side of the channel; the worker takes what had been
sent until it reads that end (``HandOff.retire``), so no connection is left in the
channel when the worker exits.
"""

from __future__ import annotations

import array
import os
import select
import socket
import struct
import time

from .sockets import DONTWAIT, Connection

__all__ = ["CAPACITY", "DONE", "HANDED", "RETIRING", "REPORT", "HandOff", "channel_pair",
           "is_channel"]

#: What the master sends with each descriptor: the request's token, the socket's family.
HANDED = struct.Struct("=QB")
#: What a worker sends: a kind (below) and a value.
REPORT = struct.Struct("=BQ")
DONE, CAPACITY, RETIRING = 0, 1, 2
_FD_SPACE = socket.CMSG_SPACE(array.array("i").itemsize)
# How long a retiring worker waits for the master to close its side.
_RETIRE_WAIT = 10.0


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """A new worker's channel: (the master's end, the worker's end)."""
    master, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    master.setblocking(False)
    return master, worker


def is_channel(sock: socket.socket) -> bool:
    """Whether a worker's "listener" is a channel from the master, not a listen queue."""
    return sock.family == socket.AF_UNIX and sock.type == socket.SOCK_SEQPACKET


class HandOff:
    """The worker's end of its channel: connections in, tokens of finished requests out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tokens: dict[Connection, int] = {}
        self.ended = False  # the master closed its side (or is gone)
        self.offered = False

    def accept(self) -> Connection | None:
        """The next connection handed over, or None if none waits (or the channel ended)."""
        if self.ended:
            return None
        try:
            # (socket.recv_fds would drop the flags before Python 3.13: it would wait.)
            data, ancillary, _, _ = self.sock.recvmsg(HANDED.size, _FD_SPACE, DONTWAIT)
        except BlockingIOError:
            return None
        fds = [fd for level, kind, item in ancillary
               if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
               for fd in array.array("i", item[: len(item) - len(item) % 4])]
        if len(data) != HANDED.size or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self.ended = True  # b"": the master's side is shut, or the master is gone
            return None
        token, family = HANDED.unpack(data)
        conn = Connection(family, socket.SOCK_STREAM, 0, fds[0])
        self.tokens[conn] = token
        return conn

    def offer(self, capacity: int) -> None:
        """Tell the master how many requests this worker runs at once (once)."""
        if not self.offered:
            self.offered = True
            self._report(CAPACITY, capacity)

    def finished(self, conn: Connection) -> None:
        """The request on ``conn`` is over (answered, refused, or gone): the master may send
        its session's next."""
        token = self.tokens.pop(conn, 0)
        if token:
            self._report(DONE, token)

    def retire(self) -> list[Connection]:
        """Stop taking requests: tell the master, then take what it had sent until it shuts
        its side (at most ``_RETIRE_WAIT`` seconds).  Returns those connections."""
        taken: list[Connection] = []
        if self.sock.fileno() < 0:
            return taken
        self._report(RETIRING, 0)
        end = time.monotonic() + _RETIRE_WAIT
        arrivals = select.poll()
        arrivals.register(self.sock, select.POLLIN)
        while not self.ended and (left := end - time.monotonic()) > 0:
            if not arrivals.poll(left * 1000):
                break
            while (conn := self.accept()) is not None:
                taken.append(conn)
        return taken

    def _report(self, kind: int, value: int) -> None:
        try:
            self.sock.send(REPORT.pack(kind, value))
        except OSError:
            self.ended = True  # the master is gone: nothing more will come
