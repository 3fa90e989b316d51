"""``--stats ADDRESS``: the master serves the workers' figures (``connection/metrics.py``)
as Prometheus metrics, and its health checks (``health.py``).

The pages are a table, path -> what answers it (``pages``); each is rendered when asked.

The HTTP side (``StatsServer``) runs in the master's own loop, not in a thread:
the master forks, and a thread holding a lock (the logging module's, say) at
the moment of a fork leaves that lock held forever in the child.  Its sockets
are non-blocking, a request is at most ``MAX_REQUEST`` bytes, and a client
gets ``CLIENT_DEADLINE`` seconds for the whole exchange, so a silent or slow
scraper costs a descriptor, never the master's time.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping

from ..addresses import parse_address
from ..config import Config, ConfigError
from .health import Page, health, readiness
from .listeners import Listener, open_address, socket_owner
from .roster import MasterState

__all__ = ["StatsServer", "open_stats_listener", "pages"]

#: A stats client that has not sent its request and read the answer by then is dropped.
CLIENT_DEADLINE = 5.0
#: The longest request head a stats client may send.
MAX_REQUEST = 8192
#: Stats clients served at once; more are closed at once.
MAX_CLIENTS = 32
#: After a failed accept, the stats listener rests this long.
ACCEPT_PAUSE = 0.5
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXT = "text/plain; charset=utf-8"

Pages = Mapping[bytes, Callable[[], Page]]


def pages(metrics: Callable[[], str], state: MasterState) -> Pages:
    """What the ``--stats`` listener serves: the metrics text, and the master's health."""
    return {b"/metrics": lambda: ("200 OK", CONTENT_TYPE, metrics()),
            b"/healthz": lambda: health(state),
            b"/readyz": lambda: readiness(state)}


def open_stats_listener(config: Config) -> Listener:
    """Bind ``--stats`` as ``--bind`` binds its addresses (same forms, same unix file rules)."""
    assert config.stats is not None
    try:
        listener = open_address(parse_address(config.stats), config, socket_owner(config))
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
    """Plain HTTP/1.0 GET of its ``pages``, answered from the master's loop without ever
    blocking it."""

    def __init__(self, listener: Listener, pages: Pages) -> None:
        self.listener = listener
        self.pages = pages
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
            self._answer(client, ("431 Request Header Fields Too Large", TEXT,
                                  "request too large\n"))

    def _respond(self, head: bytes) -> tuple[Page, bool]:
        """The page for a request head; whether to send its body (not for HEAD)."""
        parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return ("400 Bad Request", TEXT, "expected GET /metrics HTTP/1.x\n"), True
        method, target = parts[0], parts[1]
        if method not in (b"GET", b"HEAD"):
            return ("405 Method Not Allowed", TEXT, "only GET and HEAD\n"), True
        page = self.pages.get(target.split(b"?", 1)[0])
        if page is None:
            known = ", ".join(path.decode() for path in self.pages)
            return ("404 Not Found", TEXT, f"the pages are {known}\n"), method == b"GET"
        return page(), method == b"GET"

    def _answer(self, client: _Client, page: Page, with_body: bool = True) -> None:
        status, kind, body = page
        payload = body.encode()
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
