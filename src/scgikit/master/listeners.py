"""Listening sockets: TCP, unix, inherited descriptors and systemd socket activation.

The master creates every listener before it forks, so workers share them and
the kernel spreads connections among the workers that are waiting.  Listeners
are non-blocking (workers poll, then accept until the queue is empty), and
carry the read/write timeouts that accepted TCP connections inherit on Linux, so
no per-connection system call is spent setting them.  Unix connections inherit
none: they get theirs only when a receive or a send cannot finish at once
(``arm_timeout``, ``send_all``), which most requests never need.

Unix socket files are bound under a umask that leaves them mode 000; their
owner is set while nobody can use them (``--socket-owner``, else ``--user`` and
``--group``), and only then are they opened up to ``--socket-mode``, so a socket
is never reachable by more users than asked.  A TCP listener on every interface
(0.0.0.0 or [::]) without ``--allow-from`` is logged as a warning: SCGI has no
authentication, and the server trusts whatever its peer sends.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import socket
import stat
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from ..addresses import ADDRESS_FORMS, Address
from ..config import Config, ConfigError
from ..connection.sockets import timeval

log = logging.getLogger("scgikit")

SD_LISTEN_FDS_START = 3


@dataclass
class Listener:
    """A bound, listening socket and how to name it in logs."""

    sock: socket.socket
    name: str
    unix_path: str | None = None  # a socket file we created, to remove at exit
    unix_inode: int | None = None
    inherited: bool = False  # passed in (systemd, fd://): its queue outlives this server

    @property
    def address(self) -> str:
        """Where a client on this machine connects to reach this listener."""
        local = self.sock.getsockname()
        if isinstance(local, tuple):
            host = local[0]
            return f"[{host}]:{local[1]}" if ":" in host else f"{host}:{local[1]}"
        return f"unix:{local}"

    def refuse_new(self) -> None:
        """At a full stop: let no new connection begin on a TCP socket we bound.

        On Linux a socket filter makes the listener drop every SYN from now on, so
        no handshake starts: a client waits for its SYN to be answered, then is
        refused once the workers have closed their copies, and its front end tries
        another backend.  Handshakes already under way complete and are served.
        (Without the filter, a handshake that starts while a worker still holds the
        socket ends in the queue or half done when the last copy closes, and is
        reset; nginx does not resend a POST that it has sent.)  Elsewhere the queue
        shrinks to nothing instead (``listen(0)``: the kernel still completes a
        handshake whenever the queue has room).  An inherited socket keeps its
        queue: whoever passed it (systemd) hands it to the next server.
        """
        if self.inherited or self.sock.family == socket.AF_UNIX:
            return
        try:
            drop_syns(self.sock)
        except OSError:
            try:
                self.sock.listen(0)
            except OSError:
                pass

    def close(self, unlink: bool = False) -> None:
        # The file first: from then on a client by path is refused, never queued.
        if unlink and self.unix_path:
            _unlink_if_ours(self.unix_path, self.unix_inode)
        self.sock.close()


#: SO_ATTACH_FILTER (Linux; the same number on every architecture Python runs on
#: there but parisc and sparc, where setting it fails and ``listen(0)`` is used).
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
# A classic BPF program, run on each packet that reaches the listener, the TCP
# header at offset 0: drop a SYN without ACK (a new connection), keep the rest
# (the ACKs and first data of handshakes under way).
_DROP_SYNS = b"".join(struct.pack("HBBI", *op) for op in (
    (0x30, 0, 0, 13),  # ldb [13]: the flags
    (0x54, 0, 0, 0x12),  # and #(SYN|ACK)
    (0x15, 0, 1, 0x02),  # jeq #SYN: next, else skip one
    (0x06, 0, 0, 0),  # ret #0: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret: keep the whole packet
))


def drop_syns(sock: socket.socket) -> None:
    """Make a listening TCP socket drop new connections (OSError where it cannot)."""
    if not sys.platform.startswith("linux"):
        raise OSError(errno.EOPNOTSUPP, "socket filters are Linux's")
    import ctypes  # here: only a stopping master needs it

    program = ctypes.create_string_buffer(_DROP_SYNS, len(_DROP_SYNS))
    count = len(_DROP_SYNS) // 8
    fprog = struct.pack("HL", count, ctypes.addressof(program))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_listeners(config: Config, environ: Mapping[str, str]) -> list[Listener]:
    """Bind every address of ``config``; with no ``--bind``, take systemd's sockets if any."""
    owner = socket_owner(config)  # bad names are refused before any socket file exists
    listeners: list[Listener] = []
    try:
        if not config.bind:
            listeners = systemd_listeners(environ)
        if not listeners:
            for address in config.addresses:
                listeners.append(open_address(address, config, owner))
        for listener in listeners:
            _prepare(listener.sock, config)
    except BaseException:
        for listener in listeners:
            listener.close(unlink=True)
        raise
    if not config.allow_from:
        _warn_if_exposed(listeners)
    return listeners


