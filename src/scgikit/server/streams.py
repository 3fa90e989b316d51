"""The request body as a file, read from the socket, never past CONTENT_LENGTH.

SCGI: "the body follows the comma and is exactly CONTENT_LENGTH bytes".  The
bytes received with the head are served first; the rest is read on demand, so
a 50 MB upload streams through in constant memory.  A client that closes early
or stalls raises ``BodyError``, a ``ProtocolError`` the server answers and logs.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

from ..protocol import ProtocolError

RECV_SIZE = 256 * 1024


class BodyError(ProtocolError):
    """The client sent less body than it announced, or stopped sending it."""


def body_stream(sock: socket.socket, prefix: bytes, length: int) -> io.BufferedIOBase:
    """A readable file for a body of ``length`` bytes whose first bytes are ``prefix``."""
    if len(prefix) >= length:
        # The whole body came with the head: serve it from memory at C speed.
        return io.BytesIO(prefix[:length] if len(prefix) > length else prefix)
    return SocketBody(sock, prefix, length)


class SocketBody(io.BufferedIOBase):
    """File-like reader of the rest of a body from a blocking socket."""

    def __init__(self, sock: socket.socket, prefix: bytes, length: int) -> None:
        super().__init__()
        self._sock = sock
        self._buffer = bytearray(prefix)
        self._unread = length - len(prefix)  # bytes still in the socket
        self._length = length

    def readable(self) -> bool:
        return True

    def _fill(self, want: int) -> bool:
        """Receive up to ``want`` more bytes into the buffer; False at the end of the body."""
        if self._unread <= 0:
            return False
        try:
            data = self._sock.recv(min(want, self._unread, RECV_SIZE))
        except (TimeoutError, BlockingIOError):
            raise BodyError(
                f"client stalled with {self._unread} of {self._length} body bytes unsent",
                status=408,
            ) from None
        except OSError as exc:
            raise BodyError(f"error reading the request body: {exc}") from None
        if not data:
            raise BodyError(
                f"client closed the connection with {self._unread} of "
                f"{self._length} body bytes unsent"
            )
        self._unread -= len(data)
        self._buffer += data
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill(RECV_SIZE):
                pass
            size = len(self._buffer)
        elif len(self._buffer) < size and self._unread > 0:
            # Like a buffered file: read(n) returns n bytes unless the body ends first.
            # Receive straight into one buffer of the final size: no joins, no extra copies.
            return self._read_into_new(min(size, len(self._buffer) + self._unread))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _read_into_new(self, size: int) -> bytes:
        result = bytearray(size)
        have = len(self._buffer)
        result[:have] = self._buffer
        self._buffer.clear()
        view = memoryview(result)
        try:
            while have < size:
                try:
                    got = self._sock.recv_into(view[have:])
                except (TimeoutError, BlockingIOError):
                    raise BodyError(
                        f"client stalled with {self._unread} of {self._length} body bytes unsent",
                        status=408,
                    ) from None
                except OSError as exc:
                    raise BodyError(f"error reading the request body: {exc}") from None
                if not got:
                    raise BodyError(
                        f"client closed the connection with {self._unread} of "
                        f"{self._length} body bytes unsent"
                    )
                have += got
                self._unread -= got
        finally:
            view.release()
        return bytes(result)

    def read1(self, size: int = -1) -> bytes:
        if not self._buffer:
            self._fill(RECV_SIZE if size < 0 else size)
        return self.read(len(self._buffer) if size < 0 else min(size, len(self._buffer)))

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if limit is not None and len(self._buffer) >= limit:
                end = limit
                break
            start = len(self._buffer)
            if not self._fill(RECV_SIZE):
                end = len(self._buffer)
                break
        if limit is not None:
            end = min(end, limit)
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
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

    def discard(self, limit: int) -> None:
        """Read and drop up to ``limit`` unread body bytes (before closing politely)."""
        self._buffer.clear()
        while self._unread > 0 and limit > 0:
            before = self._unread
            self._fill(min(limit, RECV_SIZE))
            limit -= before - self._unread
            self._buffer.clear()
