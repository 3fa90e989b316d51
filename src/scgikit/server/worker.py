"""A worker process: accept connections, read SCGI heads, run the app, close.

How it works.  The worker loads the app after the fork, tells the master it is
ready, then loops: accept from the shared non-blocking listeners until they are
empty, then wait on them and the signal wake-up pipe (epoll with EPOLLEXCLUSIVE,
so one idle worker wakes per connection, not all of them); once a second it
checks that the master still lives.  One connection is one request: read the head
(usually one ``recv``), hand the variables and the bytes that came with them
to the app adapter, close.

Signal handlers only set flags (``stopping``); the loop acts on them between
requests, so a graceful stop never cuts a request in half.  While a request is
in hand, the worker writes the time it started into its heartbeat slot; the
master kills a worker whose slot is older than ``--timeout``.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import random
import select
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any, Protocol

from ..config import Config
from ..protocol import ProtocolError, error_response, parse_head
from .sockets import Connection, Listener, arm_timeout, timeval

log = logging.getLogger("scgikit")
access_log = logging.getLogger("scgikit.access")

# The first receive takes the head and a body of up to about this size in one call.
RECV_SIZE = 128 * 1024
LINGER_BYTES = 4 * 1024 * 1024
LINGER_SECONDS = 2.0


class Adapter(Protocol):
    raw: bool

    def __call__(self, sock: Connection, variables: dict[str, str], length: int,
                 prefix: bytes | memoryview) -> tuple[str, int]: ...


class Heartbeat:
    """This worker's slot in the master's shared array: 0.0 idle, else busy since.

    The worker writes the slot inline in its accept loop; the master reads it.
    """

    def __init__(self, slots: memoryview[float], index: int) -> None:
        self.slots = slots
        self.index = index


class Worker:
    """One worker's accept loop; built in the child right after the fork."""

    def __init__(self, config: Config, listeners: Sequence[Listener], adapter: Adapter,
                 heartbeat: Heartbeat, ppid: int) -> None:
        self.config = config
        self.listeners = [listener.sock for listener in listeners]
        self.timeout = config.header_timeout or None  # armed on unix connections that wait
        self.adapter = adapter
        self.heartbeat = heartbeat
        self.ppid = ppid
        self.stopping = False
        self.max_requests = config.max_requests + (
            random.randint(0, config.max_requests_jitter) if config.max_requests else 0
        )
        self.handled = 0
        self.exit_code = 0
        self.access = access_log.isEnabledFor(logging.INFO) and access_log.handlers != []
        self.handle = self._handle_raw if adapter.raw else self._handle_scgi

    # --- signals: record only --------------------------------------------------------

    def install_signals(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._graceful)
        signal.signal(signal.SIGQUIT, self._immediate)
        for signum in (signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        return wake_r

    def _graceful(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _immediate(self, signum: int, frame: Any) -> None:
        os._exit(0)

    # --- the loop --------------------------------------------------------------------

    def run(self) -> None:
        wake_r = self.install_signals()
        poller = _Poller(self.listeners, wake_r)
        check_master_at = time.monotonic() + 1.0
        while not self.stopping:
            self._accept_all()
            if self.stopping:
                break
            try:
                woken = poller.wait(1.0)
            except InterruptedError:
                woken = [wake_r]
            if wake_r in woken:
                _drain(wake_r)
            if (now := time.monotonic()) >= check_master_at:
                check_master_at = now + 1.0
                if os.getppid() != self.ppid:
                    log.warning("Master %d is gone; worker exiting", self.ppid)
                    break
        if self.max_requests and self.handled >= self.max_requests:
            log.info("Worker recycled after %d requests", self.handled)

    def _accept_all(self) -> None:
        # The hot loop: names are bound to locals, the heartbeat written inline.
        slots, slot = self.heartbeat.slots, self.heartbeat.index
        monotonic = time.monotonic
        handle = self.handle
        for listener in self.listeners:
            # socket.accept() wraps each connection in Python code; the C socket type
            # has all a request needs, for a tenth of the cost.
            accept = listener._accept  # type: ignore[attr-defined]
            family, kind = listener.family, listener.type
            while not self.stopping:
                try:
                    conn = _socket.socket(family, kind, 0, accept()[0])
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in (errno.ECONNABORTED, errno.EINTR):
                        continue
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        log.error("Cannot accept a connection: %s", exc)
                        break
                    raise
                slots[slot] = monotonic()
                try:
                    handle(conn)
                finally:
                    conn.close()
                    slots[slot] = 0.0
                self.handled += 1
                if self.handled == self.max_requests:
                    self.stopping = True

    # --- one connection ----------------------------------------------------------------

    def _handle_scgi(self, conn: Connection) -> None:
        started = time.monotonic() if self.access else 0.0
        try:
            try:
                # The request is usually there already (TCP_DEFER_ACCEPT sees to it on
                # TCP): take it without waiting, so a unix connection needs no timeout.
                data = conn.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                arm_timeout(conn, self.timeout)
                data = conn.recv(RECV_SIZE)
            if not data:
                return  # closed before sending a byte: a health check or a port scan
            parsed = parse_head(data, self.config.max_header_size)
            if parsed is None:
                data, parsed = self._read_head(conn, data)
        except ProtocolError as exc:
            log.warning("Bad request: %s", exc)
            self._refuse(conn, exc.status)
            return
        except (TimeoutError, BlockingIOError):
            log.info("Client sent no complete header within %ss; closing",
                     self.config.header_timeout)
            return
        except OSError as exc:
            log.info("Error reading a request: %s", exc)
            return
        variables, length, consumed = parsed
        limit = self.config.max_body_size
        if limit is not None and length > limit:
            log.warning("Body of %d bytes exceeds --max-body-size %d", length, limit)
            self._refuse(conn, 413)
            return
        # The body bytes that came with the head, as a view: copied once, when read.
        prefix = memoryview(data)[consumed:] if len(data) > consumed else b""
        if length > len(prefix):
            arm_timeout(conn, self.timeout)  # the rest of the body may keep us waiting
        status, sent = self.adapter(conn, variables, length, prefix)
        if self.access:
            self._log_access(variables, status, sent, started)

    def _read_head(self, conn: Connection, data: bytes) -> tuple[bytes, Any]:
        """The slow path: the head did not come in one piece. Read on, within the deadline."""
        deadline = time.monotonic() + self.config.header_timeout
        arm_timeout(conn, self.timeout)
        buffer = bytearray(data)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("header timeout")
            _set_receive_timeout(conn, left)
            chunk = conn.recv(RECV_SIZE)
            if not chunk:
                raise ProtocolError(f"connection closed after {len(buffer)} bytes of header")
            buffer += chunk
            parsed = parse_head(buffer, self.config.max_header_size)
            if parsed is not None:
                _set_receive_timeout(conn, self.config.header_timeout)
                return bytes(buffer), parsed

    def _handle_raw(self, conn: Connection) -> None:
        # A handler that takes over the connection gets a full socket (makefile...).
        arm_timeout(conn, self.timeout)
        timeout = conn.gettimeout()
        sock = socket.socket(conn.family, conn.type, conn.proto, conn.detach())
        sock.settimeout(timeout)
        try:
            self.adapter.handle_raw(sock)  # type: ignore[attr-defined]
        except (ProtocolError, OSError) as exc:
            log.warning("Bad request: %s", exc)
        except Exception:
            log.exception("Handler error in handle_connection")
        finally:
            sock.close()

    def _refuse(self, conn: Connection, status: int) -> None:
        """Answer an error, then drain a little of what the client still sends and close.

        Closing with unread bytes makes the kernel send a reset, which can make the
        front end lose our answer; reading a bounded amount first avoids that.
        """
        arm_timeout(conn, self.timeout)
        try:
            conn.sendall(error_response(status))
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                _set_receive_timeout(conn, left)
                chunk = conn.recv(RECV_SIZE)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    def _log_access(self, variables: dict[str, str], status: str, sent: int,
                    started: float) -> None:
        access_log.info(
            '%s - - [%s] "%s %s %s" %s %d %.6f pid=%d',
            variables.get("REMOTE_ADDR", "-"),
            time.strftime("%d/%b/%Y:%H:%M:%S %z"),
            variables.get("REQUEST_METHOD", "-"),
            variables.get("REQUEST_URI") or variables.get("DOCUMENT_URI", "-"),
            variables.get("SERVER_PROTOCOL", "-"),
            status.split(" ", 1)[0], sent, time.monotonic() - started, os.getpid(),
        )


class _Poller:
    """Waits for a connection on any listener, or a signal.

    On Linux, epoll with EPOLLEXCLUSIVE wakes one idle worker per connection
    instead of all of them; elsewhere, poll.
    """

    def __init__(self, listeners: Sequence[socket.socket], wake_r: int) -> None:
        self._poll: Any
        if hasattr(select, "epoll") and hasattr(select, "EPOLLEXCLUSIVE"):
            self._poll = select.epoll()
            for sock in listeners:
                self._poll.register(sock, select.EPOLLIN | select.EPOLLEXCLUSIVE)
            self._poll.register(wake_r, select.EPOLLIN)
            self._scale = 1.0
        else:
            self._poll = select.poll()
            for sock in listeners:
                self._poll.register(sock, select.POLLIN)
            self._poll.register(wake_r, select.POLLIN)
            self._scale = 1000.0

    def wait(self, seconds: float) -> list[int]:
        """The descriptors that are ready (an empty list after ``seconds``)."""
        return [fd for fd, _ in self._poll.poll(seconds * self._scale)]


def _set_receive_timeout(conn: Connection, seconds: float) -> None:
    if conn.gettimeout() is not None:
        conn.settimeout(seconds)  # a unix connection: its timeout is Python's
    else:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