def open_address(address: Address, config: Config, owner: Owner | None) -> Listener:
    if address.fd is not None:
        return inherited_listener(address.fd, f"fd://{address.fd}")
    if address.path is not None:
        return _bind_unix(address.path, config, owner)
    return _bind_tcp(address, config)


def is_wildcard(local: object) -> bool:
    """Whether a socket name (``getsockname()``) is every interface: 0.0.0.0 or [::]."""
    return isinstance(local, tuple) and bool(local) and local[0] in ("0.0.0.0", "::")


def _warn_if_exposed(listeners: list[Listener]) -> None:
    for listener in listeners:
        if is_wildcard(listener.sock.getsockname()):
            log.warning(
                "%s listens on every network interface, and SCGI has no authentication: "
                "the server trusts every variable its peer sends (REMOTE_ADDR, HTTPS...), so "
                "anyone who can reach this port can pose as the front end. Bind to 127.0.0.1 "
                "or a unix socket when the front end runs on this machine, or admit only the "
                "front end with --allow-from NETWORK", listener.name)


# --- who owns unix socket files -----------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The user and group a unix socket file is given; -1 leaves that one unchanged."""

    uid: int
    gid: int
    shown: str


def socket_owner(config: Config) -> Owner | None:
    """``--socket-owner``, else ``--user``/``--group``, else None (the file stays the starter's).

    A user without a group means that user's login group, as for the workers.
    Names that do not exist, and an owner that this process may not give files
    to (only root can give one to another user), are a ``ConfigError``.
    """
    if config.socket_owner is not None:
        user, _, group = config.socket_owner.partition(":")
        owner = Owner(*_ids(user, group or None, "--socket-owner", "--socket-owner"),
                      shown=config.socket_owner)
        _check_may_give(owner)
        return owner
    if config.user is None and config.group is None:
        return None
    uid, gid = _ids(config.user, config.group, "--user", "--group")
    return Owner(uid, gid, shown=f"{config.user or ''}:{config.group or ''}")


def _ids(user: str | None, group: str | None, user_option: str,
         group_option: str) -> tuple[int, int]:
    uid, gid = -1, -1
    if user is not None:
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise ConfigError(f"{user_option}: there is no user named {user!r}") from None
        uid, gid = entry.pw_uid, entry.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"{group_option}: there is no group named {group!r}") from None
    return uid, gid


def _check_may_give(owner: Owner) -> None:
    """Refuse at start what ``chown`` would refuse: only root gives files away."""
    if os.geteuid() == 0:
        return
    if owner.uid not in (-1, os.geteuid()):
        raise ConfigError(f"--socket-owner {owner.shown}: only root can give a socket file to "
                          f"another user, and the server runs as uid {os.geteuid()}")
    if owner.gid not in (-1, os.getegid(), *os.getgroups()):
        raise ConfigError(f"--socket-owner {owner.shown}: only root, or a member of the group, "
                          "can give a socket file to that group")


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
        raise ConfigError(f"--bind: cannot listen on {address}: {_bind_failure(address, exc)}; "
                          f"expected {ADDRESS_FORMS}") from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Listener(sock, shown)


def _bind_failure(address: Address, exc: OSError) -> str:
    """Why ``bind`` failed, in the operator's terms."""
    if isinstance(exc, socket.gaierror) and exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA):
        return f"{address.host!r} is not an IP address or a known host name"
    if exc.errno == errno.EACCES and address.port is not None and address.port < 1024:
        return f"{exc.strerror} (ports below 1024 need root)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{exc.strerror} ({address.host} is not an address of this machine)"
    return str(exc.strerror or exc)


def _bind_unix(path: str, config: Config, owner: Owner | None) -> Listener:
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bind under a umask that lets nobody in (the file is mode 000), give the file
    # its owner, then open up to --socket-mode: the socket is never reachable by
    # anyone but the owner asked for, nor with wider permissions than asked for.
    old_umask = os.umask(0o777)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--bind: cannot listen on unix:{path}: {exc.strerror or exc}; "
                          f"expected {ADDRESS_FORMS}") from None
    finally:
        os.umask(old_umask)
    inode: int | None = None
    try:
        inode = os.stat(path).st_ino
        if owner is not None:
            _give(path, owner)
        os.chmod(path, config.socket_mode)
        sock.listen(config.backlog)
    except BaseException:
        sock.close()
        _unlink_if_ours(path, inode)
        raise
    return Listener(sock, f"unix:{path}", unix_path=path, unix_inode=inode)


