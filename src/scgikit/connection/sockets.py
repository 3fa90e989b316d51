"""An accepted connection as the server holds it: a C socket object, and sends with deadlines.

Workers use the C socket type (``Connection``), not ``socket.socket``: it has every
method a request needs and costs no Python code to create or close.  Where the C
accelerator may handle socket objects (``accelerator.socket_speedups``), the
first receive, the close and the accept are its functions: they keep the GIL
(none of them waits) and skip checks a connection just accepted does not need.

TCP connections inherit the listener's SO_RCVTIMEO and SO_SNDTIMEO (set by the
master); unix connections inherit none, and get theirs only when a receive or a
send cannot finish at once (``arm_timeout``, ``send_all``), which most requests
never need.
"""

from __future__ import annotations

import _socket
import errno
import functools
import socket
import struct
from collections.abc import Callable, Sequence

from ..accelerator import socket_speedups, speedups

__all__ = ["DONTWAIT", "Connection", "acceptor", "arm_timeout", "close_now", "family_of",
           "local_name", "recv_now", "send_all", "sendall_within_timeout", "set_receive_timeout",
           "template", "timeval", "type_of"]

# A plain int: socket.MSG_DONTWAIT is an enum.IntFlag, whose "|" runs in Python (three
# calls of enum code, on the pure path, for every answer).
DONTWAIT = int(socket.MSG_DONTWAIT)

#: An accepted connection.  Workers use the C socket type, not ``socket.socket``:
#: it has every method a request needs (recv, recv_into, sendall, sendmsg...) and
#: costs no Python code to create or close.
Connection = _socket.socket

# A socket.socket's family and type are enums made in Python at each read; the C
# socket type's own descriptors give the plain ints, at the cost of an attribute read.
family_of: Callable[[socket.socket], int] = _socket.socket.family.__get__
type_of: Callable[[socket.socket], int] = _socket.socket.type.__get__

_C = socket_speedups()
#: ``conn.recv(size, flags)`` for a first receive (with MSG_DONTWAIT: it never waits), and
#: ``conn.close()``: the C accelerator's keep the GIL (in the threads model, letting go of
#: it costs two thread switches each time).
recv_now: Callable[[Connection, int, int], bytes] = (
    _C.recv_now if _C is not None else _socket.socket.recv)
close_now: Callable[[Connection], None] = _C.close_now if _C is not None else _socket.socket.close
_templates: dict[tuple[int, int], Connection] = {}


def template(family: int, kind: int) -> Connection:
    """A closed socket of this family and type, for the C accept to copy (timeout too)."""
    made = _templates.get((family, kind))
    if made is None:
        made = _templates[family, kind] = _socket.socket(family, kind, 0)
        made.close()
    return made


def acceptor(listener: socket.socket) -> Callable[[], Connection | None]:
    """A function that accepts one connection from ``listener`` as a socket object, the
    cheapest way this build has.  When none waits it returns None (the C accept: an
    accept loop meets that once per pass, and an exception costs a strerror() and a
    locale decoding) or raises BlockingIOError (the others).

    socket.accept() wraps each connection in Python code and makes the peer's address
    into Python objects, which only --allow-from reads; the C socket type has all a
    request needs, for a tenth of the cost.  The C accelerator makes it directly
    (``accept_socket``: socket() would check the descriptor with a getsockname()).
    """
    family, kind = family_of(listener), type_of(listener)
    listener_fd = listener.fileno()
    if _C is not None:
        return functools.partial(_C.accept_socket, listener_fd, template(family, kind))
    if speedups is not None:
        accept_fd = speedups.accept_fd
        return lambda: _socket.socket(family, kind, 0, accept_fd(listener_fd))
    accept = listener._accept  # type: ignore[attr-defined]
    return lambda: _socket.socket(family, kind, 0, accept()[0])


def local_name(listeners: Sequence[socket.socket]) -> tuple[str, int]:
    """SERVER_NAME and SERVER_PORT for front ends that do not send them: the first TCP
    listener's address, else ("localhost", 80)."""
    for sock in listeners:
        local = sock.getsockname()
        if isinstance(local, tuple):
            return str(local[0]), int(local[1])
    return "localhost", 80


def timeval(seconds: float) -> bytes:
    """``seconds`` as the ``struct timeval`` that SO_RCVTIMEO and SO_SNDTIMEO take."""
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def set_receive_timeout(conn: Connection, seconds: float) -> None:
    """Let the next receives on ``conn`` wait at most ``seconds`` (sends are unaffected).

    A connection with a Python-level timeout has its timeout changed; any other
    gets the kernel's SO_RCVTIMEO.
    """
    if conn.gettimeout() is not None:
        conn.settimeout(seconds)
    else:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(max(seconds, 0.001)))


def arm_timeout(conn: Connection, seconds: float | None) -> None:
    """Give a unix connection its send timeout before a send that may have to wait.

    TCP connections already carry the listener's SO_SNDTIMEO; a unix one starts with
    none.  Setting it costs a system call, so it is set only once a send could not
    finish at once, and as the kernel's SO_SNDTIMEO, as TCP's: the connection stays
    blocking, so a big answer goes out in one ``send`` that sleeps while the buffer is
    full (a Python-level timeout would make the descriptor non-blocking, with a
    ``poll`` before every ``send`` of a buffer's worth).
    """
    if seconds and conn.family == socket.AF_UNIX and conn.gettimeout() is None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(seconds))


def send_all(conn: Connection, data: bytes, seconds: float | None, flags: int = 0) -> bool:
    """``conn.sendall(data)``, first without waiting; True if it had to wait.

    An answer that fits in the socket's buffer goes out in one call, with no timeout
    armed; the rest of one that does not is sent within ``seconds`` per call, the
    timeout then armed for the connection's next sends (``sendall_within_timeout``).
    ``flags`` go with that first call (``MSG_MORE`` for the last bytes before a close).
    """
    try:
        sent = conn.send(data, DONTWAIT | flags)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        arm_timeout(conn, seconds)
        with memoryview(data) as view:
            sendall_within_timeout(conn, view[sent:])
        return True
    return False


def sendall_within_timeout(conn: Connection, data: bytes | bytearray | memoryview,
                           flags: int = 0) -> None:
    """``conn.sendall(data, flags)``; the socket's SO_SNDTIMEO passing is a ``TimeoutError``.

    (The kernel says EAGAIN, which Python raises as BlockingIOError, "Resource
    temporarily unavailable": not what a log line about a stalled front end should say.)
    """
    try:
        conn.sendall(data, flags)
    except BlockingIOError:
        raise TimeoutError(errno.ETIMEDOUT, "send timed out") from None
