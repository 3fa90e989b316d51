"""What a worker waits on: the shared listeners, the connections that wait, its wake-up pipes.

One epoll per worker process (poll where there is none):

- the listeners, shared by every worker, with EPOLLEXCLUSIVE: the kernel wakes one
  idle worker per new connection, not all of them;
- each connection in the waiting room, armed for one readiness at a time
  (EPOLLONESHOT): the room arms it again only while it still waits, so a
  connection that goes to the app or is closed needs no call to leave the set
  (closing a descriptor removes it from every epoll);
- the worker's wake-up pipes (signals, the threads model's pool), level-triggered.

The sync and threads models wait on it themselves; the asyncio model's event loop
watches its descriptor as one reader, which costs one ``epoll_ctl`` a wait where
the loop's own readers cost several system calls (uvloop) or selector bookkeeping.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Sequence
from typing import Any

__all__ = ["Poller", "drain"]


class Poller:
    """An epoll (or poll) set of listeners, waiting connections and wake-up pipes."""

    def __init__(self) -> None:
        self._epoll: Any = select.epoll() if hasattr(select, "epoll") else None
        self._poll: Any = None if self._epoll is not None else select.poll()
        self._exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
        self._once: set[int] = set()  # poll's armed connections, unregistered once ready

    def fileno(self) -> int:
        """The epoll's descriptor, for an event loop to watch (epoll only)."""
        return int(self._epoll.fileno())

    def add_listeners(self, listeners: Sequence[socket.socket]) -> None:
        flags = select.POLLIN | (self._exclusive if self._epoll is not None else 0)
        for sock in listeners:
            try:
                self._register(sock.fileno(), flags)
            except FileExistsError:
                pass  # watched already (two reasons to watch them again met)

    def watch(self, fd: int) -> None:
        """A wake-up pipe: watched until removed, readable or not."""
        self._register(fd, select.POLLIN)

    def arm(self, fd: int, again: bool = False) -> None:
        """Report the waiting connection ``fd`` once it is readable, then not until armed
        again.  ``again``: it has been armed before and is still registered."""
        if self._epoll is None:
            self._poll.register(fd, select.POLLIN)  # (poll's register also modifies)
            self._once.add(fd)
            return
        once = select.EPOLLIN | select.EPOLLONESHOT
        if again:
            self._epoll.modify(fd, once)
            return
        try:
            self._epoll.register(fd, once)
        except FileExistsError:  # armed before (for its request), disarmed since
            self._epoll.modify(fd, once)

    def remove(self, fd: int) -> None:
        try:
            (self._epoll or self._poll).unregister(fd)
        except (KeyError, OSError):
            pass  # not registered (a listener already removed, a closed descriptor)
        self._once.discard(fd)

    def wait(self, seconds: float) -> list[int]:
        """The descriptors that are ready (an empty list after ``seconds``, or a signal)."""
        try:
            if self._epoll is not None:
                return [fd for fd, _ in self._epoll.poll(seconds)]
            ready = [fd for fd, _ in self._poll.poll(seconds * 1000)]
        except InterruptedError:
            return []
        for fd in ready:
            if fd in self._once:
                self.remove(fd)
        return ready

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()

    def _register(self, fd: int, flags: int) -> None:
        if self._epoll is not None:
            self._epoll.register(fd, flags)
        else:
            self._poll.register(fd, flags)


def drain(fd: int) -> None:
    """Read and drop what a non-blocking wake-up pipe holds."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
