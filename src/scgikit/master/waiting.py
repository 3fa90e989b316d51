"""What the master's loop waits on between two passes: its descriptors, polled at once.

The wake-up pipe (a signal arrived, ``signal.set_wakeup_fd``), the ready pipe (a worker
loaded the app), the ``--session-affinity`` router's sockets and the ``--stats``
listener and its clients.  The wait ends at the first of them, or after ``seconds``;
the stats server and the router then do what their descriptors allow, without blocking.
"""

from __future__ import annotations

import select

from ..connection.poller import drain
from .sessions import SessionRouter
from .stats import StatsServer

__all__ = ["wait_for_events"]


def wait_for_events(seconds: float, wake_r: int, ready_r: int, router: SessionRouter | None,
                    stats_server: StatsServer | None) -> None:
    """Wait up to ``seconds`` for any of the master's descriptors, and serve what is due."""
    readers, writers = [wake_r, ready_r], []
    if router is not None:
        readers.append(router.fileno())
    if stats_server is not None:
        readers += stats_server.readers()
        writers = stats_server.writers()
    # poll, not select: select() fails on a descriptor above 1023, which a master
    # holding many listeners or a high --workers count can reach.
    waiting = select.poll()
    for fd in readers:
        waiting.register(fd, select.POLLIN)
    for fd in writers:
        waiting.register(fd, select.POLLOUT)
    try:
        events = waiting.poll(max(0.0, seconds) * 1000)  # (poll waits forever on < 0)
    except InterruptedError:
        return
    writing = set(writers)  # (an error or a hang-up on one is for its send to find)
    readable = [fd for fd, _ in events if fd not in writing]
    writable = [fd for fd, _ in events if fd in writing]
    if wake_r in readable:
        drain(wake_r)
    if stats_server is not None:
        stats_server.handle(readable, writable)
    if router is not None:
        router.handle()
