"""The classic API of the ``scgi`` package's ``scgi.util``, for scripts that call it.

``SCGIHandler`` is scgikit's (``apps/handler.py``), as ``scgikit.scgi_server``
exports it.  The netstring and header functions keep the original's rules, which
are looser than the SCGI rules scgikit's server enforces (``scgikit.protocol``:
CONTENT_LENGTH first, ``SCGI=1``, a bounded length, no repeated names): a script
that calls them on bytes of its own gets what it got before, the same values and
the same exceptions.  The server never uses them.

- ``ns_read_size`` and ``ns_reads`` read a netstring from a file; a short read is
  an ``OSError`` (``IOError``), a length ``int()`` cannot read a ``ValueError``.
- ``parse_env`` splits a header block on NUL and decodes ISO-8859-1; a block whose
  items (the part after the last NUL left out) are not in pairs is a
  ``ValueError``; a repeated name keeps its last value.
- ``log`` writes ``[YYYY-MM-DD HH:MM:SS] message`` to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from .apps.handler import SCGIHandler

__all__ = ["HEADER_ENCODING", "SCGIHandler", "log", "ns_read_size", "ns_reads", "parse_env",
           "read_env"]

#: The encoding of the header block's names and values (latin-1, as scgikit.protocol reads them).
HEADER_ENCODING = "iso-8859-1"


def log(msg: str) -> None:
    """Write ``msg`` to stderr after a timestamp, as the original's children and master did."""
    timestamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stderr.write(f"[{timestamp}] {msg}\n")


def ns_read_size(input: IO[bytes]) -> int:
    """Read a netstring's length and its ``:`` from the file ``input``."""
    size = b""
    while True:
        char = input.read(1)
        if char == b":":
            return int(size)
        if not char:
            raise OSError("short netstring read")
        size += char


def ns_reads(input: IO[bytes]) -> bytes:
    """Read one netstring from the file ``input`` and return its data."""
    size = ns_read_size(input)
    parts = []
    while size > 0:
        data = input.read(size)
        if not data:
            raise OSError("short netstring read")
        parts.append(data)
        size -= len(data)
    if input.read(1) != b",":
        raise OSError("missing netstring terminator")
    return b"".join(parts)


def parse_env(headers: bytes) -> dict[str, str]:
    """The variables of a header block: NUL-terminated names and values."""
    items = headers.split(b"\0")[:-1]
    if len(items) % 2 != 0:
        raise ValueError("malformed headers")
    return {items[i].decode(HEADER_ENCODING): items[i + 1].decode(HEADER_ENCODING)
            for i in range(0, len(items), 2)}


def read_env(input: IO[bytes]) -> dict[str, str]:
    """Read the header netstring from the file ``input`` and return its variables."""
    return parse_env(ns_reads(input))
