"""The request body as a file, read from the socket, never past CONTENT_LENGTH.

SCGI: "the body follows the comma and is exactly CONTENT_LENGTH bytes".  The
bytes received with the head are served first; the rest is read on demand, so
a 50 MB upload streams through in constant memory.  Every read shares one
deadline for the whole body (``--body-timeout``): a client that closes early,
or has not sent the body by then, raises ``BodyError``, a ``ProtocolError`` the
server answers and logs.  ``unread`` tells the connection's end how much of the
body the app left in the socket.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator

from ..protocol import ProtocolError
from .sockets import Connection, set_receive_timeout

RECV_SIZE = 256 * 1024
# Largest single MSG_WAITALL receive: memory is committed only as data arrives.
WAITALL_SIZE = 1024 * 1024

Buffer = bytes | bytearray | memoryview


class BodyError(ProtocolError):
    """The client sent less body than it announced, or stopped sending it."""


class BufferedBody(io.BytesIO):
    """A body that arrived whole with the head, served from memory at C speed."""

    unread = 0


def body_stream(sock: Connection, prefix: Buffer, length: int,
                deadline: float = float("inf")) -> Body:
    """A readable file for a body of ``length`` bytes whose first bytes are ``prefix``.

    ``prefix`` may be a memoryview of the buffer the head came in: it is copied
    once, when the body is read, and not before.  ``deadline`` (``time.monotonic``)
    is when the whole body must have arrived.
    """
    if len(prefix) >= length:
        return whole_body(prefix, length, 0)
    return SocketBody(sock, prefix, length, deadline)


def whole_body(data: Buffer, length: int, start: int) -> BufferedBody:
    """The body of ``length`` bytes that is all in ``data`` from ``start``, as a file.

    Made of bytes, which BytesIO shares and gives back whole to a read of it all: the
    body is copied at most once (BytesIO copies any other buffer, then a read copies
    that again).
    """
    if not length:  # most requests: GET, HEAD
        return BufferedBody()
    if not start and len(data) == length and type(data) is bytes:
        return BufferedBody(data)
    with memoryview(data) as view:
        return BufferedBody(bytes(view[start:start + length]))


class SocketBody(io.BufferedIOBase):
    """File-like reader of the rest of a body from a blocking socket.

    The common use, one ``read()`` of the whole body, costs one ``recv`` with
    MSG_WAITALL for the rest and one join with the prefix: a single copy.
    """

    def __init__(self, sock: Connection, prefix: Buffer, length: int,
                 deadline: float = float("inf")) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self._prefix: Buffer | None = prefix  # received with the head, not yet copied
        self._buffer = bytearray()
        self._unread = length - len(prefix)  # bytes still in the socket
        self._length = length

    def readable(self) -> bool:
        return True

    @property
    def unread(self) -> int:
        """Body bytes still in the socket."""
        return self._unread

    def _buffered(self) -> bytearray:
        """The read buffer, with the prefix moved into it (every path but the fast one)."""
        if self._prefix is not None:
            self._buffer += self._prefix
            self._prefix = None
        return self._buffer

    def _fill(self, want: int) -> bool:
        """Receive up to ``want`` more bytes into the buffer; False at the end of the body."""
        if self._unread <= 0:
            return False
        self._buffered().extend(self._recv(min(want, self._unread, RECV_SIZE), 0))
        return True

    def _recv(self, size: int, flags: int) -> bytes:
        """Up to ``size`` body bytes; a missed deadline or an early close is a BodyError."""
        left = self._deadline - time.monotonic()
        if left > 0:
            if left < float("inf"):
                set_receive_timeout(self._sock, left)
        else:
            flags |= socket.MSG_DONTWAIT  # past the deadline: only what has already arrived
        try:
            data = self._sock.recv(size, flags)
        except (TimeoutError, BlockingIOError):
            raise BodyError(
                f"client did not send the body in time ({self._unread} of {self._length} "
                "bytes unsent at the --body-timeout deadline)", status=408,
            ) from None
        except OSError as exc:
            raise BodyError(f"error reading the request body: {exc}") from None
        if not data:
            raise BodyError(
                f"client closed the connection with {self._unread} of "
                f"{self._length} body bytes unsent"
            )
        self._unread -= len(data)
        return data

    def _receive_exactly(self, size: int) -> list[bytes]:
        """``size`` more bytes from the socket, in pieces of at most WAITALL_SIZE."""
        pieces = []
        while size > 0:
            # MSG_WAITALL: one system call for the whole piece, unless a timeout,
            # a signal or the end of the stream cuts it short.
            data = self._recv(min(size, WAITALL_SIZE), socket.MSG_WAITALL)
            pieces.append(data)
            size -= len(data)
        return pieces

    def read(self, size: int | None = -1) -> bytes:
        prefix = self._prefix  # while it is set, the buffer is empty
        held = len(prefix) if prefix is not None else len(self._buffer)
        if size is None or size < 0 or size > held + self._unread:
            size = held + self._unread
        if prefix is not None and size >= held:
            # The fast path: all that came with the head, and the rest in one call.
            self._prefix = None
            pieces = self._receive_exactly(size - held)
            if not held and len(pieces) == 1:
                return pieces[0]
            return b"".join((prefix, *pieces))
        buffer = self._buffered()
        if len(buffer) < size:
            # Like a buffered file: read(n) returns n bytes unless the body ends first.
            buffer += b"".join(self._receive_exactly(size - len(buffer)))
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    def read1(self, size: int = -1) -> bytes:
        buffer = self._buffered()
        if not buffer:
            self._fill(RECV_SIZE if size < 0 else size)
        return self.read(len(buffer) if size < 0 else min(size, len(buffer)))

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        buffer = self._buffered()
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if limit is not None and len(buffer) >= limit:
                end = limit
                break
            start = len(buffer)
            if not self._fill(RECV_SIZE):
                end = len(buffer)
                break
        if limit is not None:
            end = min(end, limit)
        data = bytes(buffer[:end])
        del buffer[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


Body = BufferedBody | SocketBody
