"""The master's children: their fork, their start, their ends, and the words for those.

The master forks with its signals blocked, so that a signal meant for the new
child is not swallowed by the master's handlers before the child has dropped
them; the child undoes the master's signal handling first of all.  A child never
returns into the master's loop: whatever its body does or raises, it flushes its
logs and exits with a code (``exit_child``), which the master reads back when it
reaps it (``collect_exits``).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import NoReturn

from ..config import ConfigError

__all__ = ["HANDLED_SIGNALS", "PidFile", "collect_exits", "exit_child", "fork", "kill",
           "spawn_gateway", "undo_master_signals"]

log = logging.getLogger("scgikit")

#: The signals the master handles (and a child hands back to their defaults).
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                   signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)


def fork() -> int:
    """os.fork() with the master's signals blocked across it.

    A signal meant for the new child that arrives before it has dropped the
    master's handlers must not be swallowed by them; the child unblocks them
    itself once its handlers are reset.  Raises OSError when fork() fails.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    return pid


def undo_master_signals() -> None:
    """In a child right after the fork: the master's signal handling undone (the child
    unblocks what ``fork`` blocked once the handlers are the defaults again).."""
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    signal.set_wakeup_fd(-1)


def collect_exits() -> list[tuple[int, int]]:
    """Every child that has exited, as (pid, wait status), without blocking."""
    exited: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return exited
        if pid == 0:
            return exited
        exited.append((pid, status))


def kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def exit_child(body: Callable[[], int], what: str) -> NoReturn:
    """In a child right after the fork: run ``body`` and exit with the code it returns.

    ``sys.exit`` in the body gives its code; any other exception is logged as
    ``what`` crashing, and exits with 1.
    """
    code = 1
    try:
        undo_master_signals()
        code = body()
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is not None:
            log.error("%s exited: %s", what, exc.code)
    except BaseException:
        log.exception("%s crashed", what)
    finally:
        logging.shutdown()
        os._exit(code)


def spawn_gateway(listen: str, to: str, forget: Callable[[], None]) -> int:
    """``--http``: a development HTTP gateway in front of the server, in a child process
    (``forget`` closes what of the master's it holds); its pid.  Its socket is bound here,
    first: an address it cannot have is the start's failure, a ``ConfigError``."""
    from ..gateway import GatewayError, listen_gateway

    try:
        sock = listen_gateway(listen)
    except GatewayError as exc:
        raise ConfigError(str(exc), "http") from None
    try:
        pid = fork()
    except BaseException:
        sock.close()
        raise
    if pid:
        sock.close()  # the gateway's own now
        return pid

    def run() -> int:
        forget()
        from ..gateway import serve_gateway

        try:
            serve_gateway(sock, to, ready=lambda address: log.info(
                "HTTP gateway (development only) at: http://%s -> %s", address, to))
        except Exception as exc:
            log.error("HTTP gateway failed: %s", exc)
            return 1
        return 0

    exit_child(run, "HTTP gateway")


class PidFile:
    """``--pid FILE``: the master's process id, written at start and removed at the end
    (only if this master wrote it: a failed start leaves another server's file alone)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.written = False

    def write(self) -> None:
        if self.path is None:
            return
        try:
            with open(self.path, "w") as fh:
                fh.write(f"{os.getpid()}\n")
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write it: {exc.strerror or exc}",
                              "pid_file") from None
        self.written = True

    def remove(self) -> None:
        if self.written and self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