def _give(path: str, owner: Owner) -> None:
    try:
        os.chown(path, owner.uid, owner.gid, follow_symlinks=False)
    except OSError as exc:
        raise ConfigError(f"cannot give unix:{path} to {owner.shown}: "
                          f"{exc.strerror or exc}") from None


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a dead server; refuse to touch anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"--bind: unix:{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        log.info("Removing stale socket file %s", path)
        os.unlink(path)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOENT,):
            raise ConfigError(f"--bind: unix:{path}: cannot check the existing socket: "
                              f"{exc}") from None
        return
    finally:
        probe.close()
    raise ConfigError(f"--bind: unix:{path} is in use by a running server")


def _unlink_if_ours(path: str, inode: int | None) -> None:
    try:
        if inode is None or os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def inherited_listener(fd: int, name: str) -> Listener:
    """The listening stream socket at descriptor ``fd``, passed in (systemd, fd://); a
    ``ConfigError`` naming ``name`` when it is not one."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"{name}: not an open socket: {exc.strerror or exc}") from None
    problem = listening_problem(sock)
    if problem:
        sock.detach()  # not ours to close: the error is the operator's to fix
        raise ConfigError(f"{name}: {problem}")
    os.set_inheritable(fd, False)
    local = sock.getsockname()
    if isinstance(local, tuple):
        name = f"{name} ({local[0]}:{local[1]})"
    elif local:
        name = f"{name} (unix:{local})"
    return Listener(sock, name, inherited=True)


def listening_problem(sock: socket.socket) -> str | None:
    """Why ``sock`` cannot be served on (not a stream socket, not listening), or None."""
    if sock.type != socket.SOCK_STREAM:
        return "not a stream socket"
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return "socket is not listening"
    return None


def systemd_listeners(environ: Mapping[str, str]) -> list[Listener]:
    """Sockets passed by systemd socket activation (sd_listen_fds(3)).

    ``LISTEN_FDNAMES`` (sd_listen_fds_with_names(3): colon-separated, one per
    descriptor; a socket unit's ``FileDescriptorName=``, else the unit's name)
    names each in the log.  The master removes these variables from its
    environment once they are read (``forget_systemd_environ``); the workers
    inherit the sockets themselves by the fork.
    """
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    listeners = []
    for index in range(passed_fd_count(environ)):
        fd = SD_LISTEN_FDS_START + index
        label = names[index] if index < len(names) else ""
        listeners.append(inherited_listener(fd, f'systemd fd {fd} "{label}"' if label
                                    else f"systemd fd {fd}"))
    return listeners


def passed_fd_count(environ: Mapping[str, str], pid: int | None = None, *,
                    strict: bool = False) -> int:
    """How many sockets systemd passed to process ``pid`` (ours by default), from fd 3 on:
    LISTEN_FDS, when LISTEN_PID names that process (sd_listen_fds(3)).

    The master also takes them when LISTEN_PID is unset, and counts a LISTEN_FDS that
    is not a number as none.  ``strict`` is the rule of the classic ``scgi`` package
    (``scgikit.systemd_socket``): no LISTEN_PID, or one that is not a number, names no
    process; LISTEN_FDS is read as ``int()`` reads it, and when it is meant for this
    process but is not a count, that is an ``OSError``.
    """
    pid = os.getpid() if pid is None else pid
    if not strict:
        count = environ.get("LISTEN_FDS", "")
        meant = environ.get("LISTEN_PID") in (None, str(pid))
        return int(count) if meant and count.isdigit() else 0
    if _number(environ.get("LISTEN_PID")) != pid:
        return 0
    number = _number(environ.get("LISTEN_FDS"))
    if number is None or number < 0:
        raise OSError("invalid LISTEN_FDS value")
    return number


def _number(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _prepare(sock: socket.socket, config: Config) -> None:
    sock.setblocking(False)
    if config.header_timeout > 0:
        set_timeouts(sock, config)


def set_timeouts(sock: socket.socket, config: Config) -> None:
    """--header-timeout as the listener's read and write timeouts (0: none): accepted
    sockets inherit these on Linux, so a stalled client cannot hold a worker longer than
    --header-timeout per read.  Set at start, and again by a HUP that changed it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(config.header_timeout))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(config.header_timeout))
