"""Listening sockets: TCP, unix, inherited descriptors and systemd socket activation.

The master creates every listener before it forks, so workers share them and
the kernel spreads connections among the workers that are waiting.  Listeners
are non-blocking (workers poll, then accept until the queue is empty), and
carry the read/write timeouts that accepted TCP connections inherit on Linux, so
no per-connection system call is spent setting them.  Unix connections inherit
none: they get theirs only when a receive or a send cannot finish at once
(``arm_timeout``, ``send_all``), which most requests never need.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import socket
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from ..addresses import Address
from ..config import Config, ConfigError

log = logging.getLogger("scgikit")

SD_LISTEN_FDS_START = 3

#: An accepted connection.  Workers use the C socket type, not ``socket.socket``:
#: it has every method a request needs (recv, recv_into, sendall, sendmsg...) and
#: costs no Python code to create or close.
Connection = _socket.socket


@dataclass
class Listener:
    """A bound, listening socket and how to name it in logs."""

    sock: socket.socket
    name: str
    unix_path: str | None = None  # a socket file we created, to remove at exit
    unix_inode: int | None = None

    @property
    def address(self) -> str:
        """Where a client on this machine connects to reach this listener."""
        local = self.sock.getsockname()
        if isinstance(local, tuple):
            host = local[0]
            return f"[{host}]:{local[1]}" if ":" in host else f"{host}:{local[1]}"
        return f"unix:{local}"

    def close(self, unlink: bool = False) -> None:
        self.sock.close()
        if unlink and self.unix_path:
            _unlink_if_ours(self.unix_path, self.unix_inode)


def open_listeners(config: Config, environ: Mapping[str, str]) -> list[Listener]:
    """Bind every address of ``config``; with no ``--bind``, take systemd's sockets if any."""
    listeners: list[Listener] = []
    try:
        if not config.bind:
            listeners = systemd_listeners(environ)
        if not listeners:
            for address in config.addresses:
                listeners.append(_open(address, config))
        for listener in listeners:
            _prepare(listener.sock, config)
    except BaseException:
        for listener in listeners:
            listener.close(unlink=True)
        raise
    return listeners


def _open(address: Address, config: Config) -> Listener:
    if address.fd is not None:
        return _inherited(address.fd, f"fd://{address.fd}")
    if address.path is not None:
        return _bind_unix(address.path, config)
    return _bind_tcp(address, config)


def _bind_tcp(address: Address, config: Config) -> Listener:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if address.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address.sockaddr)
        sock.listen(config.backlog)
        if hasattr(socket, "TCP_DEFER_ACCEPT"):
            # Wake a worker only once the request's first bytes are in: no worker
            # waits in recv for a front end that has connected but not yet sent.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT,
                            max(1, round(config.header_timeout)))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Listener(sock, shown)


def _bind_unix(path: str, config: Config) -> Listener:
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bind under a umask that lets nobody in, then open up to --socket-mode, so
    # the socket is never reachable with wider permissions than asked for.
    old_umask = os.umask(0o777)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, config.socket_mode)
    sock.listen(config.backlog)
    return Listener(sock, f"unix:{path}", unix_path=path, unix_inode=os.stat(path).st_ino)


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a dead server; refuse to touch anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"unix:{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        log.info("Removing stale socket file %s", path)
        os.unlink(path)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOENT,):
            raise ConfigError(f"unix:{path}: cannot check the existing socket: {exc}") from None
        return
    finally:
        probe.close()
    raise ConfigError(f"unix:{path} is in use by a running server")


def _unlink_if_ours(path: str, inode: int | None) -> None:
    try:
        if inode is None or os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def _inherited(fd: int, name: str) -> Listener:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"{name}: not an open socket: {exc.strerror or exc}") from None
    if sock.type != socket.SOCK_STREAM:
        raise ConfigError(f"{name}: not a stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise ConfigError(f"{name}: socket is not listening")
    os.set_inheritable(fd, False)
    local = sock.getsockname()
    if isinstance(local, tuple):
        name = f"{name} ({local[0]}:{local[1]})"
    elif local:
        name = f"{name} (unix:{local})"
    return Listener(sock, name)


def systemd_listeners(environ: Mapping[str, str]) -> list[Listener]:
    """Sockets passed by systemd socket activation (sd_listen_fds(3))."""
    if environ.get("LISTEN_PID") not in (None, str(os.getpid())):
        return []  # meant for another process
    count = environ.get("LISTEN_FDS", "")
    if not count.isdigit():
        return []
    return [
        _inherited(fd, f"systemd fd {fd}")
        for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count))
    ]


def _prepare(sock: socket.socket, config: Config) -> None:
    sock.setblocking(False)
    # Accepted sockets inherit these on Linux: a stalled client cannot hold a
    # worker longer than --header-timeout per read.
    if config.header_timeout > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(config.header_timeout))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(config.header_timeout))


def timeval(seconds: float) -> bytes:
    """``seconds`` as the ``struct timeval`` that SO_RCVTIMEO and SO_SNDTIMEO take."""
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def arm_timeout(conn: Connection, seconds: float | None) -> None:
    """Give a unix connection its read/write timeout before it may have to wait.

    TCP connections already carry the listener's.  A unix one starts blocking with
    none: setting it costs a system call, and Python's timeout adds a poll before
    every send and receive, so it is set only once a call could not finish at once.
    """
    if seconds and conn.gettimeout() is None and conn.family == socket.AF_UNIX:
        conn.settimeout(seconds)


def send_all(conn: Connection, data: bytes, seconds: float | None) -> None:
    """``conn.sendall(data)``, first without waiting.

    An answer that fits in the socket's buffer goes out in one call, with no timeout
    armed; the rest of one that does not is sent within ``seconds`` per call.
    """
    try:
        sent = conn.send(data, socket.MSG_DONTWAIT)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        arm_timeout(conn, seconds)
        with memoryview(data) as view:
            conn.sendall(view[sent:])
