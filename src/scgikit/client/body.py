"""A request body of known length, read once: bytes, a file, or chunks (spooled to learn
their length when it is not given)."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

__all__ = ["CHUNK_SIZE", "BodyLike", "RequestBody"]

CHUNK_SIZE = 256 * 1024
# Bodies up to this size are sent in the same write as the head.
_SMALL_BODY = 64 * 1024
# An iterable body of unknown length is spooled (once) to learn its length;
# up to this size the spool stays in memory.
_SPOOL_IN_MEMORY = 1024 * 1024

BodyLike = bytes | bytearray | memoryview | str | IO[bytes] | Iterable[bytes] | None


class RequestBody:
    """A request body of known length, read once: small bytes, a file, or chunks."""

    def __init__(self, source: BodyLike, content_length: int | None) -> None:
        self._spool: IO[bytes] | None = None
        self._sent_with_head = 0
        self.data: bytes | None = None
        self.file: IO[bytes] | None = None
        self.chunks: Iterable[bytes] | None = None
        if source is None:
            source = b""
        if isinstance(source, str):
            source = source.encode("utf-8")
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data = bytes(source)
            self.length = len(self.data)
        elif hasattr(source, "read"):
            self.file = source  # type: ignore[assignment]
            self.length = content_length if content_length is not None else _remaining(source)
        elif isinstance(source, Iterable):
            if content_length is not None:
                self.chunks, self.length = source, content_length
            else:
                # The length must be sent first: spool the chunks once, then send the spool.
                spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
                for chunk in source:
                    spool.write(chunk)
                self.length = spool.tell()
                spool.seek(0)
                self._spool = self.file = spool
        else:
            raise TypeError(f"body must be bytes, a file or an iterable of bytes, not {source!r}")
        if content_length is not None and content_length != self.length:
            raise ValueError(f"content_length={content_length} but the body has {self.length}")

    def pieces(self) -> Iterator[bytes]:
        """The body after its first ``_SMALL_BODY`` bytes have been taken by ``first()``."""
        if self.file is not None:
            left = self.length - self._sent_with_head
            while left > 0:
                piece = self.file.read(min(CHUNK_SIZE, left))
                if not piece:
                    raise ValueError(f"body file ended {left} bytes before its announced length")
                left -= len(piece)
                yield piece
        elif self.chunks is not None:
            sent = 0
            for piece in self.chunks:
                if not piece:
                    continue
                sent += len(piece)
                if sent > self.length:
                    raise ValueError(f"body iterable gave more than content_length={self.length}")
                yield bytes(piece)
            if sent != self.length:
                raise ValueError(f"body iterable gave {sent} bytes, not {self.length}")

    def first(self) -> bytes:
        """Bytes to send in the same write as the head: a small body, or nothing."""
        if self.data is not None:
            return self.data
        if self.file is not None and self.length <= _SMALL_BODY:
            data = self.file.read(self.length)
            self._sent_with_head = len(data)
            return data
        return b""

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


def _remaining(file: Any) -> int:
    """Bytes left in a file object from its position, without reading it."""
    try:
        size = os.fstat(file.fileno()).st_size
        return max(0, size - int(file.tell()))
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        here = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(here)
        return int(end - here)
    except (AttributeError, OSError, io.UnsupportedOperation):
        raise ValueError("cannot tell the size of this body file: pass content_length=") from None
