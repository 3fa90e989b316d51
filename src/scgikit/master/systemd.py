"""Telling systemd how the master is doing: sd_notify(3) for ``Type=notify`` services.

How it works.  When systemd starts a ``Type=notify`` service it sets
``NOTIFY_SOCKET`` to a unix datagram socket (a path, or an abstract name written
with a leading '@'); the service sends it newline-separated ``KEY=VALUE`` lines.
The master sends ``READY=1`` (with ``MAINPID``) once a worker serves,
``RELOADING=1`` (with ``MONOTONIC_USEC``) on a reload and ``READY=1`` again when
it is over, ``STOPPING=1`` when a stop begins, and ``STATUS=`` lines for
``systemctl status``.  With ``WATCHDOG_USEC`` set (for this process:
``WATCHDOG_PID`` absent or ours) the master's loop sends ``WATCHDOG=1`` every
half of that, so a master that hangs is restarted.

Every message goes out in one non-blocking datagram from a socket made for it
(as sd_notify does): nothing is left open for the forked workers to inherit, and
a full or vanished socket costs one warning in the log, never a wait or a crash.

The master removes systemd's variables from its environment before it loads the
app (``--preload``) or starts any worker (as ``sd_listen_fds(1)`` and
``sd_notify(1)`` do): an app, or a program an
app runs, must not take itself for the service systemd started.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

from .roster import MasterState, status_line

log = logging.getLogger("scgikit")

#: The variables by which systemd talks to the process it starts, and only to it.
SYSTEMD_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                     "WATCHDOG_USEC", "WATCHDOG_PID")


def forget_systemd_environ(environ: MutableMapping[str, str]) -> None:
    """Remove systemd's variables (``os.environ``: unset them for every child too)."""
    for name in SYSTEMD_VARIABLES:
        environ.pop(name, None)


class Notifier:
    """The master's messages to systemd; every method does nothing without ``NOTIFY_SOCKET``.

    The service's state changes only by the methods below, and each sends its
    message only when it changes something: ``ready()`` after ``ready()`` is silent,
    ``reloading()`` before the first ``ready()`` is silent (systemd is still waiting
    for that one), and after ``stopping()`` nothing but status and watchdog is sent.
    """

    def __init__(self, notify_socket: str = "", watchdog_interval: float = 0.0) -> None:
        self.notify_socket = notify_socket  # as systemd wrote it, for the log
        self.address = notify_address(notify_socket)
        self.watchdog_interval = watchdog_interval if self.address else 0.0
        self.phase = "starting"
        self.status = ""
        self.watchdog_due = time.monotonic()
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> Notifier:
        """The notifier ``environ`` asks for, in the process ``pid`` (ours by default)."""
        return cls(environ.get("NOTIFY_SOCKET", ""),
                   watchdog_interval(environ, os.getpid() if pid is None else pid))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> None:
        if self.phase in ("starting", "reloading"):
            self.phase = "ready"
            self._send("READY=1", f"MAINPID={os.getpid()}", *self._status(status))

    def reloading(self, status: str) -> None:
        if self.phase == "ready":
            self.phase = "reloading"
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            self._send("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status(status))

    def stopping(self, status: str) -> None:
        if self.phase != "stopping":
            self.phase = "stopping"
            self._send("STOPPING=1", *self._status(status))

    def report(self, state: MasterState) -> None:
        """READY once a worker serves and again after a reload; STATUS; the watchdog's ping."""
        if not self.enabled:
            return
        status = status_line(state)
        if not state.stopping and state.ever_ready and (
                self.phase == "starting" or state.generation == state.live_generation):
            self.ready(status)  # a reload done or abandoned, or the first worker ready
        self.update_status(status)
        self.watchdog(time.monotonic())

    def update_status(self, status: str) -> None:
        """Send ``STATUS=status`` if it is not what systemd already shows."""
        lines = self._status(status)
        if lines:
            self._send(*lines)

    def watchdog(self, now: float) -> None:
        """Send ``WATCHDOG=1`` if it is due at ``now`` (``time.monotonic()``)."""
        if self.watchdog_interval and now >= self.watchdog_due:
            self.watchdog_due = now + self.watchdog_interval
            self._send("WATCHDOG=1")

    def seconds_to_watchdog(self, now: float) -> float | None:
        """How long the loop may sleep before the next ``WATCHDOG=1`` is due; None: never."""
        if not self.watchdog_interval:
            return None
        return max(0.0, self.watchdog_due - now)

    def _status(self, status: str) -> list[str]:
        if not self.enabled or status == self.status:
            return []
        self.status = status
        return [f"STATUS={status}"]

    def _send(self, *lines: str) -> None:
        if self.address is None:
            return
        message = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as exc:
            # systemd gone, its queue full, a wrong path: the server serves on regardless.
            if not self._failed:
                self._failed = True
                log.warning("Cannot notify systemd at NOTIFY_SOCKET=%s: %s (further failures "
                            "are not logged)", self.notify_socket, exc.strerror or exc)


def notify_address(value: str) -> str | bytes | None:
    """Where ``NOTIFY_SOCKET`` says to send: a path, an abstract name as bytes, or None."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    if value:  # vsock:CID:PORT and the like: not for a unix datagram socket
        log.warning("Ignoring NOTIFY_SOCKET=%s: only a socket path or @abstract name is "
                    "supported", value)
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``); 0 when not asked."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0 or owner not in (None, str(pid)):
        return 0.0
    return int(usec) / 2 / 1e6
